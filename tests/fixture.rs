//! A mesh under `ferrymesh up` (or `up --tls`) and the operator's hold on
//! it, for tests that play customers, developers and attackers against the
//! gateway: plans, developers and keys made through apikeys' admin API,
//! orders placed and waited for, the gateway's configuration edited as an
//! operator would.

use std::net::SocketAddr;
use std::time::Duration;

use apikeys::pb::ferrymesh::apikeys::v1 as apb;
use orders::pb::ferrymesh::orders::v2 as opb;
use tonic::transport::Channel;

use crate::protocols::{Outcome, Protocol, call};
use crate::support::mesh::{GOOD, Mesh, channel_as};

pub(crate) const LIST_ORDERS: &str = "/ferrymesh.orders.v2.OrdersService/ListOrders";
pub(crate) const GET_ORDER: &str = "/ferrymesh.orders.v2.OrdersService/GetOrder";
pub(crate) const PLACE_ORDER: &str = "/ferrymesh.orders.v2.OrdersService/PlaceOrder";
pub(crate) const REGISTER: &str = "/ferrymesh.apikeys.v1.DeveloperPortalService/RegisterDeveloper";
pub(crate) const REVOKE_MY_KEY: &str = "/ferrymesh.apikeys.v1.DeveloperPortalService/RevokeMyKey";
pub(crate) const GET_PRODUCT: &str = "/ferrymesh.catalog.v1.CatalogService/GetProduct";
pub(crate) const GET_MY_USAGE: &str = "/ferrymesh.apikeys.v1.DeveloperPortalService/GetMyUsage";

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
    pub(crate) apikeys: apb::api_keys_service_client::ApiKeysServiceClient<Channel>,
}

impl Fixture {
    pub(crate) async fn up(tls: bool) -> Fixture {
        let flags: &[&str] = if tls { &["--tls"] } else { &[] };
        Fixture::up_with(flags).await
    }

    /// As [`Fixture::up`], with more of `up`'s flags.
    pub(crate) async fn up_with(flags: &[&str]) -> Fixture {
        let tls = flags.contains(&"--tls");
        let data = tempfile::tempdir().unwrap();
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
        let gateway = format!("127.0.0.1:{}", mesh.port("gateway")).parse().unwrap();
        let apikeys = apb::api_keys_service_client::ApiKeysServiceClient::new(channel_as(
            mesh.port("apikeys"),
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

    pub(crate) fn admin<T>(&self, message: T) -> tonic::Request<T> {
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

    /// GetProduct of the mug through the gateway with `secret` (empty: no key).
    pub(crate) async fn get_product(&self, secret: &str) -> Outcome {
        let key = [("x-api-key", secret)];
        let headers: &[(&str, &str)] = if secret.is_empty() { &[] } else { &key };
        call(
            self.gateway,
            Protocol::Grpc,
            GET_PRODUCT,
            r#"{"product_id":"mug"}"#,
            headers,
            &[],
        )
        .await
    }

    /// The gateway's metrics page.
    pub(crate) async fn gateway_metrics(&self) -> String {
        crate::support::http_get(&format!(
            "http://127.0.0.1:{}/metrics",
            crate::support::admin_port("gateway", self.mesh.offset)
        ))
        .await
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

pub(crate) fn orders_of(outcome: &Outcome) -> Vec<String> {
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
pub(crate) fn int64(value: &serde_json::Value) -> i64 {
    value
        .as_str()
        .map(|s| s.parse().unwrap())
        .or_else(|| value.as_i64())
        .unwrap_or(0)
}
