//! The gateway's one configuration file (TOML): which methods are public,
//! the stages with their routes, variables and canaries, and the limits of
//! the caches. It is checked whole before it replaces the running one, so a
//! bad edit is logged and the last good file keeps serving.
//!
//! ```toml
//! default_stage = "prod"                       # when a call sends no x-stage
//! public = ["ferrymesh.catalog.v1.*",          # the only methods reachable
//!           "ferrymesh.orders.v2.OrdersService/*"]
//! anonymous = ["ferrymesh.apikeys.v1.DeveloperPortalService/RegisterDeveloper"]  # no key needed
//! pass_api_key = ["ferrymesh.apikeys.v1"]      # packages that read x-api-key themselves
//! operator = ["ferrymesh.workflow.v1.WorkflowService/ListExecutions"]  # with the admin token (a method
//!                                                                      # also public takes a key instead)
//! # A key holder's calls about their own account: not metered, no quota,
//! # a bucket of their own [default: the developer portal's methods].
//! unmetered = ["ferrymesh.apikeys.v1.DeveloperPortalService/*"]
//!
//! [limits]
//! key_cache_ttl = "30s"     # longest a validated key is trusted without asking apikeys
//! changes_poll = "500ms"    # how often revocations and plan changes are fetched
//! usage_flush = "1s"        # how often counted calls are sent to apikeys
//! anonymous_rate = 5.0      # calls per second without a key, per client address
//! anonymous_burst = 20
//! self_service_rate = 5.0   # unmetered calls per second, per developer
//! self_service_burst = 20
//! key_lookup_rate = 50.0    # API keys not seen before, per second per client address
//! key_lookup_burst = 100
//!
//! [stages.prod.routes]
//! "ferrymesh.catalog.v1" = "http://127.0.0.1:50051"
//! [stages.prod.variables]
//! tier = "production"                          # sent upstream as x-stage-var-tier
//! [[stages.prod.canaries]]
//! package = "ferrymesh.catalog.v1"
//! upstream = "http://127.0.0.1:60051"
//! percent = 10.0            # of keys, sticky per key
//! max_error_rate = 0.5      # switched off above this share of faults ...
//! window = "30s"            # ... over this window ...
//! min_calls = 20            # ... once it has seen this many calls
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use kit_values::MethodPattern;
use serde::Deserialize;

use crate::canary::{Canary, CanaryRegistry};
use std::net::IpAddr;

use crate::limits::KeyedBuckets;
use crate::proxy::Backend;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    path: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_stage")]
    default_stage: String,
    public: Vec<String>,
    #[serde(default)]
    anonymous: Vec<String>,
    #[serde(default)]
    pass_api_key: Vec<String>,
    #[serde(default)]
    operator: Vec<String>,
    #[serde(default = "default_unmetered")]
    unmetered: Vec<String>,
    #[serde(default)]
    limits: LimitsFile,
    stages: BTreeMap<String, StageFile>,
}

fn default_stage() -> String {
    "prod".into()
}

/// The portal: a developer reading their usage, keys and invoice, or
/// rotating and revoking a key, is not billed for it, even past the quota.
fn default_unmetered() -> Vec<String> {
    vec!["ferrymesh.apikeys.v1.DeveloperPortalService/*".into()]
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    key_cache_ttl: Option<String>,
    changes_poll: Option<String>,
    usage_flush: Option<String>,
    anonymous_rate: Option<f64>,
    anonymous_burst: Option<i32>,
    self_service_rate: Option<f64>,
    self_service_burst: Option<i32>,
    key_lookup_rate: Option<f64>,
    key_lookup_burst: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    routes: BTreeMap<String, String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    canaries: Vec<CanaryFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryFile {
    package: String,
    upstream: String,
    percent: f64,
    #[serde(default = "default_error_rate")]
    max_error_rate: f64,
    #[serde(default = "default_window")]
    window: String,
    #[serde(default = "default_min_calls")]
    min_calls: u64,
}

fn default_error_rate() -> f64 {
    0.5
}
fn default_window() -> String {
    "30s".into()
}
fn default_min_calls() -> u64 {
    20
}

/// The cache and flush timings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Longest a validated key is trusted without asking apikeys again.
    pub key_cache_ttl: Duration,
    /// How often the change feed is read.
    pub changes_poll: Duration,
    /// How often usage is flushed.
    pub usage_flush: Duration,
    /// Calls per second without a key, per client address.
    pub anonymous_rate: f64,
    /// Burst of calls without a key.
    pub anonymous_burst: i32,
    /// Unmetered calls per second, per developer.
    pub self_service_rate: f64,
    /// Their burst.
    pub self_service_burst: i32,
    /// Lookups of API keys the gateway has not cached, per second per client address.
    pub key_lookup_rate: f64,
    /// Their burst.
    pub key_lookup_burst: i32,
}

/// One stage: where each package goes, its variables and canaries.
#[derive(Debug)]
pub struct Stage {
    /// The stage's name.
    pub name: Arc<str>,
    /// The name as the `x-ferrymesh-stage` value, made once.
    pub header: HeaderValue,
    /// Package to upstream.
    pub routes: HashMap<String, Arc<Backend>>,
    /// `x-stage-var-<name>` headers to send.
    pub variables: Vec<(HeaderName, HeaderValue)>,
    /// Package to canary.
    pub canaries: HashMap<String, Arc<Canary>>,
}

/// A checked configuration.
#[derive(Debug)]
pub struct Routes {
    /// The stage used when a call names none.
    pub default_stage: String,
    /// The public method patterns.
    pub public: Vec<MethodPattern>,
    /// Public methods callable without a key (signing up).
    pub anonymous: Vec<MethodPattern>,
    /// Packages that receive x-api-key.
    pub pass_api_key: HashSet<String>,
    /// Methods callable with the admin token (`authorization: Bearer`)
    /// instead of a key: the console's operations view. Never metered.
    pub operator: Vec<MethodPattern>,
    /// A key holder's methods about their own account: not metered, no
    /// quota, throttled by `self_service`.
    pub unmetered: Vec<MethodPattern>,
    /// Cache timings.
    pub limits: Limits,
    /// Calls without a key: a bucket per client address.
    pub anonymous_limiter: KeyedBuckets<IpAddr>,
    /// Unmetered calls: a bucket per developer.
    pub self_service: KeyedBuckets<Arc<str>>,
    /// Lookups of keys not cached: a bucket per client address.
    pub key_lookups: KeyedBuckets<IpAddr>,
    /// The stages by name.
    pub stages: HashMap<String, Stage>,
}

impl Routes {
    /// Whether `method` (`/pkg.Service/Method`) is public.
    pub fn is_public(&self, method: &str) -> bool {
        self.public.iter().any(|p| p.matches(method))
    }

    /// Whether `method` is an operator's, called with the admin token.
    pub fn is_operator(&self, method: &str) -> bool {
        self.operator.iter().any(|p| p.matches(method))
    }

    /// Whether `method` may be called without a key.
    pub fn is_anonymous(&self, method: &str) -> bool {
        self.anonymous.iter().any(|p| p.matches(method))
    }

    /// Whether `method` is a key holder's call about their own account.
    pub fn is_unmetered(&self, method: &str) -> bool {
        self.unmetered.iter().any(|p| p.matches(method))
    }
}

/// The package of a path `/pkg.Service/Method`: everything before the service's last dot.
pub fn package_of(path: &str) -> Option<&str> {
    let service = path.strip_prefix('/')?.split('/').next()?;
    service.rsplit_once('.').map(|(package, _)| package)
}

/// `limits.NAME_rate` and `limits.NAME_burst`, checked, or their defaults.
fn bucket_settings(
    name: &str,
    rate: Option<f64>,
    burst: Option<i32>,
    (default_rate, default_burst): (f64, i32),
    errors: &mut Vec<String>,
) -> (f64, i32) {
    let rate = rate.unwrap_or(default_rate);
    if !(rate.is_finite() && rate > 0.0 && rate <= 1e6) {
        errors.push(format!(
            "limits.{name}_rate: must be more than 0 calls per second, got {rate}"
        ));
    }
    let burst = burst.unwrap_or(default_burst);
    if !(1..=1_000_000).contains(&burst) {
        errors.push(format!("limits.{name}_burst: must be 1 to 1000000, got {burst}"));
    }
    (rate, burst)
}

fn duration(field: &str, text: Option<&str>, default: Duration, errors: &mut Vec<String>) -> Duration {
    match text {
        None => default,
        Some(t) => match humantime::parse_duration(t) {
            Ok(d) if !d.is_zero() && d <= Duration::from_secs(3600) => d,
            _ => {
                errors.push(format!(
                    "{field}: {t:?} must be a duration from 1ms to 1h, such as \"500ms\""
                ));
                default
            }
        },
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Parses and checks a configuration file's text; every problem is
/// reported, each with the key it is about.
pub fn parse(
    path: &str,
    text: &str,
    upstreams: &mut dyn FnMut(&str) -> Result<Arc<Backend>, String>,
    canaries: &CanaryRegistry,
) -> Result<Routes, ConfigError> {
    let fail = |reason: String| ConfigError {
        path: path.to_string(),
        reason,
    };
    let file: File = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
    let mut errors = Vec::new();
    let public = patterns("public", &file.public, &mut errors);
    let anonymous = patterns("anonymous", &file.anonymous, &mut errors);
    let operator = patterns("operator", &file.operator, &mut errors);
    let unmetered = patterns("unmetered", &file.unmetered, &mut errors);
    let (anonymous_rate, anonymous_burst) = bucket_settings(
        "anonymous",
        file.limits.anonymous_rate,
        file.limits.anonymous_burst,
        (5.0, 20),
        &mut errors,
    );
    let (self_service_rate, self_service_burst) = bucket_settings(
        "self_service",
        file.limits.self_service_rate,
        file.limits.self_service_burst,
        (5.0, 20),
        &mut errors,
    );
    let (key_lookup_rate, key_lookup_burst) = bucket_settings(
        "key_lookup",
        file.limits.key_lookup_rate,
        file.limits.key_lookup_burst,
        (50.0, 100),
        &mut errors,
    );
    let limits = Limits {
        anonymous_rate,
        anonymous_burst,
        self_service_rate,
        self_service_burst,
        key_lookup_rate,
        key_lookup_burst,
        key_cache_ttl: duration(
            "limits.key_cache_ttl",
            file.limits.key_cache_ttl.as_deref(),
            Duration::from_secs(30),
            &mut errors,
        ),
        changes_poll: duration(
            "limits.changes_poll",
            file.limits.changes_poll.as_deref(),
            Duration::from_millis(500),
            &mut errors,
        ),
        usage_flush: duration(
            "limits.usage_flush",
            file.limits.usage_flush.as_deref(),
            Duration::from_secs(1),
            &mut errors,
        ),
    };
    let mut stages = HashMap::new();
    for (name, stage) in &file.stages {
        if !name_ok(name) {
            errors.push(format!(
                "stages.{name}: a stage name is 1 to 32 lowercase letters, digits and '-'"
            ));
            continue;
        }
        stages.insert(
            name.clone(),
            build_stage(name, stage, upstreams, canaries, &mut errors),
        );
    }
    if !stages.contains_key(&file.default_stage) {
        errors.push(format!(
            "default_stage: {:?} is not one of the stages ({})",
            file.default_stage,
            file.stages.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if !errors.is_empty() {
        return Err(fail(errors.join("; ")));
    }
    Ok(Routes {
        default_stage: file.default_stage,
        public,
        anonymous,
        pass_api_key: file.pass_api_key.into_iter().collect(),
        operator,
        unmetered,
        anonymous_limiter: KeyedBuckets::new(limits.anonymous_rate, limits.anonymous_burst),
        self_service: KeyedBuckets::new(limits.self_service_rate, limits.self_service_burst),
        key_lookups: KeyedBuckets::new(limits.key_lookup_rate, limits.key_lookup_burst),
        limits,
        stages,
    })
}

/// The method patterns of a list, each bad one named with its index.
fn patterns(field: &str, items: &[String], errors: &mut Vec<String>) -> Vec<MethodPattern> {
    items
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match MethodPattern::parse(p) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(format!("{field}[{i}]: {e}"));
                None
            }
        })
        .collect()
}

/// One stage: its routes, variables and canaries, each problem named.
fn build_stage(
    name: &str,
    stage: &StageFile,
    upstreams: &mut dyn FnMut(&str) -> Result<Arc<Backend>, String>,
    canaries: &CanaryRegistry,
    errors: &mut Vec<String>,
) -> Stage {
    let mut routes = HashMap::new();
    for (package, url) in &stage.routes {
        if MethodPattern::parse(&format!("{package}.*")).is_err() {
            errors.push(format!("stages.{name}.routes: {package:?} is not a package name"));
            continue;
        }
        match upstreams(url) {
            Ok(u) => {
                routes.insert(package.clone(), u);
            }
            Err(e) => errors.push(format!("stages.{name}.routes.{package:?}: {e}")),
        }
    }
    let mut variables = Vec::new();
    for (var, value) in &stage.variables {
        let header = HeaderName::from_bytes(format!("x-stage-var-{var}").as_bytes());
        let value = HeaderValue::from_str(value);
        match (header, value) {
            (Ok(h), Ok(v)) if !var.is_empty() && var.len() <= 64 => variables.push((h, v)),
            _ => errors.push(format!(
                "stages.{name}.variables.{var}: names are lowercase letters, digits and '-', values printable ASCII"
            )),
        }
    }
    let mut stage_canaries = HashMap::new();
    for (i, c) in stage.canaries.iter().enumerate() {
        let field = format!("stages.{name}.canaries[{i}]");
        if !routes.contains_key(&c.package) {
            errors.push(format!(
                "{field}.package: {:?} has no route in this stage to be the canary of",
                c.package
            ));
            continue;
        }
        if !(c.percent.is_finite() && (0.0..=100.0).contains(&c.percent)) {
            errors.push(format!("{field}.percent: must be 0 to 100, got {}", c.percent));
            continue;
        }
        if !(c.max_error_rate.is_finite() && (0.0..=1.0).contains(&c.max_error_rate)) {
            errors.push(format!(
                "{field}.max_error_rate: must be 0 to 1, got {}",
                c.max_error_rate
            ));
            continue;
        }
        let window = duration(
            &format!("{field}.window"),
            Some(&c.window),
            Duration::from_secs(30),
            errors,
        );
        let upstream = match upstreams(&c.upstream) {
            Ok(u) => u,
            Err(e) => {
                errors.push(format!("{field}.upstream: {e}"));
                continue;
            }
        };
        let canary = canaries.canary(
            name,
            &c.package,
            upstream,
            c.percent,
            c.max_error_rate,
            window,
            c.min_calls.max(1),
        );
        stage_canaries.insert(c.package.clone(), canary);
    }
    Stage {
        // Checked above: lowercase letters, digits and '-'.
        header: HeaderValue::from_str(name).unwrap_or(HeaderValue::from_static("")),
        name: name.into(),
        routes,
        variables,
        canaries: stage_canaries,
    }
}

pub use crate::local_mesh::{OPERATOR_METHODS, PUBLIC_METHODS, local_mesh};

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams(url: &str) -> Result<Arc<Backend>, String> {
        Backend::new(url).map(Arc::new)
    }

    #[test]
    fn the_local_mesh_file_parses() {
        let text = local_mesh(&[
            ("ferrymesh.catalog.v1", "http://127.0.0.1:50051".into()),
            ("ferrymesh.orders.v2", "http://127.0.0.1:50055".into()),
        ]);
        let routes = parse("gateway.toml", &text, &mut upstreams, &CanaryRegistry::default()).unwrap();
        assert!(routes.is_public("/ferrymesh.catalog.v1.CatalogService/GetProduct"));
        assert!(!routes.is_public("/ferrymesh.apikeys.v1.ApiKeysService/CreateApiKey"));
        assert!(!routes.is_public("/ferrymesh.orders.v2.OrderFulfillmentService/ConfirmOrder"));
        assert_eq!(routes.stages["prod"].routes.len(), 2);
        assert_eq!(routes.limits.changes_poll, Duration::from_millis(500));
    }

    #[test]
    fn every_problem_is_named_with_its_key() {
        let text = r#"
            default_stage = "beta"
            public = ["catalog"]
            [limits]
            usage_flush = "soon"
            [stages.prod.routes]
            "ferrymesh.catalog.v1" = "not a url"
            [[stages.prod.canaries]]
            package = "ferrymesh.orders.v2"
            upstream = "http://127.0.0.1:1"
            percent = 10.0
        "#;
        let error = parse("g.toml", text, &mut upstreams, &CanaryRegistry::default())
            .unwrap_err()
            .to_string();
        for says in [
            "public[0]",
            "limits.usage_flush",
            "stages.prod.routes.\"ferrymesh.catalog.v1\"",
            "stages.prod.canaries[0].package",
            "default_stage: \"beta\"",
        ] {
            assert!(error.contains(says), "{says} in {error}");
        }
        let error = parse(
            "g.toml",
            "public = []\nstagez = 1",
            &mut upstreams,
            &CanaryRegistry::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("unknown field `stagez`"), "{error}");
    }

    #[test]
    fn packages_come_from_paths() {
        assert_eq!(
            package_of("/ferrymesh.catalog.v1.CatalogService/GetProduct"),
            Some("ferrymesh.catalog.v1")
        );
        assert_eq!(package_of("/Service/Method"), None);
        assert_eq!(package_of("nonsense"), None);
    }
}
