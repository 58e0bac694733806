//! The gateway as key holders meet it, through the real process: keys,
//! plans, throttling, exact quotas, rotation, metering, canaries, streaming
//! and the orders a key may see.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use apikeys::pb::ferrymesh::apikeys::v1 as apb;
use catalog::pb::ferrymesh::catalog::v1 as cpb;
use futures_util::future::join_all;
use nix::sys::signal::Signal;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::support::{Process, serve};

const TOKEN: &str = "gateway-test-admin-token";
const GET: &str = "/ferrymesh.catalog.v1.CatalogService/GetProduct";

fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

pub(crate) fn with_key<T>(message: T, secret: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", secret.parse().unwrap());
    request
}

fn admin_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request
}

/// The gateway's file; `catalog` is its upstream: one address or several.
fn config(catalog: &str, apikeys: SocketAddr, canary: &str) -> String {
    format!(
        r#"
public = ["ferrymesh.catalog.v1.*", "ferrymesh.apikeys.v1.DeveloperPortalService/*"]
anonymous = ["ferrymesh.apikeys.v1.DeveloperPortalService/RegisterDeveloper"]
pass_api_key = ["ferrymesh.apikeys.v1"]
[limits]
changes_poll = "200ms"
usage_flush = "300ms"
# These tests use hundreds of fresh keys at once, all from one address.
key_lookup_rate = 1000.0
key_lookup_burst = 1000
[stages.prod.routes]
"ferrymesh.catalog.v1" = "{catalog}"
"ferrymesh.apikeys.v1" = "http://{apikeys}"
[stages.beta.routes]
"ferrymesh.catalog.v1" = "{catalog}"
{canary}
"#
    )
}

/// apikeys, catalog and the gateway as processes, and clients for them.
pub(crate) struct Gateway {
    dir: tempfile::TempDir,
    processes: Vec<Process>,
    pub(crate) addr: SocketAddr,
    catalog: String,
    apikeys_addr: SocketAddr,
    apikeys: apb::api_keys_service_client::ApiKeysServiceClient<Channel>,
}

impl Gateway {
    async fn start() -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, catalog_addr) = serve("catalog", dir.path(), &[], &[]).await;
        let mut gateway = Gateway::routed_to(dir, &format!("http://{catalog_addr}")).await;
        gateway.processes.push(catalog);
        gateway
    }

    /// apikeys and a gateway whose catalog route is `catalog`, whose
    /// processes the caller runs.
    pub(crate) async fn routed_to(dir: tempfile::TempDir, catalog: &str) -> Gateway {
        let (apikeys, apikeys_addr) = serve("apikeys", dir.path(), &["--admin-token", TOKEN], &[]).await;
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, config(catalog, apikeys_addr, "")).unwrap();
        let (gateway, addr) = serve(
            "gateway",
            dir.path(),
            &[
                "--config",
                file.to_str().unwrap(),
                "--apikeys-url",
                &format!("http://{apikeys_addr}"),
                "--admin-token",
                TOKEN,
            ],
            &[],
        )
        .await;
        Gateway {
            dir,
            processes: vec![gateway, apikeys],
            addr,
            catalog: catalog.to_string(),
            apikeys_addr,
            apikeys: apb::api_keys_service_client::ApiKeysServiceClient::new(channel(apikeys_addr)),
        }
    }

    pub(crate) fn catalog(&self) -> cpb::catalog_service_client::CatalogServiceClient<Channel> {
        cpb::catalog_service_client::CatalogServiceClient::new(channel(self.addr))
    }

    pub(crate) async fn get(
        &self,
        secret: &str,
    ) -> Result<tonic::Response<cpb::GetProductResponse>, tonic::Status> {
        self.catalog()
            .get_product(with_key(
                cpb::GetProductRequest {
                    product_id: "mug".into(),
                },
                secret,
            ))
            .await
    }

    /// A plan, a developer on it and a key; returns the key's secret.
    pub(crate) async fn key_on(&self, plan: apb::UsagePlan, developer: &str) -> String {
        let plan_id = plan.plan_id.clone();
        let mut admin = self.apikeys.clone();
        admin
            .create_usage_plan(admin_request(apb::CreateUsagePlanRequest { plan: Some(plan) }))
            .await
            .unwrap();
        admin
            .create_developer(admin_request(apb::CreateDeveloperRequest {
                developer_id: developer.into(),
                email: format!("{developer}@example.com"),
                name: developer.into(),
                plan_id,
            }))
            .await
            .unwrap();
        self.new_key(&format!("{developer}-1"), developer).await
    }

    async fn new_key(&self, key_id: &str, developer: &str) -> String {
        self.apikeys
            .clone()
            .create_api_key(admin_request(apb::CreateApiKeyRequest {
                key_id: key_id.into(),
                developer_id: developer.into(),
                name: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    /// What apikeys has counted of `developer`'s calls, by minute, from an hour before `now` to an hour after.
    pub(crate) async fn usage(&self, developer: &str, now: i64) -> apb::GetUsageResponse {
        self.apikeys
            .clone()
            .get_usage(admin_request(apb::GetUsageRequest {
                developer_id: developer.into(),
                key_id: String::new(),
                start_time: Some(kit_values::timestamp(now - 3_600_000_000)),
                end_time: Some(kit_values::timestamp(now + 3_600_000_000)),
                granularity: apb::UsageGranularity::Minute as i32,
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub(crate) async fn stop(mut self) {
        for p in &mut self.processes {
            p.signal(Signal::SIGTERM);
            assert!(
                p.wait_exit(Duration::from_secs(40)).await.success(),
                "{}",
                p.output()
            );
        }
    }
}

pub(crate) fn plan(id: &str) -> apb::UsagePlan {
    apb::UsagePlan {
        plan_id: id.into(),
        name: id.into(),
        price_per_thousand: Some(kit_values::pb::ferrymesh::common::v1::Money {
            currency_code: "USD".into(),
            units: 4,
            nanos: 0,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn keys_plans_and_stages_are_checked_at_the_gateway() {
    let gw = Gateway::start().await;
    let status = gw
        .catalog()
        .get_product(cpb::GetProductRequest {
            product_id: "mug".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("x-api-key"), "{status:?}");
    let status = gw.get(&format!("fmk_{}", "x".repeat(40))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let mut narrow = plan("narrow");
    narrow.allowed_methods = vec![GET.trim_start_matches('/').into()];
    narrow.stages = vec!["prod".into()];
    let secret = gw.key_on(narrow, "nia").await;
    let got = gw.get(&secret).await.unwrap();
    assert_eq!(got.get_ref().product.as_ref().unwrap().id, "mug");
    let status = gw
        .catalog()
        .list_products(with_key(cpb::ListProductsRequest::default(), &secret))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("plan `narrow` does not include"),
        "{status:?}"
    );

    // A method that is not public does not exist, whatever the key.
    let status = apb::api_keys_service_client::ApiKeysServiceClient::new(channel(gw.addr))
        .list_usage_plans(with_key(apb::ListUsagePlansRequest::default(), &secret))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");

    // Stages: one the plan does not allow, one that does not exist.
    let mut beta = with_key(
        cpb::GetProductRequest {
            product_id: "mug".into(),
        },
        &secret,
    );
    beta.metadata_mut().insert("x-stage", "beta".parse().unwrap());
    let status = gw.catalog().get_product(beta).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let mut nowhere = with_key(
        cpb::GetProductRequest {
            product_id: "mug".into(),
        },
        &secret,
    );
    nowhere.metadata_mut().insert("x-stage", "gamma".parse().unwrap());
    let status = gw.catalog().get_product(nowhere).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("beta, prod"), "{status:?}");

    // Signing up needs no key, but all callers without one share a bucket
    // (5 a second, burst 20): a flood is refused before it reaches apikeys.
    let portal = apb::developer_portal_service_client::DeveloperPortalServiceClient::new(channel(gw.addr));
    let signups = join_all((0..40).map(|i| {
        let mut portal = portal.clone();
        async move {
            portal
                .register_developer(apb::RegisterDeveloperRequest {
                    email: format!("flood{i}@example.com"),
                    name: "Flood".into(),
                })
                .await
        }
    }))
    .await;
    let admitted = signups.iter().filter(|s| s.is_ok()).count();
    assert!((20..=21).contains(&admitted), "the anonymous burst: {admitted}");
    let refused = signups.iter().find_map(|s| s.as_ref().err()).unwrap();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("calls without a key"), "{refused:?}");

    // Revocation reaches the gateway through the change feed within 2 s.
    gw.apikeys
        .clone()
        .revoke_api_key(admin_request(apb::RevokeApiKeyRequest {
            key_id: "nia-1".into(),
        }))
        .await
        .unwrap();
    let revoked = Instant::now();
    let status = loop {
        match gw.get(&secret).await {
            Ok(_) => {
                assert!(
                    revoked.elapsed() < Duration::from_secs(2),
                    "still served after 2 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => break status,
        }
    };
    assert!(
        revoked.elapsed() < Duration::from_secs(2),
        "{:?}",
        revoked.elapsed()
    );
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("revoked"), "{status:?}");
    gw.stop().await;
}

#[tokio::test]
async fn a_plan_of_five_per_second_with_burst_ten_throttles_with_retry_info() {
    let gw = Gateway::start().await;
    let mut slow = plan("slow");
    slow.rate_limit = 5.0;
    slow.burst_limit = 10;
    let secret = gw.key_on(slow, "sam").await;
    gw.get(&secret).await.unwrap(); // the key's first call validates it
    tokio::time::sleep(Duration::from_millis(2100)).await; // the bucket refills
    let answers = join_all((0..100).map(|_| gw.get(&secret))).await;
    let passed = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(passed, 10, "the burst and no more");
    let refused = answers.iter().find_map(|a| a.as_ref().err()).unwrap();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let retry = refused
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay);
    assert!(
        retry.is_some_and(|d| d > Duration::ZERO && d <= Duration::from_millis(200)),
        "{retry:?}"
    );
    // Then about five a second.
    let started = Instant::now();
    let mut passed = 0;
    while started.elapsed() < Duration::from_secs(2) {
        passed += usize::from(gw.get(&secret).await.is_ok());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!((8..=12).contains(&passed), "{passed} in 2 s at 5 per second");
    gw.stop().await;
}

#[tokio::test]
async fn a_quota_lets_exactly_its_calls_through_and_survives_rotation() {
    let gw = Gateway::start().await;
    let mut daily = plan("daily");
    daily.quota_limit = 30;
    daily.quota_period = apb::QuotaPeriod::Day as i32;
    let old = gw.key_on(daily, "quinn").await;
    let answers = join_all((0..20).map(|_| gw.get(&old))).await;
    assert!(answers.iter().all(Result::is_ok));
    // Rotate; both keys work in the grace period and share what is left.
    let rotated = gw
        .apikeys
        .clone()
        .rotate_api_key(admin_request(apb::RotateApiKeyRequest {
            key_id: "quinn-1".into(),
            new_key_id: "quinn-2".into(),
            grace_period: Some(prost_types::Duration { seconds: 3, nanos: 0 }),
        }))
        .await
        .unwrap()
        .into_inner();
    let new = rotated.secret;
    for secret in [&new, &old, &new] {
        gw.get(secret).await.unwrap();
    }
    let answers = join_all((0..60).map(|i| gw.get(if i % 2 == 0 { &old } else { &new }))).await;
    let passed = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(passed, 7, "exactly the 7 left of 30, whichever key asks");
    let refused = answers.iter().find_map(|a| a.as_ref().err()).unwrap();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let violation = refused.get_error_details().quota_failure().unwrap().violations[0].clone();
    assert!(violation.subject.contains("quinn"), "{violation:?}");
    // After the grace period the old key is refused as expired.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = gw.get(&old).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");
    gw.stop().await;
}

#[tokio::test]
async fn metering_counts_every_forwarded_call_to_the_call() {
    let gw = Gateway::start().await;
    let mut metered = plan("metered");
    metered.method_weights = vec![apb::MethodWeight {
        method: "ferrymesh.catalog.v1.CatalogService/SearchProducts".into(),
        weight: 3,
    }];
    let secret = gw.key_on(metered, "max").await;
    let catalog = gw.catalog();
    let calls = join_all((0..17).map(|_| gw.get(&secret))).await;
    assert!(calls.iter().all(Result::is_ok));
    for _ in 0..5 {
        catalog
            .clone()
            .list_products(with_key(cpb::ListProductsRequest::default(), &secret))
            .await
            .unwrap();
    }
    for _ in 0..4 {
        catalog
            .clone()
            .search_products(with_key(
                cpb::SearchProductsRequest {
                    query: "mug".into(),
                    ..Default::default()
                },
                &secret,
            ))
            .await
            .unwrap();
    }
    // Refused calls are not metered.
    let _ = gw.get("fmk_not-a-key").await;
    let now = kit_values::now_micros();
    let usage = || gw.usage("max", now);
    let deadline = Instant::now() + Duration::from_secs(10);
    while usage().await.total < 26 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await; // nothing more arrives
    let used = usage().await;
    let mut per_method: BTreeMap<String, i64> = BTreeMap::new();
    for b in &used.buckets {
        *per_method.entry(b.method.clone()).or_default() += b.count;
    }
    assert_eq!(
        per_method,
        BTreeMap::from([
            (GET.to_string(), 17),
            ("/ferrymesh.catalog.v1.CatalogService/ListProducts".to_string(), 5),
            (
                "/ferrymesh.catalog.v1.CatalogService/SearchProducts".to_string(),
                4
            ),
        ])
    );
    let period = kit_values::rfc3339(now)[..7].to_string();
    let invoice = gw
        .apikeys
        .clone()
        .get_invoice(admin_request(apb::GetInvoiceRequest {
            developer_id: "max".into(),
            period,
        }))
        .await
        .unwrap()
        .into_inner()
        .invoice
        .unwrap();
    // 17 + 5 + 4×3 = 34 weighted calls at 4.00 per 1000 = 0.136.
    assert_eq!(invoice.weighted_calls, 34);
    let total = invoice.total.unwrap();
    assert_eq!((total.units, total.nanos), (0, 136_000_000));
    // The developer sees the same through the portal, via the gateway.
    let mine = apb::developer_portal_service_client::DeveloperPortalServiceClient::new(channel(gw.addr))
        .get_my_usage(with_key(
            apb::GetMyUsageRequest {
                start_time: Some(kit_values::timestamp(now - 86_000_000_000)),
                end_time: Some(kit_values::timestamp(now + 86_000_000_000)),
                granularity: apb::UsageGranularity::Day as i32,
            },
            &secret,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.total, 26);
    gw.stop().await;
}

/// Calls GetProduct once per key and says which were served by the canary.
async fn canary_sides(gw: &Gateway, secrets: &[String]) -> Vec<bool> {
    let mut sides = Vec::with_capacity(secrets.len());
    for chunk in secrets.chunks(64) {
        let answers = join_all(chunk.iter().map(|s| gw.get(s))).await;
        for a in answers {
            let a = a.unwrap();
            sides.push(a.metadata().get("x-ferrymesh-canary").is_some());
        }
    }
    sides
}

#[tokio::test]
async fn a_canary_takes_its_share_sticky_per_key_and_is_switched_off_when_it_fails() {
    let gw = Gateway::start().await;
    let (canary, canary_addr) = serve("catalog", &gw.dir.path().join("canary"), &[], &[]).await;
    gw.key_on(plan("open"), "crowd").await;
    let secrets: Vec<String> = {
        let mut all = Vec::new();
        for chunk in (0..2000).collect::<Vec<_>>().chunks(50) {
            let ids: Vec<String> = chunk.iter().map(|i| format!("crowd-k{i}")).collect();
            all.extend(join_all(ids.iter().map(|id| gw.new_key(id, "crowd"))).await);
        }
        all
    };
    let file = gw.dir.path().join("gateway.toml");
    let with_canary = |addr: SocketAddr, percent: f64| {
        config(
            &gw.catalog,
            gw.apikeys_addr,
            &format!(
                "[[stages.prod.canaries]]\npackage = \"ferrymesh.catalog.v1\"\nupstream = \"http://{addr}\"\npercent = {percent}\nmin_calls = 20\nmax_error_rate = 0.5\n"
            ),
        )
    };
    // The reload happens while calls flow; none is dropped.
    let flowing = {
        let catalog = gw.catalog();
        let secret = secrets[0].clone();
        tokio::spawn(async move {
            let mut failed = 0;
            for _ in 0..300 {
                let r = catalog
                    .clone()
                    .get_product(with_key(
                        cpb::GetProductRequest {
                            product_id: "mug".into(),
                        },
                        &secret,
                    ))
                    .await;
                failed += usize::from(r.is_err());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            failed
        })
    };
    std::fs::write(&file, with_canary(canary_addr, 10.0)).unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await; // read within a second
    assert_eq!(flowing.await.unwrap(), 0, "no call failed across the reload");
    let sides = canary_sides(&gw, &secrets).await;
    let share = sides.iter().filter(|s| **s).count() as f64 / sides.len() as f64;
    assert!((0.07..=0.13).contains(&share), "{share}");
    let again = canary_sides(&gw, &secrets[..300]).await;
    assert_eq!(again, sides[..300], "each key stays on its side");

    // A canary that fails is switched off by the gateway.
    let (failing, failing_addr) = serve(
        "catalog",
        &gw.dir.path().join("failing"),
        &["--fault", "*:error_rate=1,code=UNAVAILABLE"],
        &[],
    )
    .await;
    std::fs::write(&file, with_canary(failing_addr, 50.0)).unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mut faults = 0;
    for s in secrets.iter().take(200) {
        faults += usize::from(gw.get(s).await.is_err());
    }
    assert!(
        (20..=40).contains(&faults),
        "switched off after min_calls at most: {faults}"
    );
    let all_ok = join_all(secrets.iter().take(100).map(|s| gw.get(s))).await;
    assert!(
        all_ok.iter().all(Result::is_ok),
        "every call goes to the primary now"
    );
    let health = tonic_health::pb::health_client::HealthClient::new(channel(gw.addr))
        .check(tonic_health::pb::HealthCheckRequest {
            service: "canary/prod/ferrymesh.catalog.v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );
    assert!(gw.processes[0].output().contains("canary switched off"));
    for mut p in [canary, failing] {
        p.signal(Signal::SIGTERM);
        p.wait_exit(Duration::from_secs(30)).await;
    }
    gw.stop().await;
}

/// Registers through the gateway and returns the secret.
pub(crate) async fn register(gateway: SocketAddr, email: &str) -> String {
    apb::developer_portal_service_client::DeveloperPortalServiceClient::new(channel(gateway))
        .register_developer(apb::RegisterDeveloperRequest {
            email: email.into(),
            name: email.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

#[tokio::test]
async fn orders_through_the_gateway_stream_and_stay_with_their_customer() {
    use orders::pb::ferrymesh::orders::v2 as opb;
    let data = tempfile::tempdir().unwrap();
    let mesh = crate::support::mesh::Mesh::up(data.path(), &[]).await;
    let gateway: SocketAddr = format!("127.0.0.1:{}", mesh.port("gateway")).parse().unwrap();
    let ada = register(gateway, "ada@example.com").await;
    let bob = register(gateway, "bob@example.com").await;
    let orders = opb::orders_service_client::OrdersServiceClient::new(channel(gateway));

    // Ada places an order; the gateway says who she is, and a forged
    // identity header is replaced.
    let mut request =
        crate::support::mesh::order_request("gw-1", &[("mug", 1)], crate::support::mesh::GOOD, "GB");
    request.customer_email = String::new();
    let mut request = with_key(request, &ada);
    request
        .metadata_mut()
        .insert("x-ferrymesh-customer-email", "bob@example.com".parse().unwrap());
    let order = orders
        .clone()
        .place_order(request)
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.customer_email, "ada@example.com");

    // WatchOrder streams through the gateway until the saga confirms it.
    let mut stream = orders
        .clone()
        .watch_order(with_key(
            opb::WatchOrderRequest {
                order_id: order.order_id.clone(),
            },
            &ada,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(update) = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .unwrap()
        .unwrap()
    {
        seen.push(update.order.unwrap().status);
    }
    assert_eq!(
        seen.last(),
        Some(&(opb::OrderStatus::Confirmed as i32)),
        "{seen:?}"
    );

    // Bob cannot see it, list it or watch it, and cannot order as Ada.
    let status = orders
        .clone()
        .get_order(with_key(
            opb::GetOrderRequest {
                order_id: order.order_id.clone(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = orders
        .clone()
        .watch_order(with_key(
            opb::WatchOrderRequest {
                order_id: order.order_id.clone(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let listed = orders
        .clone()
        .list_orders(with_key(opb::ListOrdersRequest::default(), &bob))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.orders.is_empty(), "{listed:?}");
    let status = orders
        .clone()
        .list_orders(with_key(
            opb::ListOrdersRequest {
                customer_email: "ada@example.com".into(),
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = orders
        .clone()
        .place_order(with_key(
            crate::support::mesh::order_request("gw-2", &[("mug", 1)], crate::support::mesh::GOOD, "GB"),
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Ada sees hers.
    let mine = orders
        .clone()
        .list_orders(with_key(opb::ListOrdersRequest::default(), &ada))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.orders.len(), 1);
    mesh.stop().await;
}
