use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    IdempotencyKey,
}

/// Idempotency keys are kept scoped by customer (`HASH16/KEY`), longer than
/// the 128 characters a key may be. SQLite does not enforce a length.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .modify_column(ColumnDef::new(Orders::IdempotencyKey).string_len(160).null())
                    .to_owned(),
            )
            .await
    }
}
