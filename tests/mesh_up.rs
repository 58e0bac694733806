//! `ferrymesh up` from a newcomer's chair: the mesh comes up, grpcurl finds
//! everything through reflection, bad input gets a clear error, Ctrl-C stops it.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{Process, ferrymesh, free_port_offset, grpcurl, pid_of, text};

#[tokio::test]
async fn up_serves_every_service_to_grpcurl_through_reflection_and_stops_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let offset = free_port_offset();
    let catalog = format!("127.0.0.1:{}", crate::support::port("catalog", offset));
    let mut command = ferrymesh();
    command
        .args(["up", "--port-offset", &offset.to_string(), "--data-dir"])
        .arg(data.path());
    let mut up = Process::spawn(command);
    up.wait_for_line(
        |l| l.contains("all services are SERVING"),
        Duration::from_secs(90),
    )
    .await;

    let row = up
        .lines()
        .into_iter()
        .find(|l| l.starts_with("catalog "))
        .expect("a catalog row in the table");
    let columns: Vec<&str> = row.split_whitespace().collect();
    let database = format!("sqlite://{}/catalog.db", data.path().display());
    let port: u16 = catalog.rsplit(':').next().unwrap().parse().unwrap();
    let metrics = format!("http://127.0.0.1:{}/metrics", port + 1000);
    assert_eq!(
        columns,
        [
            "catalog",
            catalog.as_str(),
            "SERVING",
            metrics.as_str(),
            database.as_str()
        ]
    );
    // The metrics column is where Prometheus scrapes.
    crate::support::http_get(&metrics).await;
    assert!(
        data.path().join("catalog.db").exists(),
        "catalog keeps its database in the data directory"
    );

    // list: the service, health and reflection, with no proto files given.
    let listed = grpcurl(&["-plaintext", &catalog, "list"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let services: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        services.contains(&"ferrymesh.catalog.v1.CatalogService".to_string()),
        "{services:?}"
    );
    assert!(
        services.contains(&"grpc.health.v1.Health".to_string()),
        "{services:?}"
    );

    // describe: the methods with their request and response types.
    let described = grpcurl(&[
        "-plaintext",
        &catalog,
        "describe",
        "ferrymesh.catalog.v1.CatalogService",
    ]);
    let description = text(&described);
    assert!(described.status.success(), "{description}");
    for method in [
        "rpc GetProduct ( .ferrymesh.catalog.v1.GetProductRequest ) returns ( .ferrymesh.catalog.v1.GetProductResponse );",
        "rpc ListProducts ( .ferrymesh.catalog.v1.ListProductsRequest )",
        "rpc SearchProducts ( .ferrymesh.catalog.v1.SearchProductsRequest )",
    ] {
        assert!(description.contains(method), "{method} in {description}");
    }
    let message = grpcurl(&["-plaintext", &catalog, "describe", "ferrymesh.common.v1.Money"]);
    assert!(text(&message).contains("int64 units = 2;"), "{}", text(&message));

    // call: JSON in, JSON out.
    let got = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"product_id": "vintage-typewriter"}"#,
        &catalog,
        "ferrymesh.catalog.v1.CatalogService/GetProduct",
    ]);
    assert!(got.status.success(), "{}", text(&got));
    let body: serde_json::Value = serde_json::from_slice(&got.stdout).expect("grpcurl prints JSON");
    assert_eq!(body["product"]["name"], "Vintage Typewriter");
    assert_eq!(body["product"]["price"]["currencyCode"], "USD");
    assert_eq!(body["product"]["price"]["units"], "67");
    assert_eq!(body["product"]["price"]["nanos"], 990_000_000);

    // bad input: the status, the message and the decoded BadRequest detail.
    let bad = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"page_size": -1}"#,
        &catalog,
        "ferrymesh.catalog.v1.CatalogService/ListProducts",
    ]);
    let said = text(&bad);
    assert!(!bad.status.success());
    assert!(said.contains("Code: InvalidArgument"), "{said}");
    assert!(
        said.contains("page_size: must be between 0 and 100 (0 means 20), got -1"),
        "{said}"
    );
    assert!(
        said.contains(r#""@type":"type.googleapis.com/google.rpc.BadRequest""#),
        "{said}"
    );
    assert!(
        said.contains(r#""field":"page_size""#),
        "the detail is decoded through reflection: {said}"
    );

    let missing = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"product_id": "no-such-thing"}"#,
        &catalog,
        "ferrymesh.catalog.v1.CatalogService/GetProduct",
    ]);
    let said = text(&missing);
    assert!(
        said.contains("Code: NotFound") && said.contains("product `no-such-thing` does not exist"),
        "{said}"
    );

    // health, which grpcurl 1.8 resolves through reflection too.
    let health = grpcurl(&["-plaintext", &catalog, "grpc.health.v1.Health/Check"]);
    assert!(
        text(&health).contains(r#""status": "SERVING""#),
        "{}",
        text(&health)
    );

    // the correlation id comes back, and a missing one is made.
    let echoed = grpcurl(&[
        "-plaintext",
        "-v",
        "-H",
        "x-correlation-id: order-42",
        "-d",
        r#"{"product_id": "mug"}"#,
        &catalog,
        "ferrymesh.catalog.v1.CatalogService/GetProduct",
    ]);
    assert!(
        text(&echoed).contains("x-correlation-id: order-42"),
        "{}",
        text(&echoed)
    );

    // orders serves both major versions, and prices from the catalog across processes.
    let orders = format!("127.0.0.1:{}", crate::support::port("orders", offset));
    let listed = text(&grpcurl(&["-plaintext", &orders, "list"]));
    assert!(
        listed.contains("ferrymesh.orders.v1.OrdersService\n")
            && listed.contains("ferrymesh.orders.v2.OrdersService\n"),
        "{listed}"
    );
    let placed = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"request_id": "e2e-1", "customer_email": "ada@example.com",
            "items": [{"product_id": "mug", "quantity": 2}],
            "shipping_address": {"recipient_name": "Ada", "street_lines": ["1 Main St"], "city": "Springfield",
                                 "postal_code": "12345", "country_code": "US"},
            "card": {"number": "4242 4242 4242 4242", "expiry_month": 12, "expiry_year": 2099, "cvc": "123"}}"#,
        &orders,
        "ferrymesh.orders.v1.OrdersService/PlaceOrder",
    ]);
    assert!(placed.status.success(), "{}", text(&placed));
    let placed: serde_json::Value = serde_json::from_slice(&placed.stdout).unwrap();
    assert_eq!(
        placed["order"]["total"]["units"], "17",
        "2 x 8.99 from the catalog"
    );
    let order_id = placed["order"]["orderId"].as_str().unwrap();
    let read = grpcurl(&[
        "-plaintext",
        "-d",
        &format!(r#"{{"order_id": "{order_id}"}}"#),
        &orders,
        "ferrymesh.orders.v2.OrdersService/GetOrder",
    ]);
    let read: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(
        read["order"]["items"][0]["productName"], "Mug",
        "the v1 order read through v2"
    );
    // Read straight after placing: the saga may or may not have confirmed it yet.
    let status = read["order"]["status"].as_str().unwrap();
    assert!(
        ["ORDER_STATUS_PENDING", "ORDER_STATUS_CONFIRMED"].contains(&status),
        "{read}"
    );
    assert_eq!(
        read["order"]["executionName"], order_id,
        "the saga is named after the order"
    );

    up.signal(Signal::SIGTERM);
    let status = up.wait_exit(Duration::from_secs(45)).await;
    assert!(
        status.success(),
        "up exits 0 after stopping the services: {status}\n{}",
        up.output()
    );
    assert!(
        up.output().contains("catalog |"),
        "service logs are prefixed with the service name"
    );
    assert!(up.output().contains("ferrymesh: stopping every service"));
}

#[tokio::test]
async fn up_names_the_service_whose_port_is_taken_and_exits_non_zero() {
    let data = tempfile::tempdir().unwrap();
    let offset = free_port_offset();
    let taken = std::net::TcpListener::bind(("127.0.0.1", crate::support::port("catalog", offset))).unwrap();
    let mut command = ferrymesh();
    command
        .args(["up", "--port-offset", &offset.to_string(), "--data-dir"])
        .arg(data.path());
    let mut up = Process::spawn(command);
    let status = up.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success());
    let expected = format!(
        "port taken: catalog needs 127.0.0.1:{}",
        crate::support::port("catalog", offset)
    );
    assert!(up.output().contains(&expected), "{}", up.output());
    drop(taken);
}

/// Every `grpcurl` and `ferrymesh workflow` line of the README and the book, pasted as a
/// newcomer would (ports shifted to this test's mesh): the README stays true.
#[tokio::test]
async fn the_readme_grpcurl_examples_work_when_pasted() {
    let readme = crate::docs::readme_and_book();
    let examples: Vec<&str> = readme
        .lines()
        // The Security section's lines need `up --tls`; mesh_security runs them.
        .filter(|l| !l.contains(" -cacert "))
        .filter(|l| {
            l.starts_with("grpcurl ")
                || l.starts_with("ferrymesh workflow ")
                || l.starts_with("ferrymesh keys ")
                || l.starts_with("ferrymesh trace ")
                || l.starts_with("curl ")
        })
        .collect();
    assert!(
        examples.len() >= 15,
        "the README shows grpcurl for every service: {}",
        examples.len()
    );

    let data = tempfile::tempdir().unwrap();
    // As the README's Observability section starts it.
    let (mut up, offset) = up_with(
        data.path(),
        &["--trace-sink"],
        &[("OTEL_TRACES_SAMPLER", "parentbased_always_on")],
    )
    .await;

    let tools = crate::support::root().join(".tools/bin");
    let binaries = std::path::Path::new(env!("CARGO_BIN_EXE_ferrymesh"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}:{}",
        tools.display(),
        binaries.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let workflow_url = format!("http://127.0.0.1:{}", crate::support::port("workflow", offset));
    let apikeys_url = format!("http://127.0.0.1:{}", crate::support::port("apikeys", offset));
    let sink_url = format!("http://127.0.0.1:{}", crate::support::port("tracesink", offset));
    let mut order_id = String::new();
    // The key RegisterDeveloper printed, as the reader exports it.
    let mut api_key = String::new();
    for example in examples {
        let mut line = example.replace("ORDER_ID", &order_id);
        for port in crate::support::mesh_ports() {
            for after in [" ", "/"] {
                line = line.replace(
                    &format!("127.0.0.1:{port}{after}"),
                    &format!("127.0.0.1:{}{after}", port + offset),
                );
            }
        }
        // WatchOrder streams until the order is final; two seconds show its first message.
        let line = if line.contains("/WatchOrder") {
            format!("timeout 2 {line}")
        } else {
            line
        };
        let run = || {
            std::process::Command::new("bash")
                .arg("-c")
                .arg(&line)
                .env("PATH", &path)
                .env("FERRYMESH_WORKFLOW_URL", &workflow_url)
                .env("FERRYMESH_APIKEYS_URL", &apikeys_url)
                .env("FERRYMESH_DATA_DIR", data.path())
                .env("FERRYMESH_KEY", &api_key)
                .env("FERRYMESH_TRACE_SINK", &sink_url)
                .current_dir(data.path())
                .output()
                .unwrap()
        };
        let mut output = run();
        // Spans reach the sink half a second after the call.
        let mut tries = 0;
        while line.starts_with("ferrymesh trace ")
            && (!output.status.success()
                || (line.contains(&order_id) && !text(&output).contains("state Charge card")))
            && tries < 20
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
            output = run();
            tries += 1;
        }
        let said = text(&output);
        let meant_to_fail = line.contains(r#""page_size": -1"#)
            || line.contains("4000 0000 0000 0002")
            || (example.contains("127.0.0.1:8080 ")
                && !example.contains("x-api-key")
                && !example.contains("RegisterDeveloper")
                && !example.contains(" list"));
        if meant_to_fail {
            assert!(
                !output.status.success() && said.contains("Code: "),
                "{line}\n{said}"
            );
        } else if line.contains("/WatchOrder") {
            // The saga has confirmed it by now; the watch shows it and ends.
            assert!(
                said.contains(&order_id) && said.contains("ORDER_STATUS_CONFIRMED"),
                "{line}\n{said}"
            );
        } else if line.starts_with("ferrymesh trace ") && line.contains(&order_id) {
            // The order's trace: the gateway took it, the saga charged the card.
            assert!(
                output.status.success()
                    && said.contains("OrdersService/PlaceOrder")
                    && said.contains("state Charge card"),
                "{line}\n{said}"
            );
        } else if line.starts_with("ferrymesh trace map") {
            assert!(
                output.status.success()
                    && said.contains("gateway    -> orders")
                    && said.contains("workflow   -> payments"),
                "{line}\n{said}"
            );
        } else if line.starts_with("curl ") && line.contains("grpc-web+json") {
            // The console's way in: JSON messages over gRPC-Web, with the key.
            assert!(
                output.status.success()
                    && said.contains("\"name\":\"Mug\"")
                    && said.contains("grpc-status:0"),
                "{line}\n{said}"
            );
        } else if line.starts_with("curl ") && line.contains("/console/api/reference") {
            assert!(
                output.status.success() && said.starts_with("{\"services\":["),
                "{line}\n{said}"
            );
        } else if line.starts_with("curl ") {
            assert!(
                output.status.success() && said.contains("rpc_method=\"GetProduct\""),
                "{line}\n{said}"
            );
        } else if line.starts_with("ferrymesh workflow history") {
            assert!(
                output.status.success()
                    && said.contains("ExecutionSucceeded")
                    && said.contains("Charge card"),
                "{line}\n{said}"
            );
        } else {
            assert!(output.status.success(), "{line}\n{said}");
        }
        if line.contains("DeveloperPortalService/RegisterDeveloper") {
            let registered: serde_json::Value =
                serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{line}\n{said}\n{e}"));
            api_key = registered["secret"].as_str().unwrap().to_string();
        }
        if line.starts_with("grpcurl ") && line.contains("OrdersService/PlaceOrder") {
            let placed: serde_json::Value =
                serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{line}\n{said}\n{e}"));
            order_id = placed["order"]["orderId"].as_str().unwrap().to_string();
        }
    }

    up.signal(Signal::SIGTERM);
    assert!(up.wait_exit(Duration::from_secs(45)).await.success());
}

#[tokio::test]
async fn up_restarts_a_service_that_dies() {
    let data = tempfile::tempdir().unwrap();
    let (mut up, offset) = up_and_serving(data.path()).await;

    let inventory = format!("127.0.0.1:{}", crate::support::port("inventory", offset));
    let pid = pid_of(&["serve", "inventory", &inventory]).expect("the inventory process");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();

    up.wait_for_line(
        |l| l.contains("ferrymesh: inventory exited") && l.contains("restarting it in 1s"),
        Duration::from_secs(10),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let health = grpcurl(&["-plaintext", &inventory, "grpc.health.v1.Health/Check"]);
        if health.status.success() && text(&health).contains("SERVING") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "inventory did not come back:\n{}",
            up.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = pid_of(&["serve", "inventory", &inventory]).expect("inventory runs again");
    assert_ne!(again, pid, "a new process");
    let catalog = format!("127.0.0.1:{}", crate::support::port("catalog", offset));
    assert!(
        pid_of(&["serve", "catalog", &catalog]).is_some(),
        "the others kept running"
    );

    up.signal(Signal::SIGTERM);
    assert!(
        up.wait_exit(Duration::from_secs(45)).await.success(),
        "{}",
        up.output()
    );
}

/// Ctrl-C while a service waits out its restart pause stops `up` cleanly:
/// nothing of that service runs, so nothing is left half-stopped.
#[tokio::test]
async fn up_stops_cleanly_while_a_service_waits_to_restart() {
    let data = tempfile::tempdir().unwrap();
    let (mut up, offset) = up_and_serving(data.path()).await;
    let inventory = format!("127.0.0.1:{}", crate::support::port("inventory", offset));
    let pid = pid_of(&["serve", "inventory", &inventory]).expect("the inventory process");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    up.wait_for_line(
        |l| l.contains("ferrymesh: inventory exited") && l.contains("restarting it in 1s"),
        Duration::from_secs(10),
    )
    .await;
    up.signal(Signal::SIGTERM);
    assert!(
        up.wait_exit(Duration::from_secs(45)).await.success(),
        "{}",
        up.output()
    );
    assert!(
        pid_of(&["serve", "inventory", &inventory]).is_none(),
        "inventory was not started again"
    );
}

#[tokio::test]
async fn services_stop_when_up_is_killed() {
    let data = tempfile::tempdir().unwrap();
    let (mut up, offset) = up_and_serving(data.path()).await;
    let catalog = format!("127.0.0.1:{}", crate::support::port("catalog", offset));
    let workflow = format!("127.0.0.1:{}", crate::support::port("workflow", offset));
    assert!(pid_of(&["serve", "catalog", &catalog]).is_some());
    up.signal(Signal::SIGKILL);
    up.wait_exit(Duration::from_secs(10)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while pid_of(&["serve", "catalog", &catalog]).is_some()
        || pid_of(&["serve", "workflow", &workflow]).is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the services outlived a killed `up`"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `ferrymesh up` on a free port offset, once every service answers SERVING.
async fn up_and_serving(data: &std::path::Path) -> (Process, u16) {
    up_with(data, &[], &[]).await
}

/// `ferrymesh up` with more flags and environment variables.
async fn up_with(data: &std::path::Path, flags: &[&str], env: &[(&str, &str)]) -> (Process, u16) {
    let offset = free_port_offset();
    let mut command = ferrymesh();
    command
        .args(["up", "--port-offset", &offset.to_string(), "--data-dir"])
        .arg(data)
        .args(flags)
        .envs(env.iter().copied());
    let mut up = Process::spawn(command);
    up.wait_for_line(
        |l| l.contains("all services are SERVING"),
        Duration::from_secs(90),
    )
    .await;
    (up, offset)
}
