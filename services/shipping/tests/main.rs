//! Shipping alone, over a real port and a real database: every scenario
//! runs once on SQLite and once on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod scenarios;
mod support;

kit_testing::on_sqlite_and_postgres!(
    crate::support::start;
    quotes_follow_weight_and_zone,
    no_carrier_serves_antarctica,
    a_repeated_shipment_has_the_effect_of_one,
    a_cancelled_shipment_stays_cancelled,
    sixteen_identical_creates_and_cancels_are_one,
    bad_input_names_the_field,
);
