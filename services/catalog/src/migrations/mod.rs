//! The catalog's schema and seed data, applied in order at start-up.

use sea_orm_migration::prelude::*;

// sea-orm's MigrationTrait is written with the lifetime elided; its impls must match.
#[allow(elided_lifetimes_in_paths)]
mod m20261125_000001_create_products;
#[allow(elided_lifetimes_in_paths)]
mod m20261125_000002_seed_products;

/// Applies the catalog's migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_products::Migration),
            Box::new(m20261125_000002_seed_products::Migration),
        ]
    }
}
