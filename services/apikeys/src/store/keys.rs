//! Keys: issued, revoked, rotated, authenticated; and the change feed the gateways follow.

use super::*;

impl Store {
    pub(super) async fn insert_key(
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
        let inserted = api_key::Entity::insert(api_key::ActiveModel {
            key_id: Set(key.key_id.clone()),
            developer_id: Set(key.developer_id.clone()),
            name: Set(key.name.clone()),
            prefix: Set(key.prefix.clone()),
            secret_hash: Set(self.hasher.hash(&secret)),
            status: Set(ACTIVE.into()),
            create_micros: Set(now),
            revoke_micros: Set(None),
            expire_micros: Set(None),
            replaced_by: Set(String::new()),
        })
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
        if inserted == 0 {
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
        let row = api_key::Entity::find_by_id(key_id)
            .one(db)
            .await?
            .ok_or_else(|| ApiKeysError::NotFound {
                kind: KEY,
                id: key_id.to_string(),
            })?;
        key_from(row)
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
            // (An update that changes nothing: SQLite has no FOR UPDATE.)
            developer::Entity::update_many()
                .col_expr(
                    developer::Column::DeveloperId,
                    Expr::col(developer::Column::DeveloperId),
                )
                .filter(developer::Column::DeveloperId.eq(&key.developer_id))
                .exec(&txn)
                .await?;
            let now = kit_values::now_micros();
            let others = api_key::Entity::find()
                .filter(api_key::Column::DeveloperId.eq(&key.developer_id))
                .filter(api_key::Column::KeyId.ne(key_id))
                .filter(api_key::Column::Status.eq(ACTIVE))
                .filter(
                    Condition::any()
                        .add(api_key::Column::ExpireMicros.is_null())
                        .add(api_key::Column::ExpireMicros.gt(now)),
                )
                .count(&txn)
                .await?;
            if others == 0 {
                return Err(ApiKeysError::Precondition(format!(
                    "api key `{key_id}` is your last usable key; rotate it (RotateMyKey) to replace it, \
                     or revoke it once another key works"
                )));
            }
        }
        api_key::Entity::update_many()
            .col_expr(api_key::Column::Status, Expr::val(REVOKED))
            .col_expr(api_key::Column::RevokeMicros, Expr::val(kit_values::now_micros()))
            .filter(api_key::Column::KeyId.eq(key_id))
            .filter(api_key::Column::Status.eq(ACTIVE))
            .exec(&txn)
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
        api_key::Entity::update_many()
            .col_expr(api_key::Column::ExpireMicros, Expr::val(expire))
            .col_expr(api_key::Column::ReplacedBy, Expr::val(new_key_id))
            .filter(api_key::Column::KeyId.eq(key_id))
            .exec(pending.txn())
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
        let mut query = api_key::Entity::find().filter(api_key::Column::KeyId.gt(after.unwrap_or("")));
        if let Some(d) = developer_id {
            query = query.filter(api_key::Column::DeveloperId.eq(d));
        }
        let rows = query
            .order_by_asc(api_key::Column::KeyId)
            .limit(u64::from(limit))
            .all(self.db.read())
            .await?;
        rows.into_iter().map(key_from).collect()
    }

    /// The key a secret belongs to, if it may be used now.
    pub async fn authenticate(&self, secret: &str) -> Result<(Key, Developer), ApiKeysError> {
        let unknown = || ApiKeysError::Unauthenticated("the API key is not valid: check x-api-key".into());
        if !crate::domain::looks_like_secret(secret) {
            return Err(unknown());
        }
        let row = api_key::Entity::find()
            .filter(api_key::Column::SecretHash.eq(self.hasher.hash(secret)))
            .one(self.db.read())
            .await?
            .ok_or_else(unknown)?;
        let key = key_from(row)?;
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

    pub(super) async fn current_cursor(&self) -> Result<i64, ApiKeysError> {
        let last: Option<Option<i64>> = key_change::Entity::find()
            .select_only()
            .column_as(key_change::Column::ChangeId.max(), "c")
            .into_tuple()
            .one(self.db.read())
            .await?;
        Ok(last.flatten().unwrap_or(0))
    }

    /// Changes after `after`: (changes, next cursor, truncated).
    pub async fn changes(&self, after: i64) -> Result<(Vec<Change>, i64, bool), ApiKeysError> {
        if after < 0 {
            return Ok((Vec::new(), self.current_cursor().await?, false));
        }
        let rows = key_change::Entity::find()
            .filter(key_change::Column::ChangeId.gt(after))
            .order_by_asc(key_change::Column::ChangeId)
            .limit(MAX_CHANGES as u64 + 1)
            .all(self.db.read())
            .await?;
        let truncated = rows.len() > MAX_CHANGES;
        let settled_before = kit_values::now_micros() - CHANGE_SETTLE_MICROS;
        let mut next = after;
        let mut settled = true;
        let mut changes = Vec::with_capacity(rows.len().min(MAX_CHANGES));
        for row in rows.into_iter().take(MAX_CHANGES) {
            let (cursor, created) = (row.change_id, row.create_micros);
            // The cursor moves only past settled changes, so one committed
            // late with an earlier cursor is not skipped; newer ones are
            // sent again, and dropping a cache entry twice is harmless.
            settled &= created < settled_before;
            if settled || truncated {
                next = cursor;
            }
            changes.push(Change {
                cursor,
                key_id: row.key_id,
                developer_id: row.developer_id,
                plan_id: row.plan_id,
            });
        }
        Ok((changes, next, truncated))
    }
}
