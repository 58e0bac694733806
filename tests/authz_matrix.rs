//! The authorization matrix: every public method (and a sample of the
//! operator's and the private ones), in every protocol the gateway serves,
//! for every kind of caller (the key's owner, another customer, a revoked
//! key, no key, the operator's token), through the real gateway under `up`
//! and `up --tls`. Each cell is run twice: as sent, and with forged
//! identity metadata naming the victim in the headers and in request
//! trailers; the outcome must not change.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::fixture::{Fixture, order_json};
use crate::protocols::{EVERY_PROTOCOL, Outcome, call};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// Ada, whose order and spare key the rows name.
    Own,
    /// Bob, another customer.
    Other,
    /// Carol's key, revoked.
    Revoked,
    /// Nobody: no key.
    NoKey,
    /// The admin token (`authorization: Bearer`), and no key.
    Operator,
}

const CALLERS: [Caller; 5] = [
    Caller::Own,
    Caller::Other,
    Caller::Revoked,
    Caller::NoKey,
    Caller::Operator,
];

/// What a cell must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This gRPC status code.
    Code(i32),
    /// Any of these (a call whose outcome depends on the cells before it).
    Codes(&'static [i32]),
    /// OK, and Ada's thing (her order, her key) is in the answer, or not.
    Sees(bool),
}

const OK: i32 = 0;
const INVALID: i32 = 3;
const NOT_FOUND: i32 = 5;
const DENIED: i32 = 7;
const PRECONDITION: i32 = 9;
const UNIMPLEMENTED: i32 = 12;
const UNAUTHENTICATED: i32 = 16;

/// What the rows' requests need to name.
struct Names {
    order: String,
    spare_key: String,
    period: String,
}

struct Row {
    path: &'static str,
    json: fn(&Names, u32) -> String,
    /// For Own and Other; the other callers follow from the kind of method.
    own: Expect,
    other: Expect,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    /// Public: a key is needed.
    Public,
    /// Public, and open to callers without a key (signing up).
    Anonymous,
    /// The operator's, with the admin token.
    Operator,
    /// Public, and an operator's too: with the admin token and no key, the
    /// operator sees what the owner sees (an order, for the console).
    PublicAndOperator,
    /// Not served through the gateway at all.
    Private,
}

impl Row {
    fn expect(&self, caller: Caller) -> Expect {
        match (self.kind, caller) {
            (Kind::Private, _) => Expect::Code(UNIMPLEMENTED),
            (Kind::Operator, Caller::Operator) => Expect::Code(OK),
            (Kind::Operator, _) => Expect::Code(UNAUTHENTICATED),
            (Kind::PublicAndOperator, Caller::Operator) => self.own,
            (_, Caller::Own) => self.own,
            (_, Caller::Other) => self.other,
            (_, Caller::Revoked) => Expect::Code(DENIED),
            (Kind::Anonymous, Caller::NoKey | Caller::Operator) => Expect::Code(OK),
            (Kind::Public | Kind::PublicAndOperator, Caller::NoKey) | (Kind::Public, Caller::Operator) => {
                Expect::Code(UNAUTHENTICATED)
            }
        }
    }
}

fn public(path: &'static str, json: fn(&Names, u32) -> String) -> Row {
    Row {
        path,
        json,
        own: Expect::Code(OK),
        other: Expect::Code(OK),
        kind: Kind::Public,
    }
}

fn scoped(path: &'static str, json: fn(&Names, u32) -> String, own: Expect, other: Expect) -> Row {
    Row {
        path,
        json,
        own,
        other,
        kind: Kind::Public,
    }
}

/// A public row an operator may call too.
fn for_operators_too(row: Row) -> Row {
    Row {
        kind: Kind::PublicAndOperator,
        ..row
    }
}

fn other(path: &'static str, kind: Kind) -> Row {
    Row {
        path,
        json: |_, _| "{}".into(),
        own: Expect::Code(OK),
        other: Expect::Code(OK),
        kind,
    }
}

/// One page holds every order the matrix places (newest first).
const PAGE: &str = r#"{"page_size":100}"#;

fn order_id(names: &Names, _: u32) -> String {
    format!(r#"{{"order_id":"{}"}}"#, names.order)
}

fn rows() -> Vec<Row> {
    use Expect::{Code, Codes, Sees};
    vec![
        public("/ferrymesh.catalog.v1.CatalogService/ListProducts", |_, _| {
            "{}".into()
        }),
        public("/ferrymesh.catalog.v1.CatalogService/GetProduct", |_, _| {
            r#"{"product_id":"mug"}"#.into()
        }),
        public("/ferrymesh.catalog.v1.CatalogService/SearchProducts", |_, _| {
            r#"{"query":"mug"}"#.into()
        }),
        public("/ferrymesh.inventory.v1.InventoryService/GetStock", |_, _| {
            r#"{"skus":["mug"]}"#.into()
        }),
        public("/ferrymesh.shipping.v1.ShippingService/GetQuote", |_, _| {
            r#"{"address":{"recipient_name":"A","street_lines":["1 A St"],"city":"London","postal_code":"N1 1AA","country_code":"GB"},"items":[{"sku":"mug","quantity":1,"unit_weight_grams":300}]}"#.into()
        }),
        scoped(
            "/ferrymesh.orders.v1.OrdersService/GetOrder",
            order_id,
            Sees(true),
            Code(NOT_FOUND),
        ),
        scoped(
            "/ferrymesh.orders.v1.OrdersService/ListOrders",
            |_, _| PAGE.into(),
            Sees(true),
            Sees(false),
        ),
        scoped(
            "/ferrymesh.orders.v1.OrdersService/PlaceOrder",
            |_, n| {
                let mut v: serde_json::Value =
                    serde_json::from_str(&order_json("", "ada@example.com")).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("idempotency_key");
                o.insert("request_id".into(), format!("v1-{n}").into());
                o.insert(
                    "items".into(),
                    serde_json::json!([{"product_id": "mug", "quantity": 1}]),
                );
                v.to_string()
            },
            Code(OK),
            Code(DENIED),
        ),
        for_operators_too(scoped(
            "/ferrymesh.orders.v2.OrdersService/GetOrder",
            order_id,
            Sees(true),
            Code(NOT_FOUND),
        )),
        scoped(
            "/ferrymesh.orders.v2.OrdersService/GetOrderGraph",
            order_id,
            Code(OK),
            Code(NOT_FOUND),
        ),
        scoped(
            "/ferrymesh.orders.v2.OrdersService/WatchOrder",
            order_id,
            Sees(true),
            Code(NOT_FOUND),
        ),
        scoped(
            "/ferrymesh.orders.v2.OrdersService/CancelOrder",
            |names, _| format!(r#"{{"order_id":"{}","reason":"matrix"}}"#, names.order),
            Code(PRECONDITION),
            Code(NOT_FOUND),
        ),
        scoped(
            "/ferrymesh.orders.v2.OrdersService/ListOrders",
            |_, _| PAGE.into(),
            Sees(true),
            Sees(false),
        ),
        scoped(
            "/ferrymesh.orders.v2.OrdersService/ListOrders",
            |_, _| r#"{"customer_email":"ada@example.com","page_size":100}"#.into(),
            Sees(true),
            Code(DENIED),
        ),
        scoped(
            "/ferrymesh.orders.v2.OrdersService/PlaceOrder",
            |_, n| order_json(&format!("v2-{n}"), "ada@example.com"),
            Code(OK),
            Code(DENIED),
        ),
        Row {
            path: "/ferrymesh.apikeys.v1.DeveloperPortalService/RegisterDeveloper",
            json: |_, n| format!(r#"{{"email":"m{n}@example.com","name":"M"}}"#),
            own: Code(OK),
            other: Code(OK),
            kind: Kind::Anonymous,
        },
        scoped(
            "/ferrymesh.apikeys.v1.DeveloperPortalService/ListMyKeys",
            |_, _| "{}".into(),
            Sees(true),
            Sees(false),
        ),
        scoped(
            "/ferrymesh.apikeys.v1.DeveloperPortalService/GetMyUsage",
            |_, _| crate::fixture::usage_json(),
            Code(OK),
            Code(OK),
        ),
        scoped(
            "/ferrymesh.apikeys.v1.DeveloperPortalService/GetMyInvoice",
            |names, _| format!(r#"{{"period":"{}"}}"#, names.period),
            Code(OK),
            Code(OK),
        ),
        scoped(
            "/ferrymesh.apikeys.v1.DeveloperPortalService/RevokeMyKey",
            |names, _| format!(r#"{{"key_id":"{}"}}"#, names.spare_key),
            Code(OK),
            Code(NOT_FOUND),
        ),
        scoped(
            "/ferrymesh.apikeys.v1.DeveloperPortalService/RotateMyKey",
            |_, _| r#"{"grace_period":"3600s"}"#.into(),
            // The first rotation of a key works; the key it rotated may not rotate again.
            Codes(&[OK, PRECONDITION]),
            Codes(&[OK, PRECONDITION]),
        ),
        for_operators_too(scoped(
            "/ferrymesh.orders.v2.OrdersService/GetOrder",
            |_, _| r#"{"order_id":""}"#.into(),
            Code(INVALID),
            Code(INVALID),
        )),
        other(
            "/ferrymesh.workflow.v1.WorkflowService/ListExecutions",
            Kind::Operator,
        ),
        other(
            "/ferrymesh.apikeys.v1.ApiKeysService/ListDevelopers",
            Kind::Operator,
        ),
        other(
            "/ferrymesh.inventory.v1.InventoryService/ReserveStock",
            Kind::Private,
        ),
        other("/ferrymesh.payments.v1.PaymentsService/Charge", Kind::Private),
        other(
            "/ferrymesh.apikeys.v1.ApiKeysService/CreateDeveloper",
            Kind::Private,
        ),
        other(
            "/ferrymesh.orders.v2.OrderFulfillmentService/ConfirmOrder",
            Kind::Private,
        ),
        other(
            "/ferrymesh.workflow.v1.WorkflowService/StartExecution",
            Kind::Private,
        ),
    ]
}

/// The identity a forger would like to have: Ada's, or no one's (unscoped).
const FORGED: &[(&str, &str)] = &[
    ("x-ferrymesh-customer-email", "ada@example.com"),
    ("x-ferrymesh-principal", "internal"),
    ("x-ferrymesh-developer-id", "ada"),
    ("x-ferrymesh-key-id", "ada-1"),
];

fn verdict(expect: Expect, outcome: &Outcome, needle: &str) -> bool {
    match expect {
        Expect::Code(code) => outcome.code == code,
        Expect::Codes(codes) => codes.contains(&outcome.code),
        Expect::Sees(sees) => outcome.code == OK && outcome.text().contains(needle) == sees,
    }
}

async fn matrix(tls: bool) {
    let f = Fixture::up(tls).await;
    // The matrix calls the portal far faster than a person would.
    f.reconfigure(
        "self_service_rate = 5.0\nself_service_burst = 20",
        "self_service_rate = 5000.0\nself_service_burst = 5000",
    )
    .await;
    f.plan("roomy", 5000.0, 5000, 0).await;
    let ada = f.developer("ada", "roomy").await;
    let spare = f.key("ada", "ada-spare").await;
    let bob = f.developer("bob", "roomy").await;
    let carol = f.developer("carol", "roomy").await;
    f.revoke(&carol.key_id).await;
    let names = Names {
        order: f.confirmed_order(&ada, "matrix-1").await,
        spare_key: spare.key_id.clone(),
        period: kit_values::rfc3339(kit_values::now_micros())[..7].to_string(),
    };
    let bearer = format!("Bearer {}", f.token);
    let counter = AtomicU32::new(0);
    let (mut cells, mut failures) = (0, Vec::new());
    for forged in [false, true] {
        for row in rows() {
            for protocol in EVERY_PROTOCOL.iter().copied() {
                for caller in CALLERS {
                    let mut headers: Vec<(&str, &str)> = match caller {
                        Caller::Own => vec![("x-api-key", &ada.secret)],
                        Caller::Other => vec![("x-api-key", &bob.secret)],
                        Caller::Revoked => vec![("x-api-key", &carol.secret)],
                        Caller::NoKey => vec![],
                        Caller::Operator => vec![("authorization", &bearer)],
                    };
                    let trailers = if forged { FORGED } else { &[] };
                    if forged {
                        headers.extend_from_slice(FORGED);
                    }
                    let json = (row.json)(&names, counter.fetch_add(1, Ordering::Relaxed));
                    let outcome = call(f.gateway, protocol, row.path, &json, &headers, trailers).await;
                    let needle = if row.path.contains("MyKeys") {
                        "ada-1"
                    } else {
                        &names.order
                    };
                    let expect = row.expect(caller);
                    cells += 1;
                    if !verdict(expect, &outcome, needle) {
                        failures.push(format!(
                            "{} {protocol:?} {caller:?}{}: expected {expect:?}, got {} {:?}",
                            row.path,
                            if forged { " (forged)" } else { "" },
                            outcome.code,
                            outcome.message
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every protocol was tried: the JSON form too reached the orders of Ada.
    assert!(cells >= 2 * 29 * 7 * 5, "{cells} cells");
    f.mesh.stop().await;
}

#[tokio::test]
async fn every_public_method_in_every_protocol_answers_each_caller_as_the_matrix_says() {
    matrix(false).await;
}

#[tokio::test]
async fn the_matrix_holds_under_mutual_tls_inside_the_mesh() {
    matrix(true).await;
}

#[test]
fn the_matrix_covers_every_public_method_of_the_local_mesh() {
    let pool = gateway::web::contracts().unwrap();
    let rows = rows();
    let covered = |path: &str| rows.iter().any(|r| r.path == path);
    let mut missing = Vec::new();
    for service in pool.services() {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            let public = gateway::config::PUBLIC_METHODS
                .iter()
                .any(|p| kit_values::MethodPattern::parse(p).unwrap().matches(&path));
            if public && !covered(&path) {
                missing.push(path);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "public methods not in the matrix: {missing:?}"
    );
}
