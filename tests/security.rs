//! The security regression suite: each finding of the identity review,
//! tried as the attacker tried it, through the gateway's public port of a
//! real `ferrymesh up` (and `up --tls` where the mesh's own TLS matters).
//! Each test failed on the code before its fix.

use std::net::SocketAddr;
use std::time::Duration;

use apikeys::pb::ferrymesh::apikeys::v1 as apb;
use orders::pb::ferrymesh::orders::v2 as opb;
use tonic::transport::Channel;

use crate::protocols::{Outcome, Protocol, call, http1_chunked};
use crate::saga::{GOOD, Mesh, channel_as};

const LIST_ORDERS: &str = "/ferrymesh.orders.v2.OrdersService/ListOrders";
const GET_ORDER: &str = "/ferrymesh.orders.v2.OrdersService/GetOrder";
const PLACE_ORDER: &str = "/ferrymesh.orders.v2.OrdersService/PlaceOrder";
const REGISTER: &str = "/ferrymesh.apikeys.v1.DeveloperPortalService/RegisterDeveloper";
const REVOKE_MY_KEY: &str = "/ferrymesh.apikeys.v1.DeveloperPortalService/RevokeMyKey";
const GET_PRODUCT: &str = "/ferrymesh.catalog.v1.CatalogService/GetProduct";

/// A developer with a key, made by the operator.
#[derive(Debug, Clone)]
pub(crate) struct Developer {
    pub(crate) secret: String,
    pub(crate) key_id: String,
}

/// A mesh under `up` (or `up --tls`), and the operator's hold on it.
pub(crate) struct Fixture {
    pub(crate) mesh: Mesh,
    pub(crate) data: tempfile::TempDir,
    pub(crate) gateway: SocketAddr,
    pub(crate) token: String,
    apikeys: apb::api_keys_service_client::ApiKeysServiceClient<Channel>,
}

impl Fixture {
    pub(crate) async fn up(tls: bool) -> Fixture {
        let data = tempfile::tempdir().unwrap();
        let flags: &[&str] = if tls { &["--tls"] } else { &[] };
        let mesh = Mesh::up_with(data.path(), &[], flags, &[]).await;
        let operator = tls.then(|| {
            std::sync::Arc::new(
                kit::tls::MeshTls::load(kit::tls::TlsArgs::from_dir(
                    &data.path().join("certs"),
                    "operator",
                ))
                .unwrap(),
            )
        });
        let token = std::fs::read_to_string(data.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_string();
        let gateway = format!("127.0.0.1:{}", 8080 + mesh.offset).parse().unwrap();
        let apikeys = apb::api_keys_service_client::ApiKeysServiceClient::new(channel_as(
            50057 + mesh.offset,
            operator.as_ref(),
        ));
        Fixture {
            mesh,
            data,
            gateway,
            token,
            apikeys,
        }
    }

    /// Edits the gateway's configuration file as an operator would (`from`
    /// becomes `to`) and waits until the gateway has reloaded it.
    pub(crate) async fn reconfigure(&self, from: &str, to: &str) {
        let path = self.data.path().join("gateway.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from} is not in {text}");
        let reloads = |log: &str| log.matches("configuration reloaded").count();
        let log = self.data.path().join("logs/gateway.log");
        let before = reloads(&std::fs::read_to_string(&log).unwrap_or_default());
        std::fs::write(&path, text.replace(from, to)).unwrap();
        for _ in 0..100 {
            if reloads(&std::fs::read_to_string(&log).unwrap_or_default()) > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the gateway did not reload {}", path.display());
    }

    fn admin<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {}", self.token).parse().unwrap());
        request
    }

    /// A plan as the operator makes it.
    pub(crate) async fn plan(&self, plan_id: &str, rate: f64, burst: i32, quota: i64) {
        let plan = apb::UsagePlan {
            plan_id: plan_id.into(),
            name: plan_id.into(),
            rate_limit: rate,
            burst_limit: burst,
            quota_limit: quota,
            quota_period: if quota > 0 {
                apb::QuotaPeriod::Month as i32
            } else {
                apb::QuotaPeriod::Unspecified as i32
            },
            ..Default::default()
        };
        self.apikeys
            .clone()
            .create_usage_plan(self.admin(apb::CreateUsagePlanRequest { plan: Some(plan) }))
            .await
            .unwrap();
    }

    /// `name`@example.com on `plan_id`, with a key `name-1`.
    pub(crate) async fn developer(&self, name: &str, plan_id: &str) -> Developer {
        let mut admin = self.apikeys.clone();
        admin
            .create_developer(self.admin(apb::CreateDeveloperRequest {
                developer_id: name.into(),
                email: format!("{name}@example.com"),
                name: name.into(),
                plan_id: plan_id.into(),
            }))
            .await
            .unwrap();
        self.key(name, &format!("{name}-1")).await
    }

    /// Another key of `name`.
    pub(crate) async fn key(&self, name: &str, key_id: &str) -> Developer {
        let secret = self
            .apikeys
            .clone()
            .create_api_key(self.admin(apb::CreateApiKeyRequest {
                key_id: key_id.into(),
                developer_id: name.into(),
                name: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .secret;
        Developer {
            secret,
            key_id: key_id.into(),
        }
    }

    /// Revokes a key as the operator.
    pub(crate) async fn revoke(&self, key_id: &str) {
        self.apikeys
            .clone()
            .revoke_api_key(self.admin(apb::RevokeApiKeyRequest {
                key_id: key_id.into(),
            }))
            .await
            .unwrap();
        // The gateway drops it within one poll of the change feed.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    /// An order of `who`, placed through the gateway and waited for until it is CONFIRMED.
    pub(crate) async fn confirmed_order(&self, who: &Developer, key: &str) -> String {
        let json = order_json(key, "");
        let placed = call(
            self.gateway,
            Protocol::Grpc,
            PLACE_ORDER,
            &json,
            &[("x-api-key", &who.secret)],
            &[],
        )
        .await;
        assert_eq!(placed.code, 0, "{placed:?}");
        let order_id = placed.messages[0]["order"]["order_id"]
            .as_str()
            .unwrap()
            .to_string();
        for _ in 0..200 {
            let order = self
                .mesh
                .orders
                .clone()
                .get_order(opb::GetOrderRequest {
                    order_id: order_id.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .order
                .unwrap();
            if order.status == opb::OrderStatus::Confirmed as i32 {
                return order_id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("order {order_id} was not confirmed in time")
    }

    /// The gateway's metrics page.
    pub(crate) async fn gateway_metrics(&self) -> String {
        crate::support::http_get(&format!("http://127.0.0.1:{}/metrics", 9080 + self.mesh.offset)).await
    }
}

/// A PlaceOrder request as JSON: a mug, a good card, for `customer` (empty: the key's own).
pub(crate) fn order_json(key: &str, customer: &str) -> String {
    serde_json::json!({
        "idempotency_key": key,
        "customer_email": customer,
        "items": [{"product_id": "mug", "quantity": 1}],
        "shipping_address": {
            "recipient_name": "Ada Lovelace", "street_lines": ["12 St James's Square"],
            "city": "London", "postal_code": "SW1Y 4JH", "country_code": "GB"
        },
        "card": {"number": GOOD, "expiry_month": 12, "expiry_year": 2099, "cvc": "123", "holder_name": "A L"}
    })
    .to_string()
}

fn orders_of(outcome: &Outcome) -> Vec<String> {
    assert_eq!(outcome.code, 0, "{outcome:?}");
    outcome.messages[0]["orders"]
        .as_array()
        .map(|orders| {
            orders
                .iter()
                .map(|o| o["order_id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Finding 1: a request trailer naming the victim made ListOrders and
/// GetOrder answer with the victim's orders, over HTTP/2 and over HTTP/1.1
/// chunked gRPC-Web, with or without mTLS inside the mesh.
async fn trailers_never_change_whose_orders_a_key_reads(tls: bool) {
    let f = Fixture::up(tls).await;
    f.plan("roomy", 500.0, 500, 0).await;
    let ada = f.developer("ada", "roomy").await;
    let mallory = f.developer("mallory", "roomy").await;
    let order = f.confirmed_order(&ada, "t-1").await;
    let forged: &[(&str, &str)] = &[
        ("x-ferrymesh-customer-email", "ada@example.com"),
        ("x-ferrymesh-principal", "internal"),
        ("x-ferrymesh-developer-id", "ada"),
    ];
    let key = [("x-api-key", mallory.secret.as_str())];
    for protocol in crate::protocols::EVERY_PROTOCOL.iter().filter(|p| {
        matches!(
            p,
            Protocol::Grpc | Protocol::WebProto { h2: true } | Protocol::WebJson { h2: true }
        )
    }) {
        let listed = call(f.gateway, *protocol, LIST_ORDERS, "{}", &key, forged).await;
        assert!(orders_of(&listed).is_empty(), "{protocol:?} trailers: {listed:?}");
        let got = call(
            f.gateway,
            *protocol,
            GET_ORDER,
            &format!(r#"{{"order_id":"{order}"}}"#),
            &key,
            forged,
        )
        .await;
        assert_eq!(got.code, 5, "{protocol:?} trailers: {got:?}");
    }
    for protocol in [Protocol::WebProto { h2: false }, Protocol::WebJson { h2: false }] {
        let listed = http1_chunked(f.gateway, protocol, LIST_ORDERS, "{}", &key, forged).await;
        assert!(
            orders_of(&listed).is_empty(),
            "{protocol:?} chunked trailers: {listed:?}"
        );
    }
    // And Ada still sees hers, so the calls above were answered for Mallory.
    let hers = call(
        f.gateway,
        Protocol::Grpc,
        LIST_ORDERS,
        "{}",
        &[("x-api-key", &ada.secret)],
        &[],
    )
    .await;
    assert_eq!(orders_of(&hers), vec![order]);
    f.mesh.stop().await;
}

#[tokio::test]
async fn a_request_trailer_never_changes_whose_orders_a_key_reads() {
    trailers_never_change_whose_orders_a_key_reads(false).await;
}

#[tokio::test]
async fn a_request_trailer_never_changes_whose_orders_a_key_reads_under_mtls() {
    trailers_never_change_whose_orders_a_key_reads(true).await;
}

/// Under mTLS, identity metadata from any workload but the gateway is
/// refused by the service itself, in headers; in trailers it is dropped.
#[tokio::test]
async fn under_mtls_only_the_gateway_may_name_a_customer() {
    let f = Fixture::up(true).await;
    let certs = f.data.path().join("certs");
    let as_who = |who: &str| {
        std::sync::Arc::new(kit::tls::MeshTls::load(kit::tls::TlsArgs::from_dir(&certs, who)).unwrap())
    };
    let orders = |who: &str| {
        opb::orders_service_client::OrdersServiceClient::new(channel_as(
            50055 + f.mesh.offset,
            Some(&as_who(who)),
        ))
    };
    // Workflow may call FulfillmentService; naming a customer as it does is refused.
    let fulfillment = opb::order_fulfillment_service_client::OrderFulfillmentServiceClient::new(channel_as(
        50055 + f.mesh.offset,
        Some(&as_who("workflow")),
    ));
    let mut request = tonic::Request::new(opb::ConfirmOrderRequest {
        order_id: "ord-none".into(),
    });
    request
        .metadata_mut()
        .insert("x-ferrymesh-customer-email", "ada@example.com".parse().unwrap());
    request
        .metadata_mut()
        .insert("x-ferrymesh-principal", "key".parse().unwrap());
    let refused = fulfillment.clone().confirm_order(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("only the gateway"), "{refused:?}");
    // Without them, the same call reaches the handler (which knows no such order).
    let missing = fulfillment
        .clone()
        .confirm_order(opb::ConfirmOrderRequest {
            order_id: "ord-none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    // The gateway's certificate without a principal: refused, not unscoped.
    let refused = orders("gateway")
        .list_orders(opb::ListOrdersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    f.mesh.stop().await;
}

/// Finding 2: a non-ASCII email was accepted at sign-up, the identity
/// header could not be read, and orders took the key for unscoped.
#[tokio::test]
async fn a_non_ascii_email_is_refused_at_sign_up_and_an_unreadable_identity_is_never_unscoped() {
    let f = Fixture::up(false).await;
    let signed_up = call(
        f.gateway,
        Protocol::Grpc,
        REGISTER,
        r#"{"email":"mallöry@example.com","name":"M"}"#,
        &[],
        &[],
    )
    .await;
    assert_eq!(signed_up.code, 3, "{signed_up:?}");
    assert!(signed_up.message.contains("ASCII"), "{signed_up:?}");
    // The operator's own call refuses it too.
    let created = f
        .apikeys
        .clone()
        .create_developer(f.admin(apb::CreateDeveloperRequest {
            developer_id: "mallory".into(),
            email: "mallöry@example.com".into(),
            name: "M".into(),
            plan_id: "free".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(created.code(), tonic::Code::InvalidArgument, "{created:?}");
    // Orders, reached with an identity it cannot read (raw bytes that are
    // not ASCII), refuses the call instead of answering every customer's.
    let mut request = tonic::Request::new(opb::ListOrdersRequest::default());
    request.metadata_mut().insert(
        "x-ferrymesh-customer-email",
        tonic::metadata::AsciiMetadataValue::try_from("mallöry@example.com".as_bytes()).unwrap(),
    );
    request
        .metadata_mut()
        .insert("x-ferrymesh-principal", "key".parse().unwrap());
    request
        .metadata_mut()
        .insert("x-ferrymesh-developer-id", "mallory".parse().unwrap());
    request
        .metadata_mut()
        .insert("x-ferrymesh-key-id", "mallory-1".parse().unwrap());
    let refused = f.mesh.orders.clone().list_orders(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("cannot be read"), "{refused:?}");
    f.mesh.stop().await;
}

/// Finding 3: every keyless call to a random path added a metric series
/// (and an ERROR line), kept for good.
#[tokio::test]
async fn random_paths_add_no_metric_series_and_few_log_lines() {
    let f = Fixture::up(false).await;
    // One call first, so the page has its usual series.
    let _ = call(
        f.gateway,
        Protocol::Grpc,
        GET_PRODUCT,
        r#"{"product_id":"mug"}"#,
        &[],
        &[],
    )
    .await;
    let random = |from: usize, to: usize| async move {
        for i in from..to {
            let path = format!("/attack{i}.Service{i}/Method{i}");
            let (head, _, trailers) = crate::protocols::h2_call(
                f.gateway,
                &path,
                &[("content-type", "application/grpc"), ("te", "trailers")],
                vec![0, 0, 0, 0, 0],
                &[],
            )
            .await;
            let status = head
                .get("grpc-status")
                .or_else(|| trailers.as_ref().and_then(|t| t.get("grpc-status")))
                .cloned()
                .unwrap();
            assert_eq!(status, "12", "{path}");
        }
    };
    random(0, 20).await;
    let before = f.gateway_metrics().await.lines().count();
    random(20, 300).await;
    let page = f.gateway_metrics().await;
    let after = page.lines().count();
    assert_eq!(
        before, after,
        "280 more random paths grew the page from {before} lines"
    );
    assert!(!page.contains("attack"), "no label names a caller's path");
    assert!(page.contains(r#"rpc_method="unknown""#), "one unknown series");
    let logged = std::fs::read_to_string(f.data.path().join("logs/gateway.log")).unwrap();
    let lines = logged
        .lines()
        .filter(|l| l.contains("unknown") || l.contains("attack"))
        .count();
    assert!(lines <= 10, "{lines} log lines about 300 refused paths");
    f.mesh.stop().await;
}

/// Finding 4: each key of a developer had its own bucket, so chained
/// rotations multiplied the plan's burst.
#[tokio::test]
async fn more_keys_never_mean_more_calls() {
    let f = Fixture::up(false).await;
    f.plan("tight", 1.0, 5, 0).await;
    let dev = f.developer("rot", "tight").await;
    let mut keys = vec![dev.secret.clone()];
    for i in 2..=6 {
        keys.push(f.key("rot", &format!("rot-{i}")).await.secret);
    }
    let mut admitted = 0;
    for round in 0..3 {
        for secret in &keys {
            let got = call(
                f.gateway,
                Protocol::Grpc,
                GET_PRODUCT,
                r#"{"product_id":"mug"}"#,
                &[("x-api-key", secret)],
                &[],
            )
            .await;
            match got.code {
                0 => admitted += 1,
                8 => assert!(got.message.contains("plan `tight`"), "{got:?}"),
                other => panic!("round {round}: {other} {got:?}"),
            }
        }
    }
    // 18 calls in well under 3 s on six keys: the burst of 5, and at most
    // a token or two refilled; six buckets would have let 30 through.
    assert!((5..=8).contains(&admitted), "{admitted} of 18 admitted");
    f.mesh.stop().await;
}

/// Finding 5: signing up with a taken email answered an anonymous caller
/// with the developer's id, name, plan and key.
#[tokio::test]
async fn sign_up_never_discloses_an_existing_developer() {
    let f = Fixture::up(false).await;
    let first = call(
        f.gateway,
        Protocol::WebJson { h2: false },
        REGISTER,
        r#"{"email":"vic@example.com","name":"Victoria"}"#,
        &[],
        &[],
    )
    .await;
    assert_eq!(first.code, 0, "{first:?}");
    let developer_id = first.messages[0]["developer"]["developer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let key_id = first.messages[0]["key"]["key_id"].as_str().unwrap().to_string();
    for protocol in crate::protocols::EVERY_PROTOCOL {
        let again = call(
            f.gateway,
            *protocol,
            REGISTER,
            r#"{"email":"VIC@example.com","name":"Eve"}"#,
            &[],
            &[],
        )
        .await;
        assert_eq!(again.code, 6, "{protocol:?}: {again:?}");
        let said = format!("{} {}", again.message, again.text());
        for secret in [&developer_id, &key_id, "Victoria", "free"] {
            assert!(!said.contains(secret), "{protocol:?} discloses {secret}: {said}");
        }
    }
    f.mesh.stop().await;
}

/// Finding 6: RevokeMyKey told another developer's key from a missing one.
#[tokio::test]
async fn revoking_someone_elses_key_reads_as_revoking_a_missing_one() {
    let f = Fixture::up(false).await;
    let ada = f.developer("ada", "free").await;
    let bob = f.developer("bob", "free").await;
    let theirs = call(
        f.gateway,
        Protocol::Grpc,
        REVOKE_MY_KEY,
        &format!(r#"{{"key_id":"{}"}}"#, ada.key_id),
        &[("x-api-key", &bob.secret)],
        &[],
    )
    .await;
    let missing = call(
        f.gateway,
        Protocol::Grpc,
        REVOKE_MY_KEY,
        r#"{"key_id":"ada-9"}"#,
        &[("x-api-key", &bob.secret)],
        &[],
    )
    .await;
    assert_eq!((theirs.code, missing.code), (5, 5), "{theirs:?} {missing:?}");
    assert_eq!(
        theirs.message.replace(&ada.key_id, "ID"),
        missing.message.replace("ada-9", "ID"),
        "the same answer but for the id"
    );
    // Ada's key still works.
    let still = call(
        f.gateway,
        Protocol::Grpc,
        GET_PRODUCT,
        r#"{"product_id":"mug"}"#,
        &[("x-api-key", &ada.secret)],
        &[],
    )
    .await;
    assert_eq!(still.code, 0, "{still:?}");
    f.mesh.stop().await;
}

/// Finding 7: once the quota was spent, the owner could not even revoke
/// the leaked key that spent it; the portal's own calls are not metered.
#[tokio::test]
async fn a_developer_manages_their_keys_when_the_quota_is_spent_and_is_not_billed_for_it() {
    let f = Fixture::up(false).await;
    f.plan("three", 100.0, 100, 3).await;
    let owner = f.developer("own", "three").await;
    let thief = f.key("own", "own-2").await;
    for _ in 0..3 {
        let got = call(
            f.gateway,
            Protocol::Grpc,
            GET_PRODUCT,
            r#"{"product_id":"mug"}"#,
            &[("x-api-key", &thief.secret)],
            &[],
        )
        .await;
        assert_eq!(got.code, 0, "{got:?}");
    }
    let spent = call(
        f.gateway,
        Protocol::Grpc,
        GET_PRODUCT,
        r#"{"product_id":"mug"}"#,
        &[("x-api-key", &owner.secret)],
        &[],
    )
    .await;
    assert_eq!(spent.code, 8, "{spent:?}");
    // The portal works: usage read many times, the thief's key revoked.
    for _ in 0..5 {
        let usage = call(
            f.gateway,
            Protocol::WebJson { h2: false },
            GET_MY_USAGE,
            &usage_json(),
            &[("x-api-key", &owner.secret)],
            &[],
        )
        .await;
        assert_eq!(usage.code, 0, "{usage:?}");
    }
    let revoked = call(
        f.gateway,
        Protocol::Grpc,
        REVOKE_MY_KEY,
        r#"{"key_id":"own-2"}"#,
        &[("x-api-key", &owner.secret)],
        &[],
    )
    .await;
    assert_eq!(revoked.code, 0, "{revoked:?}");
    // Usage flushes every second; the portal's calls are not in it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let usage = call(
        f.gateway,
        Protocol::Grpc,
        GET_MY_USAGE,
        &usage_json(),
        &[("x-api-key", &owner.secret)],
        &[],
    )
    .await;
    assert_eq!(usage.code, 0, "{usage:?}");
    assert_eq!(int64(&usage.messages[0]["total"]), 3, "{usage:?}");
    f.mesh.stop().await;
}

const GET_MY_USAGE: &str = "/ferrymesh.apikeys.v1.DeveloperPortalService/GetMyUsage";

/// GetMyUsage over the last and the next day.
pub(crate) fn usage_json() -> String {
    let now = kit_values::now_micros();
    serde_json::json!({
        "start_time": kit_values::rfc3339(now - 86_000_000_000),
        "end_time": kit_values::rfc3339(now + 86_000_000_000),
        "granularity": "USAGE_GRANULARITY_DAY",
    })
    .to_string()
}

/// An int64 as canonical JSON carries it (a string), or a number.
fn int64(value: &serde_json::Value) -> i64 {
    value
        .as_str()
        .map(|s| s.parse().unwrap())
        .or_else(|| value.as_i64())
        .unwrap_or(0)
}

/// Finding 8: idempotency keys were global, so reusing another customer's
/// key answered ALREADY_EXISTS naming it.
#[tokio::test]
async fn idempotency_keys_belong_to_their_customer() {
    let f = Fixture::up(false).await;
    f.plan("roomy", 500.0, 500, 0).await;
    let ada = f.developer("ada", "roomy").await;
    let bob = f.developer("bob", "roomy").await;
    let hers = call(
        f.gateway,
        Protocol::Grpc,
        PLACE_ORDER,
        &order_json("order-1", ""),
        &[("x-api-key", &ada.secret)],
        &[],
    )
    .await;
    let his = call(
        f.gateway,
        Protocol::Grpc,
        PLACE_ORDER,
        &order_json("order-1", ""),
        &[("x-api-key", &bob.secret)],
        &[],
    )
    .await;
    assert_eq!((hers.code, his.code), (0, 0), "{hers:?} {his:?}");
    let (hers, his) = (&hers.messages[0]["order"], &his.messages[0]["order"]);
    assert_ne!(hers["order_id"], his["order_id"]);
    assert_eq!(his["customer_email"], "bob@example.com");
    assert_eq!(his["idempotency_key"], "order-1", "the key reads back as sent");
    // Each retry answers its own customer's order.
    let again = call(
        f.gateway,
        Protocol::Grpc,
        PLACE_ORDER,
        &order_json("order-1", ""),
        &[("x-api-key", &ada.secret)],
        &[],
    )
    .await;
    assert_eq!(again.messages[0]["order"]["order_id"], hers["order_id"]);
    f.mesh.stop().await;
}

/// Finding 9: gRPC-Web text with a Content-Length always failed, as
/// UNAVAILABLE naming the upstream's address, and was metered.
#[tokio::test]
async fn grpc_web_text_with_a_length_works_and_errors_name_no_internal_address() {
    let f = Fixture::up(false).await;
    f.plan("roomy", 500.0, 500, 0).await;
    let dev = f.developer("web", "roomy").await;
    for protocol in [Protocol::WebText { h2: false }, Protocol::WebText { h2: true }] {
        let got = call(
            f.gateway,
            protocol,
            GET_PRODUCT,
            r#"{"product_id":"mug"}"#,
            &[("x-api-key", &dev.secret)],
            &[],
        )
        .await;
        assert_eq!(got.code, 0, "{protocol:?}: {got:?}");
        assert_eq!(got.messages[0]["product"]["name"], "Mug", "{got:?}");
    }
    f.mesh.stop().await;
}

/// Finding 9, its other half: an upstream the gateway cannot reach is
/// UNAVAILABLE naming the service, not its address, and is not billed.
#[tokio::test]
async fn an_unreachable_upstream_is_named_by_its_service_not_its_address_and_not_billed() {
    let dir = tempfile::tempdir().unwrap();
    let gw = crate::gateway::Gateway::routed_to(dir, "http://127.0.0.1:9").await;
    let secret = gw.key_on(crate::gateway::plan("p"), "away").await;
    let status = gw.get(&secret).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("ferrymesh.catalog.v1"), "{status:?}");
    assert!(!status.message().contains("127.0.0.1"), "{status:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        gw.usage_total("away").await,
        0,
        "a call no upstream received is not billed"
    );
    gw.stop().await;
}

/// Finding 10: anonymous abuse was cheap. Junk sign-ups from one address
/// drained the bucket every address shared; a cross-origin `text/plain`
/// POST (a form a page can send without a preflight) registered a
/// developer; random keys cost apikeys a lookup each, unthrottled.
#[tokio::test]
async fn anonymous_abuse_is_bounded_per_client_and_a_plain_post_is_no_call() {
    let f = Fixture::up(false).await;
    // A junk sign-up spree from 127.0.0.2 ...
    let mut throttled = 0;
    for i in 0..40 {
        let json = format!(r#"{{"email":"junk{i}@example.com","name":"J"}}"#);
        if call_from("127.0.0.2", f.gateway, REGISTER, &json).await.code == 8 {
            throttled += 1;
        }
    }
    assert!(throttled >= 10, "the spree was throttled ({throttled} of 40)");
    // ... leaves a real sign-up from another address untouched.
    let real = call(
        f.gateway,
        Protocol::Grpc,
        REGISTER,
        r#"{"email":"real@example.com","name":"R"}"#,
        &[],
        &[],
    )
    .await;
    assert_eq!(real.code, 0, "{real:?}");

    // A text/plain POST carrying a well-framed sign-up is not a call.
    let message = apb::RegisterDeveloperRequest {
        email: "csrf@example.com".into(),
        name: "C".into(),
    };
    let mut body = vec![0u8];
    let bytes = prost::Message::encode_to_vec(&message);
    body.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&bytes);
    for content_type in [
        "text/plain",
        "application/grpc-webx",
        "application/x-www-form-urlencoded",
    ] {
        let answer = crate::console::http1(
            f.gateway,
            "POST",
            REGISTER,
            &[("content-type", content_type), ("origin", "https://evil.example")],
            &body,
        )
        .await;
        assert_eq!(answer.status, 415, "{content_type}");
        assert!(answer.header("access-control-allow-origin").is_none());
    }
    let again = call(
        f.gateway,
        Protocol::Grpc,
        REGISTER,
        r#"{"email":"csrf@example.com","name":"C"}"#,
        &[],
        &[],
    )
    .await;
    assert_eq!(
        again.code, 0,
        "csrf@example.com was not registered by the plain POSTs: {again:?}"
    );

    // Random keys on one connection: a few are looked up, then refused
    // without asking apikeys.
    let tcp = tokio::net::TcpStream::connect(f.gateway).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let (mut unknown, mut limited) = (0, 0);
    for i in 0..200 {
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{GET_PRODUCT}", f.gateway))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("x-api-key", format!("fmk_guess{i:040}"))
            .body(())
            .unwrap();
        let mut ready = client.clone().ready().await.unwrap();
        let (response, mut stream) = ready.send_request(request, false).unwrap();
        stream
            .send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
            .unwrap();
        let response = response.await.unwrap();
        match response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string())
            .as_deref()
        {
            Some("16") => unknown += 1,
            Some("8") => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    // The connection's burst of 40, and a few refilled at 20 a second.
    assert!(
        unknown <= 60 && limited >= 140,
        "{unknown} looked up, {limited} throttled"
    );
    let page = f.gateway_metrics().await;
    assert!(page.contains("ferrymesh"), "the gateway is still serving");
    f.mesh.stop().await;
}

/// A keyless gRPC call from `source` (a loopback address of its own).
async fn call_from(source: &str, gateway: SocketAddr, path: &str, json: &str) -> Outcome {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(gateway).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{gateway}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let message = serde_json::from_str::<serde_json::Value>(json).unwrap();
    let register = apb::RegisterDeveloperRequest {
        email: message["email"].as_str().unwrap().into(),
        name: message["name"].as_str().unwrap().into(),
    };
    let bytes = prost::Message::encode_to_vec(&register);
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&bytes);
    let mut ready = client.ready().await.unwrap();
    let (response, mut stream) = ready.send_request(request, false).unwrap();
    stream.send_data(bytes::Bytes::from(body), true).unwrap();
    let response = response.await.unwrap();
    let head = response.headers().clone();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let _ = chunk.unwrap();
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    let status = head
        .get("grpc-status")
        .or_else(|| trailers.get("grpc-status"))
        .unwrap();
    Outcome {
        code: status.to_str().unwrap().parse().unwrap(),
        message: String::new(),
        messages: Vec::new(),
    }
}
