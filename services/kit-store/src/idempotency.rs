//! The one idempotency mechanism of ferrymesh: every mutating RPC that
//! carries a caller-chosen id (`reservation_id`, `payment_id`, `refund_id`,
//! `shipment_id`, an order's `idempotency_key`) goes through [`claim`].
//!
//! 1. The id is **claimed first**, in the same transaction as the effect:
//!    `INSERT INTO idempotency_keys ... ON CONFLICT DO NOTHING`, keyed by
//!    (scope, id), with a fingerprint of the request's content.
//! 2. The winner gets [`Claim::Won`]: it does the work on [`Pending::txn`]
//!    and [`Pending::complete`]s with the result, which is stored beside the
//!    claim and committed with the effect. If the work fails, dropping the
//!    `Pending` rolls back the effect and the claim together, so a retry
//!    starts afresh.
//! 3. A concurrent duplicate waits for the winner: on PostgreSQL its insert
//!    blocks on the winner's uncommitted row, on SQLite the writer is one
//!    connection. It then finds the claim taken and gets
//!    [`Claim::Replay`] with the winner's stored result, without doing the
//!    work again. A service whose resource lives on (a reservation later
//!    committed, a shipment later cancelled) answers that resource, found by
//!    the stored result's id, as it stands now.
//! 4. The same id with a different fingerprint is
//!    [`IdempotencyError::Conflict`], which services answer ALREADY_EXISTS.
//!
//! This is zero-to-production's "claim the key first", and what the workflow
//! engine relies on: it invokes each task at least once with a stable id, and
//! the task takes effect once.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseTransaction, DbErr, EntityTrait, QueryFilter};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::db::Db;

/// The `idempotency_keys` table every service's database has.
#[allow(unreachable_pub)] // the derive macros make public items
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A claimed id and what it produced.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        /// Which operation the id belongs to, e.g. `inventory.reserve`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope: String,
        /// The caller's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// The request's content, exactly, as the service describes it.
        pub fingerprint: String,
        /// The result the first call answered, as JSON; set in the claiming transaction.
        pub outcome: Option<String>,
        /// When the id was claimed, in microseconds since the epoch.
        pub create_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Why a claim could not be made or answered.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The id was used before for a request with other content.
    #[error("`{key}` was already used for {scope} with other content")]
    Conflict {
        /// The operation.
        scope: String,
        /// The caller's id.
        key: String,
    },
    /// The database failed.
    #[error("idempotency store: {0}")]
    Store(#[from] DbErr),
    /// A stored outcome cannot be read back.
    #[error("the stored outcome of `{key}` for {scope} is unreadable: {reason}")]
    Corrupt {
        /// The operation.
        scope: String,
        /// The caller's id.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// What [`claim`] found.
#[derive(Debug)]
pub enum Claim<T> {
    /// This call holds the id: do the work, then [`Pending::complete`].
    Won(Pending),
    /// An earlier call with the same id and content finished; its result.
    Replay(T),
}

/// A claimed id, with the open transaction its effect must use.
#[derive(Debug)]
pub struct Pending {
    txn: DatabaseTransaction,
    scope: String,
    key: String,
}

impl Pending {
    /// The transaction holding the claim; do the work on it.
    pub fn txn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Stores `outcome` as the answer to every repeat, and commits it with the effect.
    pub async fn complete<T: Serialize>(self, outcome: &T) -> Result<(), IdempotencyError> {
        let json = serde_json::to_string(outcome).map_err(|e| IdempotencyError::Corrupt {
            scope: self.scope.clone(),
            key: self.key.clone(),
            reason: e.to_string(),
        })?;
        entity::Entity::update_many()
            .col_expr(entity::Column::Outcome, sea_orm::sea_query::Expr::value(json))
            .filter(sea_orm::ColumnTrait::eq(
                &entity::Column::Scope,
                self.scope.as_str(),
            ))
            .filter(sea_orm::ColumnTrait::eq(&entity::Column::Key, self.key.as_str()))
            .exec(&self.txn)
            .await?;
        self.txn.commit().await?;
        Ok(())
    }
}

/// Claims `key` for `scope` with the request's `fingerprint`; see the module
/// docs. Waits while another call holds the same key.
pub async fn claim<T: DeserializeOwned>(
    db: &Db,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Claim<T>, IdempotencyError> {
    let txn = db.begin().await?;
    let inserted = entity::Entity::insert(entity::ActiveModel {
        scope: Set(scope.to_string()),
        key: Set(key.to_string()),
        fingerprint: Set(fingerprint.to_string()),
        outcome: Set(None),
        create_micros: Set(kit_values::now_micros()),
    })
    .on_conflict(
        OnConflict::columns([entity::Column::Scope, entity::Column::Key])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    if inserted == 1 {
        return Ok(Claim::Won(Pending {
            txn,
            scope: scope.to_string(),
            key: key.to_string(),
        }));
    }
    // Taken, by a call that has committed (a waiting insert returns only then).
    let row = entity::Entity::find_by_id((scope.to_string(), key.to_string()))
        .one(&txn)
        .await?;
    txn.commit().await?;
    let row = row.ok_or_else(|| IdempotencyError::Corrupt {
        scope: scope.to_string(),
        key: key.to_string(),
        reason: "the claim vanished".into(),
    })?;
    answer(row, scope, key, fingerprint).map(Claim::Replay)
}

/// The result stored for `key`, when a call with it has finished: a look
/// on the readers before expensive work (calls to other services) that a
/// retry need not repeat. [`claim`] still decides; this only saves work.
pub async fn stored<T: DeserializeOwned>(
    db: &Db,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Option<T>, IdempotencyError> {
    let row = entity::Entity::find_by_id((scope.to_string(), key.to_string()))
        .one(db.read())
        .await?;
    match row {
        Some(row) => answer(row, scope, key, fingerprint).map(Some),
        None => Ok(None),
    }
}

fn answer<T: DeserializeOwned>(
    row: entity::Model,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> Result<T, IdempotencyError> {
    let corrupt = |reason: String| IdempotencyError::Corrupt {
        scope: scope.to_string(),
        key: key.to_string(),
        reason,
    };
    if row.fingerprint != fingerprint {
        return Err(IdempotencyError::Conflict {
            scope: scope.to_string(),
            key: key.to_string(),
        });
    }
    let outcome = row
        .outcome
        .ok_or_else(|| corrupt("no outcome was stored".into()))?;
    serde_json::from_str(&outcome).map_err(|e| corrupt(e.to_string()))
}

/// The migration that creates `idempotency_keys`; every service's migrator lists it.
// sea-orm's MigrationTrait is written with the lifetime elided; its impls must match.
#[allow(elided_lifetimes_in_paths)]
pub mod migration {
    use sea_orm_migration::prelude::*;

    /// Creates `idempotency_keys`.
    #[derive(Debug)]
    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261128_000001_kit_idempotency_keys"
        }
    }

    #[derive(DeriveIden)]
    enum IdempotencyKeys {
        Table,
        Scope,
        Key,
        Fingerprint,
        Outcome,
        CreateMicros,
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table(IdempotencyKeys::Table)
                        .if_not_exists()
                        .col(ColumnDef::new(IdempotencyKeys::Scope).string_len(64).not_null())
                        .col(ColumnDef::new(IdempotencyKeys::Key).string_len(128).not_null())
                        .col(ColumnDef::new(IdempotencyKeys::Fingerprint).text().not_null())
                        .col(ColumnDef::new(IdempotencyKeys::Outcome).text().null())
                        .col(
                            ColumnDef::new(IdempotencyKeys::CreateMicros)
                                .big_integer()
                                .not_null(),
                        )
                        .primary_key(
                            Index::create()
                                .col(IdempotencyKeys::Scope)
                                .col(IdempotencyKeys::Key),
                        )
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
                .await
        }
    }
}
