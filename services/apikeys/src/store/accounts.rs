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
        let inserted = insert_plan(pending.txn(), &plan.plan_id, fingerprint, now).await?;
        if inserted == 0 {
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
        insert_plan(self.db.write(), &plan.plan_id, settings, kit_values::now_micros()).await?;
        Ok(())
    }

    /// A plan by id, with its creation time.
    pub async fn plan(&self, db: &impl ConnectionTrait, plan_id: &str) -> Result<(Plan, i64), ApiKeysError> {
        let row = usage_plan::Entity::find_by_id(plan_id)
            .one(db)
            .await?
            .ok_or_else(|| ApiKeysError::NotFound {
                kind: "usage plan",
                id: plan_id.to_string(),
            })?;
        plan_from(&row)
    }

    /// Plans by id after `after`, at most `limit`.
    pub async fn list_plans(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Plan, i64)>, ApiKeysError> {
        let rows = usage_plan::Entity::find()
            .filter(usage_plan::Column::PlanId.gt(after.unwrap_or("")))
            .order_by_asc(usage_plan::Column::PlanId)
            .limit(u64::from(limit))
            .all(self.db.read())
            .await?;
        rows.iter().map(plan_from).collect()
    }

    /// Developers by id after `after`, at most `limit`.
    pub async fn list_developers(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Developer>, ApiKeysError> {
        let rows = developer::Entity::find()
            .filter(developer::Column::DeveloperId.gt(after.unwrap_or("")))
            .order_by_asc(developer::Column::DeveloperId)
            .limit(u64::from(limit))
            .all(self.db.read())
            .await?;
        Ok(rows.into_iter().map(developer_from).collect())
    }

    pub(super) async fn insert_developer(
        &self,
        db: &impl ConnectionTrait,
        developer: &Developer,
    ) -> Result<(), ApiKeysError> {
        self.plan(db, &developer.plan_id).await?;
        // Either the id or the email taken: nothing is inserted.
        let inserted = developer::Entity::insert(developer::ActiveModel {
            developer_id: Set(developer.developer_id.clone()),
            email: Set(developer.email.clone()),
            name: Set(developer.name.clone()),
            plan_id: Set(developer.plan_id.clone()),
            create_micros: Set(developer.create_micros),
        })
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
        if inserted == 0 {
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
        let updated = developer::Entity::update_many()
            .col_expr(developer::Column::PlanId, Expr::val(plan_id))
            .filter(developer::Column::DeveloperId.eq(developer_id))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
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
        let row = developer::Entity::find_by_id(developer_id)
            .one(db)
            .await?
            .ok_or_else(|| ApiKeysError::NotFound {
                kind: "developer",
                id: developer_id.to_string(),
            })?;
        Ok(developer_from(row))
    }
}

/// Inserts a plan unless its id is taken; the rows inserted (0 or 1).
async fn insert_plan(
    db: &impl ConnectionTrait,
    plan_id: &str,
    settings: String,
    now: i64,
) -> Result<u64, ApiKeysError> {
    Ok(usage_plan::Entity::insert(usage_plan::ActiveModel {
        plan_id: Set(plan_id.to_string()),
        settings: Set(settings),
        create_micros: Set(now),
    })
    .on_conflict(
        OnConflict::column(usage_plan::Column::PlanId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?)
}
