use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum UsagePlans {
    Table,
    PlanId,
    Settings,
    CreateMicros,
}

#[derive(DeriveIden)]
enum Developers {
    Table,
    DeveloperId,
    Email,
    Name,
    PlanId,
    CreateMicros,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    KeyId,
    DeveloperId,
    Name,
    Prefix,
    SecretHash,
    Status,
    CreateMicros,
    RevokeMicros,
    ExpireMicros,
    ReplacedBy,
}

#[derive(DeriveIden)]
enum KeyChanges {
    Table,
    ChangeId,
    KeyId,
    DeveloperId,
    PlanId,
    CreateMicros,
}

#[derive(DeriveIden)]
enum UsageCounts {
    Table,
    KeyId,
    Method,
    Stage,
    MinuteMicros,
    DeveloperId,
    Calls,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Name,
    Value,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            usage_plans(),
            developers(),
            api_keys(),
            key_changes(),
            usage_counts(),
            settings(),
        ];
        for table in tables {
            manager.create_table(table).await?;
        }
        for index in [api_keys_by_developer(), usage_counts_by_developer()] {
            manager.create_index(index).await?;
        }
        Ok(())
    }
}

/// The usage plans, each with its settings as JSON.
fn usage_plans() -> TableCreateStatement {
    Table::create()
        .table(UsagePlans::Table)
        .col(
            ColumnDef::new(UsagePlans::PlanId)
                .string_len(64)
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(UsagePlans::Settings).text().not_null())
        .col(ColumnDef::new(UsagePlans::CreateMicros).big_integer().not_null())
        .to_owned()
}

/// Developers, one per email.
fn developers() -> TableCreateStatement {
    Table::create()
        .table(Developers::Table)
        .col(
            ColumnDef::new(Developers::DeveloperId)
                .string_len(64)
                .not_null()
                .primary_key(),
        )
        .col(
            ColumnDef::new(Developers::Email)
                .string_len(254)
                .not_null()
                .unique_key(),
        )
        .col(ColumnDef::new(Developers::Name).string_len(512).not_null())
        .col(ColumnDef::new(Developers::PlanId).string_len(64).not_null())
        .col(ColumnDef::new(Developers::CreateMicros).big_integer().not_null())
        .to_owned()
}

/// Keys: only the secret's hash is kept.
fn api_keys() -> TableCreateStatement {
    Table::create()
        .table(ApiKeys::Table)
        .col(
            ColumnDef::new(ApiKeys::KeyId)
                .string_len(64)
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(ApiKeys::DeveloperId).string_len(64).not_null())
        .col(ColumnDef::new(ApiKeys::Name).string_len(512).not_null())
        .col(ColumnDef::new(ApiKeys::Prefix).string_len(16).not_null())
        .col(
            ColumnDef::new(ApiKeys::SecretHash)
                .string_len(64)
                .not_null()
                .unique_key(),
        )
        .col(ColumnDef::new(ApiKeys::Status).string_len(16).not_null())
        .col(ColumnDef::new(ApiKeys::CreateMicros).big_integer().not_null())
        .col(ColumnDef::new(ApiKeys::RevokeMicros).big_integer().null())
        .col(ColumnDef::new(ApiKeys::ExpireMicros).big_integer().null())
        .col(ColumnDef::new(ApiKeys::ReplacedBy).string_len(64).not_null())
        .to_owned()
}

/// The change feed the gateways follow.
fn key_changes() -> TableCreateStatement {
    Table::create()
        .table(KeyChanges::Table)
        .col(
            ColumnDef::new(KeyChanges::ChangeId)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(ColumnDef::new(KeyChanges::KeyId).string_len(64).not_null())
        .col(ColumnDef::new(KeyChanges::DeveloperId).string_len(64).not_null())
        .col(ColumnDef::new(KeyChanges::PlanId).string_len(64).not_null())
        .col(ColumnDef::new(KeyChanges::CreateMicros).big_integer().not_null())
        .to_owned()
}

/// Calls per key, method, stage and minute.
fn usage_counts() -> TableCreateStatement {
    Table::create()
        .table(UsageCounts::Table)
        .col(ColumnDef::new(UsageCounts::KeyId).string_len(64).not_null())
        .col(ColumnDef::new(UsageCounts::Method).string_len(256).not_null())
        .col(ColumnDef::new(UsageCounts::Stage).string_len(32).not_null())
        .col(ColumnDef::new(UsageCounts::MinuteMicros).big_integer().not_null())
        .col(ColumnDef::new(UsageCounts::DeveloperId).string_len(64).not_null())
        .col(ColumnDef::new(UsageCounts::Calls).big_integer().not_null())
        .primary_key(
            Index::create()
                .col(UsageCounts::KeyId)
                .col(UsageCounts::Method)
                .col(UsageCounts::Stage)
                .col(UsageCounts::MinuteMicros),
        )
        .to_owned()
}

/// Named settings of the service.
fn settings() -> TableCreateStatement {
    Table::create()
        .table(Settings::Table)
        .col(
            ColumnDef::new(Settings::Name)
                .string_len(64)
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(Settings::Value).text().not_null())
        .to_owned()
}

/// A developer's keys, in order.
fn api_keys_by_developer() -> IndexCreateStatement {
    Index::create()
        .name("api_keys_by_developer")
        .table(ApiKeys::Table)
        .col(ApiKeys::DeveloperId)
        .col(ApiKeys::KeyId)
        .to_owned()
}

/// A developer's usage by minute, for the invoice.
fn usage_counts_by_developer() -> IndexCreateStatement {
    Index::create()
        .name("usage_counts_by_developer")
        .table(UsageCounts::Table)
        .col(UsageCounts::DeveloperId)
        .col(UsageCounts::MinuteMicros)
        .to_owned()
}
