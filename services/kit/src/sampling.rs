//! Which traces are kept: the parent's decision when a call arrives with one,
//! and for a trace that starts here X-Ray's default rule, a reservoir of N
//! traces per second and then a fixed share of the rest. The standard
//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` replace it when set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};

/// Why the sampler settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// `OTEL_TRACES_SAMPLER` names no sampler this SDK has.
    #[error(
        "OTEL_TRACES_SAMPLER={0:?} is not a sampler: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio or xray"
    )]
    Unknown(String),
    /// A ratio is not a number from 0 to 1.
    #[error("{0} must be a number from 0 to 1, got {1:?}")]
    Ratio(&'static str, String),
}

/// X-Ray's default sampling rule for traces that start here: the first
/// `per_second` root requests of each second, then `rate` of the others.
///
/// Only requests (server spans) draw from the reservoir; background work
/// that starts a trace (a poll, a flush) is kept at `rate` alone, so it
/// never takes a request's place.
#[derive(Debug, Clone)]
pub struct Reservoir {
    per_second: u32,
    rate: f64,
    // The current second in the high 32 bits, traces taken in it in the low 32.
    window: Arc<AtomicU64>,
}

impl Reservoir {
    /// `per_second` traces each second, then `rate` (0 to 1) of the rest.
    pub fn new(per_second: u32, rate: f64) -> Self {
        Reservoir {
            per_second,
            rate: rate.clamp(0.0, 1.0),
            window: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Takes one trace from this second's reservoir, if any is left.
    fn take(&self, second: u64) -> bool {
        if self.per_second == 0 {
            return false;
        }
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (window, taken) = (current >> 32, current & 0xffff_ffff);
            let next = if window == second {
                if taken >= u64::from(self.per_second) {
                    return false;
                }
                current + 1
            } else {
                (second << 32) | 1
            };
            match self
                .window
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

impl ShouldSample for Reservoir {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let request = matches!(span_kind, SpanKind::Server | SpanKind::Consumer);
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() & 0xffff_ffff);
        let decision = if request && self.take(second) {
            SamplingDecision::RecordAndSample
        } else {
            Sampler::TraceIdRatioBased(self.rate)
                .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
                .decision
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: parent_context
                .map(|cx| cx.span().span_context().trace_state().clone())
                .unwrap_or_default(),
        }
    }
}

/// The sampler a service runs with: `OTEL_TRACES_SAMPLER` (and its
/// `OTEL_TRACES_SAMPLER_ARG`) when set, else parent-based with X-Ray's
/// rule of `per_second` and then `rate` for traces that start here.
pub fn sampler(per_second: u32, rate: f64) -> Result<Sampler, SamplerError> {
    let chosen = std::env::var("OTEL_TRACES_SAMPLER").unwrap_or_default();
    let arg = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok();
    sampler_from(chosen.trim(), arg.as_deref(), per_second, rate)
}

fn sampler_from(
    chosen: &str,
    arg: Option<&str>,
    per_second: u32,
    rate: f64,
) -> Result<Sampler, SamplerError> {
    // As the specification says, a missing argument means a ratio of 1.
    let ratio = || -> Result<f64, SamplerError> {
        match arg.map(str::trim).filter(|a| !a.is_empty()) {
            None => Ok(1.0),
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| SamplerError::Ratio("OTEL_TRACES_SAMPLER_ARG", text.to_string())),
        }
    };
    let xray = || Sampler::ParentBased(Box::new(Reservoir::new(per_second, rate)));
    Ok(match chosen {
        "" | "xray" | "parentbased_xray" => xray(),
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?))),
        other => return Err(SamplerError::Unknown(other.to_string())),
    })
}

/// Parses a sampling rate flag: a number from 0 to 1.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| format!("{text:?} is not a rate: give a number from 0 to 1, e.g. 0.05"))
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceId;

    use super::*;

    fn decide(sampler: &dyn ShouldSample, kind: SpanKind, id: u128) -> SamplingDecision {
        sampler
            .should_sample(Some(&Context::new()), TraceId::from(id), "root", &kind, &[], &[])
            .decision
    }

    #[test]
    fn the_reservoir_takes_n_per_second_and_no_more() {
        let reservoir = Reservoir::new(2, 0.0);
        assert!(reservoir.take(10));
        assert!(reservoir.take(10));
        assert!(!reservoir.take(10), "a third trace in the same second");
        assert!(reservoir.take(11), "the next second has its own reservoir");
    }

    #[test]
    fn with_rate_zero_only_the_reservoir_is_kept() {
        let reservoir = Reservoir::new(1, 0.0);
        let kept = (1..=100u128)
            .filter(|id| decide(&reservoir, SpanKind::Server, *id) == SamplingDecision::RecordAndSample)
            .count();
        // 100 decisions may straddle a second boundary.
        assert!((1..=2).contains(&kept), "{kept}");
    }

    #[test]
    fn background_roots_do_not_draw_from_the_reservoir() {
        let reservoir = Reservoir::new(1, 0.0);
        assert_eq!(decide(&reservoir, SpanKind::Client, 1), SamplingDecision::Drop);
        assert_eq!(
            decide(&reservoir, SpanKind::Server, 2),
            SamplingDecision::RecordAndSample
        );
    }

    #[test]
    fn rate_one_keeps_everything() {
        let reservoir = Reservoir::new(0, 1.0);
        assert!(
            (1..=50u128)
                .all(|id| decide(&reservoir, SpanKind::Server, id) == SamplingDecision::RecordAndSample)
        );
    }

    #[test]
    fn the_standard_sampler_names_are_honoured() {
        assert!(matches!(
            sampler_from("always_off", None, 1, 0.05).unwrap(),
            Sampler::AlwaysOff
        ));
        assert!(matches!(
            sampler_from("traceidratio", Some("0.25"), 1, 0.05).unwrap(),
            Sampler::TraceIdRatioBased(r) if (r - 0.25).abs() < 1e-9
        ));
        assert!(matches!(
            sampler_from("parentbased_always_on", None, 1, 0.05).unwrap(),
            Sampler::ParentBased(_)
        ));
        let error = sampler_from("sometimes", None, 1, 0.05).unwrap_err();
        assert!(error.to_string().contains("\"sometimes\""), "{error}");
        let error = sampler_from("traceidratio", Some("2"), 1, 0.05).unwrap_err();
        assert!(error.to_string().contains("from 0 to 1"), "{error}");
    }
}
