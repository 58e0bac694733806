use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum CardTokens {
    Table,
    Token,
    CardBrand,
    CardLast4,
    Behaviour,
    ExpireMicros,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CardTokens::Table)
                    .col(
                        ColumnDef::new(CardTokens::Token)
                            .string_len(40)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(CardTokens::CardBrand).string_len(16).not_null())
                    .col(ColumnDef::new(CardTokens::CardLast4).string_len(4).not_null())
                    .col(ColumnDef::new(CardTokens::Behaviour).string_len(40).not_null())
                    .col(ColumnDef::new(CardTokens::ExpireMicros).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }
}
