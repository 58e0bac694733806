//! What a caller of the inventory sees, one scenario per function.

use futures_util::future::join_all;
use inventory::pb::ferrymesh::inventory::v1::{
    CommitReservationRequest, GetReservationRequest, GetStockRequest, ReleaseReservationRequest,
    ReservationStatus,
};
use kit_testing::{assert_invalid, assert_status};
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::{Inventory, InventoryCalls, reserve_request};

pub(crate) async fn reserves_and_reports_stock(inventory: &Inventory) {
    let reservation = inventory
        .reserve("order-1", &[("mug", 2), ("watch", 1)])
        .await
        .unwrap()
        .reservation
        .unwrap();
    assert_eq!(reservation.reservation_id, "order-1");
    assert_eq!(reservation.status, ReservationStatus::Reserved as i32);
    let items: Vec<(String, i32)> = reservation
        .items
        .into_iter()
        .map(|i| (i.sku, i.quantity))
        .collect();
    assert_eq!(items, [("mug".to_string(), 2), ("watch".to_string(), 1)]);
    let mug = inventory.level("mug").await;
    assert_eq!((mug.on_hand, mug.reserved, mug.available), (200, 2, 198));
    let levels = inventory
        .client()
        .get_stock(GetStockRequest {
            skus: vec!["watch".into(), "mug".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .levels;
    let skus: Vec<&str> = levels.iter().map(|l| l.sku.as_str()).collect();
    assert_eq!(skus, ["watch", "mug"], "levels come in the order asked");
}

pub(crate) async fn reservations_are_all_or_nothing(inventory: &Inventory) {
    let status = inventory
        .reserve("order-2", &[("mug", 1), ("city-bike", 4)])
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::FailedPrecondition,
        "not enough stock: city-bike (requested 4, available 3)",
    );
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("ErrorInfo");
    assert_eq!(info.reason, "INSUFFICIENT_STOCK");
    assert_eq!(
        info.metadata.get("city-bike").map(String::as_str),
        Some("requested 4, available 3")
    );
    assert_eq!(
        inventory.level("mug").await.reserved,
        0,
        "the mug was not held either"
    );
    // The failed id is not used up.
    inventory
        .reserve("order-2", &[("mug", 1), ("city-bike", 3)])
        .await
        .unwrap();
}

pub(crate) async fn the_same_id_returns_the_first_result_and_other_items_are_refused(inventory: &Inventory) {
    let first = inventory
        .reserve("order-3", &[("terrarium", 2)])
        .await
        .unwrap()
        .reservation
        .unwrap();
    let again = inventory
        .reserve("order-3", &[("terrarium", 2)])
        .await
        .unwrap()
        .reservation
        .unwrap();
    assert_eq!(first, again, "a retry returns the first result");
    assert_eq!(
        inventory.level("terrarium").await.reserved,
        2,
        "and holds nothing more"
    );
    let status = inventory
        .reserve("order-3", &[("terrarium", 3)])
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::AlreadyExists,
        "reservation `order-3` already exists with other items",
    );
}

pub(crate) async fn two_hundred_concurrent_reservations_never_oversell_the_last_units(inventory: &Inventory) {
    inventory.reserve("setup", &[("sunglasses", 95)]).await.unwrap();
    let calls = (0..200).map(|i| {
        let mut client = inventory.client();
        async move {
            client
                .reserve_stock(reserve_request(&format!("rush-{i}"), &[("sunglasses", 1)]))
                .await
        }
    });
    let results = join_all(calls).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<&tonic::Status> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(won, 5, "exactly the 5 units left were sold");
    assert_eq!(refused.len(), 195);
    assert!(
        refused.iter().all(|s| s.code() == Code::FailedPrecondition),
        "{:?}",
        refused.first()
    );
    let row = inventory.stored("sunglasses").await;
    assert_eq!((row.on_hand, row.reserved), (100, 100));
    assert!(row.on_hand - row.reserved >= 0);
}

pub(crate) async fn concurrent_retries_of_one_reservation_take_stock_once(inventory: &Inventory) {
    let calls = (0..20).map(|_| {
        let mut client = inventory.client();
        async move {
            client
                .reserve_stock(reserve_request("retried", &[("loafers", 3), ("mug", 1)]))
                .await
        }
    });
    let results = join_all(calls).await;
    let reservations: Vec<_> = results
        .into_iter()
        .map(|r| r.unwrap().into_inner().reservation.unwrap())
        .collect();
    assert!(
        reservations.iter().all(|r| r == &reservations[0]),
        "every retry sees the same reservation"
    );
    assert_eq!(inventory.stored("loafers").await.reserved, 3);
    assert_eq!(inventory.stored("mug").await.reserved, 1);
}

pub(crate) async fn committing_and_releasing_are_idempotent_and_final(inventory: &Inventory) {
    let mut client = inventory.client();
    inventory.reserve("sold", &[("watch", 2)]).await.unwrap();
    for _ in 0..2 {
        let committed = client
            .commit_reservation(CommitReservationRequest {
                reservation_id: "sold".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(committed.status, ReservationStatus::Committed as i32);
    }
    let watch = inventory.level("watch").await;
    assert_eq!(
        (watch.on_hand, watch.reserved),
        (48, 0),
        "committed once: the units left the warehouse"
    );
    let status = client
        .release_reservation(ReleaseReservationRequest {
            reservation_id: "sold".into(),
        })
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::FailedPrecondition,
        "reservation `sold` is COMMITTED and cannot be released",
    );

    inventory.reserve("abandoned", &[("watch", 5)]).await.unwrap();
    for _ in 0..2 {
        let released = client
            .release_reservation(ReleaseReservationRequest {
                reservation_id: "abandoned".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(released.status, ReservationStatus::Released as i32);
    }
    let watch = inventory.level("watch").await;
    assert_eq!(
        (watch.on_hand, watch.reserved, watch.available),
        (48, 0, 48),
        "released once: back on the shelf"
    );
    let status = client
        .commit_reservation(CommitReservationRequest {
            reservation_id: "abandoned".into(),
        })
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::FailedPrecondition,
        "reservation `abandoned` is RELEASED and cannot be committed",
    );
    let status = client
        .commit_reservation(CommitReservationRequest {
            reservation_id: "never-made".into(),
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::NotFound, "reservation `never-made` does not exist");
    // Each reads back as it stands, for an audit; reading changes nothing.
    for (id, want) in [
        ("sold", ReservationStatus::Committed),
        ("abandoned", ReservationStatus::Released),
    ] {
        let read = client
            .get_reservation(GetReservationRequest {
                reservation_id: id.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(read.status, want as i32, "{id}");
    }
    let status = client
        .get_reservation(GetReservationRequest {
            reservation_id: "never-made".into(),
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::NotFound, "reservation `never-made` does not exist");
    assert_eq!(inventory.level("watch").await.on_hand, 48);
}

pub(crate) async fn concurrent_commits_and_releases_settle_once(inventory: &Inventory) {
    inventory.reserve("race", &[("candle-holder", 4)]).await.unwrap();
    let commits = (0..10).map(|_| {
        let mut client = inventory.client();
        async move {
            client
                .commit_reservation(CommitReservationRequest {
                    reservation_id: "race".into(),
                })
                .await
        }
    });
    let releases = (0..10).map(|_| {
        let mut client = inventory.client();
        async move {
            client
                .release_reservation(ReleaseReservationRequest {
                    reservation_id: "race".into(),
                })
                .await
        }
    });
    let (commits, releases) = futures_util::join!(join_all(commits), join_all(releases));
    let committed = commits.iter().filter(|r| r.is_ok()).count();
    let released = releases.iter().filter(|r| r.is_ok()).count();
    assert!(
        (committed == 10 && released == 0) || (committed == 0 && released == 10),
        "one transition wins and the other is refused every time: {committed} commits, {released} releases"
    );
    let row = inventory.stored("candle-holder").await;
    assert_eq!(row.reserved, 0);
    assert_eq!(row.on_hand, if committed == 10 { 56 } else { 60 });
}

pub(crate) async fn bad_input_names_the_field(inventory: &Inventory) {
    let status = inventory.reserve("", &[("mug", 1)]).await.unwrap_err();
    assert_invalid(&status, "reservation_id", "must not be empty");
    let status = inventory.reserve("bad id!", &[("mug", 1)]).await.unwrap_err();
    assert_invalid(&status, "reservation_id", "must be 1 to 128 letters");
    let status = inventory.reserve("r", &[("mug", 0)]).await.unwrap_err();
    assert_invalid(&status, "items[0].quantity", "must be 1 to 10000, got 0");
    let status = inventory.reserve("r", &[("mug", 1_000_000)]).await.unwrap_err();
    assert_invalid(&status, "items[0].quantity", "got 1000000");
    let status = inventory
        .reserve("r", &[("mug", 1), ("Bad SKU", 1)])
        .await
        .unwrap_err();
    assert_invalid(&status, "items[1].sku", "lowercase letters, digits or hyphens");
    let status = inventory.reserve("r", &[]).await.unwrap_err();
    assert_invalid(&status, "items", "must hold 1 to 100 items, got 0");
    let status = inventory.reserve("r", &[("spaceship", 1)]).await.unwrap_err();
    assert_invalid(&status, "sku", "\"spaceship\" is not a SKU the inventory stocks");
    let status = inventory
        .client()
        .get_stock(GetStockRequest {
            skus: vec!["spaceship".into()],
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "sku", "\"spaceship\" is not a SKU the inventory stocks");
    let status = inventory
        .client()
        .get_stock(GetStockRequest { skus: vec![] })
        .await
        .unwrap_err();
    assert_invalid(&status, "skus", "must hold 1 to 100 SKUs, got 0");
}

/// The saga retries ReserveStock with one id; retries racing each other for
/// exactly the units left must all be that one reservation, on PostgreSQL
/// as on SQLite. Several rounds, so a race that loses only sometimes shows.
pub(crate) async fn sixteen_identical_reservations_of_exactly_what_is_left_are_one(inventory: &Inventory) {
    for (round, sku) in [
        "film-camera",
        "vintage-typewriter",
        "loafers",
        "terrarium",
        "espresso-grinder",
    ]
    .into_iter()
    .enumerate()
    {
        let before = inventory.level(sku).await;
        // Leave exactly 5 units.
        let hold = i32::try_from(before.available - 5).unwrap();
        if hold > 0 {
            inventory
                .reserve(&format!("hold-{round}"), &[(sku, hold)])
                .await
                .unwrap();
        }
        assert_eq!(inventory.level(sku).await.available, 5);
        let id = format!("last-five-{round}");
        let calls = (0..16).map(|_| {
            let mut client = inventory.client();
            let request = reserve_request(&id, &[(sku, 5)]);
            async move { client.reserve_stock(request).await }
        });
        let answers: Vec<_> = join_all(calls)
            .await
            .into_iter()
            .map(|r| r.map(|r| r.into_inner().reservation.unwrap()))
            .collect();
        let first = answers[0]
            .clone()
            .unwrap_or_else(|s| panic!("round {round}: {s:?}"));
        for answer in &answers {
            assert_eq!(
                answer.as_ref().ok(),
                Some(&first),
                "round {round}: every call answers the one reservation"
            );
        }
        assert_eq!(first.status, ReservationStatus::Reserved as i32);
        let row = inventory.stored(sku).await;
        assert_eq!(
            row.on_hand - row.reserved,
            0,
            "round {round}: the 5 units were taken once"
        );
        let db = &inventory.server.db;
        assert_eq!(
            db.count(&format!("reservations WHERE reservation_id = '{id}'"))
                .await,
            1
        );
        assert_eq!(
            db.count(&format!("reservation_items WHERE reservation_id = '{id}'"))
                .await,
            1
        );
        assert_eq!(
            db.count(&format!(
                "idempotency_keys WHERE scope = 'inventory.reserve' AND key = '{id}'"
            ))
            .await,
            1
        );

        // Then Commit races Release for it: one of them wins, the other is refused, once.
        let commits = (0..8).map(|_| {
            let mut client = inventory.client();
            let reservation_id = id.clone();
            async move {
                client
                    .commit_reservation(CommitReservationRequest { reservation_id })
                    .await
            }
        });
        let releases = (0..8).map(|_| {
            let mut client = inventory.client();
            let reservation_id = id.clone();
            async move {
                client
                    .release_reservation(ReleaseReservationRequest { reservation_id })
                    .await
            }
        });
        let (commits, releases) = futures_util::join!(join_all(commits), join_all(releases));
        let committed = commits.iter().filter(|r| r.is_ok()).count();
        let released = releases.iter().filter(|r| r.is_ok()).count();
        assert!(
            (committed, released) == (8, 0) || (committed, released) == (0, 8),
            "round {round}: one transition wins every call: {committed} commits, {released} releases"
        );
        let refused = commits
            .iter()
            .filter_map(|r| r.as_ref().err())
            .chain(releases.iter().filter_map(|r| r.as_ref().err()));
        for refused in refused {
            assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        }
        let row = inventory.stored(sku).await;
        let expected_on_hand = if committed == 8 {
            before.on_hand - 5
        } else {
            before.on_hand
        };
        assert_eq!(
            (row.on_hand, row.reserved),
            (expected_on_hand, i64::from(hold.max(0))),
            "round {round}: settled once"
        );
    }
}

/// A refused call leaves nothing behind, not even its claim on the id: the
/// saga's retry with the same id succeeds once the stock is there.
pub(crate) async fn a_refused_reservation_leaves_its_id_free_for_the_retry(inventory: &Inventory) {
    inventory.reserve("holder", &[("city-bike", 3)]).await.unwrap();
    let status = inventory
        .reserve("retry-me", &[("city-bike", 2)])
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::FailedPrecondition,
        "not enough stock: city-bike (requested 2, available 0)",
    );
    assert_eq!(
        inventory
            .server
            .db
            .count("idempotency_keys WHERE key = 'retry-me'")
            .await,
        0
    );
    inventory
        .client()
        .release_reservation(ReleaseReservationRequest {
            reservation_id: "holder".into(),
        })
        .await
        .unwrap();
    let retried = inventory.reserve("retry-me", &[("city-bike", 2)]).await.unwrap();
    assert_eq!(
        retried.reservation.unwrap().status,
        ReservationStatus::Reserved as i32
    );
    assert_eq!(inventory.level("city-bike").await.available, 1);
}

pub(crate) async fn received_stock_counts_once_per_receipt(inventory: &Inventory) {
    use inventory::pb::ferrymesh::inventory::v1::{ReceiveStockRequest, ReservationItem};
    let receive = |id: &str, items: &[(&str, i32)]| {
        let mut client = inventory.client();
        let request = ReceiveStockRequest {
            receipt_id: id.into(),
            items: items
                .iter()
                .map(|(sku, quantity)| ReservationItem {
                    sku: sku.to_string(),
                    quantity: *quantity,
                })
                .collect(),
        };
        async move { client.receive_stock(request).await.map(|r| r.into_inner().levels) }
    };
    let before = inventory
        .client()
        .get_stock(GetStockRequest {
            skus: vec!["city-bike".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .levels[0]
        .on_hand;
    // Sixteen deliveries of the same receipt at once count once.
    let calls = (0..16).map(|_| receive("delivery-1", &[("city-bike", 20)]));
    for levels in join_all(calls).await {
        assert_eq!(levels.unwrap()[0].on_hand, before + 20);
    }
    let status = receive("delivery-1", &[("city-bike", 21)]).await.unwrap_err();
    assert_status(&status, Code::AlreadyExists, "delivery-1");
    let status = receive("delivery-2", &[("city-bike", 5), ("no-such-sku", 1)])
        .await
        .unwrap_err();
    assert_invalid(&status, "sku", "is not a SKU the inventory stocks");
    let after = receive("delivery-3", &[("city-bike", 1)]).await.unwrap();
    assert_eq!(
        after[0].on_hand,
        before + 21,
        "the refused delivery added nothing"
    );
    let status = receive("", &[("city-bike", 1)]).await.unwrap_err();
    assert_invalid(&status, "receipt_id", "must not be empty");
    let status = receive("delivery-4", &[("city-bike", 0)]).await.unwrap_err();
    assert_invalid(&status, "items[0].quantity", "must be 1 to 10000");
}
