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

    /// Creates the plan once; the same settings again answer it.
    pub async fn create_plan(&self, plan: &Plan) -> Result<(Plan, i64), ApiKeysError> {
        let fingerprint = serde_json::to_string(plan).map_err(|e| corrupt("plan", e))?;
        let claim: Claim<(Plan, i64)> =
            kit_store::claim(&self.db, "apikeys.plan", &plan.plan_id, &fingerprint)
                .await
                .map_err(conflict_as("usage plan", &plan.plan_id))?;
        let pending = match claim {
            Claim::Replay(done) => return Ok(done),
            Claim::Won(pending) => pending,
        };
        let now = kit_values::now_micros();
        let inserted = pending
            .txn()
            .execute_raw(stmt(
                self.backend(),
                "INSERT INTO usage_plans (plan_id, settings, create_micros) VALUES (?, ?, ?) ON CONFLICT (plan_id) DO NOTHING",
                vec![plan.plan_id.clone().into(), fingerprint.into(), now.into()],
            ))
            .await?;
        if inserted.rows_affected() == 0 {
            // Made by ensure_plan (the default plan) before anyone created it.
            return Err(ApiKeysError::Conflict {
                kind: "usage plan",
                id: plan.plan_id.clone(),
            });
        }
        self.add_change(pending.txn(), "", "", &plan.plan_id).await?;
        let done = (plan.clone(), now);
        pending.complete(&done).await.map_err(ApiKeysError::Idempotency)?;
        Ok(done)
    }

    /// Creates the plan unless a plan with its id exists.
    pub async fn ensure_plan(&self, plan: &Plan) -> Result<(), ApiKeysError> {
        let settings = serde_json::to_string(plan).map_err(|e| corrupt("plan", e))?;
        self.db
            .write()
            .execute_raw(stmt(
                self.backend(),
                "INSERT INTO usage_plans (plan_id, settings, create_micros) VALUES (?, ?, ?) ON CONFLICT (plan_id) DO NOTHING",
                vec![
                    plan.plan_id.clone().into(),
                    settings.into(),
                    kit_values::now_micros().into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// A plan by id, with its creation time.
    pub async fn plan(&self, db: &impl ConnectionTrait, plan_id: &str) -> Result<(Plan, i64), ApiKeysError> {
        let row = db
            .query_one_raw(stmt(
                self.backend(),
                "SELECT settings, create_micros FROM usage_plans WHERE plan_id = ?",
                vec![plan_id.into()],
            ))
            .await?
            .ok_or_else(|| ApiKeysError::NotFound {
                kind: "usage plan",
                id: plan_id.to_string(),
            })?;
        Ok((plan_from(&row)?, row.try_get("", "create_micros")?))
    }

    /// Plans by id after `after`, at most `limit`.
    pub async fn list_plans(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Plan, i64)>, ApiKeysError> {
        let rows = self
            .db
            .read()
            .query_all_raw(stmt(
                self.backend(),
                "SELECT settings, create_micros FROM usage_plans WHERE plan_id > ? ORDER BY plan_id LIMIT ?",
                vec![after.unwrap_or("").into(), i64::from(limit).into()],
            ))
            .await?;
        rows.iter()
            .map(|r| Ok((plan_from(r)?, r.try_get("", "create_micros")?)))
            .collect()
    }

    /// Developers by id after `after`, at most `limit`.
    pub async fn list_developers(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Developer>, ApiKeysError> {
        let rows = self
            .db
            .read()
            .query_all_raw(stmt(
                self.backend(),
                "SELECT developer_id, email, name, plan_id, create_micros FROM developers WHERE developer_id > ? ORDER BY developer_id LIMIT ?",
                vec![after.unwrap_or("").into(), i64::from(limit).into()],
            ))
            .await?;
        rows.iter().map(developer_from).collect()
    }

    async fn insert_developer(
        &self,
        db: &impl ConnectionTrait,
        developer: &Developer,
    ) -> Result<(), ApiKeysError> {
        self.plan(db, &developer.plan_id).await?;
        let inserted = db
            .execute_raw(stmt(
                self.backend(),
                "INSERT INTO developers (developer_id, email, name, plan_id, create_micros) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                vec![
                    developer.developer_id.clone().into(),
                    developer.email.clone().into(),
                    developer.name.clone().into(),
                    developer.plan_id.clone().into(),
                    developer.create_micros.into(),
                ],
            ))
            .await?;
        if inserted.rows_affected() == 0 {
            return Err(ApiKeysError::Conflict {
                kind: "developer email",
                id: developer.email.clone(),
            });
        }
        Ok(())
    }

    /// Creates a developer once per id.
    pub async fn create_developer(&self, developer: &Developer) -> Result<Developer, ApiKeysError> {
        let fingerprint = format!("{}\n{}\n{}", developer.email, developer.name, developer.plan_id);
        let claim: Claim<Developer> = kit_store::claim(
            &self.db,
            "apikeys.developer",
            &developer.developer_id,
            &fingerprint,
        )
        .await
        .map_err(conflict_as("developer", &developer.developer_id))?;
        let pending = match claim {
            Claim::Replay(d) => return Ok(d),
            Claim::Won(pending) => pending,
        };
        self.insert_developer(pending.txn(), developer).await?;
        pending
            .complete(developer)
            .await
            .map_err(ApiKeysError::Idempotency)?;
        Ok(developer.clone())
    }

    /// Signs up `email` on `plan_id` with a first key; signing up again
    /// answers the developer and that key without its secret.
    pub async fn register(
        &self,
        email: &str,
        name: &str,
        plan_id: &str,
    ) -> Result<(Developer, Key, String), ApiKeysError> {
        let email = email.to_ascii_lowercase();
        let claim: Claim<(Developer, Key)> =
            kit_store::claim(&self.db, "apikeys.register", &email, "register")
                .await
                .map_err(conflict_as("developer", &email))?;
        let pending = match claim {
            // A second sign-up learns nothing of the first: no id, name,
            // plan or key (the secret was shown once, to the first).
            Claim::Replay(_) => return Err(ApiKeysError::Registered),
            Claim::Won(pending) => pending,
        };
        let now = kit_values::now_micros();
        let developer = Developer {
            developer_id: format!("dev_{}", uuid::Uuid::new_v4().simple()),
            email,
            name: name.to_string(),
            plan_id: plan_id.to_string(),
            create_micros: now,
        };
        self.insert_developer(pending.txn(), &developer).await?;
        let key_id = format!("key_{}", uuid::Uuid::new_v4().simple());
        let (key, secret) = self
            .insert_key(pending.txn(), &key_id, &developer.developer_id, "default", now)
            .await?;
        pending
            .complete(&(developer.clone(), key.clone()))
            .await
            .map_err(ApiKeysError::Idempotency)?;
        Ok((developer, key, secret))
    }

    /// Moves a developer to another plan.
    pub async fn set_plan(&self, developer_id: &str, plan_id: &str) -> Result<Developer, ApiKeysError> {
        let txn = self.db.begin().await?;
        self.plan(&txn, plan_id).await?;
        let updated = txn
            .execute_raw(stmt(
                self.backend(),
                "UPDATE developers SET plan_id = ? WHERE developer_id = ?",
                vec![plan_id.into(), developer_id.into()],
            ))
            .await?;
        if updated.rows_affected() == 0 {
            return Err(ApiKeysError::NotFound {
                kind: "developer",
                id: developer_id.to_string(),
            });
        }
        self.add_change(&txn, "", developer_id, "").await?;
        let developer = self.developer(&txn, developer_id).await?;
        txn.commit().await?;
        Ok(developer)
    }

    /// A developer by id.
    pub async fn developer(
        &self,
        db: &impl ConnectionTrait,
        developer_id: &str,
    ) -> Result<Developer, ApiKeysError> {
        let row = db
            .query_one_raw(stmt(
                self.backend(),
                "SELECT developer_id, email, name, plan_id, create_micros FROM developers WHERE developer_id = ?",
                vec![developer_id.into()],
            ))
            .await?
            .ok_or_else(|| ApiKeysError::NotFound {
                kind: "developer",
                id: developer_id.to_string(),
            })?;
        developer_from(&row)
    }

    async fn insert_key(
        &self,
        db: &impl ConnectionTrait,
        key_id: &str,
        developer_id: &str,
        name: &str,
        now: i64,
    ) -> Result<(Key, String), ApiKeysError> {
        let secret = new_secret();
        let key = Key {
            key_id: key_id.to_string(),
            developer_id: developer_id.to_string(),
            name: name.to_string(),
            prefix: shown_prefix(&secret),
            status: KeyStatus::Active,
            create_micros: now,
            revoke_micros: None,
            expire_micros: None,
            replaced_by: String::new(),
        };
        let inserted = db
            .execute_raw(stmt(
                self.backend(),
                "INSERT INTO api_keys (key_id, developer_id, name, prefix, secret_hash, status, create_micros, revoke_micros, expire_micros, replaced_by) \
                 VALUES (?, ?, ?, ?, ?, 'ACTIVE', ?, NULL, NULL, '') ON CONFLICT DO NOTHING",
                vec![
                    key.key_id.clone().into(),
                    key.developer_id.clone().into(),
                    key.name.clone().into(),
                    key.prefix.clone().into(),
                    self.hasher.hash(&secret).into(),
                    now.into(),
                ],
            ))
            .await?;
        if inserted.rows_affected() == 0 {
            return Err(ApiKeysError::Conflict {
                kind: KEY,
                id: key_id.to_string(),
            });
        }
        Ok((key, secret))
    }

    /// Creates a key once per id; only the first call gets the secret.
    pub async fn create_key(
        &self,
        key_id: &str,
        developer_id: &str,
        name: &str,
    ) -> Result<(Key, Option<String>), ApiKeysError> {
        let fingerprint = format!("{developer_id}\n{name}");
        let claim: Claim<Key> = kit_store::claim(&self.db, "apikeys.key", key_id, &fingerprint)
            .await
            .map_err(conflict_as(KEY, key_id))?;
        let pending = match claim {
            Claim::Replay(key) => return Ok((self.key(self.db.read(), &key.key_id).await?, None)),
            Claim::Won(pending) => pending,
        };
        self.developer(pending.txn(), developer_id).await?;
        let (key, secret) = self
            .insert_key(
                pending.txn(),
                key_id,
                developer_id,
                name,
                kit_values::now_micros(),
            )
            .await?;
        pending.complete(&key).await.map_err(ApiKeysError::Idempotency)?;
        Ok((key, Some(secret)))
    }

    /// A key by id.
    pub async fn key(&self, db: &impl ConnectionTrait, key_id: &str) -> Result<Key, ApiKeysError> {
        let row = db
            .query_one_raw(stmt(
                self.backend(),
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?"),
                vec![key_id.into()],
            ))
            .await?
            .ok_or_else(|| ApiKeysError::NotFound {
                kind: KEY,
                id: key_id.to_string(),
            })?;
        key_from(&row)
    }

    /// Revokes a key; revoking again answers the revoked key. With
    /// `keep_one`, the developer's last usable key (active, not past its
    /// grace period) is refused: a developer who revoked every key could
    /// never sign in again, since registering is once per email.
    pub async fn revoke(&self, key_id: &str, keep_one: bool) -> Result<Key, ApiKeysError> {
        let txn = self.db.begin().await?;
        let key = self.key(&txn, key_id).await?;
        if key.status == KeyStatus::Revoked {
            return Ok(key);
        }
        if keep_one {
            // Takes the developer's row first, so two revokes of a
            // developer's last two keys run one after the other and the
            // second sees the first.
            txn.execute_raw(stmt(
                self.backend(),
                "UPDATE developers SET developer_id = developer_id WHERE developer_id = ?",
                vec![key.developer_id.clone().into()],
            ))
            .await?;
            let now = kit_values::now_micros();
            let others = txn
                .query_one_raw(stmt(
                    self.backend(),
                    "SELECT COUNT(*) AS n FROM api_keys WHERE developer_id = ? AND key_id <> ? \
                     AND status = 'ACTIVE' AND (expire_micros IS NULL OR expire_micros > ?)",
                    vec![key.developer_id.clone().into(), key_id.into(), now.into()],
                ))
                .await?
                .map(|row| row.try_get::<i64>("", "n"))
                .transpose()?
                .unwrap_or(0);
            if others == 0 {
                return Err(ApiKeysError::Precondition(format!(
                    "api key `{key_id}` is your last usable key; rotate it (RotateMyKey) to replace it, \
                     or revoke it once another key works"
                )));
            }
        }
        txn.execute_raw(stmt(
            self.backend(),
            "UPDATE api_keys SET status = 'REVOKED', revoke_micros = ? WHERE key_id = ? AND status = 'ACTIVE'",
            vec![kit_values::now_micros().into(), key_id.into()],
        ))
        .await?;
        self.add_change(&txn, key_id, &key.developer_id, "").await?;
        let key = self.key(&txn, key_id).await?;
        txn.commit().await?;
        Ok(key)
    }

    /// Replaces `key_id` with a new key; the old one expires after `grace_micros`.
    pub async fn rotate(
        &self,
        key_id: &str,
        new_key_id: &str,
        grace_micros: i64,
    ) -> Result<(Key, Key, Option<String>), ApiKeysError> {
        let fingerprint = format!("{key_id}\n{grace_micros}");
        let claim: Claim<(String, String)> =
            kit_store::claim(&self.db, "apikeys.rotate", new_key_id, &fingerprint)
                .await
                .map_err(conflict_as(KEY, new_key_id))?;
        let pending = match claim {
            Claim::Replay((old, new)) => {
                let old = self.key(self.db.read(), &old).await?;
                let new = self.key(self.db.read(), &new).await?;
                return Ok((old, new, None));
            }
            Claim::Won(pending) => pending,
        };
        let now = kit_values::now_micros();
        let old = self.key(pending.txn(), key_id).await?;
        if old.status == KeyStatus::Revoked {
            return Err(ApiKeysError::Precondition(format!(
                "api key `{key_id}` is revoked; create a new key instead of rotating it"
            )));
        }
        if !old.replaced_by.is_empty() {
            return Err(ApiKeysError::Precondition(format!(
                "api key `{key_id}` was already rotated to `{}`; rotate that one",
                old.replaced_by
            )));
        }
        let (new, secret) = self
            .insert_key(pending.txn(), new_key_id, &old.developer_id, &old.name, now)
            .await?;
        let expire = now.saturating_add(grace_micros);
        pending
            .txn()
            .execute_raw(stmt(
                self.backend(),
                "UPDATE api_keys SET expire_micros = ?, replaced_by = ? WHERE key_id = ?",
                vec![expire.into(), new_key_id.into(), key_id.into()],
            ))
            .await?;
        self.add_change(pending.txn(), key_id, &old.developer_id, "")
            .await?;
        let old = self.key(pending.txn(), key_id).await?;
        pending
            .complete(&(key_id.to_string(), new_key_id.to_string()))
            .await
            .map_err(ApiKeysError::Idempotency)?;
        Ok((old, new, Some(secret)))
    }

    /// Keys by id after `after`, optionally of one developer, at most `limit`.
    pub async fn list_keys(
        &self,
        developer_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Key>, ApiKeysError> {
        let (sql, mut values): (String, Vec<Value>) = match developer_id {
            Some(d) => (
                format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE developer_id = ? AND key_id > ? ORDER BY key_id LIMIT ?"
                ),
                vec![d.into()],
            ),
            None => (
                format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id > ? ORDER BY key_id LIMIT ?"),
                vec![],
            ),
        };
        values.push(after.unwrap_or("").into());
        values.push(i64::from(limit).into());
        let rows = self
            .db
            .read()
            .query_all_raw(stmt(self.backend(), &sql, values))
            .await?;
        rows.iter().map(key_from).collect()
    }

    /// The key a secret belongs to, if it may be used now.
    pub async fn authenticate(&self, secret: &str) -> Result<(Key, Developer), ApiKeysError> {
        let unknown = || ApiKeysError::Unauthenticated("the API key is not valid: check x-api-key".into());
        if !crate::domain::looks_like_secret(secret) {
            return Err(unknown());
        }
        let row = self
            .db
            .read()
            .query_one_raw(stmt(
                self.backend(),
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE secret_hash = ?"),
                vec![self.hasher.hash(secret).into()],
            ))
            .await?
            .ok_or_else(unknown)?;
        let key = key_from(&row)?;
        if key.status == KeyStatus::Revoked {
            return Err(ApiKeysError::Denied(format!(
                "API key {}… was revoked at {}",
                key.prefix,
                kit_values::rfc3339(key.revoke_micros.unwrap_or_default())
            )));
        }
        let now = kit_values::now_micros();
        if key.expired(now) {
            return Err(ApiKeysError::Denied(format!(
                "API key {}… expired at {} after it was rotated: use its replacement",
                key.prefix,
                kit_values::rfc3339(key.expire_micros.unwrap_or_default())
            )));
        }
        let developer = self.developer(self.db.read(), &key.developer_id).await?;
        Ok((key, developer))
    }

    /// Checks a secret and returns what a gateway caches about it.
    pub async fn validate(&self, secret: &str) -> Result<Validated, ApiKeysError> {
        let cursor = self.current_cursor().await?;
        let (key, developer) = self.authenticate(secret).await?;
        let (plan, _) = self.plan(self.db.read(), &developer.plan_id).await?;
        let now = kit_values::now_micros();
        let quota_bounds = plan.quota_bounds(now);
        let quota_used = match quota_bounds {
            Some(bounds) => {
                self.calls(self.db.read(), &developer.developer_id, bounds)
                    .await?
            }
            None => 0,
        };
        Ok(Validated {
            key,
            developer,
            plan,
            quota_used,
            quota_bounds,
            cursor,
        })
    }

    async fn current_cursor(&self) -> Result<i64, ApiKeysError> {
        let row = self
            .db
            .read()
            .query_one_raw(stmt(
                self.backend(),
                "SELECT CAST(COALESCE(MAX(change_id), 0) AS BIGINT) AS c FROM key_changes",
                vec![],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get("", "c")?,
            None => 0,
        })
    }

    /// Changes after `after`: (changes, next cursor, truncated).
    pub async fn changes(&self, after: i64) -> Result<(Vec<Change>, i64, bool), ApiKeysError> {
        if after < 0 {
            return Ok((Vec::new(), self.current_cursor().await?, false));
        }
        let rows = self
            .db
            .read()
            .query_all_raw(stmt(
                self.backend(),
                "SELECT change_id, key_id, developer_id, plan_id, create_micros FROM key_changes WHERE change_id > ? ORDER BY change_id LIMIT ?",
                vec![after.into(), i64::try_from(MAX_CHANGES + 1).unwrap_or(1001).into()],
            ))
            .await?;
        let truncated = rows.len() > MAX_CHANGES;
        let settled_before = kit_values::now_micros() - CHANGE_SETTLE_MICROS;
        let mut next = after;
        let mut settled = true;
        let mut changes = Vec::with_capacity(rows.len().min(MAX_CHANGES));
        for row in rows.iter().take(MAX_CHANGES) {
            let cursor: i64 = row.try_get("", "change_id")?;
            let created: i64 = row.try_get("", "create_micros")?;
            // The cursor moves only past settled changes, so one committed
            // late with an earlier cursor is not skipped; newer ones are
            // sent again, and dropping a cache entry twice is harmless.
            settled &= created < settled_before;
            if settled || truncated {
                next = cursor;
            }
            changes.push(Change {
                cursor,
                key_id: row.try_get("", "key_id")?,
                developer_id: row.try_get("", "developer_id")?,
                plan_id: row.try_get("", "plan_id")?,
            });
        }
        Ok((changes, next, truncated))
    }

    async fn calls(
        &self,
        db: &impl ConnectionTrait,
        developer_id: &str,
        (start, end): (i64, i64),
    ) -> Result<i64, ApiKeysError> {
        let row = db
            .query_one_raw(stmt(
                self.backend(),
                "SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) AS n FROM usage_counts WHERE developer_id = ? AND minute_micros >= ? AND minute_micros < ?",
                vec![developer_id.into(), start.into(), end.into()],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get("", "n")?,
            None => 0,
        })
    }

    /// Adds a batch of counts once per batch id; returns the calls added and
    /// the quota use of each developer in the batch.
    pub async fn record_usage(
        &self,
        batch_id: &str,
        records: &[UsageRecord],
    ) -> Result<(i64, Vec<QuotaUse>), ApiKeysError> {
        // Merged first: one statement may not update the same row twice.
        let mut merged: BTreeMap<(&str, &str, &str, i64), i64> = BTreeMap::new();
        for r in records {
            let n = merged
                .entry((
                    r.key_id.as_str(),
                    r.method.as_str(),
                    r.stage.as_str(),
                    r.minute_micros,
                ))
                .or_default();
            *n = n.saturating_add(r.count);
        }
        let fingerprint = {
            let mut h = blake3::Hasher::new();
            for ((k, m, s, t), n) in &merged {
                h.update(format!("{k}\n{m}\n{s}\n{t}\n{n}\n").as_bytes());
            }
            h.finalize().to_hex().to_string()
        };
        let claim: Claim<i64> = kit_store::claim(&self.db, "apikeys.usage", batch_id, &fingerprint)
            .await
            .map_err(conflict_as("usage batch", batch_id))?;
        let pending = match claim {
            Claim::Replay(_) => {
                let quotas = self.quotas_of(self.db.read(), records).await?;
                return Ok((0, quotas));
            }
            Claim::Won(pending) => pending,
        };
        let mut developers: HashMap<&str, String> = HashMap::new();
        for r in records {
            if !developers.contains_key(r.key_id.as_str()) {
                let key = self.key(pending.txn(), &r.key_id).await.map_err(|e| match e {
                    ApiKeysError::NotFound { .. } => {
                        let mut v = kit_values::Violations::new();
                        v.add("records.key_id", format!("api key `{}` does not exist", r.key_id));
                        ApiKeysError::Invalid(v)
                    }
                    other => other,
                })?;
                developers.insert(&r.key_id, key.developer_id);
            }
        }
        let mut total = 0i64;
        let rows: Vec<_> = merged.iter().collect();
        for chunk in rows.chunks(200) {
            let mut sql = String::from(
                "INSERT INTO usage_counts (key_id, method, stage, minute_micros, developer_id, calls) VALUES ",
            );
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
            for (i, ((key, method, stage, minute), n)) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str("(?, ?, ?, ?, ?, ?)");
                values.push((*key).into());
                values.push((*method).into());
                values.push((*stage).into());
                values.push((*minute).into());
                values.push(developers.get(key).cloned().unwrap_or_default().into());
                values.push((**n).into());
                total = total.saturating_add(**n);
            }
            sql.push_str(
                " ON CONFLICT (key_id, method, stage, minute_micros) DO UPDATE SET calls = usage_counts.calls + excluded.calls",
            );
            pending
                .txn()
                .execute_raw(stmt(self.backend(), &sql, values))
                .await?;
        }
        let quotas = self.quotas_of(pending.txn(), records).await?;
        pending
            .complete(&total)
            .await
            .map_err(ApiKeysError::Idempotency)?;
        Ok((total, quotas))
    }

    async fn quotas_of(
        &self,
        db: &impl ConnectionTrait,
        records: &[UsageRecord],
    ) -> Result<Vec<QuotaUse>, ApiKeysError> {
        let mut developers: BTreeMap<String, ()> = BTreeMap::new();
        for r in records {
            if let Ok(key) = self.key(db, &r.key_id).await {
                developers.insert(key.developer_id, ());
            }
        }
        let now = kit_values::now_micros();
        let mut out = Vec::new();
        for developer_id in developers.into_keys() {
            let developer = self.developer(db, &developer_id).await?;
            let (plan, _) = self.plan(db, &developer.plan_id).await?;
            if let Some(bounds) = plan.quota_bounds(now) {
                out.push(QuotaUse {
                    used: self.calls(db, &developer_id, bounds).await?,
                    developer_id,
                    period_start: bounds.0,
                });
            }
        }
        Ok(out)
    }

    /// Calls per method per bucket (`bucket_micros` long) in [start, end).
    pub async fn usage(
        &self,
        developer_id: &str,
        key_id: Option<&str>,
        (start, end): (i64, i64),
        bucket_micros: i64,
    ) -> Result<Vec<Bucket>, ApiKeysError> {
        self.developer(self.db.read(), developer_id).await?;
        let key_filter = if key_id.is_some() { " AND key_id = ?" } else { "" };
        let sql = format!(
            "SELECT method, (minute_micros / {bucket_micros}) * {bucket_micros} AS bucket, CAST(SUM(calls) AS BIGINT) AS n \
             FROM usage_counts WHERE developer_id = ? AND minute_micros >= ? AND minute_micros < ?{key_filter} \
             GROUP BY method, (minute_micros / {bucket_micros}) * {bucket_micros} ORDER BY method, bucket"
        );
        let mut values: Vec<Value> = vec![developer_id.into(), start.into(), end.into()];
        if let Some(k) = key_id {
            values.push(k.into());
        }
        let rows = self
            .db
            .read()
            .query_all_raw(stmt(self.backend(), &sql, values))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Bucket {
                    method: r.try_get("", "method")?,
                    start_micros: r.try_get("", "bucket")?,
                    count: r.try_get("", "n")?,
                })
            })
            .collect()
    }

    /// Prices a developer's calls over [start, end) on their current plan.
    pub async fn invoice(
        &self,
        developer_id: &str,
        (start, end): (i64, i64),
    ) -> Result<(Developer, Plan, Invoice), ApiKeysError> {
        let developer = self.developer(self.db.read(), developer_id).await?;
        let (plan, _) = self.plan(self.db.read(), &developer.plan_id).await?;
        let rows = self
            .db
            .read()
            .query_all_raw(stmt(
                self.backend(),
                "SELECT method, CAST(SUM(calls) AS BIGINT) AS n FROM usage_counts \
                 WHERE developer_id = ? AND minute_micros >= ? AND minute_micros < ? GROUP BY method ORDER BY method",
                vec![developer_id.into(), start.into(), end.into()],
            ))
            .await?;
        let calls = rows
            .iter()
            .map(|r| {
                Ok(MethodCalls {
                    method: r.try_get("", "method")?,
                    calls: r.try_get("", "n")?,
                })
            })
            .collect::<Result<Vec<_>, ApiKeysError>>()?;
        let invoice = price(&plan, &calls)?;
        Ok((developer, plan, invoice))
    }

    /// Requests the developer made in the current quota period, and the plan's quota.
    pub async fn quota(&self, developer: &Developer) -> Result<(i64, i64), ApiKeysError> {
        let (plan, _) = self.plan(self.db.read(), &developer.plan_id).await?;
        let used = match plan.quota_bounds(kit_values::now_micros()) {
            Some(bounds) => {
                self.calls(self.db.read(), &developer.developer_id, bounds)
                    .await?
            }
            None => 0,
        };
        Ok((used, plan.quota_limit))
    }
}
