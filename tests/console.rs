//! The web console and gRPC-Web on the gateway's port: raw HTTP/1.1 calls
//! as a browser makes them, and the browser itself (Debian's Chromium,
//! driven by Playwright: `tests/browser/console.py`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use nix::sys::signal::Signal;
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use catalog::pb::ferrymesh::catalog::v1 as cpb;

use crate::gateway::Gateway;
use crate::support::mesh::Mesh;
use crate::support::{root, serve};

/// What a browser gets back from one HTTP/1.1 request.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// A field of the gRPC status, as sent: from the headers
    /// (trailers-only) or the trailers frame.
    fn status_field(&self, name: &str) -> Option<String> {
        if let Some(value) = self.header(name) {
            return Some(value.to_string());
        }
        let (_, text) = self.frames().into_iter().find(|(flag, _)| flag & 0x80 != 0)?;
        String::from_utf8_lossy(&text).split("\r\n").find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')
                .map(|v| v.trim().to_string())
        })
    }

    /// The gRPC status code.
    pub(crate) fn grpc_status(&self) -> Option<i32> {
        self.status_field("grpc-status")?.parse().ok()
    }

    /// The gRPC status message, decoded.
    pub(crate) fn grpc_message(&self) -> String {
        crate::hostile_input::decode(&self.status_field("grpc-message").unwrap_or_default())
    }

    /// gRPC-Web frames: (flag, payload).
    pub(crate) fn frames(&self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 5 <= self.body.len() {
            let length = u32::from_be_bytes(self.body[at + 1..at + 5].try_into().unwrap()) as usize;
            out.push((self.body[at], self.body[at + 5..at + 5 + length].to_vec()));
            at += 5 + length;
        }
        out
    }
}

/// One HTTP/1.1 request on its own connection.
pub(crate) async fn http1(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let (status, headers, body) = crate::support::http_request(addr, method, path, headers, body).await;
    Answer {
        status,
        headers,
        body,
    }
}

/// An HTTP/1.1 answer read to its end: status, headers, the body (chunks joined).
pub(crate) fn parse_http1(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut rest = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|v| v == "chunked") {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let end = at + rest[at..].windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[at..end]).trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[end + 2..end + 2 + size]);
            at = end + 2 + size + 2;
        }
        rest = body;
    }
    Answer {
        status,
        headers,
        body: rest,
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub(crate) async fn web_call(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> Answer {
    let mut headers = vec![("content-type", content_type), ("x-grpc-web", "1")];
    headers.extend_from_slice(extra);
    http1(addr, "POST", path, &headers, body).await
}

const GET_PRODUCT: &str = "/ferrymesh.catalog.v1.CatalogService/GetProduct";

#[tokio::test]
async fn grpc_web_is_refused_without_a_key_as_grpc_is_and_served_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut catalog, catalog_addr) = serve("catalog", &dir.path().join("catalog"), &[], &[]).await;
    let gateway = Gateway::routed_to(dir, &format!("http://{catalog_addr}")).await;
    let addr = gateway.addr;
    let proto = cpb::GetProductRequest {
        product_id: "mug".into(),
    }
    .encode_to_vec();

    // Without a key: UNAUTHENTICATED in every form, as over gRPC.
    let grpc = gateway
        .catalog()
        .get_product(cpb::GetProductRequest {
            product_id: "mug".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(grpc.code(), tonic::Code::Unauthenticated);
    for content_type in ["application/grpc-web", "application/grpc-web+proto"] {
        let answer = web_call(addr, GET_PRODUCT, content_type, &frame(&proto), &[]).await;
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.grpc_status(),
            Some(16),
            "{content_type}: {:?}",
            answer.headers
        );
        assert!(answer.header("grpc-message").unwrap().contains("x-api-key"));
    }
    let text = crate::protocols::base64(&frame(&proto));
    let answer = web_call(
        addr,
        GET_PRODUCT,
        "application/grpc-web-text",
        text.as_bytes(),
        &[],
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(16), "{:?}", answer.headers);
    let answer = web_call(
        addr,
        GET_PRODUCT,
        "application/grpc-web+json",
        &frame(br#"{"product_id": "mug"}"#),
        &[],
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(16));
    assert_eq!(answer.header("content-type"), Some("application/grpc-web+json"));
    let answer = web_call(
        addr,
        GET_PRODUCT,
        "application/grpc-web+json",
        &frame(br#"{"product_id": "mug"}"#),
        &[("x-api-key", "fmk_notakey0000000000000000000000000000")],
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(16));

    // With a key, the same contracts through every form.
    let secret = crate::gateway::register(addr, "web@example.com").await;
    let key = [("x-api-key", secret.as_str())];
    let answer = web_call(
        addr,
        GET_PRODUCT,
        "application/grpc-web+proto",
        &frame(&proto),
        &key,
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(0), "{:?}", answer.headers);
    let frames = answer.frames();
    let product = cpb::GetProductResponse::decode(frames[0].1.as_slice())
        .unwrap()
        .product
        .unwrap();
    assert_eq!(product.name, "Mug");
    assert!(answer.header("x-correlation-id").is_some());
    let answer = web_call(
        addr,
        GET_PRODUCT,
        "application/grpc-web+json",
        &frame(br#"{"productId": "mug"}"#),
        &key,
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&answer.frames()[0].1).unwrap();
    assert_eq!(json["product"]["name"], "Mug");
    assert_eq!(json["product"]["price"]["currency_code"], "USD");

    // JSON that is not the request says what to fix; the details come as JSON too.
    let answer = web_call(
        addr,
        GET_PRODUCT,
        "application/grpc-web+json",
        &frame(br#"{"product": 1}"#),
        &key,
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(3));
    let message = answer.header("grpc-message").unwrap();
    assert!(
        message.contains("GetProductRequest") && message.contains("product"),
        "{message}"
    );
    // Refused before the gateway's stack, it still carries a correlation
    // id (the caller's, when sent) to find it in the logs by.
    assert!(
        answer.header("x-correlation-id").is_some_and(|id| id.len() == 36),
        "{:?}",
        answer.headers
    );
    let answer = web_call(
        addr,
        GET_PRODUCT,
        "application/grpc-web+json",
        &frame(br#"{"product_id": 7}"#),
        &[key[0], ("x-correlation-id", "web-bad-json-1")],
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(3));
    assert_eq!(answer.header("x-correlation-id"), Some("web-bad-json-1"));
    let answer = web_call(
        addr,
        GET_PRODUCT,
        "application/grpc-web+json",
        &frame(br#"{"product_id": ""}"#),
        &key,
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(3));
    let trailers: String = answer
        .frames()
        .iter()
        .filter(|(f, _)| f & 0x80 != 0)
        .map(|(_, t)| String::from_utf8_lossy(t).to_string())
        .chain(answer.header("grpc-status-details-json").map(str::to_string))
        .collect();
    assert!(
        trailers.contains("field_violations") && trailers.contains("product_id"),
        "{trailers}"
    );
    let answer = web_call(
        addr,
        "/ferrymesh.catalog.v1.CatalogService/Nope",
        "application/grpc-web+json",
        &frame(b"{}"),
        &key,
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(12));
    let mut short = frame(br#"{"product_id": "mug"}"#);
    short.truncate(short.len() - 3);
    let answer = web_call(addr, GET_PRODUCT, "application/grpc-web+json", &short, &key).await;
    assert_eq!(answer.grpc_status(), Some(3));
    assert!(answer.header("grpc-message").unwrap().contains("follow"));

    // Operator methods need the admin token, not a key; they are not metered.
    let list = "/ferrymesh.apikeys.v1.ApiKeysService/ListDevelopers";
    let answer = web_call(addr, list, "application/grpc-web+json", &frame(b"{}"), &key).await;
    assert_eq!(
        answer.grpc_status(),
        Some(12),
        "not an operator method in this configuration"
    );

    // The console's pages, from the binary, with a strict policy.
    let page = http1(addr, "GET", "/", &[], b"").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(String::from_utf8_lossy(&page.body).contains("/console/app.js"));
    // app.js and every module it imports, and theirs, are served as scripts.
    let mut modules = vec!["app.js".to_string()];
    let mut served = HashMap::new();
    while let Some(name) = modules.pop() {
        if served.contains_key(&name) {
            continue;
        }
        let script = http1(addr, "GET", &format!("/console/{name}"), &[], b"").await;
        assert_eq!(script.status, 200, "{name}");
        assert!(
            script
                .header("content-type")
                .unwrap()
                .starts_with("text/javascript"),
            "{name}"
        );
        let text = String::from_utf8_lossy(&script.body).to_string();
        for imported in text.split("from \"./").skip(1) {
            modules.push(imported.split('"').next().unwrap().to_string());
        }
        served.insert(name, text);
    }
    assert!(served.len() >= 6, "{:?}", served.keys());
    assert!(served["core.js"].contains("application/grpc-web+json"));
    let reference = http1(addr, "GET", "/console/api/reference", &[], b"").await;
    let reference: serde_json::Value = serde_json::from_slice(&reference.body).unwrap();
    let catalog_service = reference["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ferrymesh.catalog.v1.CatalogService")
        .unwrap();
    assert!(
        catalog_service["methods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "GetProduct")
    );
    assert!(
        !catalog_service["comment"].as_str().unwrap().is_empty(),
        "proto comments are shown"
    );
    let request = &reference["messages"]["ferrymesh.catalog.v1.GetProductRequest"]["fields"][0];
    assert_eq!(request["name"], "product_id");
    assert!(!request["comment"].as_str().unwrap().is_empty());
    // Only public methods: no operator's or saga's method is listed.
    let text = reference.to_string();
    assert!(!text.contains("OrderFulfillmentService") && !text.contains("ApiKeysService/"));
    for path in [
        "/console/api/ops/mesh",
        "/console/api/ops/metrics",
        "/console/api/ops/logs?correlation_id=abcd",
    ] {
        let refused = http1(addr, "GET", path, &[], b"").await;
        assert_eq!(refused.status, 401, "{path}");
        let wrong = http1(
            addr,
            "GET",
            path,
            &[("authorization", "Bearer wrong-token-0000000")],
            b"",
        )
        .await;
        assert_eq!(wrong.status, 401, "{path}");
    }
    let missing = http1(addr, "GET", "/nope", &[], b"").await;
    assert_eq!(missing.status, 404);

    // gRPC keeps working on the same port after all of this.
    gateway.get(&secret).await.unwrap();
    gateway.stop().await;
    catalog.signal(Signal::SIGTERM);
    catalog.wait_exit(Duration::from_secs(30)).await;
}

/// `n` executions of a small state machine of the operator's, one in ten
/// failing at a Fail state its definition planned.
async fn many_executions(mesh: &Mesh, n: usize) {
    use workflow::pb::ferrymesh::workflow::v1 as wpb;
    let definition = r#"{"StartAt": "Count", "States": {
        "Count": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 0, "Next": "Done"}], "Default": "Nothing to count"},
        "Nothing to count": {"Type": "Fail", "Error": "ReportEmpty", "Cause": "no orders that hour"},
        "Done": {"Type": "Succeed"}}}"#;
    mesh.workflow
        .clone()
        .create_state_machine(wpb::CreateStateMachineRequest {
            name: "hourly-report".into(),
            definition: definition.into(),
            description: "counts an hour's orders".into(),
        })
        .await
        .unwrap();
    let starts = (0..n).map(|i| {
        let mut client = mesh.workflow.clone();
        async move {
            client
                .start_execution(wpb::StartExecutionRequest {
                    state_machine_name: "hourly-report".into(),
                    execution_name: format!("report-{i:04}"),
                    input: format!(r#"{{"n": {}}}"#, if i % 10 == 0 { 0 } else { i }),
                    state_machine_version: 0,
                })
                .await
                .unwrap();
        }
    });
    futures_util::stream::iter(starts)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// The browser tests: a newcomer signs up and orders; an operator finds a
/// failed compensation, redrives it once the fault is gone, and sees the
/// developer's usage rise. With FERRYMESH_SCREENSHOTS=DIR, the browser
/// saves the README's screenshots there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_and_an_operator_use_the_console_in_a_browser() {
    let data = tempfile::tempdir().unwrap();
    // The saga's inventory runs apart, so its fault can be removed by a
    // restart: releasing a reservation is refused for good until then (a
    // compensation refused with a business error fails the execution for
    // an operator; one that fails transiently is retried until it works).
    let apart = crate::support::Apart::new("inventory", data.path());
    const REFUSE: &str = "--fault=ReleaseReservation:error_rate=1,code=FAILED_PRECONDITION";
    let mut inventory = apart.start(&[REFUSE]).await;
    let pass = apart.for_workflow("ferrymesh.inventory.v1");
    // Every request traced, so the one the operator looks for is there.
    let mesh = Mesh::up_with(
        data.path(),
        &[&pass],
        &["--trace-sink"],
        &[("OTEL_TRACES_SAMPLER", "parentbased_always_on")],
    )
    .await;
    let base = format!("http://127.0.0.1:{}", mesh.port("gateway"));
    let token = std::fs::read_to_string(data.path().join("admin-token")).unwrap();
    // An operator's day: hundreds of executions, most of them ordinary,
    // among which the browser must find one order's in two actions.
    many_executions(&mesh, 320).await;

    let python = root().join(".tools/browser-venv/bin/python");
    assert!(
        python.exists(),
        "run build-support/install-tools.sh first: {} is missing",
        python.display()
    );
    let mut command = tokio::process::Command::new(python);
    command
        .arg(root().join("tests/browser/console.py"))
        .args(["--base", &base, "--admin-token", token.trim()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = std::env::var_os("FERRYMESH_SCREENSHOTS") {
        command.arg("--screenshots").arg(dir);
    }
    let mut browser = command.spawn().unwrap();
    let mut stdin = browser.stdin.take().unwrap();
    let mut stdout = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut stderr = browser.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut said = Vec::new();
    let driven = tokio::time::timeout(Duration::from_secs(300), async {
        while let Ok(Some(line)) = stdout.next_line().await {
            said.push(line.clone());
            if line == "REQUEST remove-fault" {
                inventory.signal(Signal::SIGTERM);
                inventory.wait_exit(Duration::from_secs(30)).await;
                inventory = apart.start(&[]).await;
                stdin.write_all(b"done\n").await.unwrap();
            }
        }
    })
    .await;
    let status = browser.wait().await.unwrap();
    let errors = errors.await.unwrap();
    let mesh_tail: Vec<String> = mesh
        .up
        .lines()
        .into_iter()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        driven.is_ok() && status.success() && said.last().is_some_and(|l| l == "PASSED"),
        "the browser tests failed (after the last STEP below):\n{}\n{errors}\nthe mesh's last lines:\n{}",
        said.join("\n"),
        mesh_tail.join("\n")
    );
    // What the browser did is what the services recorded.
    let order_id = said
        .iter()
        .find_map(|l| l.strip_prefix("ORDER "))
        .unwrap()
        .to_string();
    assert_eq!(
        mesh.order(&order_id).await.status,
        orders::pb::ferrymesh::orders::v2::OrderStatus::Confirmed as i32
    );
    // The refused compensation was said at ERROR and counted, for an operator.
    let log = std::fs::read_to_string(data.path().join("logs/workflow.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("needs an operator") && l.contains("Release stock")),
        "no ERROR line for the refused compensation"
    );
    let metrics = crate::support::http_get(&format!(
        "http://127.0.0.1:{}/metrics",
        crate::support::admin_port("workflow", mesh.offset)
    ))
    .await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ferrymesh_workflow_unhandled_failures_total{")
                && l.contains("Release stock")),
        "{metrics}"
    );
    mesh.stop().await;
    inventory.signal(Signal::SIGTERM);
    inventory.wait_exit(Duration::from_secs(30)).await;
}
