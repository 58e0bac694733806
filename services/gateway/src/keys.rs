//! API keys as the gateway knows them: validated once by apikeys, then
//! answered from memory. A cached key is dropped when apikeys' change feed
//! names it (revocation, rotation, a new plan: within one poll, 500 ms by
//! default), when its rotation grace ends, or after the cache TTL; so no
//! request waits on a network call but a key's first.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use kit_values::{CalendarPeriod, MethodPattern};
use tokio::sync::OnceCell;
use tonic::{Code, Status};

use crate::limits::{KeyLimiter, Limiters, QuotaCell, Quotas};
use crate::pb::ferrymesh::apikeys::v1 as pb;

/// The admin client of apikeys the gateway uses.
pub type ApiKeysClient = pb::api_keys_service_client::ApiKeysServiceClient<
    tonic::service::interceptor::InterceptedService<kit::client::Upstream, Bearer>,
>;

/// Adds `authorization: Bearer TOKEN` to calls to apikeys.
#[derive(Clone)]
pub struct Bearer(pub HeaderValue);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let value = tonic::metadata::AsciiMetadataValue::try_from(self.0.as_bytes())
            .map_err(|_| Status::internal("the admin token is not printable ASCII"))?;
        request.metadata_mut().insert("authorization", value);
        // The gateway's own calls say so: from the gateway, a call that
        // names no principal is refused.
        request.metadata_mut().insert(
            kit::identity::PRINCIPAL,
            tonic::metadata::AsciiMetadataValue::from_static("internal"),
        );
        Ok(request)
    }
}

/// Longest x-api-key looked up; anything longer is not a key.
pub const MAX_KEY_LEN: usize = 128;
/// How long a refusal (unknown, revoked) is remembered.
const REFUSAL_TTL: Duration = Duration::from_secs(1);
/// Most entries kept; past it, refusals are forgotten first, then everything.
const MAX_ENTRIES: usize = 200_000;

/// What the gateway knows of a valid key.
#[derive(Debug)]
pub struct CachedKey {
    /// The key's id.
    pub key_id: Arc<str>,
    /// Its developer.
    pub developer_id: Arc<str>,
    /// The developer's plan.
    pub plan_id: String,
    /// Headers the gateway sets upstream, made once.
    pub identity: Identity,
    /// Methods the plan allows; empty is every public method.
    pub allowed: Vec<MethodPattern>,
    /// Stages the plan allows; empty is all.
    pub stages: Vec<String>,
    /// When the key stops working (rotation), micros.
    pub expire_micros: Option<i64>,
    /// Its developer's token buckets.
    pub limiter: Arc<KeyLimiter>,
    /// The developer's quota, when the plan has one.
    pub quota: Option<Arc<QuotaCell>>,
    validated: Instant,
}

/// The caller's identity as metadata (`kit::identity`'s headers); a
/// caller's own values of these are removed first.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The key's id.
    pub key_id: HeaderValue,
    /// The developer's id.
    pub developer_id: HeaderValue,
    /// The developer's email, which orders scopes by.
    pub email: HeaderValue,
}

impl Identity {
    /// The headers, when every value is printable ASCII (and so reads back
    /// as it was meant on the other side); `None` otherwise.
    pub fn carried(key_id: &str, developer_id: &str, email: &str) -> Option<Identity> {
        let header = |text: &str| {
            (!text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic()))
                .then(|| HeaderValue::from_str(text).ok())
                .flatten()
        };
        Some(Identity {
            key_id: header(key_id)?,
            developer_id: header(developer_id)?,
            email: header(&email.to_ascii_lowercase())?,
        })
    }
}

impl CachedKey {
    /// Whether the plan allows `method`.
    pub fn allows(&self, method: &str) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|p| p.matches(method))
    }

    /// Whether the plan allows `stage`.
    pub fn allows_stage(&self, stage: &str) -> bool {
        self.stages.is_empty() || self.stages.iter().any(|s| s == stage)
    }
}

#[derive(Debug)]
enum Entry {
    Valid(Arc<CachedKey>),
    Refused(Code, String),
}

#[derive(Debug)]
struct Slot {
    made: Instant,
    entry: OnceCell<Entry>,
}

/// Validated keys by secret, plus the buckets and quotas they share.
pub struct KeyCache {
    slots: RwLock<HashMap<Box<str>, Arc<Slot>>>,
    client: ApiKeysClient,
    ttl: RwLock<Duration>,
    limiters: Limiters,
    quotas: Arc<Quotas>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").finish_non_exhaustive()
    }
}

impl KeyCache {
    /// An empty cache that asks apikeys through `client`.
    pub fn new(client: ApiKeysClient, ttl: Duration, quotas: Arc<Quotas>) -> Self {
        KeyCache {
            slots: RwLock::default(),
            client,
            ttl: RwLock::new(ttl),
            limiters: Limiters::default(),
            quotas,
        }
    }

    /// Changes the TTL (on a configuration reload).
    pub fn set_ttl(&self, ttl: Duration) {
        if let Ok(mut t) = self.ttl.write() {
            *t = ttl;
        }
    }

    fn fresh(&self, slot: &Slot, now: Instant) -> bool {
        let ttl = self.ttl.read().map(|t| *t).unwrap_or(Duration::from_secs(30));
        match slot.entry.get() {
            None => true,
            Some(Entry::Valid(key)) => {
                now.duration_since(key.validated) < ttl
                    && key.expire_micros.is_none_or(|e| e > kit_values::now_micros())
            }
            Some(Entry::Refused(..)) => now.duration_since(slot.made) < REFUSAL_TTL,
        }
    }

    /// The key for `secret`: from memory, or asked of apikeys once however
    /// many calls bring it at the same moment. A secret that needs asking
    /// (new, or its answer is stale) is asked only if `may_look_up` lets it:
    /// the caller's budget of lookups, so guessed keys cost apikeys little.
    pub async fn key(
        &self,
        secret: &str,
        may_look_up: impl FnOnce() -> Result<(), Status>,
    ) -> Result<Arc<CachedKey>, Status> {
        if secret.is_empty() || secret.len() > MAX_KEY_LEN {
            return Err(Status::unauthenticated(
                "the API key is not valid: check x-api-key",
            ));
        }
        let now = Instant::now();
        let slot = {
            let found = self.slots.read().ok().and_then(|s| s.get(secret).cloned());
            match found {
                Some(slot) if self.fresh(&slot, now) => slot,
                stale => {
                    let Ok(mut slots) = self.slots.write() else {
                        return Err(Status::internal("the key cache is unusable"));
                    };
                    match slots.get(secret) {
                        // Another call already replaced the stale slot.
                        Some(current) if stale.as_ref().is_none_or(|s| !Arc::ptr_eq(s, current)) => {
                            current.clone()
                        }
                        _ => {
                            may_look_up()?;
                            if slots.len() >= MAX_ENTRIES {
                                slots.retain(|_, s| matches!(s.entry.get(), Some(Entry::Valid(_))));
                                if slots.len() >= MAX_ENTRIES {
                                    slots.clear();
                                }
                            }
                            let slot = Arc::new(Slot {
                                made: now,
                                entry: OnceCell::new(),
                            });
                            slots.insert(secret.into(), slot.clone());
                            slot
                        }
                    }
                }
            }
        };
        let entry = slot.entry.get_or_try_init(|| self.validate(secret)).await?;
        match entry {
            Entry::Valid(key) => Ok(key.clone()),
            Entry::Refused(code, message) => Err(Status::new(*code, message.clone())),
        }
    }

    async fn validate(&self, secret: &str) -> Result<Entry, Status> {
        let mut client = self.client.clone();
        let answer = client
            .validate_api_key(pb::ValidateApiKeyRequest {
                secret: secret.to_string(),
            })
            .await;
        let v = match answer {
            Ok(v) => v.into_inner(),
            Err(s) if matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied) => {
                return Ok(Entry::Refused(s.code(), s.message().to_string()));
            }
            Err(s) => {
                tracing::warn!(code = ?s.code(), error = %s.message(), "cannot validate an API key");
                return Err(Status::unavailable(
                    "the gateway cannot check API keys right now; retry shortly",
                ));
            }
        };
        let (Some(key), Some(plan), Some(developer)) = (v.key, v.plan, v.developer) else {
            return Err(Status::internal(
                "apikeys answered without the key, plan or developer",
            ));
        };
        let Some(identity) = Identity::carried(&key.key_id, &developer.developer_id, &developer.email) else {
            // Fail closed: an identity the services could not read must
            // never reach them as no identity at all.
            tracing::warn!(key_id = %key.key_id, "a key's identity is not printable ASCII; refused");
            return Ok(Entry::Refused(
                Code::PermissionDenied,
                "this key's developer has an email the mesh cannot carry (only ASCII addresses are); an operator must change it"
                    .to_string(),
            ));
        };
        // Per developer, as the quota is: more keys (rotation keeps the old
        // one for its grace) never mean more calls.
        let limiter = self.limiters.for_developer(&developer.developer_id, &plan);
        let period = match pb::QuotaPeriod::try_from(plan.quota_period) {
            Ok(pb::QuotaPeriod::Day) => Some(CalendarPeriod::Day),
            Ok(pb::QuotaPeriod::Week) => Some(CalendarPeriod::Week),
            Ok(pb::QuotaPeriod::Month) => Some(CalendarPeriod::Month),
            _ => None,
        };
        let quota = match (period, v.quota_period_start) {
            (Some(period), Some(start)) if plan.quota_limit > 0 => Some(self.quotas.cell(
                &developer.developer_id,
                plan.quota_limit,
                period,
                start.seconds * 1_000_000,
                v.quota_used,
            )),
            _ => None,
        };
        Ok(Entry::Valid(Arc::new(CachedKey {
            key_id: key.key_id.as_str().into(),
            developer_id: developer.developer_id.as_str().into(),
            plan_id: plan.plan_id.clone(),
            identity,
            allowed: plan
                .allowed_methods
                .iter()
                .filter_map(|p| MethodPattern::parse(p).ok())
                .collect(),
            stages: plan.stages.clone(),
            expire_micros: key
                .expire_time
                .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos / 1000)),
            limiter,
            quota,
            validated: Instant::now(),
        })))
    }

    /// Drops what is cached about the keys, developers and plans named.
    pub fn forget(&self, keys: &HashSet<String>, developers: &HashSet<String>, plans: &HashSet<String>) {
        if let Ok(mut slots) = self.slots.write() {
            slots.retain(|_, slot| match slot.entry.get() {
                Some(Entry::Valid(k)) => {
                    !keys.contains(&*k.key_id)
                        && !developers.contains(&*k.developer_id)
                        && !plans.contains(&k.plan_id)
                }
                // A refusal may be about to turn into a valid key (or the reverse).
                Some(Entry::Refused(..)) => keys.is_empty() && developers.is_empty() && plans.is_empty(),
                None => true,
            });
        }
    }

    /// Drops everything.
    pub fn clear(&self) {
        if let Ok(mut slots) = self.slots.write() {
            slots.clear();
        }
    }

    /// How many secrets are cached.
    pub fn len(&self) -> usize {
        self.slots.read().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Follows apikeys' change feed every `poll()` until the process ends.
    pub async fn follow_changes(self: Arc<Self>, poll: impl Fn() -> Duration) {
        let mut client = self.client.clone();
        let mut cursor = -1i64;
        // Changes are sent again until they settle; each is applied once.
        let mut applied: HashSet<i64> = HashSet::new();
        loop {
            match client
                .list_changes(pb::ListChangesRequest { after: cursor })
                .await
            {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    if cursor < 0 {
                        cursor = answer.cursor;
                    } else if answer.truncated {
                        self.clear();
                        applied.clear();
                        cursor = answer.cursor;
                    } else {
                        let (mut keys, mut developers, mut plans) =
                            (HashSet::new(), HashSet::new(), HashSet::new());
                        for change in &answer.changes {
                            if !applied.insert(change.cursor) {
                                continue;
                            }
                            if !change.key_id.is_empty() {
                                keys.insert(change.key_id.clone());
                            }
                            if !change.developer_id.is_empty() && change.key_id.is_empty() {
                                developers.insert(change.developer_id.clone());
                            }
                            if !change.plan_id.is_empty() {
                                plans.insert(change.plan_id.clone());
                            }
                        }
                        if !(keys.is_empty() && developers.is_empty() && plans.is_empty()) {
                            tracing::debug!(
                                ?keys,
                                ?developers,
                                ?plans,
                                "dropping changed keys from the cache"
                            );
                            self.forget(&keys, &developers, &plans);
                        }
                        cursor = answer.cursor;
                        applied.retain(|c| *c > cursor);
                    }
                }
                Err(status) => {
                    tracing::warn!(code = ?status.code(), error = %status.message(), "cannot read apikeys' change feed");
                }
            }
            tokio::time::sleep(poll()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Identity;

    #[test]
    fn an_identity_the_services_could_not_read_is_not_carried() {
        let carried = Identity::carried("key_1", "dev_1", "Ada@Example.com").unwrap();
        assert_eq!(carried.email, "ada@example.com");
        // A developer stored before emails had to be ASCII: refused, not sent unreadable.
        assert!(Identity::carried("key_1", "dev_1", "mallöry@example.com").is_none());
        assert!(Identity::carried("key_1", "dev_1", "").is_none());
        assert!(Identity::carried("key 1", "dev_1", "a@b.c").is_none());
    }
}
