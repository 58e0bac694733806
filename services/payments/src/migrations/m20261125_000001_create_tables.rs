use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Payments {
    Table,
    PaymentId,
    OrderId,
    Currency,
    AmountNanos,
    RefundedNanos,
    CardBrand,
    CardLast4,
    Fingerprint,
    CreateMicros,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    RefundId,
    PaymentId,
    AmountNanos,
    Reason,
    CreateMicros,
}

#[derive(DeriveIden)]
enum ChargeAttempts {
    Table,
    PaymentId,
    CreateMicros,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(
                        ColumnDef::new(Payments::PaymentId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Payments::OrderId).string_len(128).not_null())
                    .col(ColumnDef::new(Payments::Currency).string_len(3).not_null())
                    .col(ColumnDef::new(Payments::AmountNanos).big_integer().not_null())
                    .col(
                        ColumnDef::new(Payments::RefundedNanos)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Payments::CardBrand).string_len(16).not_null())
                    .col(ColumnDef::new(Payments::CardLast4).string_len(4).not_null())
                    .col(ColumnDef::new(Payments::Fingerprint).string().not_null())
                    .col(ColumnDef::new(Payments::CreateMicros).big_integer().not_null())
                    // Refunds never add up to more than the charge.
                    .check(Expr::col(Payments::RefundedNanos).gte(0))
                    .check(Expr::col(Payments::RefundedNanos).lte(Expr::col(Payments::AmountNanos)))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .col(
                        ColumnDef::new(Refunds::RefundId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Refunds::PaymentId).string_len(128).not_null())
                    .col(ColumnDef::new(Refunds::AmountNanos).big_integer().not_null())
                    .col(ColumnDef::new(Refunds::Reason).text().not_null())
                    .col(ColumnDef::new(Refunds::CreateMicros).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Refunds::Table, Refunds::PaymentId)
                            .to(Payments::Table, Payments::PaymentId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChargeAttempts::Table)
                    .col(
                        ColumnDef::new(ChargeAttempts::PaymentId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ChargeAttempts::CreateMicros)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }
}
