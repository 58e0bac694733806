use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Executions {
    Table,
    Owner,
    Epoch,
}

#[derive(DeriveIden)]
enum HistoryEvents {
    Table,
    Owner,
    Epoch,
}

#[derive(DeriveIden)]
enum WorkflowReplicas {
    Table,
    Owner,
    HeartbeatMicros,
    StartedMicros,
}

/// Executions are owned through leases: the replica that runs one and its
/// fencing epoch, also kept on every event it writes; replicas heartbeat in
/// a table of their own. SQLite adds one column a statement.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let add =
            |table: DynIden, column: ColumnDef| Table::alter().table(table).add_column(column).to_owned();
        for statement in [
            add(
                Executions::Table.into_iden(),
                ColumnDef::new(Executions::Owner)
                    .string_len(160)
                    .not_null()
                    .default("")
                    .to_owned(),
            ),
            add(
                Executions::Table.into_iden(),
                ColumnDef::new(Executions::Epoch)
                    .big_integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ),
            add(
                HistoryEvents::Table.into_iden(),
                ColumnDef::new(HistoryEvents::Owner)
                    .string_len(160)
                    .not_null()
                    .default("")
                    .to_owned(),
            ),
            add(
                HistoryEvents::Table.into_iden(),
                ColumnDef::new(HistoryEvents::Epoch)
                    .big_integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ),
        ] {
            manager.alter_table(statement).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(WorkflowReplicas::Table)
                    .col(
                        ColumnDef::new(WorkflowReplicas::Owner)
                            .string_len(160)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(WorkflowReplicas::HeartbeatMicros)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WorkflowReplicas::StartedMicros)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }
}
