//! The rules of plans, keys, usage and invoices: no tonic, no SQL.

use kit_values::{Amount, CalendarPeriod, MethodPattern, Violations, quoted};
use serde::{Deserialize, Serialize};

pub use kit_values::{API_KEY_PREFIX as KEY_PREFIX, API_KEY_RANDOM_CHARS as KEY_RANDOM_CHARS};
/// How much of a secret is kept in clear to recognise it by.
pub const SHOWN_PREFIX_CHARS: usize = 12;
/// How long a rotated key keeps working when the caller does not say.
pub const DEFAULT_GRACE_MICROS: i64 = 24 * 3600 * 1_000_000;
/// The longest grace period.
pub const MAX_GRACE_MICROS: i64 = 30 * 24 * 3600 * 1_000_000;
/// Most entries in any list of a plan.
pub const MAX_PLAN_LIST: usize = 100;
/// Most records in one RecordUsage batch.
pub const MAX_USAGE_RECORDS: usize = 10_000;

/// Why an apikeys call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeysError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(Violations),
    /// No such thing.
    #[error("{kind} `{id}` does not exist")]
    NotFound {
        /// What was looked for.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// Sign-up with an email already registered. It says nothing of the
    /// developer: the caller is anonymous.
    #[error(
        "that email is already registered: use one of its keys (RotateMyKey gives a new one), or ask an operator to issue a key"
    )]
    Registered,
    /// An id was reused with other content.
    #[error("{kind} `{id}` already exists with other settings")]
    Conflict {
        /// What kind of thing.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// No key or an unknown key.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known key that may not be used.
    #[error("{0}")]
    Denied(String),
    /// The request is well formed but the state refuses it.
    #[error("{0}")]
    Precondition(String),
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] sea_orm::DbErr),
    /// The idempotency store failed.
    #[error(transparent)]
    Idempotency(kit_store::IdempotencyError),
    /// Stored data cannot be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<Violations> for ApiKeysError {
    fn from(v: Violations) -> Self {
        ApiKeysError::Invalid(v)
    }
}

/// A usage plan, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Its id.
    pub plan_id: String,
    /// Display name.
    pub name: String,
    /// Requests per second per key; 0 is no limit.
    pub rate_limit: f64,
    /// Token bucket size.
    pub burst_limit: i32,
    /// Requests per period per developer; 0 is no quota.
    pub quota_limit: i64,
    /// The quota's period, when there is a quota.
    pub quota_period: Option<Period>,
    /// Price of 1000 weighted calls, in nanos of `currency`.
    pub price_nanos: i64,
    /// The price's currency.
    pub currency: String,
    /// Stages allowed; empty is all.
    pub stages: Vec<String>,
    /// Per-method rates: (pattern, rate, burst).
    pub method_rate_limits: Vec<(String, f64, i32)>,
    /// Allowed method patterns; empty is all public methods.
    pub allowed_methods: Vec<String>,
    /// Weighted calls per month at no charge.
    pub free_calls_per_month: i64,
    /// Per-method weights: (pattern, weight).
    pub method_weights: Vec<(String, i32)>,
}

/// A quota period, stored by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Period {
    /// A UTC day.
    Day,
    /// A UTC week from Monday.
    Week,
    /// A UTC month.
    Month,
}

impl Period {
    /// The calendar arithmetic for this period.
    pub fn calendar(self) -> CalendarPeriod {
        match self {
            Period::Day => CalendarPeriod::Day,
            Period::Week => CalendarPeriod::Week,
            Period::Month => CalendarPeriod::Month,
        }
    }
}

/// The fields of a plan as received, before checking.
#[derive(Debug, Clone)]
pub struct PlanParts<'a> {
    /// See [`Plan`].
    pub plan_id: &'a str,
    /// See [`Plan`].
    pub name: &'a str,
    /// See [`Plan`].
    pub rate_limit: f64,
    /// See [`Plan`].
    pub burst_limit: i32,
    /// See [`Plan`].
    pub quota_limit: i64,
    /// 0 unspecified, 1 day, 2 week, 3 month; anything else is refused.
    pub quota_period: i32,
    /// The price, checked by [`Amount::parse`].
    pub price: Option<Amount>,
    /// See [`Plan`].
    pub stages: &'a [String],
    /// See [`Plan`].
    pub method_rate_limits: Vec<(&'a str, f64, i32)>,
    /// See [`Plan`].
    pub allowed_methods: &'a [String],
    /// See [`Plan`].
    pub free_calls_per_month: i64,
    /// See [`Plan`].
    pub method_weights: Vec<(&'a str, i32)>,
}

/// Checks an id of 1 to 64 lowercase letters, digits and '-'.
pub fn check_slug(field: &str, text: &str, v: &mut Violations) {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    v.check(!ok, field, || {
        format!(
            "must be 1 to 64 lowercase letters, digits and '-', got {}",
            quoted(text)
        )
    });
}

/// Checks a caller-chosen id of 1 to 64 letters, digits, '-' or '_'.
pub fn check_id(field: &str, text: &str, v: &mut Violations) {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    v.check(!ok, field, || {
        format!(
            "must be 1 to 64 letters, digits, '-' or '_', got {}",
            quoted(text)
        )
    });
}

/// Checks an email address enough to tell developers apart. Only ASCII:
/// the gateway carries a key holder's email as request metadata, which is
/// ASCII, and orders are scoped by it; an internationalised address is
/// refused here with a clear message rather than mangled later.
pub fn check_email(field: &str, text: &str, v: &mut Violations) {
    if !text.is_ascii() {
        v.add(
            field,
            format!(
                "must be an ASCII email address (internationalised addresses are not accepted), got {}",
                quoted(text)
            ),
        );
        return;
    }
    let ok = text.len() >= 3
        && text.len() <= 254
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        && text
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.') && !domain.contains('@'));
    v.check(!ok, field, || {
        format!(
            "must be an email address such as ada@example.com, got {}",
            quoted(text)
        )
    });
}

/// Checks a display name: 1 to 128 characters, no control characters.
pub fn check_name(field: &str, text: &str, v: &mut Violations) {
    let ok = !text.trim().is_empty() && text.chars().count() <= 128 && !text.chars().any(char::is_control);
    v.check(!ok, field, || {
        format!("must be 1 to 128 printable characters, got {}", quoted(text))
    });
}

fn check_rate(field: &str, rate: f64, burst: i32, required: bool, v: &mut Violations) {
    let rate_ok = rate.is_finite() && (0.0..=1_000_000.0).contains(&rate) && (!required || rate > 0.0);
    v.check(!rate_ok, &format!("{field}.rate_limit"), || {
        format!(
            "must be {} requests per second, at most 1000000, got {rate}",
            if required {
                "more than 0"
            } else {
                "0 (no limit) or more"
            }
        )
    });
    let needs_burst = rate > 0.0;
    let burst_ok = if needs_burst {
        (1..=1_000_000).contains(&burst)
    } else {
        burst >= 0
    };
    v.check(!burst_ok, &format!("{field}.burst_limit"), || {
        format!("must be 1 to 1000000 when there is a rate limit, got {burst}")
    });
}

impl Plan {
    /// Checks every field, reporting each problem.
    pub fn parse(p: PlanParts<'_>, v: &mut Violations) -> Option<Plan> {
        check_slug("plan.plan_id", p.plan_id, v);
        check_name("plan.name", p.name, v);
        check_rate("plan", p.rate_limit, p.burst_limit, false, v);
        v.check(p.quota_limit < 0, "plan.quota_limit", || {
            format!("must be 0 (no quota) or more, got {}", p.quota_limit)
        });
        let quota_period = match p.quota_period {
            0 => None,
            1 => Some(Period::Day),
            2 => Some(Period::Week),
            3 => Some(Period::Month),
            n => {
                v.add(
                    "plan.quota_period",
                    format!("{n} is not a QuotaPeriod: use DAY, WEEK or MONTH"),
                );
                None
            }
        };
        v.check(
            p.quota_limit > 0 && quota_period.is_none(),
            "plan.quota_period",
            || "is required when quota_limit is set: use DAY, WEEK or MONTH".to_string(),
        );
        if let Some(price) = &p.price {
            v.check(price.nanos() < 0, "plan.price_per_thousand", || {
                format!("must not be negative, got {price}")
            });
        }
        for (name, len) in [
            ("plan.stages", p.stages.len()),
            ("plan.method_rate_limits", p.method_rate_limits.len()),
            ("plan.allowed_methods", p.allowed_methods.len()),
            ("plan.method_weights", p.method_weights.len()),
        ] {
            v.check(len > MAX_PLAN_LIST, name, || {
                format!("may hold at most {MAX_PLAN_LIST} entries, got {len}")
            });
        }
        for (i, stage) in p.stages.iter().enumerate() {
            let ok = !stage.is_empty()
                && stage.len() <= 32
                && stage
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            v.check(!ok, &format!("plan.stages[{i}]"), || {
                format!(
                    "must be 1 to 32 lowercase letters, digits and '-', got {}",
                    quoted(stage)
                )
            });
        }
        for (i, (pattern, rate, burst)) in p.method_rate_limits.iter().enumerate() {
            let field = format!("plan.method_rate_limits[{i}]");
            if let Err(e) = MethodPattern::parse(pattern) {
                v.add(format!("{field}.method"), e);
            }
            check_rate(&field, *rate, *burst, true, v);
        }
        for (i, pattern) in p.allowed_methods.iter().enumerate() {
            if let Err(e) = MethodPattern::parse(pattern) {
                v.add(format!("plan.allowed_methods[{i}]"), e);
            }
        }
        v.check(p.free_calls_per_month < 0, "plan.free_calls_per_month", || {
            format!("must be 0 or more, got {}", p.free_calls_per_month)
        });
        for (i, (pattern, weight)) in p.method_weights.iter().enumerate() {
            if let Err(e) = MethodPattern::parse(pattern) {
                v.add(format!("plan.method_weights[{i}].method"), e);
            }
            v.check(
                !(1..=1000).contains(weight),
                &format!("plan.method_weights[{i}].weight"),
                || format!("must be 1 to 1000, got {weight}"),
            );
        }
        if !v.is_empty() {
            return None;
        }
        let price = p.price?;
        Some(Plan {
            plan_id: p.plan_id.to_string(),
            name: p.name.to_string(),
            rate_limit: p.rate_limit,
            burst_limit: p.burst_limit,
            quota_limit: p.quota_limit,
            quota_period,
            price_nanos: price.nanos(),
            currency: price.currency().to_string(),
            stages: p.stages.to_vec(),
            method_rate_limits: p
                .method_rate_limits
                .iter()
                .map(|(m, r, b)| ((*m).to_string(), *r, *b))
                .collect(),
            allowed_methods: p.allowed_methods.to_vec(),
            free_calls_per_month: p.free_calls_per_month,
            method_weights: p
                .method_weights
                .iter()
                .map(|(m, w)| ((*m).to_string(), *w))
                .collect(),
        })
    }

    /// The plan every self-registered developer starts on.
    pub fn free(plan_id: &str) -> Plan {
        Plan {
            plan_id: plan_id.to_string(),
            name: "Free".into(),
            rate_limit: 10.0,
            burst_limit: 20,
            quota_limit: 10_000,
            quota_period: Some(Period::Day),
            price_nanos: 0,
            currency: "USD".into(),
            stages: Vec::new(),
            method_rate_limits: Vec::new(),
            allowed_methods: Vec::new(),
            free_calls_per_month: 0,
            method_weights: Vec::new(),
        }
    }

    /// The weight of one call to `method`: the first matching weight, else 1.
    pub fn weight(&self, method: &str) -> i32 {
        self.method_weights
            .iter()
            .find(|(pattern, _)| MethodPattern::parse(pattern).is_ok_and(|p| p.matches(method)))
            .map_or(1, |(_, w)| *w)
    }

    /// The (start, end) of the quota period holding `micros`, if there is a quota.
    pub fn quota_bounds(&self, micros: i64) -> Option<(i64, i64)> {
        if self.quota_limit == 0 {
            return None;
        }
        self.quota_period.map(|p| p.calendar().bounds(micros))
    }
}

/// A fresh secret: the recognisable prefix and 40 random alphanumerics.
pub fn new_secret() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(KEY_RANDOM_CHARS)
        .map(char::from)
        .collect();
    format!("{KEY_PREFIX}{random}")
}

/// The part of a secret kept in clear.
pub fn shown_prefix(secret: &str) -> String {
    secret.chars().take(SHOWN_PREFIX_CHARS).collect()
}

/// Whether `text` has the shape of a secret, checked before any lookup.
pub fn looks_like_secret(text: &str) -> bool {
    text.len() == KEY_PREFIX.len() + KEY_RANDOM_CHARS
        && text.starts_with(KEY_PREFIX)
        && text[KEY_PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
}

/// Hashes secrets with a keyed BLAKE3: fast, and useless to whoever reads
/// the table without the key. Secrets are long and random, so no slow
/// password hash is needed.
#[derive(Clone)]
pub struct SecretHasher {
    key: [u8; 32],
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher(..)")
    }
}

impl SecretHasher {
    /// A hasher with a 32-byte key.
    pub fn new(key: [u8; 32]) -> Self {
        SecretHasher { key }
    }

    /// The stored form of a secret.
    pub fn hash(&self, secret: &str) -> String {
        blake3::keyed_hash(&self.key, secret.as_bytes())
            .to_hex()
            .to_string()
    }
}

/// Compares an offered admin token with the configured one in constant time.
pub fn token_matches(offered: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    // Hashing first makes both sides the same length, so the comparison
    // leaks neither content nor length.
    let a = blake3::hash(offered.as_bytes());
    let b = blake3::hash(expected.as_bytes());
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The calls of one method in a month, for the invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodCalls {
    /// The full method.
    pub method: String,
    /// How many calls.
    pub calls: i64,
}

/// One invoice line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    /// The method.
    pub method: String,
    /// Its calls.
    pub calls: i64,
    /// Its weight.
    pub weight: i32,
    /// calls × weight.
    pub weighted: i64,
}

/// A priced month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// The lines, by method.
    pub lines: Vec<InvoiceLine>,
    /// Sum of weighted calls.
    pub weighted: i64,
    /// The free tier used.
    pub free: i64,
    /// Charged calls.
    pub billable: i64,
    /// What they cost.
    pub total: Amount,
}

/// Prices a month of calls on `plan`: weights, then the free tier, then the
/// price per thousand, in exact integer arithmetic (nanos of the currency,
/// rounded down).
pub fn price(plan: &Plan, calls: &[MethodCalls]) -> Result<Invoice, ApiKeysError> {
    let overflow = || ApiKeysError::Precondition("the invoice is too large to price".into());
    let mut lines: Vec<InvoiceLine> = calls
        .iter()
        .map(|c| {
            let weight = plan.weight(&c.method);
            Ok(InvoiceLine {
                method: c.method.clone(),
                calls: c.calls,
                weight,
                weighted: c.calls.checked_mul(i64::from(weight)).ok_or_else(overflow)?,
            })
        })
        .collect::<Result<_, ApiKeysError>>()?;
    lines.sort_by(|a, b| a.method.cmp(&b.method));
    let weighted = lines
        .iter()
        .try_fold(0i64, |sum, l| sum.checked_add(l.weighted))
        .ok_or_else(overflow)?;
    let free = weighted.min(plan.free_calls_per_month);
    let billable = weighted - free;
    let nanos = i128::from(billable) * i128::from(plan.price_nanos) / 1000;
    let nanos = i64::try_from(nanos).map_err(|_| overflow())?;
    Ok(Invoice {
        lines,
        weighted,
        free,
        billable,
        total: Amount::from_nanos(plan.currency.clone(), nanos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            method_weights: vec![
                ("ferrymesh.orders.v2.OrdersService/PlaceOrder".into(), 10),
                ("ferrymesh.orders.*".into(), 2),
            ],
            free_calls_per_month: 100,
            price_nanos: 2_500_000_000,
            ..Plan::free("paid")
        }
    }

    #[test]
    fn invoices_weigh_then_subtract_the_free_tier_then_price() {
        let calls = [
            MethodCalls {
                method: "/ferrymesh.catalog.v1.CatalogService/GetProduct".into(),
                calls: 1000,
            },
            MethodCalls {
                method: "/ferrymesh.orders.v2.OrdersService/PlaceOrder".into(),
                calls: 7,
            },
            MethodCalls {
                method: "/ferrymesh.orders.v2.OrdersService/GetOrder".into(),
                calls: 3,
            },
        ];
        let invoice = price(&plan(), &calls).unwrap();
        assert_eq!(invoice.weighted, 1000 + 70 + 6);
        assert_eq!(invoice.free, 100);
        assert_eq!(invoice.billable, 976);
        // 976 / 1000 × 2.50 = 2.44
        assert_eq!(invoice.total.nanos(), 2_440_000_000);
        assert_eq!(
            invoice.lines[0].method,
            "/ferrymesh.catalog.v1.CatalogService/GetProduct"
        );
    }

    #[test]
    fn usage_inside_the_free_tier_costs_nothing() {
        let calls = [MethodCalls {
            method: "/a.B/C".into(),
            calls: 99,
        }];
        let invoice = price(&plan(), &calls).unwrap();
        assert_eq!((invoice.billable, invoice.total.nanos()), (0, 0));
    }

    #[test]
    fn secrets_are_long_random_and_recognisable() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert!(looks_like_secret(&a), "{a}");
        assert!(a.starts_with("fmk_"));
        assert_eq!(shown_prefix(&a).len(), 12);
        assert!(!looks_like_secret("fmk_short"));
        assert!(!looks_like_secret(&a.replace("fmk_", "xxx_")));
        let hasher = SecretHasher::new([7; 32]);
        assert_eq!(hasher.hash(&a), hasher.hash(&a));
        assert_ne!(hasher.hash(&a), SecretHasher::new([8; 32]).hash(&a));
    }

    #[test]
    fn admin_tokens_compare_whole() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("", "s3cret"));
    }
}
