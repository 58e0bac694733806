use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    OrderId,
    IdempotencyKey,
    Fingerprint,
    CustomerEmail,
    Address,
    ShippingOption,
    ShippingCurrency,
    ShippingNanos,
    Status,
    StatusReason,
    CreateMicros,
    UpdateMicros,
}

#[derive(DeriveIden)]
enum OrderItems {
    Table,
    OrderId,
    LineNo,
    ProductId,
    ProductName,
    Quantity,
    Currency,
    UnitPriceNanos,
    Status,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(
                        ColumnDef::new(Orders::OrderId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Orders::IdempotencyKey)
                            .string_len(128)
                            .null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Orders::Fingerprint).text().not_null())
                    .col(ColumnDef::new(Orders::CustomerEmail).string_len(254).not_null())
                    .col(ColumnDef::new(Orders::Address).text().not_null())
                    .col(ColumnDef::new(Orders::ShippingOption).string_len(16).not_null())
                    .col(ColumnDef::new(Orders::ShippingCurrency).string_len(3).not_null())
                    .col(ColumnDef::new(Orders::ShippingNanos).big_integer().not_null())
                    .col(ColumnDef::new(Orders::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Orders::StatusReason).text().not_null())
                    .col(ColumnDef::new(Orders::CreateMicros).big_integer().not_null())
                    .col(ColumnDef::new(Orders::UpdateMicros).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // ListOrders pages newest first, optionally per customer.
        manager
            .create_index(
                Index::create()
                    .name("orders_by_customer_and_time")
                    .table(Orders::Table)
                    .col(Orders::CustomerEmail)
                    .col(Orders::CreateMicros)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("orders_by_time")
                    .table(Orders::Table)
                    .col(Orders::CreateMicros)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderItems::Table)
                    .col(ColumnDef::new(OrderItems::OrderId).string_len(64).not_null())
                    .col(ColumnDef::new(OrderItems::LineNo).integer().not_null())
                    .col(ColumnDef::new(OrderItems::ProductId).string_len(64).not_null())
                    .col(ColumnDef::new(OrderItems::ProductName).string().not_null())
                    .col(ColumnDef::new(OrderItems::Quantity).integer().not_null())
                    .col(ColumnDef::new(OrderItems::Currency).string_len(3).not_null())
                    .col(
                        ColumnDef::new(OrderItems::UnitPriceNanos)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(OrderItems::Status).string_len(16).not_null())
                    .primary_key(Index::create().col(OrderItems::OrderId).col(OrderItems::LineNo))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrderItems::Table, OrderItems::OrderId)
                            .to(Orders::Table, Orders::OrderId),
                    )
                    .to_owned(),
            )
            .await
    }
}
