//! Zero-downtime rollouts, proven locally: calls flow through the gateway
//! while a catalog process is stopped with SIGTERM and a new one started
//! on its address, as a Kubernetes rollout replaces a pod, and not one
//! call fails. First with the only catalog, then with two behind the
//! gateway, which spreads the calls over both.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::gateway::{Gateway, plan};
use crate::observability::sample;
use crate::support::{Process, http_get, metrics_url, serve_on};

/// A catalog on `listen` (port 0 for a free one) with its own data.
async fn catalog(data: &Path, listen: &str) -> (Process, SocketAddr) {
    serve_on("catalog", listen, data, &["--admin-listen", "127.0.0.1:0"], &[]).await
}

/// Calls GetProduct through the gateway from `callers` tasks, each
/// pausing `pause` between calls, until told to stop; counts what came back.
struct Flow {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Flow {
    fn start(gateway: &Gateway, secret: &str, callers: usize, pause: Duration) -> Flow {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..callers)
            .map(|_| {
                let client = gateway.catalog();
                let (stop, ok, failed, secret) =
                    (stop.clone(), ok.clone(), failed.clone(), secret.to_string());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let mut request =
                            tonic::Request::new(catalog::pb::ferrymesh::catalog::v1::GetProductRequest {
                                product_id: "mug".into(),
                            });
                        request
                            .metadata_mut()
                            .insert("x-api-key", secret.parse().unwrap());
                        match client.clone().get_product(request).await {
                            Ok(_) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(status) => failed.lock().unwrap().push(format!("{status:?}")),
                        }
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Flow {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `more` further calls succeeded.
    async fn wait_for(&self, more: usize) {
        let target = self.ok() + more;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.ok() < target {
            assert!(tokio::time::Instant::now() < deadline, "calls stopped flowing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the callers and checks that not one call failed.
    async fn finish_without_failures(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        let ok = self.ok.load(Ordering::Relaxed);
        assert!(
            failed.is_empty(),
            "{} of {} calls failed: {:?}",
            failed.len(),
            ok + failed.len(),
            &failed[..failed.len().min(5)]
        );
    }
}

/// Replaces the catalog at `addr` as a rollout does: SIGTERM, which it
/// answers by draining, then a new process on the same address. Returns
/// the new process and how many calls succeeded while it was replaced.
async fn replace(old: &mut Process, data: &Path, addr: SocketAddr, flow: &Flow) -> (Process, usize) {
    let before = flow.ok();
    old.signal(Signal::SIGTERM);
    assert!(
        old.wait_exit(Duration::from_secs(40)).await.success(),
        "{}",
        old.output()
    );
    let (new, again) = catalog(data, &addr.to_string()).await;
    assert_eq!(again, addr);
    (new, flow.ok() - before)
}

fn get_product_calls(page: &str) -> u64 {
    sample(
        page,
        "rpc_server_duration_milliseconds_count",
        "rpc_grpc_status_code=\"0\",rpc_method=\"GetProduct\",rpc_service=\"ferrymesh.catalog.v1.CatalogService\",rpc_system=\"grpc\"",
    )
}

#[tokio::test]
async fn the_only_catalog_restarted_under_load_fails_no_call() {
    let data = tempfile::tempdir().unwrap();
    let (mut old, addr) = catalog(data.path(), "127.0.0.1:0").await;
    let gateway = Gateway::routed_to(tempfile::tempdir().unwrap(), &format!("http://{addr}")).await;
    let secret = gateway.key_on(plan("rollout"), "rollout").await;
    let flow = Flow::start(&gateway, &secret, 4, Duration::from_millis(5));
    flow.wait_for(100).await;

    let (mut new, _) = replace(&mut old, data.path(), addr, &flow).await;
    flow.wait_for(200).await;
    flow.finish_without_failures().await;
    let served = get_product_calls(&http_get(&metrics_url(&new)).await);
    assert!(
        served >= 200,
        "the new catalog took the calls after the restart ({served})"
    );

    new.signal(Signal::SIGTERM);
    new.wait_exit(Duration::from_secs(40)).await;
    gateway.stop().await;
}

#[tokio::test]
async fn one_of_two_catalogs_restarted_under_load_fails_no_call() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut first, first_addr) = catalog(one.path(), "127.0.0.1:0").await;
    let (mut second, second_addr) = catalog(two.path(), "127.0.0.1:0").await;
    let gateway = Gateway::routed_to(
        tempfile::tempdir().unwrap(),
        &format!("http://{first_addr},http://{second_addr}"),
    )
    .await;
    let secret = gateway.key_on(plan("rollout"), "rollout").await;
    let flow = Flow::start(&gateway, &secret, 4, Duration::from_millis(5));
    flow.wait_for(200).await;
    // The gateway spreads the calls over both.
    let (a, b) = (
        get_product_calls(&http_get(&metrics_url(&first)).await),
        get_product_calls(&http_get(&metrics_url(&second)).await),
    );
    assert!(
        a >= 40 && b >= 40,
        "calls are balanced over both catalogs: {a} and {b}"
    );

    let (mut renewed, during) = replace(&mut second, two.path(), second_addr, &flow).await;
    assert!(during > 0, "the other catalog served while one was replaced");
    // The new process takes its share again (after the gateway's cool-down).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while get_product_calls(&http_get(&metrics_url(&renewed)).await) < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new catalog gets no calls"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flow.finish_without_failures().await;

    for p in [&mut first, &mut renewed] {
        p.signal(Signal::SIGTERM);
        p.wait_exit(Duration::from_secs(40)).await;
    }
    gateway.stop().await;
}
