//! The apikeys tables and queries (sea-orm), on SQLite and PostgreSQL.
//! Every create/rotate/record claims its caller-chosen id first through
//! [`kit_store::idempotency`], so a repeat has one effect; every change a
//! gateway may have cached (revocation, rotation, a new plan) appends a
//! row to `key_changes` in the same transaction.

use std::collections::{BTreeMap, HashMap};

use kit_store::{Claim, Db, IdempotencyError};
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};

use crate::domain::{
    ApiKeysError, Invoice, MethodCalls, Plan, SecretHasher, new_secret, price, shown_prefix,
};

mod accounts;
mod entities;
mod keys;
mod usage;

use entities::{api_key, developer, key_change, setting, usage_count, usage_plan};

/// How old a change must be before a cursor moves past it: a transaction
/// that took its cursor earlier but commits later is still seen.
const CHANGE_SETTLE_MICROS: i64 = 5_000_000;
/// Most changes returned at once.
const MAX_CHANGES: usize = 1000;

/// What a key is called in NOT_FOUND and ALREADY_EXISTS: one word for every
/// path, so no answer tells someone else's key from a missing one.
pub(crate) const KEY: &str = "api key";

/// Where a key stands, as stored; expiry is read from `expire_micros`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStatus {
    /// Usable, unless its expiry has passed.
    Active,
    /// Revoked.
    Revoked,
}

/// A key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// Its id.
    pub key_id: String,
    /// Its owner.
    pub developer_id: String,
    /// Its name.
    pub name: String,
    /// The secret's first characters.
    pub prefix: String,
    /// Active or revoked.
    pub status: KeyStatus,
    /// Created.
    pub create_micros: i64,
    /// Revoked, if so.
    pub revoke_micros: Option<i64>,
    /// Stops working, if rotated.
    pub expire_micros: Option<i64>,
    /// Its replacement, if rotated.
    pub replaced_by: String,
}

impl Key {
    /// Whether the key has expired at `now`.
    pub fn expired(&self, now: i64) -> bool {
        self.expire_micros.is_some_and(|e| e <= now)
    }
}

/// A developer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Developer {
    /// Id.
    pub developer_id: String,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Plan.
    pub plan_id: String,
    /// Created.
    pub create_micros: i64,
}

/// What a valid secret unlocks.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The key.
    pub key: Key,
    /// Its owner.
    pub developer: Developer,
    /// The owner's plan.
    pub plan: Plan,
    /// Requests in the current quota period.
    pub quota_used: i64,
    /// The current quota period, if the plan has a quota.
    pub quota_bounds: Option<(i64, i64)>,
    /// The change cursor before the read.
    pub cursor: i64,
}

/// A change a gateway must drop from its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Cursor.
    pub cursor: i64,
    /// Key, or empty.
    pub key_id: String,
    /// Developer, or empty.
    pub developer_id: String,
    /// Plan, or empty.
    pub plan_id: String,
}

/// Counted calls of one key, method, stage and minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// Key.
    pub key_id: String,
    /// Full method.
    pub method: String,
    /// Stage.
    pub stage: String,
    /// Start of the minute, micros.
    pub minute_micros: i64,
    /// Calls.
    pub count: i64,
}

/// One GetUsage bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Method.
    pub method: String,
    /// Start of the bucket, micros.
    pub start_micros: i64,
    /// Calls.
    pub count: i64,
}

/// A developer's quota use after a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaUse {
    /// Developer.
    pub developer_id: String,
    /// Used in the period.
    pub used: i64,
    /// Period start.
    pub period_start: i64,
}

/// Reads and records plans, developers, keys and usage.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    hasher: SecretHasher,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ApiKeysError {
    ApiKeysError::Corrupt(format!("{what}: {e}"))
}

/// A stored key status.
const ACTIVE: &str = "ACTIVE";
const REVOKED: &str = "REVOKED";

fn key_from(row: api_key::Model) -> Result<Key, ApiKeysError> {
    Ok(Key {
        status: match row.status.as_str() {
            ACTIVE => KeyStatus::Active,
            REVOKED => KeyStatus::Revoked,
            other => return Err(corrupt("key status", other)),
        },
        key_id: row.key_id,
        developer_id: row.developer_id,
        name: row.name,
        prefix: row.prefix,
        create_micros: row.create_micros,
        revoke_micros: row.revoke_micros,
        expire_micros: row.expire_micros,
        replaced_by: row.replaced_by,
    })
}

fn developer_from(row: developer::Model) -> Developer {
    Developer {
        developer_id: row.developer_id,
        email: row.email,
        name: row.name,
        plan_id: row.plan_id,
        create_micros: row.create_micros,
    }
}

fn plan_from(row: &usage_plan::Model) -> Result<(Plan, i64), ApiKeysError> {
    let plan = serde_json::from_str(&row.settings).map_err(|e| corrupt("plan settings", e))?;
    Ok((plan, row.create_micros))
}

/// `SUM(calls)` as a BIGINT (PostgreSQL sums BIGINTs to NUMERIC), 0 for no rows.
fn sum_of_calls() -> Expr {
    Func::cast_as(
        Func::coalesce([Expr::col(usage_count::Column::Calls).sum(), Expr::val(0i64)]),
        "BIGINT",
    )
    .into()
}

fn conflict_as<'a>(kind: &'static str, id: &'a str) -> impl Fn(IdempotencyError) -> ApiKeysError + 'a {
    move |e| match e {
        IdempotencyError::Conflict { .. } => ApiKeysError::Conflict {
            kind,
            id: id.to_string(),
        },
        other => ApiKeysError::Idempotency(other),
    }
}

impl Store {
    /// A store over a migrated database, hashing secrets with `hash_key`, or
    /// with the key kept in the database (made at first start) when `None`.
    pub async fn open(db: Db, hash_key: Option<[u8; 32]>) -> Result<Store, ApiKeysError> {
        const NAME: &str = "secret_hash_key";
        let key = match hash_key {
            Some(key) => key,
            None => {
                let fresh: [u8; 32] = rand::random();
                setting::Entity::insert(setting::ActiveModel {
                    name: Set(NAME.into()),
                    value: Set(hex::encode(fresh)),
                })
                .on_conflict(OnConflict::column(setting::Column::Name).do_nothing().to_owned())
                .exec_without_returning(db.write())
                .await?;
                let row = setting::Entity::find_by_id(NAME)
                    .one(db.write())
                    .await?
                    .ok_or_else(|| corrupt("settings", "secret_hash_key is missing"))?;
                let bytes = hex::decode(&row.value).map_err(|e| corrupt("secret_hash_key", e))?;
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| corrupt("secret_hash_key", "not 32 bytes"))?
            }
        };
        Ok(Store {
            db,
            hasher: SecretHasher::new(key),
        })
    }

    /// The read pool, for lookups beside a call.
    pub fn reader(&self) -> sea_orm::DatabaseConnection {
        self.db.read().clone()
    }

    async fn add_change(
        &self,
        db: &impl ConnectionTrait,
        key_id: &str,
        developer_id: &str,
        plan_id: &str,
    ) -> Result<(), ApiKeysError> {
        key_change::Entity::insert(key_change::ActiveModel {
            change_id: NotSet,
            key_id: Set(key_id.into()),
            developer_id: Set(developer_id.into()),
            plan_id: Set(plan_id.into()),
            create_micros: Set(kit_values::now_micros()),
        })
        .exec_without_returning(db)
        .await?;
        Ok(())
    }
}
