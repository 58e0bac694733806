//! Mesh security over real processes under `ferrymesh up --tls`: strangers
//! are refused at the handshake or by identity, each service takes only the
//! callers of its call table, the saga runs with mutual TLS on every hop,
//! and a certificate rotated on disk is used without a restart or a failed call.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use catalog::pb::ferrymesh::catalog::v1::GetProductRequest;
use catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient;
use orders::pb::ferrymesh::orders::v2 as opb;

use crate::gateway::register;
use crate::support::mesh::{DECLINED, GOOD, Mesh, channel_as, order_request};
use crate::support::{ferrymesh, grpcurl, http_get, serve, text};

/// grpcurl off the test's runtime, which keeps reading the mesh's output.
async fn grpcurl_async(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        text(&grpcurl(&args))
    })
    .await
    .unwrap()
}

/// grpcurl's flags to call as `who` (a file stem in `certs`), trusting the mesh's CA.
fn as_identity(certs: &Path, who: &str) -> Vec<String> {
    vec![
        "-connect-timeout".into(),
        "3".into(),
        "-cacert".into(),
        certs.join("ca.pem").display().to_string(),
        "-cert".into(),
        certs.join(format!("{who}.pem")).display().to_string(),
        "-key".into(),
        certs.join(format!("{who}.key")).display().to_string(),
    ]
}

fn call(mut flags: Vec<String>, addr: String, method: &str, body: &str) -> Vec<String> {
    flags.extend(["-d".into(), body.into(), addr, method.into()]);
    flags
}

/// grpcurl calling `method` on `addr` as `who`, and what it said.
async fn call_as(certs: &Path, who: &str, addr: &str, method: &str, body: &str) -> String {
    let mut flags = as_identity(certs, who);
    if who == "gateway" {
        // The gateway names the principal of every call it makes; a call
        // with its certificate that names none is refused.
        flags.extend(["-H".into(), "x-ferrymesh-principal: anonymous".into()]);
    }
    grpcurl_async(call(flags, addr.to_string(), method, body)).await
}

const CHARGE: &str = "ferrymesh.payments.v1.PaymentsService/Charge";
const GET_PRODUCT: &str = "ferrymesh.catalog.v1.CatalogService/GetProduct";

#[tokio::test]
async fn under_tls_strangers_are_refused_each_service_takes_only_its_callers_and_the_saga_completes() {
    let data = tempfile::tempdir().unwrap();
    let mesh = Mesh::up_with(data.path(), &[], &["--tls"], &[]).await;
    let certs = data.path().join("certs");
    let port = |service: &str| format!("127.0.0.1:{}", crate::support::port(service, mesh.offset));
    let (catalog, payments) = (port("catalog"), port("payments"));

    // No client certificate: the handshake works (probes need it), the call does not.
    let mut anonymous = as_identity(&certs, "operator");
    anonymous.truncate(4);
    let out = grpcurl_async(call(
        anonymous.clone(),
        catalog.clone(),
        GET_PRODUCT,
        r#"{"product_id":"mug"}"#,
    ))
    .await;
    assert!(
        out.contains("Unauthenticated") && out.contains("client certificate"),
        "{out}"
    );
    // Health stays open to a probe without a certificate.
    let mut probe = anonymous.clone();
    probe.extend([catalog.clone(), "grpc.health.v1.Health/Check".into()]);
    let out = grpcurl_async(probe).await;
    assert!(out.contains("SERVING"), "{out}");
    // So does reflection: grpcurl can list and describe without one.
    let mut reflect = anonymous.clone();
    reflect.extend([catalog.clone(), "list".into()]);
    let out = grpcurl_async(reflect).await;
    assert!(out.contains("ferrymesh.catalog.v1.CatalogService"), "{out}");
    // Plaintext gets no answer at all.
    let out = grpcurl_async(vec![
        "-plaintext".into(),
        "-connect-timeout".into(),
        "2".into(),
        "-d".into(),
        r#"{"product_id":"mug"}"#.into(),
        catalog.clone(),
        GET_PRODUCT.into(),
    ])
    .await;
    assert!(!out.contains("\"product\""), "{out}");
    // The kubelet's gRPC probe speaks no TLS: the admin port answers
    // health in plaintext, and nothing else of the service.
    let admin = crate::support::admin_port("catalog", mesh.offset);
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel_as(admin, None));
    let status = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let refused = CatalogServiceClient::new(channel_as(admin, None))
        .get_product(GetProductRequest {
            product_id: "mug".into(),
        })
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // A certificate from another CA, with a name the mesh knows: refused at the handshake.
    let stranger = tempfile::tempdir().unwrap();
    let made = ferrymesh()
        .args(["certs", "init"])
        .arg(stranger.path())
        .output()
        .await
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let mut forged = as_identity(stranger.path(), "workflow");
    forged[3] = certs.join("ca.pem").display().to_string();
    let out = grpcurl_async(call(forged, payments.clone(), CHARGE, "{}")).await;
    assert!(
        out.contains("Failed to dial") || out.contains("handshake"),
        "{out}"
    );
    assert!(!out.contains("Code:"), "no call was made: {out}");

    // payments refuses catalog's identity, naming it, and takes workflow's
    // (which reaches the handler: the empty request is then invalid).
    let out = call_as(&certs, "catalog", &payments, CHARGE, "{}").await;
    assert!(out.contains("PermissionDenied"), "{out}");
    assert!(
        out.contains("spiffe://ferrymesh.local/ns/ferrymesh/sa/catalog may not call ferrymesh.payments.v1.PaymentsService/Charge"),
        "{out}"
    );
    let out = call_as(&certs, "workflow", &payments, CHARGE, "{}").await;
    assert!(
        out.contains("InvalidArgument") && out.contains("payment_id"),
        "{out}"
    );
    // The gateway may read the catalog, and may not charge.
    let out = call_as(
        &certs,
        "gateway",
        &catalog,
        GET_PRODUCT,
        r#"{"product_id":"mug"}"#,
    )
    .await;
    assert!(out.contains("\"product\""), "{out}");
    let out = call_as(&certs, "gateway", &payments, CHARGE, "{}").await;
    assert!(out.contains("PermissionDenied"), "{out}");

    // Each refusal is counted on payments' metrics page, by caller, and logged.
    let metrics = http_get(&format!(
        "http://127.0.0.1:{}/metrics",
        crate::support::admin_port("payments", mesh.offset)
    ))
    .await;
    let refused = |caller: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("ferrymesh_authz_refused_total") && l.contains(&format!("sa/{caller}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    assert_eq!(refused("catalog").as_deref(), Some("1"), "{metrics}");
    assert_eq!(refused("gateway").as_deref(), Some("1"), "{metrics}");
    assert_eq!(refused("workflow"), None, "{metrics}");
    assert!(
        metrics.contains("ferrymesh_tls_handshakes_refused_total"),
        "the forged certificate is counted: {metrics}"
    );
    let output = mesh.up.output();
    assert!(
        output
            .lines()
            .any(|l| l.contains("caller refused") && l.contains("sa/catalog")),
        "{output}"
    );

    // The README's Security examples, pasted in the data directory.
    let readme = crate::docs::readme_and_book();
    let examples: Vec<String> = readme
        .lines()
        .filter(|l| l.starts_with("grpcurl -cacert "))
        .map(|l| {
            let mut line = l.replace(".ferrymesh/certs", &certs.display().to_string());
            for service in ["catalog", "payments"] {
                let p = crate::support::port(service, 0);
                line = line.replace(
                    &format!("127.0.0.1:{p} "),
                    &format!("127.0.0.1:{} ", p + mesh.offset),
                );
            }
            line
        })
        .collect();
    assert_eq!(examples.len(), 3, "{examples:?}");
    let mut said = Vec::new();
    for line in examples {
        let tools = crate::support::root().join(".tools/bin");
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("bash")
                .arg("-c")
                .arg(&line)
                .env(
                    "PATH",
                    format!(
                        "{}:{}",
                        tools.display(),
                        std::env::var("PATH").unwrap_or_default()
                    ),
                )
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        said.push(text(&output));
    }
    assert!(said[0].contains("\"product\""), "{}", said[0]);
    assert!(
        said[1].contains("PermissionDenied") && said[1].contains("sa/catalog may not call"),
        "{}",
        said[1]
    );
    assert!(said[2].contains("SERVING"), "{}", said[2]);

    // The whole saga through the gateway, every hop behind it over mutual
    // TLS: a good card confirms, a declined one compensates.
    let gateway: SocketAddr = port("gateway").parse().unwrap();
    // order_request places orders for ada.
    let secret = register(gateway, "ada@example.com").await;
    for (key, card, wanted) in [
        ("tls-1", GOOD, opb::OrderStatus::Confirmed),
        ("tls-2", DECLINED, opb::OrderStatus::Failed),
    ] {
        let mut request = tonic::Request::new(order_request(key, &[("mug", 1)], card, "GB"));
        request
            .metadata_mut()
            .insert("x-api-key", secret.parse().unwrap());
        let order = opb::orders_service_client::OrdersServiceClient::new(channel_as(gateway.port(), None))
            .place_order(request)
            .await
            .unwrap_or_else(|s| panic!("{s:?}\n{}", mesh.up.output()))
            .into_inner()
            .order
            .unwrap();
        let settled = mesh.settled(&order.order_id, Duration::from_secs(30)).await;
        assert_eq!(settled.status, wanted as i32, "{key}: {settled:?}");
    }
    // The operator's commands reach the services over mutual TLS too.
    let listed = ferrymesh()
        .args([
            "workflow",
            "list",
            "--address",
            &format!("https://{}", port("workflow")),
            "--certs",
        ])
        .arg(&certs)
        .output()
        .await
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("place-order"),
        "{listed:?}"
    );
    let plans = ferrymesh()
        .args([
            "keys",
            "plans",
            "--address",
            &format!("https://{}", port("apikeys")),
            "--certs",
        ])
        .arg(&certs)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .await
        .unwrap();
    assert!(plans.status.success(), "{plans:?}");
    assert!(
        String::from_utf8_lossy(&plans.stdout).contains("free"),
        "{plans:?}"
    );
    let https = |service: &str| format!("https://{}", port(service));
    let load = ferrymesh()
        .args(["load", "place-order", "--rate", "5", "--duration", "1s", "--json"])
        .args([
            "--orders-url",
            &https("orders"),
            "--inventory-url",
            &https("inventory"),
        ])
        .args(["--workflow-url", &https("workflow"), "--certs"])
        .arg(&certs)
        .output()
        .await
        .unwrap();
    assert!(load.status.success(), "{load:?}");
    let result: serde_json::Value = serde_json::from_slice(&load.stdout).unwrap();
    assert!(result["confirmed"].as_u64().unwrap() >= 4, "{result}");
    assert_eq!(result["errors"], serde_json::json!({}), "{result}");
    // Nothing inside the mesh was refused on the way: the four refusals
    // are the test's own (no certificate, catalog twice, gateway).
    let output = mesh.up.output();
    let refusals: Vec<&str> = output.lines().filter(|l| l.contains("caller refused")).collect();
    assert_eq!(refusals.len(), 4, "{refusals:#?}");
    mesh.stop().await;
}

/// The leaf certificate a fresh TLS connection to `addr` is shown.
async fn served_certificate(addr: &str, as_who: &Arc<kit::tls::MeshTls>) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = as_who.connect(tcp, "127.0.0.1").await.unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(path: &Path) -> Vec<u8> {
    pem::parse(std::fs::read(path).unwrap())
        .unwrap()
        .contents()
        .to_vec()
}

#[tokio::test]
async fn a_certificate_rotated_on_disk_is_used_without_a_restart_or_a_failed_call() {
    let data = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::up_with(data.path(), &[], &["--tls"], &[]).await;
    let certs = data.path().join("certs");
    let catalog = format!("127.0.0.1:{}", mesh.port("catalog"));
    let operator =
        Arc::new(kit::tls::MeshTls::load(kit::tls::TlsArgs::from_dir(&certs, "operator")).unwrap());
    let before = served_certificate(&catalog, &operator).await;
    assert_eq!(before, der_of(&certs.join("catalog.pem")));

    // Calls through the gateway to catalog (gateway's certificate, catalog's
    // certificate) and to orders (which calls catalog) all the while.
    let gateway: SocketAddr = format!("127.0.0.1:{}", mesh.port("gateway")).parse().unwrap();
    let secret = register(gateway, "ada@example.com").await;
    let (done, calls, failures) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(std::sync::Mutex::new(Vec::new())),
    );
    let caller = {
        let (done, calls, failures, secret) = (done.clone(), calls.clone(), failures.clone(), secret.clone());
        tokio::spawn(async move {
            let mut client = CatalogServiceClient::new(channel_as(gateway.port(), None));
            while !done.load(Ordering::Relaxed) {
                let mut request = tonic::Request::new(GetProductRequest {
                    product_id: "mug".into(),
                });
                request
                    .metadata_mut()
                    .insert("x-api-key", secret.parse().unwrap());
                match client.get_product(request).await {
                    Ok(_) => {}
                    Err(status) => failures.lock().unwrap().push(status),
                }
                calls.fetch_add(1, Ordering::Relaxed);
                // Eight a second: within the free plan's ten.
                tokio::time::sleep(Duration::from_millis(125)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Rotation: new keys and certificates for catalog and the gateway from the same CA.
    let issued = ferrymesh()
        .args(["certs", "issue"])
        .arg(&certs)
        .args(["catalog", "gateway"])
        .output()
        .await
        .unwrap();
    assert!(issued.status.success(), "{issued:?}");
    let after = der_of(&certs.join("catalog.pem"));
    assert_ne!(before, after);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(&catalog, &operator).await != after {
        assert!(
            Instant::now() < deadline,
            "catalog still serves its old certificate"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The gateway took its new one too; a new order goes through every hop.
    mesh.up
        .wait_for_line(
            |l| l.contains("gateway") && l.contains("certificates reloaded"),
            Duration::from_secs(10),
        )
        .await;
    let mut request = tonic::Request::new(order_request("rotated-1", &[("mug", 1)], GOOD, "GB"));
    request
        .metadata_mut()
        .insert("x-api-key", secret.parse().unwrap());
    let order = opb::orders_service_client::OrdersServiceClient::new(channel_as(gateway.port(), None))
        .place_order(request)
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let settled = mesh.settled(&order.order_id, Duration::from_secs(30)).await;
    assert_eq!(settled.status, opb::OrderStatus::Confirmed as i32);
    tokio::time::sleep(Duration::from_secs(2)).await;
    done.store(true, Ordering::Relaxed);
    caller.await.unwrap();
    let failures = failures.lock().unwrap().clone();
    let calls = calls.load(Ordering::Relaxed);
    assert!(calls > 20, "only {calls} calls were made");
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {failures:?}",
        failures.len()
    );
    mesh.stop().await;
}

#[tokio::test]
async fn the_gateway_serves_its_clients_tls_when_given_a_certificate() {
    let data = tempfile::tempdir().unwrap();
    let certs = data.path().join("certs");
    let made = ferrymesh()
        .args(["certs", "init"])
        .arg(&certs)
        .output()
        .await
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let config = data.path().join("gateway.toml");
    std::fs::write(
        &config,
        "public = [\"ferrymesh.catalog.v1.*\"]\n[stages.prod.routes]\n\"ferrymesh.catalog.v1\" = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let path = |p: &Path| p.display().to_string();
    let (cert, key, config) = (
        path(&certs.join("gateway.pem")),
        path(&certs.join("gateway.key")),
        path(&config),
    );
    let (_gateway, addr) = serve(
        "gateway",
        data.path(),
        &[
            "--config",
            &config,
            "--public-tls-cert",
            &cert,
            "--public-tls-key",
            &key,
        ],
        &[],
    )
    .await;
    let ca = path(&certs.join("ca.pem"));
    let out = grpcurl_async(vec![
        "-cacert".into(),
        ca.clone(),
        addr.to_string(),
        "grpc.health.v1.Health/Check".into(),
    ])
    .await;
    assert!(out.contains("SERVING"), "{out}");
    // The console over TLS, to an HTTP/1.1 client as to an HTTP/2 one.
    for version in ["--http1.1", "--http2"] {
        let page = tokio::process::Command::new("curl")
            .args(["-s", version, "--cacert", &ca, &format!("https://{addr}/")])
            .output()
            .await
            .unwrap();
        let page = String::from_utf8_lossy(&page.stdout);
        assert!(page.contains("/console/app.js"), "{version}: {page}");
    }
    let out = grpcurl_async(vec!["-cacert".into(), ca, addr.to_string(), "list".into()]).await;
    assert!(out.contains("ferrymesh.catalog.v1.CatalogService"), "{out}");
    let out = grpcurl_async(vec![
        "-plaintext".into(),
        "-connect-timeout".into(),
        "2".into(),
        addr.to_string(),
        "list".into(),
    ])
    .await;
    assert!(!out.contains("CatalogService"), "plaintext gets nothing: {out}");
}
