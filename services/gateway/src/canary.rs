//! Canaries: a share of keys (sticky: a key always lands on the same side)
//! sent to another upstream, watched over a sliding window and switched off
//! by the gateway itself when its fault rate passes the threshold. API
//! Gateway leaves that to a person; here it is logged and shows in the
//! gateway's health as `canary/<stage>/<package>` NOT_SERVING.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::proxy::Backend;

/// Codes that mean the upstream failed, not the caller.
pub fn is_fault(code: i32) -> bool {
    use tonic::Code;
    matches!(
        Code::from_i32(code),
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// One canary of one package on one stage.
#[derive(Debug)]
pub struct Canary {
    /// Its stage.
    pub stage: String,
    /// The package it serves.
    pub package: String,
    /// Where it sends.
    pub upstream: Arc<Backend>,
    /// Keys per 10,000 that land on it.
    basis_points: u64,
    max_error_rate: f64,
    window: Duration,
    min_calls: u64,
    off: AtomicBool,
    seen: Mutex<VecDeque<(Instant, bool)>>,
    health: Option<HealthReporter>,
}

impl Canary {
    /// The name it has in the gateway's health.
    pub fn health_name(&self) -> String {
        format!("canary/{}/{}", self.stage, self.package)
    }

    /// Whether the call of `key_id` goes to the canary: the same key always
    /// gets the same answer while the canary is on.
    pub fn chooses(&self, key_id: &str) -> bool {
        if self.off.load(Ordering::Relaxed) || self.basis_points == 0 {
            return false;
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.stage.as_bytes());
        hasher.update(b"\0");
        hasher.update(self.package.as_bytes());
        hasher.update(b"\0");
        hasher.update(key_id.as_bytes());
        let hash = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        u64::from_le_bytes(first) % 10_000 < self.basis_points
    }

    /// Whether it was switched off.
    pub fn is_off(&self) -> bool {
        self.off.load(Ordering::Relaxed)
    }

    /// Counts one call's outcome and switches the canary off when the
    /// window's fault rate passes the threshold.
    pub fn record(&self, code: i32) {
        if self.is_off() {
            return;
        }
        let now = Instant::now();
        let fault = is_fault(code);
        let (calls, faults) = {
            let Ok(mut seen) = self.seen.lock() else {
                return;
            };
            seen.push_back((now, fault));
            while seen
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > self.window)
            {
                seen.pop_front();
            }
            // Bounded: beyond this many calls the window is plenty to judge.
            while seen.len() > 100_000 {
                seen.pop_front();
            }
            (seen.len() as u64, seen.iter().filter(|(_, f)| *f).count() as u64)
        };
        if calls >= self.min_calls
            && faults as f64 / calls as f64 > self.max_error_rate
            && !self.off.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                stage = %self.stage,
                package = %self.package,
                upstream = %self.upstream.url(),
                calls,
                faults,
                max_error_rate = self.max_error_rate,
                "canary switched off: its fault rate passed the threshold; every call goes to the primary now"
            );
            if let Some(health) = self.health.clone() {
                let name = self.health_name();
                tokio::spawn(async move {
                    health.set_service_status(name, ServingStatus::NotServing).await;
                });
            }
        }
    }
}

/// Keeps canaries, and what they have seen, across configuration reloads:
/// a canary whose settings did not change is the same canary.
#[derive(Debug, Default)]
pub struct CanaryRegistry {
    canaries: Mutex<HashMap<String, Arc<Canary>>>,
    health: Option<HealthReporter>,
}

impl CanaryRegistry {
    /// A registry that reports canaries in `health`.
    pub fn with_health(health: HealthReporter) -> Self {
        CanaryRegistry {
            canaries: Mutex::default(),
            health: Some(health),
        }
    }

    /// The canary with these settings: the one already running, or a new one.
    #[allow(clippy::too_many_arguments)]
    pub fn canary(
        &self,
        stage: &str,
        package: &str,
        upstream: Arc<Backend>,
        percent: f64,
        max_error_rate: f64,
        window: Duration,
        min_calls: u64,
    ) -> Arc<Canary> {
        let id = format!(
            "{stage}\0{package}\0{}\0{percent}\0{max_error_rate}\0{window:?}\0{min_calls}",
            upstream.url()
        );
        // A poisoned lock still holds a usable map: a panic cannot leave it half-written.
        let mut canaries = self.canaries.lock().unwrap_or_else(PoisonError::into_inner);
        canaries
            .entry(id)
            .or_insert_with(|| {
                let canary = Arc::new(Canary {
                    stage: stage.to_string(),
                    package: package.to_string(),
                    upstream,
                    basis_points: (percent * 100.0).round() as u64,
                    max_error_rate,
                    window,
                    min_calls,
                    off: AtomicBool::new(false),
                    seen: Mutex::default(),
                    health: self.health.clone(),
                });
                if let Some(health) = self.health.clone() {
                    let name = canary.health_name();
                    tokio::spawn(async move {
                        health.set_service_status(name, ServingStatus::Serving).await;
                    });
                }
                canary
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(percent: f64) -> Arc<Canary> {
        let upstream = Arc::new(Backend::new("http://127.0.0.1:1").unwrap());
        CanaryRegistry::default().canary(
            "prod",
            "p.v1",
            upstream,
            percent,
            0.5,
            Duration::from_secs(30),
            10,
        )
    }

    #[test]
    fn a_share_of_keys_lands_on_the_canary_and_stays() {
        let c = canary(10.0);
        let chosen = (0..10_000).filter(|i| c.chooses(&format!("key-{i}"))).count();
        assert!((900..1100).contains(&chosen), "{chosen}");
        assert_eq!(c.chooses("key-7"), c.chooses("key-7"));
        assert_eq!(
            (0..100).filter(|i| canary(0.0).chooses(&format!("k{i}"))).count(),
            0
        );
    }

    #[tokio::test]
    async fn faults_past_the_threshold_switch_it_off() {
        let c = canary(100.0);
        for _ in 0..9 {
            c.record(tonic::Code::Unavailable as i32);
        }
        assert!(!c.is_off(), "fewer calls than min_calls decide nothing");
        c.record(tonic::Code::Ok as i32);
        c.record(tonic::Code::Internal as i32);
        assert!(c.is_off());
        assert!(!c.chooses("any"));
        // The caller's mistakes are not the canary's faults.
        let d = canary(100.0);
        for _ in 0..50 {
            d.record(tonic::Code::InvalidArgument as i32);
        }
        assert!(!d.is_off());
    }
}
