//! Payments alone, over a real port and a real database: every scenario
//! runs once on SQLite and once on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod scenarios;
mod support;

kit_testing::on_sqlite_and_postgres!(
    crate::support::start;
    charges_a_card_and_keeps_only_brand_and_last_four,
    a_repeated_charge_has_the_effect_of_one,
    the_declined_card_is_refused_with_a_reason,
    the_flaky_card_fails_once_then_succeeds_on_retry,
    refunds_are_idempotent_and_never_exceed_the_charge,
    concurrent_refunds_never_exceed_the_charge,
    sixteen_identical_calls_for_exactly_what_is_left_are_one,
    a_retry_for_another_fraction_of_a_cent_is_another_charge,
    bad_input_names_the_field,
    a_card_token_charges_like_the_card_and_keeps_no_number,
);
