//! The operators' service: plans, developers, keys, usage and invoices, with the admin token.

use super::*;

#[tonic::async_trait]
impl pb::api_keys_service_server::ApiKeysService for ApiKeysApi {
    async fn create_usage_plan(
        &self,
        request: Request<pb::CreateUsagePlanRequest>,
    ) -> Result<Response<pb::CreateUsagePlanResponse>, Status> {
        self.admin.check(&request)?;
        let mut v = Violations::new();
        let Some(p) = request.into_inner().plan else {
            v.add("plan", "is required");
            return Err(ApiKeysError::from(v).into());
        };
        let price = match &p.price_per_thousand {
            None => Some(Amount::zero("USD")),
            Some(_) => Amount::parse("plan.price_per_thousand", p.price_per_thousand.as_ref(), &mut v),
        };
        let plan = Plan::parse(
            PlanParts {
                plan_id: &p.plan_id,
                name: &p.name,
                rate_limit: p.rate_limit,
                burst_limit: p.burst_limit,
                quota_limit: p.quota_limit,
                quota_period: p.quota_period,
                price,
                stages: &p.stages,
                method_rate_limits: p
                    .method_rate_limits
                    .iter()
                    .map(|m| (m.method.as_str(), m.rate_limit, m.burst_limit))
                    .collect(),
                allowed_methods: &p.allowed_methods,
                free_calls_per_month: p.free_calls_per_month,
                method_weights: p
                    .method_weights
                    .iter()
                    .map(|m| (m.method.as_str(), m.weight))
                    .collect(),
            },
            &mut v,
        );
        let Some(plan) = plan else {
            return Err(ApiKeysError::from(v).into());
        };
        let (plan, created) = self.store.create_plan(&plan).await?;
        Ok(Response::new(pb::CreateUsagePlanResponse {
            plan: Some(plan_to_pb(&plan, created)),
        }))
    }

    async fn list_usage_plans(
        &self,
        request: Request<pb::ListUsagePlansRequest>,
    ) -> Result<Response<pb::ListUsagePlansResponse>, Status> {
        self.admin.check(&request)?;
        let r = request.into_inner();
        let page = page_of(r.page_size, &r.page_token)?;
        let mut plans = self
            .store
            .list_plans(page.after.as_deref(), page.size + 1)
            .await?;
        let next_page_token = page.finish(&mut plans, |(p, _)| p.plan_id.clone());
        Ok(Response::new(pb::ListUsagePlansResponse {
            plans: plans.iter().map(|(p, c)| plan_to_pb(p, *c)).collect(),
            next_page_token,
        }))
    }

    async fn create_developer(
        &self,
        request: Request<pb::CreateDeveloperRequest>,
    ) -> Result<Response<pb::CreateDeveloperResponse>, Status> {
        self.admin.check(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        check_id("developer_id", &r.developer_id, &mut v);
        check_email("email", &r.email, &mut v);
        check_name("name", &r.name, &mut v);
        check_slug("plan_id", &r.plan_id, &mut v);
        if !v.is_empty() {
            return Err(ApiKeysError::from(v).into());
        }
        let developer = self
            .store
            .create_developer(&Developer {
                developer_id: r.developer_id,
                email: r.email.to_ascii_lowercase(),
                name: r.name,
                plan_id: r.plan_id,
                create_micros: kit_values::now_micros(),
            })
            .await?;
        Ok(Response::new(pb::CreateDeveloperResponse {
            developer: Some(developer_to_pb(&developer)),
        }))
    }

    async fn set_developer_plan(
        &self,
        request: Request<pb::SetDeveloperPlanRequest>,
    ) -> Result<Response<pb::SetDeveloperPlanResponse>, Status> {
        self.admin.check(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        check_id("developer_id", &r.developer_id, &mut v);
        check_slug("plan_id", &r.plan_id, &mut v);
        if !v.is_empty() {
            return Err(ApiKeysError::from(v).into());
        }
        let developer = self.store.set_plan(&r.developer_id, &r.plan_id).await?;
        Ok(Response::new(pb::SetDeveloperPlanResponse {
            developer: Some(developer_to_pb(&developer)),
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        self.admin.check(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        check_id("key_id", &r.key_id, &mut v);
        check_id("developer_id", &r.developer_id, &mut v);
        let name = if r.name.is_empty() {
            r.key_id.clone()
        } else {
            r.name
        };
        check_name("name", &name, &mut v);
        if !v.is_empty() {
            return Err(ApiKeysError::from(v).into());
        }
        let (key, secret) = self.store.create_key(&r.key_id, &r.developer_id, &name).await?;
        let developer = self
            .store
            .developer(&self.store_read(), &key.developer_id)
            .await?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            key: Some(key_to_pb(&key, &developer.plan_id)),
            secret: secret.unwrap_or_default(),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        self.admin.check(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        check_id("key_id", &r.key_id, &mut v);
        if !v.is_empty() {
            return Err(ApiKeysError::from(v).into());
        }
        let key = self.store.revoke(&r.key_id, false).await?;
        let developer = self
            .store
            .developer(&self.store_read(), &key.developer_id)
            .await?;
        Ok(Response::new(pb::RevokeApiKeyResponse {
            key: Some(key_to_pb(&key, &developer.plan_id)),
        }))
    }

    async fn rotate_api_key(
        &self,
        request: Request<pb::RotateApiKeyRequest>,
    ) -> Result<Response<pb::RotateApiKeyResponse>, Status> {
        self.admin.check(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        check_id("key_id", &r.key_id, &mut v);
        check_id("new_key_id", &r.new_key_id, &mut v);
        let grace = grace("grace_period", r.grace_period.as_ref(), &mut v);
        if !v.is_empty() {
            return Err(ApiKeysError::from(v).into());
        }
        let (old, new, secret) = self.store.rotate(&r.key_id, &r.new_key_id, grace).await?;
        let developer = self
            .store
            .developer(&self.store_read(), &old.developer_id)
            .await?;
        Ok(Response::new(pb::RotateApiKeyResponse {
            old_key: Some(key_to_pb(&old, &developer.plan_id)),
            new_key: Some(key_to_pb(&new, &developer.plan_id)),
            secret: secret.unwrap_or_default(),
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        self.admin.check(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        if !r.developer_id.is_empty() {
            check_id("developer_id", &r.developer_id, &mut v);
        }
        let page = kit_store::paging::PageRequest::parse(
            r.page_size,
            &r.page_token,
            &format!("developer={}", r.developer_id),
            &mut v,
        );
        let Some(page) = page.filter(|_| v.is_empty()) else {
            return Err(ApiKeysError::from(v).into());
        };
        let developer = (!r.developer_id.is_empty()).then_some(r.developer_id.as_str());
        let mut keys = self
            .store
            .list_keys(developer, page.after.as_deref(), page.size + 1)
            .await?;
        let next_page_token = page.finish(&mut keys, |k| k.key_id.clone());
        let mut out = Vec::with_capacity(keys.len());
        for key in &keys {
            let developer = self
                .store
                .developer(&self.store_read(), &key.developer_id)
                .await?;
            out.push(key_to_pb(key, &developer.plan_id));
        }
        Ok(Response::new(pb::ListApiKeysResponse {
            keys: out,
            next_page_token,
        }))
    }

    async fn validate_api_key(
        &self,
        request: Request<pb::ValidateApiKeyRequest>,
    ) -> Result<Response<pb::ValidateApiKeyResponse>, Status> {
        self.admin.check(&request)?;
        let r = request.into_inner();
        let valid = self.store.validate(&r.secret).await?;
        Ok(Response::new(pb::ValidateApiKeyResponse {
            key: Some(key_to_pb(&valid.key, &valid.plan.plan_id)),
            plan: Some(plan_to_pb(&valid.plan, 0)),
            quota_used: valid.quota_used,
            developer: Some(developer_to_pb(&valid.developer)),
            change_cursor: valid.cursor,
            quota_period_start: valid.quota_bounds.map(|(s, _)| timestamp(s)),
            quota_period_end: valid.quota_bounds.map(|(_, e)| timestamp(e)),
        }))
    }

    async fn list_changes(
        &self,
        request: Request<pb::ListChangesRequest>,
    ) -> Result<Response<pb::ListChangesResponse>, Status> {
        self.admin.check(&request)?;
        let (changes, cursor, truncated) = self.store.changes(request.into_inner().after).await?;
        Ok(Response::new(pb::ListChangesResponse {
            changes: changes
                .into_iter()
                .map(|c| pb::Change {
                    cursor: c.cursor,
                    key_id: c.key_id,
                    developer_id: c.developer_id,
                    plan_id: c.plan_id,
                })
                .collect(),
            cursor,
            truncated,
        }))
    }

    async fn record_usage(
        &self,
        request: Request<pb::RecordUsageRequest>,
    ) -> Result<Response<pb::RecordUsageResponse>, Status> {
        self.admin.check(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        v.check(
            r.batch_id.is_empty() || r.batch_id.len() > 128,
            "batch_id",
            || format!("must be 1 to 128 characters, got {}", quoted(&r.batch_id)),
        );
        v.check(
            r.records.is_empty() || r.records.len() > MAX_USAGE_RECORDS,
            "records",
            || {
                format!(
                    "must hold 1 to {MAX_USAGE_RECORDS} records, got {}",
                    r.records.len()
                )
            },
        );
        let mut records = Vec::with_capacity(r.records.len());
        for (i, rec) in r.records.iter().enumerate() {
            if v.iter().count() >= kit_values::MAX_REPORTED {
                break;
            }
            let field = |name: &str| format!("records[{i}].{name}");
            check_id(&field("key_id"), &rec.key_id, &mut v);
            let method_ok = rec.method.starts_with('/')
                && rec.method.len() <= 256
                && kit_values::MethodPattern::parse(&rec.method).is_ok_and(|p| p.as_str().contains('/'));
            v.check(!method_ok, &field("method"), || {
                format!(
                    "must be a full method such as /pkg.Service/Method, got {}",
                    quoted(&rec.method)
                )
            });
            let stage_ok = !rec.stage.is_empty()
                && rec.stage.len() <= 32
                && rec
                    .stage
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            v.check(!stage_ok, &field("stage"), || {
                format!(
                    "must be a stage name such as \"prod\", got {}",
                    quoted(&rec.stage)
                )
            });
            v.check(!(1..=1_000_000_000).contains(&rec.count), &field("count"), || {
                format!("must be 1 to 1000000000, got {}", rec.count)
            });
            let minute = micros_of(&field("window_start"), rec.window_start.as_ref(), &mut v);
            if let Some(minute) = minute {
                records.push(UsageRecord {
                    key_id: rec.key_id.clone(),
                    method: rec.method.clone(),
                    stage: rec.stage.clone(),
                    minute_micros: minute - minute.rem_euclid(MINUTE_MICROS),
                    count: rec.count,
                });
            }
        }
        if !v.is_empty() {
            return Err(ApiKeysError::from(v).into());
        }
        let (recorded, quotas) = self.store.record_usage(&r.batch_id, &records).await?;
        Ok(Response::new(pb::RecordUsageResponse {
            recorded,
            quotas: quotas
                .into_iter()
                .map(|q| pb::QuotaUse {
                    developer_id: q.developer_id,
                    used: q.used,
                    period_start: Some(timestamp(q.period_start)),
                })
                .collect(),
        }))
    }

    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        self.admin.check(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        check_id("developer_id", &r.developer_id, &mut v);
        if !r.key_id.is_empty() {
            check_id("key_id", &r.key_id, &mut v);
        }
        let range = usage_range(r.start_time.as_ref(), r.end_time.as_ref(), r.granularity, &mut v);
        let Some((range, bucket)) = range.filter(|_| v.is_empty()) else {
            return Err(ApiKeysError::from(v).into());
        };
        let key = (!r.key_id.is_empty()).then_some(r.key_id.as_str());
        let (buckets, total) = buckets_to_pb(self.store.usage(&r.developer_id, key, range, bucket).await?);
        Ok(Response::new(pb::GetUsageResponse { buckets, total }))
    }

    async fn list_developers(
        &self,
        request: Request<pb::ListDevelopersRequest>,
    ) -> Result<Response<pb::ListDevelopersResponse>, Status> {
        self.admin.check(&request)?;
        let r = request.into_inner();
        let page = page_of(r.page_size, &r.page_token)?;
        let mut developers = self
            .store
            .list_developers(page.after.as_deref(), page.size + 1)
            .await?;
        let next_page_token = page.finish(&mut developers, |d| d.developer_id.clone());
        Ok(Response::new(pb::ListDevelopersResponse {
            developers: developers.iter().map(developer_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn get_invoice(
        &self,
        request: Request<pb::GetInvoiceRequest>,
    ) -> Result<Response<pb::GetInvoiceResponse>, Status> {
        self.admin.check(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        check_id("developer_id", &r.developer_id, &mut v);
        let bounds = month("period", &r.period, &mut v);
        let Some(bounds) = bounds.filter(|_| v.is_empty()) else {
            return Err(ApiKeysError::from(v).into());
        };
        let invoice = invoice(&self.store, &r.developer_id, &r.period, bounds).await?;
        Ok(Response::new(pb::GetInvoiceResponse {
            invoice: Some(invoice),
        }))
    }
}
