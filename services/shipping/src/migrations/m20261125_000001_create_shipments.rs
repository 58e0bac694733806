use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Shipments {
    Table,
    ShipmentId,
    OrderId,
    Address,
    Items,
    CostCurrency,
    CostNanos,
    TrackingNumber,
    Status,
    CancelReason,
    CreateMicros,
    UpdateMicros,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Shipments::Table)
                    .col(
                        ColumnDef::new(Shipments::ShipmentId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Shipments::OrderId).string_len(128).not_null())
                    .col(ColumnDef::new(Shipments::Address).text().not_null())
                    .col(ColumnDef::new(Shipments::Items).text().not_null())
                    .col(ColumnDef::new(Shipments::CostCurrency).string_len(3).not_null())
                    .col(ColumnDef::new(Shipments::CostNanos).big_integer().not_null())
                    .col(
                        ColumnDef::new(Shipments::TrackingNumber)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Shipments::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Shipments::CancelReason).text().not_null())
                    .col(ColumnDef::new(Shipments::CreateMicros).big_integer().not_null())
                    .col(ColumnDef::new(Shipments::UpdateMicros).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }
}
