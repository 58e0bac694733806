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

mod admin;
mod portal;

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
            .get(kit::identity::API_KEY)
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
