//! The apikeys tables and queries, on SQLite and PostgreSQL. Every
//! create/rotate/record claims its caller-chosen id first through
//! [`kit_store::idempotency`], so a repeat has one effect; every change a
//! gateway may have cached (revocation, rotation, a new plan) appends a
//! row to `key_changes` in the same transaction.

use std::collections::{BTreeMap, HashMap};

use kit_store::{Claim, Db, IdempotencyError};
use sea_orm::{ConnectionTrait, DatabaseBackend, QueryResult, Statement, Value};
use serde::{Deserialize, Serialize};

use crate::domain::{
    ApiKeysError, Invoice, MethodCalls, Plan, SecretHasher, new_secret, price, shown_prefix,
};

mod accounts;
mod keys;
mod usage;

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

/// `?` placeholders, rewritten to `$n` for PostgreSQL.
fn stmt(backend: DatabaseBackend, sql: &str, values: Vec<Value>) -> Statement {
    let text = if backend == DatabaseBackend::Postgres {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_string()
    };
    Statement::from_sql_and_values(backend, text, values)
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ApiKeysError {
    ApiKeysError::Corrupt(format!("{what}: {e}"))
}

fn key_from(row: &QueryResult) -> Result<Key, ApiKeysError> {
    let status: String = row.try_get("", "status")?;
    Ok(Key {
        key_id: row.try_get("", "key_id")?,
        developer_id: row.try_get("", "developer_id")?,
        name: row.try_get("", "name")?,
        prefix: row.try_get("", "prefix")?,
        status: match status.as_str() {
            "ACTIVE" => KeyStatus::Active,
            "REVOKED" => KeyStatus::Revoked,
            other => return Err(corrupt("key status", other)),
        },
        create_micros: row.try_get("", "create_micros")?,
        revoke_micros: row.try_get("", "revoke_micros")?,
        expire_micros: row.try_get("", "expire_micros")?,
        replaced_by: row.try_get("", "replaced_by")?,
    })
}

fn developer_from(row: &QueryResult) -> Result<Developer, ApiKeysError> {
    Ok(Developer {
        developer_id: row.try_get("", "developer_id")?,
        email: row.try_get("", "email")?,
        name: row.try_get("", "name")?,
        plan_id: row.try_get("", "plan_id")?,
        create_micros: row.try_get("", "create_micros")?,
    })
}

fn plan_from(row: &QueryResult) -> Result<Plan, ApiKeysError> {
    let settings: String = row.try_get("", "settings")?;
    serde_json::from_str(&settings).map_err(|e| corrupt("plan settings", e))
}

const KEY_COLUMNS: &str =
    "key_id, developer_id, name, prefix, status, create_micros, revoke_micros, expire_micros, replaced_by";

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
        let key = match hash_key {
            Some(key) => key,
            None => {
                let backend = db.backend();
                let fresh: [u8; 32] = rand::random();
                db.write()
                    .execute_raw(stmt(
                        backend,
                        "INSERT INTO settings (name, value) VALUES ('secret_hash_key', ?) ON CONFLICT (name) DO NOTHING",
                        vec![hex::encode(fresh).into()],
                    ))
                    .await?;
                let row = db
                    .write()
                    .query_one_raw(stmt(
                        backend,
                        "SELECT value FROM settings WHERE name = 'secret_hash_key'",
                        vec![],
                    ))
                    .await?
                    .ok_or_else(|| corrupt("settings", "secret_hash_key is missing"))?;
                let text: String = row.try_get("", "value")?;
                let bytes = hex::decode(&text).map_err(|e| corrupt("secret_hash_key", e))?;
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

    fn backend(&self) -> DatabaseBackend {
        self.db.backend()
    }

    async fn add_change(
        &self,
        db: &impl ConnectionTrait,
        key_id: &str,
        developer_id: &str,
        plan_id: &str,
    ) -> Result<(), ApiKeysError> {
        db.execute_raw(stmt(
            self.backend(),
            "INSERT INTO key_changes (key_id, developer_id, plan_id, create_micros) VALUES (?, ?, ?, ?)",
            vec![
                key_id.into(),
                developer_id.into(),
                plan_id.into(),
                kit_values::now_micros().into(),
            ],
        ))
        .await?;
        Ok(())
    }
}
