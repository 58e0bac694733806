//! Plans and developers.

use super::*;

impl Store {
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

    pub(super) async fn insert_developer(
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
}
