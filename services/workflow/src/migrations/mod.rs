//! The workflow schema, applied in order at start-up.

use sea_orm_migration::prelude::*;

// sea-orm's MigrationTrait is written with the lifetime elided; its impls must match.
#[allow(elided_lifetimes_in_paths)]
mod m20261128_000001_create_tables;
#[allow(elided_lifetimes_in_paths)]
mod m20261207_000002_leases;
#[allow(elided_lifetimes_in_paths)]
mod m20261207_000003_attention;

/// Applies the workflow migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_create_tables::Migration),
            Box::new(m20261207_000002_leases::Migration),
            Box::new(m20261207_000003_attention::Migration),
        ]
    }
}
