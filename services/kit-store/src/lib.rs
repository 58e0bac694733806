//! Persistence for ferrymesh services: connecting and migrating (sea-orm on
//! SQLite or PostgreSQL, readers beside the writer), page tokens, and the
//! one idempotency mechanism every mutating RPC with a caller-chosen id uses
//! (see [`idempotency`]). Every statement run inside a sampled trace is a
//! span of its own.

#![forbid(unsafe_code)]

pub mod db;
mod db_spans;
pub mod idempotency;
pub mod paging;

pub use db::{
    Db, Pool, connect_and_migrate, connect_and_migrate_with, ensure_postgres_database, is_unique_violation,
};
pub use idempotency::{Claim, IdempotencyError, Pending, claim};
