//! The gRPC faces of apikeys: pb <-> domain, the admin token check, and the
//! one place errors become statuses.

use std::sync::Arc;

use kit_values::{Amount, Violations, quoted, timestamp};
use tonic::{Request, Response, Status};

use crate::domain::{
    ApiKeysError, DEFAULT_GRACE_MICROS, MAX_GRACE_MICROS, MAX_USAGE_RECORDS, Period, Plan, PlanParts,
    check_email, check_id, check_name, check_slug, token_matches,
};
use crate::pb::ferrymesh::apikeys::v1 as pb;
use crate::store::{self, Developer, Key, KeyStatus, Store, UsageRecord};

const MINUTE_MICROS: i64 = 60_000_000;
const DAY_MICROS: i64 = 86_400_000_000;

/// Checks `authorization: Bearer <token>` on every admin call.
#[derive(Clone)]
pub(crate) struct AdminAuth {
    token: Arc<str>,
}

impl AdminAuth {
    pub(crate) fn new(token: &str) -> Self {
        AdminAuth { token: token.into() }
    }
}

impl AdminAuth {
    fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let offered = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match offered {
            None => Err(Status::unauthenticated(
                "ApiKeysService is for operators: send `authorization: Bearer <admin token>`",
            )),
            Some(token) if token_matches(token, &self.token) => Ok(()),
            Some(_) => Err(Status::permission_denied("the admin token is not valid")),
        }
    }
}

pub(crate) struct ApiKeysApi {
    store: Store,
    admin: AdminAuth,
}

impl ApiKeysApi {
    pub(crate) fn new(store: Store, admin: AdminAuth) -> Self {
        ApiKeysApi { store, admin }
    }
}

pub(crate) struct PortalApi {
    store: Store,
    default_plan: String,
}

impl PortalApi {
    pub(crate) fn new(store: Store, default_plan: String) -> Self {
        PortalApi { store, default_plan }
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<(Key, Developer), Status> {
        let secret = request
            .metadata()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("send your API key as x-api-key metadata"))?;
        Ok(self.store.authenticate(secret).await?)
    }
}

fn plan_to_pb(plan: &Plan, create_micros: i64) -> pb::UsagePlan {
    pb::UsagePlan {
        plan_id: plan.plan_id.clone(),
        name: plan.name.clone(),
        rate_limit: plan.rate_limit,
        burst_limit: plan.burst_limit,
        quota_limit: plan.quota_limit,
        quota_period: match plan.quota_period {
            None => pb::QuotaPeriod::Unspecified,
            Some(Period::Day) => pb::QuotaPeriod::Day,
            Some(Period::Week) => pb::QuotaPeriod::Week,
            Some(Period::Month) => pb::QuotaPeriod::Month,
        } as i32,
        price_per_thousand: Some(Amount::from_nanos(plan.currency.clone(), plan.price_nanos).to_pb()),
        stages: plan.stages.clone(),
        create_time: Some(timestamp(create_micros)),
        method_rate_limits: plan
            .method_rate_limits
            .iter()
            .map(|(m, r, b)| pb::MethodRateLimit {
                method: m.clone(),
                rate_limit: *r,
                burst_limit: *b,
            })
            .collect(),
        allowed_methods: plan.allowed_methods.clone(),
        free_calls_per_month: plan.free_calls_per_month,
        method_weights: plan
            .method_weights
            .iter()
            .map(|(m, w)| pb::MethodWeight {
                method: m.clone(),
                weight: *w,
            })
            .collect(),
    }
}

fn key_to_pb(key: &Key, plan_id: &str) -> pb::ApiKey {
    let now = kit_values::now_micros();
    pb::ApiKey {
        key_id: key.key_id.clone(),
        developer_id: key.developer_id.clone(),
        plan_id: plan_id.to_string(),
        name: key.name.clone(),
        prefix: key.prefix.clone(),
        status: match key.status {
            KeyStatus::Revoked => pb::ApiKeyStatus::Revoked,
            KeyStatus::Active if key.expired(now) => pb::ApiKeyStatus::Expired,
            KeyStatus::Active => pb::ApiKeyStatus::Active,
        } as i32,
        create_time: Some(timestamp(key.create_micros)),
        revoke_time: key.revoke_micros.map(timestamp),
        expire_time: key.expire_micros.map(timestamp),
        replaced_by_key_id: key.replaced_by.clone(),
    }
}

fn developer_to_pb(d: &Developer) -> pb::Developer {
    pb::Developer {
        developer_id: d.developer_id.clone(),
        email: d.email.clone(),
        name: d.name.clone(),
        create_time: Some(timestamp(d.create_micros)),
        plan_id: d.plan_id.clone(),
    }
}

fn micros_of(field: &str, t: Option<&prost_types::Timestamp>, v: &mut Violations) -> Option<i64> {
    let Some(t) = t else {
        v.add(field, "is required");
        return None;
    };
    if !(0..=253_402_300_799).contains(&t.seconds) || !(0..1_000_000_000).contains(&t.nanos) {
        v.add(field, "must be a timestamp between 1970 and 9999");
        return None;
    }
    Some(t.seconds * 1_000_000 + i64::from(t.nanos / 1000))
}

/// Checks a usage range and granularity; returns ((start, end), bucket length).
fn usage_range(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
    granularity: i32,
    v: &mut Violations,
) -> Option<((i64, i64), i64)> {
    let start = micros_of("start_time", start, v);
    let end = micros_of("end_time", end, v);
    let (bucket, longest, name) = match pb::UsageGranularity::try_from(granularity) {
        Ok(pb::UsageGranularity::Minute) => (MINUTE_MICROS, DAY_MICROS, "1 day"),
        Ok(pb::UsageGranularity::Day | pb::UsageGranularity::Unspecified) => {
            (DAY_MICROS, 366 * DAY_MICROS, "366 days")
        }
        Err(_) => {
            v.add(
                "granularity",
                format!("{granularity} is not a UsageGranularity: use MINUTE or DAY"),
            );
            return None;
        }
    };
    let (start, end) = (start?, end?);
    if end <= start {
        v.add("end_time", "must be after start_time");
        return None;
    }
    if end - start > longest {
        v.add(
            "end_time",
            format!("may be at most {name} after start_time at this granularity"),
        );
        return None;
    }
    Some(((start, end), bucket))
}

fn buckets_to_pb(buckets: Vec<store::Bucket>) -> (Vec<pb::UsageBucket>, i64) {
    let total = buckets.iter().map(|b| b.count).fold(0i64, i64::saturating_add);
    let buckets = buckets
        .into_iter()
        .map(|b| pb::UsageBucket {
            method: b.method,
            window_start: Some(timestamp(b.start_micros)),
            count: b.count,
        })
        .collect();
    (buckets, total)
}

fn grace(field: &str, d: Option<&prost_types::Duration>, v: &mut Violations) -> i64 {
    match d {
        None => DEFAULT_GRACE_MICROS,
        Some(d) => {
            let micros = d
                .seconds
                .checked_mul(1_000_000)
                .and_then(|s| s.checked_add(i64::from(d.nanos / 1000)));
            match micros {
                Some(m) if (0..=MAX_GRACE_MICROS).contains(&m) && d.nanos >= 0 => m,
                _ => {
                    v.add(field, "must be between 0s and 30 days");
                    0
                }
            }
        }
    }
}

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

/// A developer's invoice for the month `period` (already checked, as `bounds`).
async fn invoice(
    store: &Store,
    developer_id: &str,
    period: &str,
    bounds: (i64, i64),
) -> Result<pb::Invoice, Status> {
    let (developer, plan, invoice) = store.invoice(developer_id, bounds).await?;
    Ok(pb::Invoice {
        developer_id: developer.developer_id,
        period: period.to_string(),
        plan_id: plan.plan_id,
        lines: invoice
            .lines
            .into_iter()
            .map(|l| pb::InvoiceLine {
                method: l.method,
                calls: l.calls,
                weight: l.weight,
                weighted_calls: l.weighted,
            })
            .collect(),
        weighted_calls: invoice.weighted,
        free_calls: invoice.free,
        billable_calls: invoice.billable,
        total: Some(invoice.total.to_pb()),
    })
}

/// A page of an unfiltered list (AIP-158), or INVALID_ARGUMENT naming the field.
fn page_of(size: i32, token: &str) -> Result<kit_store::paging::PageRequest, Status> {
    let mut v = Violations::new();
    let page = kit_store::paging::PageRequest::parse(size, token, "", &mut v);
    page.filter(|_| v.is_empty())
        .ok_or_else(|| ApiKeysError::from(v).into())
}

/// The month `period` (YYYY-MM) as bounds, or a violation of `field`.
fn month(field: &str, period: &str, v: &mut Violations) -> Option<(i64, i64)> {
    let bounds = kit_values::month_bounds(period);
    v.check(bounds.is_none(), field, || {
        format!(
            "must be a month written YYYY-MM, such as 2026-11, got {}",
            quoted(period)
        )
    });
    bounds
}

impl ApiKeysApi {
    fn store_read(&self) -> sea_orm::DatabaseConnection {
        self.store.reader()
    }
}

#[tonic::async_trait]
impl pb::developer_portal_service_server::DeveloperPortalService for PortalApi {
    async fn register_developer(
        &self,
        request: Request<pb::RegisterDeveloperRequest>,
    ) -> Result<Response<pb::RegisterDeveloperResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        check_email("email", &r.email, &mut v);
        check_name("name", &r.name, &mut v);
        if !v.is_empty() {
            return Err(ApiKeysError::from(v).into());
        }
        let (developer, key, secret) = self.store.register(&r.email, &r.name, &self.default_plan).await?;
        Ok(Response::new(pb::RegisterDeveloperResponse {
            key: Some(key_to_pb(&key, &developer.plan_id)),
            developer: Some(developer_to_pb(&developer)),
            secret,
        }))
    }

    async fn list_my_keys(
        &self,
        request: Request<pb::ListMyKeysRequest>,
    ) -> Result<Response<pb::ListMyKeysResponse>, Status> {
        let (_, developer) = self.caller(&request).await?;
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        // A developer's keys are few; read them all, a page at a time.
        loop {
            let page = self
                .store
                .list_keys(Some(&developer.developer_id), after.as_deref(), 100)
                .await?;
            let done = page.len() < 100;
            after = page.last().map(|k| k.key_id.clone());
            keys.extend(page.iter().map(|k| key_to_pb(k, &developer.plan_id)));
            if done || keys.len() >= 1000 {
                break;
            }
        }
        Ok(Response::new(pb::ListMyKeysResponse { keys }))
    }

    async fn rotate_my_key(
        &self,
        request: Request<pb::RotateMyKeyRequest>,
    ) -> Result<Response<pb::RotateMyKeyResponse>, Status> {
        let (key, developer) = self.caller(&request).await?;
        let mut v = Violations::new();
        let grace = grace("grace_period", request.get_ref().grace_period.as_ref(), &mut v);
        if !v.is_empty() {
            return Err(ApiKeysError::from(v).into());
        }
        let new_key_id = format!("key_{}", uuid::Uuid::new_v4().simple());
        let (old, new, secret) = self.store.rotate(&key.key_id, &new_key_id, grace).await?;
        Ok(Response::new(pb::RotateMyKeyResponse {
            new_key: Some(key_to_pb(&new, &developer.plan_id)),
            secret: secret.unwrap_or_default(),
            old_key: Some(key_to_pb(&old, &developer.plan_id)),
        }))
    }

    async fn revoke_my_key(
        &self,
        request: Request<pb::RevokeMyKeyRequest>,
    ) -> Result<Response<pb::RevokeMyKeyResponse>, Status> {
        let (_, developer) = self.caller(&request).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        check_id("key_id", &r.key_id, &mut v);
        if !v.is_empty() {
            return Err(ApiKeysError::from(v).into());
        }
        // Someone else's key is NOT_FOUND, as a missing one: no developer
        // learns which key ids exist.
        let key = self.store.key(&self.store.reader(), &r.key_id).await?;
        if key.developer_id != developer.developer_id {
            return Err(ApiKeysError::NotFound {
                kind: crate::store::KEY,
                id: r.key_id,
            }
            .into());
        }
        let key = self.store.revoke(&r.key_id, true).await?;
        Ok(Response::new(pb::RevokeMyKeyResponse {
            key: Some(key_to_pb(&key, &developer.plan_id)),
        }))
    }

    async fn get_my_invoice(
        &self,
        request: Request<pb::GetMyInvoiceRequest>,
    ) -> Result<Response<pb::GetMyInvoiceResponse>, Status> {
        let (_, developer) = self.caller(&request).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let bounds = month("period", &r.period, &mut v);
        let Some(bounds) = bounds.filter(|_| v.is_empty()) else {
            return Err(ApiKeysError::from(v).into());
        };
        let invoice = invoice(&self.store, &developer.developer_id, &r.period, bounds).await?;
        Ok(Response::new(pb::GetMyInvoiceResponse {
            invoice: Some(invoice),
        }))
    }

    async fn get_my_usage(
        &self,
        request: Request<pb::GetMyUsageRequest>,
    ) -> Result<Response<pb::GetMyUsageResponse>, Status> {
        let (_, developer) = self.caller(&request).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let range = usage_range(r.start_time.as_ref(), r.end_time.as_ref(), r.granularity, &mut v);
        let Some((range, bucket)) = range.filter(|_| v.is_empty()) else {
            return Err(ApiKeysError::from(v).into());
        };
        let (buckets, total) = buckets_to_pb(
            self.store
                .usage(&developer.developer_id, None, range, bucket)
                .await?,
        );
        let (quota_used, quota_limit) = self.store.quota(&developer).await?;
        Ok(Response::new(pb::GetMyUsageResponse {
            buckets,
            total,
            quota_used,
            quota_limit,
        }))
    }
}

/// The one place apikeys errors become statuses.
impl From<ApiKeysError> for Status {
    fn from(error: ApiKeysError) -> Status {
        use kit::error as e;
        let message = error.to_string();
        match error {
            ApiKeysError::Invalid(v) => e::invalid_argument(v),
            ApiKeysError::NotFound { kind, id } => e::not_found(kind, &id),
            ApiKeysError::Conflict { kind, id } => e::already_exists(kind, &id, message),
            ApiKeysError::Registered => Status::already_exists(message),
            ApiKeysError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiKeysError::Denied(m) => Status::permission_denied(m),
            ApiKeysError::Precondition(m) => {
                e::failed_precondition("KEY_NOT_ROTATABLE", "apikeys.ferrymesh", &[], m)
            }
            ApiKeysError::Store(_) | ApiKeysError::Idempotency(_) | ApiKeysError::Corrupt(_) => {
                tracing::error!(error = %message, "apikeys store failed");
                Status::internal("apikeys could not complete the call; it is logged")
            }
        }
    }
}
