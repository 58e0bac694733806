//! Usage recorded by the gateways, and what it adds up to: usage, quotas, invoices.

use super::*;

impl Store {
    pub(super) async fn calls(
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
