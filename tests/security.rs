//! The security regression suite, identity: each finding of the identity
//! review that let one customer act as another, tried as the attacker
//! tried it through the gateway's public port of a real `ferrymesh up` (and
//! `up --tls` where the mesh's own TLS matters). Each test failed on the
//! code before its fix. The abuse findings are in `security_abuse.rs`.

use apikeys::pb::ferrymesh::apikeys::v1 as apb;
use orders::pb::ferrymesh::orders::v2 as opb;

use crate::fixture::{Fixture, GET_ORDER, LIST_ORDERS, PLACE_ORDER, REGISTER, order_json, orders_of};
use crate::protocols::{Protocol, call, http1_chunked};
use crate::support::mesh::channel_as;

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
            f.mesh.port("orders"),
            Some(&as_who(who)),
        ))
    };
    // Workflow may call FulfillmentService; naming a customer as it does is refused.
    let fulfillment = opb::order_fulfillment_service_client::OrderFulfillmentServiceClient::new(channel_as(
        f.mesh.port("orders"),
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
    let _ = f.get_product("").await;
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
