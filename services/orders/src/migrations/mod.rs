//! The orders schema, applied in order at start-up.

use sea_orm_migration::prelude::*;

// sea-orm's MigrationTrait is written with the lifetime elided; its impls must match.
#[allow(elided_lifetimes_in_paths)]
mod m20261125_000001_create_orders;
#[allow(elided_lifetimes_in_paths)]
mod m20261128_000002_add_saga_columns;
#[allow(elided_lifetimes_in_paths)]
mod m20261207_000003_scope_idempotency_keys;

/// Applies the orders migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_orders::Migration),
            Box::new(kit_store::idempotency::migration::Migration),
            Box::new(m20261128_000002_add_saga_columns::Migration),
            Box::new(m20261207_000003_scope_idempotency_keys::Migration),
        ]
    }
}
