//! Persistence for ferrymesh services: connecting and migrating (sea-orm on
//! SQLite or PostgreSQL, readers beside the writer), page tokens, and the
//! one idempotency mechanism every mutating RPC with a caller-chosen id uses
//! (see [`idempotency`]).

#![forbid(unsafe_code)]

pub mod db;
pub mod idempotency;
pub mod paging;

pub use db::{Db, connect_and_migrate, is_unique_violation};
pub use idempotency::{Claim, IdempotencyError, Pending, claim};
