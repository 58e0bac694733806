use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    CardToken,
    ExecutionName,
    SagaStarted,
}

#[derive(DeriveIden)]
enum OrderItems {
    Table,
    UnitWeightGrams,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            ColumnDef::new(Orders::CardToken)
                .string_len(40)
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(Orders::ExecutionName)
                .string_len(80)
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(Orders::SagaStarted)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
        ] {
            manager
                .alter_table(Table::alter().table(Orders::Table).add_column(column).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(OrderItems::Table)
                    .add_column(
                        ColumnDef::new(OrderItems::UnitWeightGrams)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("orders_saga_not_started")
                    .table(Orders::Table)
                    .col(Orders::SagaStarted)
                    .to_owned(),
            )
            .await
    }
}
