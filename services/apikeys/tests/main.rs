//! apikeys alone, over a real port and a real database: every scenario
//! runs once on SQLite and once on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod scenarios;
mod support;

kit_testing::on_sqlite_and_postgres!(
    crate::support::ApiKeys::start;
    admin_calls_need_the_admin_token,
    plans_are_checked_and_idempotent,
    secrets_are_shown_once_and_stored_only_hashed,
    revoking_refuses_the_key_and_feeds_the_change,
    rotation_keeps_both_keys_in_the_grace_period_and_the_quota,
    usage_and_invoices_count_every_call_once,
    developers_serve_themselves_through_the_portal,
    the_same_email_registered_at_once_is_one_developer,
    developers_revoke_their_own_keys_and_read_their_invoice,
    a_developer_cannot_revoke_their_last_usable_key,
);
