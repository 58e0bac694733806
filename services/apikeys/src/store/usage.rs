//! Usage recorded by the gateways, and what it adds up to: usage, quotas, invoices.

use super::*;

impl Store {
    pub(super) async fn calls(
        &self,
        db: &impl ConnectionTrait,
        developer_id: &str,
        (start, end): (i64, i64),
    ) -> Result<i64, ApiKeysError> {
        let sum: Option<i64> = usage_count::Entity::find()
            .select_only()
            .column_as(sum_of_calls(), "n")
            .filter(usage_count::Column::DeveloperId.eq(developer_id))
            .filter(usage_count::Column::MinuteMicros.gte(start))
            .filter(usage_count::Column::MinuteMicros.lt(end))
            .into_tuple()
            .one(db)
            .await?;
        Ok(sum.unwrap_or(0))
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
        let total = merged.values().fold(0i64, |sum, n| sum.saturating_add(*n));
        let rows: Vec<usage_count::ActiveModel> = merged
            .iter()
            .map(|((key, method, stage, minute), n)| usage_count::ActiveModel {
                key_id: Set(key.to_string()),
                method: Set(method.to_string()),
                stage: Set(stage.to_string()),
                minute_micros: Set(*minute),
                developer_id: Set(developers.get(key).cloned().unwrap_or_default()),
                calls: Set(*n),
            })
            .collect();
        // A row seen before adds to its count.
        let add = OnConflict::columns([
            usage_count::Column::KeyId,
            usage_count::Column::Method,
            usage_count::Column::Stage,
            usage_count::Column::MinuteMicros,
        ])
        .value(
            usage_count::Column::Calls,
            Expr::col((usage_count::Entity, usage_count::Column::Calls))
                .add(Expr::col(("excluded", usage_count::Column::Calls))),
        )
        .to_owned();
        for chunk in rows.chunks(200) {
            usage_count::Entity::insert_many(chunk.to_vec())
                .on_conflict(add.clone())
                .exec_without_returning(pending.txn())
                .await?;
        }
        let quotas = self.quotas_of(pending.txn(), records).await?;
        pending
            .complete(&total)
            .await
            .map_err(ApiKeysError::Idempotency)?;
        Ok((total, quotas))
    }

    pub(super) async fn quotas_of(
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
        // The start of each minute's bucket, the width written in (an
        // integer): PostgreSQL groups by the select's expression only if it
        // is the same text, and two bound parameters are not.
        let bucket = || Expr::cust(format!("(minute_micros / {bucket_micros}) * {bucket_micros}"));
        let mut query = usage_count::Entity::find()
            .select_only()
            .column(usage_count::Column::Method)
            .column_as(bucket(), "bucket")
            .column_as(sum_of_calls(), "n")
            .filter(usage_count::Column::DeveloperId.eq(developer_id))
            .filter(usage_count::Column::MinuteMicros.gte(start))
            .filter(usage_count::Column::MinuteMicros.lt(end));
        if let Some(k) = key_id {
            query = query.filter(usage_count::Column::KeyId.eq(k));
        }
        let rows: Vec<(String, i64, i64)> = query
            .group_by(usage_count::Column::Method)
            .group_by(bucket())
            .order_by_asc(usage_count::Column::Method)
            .order_by_asc(bucket())
            .into_tuple()
            .all(self.db.read())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(method, start_micros, count)| Bucket {
                method,
                start_micros,
                count,
            })
            .collect())
    }

    /// Prices a developer's calls over [start, end) on their current plan.
    pub async fn invoice(
        &self,
        developer_id: &str,
        (start, end): (i64, i64),
    ) -> Result<(Developer, Plan, Invoice), ApiKeysError> {
        let developer = self.developer(self.db.read(), developer_id).await?;
        let (plan, _) = self.plan(self.db.read(), &developer.plan_id).await?;
        let rows: Vec<(String, i64)> = usage_count::Entity::find()
            .select_only()
            .column(usage_count::Column::Method)
            .column_as(sum_of_calls(), "n")
            .filter(usage_count::Column::DeveloperId.eq(developer_id))
            .filter(usage_count::Column::MinuteMicros.gte(start))
            .filter(usage_count::Column::MinuteMicros.lt(end))
            .group_by(usage_count::Column::Method)
            .order_by_asc(usage_count::Column::Method)
            .into_tuple()
            .all(self.db.read())
            .await?;
        let calls: Vec<MethodCalls> = rows
            .into_iter()
            .map(|(method, calls)| MethodCalls { method, calls })
            .collect();
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
