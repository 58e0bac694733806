//! Throttling and quotas. Throttling is a token bucket per developer,
//! shared by all their keys (governor's GCRA, as API Gateway's rate and
//! burst), with tighter buckets for the methods a plan names. Quotas are per developer and exact on one
//! gateway: a call is admitted against what apikeys has counted plus what
//! this gateway has admitted since, under one lock. Across G gateways each
//! learns the others' counts when it flushes its own, so a quota may be
//! passed by at most what the other gateways admit within one flush
//! interval (1 s by default).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kit_values::{CalendarPeriod, MethodPattern};

use crate::pb::ferrymesh::apikeys::v1 as pb;

/// One clock for every bucket: making a clock calibrates it, which is slow.
pub(crate) fn clock() -> &'static DefaultClock {
    static CLOCK: std::sync::OnceLock<DefaultClock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(DefaultClock::default)
}

fn bucket(rate: f64, burst: i32) -> Option<DefaultDirectRateLimiter> {
    if !(rate.is_finite() && rate > 0.0) {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    let burst = NonZeroU32::new(u32::try_from(burst.max(1)).unwrap_or(1))?;
    let quota = Quota::with_period(period)?.allow_burst(burst);
    Some(RateLimiter::direct_with_clock(quota, clock().clone()))
}

/// A key's token buckets: the plan's, and one per method rate of the plan.
#[derive(Debug)]
pub struct KeyLimiter {
    settings: String,
    all: Option<DefaultDirectRateLimiter>,
    methods: Vec<(MethodPattern, DefaultDirectRateLimiter)>,
}

impl KeyLimiter {
    /// One bucket for every method.
    pub fn new(rate: f64, burst: i32) -> Self {
        KeyLimiter {
            settings: String::new(),
            all: bucket(rate, burst),
            methods: Vec::new(),
        }
    }

    /// Takes a token for a call to `method`; when none is left, how long
    /// until one is.
    pub fn check(&self, method: &str) -> Result<(), Duration> {
        // The clock is read only on a refusal: making one calibrates it,
        // which costs more than the whole check.
        if let Some((_, limiter)) = self.methods.iter().find(|(p, _)| p.matches(method)) {
            limiter.check().map_err(|n| n.wait_time_from(clock().now()))?;
        }
        match &self.all {
            Some(limiter) => limiter.check().map_err(|n| n.wait_time_from(clock().now())),
            None => Ok(()),
        }
    }
}

/// A token bucket per key (a client address, a developer), all alike:
/// governor's keyed GCRA, idle keys dropped now and then so the map stays
/// as small as the set of recent callers.
pub struct KeyedBuckets<K: std::hash::Hash + Eq + Clone> {
    limiter: Option<RateLimiter<K, governor::state::keyed::HashMapStateStore<K>, DefaultClock>>,
    checks: std::sync::atomic::AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> std::fmt::Debug for KeyedBuckets<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedBuckets").finish_non_exhaustive()
    }
}

impl<K: std::hash::Hash + Eq + Clone> KeyedBuckets<K> {
    /// `rate` calls a second per key, bursts of `burst`; no limit when `rate` is not positive.
    pub fn new(rate: f64, burst: i32) -> Self {
        let quota = (rate.is_finite() && rate > 0.0)
            .then(|| Quota::with_period(Duration::from_secs_f64(1.0 / rate)))
            .flatten()
            .map(|q| {
                q.allow_burst(
                    NonZeroU32::new(u32::try_from(burst.max(1)).unwrap_or(1)).unwrap_or(NonZeroU32::MIN),
                )
            });
        KeyedBuckets {
            limiter: quota.map(|q| RateLimiter::hashmap_with_clock(q, clock().clone())),
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Takes a token of `key`'s bucket; when none is left, how long until one is.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        // Every 4096 checks, forget the keys whose buckets are full again.
        if self.checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4096 == 4095 {
            limiter.retain_recent();
        }
        limiter
            .check_key(key)
            .map_err(|n| n.wait_time_from(clock().now()))
    }
}

/// Every developer's buckets, kept across revalidations so that dropping a
/// key from the cache does not refill its bucket.
#[derive(Debug, Default)]
pub struct Limiters {
    developers: Mutex<HashMap<String, Arc<KeyLimiter>>>,
}

impl Limiters {
    /// The buckets of `developer_id` under `plan`, shared by all their keys;
    /// new ones when the plan's rates changed.
    pub fn for_developer(&self, developer_id: &str, plan: &pb::UsagePlan) -> Arc<KeyLimiter> {
        let settings = format!(
            "{}/{}/{:?}",
            plan.rate_limit,
            plan.burst_limit,
            plan.method_rate_limits
                .iter()
                .map(|m| (&m.method, m.rate_limit, m.burst_limit))
                .collect::<Vec<_>>()
        );
        let make = || {
            Arc::new(KeyLimiter {
                settings: settings.clone(),
                all: bucket(plan.rate_limit, plan.burst_limit),
                methods: plan
                    .method_rate_limits
                    .iter()
                    .filter_map(|m| {
                        Some((
                            MethodPattern::parse(&m.method).ok()?,
                            bucket(m.rate_limit, m.burst_limit)?,
                        ))
                    })
                    .collect(),
            })
        };
        let Ok(mut developers) = self.developers.lock() else {
            return make();
        };
        match developers.get(developer_id) {
            Some(existing) if existing.settings == settings => existing.clone(),
            _ => {
                let limiter = make();
                developers.insert(developer_id.to_string(), limiter.clone());
                limiter
            }
        }
    }
}

/// One developer's quota as this gateway sees it.
#[derive(Debug)]
pub struct QuotaCell {
    state: Mutex<QuotaState>,
}

#[derive(Debug)]
struct QuotaState {
    limit: i64,
    period: CalendarPeriod,
    period_start: i64,
    period_end: i64,
    /// What apikeys had counted, as last heard.
    counted: i64,
    /// Admitted here and not yet acknowledged by apikeys.
    local: i64,
}

/// Why a call was refused by the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The quota.
    pub limit: i64,
    /// When the period ends, micros.
    pub resets_at: i64,
}

impl QuotaCell {
    /// Admits one call if the period's quota has room.
    pub fn admit(&self, now: i64) -> Result<(), QuotaExceeded> {
        let Ok(mut s) = self.state.lock() else {
            return Ok(());
        };
        if now >= s.period_end {
            let (start, end) = s.period.bounds(now);
            s.period_start = start;
            s.period_end = end;
            s.counted = 0;
            s.local = 0;
        }
        if s.counted.saturating_add(s.local) >= s.limit {
            return Err(QuotaExceeded {
                limit: s.limit,
                resets_at: s.period_end,
            });
        }
        s.local += 1;
        Ok(())
    }

    /// Gives back an admitted call that reached no upstream: it is not metered.
    pub fn refund(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.local = s.local.saturating_sub(1).max(0);
        }
    }

    /// apikeys acknowledged `flushed` of this developer's calls and says
    /// `used` were counted in the period starting at `period_start`.
    pub fn acknowledged(&self, flushed: i64, used: i64, period_start: i64) {
        if let Ok(mut s) = self.state.lock() {
            s.local = s.local.saturating_sub(flushed).max(0);
            if period_start == s.period_start {
                s.counted = s.counted.max(used);
            }
        }
    }
}

/// Every developer's quota.
#[derive(Debug, Default)]
pub struct Quotas {
    cells: Mutex<HashMap<String, Arc<QuotaCell>>>,
}

impl Quotas {
    /// The developer's cell, made or brought up to date with a validation's answer.
    pub fn cell(
        &self,
        developer_id: &str,
        limit: i64,
        period: CalendarPeriod,
        period_start: i64,
        used: i64,
    ) -> Arc<QuotaCell> {
        let (start, end) = period.bounds(period_start);
        let fresh = || {
            Arc::new(QuotaCell {
                state: Mutex::new(QuotaState {
                    limit,
                    period,
                    period_start: start,
                    period_end: end,
                    counted: used,
                    local: 0,
                }),
            })
        };
        let Ok(mut cells) = self.cells.lock() else {
            return fresh();
        };
        let cell = cells
            .entry(developer_id.to_string())
            .or_insert_with(fresh)
            .clone();
        if let Ok(mut s) = cell.state.lock() {
            s.limit = limit;
            if s.period != period || s.period_start != start {
                s.period = period;
                s.period_start = start;
                s.period_end = end;
                s.counted = used;
                s.local = 0;
            } else {
                s.counted = s.counted.max(used);
            }
        }
        cell
    }

    /// The developer's cell, if one was made.
    pub fn get(&self, developer_id: &str) -> Option<Arc<QuotaCell>> {
        self.cells.lock().ok()?.get(developer_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_admits_exactly_its_limit_from_many_threads() {
        let quotas = Quotas::default();
        let now = kit_values::now_micros();
        let cell = quotas.cell("dev", 1000, CalendarPeriod::Day, now, 10);
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..500).filter(|_| cell.admit(now).is_ok()).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 990);
        // apikeys acknowledges 990 flushed; 1000 counted: still full.
        let start = CalendarPeriod::Day.bounds(now).0;
        cell.acknowledged(990, 1000, start);
        assert!(cell.admit(now).is_err());
        // The next day starts afresh.
        assert!(cell.admit(now + 86_400_000_000).is_ok());
    }

    #[test]
    fn buckets_let_the_burst_through_then_the_rate() {
        let plan = pb::UsagePlan {
            rate_limit: 5.0,
            burst_limit: 10,
            method_rate_limits: vec![pb::MethodRateLimit {
                method: "a.S/Slow".into(),
                rate_limit: 1.0,
                burst_limit: 1,
            }],
            ..Default::default()
        };
        let limiter = Limiters::default().for_developer("d", &plan);
        assert!(limiter.check("/a.S/Slow").is_ok());
        let wait = limiter.check("/a.S/Slow").unwrap_err();
        assert!(wait > Duration::from_millis(500), "{wait:?}");
        let passed = (0..100).filter(|_| limiter.check("/a.S/Fast").is_ok()).count();
        assert_eq!(passed, 9, "the burst, less the one Slow took");
    }
}
