use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    Name,
    Description,
    Picture,
    PriceCurrency,
    PriceUnits,
    PriceNanos,
    Categories,
    WeightGrams,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .col(
                        ColumnDef::new(Products::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Products::Name).string().not_null())
                    .col(ColumnDef::new(Products::Description).text().not_null())
                    .col(ColumnDef::new(Products::Picture).string().not_null())
                    .col(ColumnDef::new(Products::PriceCurrency).string_len(3).not_null())
                    .col(ColumnDef::new(Products::PriceUnits).big_integer().not_null())
                    .col(ColumnDef::new(Products::PriceNanos).integer().not_null())
                    .col(ColumnDef::new(Products::Categories).string().not_null())
                    .col(ColumnDef::new(Products::WeightGrams).integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Products::Table).to_owned())
            .await
    }
}
