//! What a caller of payments sees, one scenario per function.

use futures_util::future::join_all;
use kit_testing::{assert_invalid, assert_status};
use payments::pb::ferrymesh::payments::v1::{GetPaymentRequest, PaymentStatus};
use sea_orm::EntityTrait;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::{
    DECLINED_CARD, FLAKY_CARD, GOOD_CARD, Payments, PaymentsCalls, card, charge_request, usd,
};

pub(crate) async fn charges_a_card_and_keeps_only_brand_and_last_four(payments: &Payments) {
    let payment = payments
        .charge(charge_request("pay-1", usd(12, 500_000_000), GOOD_CARD))
        .await
        .unwrap();
    assert_eq!(payment.payment_id, "pay-1");
    assert_eq!(payment.order_id, "order-of-pay-1");
    assert_eq!(payment.amount, Some(usd(12, 500_000_000)));
    assert_eq!(payment.refunded_amount, Some(usd(0, 0)));
    assert_eq!(payment.status, PaymentStatus::Captured as i32);
    assert_eq!(
        (payment.card_brand.as_str(), payment.card_last4.as_str()),
        ("visa", "4242")
    );
    let read = payments
        .client()
        .get_payment(GetPaymentRequest {
            payment_id: "pay-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(read, payment);

    // Read past the service: no column holds the card number.
    let db = sea_orm::Database::connect(payments.server.db.url.as_str())
        .await
        .unwrap();
    let rows = payments::store::payment::Entity::find().all(&db).await.unwrap();
    let stored = format!("{rows:?}");
    assert!(
        !stored.contains("4242424242424242") && !stored.contains("4242 4242"),
        "{stored}"
    );
    assert!(stored.contains("card_last4: \"4242\""), "{stored}");
    db.close().await.unwrap();
}

pub(crate) async fn a_repeated_charge_has_the_effect_of_one(payments: &Payments) {
    let first = payments
        .charge(charge_request("pay-2", usd(30, 0), GOOD_CARD))
        .await
        .unwrap();
    let calls = (0..20).map(|_| payments.charge(charge_request("pay-2", usd(30, 0), GOOD_CARD)));
    for again in join_all(calls).await {
        assert_eq!(again.unwrap(), first, "a retry returns the first payment");
    }
    let status = payments
        .charge(charge_request("pay-2", usd(31, 0), GOOD_CARD))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::AlreadyExists,
        "payment `pay-2` already exists with other details",
    );

    // Twenty concurrent first calls: one charge.
    let calls = (0..20).map(|_| payments.charge(charge_request("pay-3", usd(5, 0), GOOD_CARD)));
    let results: Vec<_> = join_all(calls).await.into_iter().map(Result::unwrap).collect();
    assert!(results.iter().all(|p| p == &results[0]));
    let db = sea_orm::Database::connect(payments.server.db.url.as_str())
        .await
        .unwrap();
    let rows = payments::store::payment::Entity::find().all(&db).await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.payment_id == "pay-3").count(), 1);
    db.close().await.unwrap();
}

pub(crate) async fn the_declined_card_is_refused_with_a_reason(payments: &Payments) {
    for _ in 0..2 {
        let status = payments
            .charge(charge_request("pay-4", usd(10, 0), DECLINED_CARD))
            .await
            .unwrap_err();
        assert_status(
            &status,
            Code::FailedPrecondition,
            "the card ending 0002 was declined (CARD_DECLINED)",
        );
        let info = status
            .get_error_details()
            .error_info()
            .cloned()
            .expect("ErrorInfo");
        assert_eq!(info.reason, "CARD_DECLINED");
        assert_eq!(info.metadata.get("card_last4").map(String::as_str), Some("0002"));
    }
    let status = payments
        .client()
        .get_payment(GetPaymentRequest {
            payment_id: "pay-4".into(),
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::NotFound, "payment `pay-4` does not exist");
    let status = payments
        .charge(charge_request("pay-5", usd(10, 0), "4000 0000 0000 9995"))
        .await
        .unwrap_err();
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "INSUFFICIENT_FUNDS"
    );
}

pub(crate) async fn the_flaky_card_fails_once_then_succeeds_on_retry(payments: &Payments) {
    let status = payments
        .charge(charge_request("pay-6", usd(10, 0), FLAKY_CARD))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unavailable, "retry with the same payment_id");
    assert!(
        status.get_error_details().retry_info().is_some(),
        "UNAVAILABLE says when to retry"
    );
    let payment = payments
        .charge(charge_request("pay-6", usd(10, 0), FLAKY_CARD))
        .await
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Captured as i32);
    assert_eq!(payment.card_last4, "0119");
    // Every new payment fails its own first attempt.
    let status = payments
        .charge(charge_request("pay-7", usd(10, 0), FLAKY_CARD))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

pub(crate) async fn refunds_are_idempotent_and_never_exceed_the_charge(payments: &Payments) {
    payments
        .charge(charge_request("pay-8", usd(12, 500_000_000), GOOD_CARD))
        .await
        .unwrap();
    let first = payments.refund("ref-1", "pay-8", usd(5, 0)).await.unwrap();
    let again = payments.refund("ref-1", "pay-8", usd(5, 0)).await.unwrap();
    assert_eq!(first, again, "a retried refund returns the first result");
    let payment = again.payment.unwrap();
    assert_eq!(payment.refunded_amount, Some(usd(5, 0)));
    assert_eq!(payment.status, PaymentStatus::PartiallyRefunded as i32);
    let status = payments.refund("ref-1", "pay-8", usd(6, 0)).await.unwrap_err();
    assert_status(
        &status,
        Code::AlreadyExists,
        "refund `ref-1` already exists with other details",
    );

    let status = payments.refund("ref-2", "pay-8", usd(8, 0)).await.unwrap_err();
    assert_status(
        &status,
        Code::FailedPrecondition,
        "a refund of 8.00 USD exceeds the 7.50 USD still refundable",
    );
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "REFUND_EXCEEDS_CHARGE"
    );
    let done = payments
        .refund("ref-3", "pay-8", usd(7, 500_000_000))
        .await
        .unwrap()
        .payment
        .unwrap();
    assert_eq!(done.status, PaymentStatus::Refunded as i32);
    let refunds: Vec<&str> = done.refunds.iter().map(|r| r.refund_id.as_str()).collect();
    assert_eq!(refunds, ["ref-1", "ref-3"]);
    let status = payments
        .refund("ref-4", "pay-8", usd(0, 10_000_000))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::FailedPrecondition,
        "exceeds the 0.00 USD still refundable",
    );
}

pub(crate) async fn concurrent_refunds_never_exceed_the_charge(payments: &Payments) {
    payments
        .charge(charge_request("pay-9", usd(10, 0), GOOD_CARD))
        .await
        .unwrap();
    let calls = (0..10).map(|i| payments.refund_owned(format!("rush-{i}"), "pay-9", usd(2, 0)));
    let results = join_all(calls).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        5,
        "only 5 x 2.00 fit in 10.00"
    );
    let payment = payments
        .client()
        .get_payment(GetPaymentRequest {
            payment_id: "pay-9".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(payment.refunded_amount, Some(usd(10, 0)));
    assert_eq!(payment.refunds.len(), 5);

    // One refund retried concurrently is one refund.
    payments
        .charge(charge_request("pay-10", usd(10, 0), GOOD_CARD))
        .await
        .unwrap();
    let retries = (0..10).map(|_| payments.refund("same-refund", "pay-10", usd(3, 0)));
    let answers: Vec<_> = join_all(retries).await.into_iter().map(Result::unwrap).collect();
    assert!(answers.iter().all(|a| a.refund == answers[0].refund));
    let payment = payments
        .client()
        .get_payment(GetPaymentRequest {
            payment_id: "pay-10".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(payment.refunded_amount, Some(usd(3, 0)));
    assert_eq!(payment.refunds.len(), 1);
}

pub(crate) async fn bad_input_names_the_field(payments: &Payments) {
    let status = payments
        .charge(charge_request("pay-x", usd(10, 0), "4242 4242 4242 4241"))
        .await
        .unwrap_err();
    assert_invalid(&status, "card.number", "fails the Luhn check");
    let status = payments
        .charge(charge_request("pay-x", usd(10, 0), "4242"))
        .await
        .unwrap_err();
    assert_invalid(&status, "card.number", "must be 12 to 19 digits");
    let mut expired = charge_request("pay-x", usd(10, 0), GOOD_CARD);
    expired.card = Some(kit_values::pb::ferrymesh::common::v1::PaymentCard {
        expiry_year: 2020,
        ..card(GOOD_CARD)
    });
    let status = payments.charge(expired).await.unwrap_err();
    assert_invalid(&status, "card.expiry_year", "the card expired in 12/2020");
    let status = payments
        .charge(charge_request("pay-x", usd(-5, 0), GOOD_CARD))
        .await
        .unwrap_err();
    assert_invalid(&status, "amount", "must be more than zero, got -5.00 USD");
    let status = payments
        .charge(charge_request("pay-x", usd(0, 0), GOOD_CARD))
        .await
        .unwrap_err();
    assert_invalid(&status, "amount", "must be more than zero");
    let mut mixed_sign = charge_request("pay-x", usd(5, -1), GOOD_CARD);
    mixed_sign.order_id = String::new();
    let status = payments.charge(mixed_sign).await.unwrap_err();
    assert_invalid(&status, "amount", "units and nanos must have the same sign");
    assert_invalid(&status, "order_id", "must be 1 to 128 characters");
    let mut no_card = charge_request("", usd(5, 0), GOOD_CARD);
    no_card.card = None;
    let status = payments.charge(no_card).await.unwrap_err();
    assert_invalid(&status, "card", "is required");
    assert_invalid(&status, "payment_id", "must not be empty");

    payments
        .charge(charge_request("pay-y", usd(10, 0), GOOD_CARD))
        .await
        .unwrap();
    let euros = kit_values::pb::ferrymesh::common::v1::Money {
        currency_code: "EUR".into(),
        units: 1,
        nanos: 0,
    };
    let status = payments.refund("ref-eur", "pay-y", euros).await.unwrap_err();
    assert_invalid(
        &status,
        "amount.currency_code",
        "the refund is in EUR but payment `pay-y` was charged in USD",
    );
    let status = payments
        .refund("ref-z", "pay-nobody", usd(1, 0))
        .await
        .unwrap_err();
    assert_status(&status, Code::NotFound, "payment `pay-nobody` does not exist");
}

/// The saga retries Charge and Refund with one id. Retries racing each other
/// for exactly the amount left must all be that one refund, and identical
/// charges one charge, on PostgreSQL as on SQLite.
pub(crate) async fn sixteen_identical_calls_for_exactly_what_is_left_are_one(payments: &Payments) {
    for round in 0..5 {
        let payment_id = format!("pay-limit-{round}");
        let charges = (0..16).map(|_| payments.charge(charge_request(&payment_id, usd(30, 0), GOOD_CARD)));
        let charged: Vec<_> = join_all(charges).await;
        let first = charged[0]
            .clone()
            .unwrap_or_else(|s| panic!("round {round}: {s:?}"));
        for answer in &charged {
            assert_eq!(answer.as_ref().ok(), Some(&first), "round {round}: one charge");
        }
        let db = &payments.server.db;
        assert_eq!(
            db.count(&format!("payments WHERE payment_id = '{payment_id}'"))
                .await,
            1
        );

        // Leave exactly 20.00, then refund exactly that, 16 times at once with one id.
        payments
            .refund(&format!("part-{round}"), &payment_id, usd(10, 0))
            .await
            .unwrap();
        let refund_id = format!("rest-{round}");
        let refunds = (0..16).map(|_| payments.refund(&refund_id, &payment_id, usd(20, 0)));
        let answers: Vec<_> = join_all(refunds).await;
        let first = answers[0]
            .clone()
            .unwrap_or_else(|s| panic!("round {round}: {s:?}"));
        for answer in &answers {
            assert_eq!(
                answer.as_ref().ok().map(|a| &a.refund),
                Some(&first.refund),
                "round {round}: every call answers the one refund"
            );
        }
        let payment = payments
            .client()
            .get_payment(GetPaymentRequest {
                payment_id: payment_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(payment.refunded_amount, Some(usd(30, 0)), "round {round}");
        assert_eq!(payment.status, PaymentStatus::Refunded as i32);
        assert_eq!(
            db.count(&format!("refunds WHERE payment_id = '{payment_id}'"))
                .await,
            2
        );
    }
}

/// A retry must match the charge exactly: 30.009 is not 30.001, even though
/// both print as 30.00.
pub(crate) async fn a_retry_for_another_fraction_of_a_cent_is_another_charge(payments: &Payments) {
    payments
        .charge(charge_request("pay-fraction", usd(30, 1_000_000), GOOD_CARD))
        .await
        .unwrap();
    let status = payments
        .charge(charge_request("pay-fraction", usd(30, 9_000_000), GOOD_CARD))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::AlreadyExists,
        "payment `pay-fraction` already exists with other details",
    );
    payments
        .refund("ref-fraction", "pay-fraction", usd(1, 1))
        .await
        .unwrap();
    let status = payments
        .refund("ref-fraction", "pay-fraction", usd(1, 2))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::AlreadyExists,
        "refund `ref-fraction` already exists",
    );
}

pub(crate) async fn a_card_token_charges_like_the_card_and_keeps_no_number(payments: &Payments) {
    use payments::pb::ferrymesh::payments::v1::TokenizeCardRequest;
    let tokenize = |number: &str| {
        let mut client = payments.client();
        let card = card(number);
        async move {
            client
                .tokenize_card(TokenizeCardRequest { card: Some(card) })
                .await
                .map(|r| r.into_inner())
        }
    };
    let good = tokenize(GOOD_CARD).await.unwrap();
    assert!(
        good.card_token.starts_with("tok_") && good.card_token.len() == 36,
        "{}",
        good.card_token
    );
    assert_eq!(
        (good.card_brand.as_str(), good.card_last4.as_str()),
        ("visa", "4242")
    );
    assert!(good.expire_time.is_some());
    let by_token = |payment_id: &str, token: &str| {
        let mut request = charge_request(payment_id, usd(7, 0), GOOD_CARD);
        request.card = None;
        request.card_token = token.to_string();
        request
    };
    let payment = payments
        .charge(by_token("pay-tok-1", &good.card_token))
        .await
        .unwrap();
    assert_eq!(
        (payment.card_brand.as_str(), payment.card_last4.as_str()),
        ("visa", "4242")
    );
    // A retry by token is the same charge.
    assert_eq!(
        payments
            .charge(by_token("pay-tok-1", &good.card_token))
            .await
            .unwrap(),
        payment
    );

    // The test cards behave the same through a token.
    let declined = tokenize(DECLINED_CARD).await.unwrap();
    let status = payments
        .charge(by_token("pay-tok-2", &declined.card_token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(status.get_details_error_info().unwrap().reason, "CARD_DECLINED");
    let flaky = tokenize(FLAKY_CARD).await.unwrap();
    let status = payments
        .charge(by_token("pay-tok-3", &flaky.card_token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    payments
        .charge(by_token("pay-tok-3", &flaky.card_token))
        .await
        .unwrap();

    // An unknown token, a malformed one, and both card and token.
    let unknown = format!("tok_{}", "0".repeat(32));
    let status = payments
        .charge(by_token("pay-tok-4", &unknown))
        .await
        .unwrap_err();
    assert_status(&status, Code::FailedPrecondition, "unknown or expired");
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "CARD_TOKEN_EXPIRED"
    );
    let status = payments
        .charge(by_token("pay-tok-5", "tok_nope"))
        .await
        .unwrap_err();
    assert_invalid(&status, "card_token", "must be a token from TokenizeCard");
    let mut both = by_token("pay-tok-6", &good.card_token);
    both.card = Some(card(GOOD_CARD));
    let status = payments.charge(both).await.unwrap_err();
    assert_invalid(&status, "card_token", "not both");
    let status = payments
        .client()
        .tokenize_card(TokenizeCardRequest { card: None })
        .await
        .unwrap_err();
    assert_invalid(&status, "card", "is required");

    // Read past the service: the token table keeps no card number either.
    let db = sea_orm::Database::connect(payments.server.db.url.as_str())
        .await
        .unwrap();
    let rows = payments::store::card_token::Entity::find()
        .all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let stored = format!("{rows:?}");
    for number in [GOOD_CARD, DECLINED_CARD, FLAKY_CARD] {
        assert!(
            !stored.contains(&number.replace(' ', "")) && !stored.contains(number),
            "{stored}"
        );
    }
    db.close().await.unwrap();
}
