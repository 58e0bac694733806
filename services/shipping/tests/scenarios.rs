//! What a caller of shipping sees, one scenario per function.

use futures_util::future::join_all;
use kit_testing::fixtures::usd;
use kit_testing::{assert_invalid, assert_status};
use shipping::pb::ferrymesh::shipping::v1::{
    CancelShipmentRequest, GetQuoteRequest, GetShipmentRequest, ShipmentStatus,
};
use tonic::Code;

use crate::support::{Shipping, ShippingCalls, address, create_request, item};

pub(crate) async fn quotes_follow_weight_and_zone(shipping: &Shipping) {
    let quote = |country: &str, items| {
        let mut client = shipping.client();
        let request = GetQuoteRequest {
            address: Some(address(country)),
            items,
        };
        async move { client.get_quote(request).await.unwrap().into_inner() }
    };
    let domestic = quote("US", vec![item("mug", 3, 300)]).await;
    assert_eq!(
        (domestic.cost, domestic.zone.as_str(), domestic.estimated_days),
        (Some(usd(5, 990_000_000)), "domestic", 3)
    );
    let europe = quote("DE", vec![item("city-bike", 1, 12_500)]).await;
    assert_eq!(
        (europe.cost, europe.zone.as_str(), europe.estimated_days),
        (Some(usd(66, 990_000_000)), "europe", 7)
    );
    let again = quote("DE", vec![item("city-bike", 1, 12_500)]).await;
    assert_eq!(again.cost, Some(usd(66, 990_000_000)), "prices are deterministic");
    assert_eq!(quote("JP", vec![item("mug", 1, 300)]).await.zone, "international");
}

pub(crate) async fn no_carrier_serves_antarctica(shipping: &Shipping) {
    use tonic_types::StatusExt;
    let status = shipping
        .create(create_request("ship-aq", "AQ"))
        .await
        .unwrap_err();
    assert_status(&status, Code::FailedPrecondition, "no carrier delivers to AQ");
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "UNSERVED_DESTINATION"
    );
    let status = shipping
        .client()
        .get_quote(GetQuoteRequest {
            address: Some(address("AQ")),
            items: vec![item("mug", 1, 300)],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    // Nothing was booked: the id stays free.
    shipping.create(create_request("ship-aq", "US")).await.unwrap();
}

pub(crate) async fn a_repeated_shipment_has_the_effect_of_one(shipping: &Shipping) {
    let first = shipping.create(create_request("ship-1", "GB")).await.unwrap();
    assert_eq!(first.status, ShipmentStatus::Created as i32);
    assert!(
        first.tracking_number.starts_with("FM") && first.tracking_number.len() == 14,
        "{}",
        first.tracking_number
    );
    assert_eq!(
        first.cost,
        Some(usd(18, 990_000_000)),
        "europe, 720 g: 14.99 + 4.00"
    );
    let calls = (0..20).map(|_| shipping.create(create_request("ship-1", "GB")));
    for again in join_all(calls).await {
        assert_eq!(again.unwrap(), first);
    }
    let concurrent = (0..20).map(|_| shipping.create(create_request("ship-2", "US")));
    let results: Vec<_> = join_all(concurrent)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        results.iter().all(|s| s == &results[0]),
        "concurrent first calls book one shipment"
    );
    let read = shipping
        .client()
        .get_shipment(GetShipmentRequest {
            shipment_id: "ship-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .shipment
        .unwrap();
    assert_eq!(read, first);
    let status = shipping.create(create_request("ship-1", "FR")).await.unwrap_err();
    assert_status(
        &status,
        Code::AlreadyExists,
        "shipment `ship-1` already exists with another order, address or items",
    );
}

pub(crate) async fn a_cancelled_shipment_stays_cancelled(shipping: &Shipping) {
    shipping.create(create_request("ship-3", "US")).await.unwrap();
    let cancel = |reason: &str| {
        let mut client = shipping.client();
        let request = CancelShipmentRequest {
            shipment_id: "ship-3".into(),
            reason: reason.into(),
        };
        async move {
            client
                .cancel_shipment(request)
                .await
                .unwrap()
                .into_inner()
                .shipment
                .unwrap()
        }
    };
    let cancelled = cancel("payment failed").await;
    assert_eq!(cancelled.status, ShipmentStatus::Cancelled as i32);
    assert_eq!(cancelled.cancel_reason, "payment failed");
    let again = cancel("second thoughts").await;
    assert_eq!(
        again, cancelled,
        "cancelling again changes nothing, not even the reason"
    );
    let recreated = shipping.create(create_request("ship-3", "US")).await.unwrap();
    assert_eq!(
        recreated.status,
        ShipmentStatus::Cancelled as i32,
        "a retried creation does not revive it"
    );
}

pub(crate) async fn bad_input_names_the_field(shipping: &Shipping) {
    let mut request = create_request("", "usa");
    request.items = vec![item("mug", 0, 0)];
    let status = shipping.create(request).await.unwrap_err();
    assert_invalid(&status, "shipment_id", "must not be empty");
    assert_invalid(
        &status,
        "address.country_code",
        "must be a two-letter ISO 3166-1 code such as \"US\", got \"usa\"",
    );
    assert_invalid(&status, "items[0].quantity", "must be 1 to 10000, got 0");
    assert_invalid(
        &status,
        "items[0].unit_weight_grams",
        "must be 1 to 1000000, got 0",
    );

    let mut request = create_request("ship-x", "US");
    request.address = Some(kit_values::pb::ferrymesh::common::v1::Address {
        street_lines: vec![],
        city: String::new(),
        ..address("US")
    });
    let status = shipping.create(request).await.unwrap_err();
    assert_invalid(&status, "address.street_lines", "must have 1 to 3 lines, got 0");
    assert_invalid(&status, "address.city", "must not be empty");

    let mut request = create_request("ship-x", "US");
    request.address = None;
    request.items.clear();
    let status = shipping.create(request).await.unwrap_err();
    assert_invalid(&status, "address", "is required");
    assert_invalid(&status, "items", "must hold 1 to 100 items, got 0");

    let status = shipping
        .client()
        .get_quote(GetQuoteRequest {
            address: Some(address("US")),
            items: vec![item("Not A Sku", 1, 1)],
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "items[0].sku", "lowercase letters, digits or hyphens");

    let status = shipping
        .client()
        .get_shipment(GetShipmentRequest {
            shipment_id: "nowhere".into(),
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::NotFound, "shipment `nowhere` does not exist");
    let status = shipping
        .client()
        .cancel_shipment(CancelShipmentRequest {
            shipment_id: "nowhere".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::NotFound, "shipment `nowhere` does not exist");
}

/// The saga retries CreateShipment and, compensating, CancelShipment with one
/// id: retries racing each other are one shipment and one cancellation.
pub(crate) async fn sixteen_identical_creates_and_cancels_are_one(shipping: &Shipping) {
    for round in 0..5 {
        let id = format!("ship-limit-{round}");
        let creates = (0..16).map(|_| shipping.create(create_request(&id, "DE")));
        let created: Vec<_> = join_all(creates).await;
        let first = created[0]
            .clone()
            .unwrap_or_else(|s| panic!("round {round}: {s:?}"));
        for answer in &created {
            assert_eq!(answer.as_ref().ok(), Some(&first), "round {round}: one shipment");
        }
        let db = &shipping.server.db;
        assert_eq!(
            db.count(&format!("shipments WHERE shipment_id = '{id}'")).await,
            1
        );

        let cancels = (0..16).map(|i| {
            let mut client = shipping.client();
            let request = CancelShipmentRequest {
                shipment_id: id.clone(),
                reason: format!("payment failed ({i})"),
            };
            async move {
                client
                    .cancel_shipment(request)
                    .await
                    .map(|r| r.into_inner().shipment)
            }
        });
        let cancelled: Vec<_> = join_all(cancels).await;
        let first = cancelled[0]
            .clone()
            .unwrap_or_else(|s| panic!("round {round}: {s:?}"));
        for answer in &cancelled {
            assert_eq!(
                answer.as_ref().ok(),
                Some(&first),
                "round {round}: one cancellation"
            );
        }
        let first = first.unwrap();
        assert_eq!(first.status, ShipmentStatus::Cancelled as i32);
        assert_eq!(
            db.count(&format!(
                "shipments WHERE shipment_id = '{id}' AND status = 'CANCELLED'"
            ))
            .await,
            1
        );
    }
}
