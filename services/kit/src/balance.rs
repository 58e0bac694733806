//! Calls spread over every instance of a service, and calls that never
//! reached one sent again.
//!
//! gRPC keeps connections open, so a Kubernetes ClusterIP Service would
//! pin each client to one pod. Called services get headless Services
//! instead, whose DNS name resolves to every ready pod; the gateway
//! resolves it again every few seconds and picks an instance per call by
//! the power of two choices (two at random, the one with fewer calls in
//! flight), as tower's `p2c` balancer does. Locally an upstream may be a
//! list: `http://127.0.0.1:50051,http://127.0.0.1:50061`.
//!
//! A call whose request body was never read (the connection was refused,
//! or closed by a server going away before it took the stream) cannot
//! have reached the service's code, so it is sent again, to another
//! instance when there is one: gRPC's "transparent retry". That is what
//! lets an instance stop during a rollout without failing a call.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body::{Body as HttpBody, Frame, SizeHint};
use rand::Rng;

/// How often a name is resolved again, so pods that came or went are seen.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// How long a call that never reached an instance keeps being sent again.
pub const RETRY_WINDOW: Duration = Duration::from_secs(5);

/// How long an instance that refused a connection is passed over when
/// another can be chosen.
pub const COOL_DOWN: Duration = Duration::from_secs(1);

/// One address of an upstream list, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`: the TLS server name and the `:authority` of calls.
    pub authority: Authority,
    host: String,
    port: u16,
}

impl Target {
    /// The host, as certificates name it.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// An upstream: one or more `scheme://host:port` addresses, comma-separated,
/// all of one scheme; a host may be a DNS name with many addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// At least one.
    pub list: Vec<Target>,
}

impl Targets {
    /// Parses `urls`; says what to write instead when it cannot.
    pub fn parse(urls: &str) -> Result<Targets, String> {
        let example = "write http://HOST:PORT, https://HOST:PORT, or several separated by commas";
        let mut scheme: Option<Scheme> = None;
        let mut list = Vec::new();
        for url in urls.split(',').map(str::trim) {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| format!("{url:?} is not an address ({e}): {example}"))?;
            let (Some(s), Some(authority), Some(port)) =
                (uri.scheme().cloned(), uri.authority().cloned(), uri.port_u16())
            else {
                return Err(format!("{url:?} needs a scheme, host and port: {example}"));
            };
            if (s != Scheme::HTTP && s != Scheme::HTTPS) || !uri.path().trim_end_matches('/').is_empty() {
                return Err(format!("{url:?} is not an upstream address: {example}"));
            }
            if scheme.as_ref().is_some_and(|first| *first != s) {
                return Err(format!(
                    "{urls:?} mixes http and https: one upstream is called one way"
                ));
            }
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            scheme = Some(s);
            list.push(Target {
                authority,
                host,
                port,
            });
        }
        match scheme {
            Some(scheme) => Ok(Targets { scheme, list }),
            None => Err(format!("no address given: {example}")),
        }
    }

    /// Whether every host is an IP address, so resolving again changes nothing.
    pub fn is_static(&self) -> bool {
        self.list
            .iter()
            .all(|t| t.host.parse::<std::net::IpAddr>().is_ok())
    }

    /// Every address of every target, each with the index of its target.
    /// A name that does not resolve now is left out (and logged): the
    /// others still serve, and the next resolution may find it.
    pub async fn resolve(&self) -> Vec<(SocketAddr, usize)> {
        let mut found = Vec::new();
        for (index, target) in self.list.iter().enumerate() {
            match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
                Ok(addrs) => {
                    for addr in addrs {
                        if !found.iter().any(|(a, _)| *a == addr) {
                            found.push((addr, index));
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(upstream = %target.authority, %error, "cannot resolve upstream");
                }
            }
        }
        found
    }
}

/// The instances of an upstream, each with its connections `T`: resolved
/// when first needed and again, in the background, when the last
/// resolution is older than [`RESOLVE_EVERY`]. An instance still there
/// keeps its connections.
pub struct Pool<T> {
    targets: Targets,
    make: MakeConnections<T>,
    members: arc_swap::ArcSwap<Vec<Arc<Member<T>>>>,
    /// When the addresses were last resolved, as [`now_ms`]; 0 for never.
    resolved: AtomicU64,
    resolving: tokio::sync::Mutex<()>,
}

impl<T> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

/// Makes the connections of a new instance.
type MakeConnections<T> = Box<dyn Fn(SocketAddr, &Target) -> T + Send + Sync>;

/// One instance: its address, which target it came from, its connections
/// and its load.
#[derive(Debug)]
pub struct Member<T> {
    /// Where it listens.
    pub address: SocketAddr,
    /// Index into the targets: the host its certificate names.
    pub target: usize,
    /// Its connections.
    pub value: T,
    /// Its calls in flight and refusals.
    pub load: Arc<Load>,
}

impl<T: Send + Sync + 'static> Pool<T> {
    /// A pool of `targets`, whose instances' connections `make` makes.
    pub fn new(targets: Targets, make: impl Fn(SocketAddr, &Target) -> T + Send + Sync + 'static) -> Pool<T> {
        Pool {
            targets,
            make: Box::new(make),
            members: arc_swap::ArcSwap::from_pointee(Vec::new()),
            resolved: AtomicU64::new(0),
            resolving: tokio::sync::Mutex::new(()),
        }
    }

    /// The addresses as configured.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    fn current(&self) -> Arc<Vec<Arc<Member<T>>>> {
        self.members.load_full()
    }

    /// The instances now.
    pub async fn members(self: &Arc<Self>) -> Arc<Vec<Arc<Member<T>>>> {
        let at = self.resolved.load(Ordering::Relaxed);
        if at == 0 {
            self.resolve().await;
        } else if now_ms().saturating_sub(at) >= RESOLVE_EVERY.as_millis() as u64
            && !self.targets.is_static()
            // One call starts the resolution; the others go on with what there is.
            && self
                .resolved
                .compare_exchange(at, now_ms(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let this = self.clone();
            tokio::spawn(async move { this.resolve().await });
        }
        self.current()
    }

    /// Chooses an instance for one call; `None` when there is none.
    pub async fn choose(self: &Arc<Self>) -> Option<Arc<Member<T>>> {
        let members = self.members().await;
        pick(members.len(), |i| &members[i].load).map(|i| members[i].clone())
    }

    /// Resolves the addresses now.
    pub async fn resolve(&self) {
        let asked = now_ms();
        let _one = self.resolving.lock().await;
        if self.resolved.load(Ordering::Relaxed) > asked && !self.current().is_empty() {
            // Another call resolved while this one waited.
            return;
        }
        let found = self.targets.resolve().await;
        let old = self.current();
        let next: Vec<Arc<Member<T>>> = found
            .into_iter()
            .map(|(address, target)| {
                old.iter()
                    .find(|m| m.address == address)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Member {
                            address,
                            target,
                            value: (self.make)(address, &self.targets.list[target]),
                            load: Arc::new(Load::default()),
                        })
                    })
            })
            .collect();
        if next.len() != old.len() || next.iter().zip(old.iter()).any(|(a, b)| a.address != b.address) {
            let addresses: Vec<String> = next.iter().map(|m| m.address.to_string()).collect();
            tracing::info!(upstream = %self.targets.list[0].authority, instances = %addresses.join(","), "upstream instances");
        }
        // A name that resolves to nothing for now keeps the last instances.
        if !next.is_empty() || old.is_empty() {
            self.members.store(Arc::new(next));
        }
        self.resolved.store(now_ms() + 1, Ordering::Relaxed);
    }
}

/// The calls in flight to one instance and whether it refused lately:
/// what the power of two choices compares.
#[derive(Debug, Default)]
pub struct Load {
    in_flight: AtomicUsize,
    /// Milliseconds after [`EPOCH`] of the last refusal, 0 for none.
    refused_at: AtomicU64,
}

/// The instant refusals are counted from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Load {
    /// Counts a call until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Marks the instance as having refused a call just now.
    pub fn refused(&self) {
        self.refused_at.store(now_ms(), Ordering::Relaxed);
    }

    fn cooling(&self) -> bool {
        let at = self.refused_at.load(Ordering::Relaxed);
        at != 0 && now_ms().saturating_sub(at) < COOL_DOWN.as_millis() as u64
    }

    /// Lower is better: instances cooling down after a refusal come last.
    fn score(&self) -> (bool, usize) {
        (self.cooling(), self.in_flight.load(Ordering::Relaxed))
    }
}

/// A call counted against an instance's load while it lives.
#[derive(Debug)]
pub struct InFlight(Arc<Load>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The power of two choices over `n` instances whose loads `load` gives:
/// two distinct ones at random, the less loaded. `None` when there are none.
pub fn pick<'a>(n: usize, load: impl Fn(usize) -> &'a Load) -> Option<usize> {
    match n {
        0 => None,
        1 => Some(0),
        n => {
            let mut rng = rand::rng();
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            Some(if load(b).score() < load(a).score() { b } else { a })
        }
    }
}

/// A request body that can be handed to another attempt for as long as no
/// attempt has read from it.
#[derive(Debug, Clone)]
pub struct Replayable<B> {
    slot: Arc<Mutex<Option<B>>>,
}

impl<B> Replayable<B> {
    /// Holds `body` for the first attempt that reads it.
    pub fn new(body: B) -> Self {
        Replayable {
            slot: Arc::new(Mutex::new(Some(body))),
        }
    }

    /// A body for one attempt.
    pub fn attempt(&self) -> Attempt<B> {
        Attempt {
            slot: self.slot.clone(),
            taken: None,
        }
    }

    /// Whether no attempt has read the body: a failed attempt then never
    /// delivered the request, and another may be made.
    pub fn untouched(&self) -> bool {
        self.slot.lock().is_ok_and(|slot| slot.is_some())
    }
}

pin_project_lite::pin_project! {
    /// The body of one attempt: it takes the request's body when first read.
    #[derive(Debug)]
    pub struct Attempt<B> {
        slot: Arc<Mutex<Option<B>>>,
        #[pin]
        taken: Option<B>,
    }
}

impl<B> HttpBody for Attempt<B>
where
    B: HttpBody<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        if this.taken.is_none() {
            let body = this.slot.lock().ok().and_then(|mut slot| slot.take());
            match body {
                Some(body) => this.taken.set(Some(body)),
                // Another attempt has it: this one has nothing to send.
                None => return Poll::Ready(None),
            }
        }
        match this.taken.as_pin_mut() {
            Some(body) => body.poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(body) => body.is_end_stream(),
            None => self
                .slot
                .lock()
                .map(|slot| slot.as_ref().is_none_or(B::is_end_stream))
                .unwrap_or(true),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(body) => body.size_hint(),
            None => self
                .slot
                .lock()
                .ok()
                .and_then(|slot| slot.as_ref().map(B::size_hint))
                .unwrap_or_default(),
        }
    }
}

pub use crate::backoff::Backoff;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[test]
    fn targets_are_one_or_more_addresses_of_one_scheme() {
        let t = Targets::parse("http://127.0.0.1:50051, http://catalog:50061/").unwrap();
        assert_eq!(t.scheme, Scheme::HTTP);
        assert_eq!(t.list.len(), 2);
        assert_eq!(t.list[1].host(), "catalog");
        assert!(!t.is_static());
        assert!(Targets::parse("https://[::1]:1").unwrap().is_static());
        for bad in [
            "",
            "127.0.0.1:50051",
            "http://127.0.0.1",
            "ftp://a:1",
            "http://a:1/x",
            "http://a:1,https://b:2",
        ] {
            let error = Targets::parse(bad).unwrap_err();
            assert!(error.contains("http"), "{bad}: {error}");
        }
    }

    #[test]
    fn two_choices_avoid_the_busy_and_the_refusing() {
        let idle = Arc::new(Load::default());
        let busy = Arc::new(Load::default());
        let _calls: Vec<_> = (0..3).map(|_| busy.start()).collect();
        for _ in 0..50 {
            assert_eq!(pick(2, |i| [&*busy, &*idle][i]), Some(1));
        }
        busy.refused();
        let refusing = busy;
        drop(_calls);
        let _call = idle.start();
        for _ in 0..50 {
            assert_eq!(
                pick(2, |i| [&*refusing, &*idle][i]),
                Some(1),
                "a refusing instance comes last"
            );
        }
        assert_eq!(pick(0, |_| &*idle), None);
        assert_eq!(pick(1, |_| &*idle), Some(0));
    }

    #[tokio::test]
    async fn a_body_goes_to_the_first_attempt_that_reads_it() {
        let body = Replayable::new(Full::new(Bytes::from_static(b"order")));
        let unread = body.attempt();
        assert!(!unread.is_end_stream());
        drop(unread);
        assert!(body.untouched(), "an attempt that never read leaves the body");
        let read = body.attempt().collect().await.unwrap().to_bytes();
        assert_eq!(&read[..], b"order");
        assert!(!body.untouched());
        let late = body.attempt().collect().await.unwrap().to_bytes();
        assert!(late.is_empty());
    }
}
