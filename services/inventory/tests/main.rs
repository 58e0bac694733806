//! The inventory alone, over a real port and a real database: every scenario
//! runs once on SQLite and once on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod scenarios;
mod support;

kit_testing::on_sqlite_and_postgres!(
    crate::support::start;
    reserves_and_reports_stock,
    reservations_are_all_or_nothing,
    the_same_id_returns_the_first_result_and_other_items_are_refused,
    two_hundred_concurrent_reservations_never_oversell_the_last_units,
    concurrent_retries_of_one_reservation_take_stock_once,
    committing_and_releasing_are_idempotent_and_final,
    concurrent_commits_and_releases_settle_once,
    sixteen_identical_reservations_of_exactly_what_is_left_are_one,
    a_refused_reservation_leaves_its_id_free_for_the_retry,
    bad_input_names_the_field,
    received_stock_counts_once_per_receipt,
);
