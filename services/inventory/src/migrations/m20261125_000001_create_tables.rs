use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
pub(super) enum Stock {
    Table,
    Sku,
    OnHand,
    Reserved,
}

#[derive(DeriveIden)]
enum Reservations {
    Table,
    ReservationId,
    Status,
    CreateMicros,
    UpdateMicros,
}

#[derive(DeriveIden)]
enum ReservationItems {
    Table,
    ReservationId,
    Sku,
    Quantity,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Stock::Table)
                    .col(ColumnDef::new(Stock::Sku).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(Stock::OnHand).big_integer().not_null())
                    .col(
                        ColumnDef::new(Stock::Reserved)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    // Stock never goes negative and never more is held than is there.
                    .check(Expr::col(Stock::Reserved).gte(0))
                    .check(Expr::col(Stock::Reserved).lte(Expr::col(Stock::OnHand)))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Reservations::Table)
                    .col(
                        ColumnDef::new(Reservations::ReservationId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Reservations::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Reservations::CreateMicros)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Reservations::UpdateMicros)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReservationItems::Table)
                    .col(
                        ColumnDef::new(ReservationItems::ReservationId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ReservationItems::Sku).string_len(64).not_null())
                    .col(
                        ColumnDef::new(ReservationItems::Quantity)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ReservationItems::ReservationId)
                            .col(ReservationItems::Sku),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ReservationItems::Table, ReservationItems::ReservationId)
                            .to(Reservations::Table, Reservations::ReservationId),
                    )
                    .to_owned(),
            )
            .await
    }
}
