//! Recent spans in bounded memory, found by trace or by the ids a user
//! knows (order, execution, correlation), and the service map drawn from them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// What a span is to its trace, as OTLP numbers it.
pub const KIND_SERVER: i32 = 2;
/// A span for an outgoing call.
pub const KIND_CLIENT: i32 = 3;

/// Attributes by which a trace can be found besides its id.
pub const SEARCHABLE: &[&str] = &[
    "ferrymesh.order_id",
    "ferrymesh.execution_id",
    "ferrymesh.correlation_id",
];

/// Most attributes kept per span, and longest value kept.
const MAX_ATTRIBUTES: usize = 64;
const MAX_VALUE: usize = 1024;

/// One span as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptSpan {
    /// 16 bytes.
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    pub span_id: Vec<u8>,
    /// Empty for a root.
    pub parent_span_id: Vec<u8>,
    /// The process's `service.name`.
    pub service: Arc<str>,
    /// The span's name.
    pub name: String,
    /// OTLP's span kind number.
    pub kind: i32,
    /// Nanoseconds since the epoch.
    pub start: u64,
    /// Nanoseconds since the epoch.
    pub end: u64,
    /// `ok`, `error`, `throttle` or `fault`.
    pub class: &'static str,
    /// The status message.
    pub status_message: String,
    /// Attributes, values as text.
    pub attributes: Vec<(String, String)>,
}

impl KeptSpan {
    /// An attribute's value.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// How long it took, in nanoseconds.
    pub fn duration(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Keeps at most the first attributes, each value cut to a bound.
    pub fn bound_attributes(mut attributes: Vec<(String, String)>) -> Vec<(String, String)> {
        attributes.truncate(MAX_ATTRIBUTES);
        for (_, value) in &mut attributes {
            if value.len() > MAX_VALUE {
                let mut end = MAX_VALUE;
                while !value.is_char_boundary(end) {
                    end -= 1;
                }
                value.truncate(end);
            }
        }
        attributes
    }
}

/// The class of a span from its `ferrymesh.class` attribute, else from its status.
pub fn class_of(class_attribute: Option<&str>, status_is_error: bool) -> &'static str {
    match class_attribute {
        Some("ok") => "ok",
        Some("error") => "error",
        Some("throttle") => "throttle",
        Some("fault") => "fault",
        _ if status_is_error => "error",
        _ => "ok",
    }
}

/// Calls from one node of the map to another.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// A service, or `client`.
    pub caller: String,
    /// A service, or a database system.
    pub callee: String,
    /// How many.
    pub calls: u64,
    /// Refused as the caller's fault.
    pub errors: u64,
    /// Throttled.
    pub throttles: u64,
    /// Failed by the callee.
    pub faults: u64,
    /// Median latency, microseconds.
    pub p50_micros: u64,
    /// 99th percentile, microseconds.
    pub p99_micros: u64,
}

#[derive(Debug, Default)]
struct Inner {
    // Oldest first; each span once.
    order: VecDeque<Arc<KeptSpan>>,
    by_trace: HashMap<Vec<u8>, Vec<Arc<KeptSpan>>>,
}

/// The spans kept: at most `max_spans`, the oldest dropped first.
#[derive(Debug)]
pub struct Store {
    max_spans: usize,
    inner: Mutex<Inner>,
}

impl Store {
    /// An empty store that keeps up to `max_spans`.
    pub fn new(max_spans: usize) -> Self {
        Store {
            max_spans: max_spans.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the maps half-changed in a way
        // that matters more than losing the sink: go on with them.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `spans`, dropping the oldest beyond the bound.
    pub fn add(&self, spans: Vec<KeptSpan>) {
        let mut inner = self.lock();
        for span in spans {
            let span = Arc::new(span);
            inner
                .by_trace
                .entry(span.trace_id.clone())
                .or_default()
                .push(span.clone());
            inner.order.push_back(span);
        }
        while inner.order.len() > self.max_spans {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(list) = inner.by_trace.get_mut(&old.trace_id) {
                list.retain(|s| !Arc::ptr_eq(s, &old));
                if list.is_empty() {
                    inner.by_trace.remove(&old.trace_id);
                }
            }
        }
    }

    /// How many spans are kept.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The traces `query` names (a trace id in hex, or a searchable
    /// attribute's value): the `max_traces` biggest, oldest first, each
    /// with its spans in start order.
    pub fn find(&self, query: &str, max_traces: usize) -> Vec<(Vec<u8>, Vec<KeptSpan>)> {
        let inner = self.lock();
        let mut ids: Vec<Vec<u8>> = Vec::new();
        if let Ok(id) = hex::decode(query)
            && id.len() == 16
            && inner.by_trace.contains_key(&id)
        {
            ids.push(id);
        } else {
            let mut seen = HashSet::new();
            // Newest first.
            for span in inner.order.iter().rev() {
                let matches = SEARCHABLE.iter().any(|key| span.attribute(key) == Some(query));
                if matches && seen.insert(span.trace_id.clone()) {
                    ids.push(span.trace_id.clone());
                }
            }
        }
        // An order's id is on its placement and saga, and on every read of
        // it: the biggest traces are the ones worth reading (newest first
        // among equals), shown in the order they happened.
        let size = |id: &Vec<u8>| inner.by_trace.get(id).map_or(0, Vec::len);
        let start = |id: &Vec<u8>| {
            inner
                .by_trace
                .get(id)
                .and_then(|l| l.iter().map(|s| s.start).min())
                .unwrap_or(0)
        };
        ids.sort_by(|a, b| size(b).cmp(&size(a)).then_with(|| start(b).cmp(&start(a))));
        ids.truncate(max_traces);
        ids.sort_by_key(start);
        ids.into_iter()
            .map(|id| {
                let mut spans: Vec<KeptSpan> = inner
                    .by_trace
                    .get(&id)
                    .map(|l| l.iter().map(|s| (**s).clone()).collect())
                    .unwrap_or_default();
                spans.sort_by_key(|s| (s.start, s.end));
                (id, spans)
            })
            .collect()
    }

    /// The service map over every kept span: for each server span, an edge
    /// from whoever called it (the service of its parent, or `client` when
    /// the call came from outside), classed by the server's answer and timed
    /// as the caller saw it; for each database span, an edge from its
    /// service to the database.
    pub fn service_map(&self) -> (Vec<Edge>, usize) {
        let inner = self.lock();
        let by_id: HashMap<(&[u8], &[u8]), &KeptSpan> = inner
            .order
            .iter()
            .map(|s| ((s.trace_id.as_slice(), s.span_id.as_slice()), s.as_ref()))
            .collect();
        struct Tally {
            calls: u64,
            errors: u64,
            throttles: u64,
            faults: u64,
            latencies: Vec<u64>,
        }
        let mut tallies: HashMap<(String, String), Tally> = HashMap::new();
        for span in &inner.order {
            let edge = if let Some(system) = span.attribute("db.system") {
                let class = if span.class == "ok" { "ok" } else { "fault" };
                Some((
                    span.service.to_string(),
                    system.to_string(),
                    class,
                    span.duration(),
                ))
            } else if span.kind == KIND_SERVER {
                let parent = by_id
                    .get(&(span.trace_id.as_slice(), span.parent_span_id.as_slice()))
                    .filter(|p| p.service != span.service);
                let (caller, latency) = match parent {
                    Some(p) if p.kind == KIND_CLIENT => (p.service.to_string(), p.duration()),
                    Some(p) => (p.service.to_string(), span.duration()),
                    None => ("client".to_string(), span.duration()),
                };
                Some((caller, span.service.to_string(), span.class, latency))
            } else {
                None
            };
            let Some((caller, callee, class, latency)) = edge else {
                continue;
            };
            let tally = tallies.entry((caller, callee)).or_insert(Tally {
                calls: 0,
                errors: 0,
                throttles: 0,
                faults: 0,
                latencies: Vec::new(),
            });
            tally.calls += 1;
            match class {
                "error" => tally.errors += 1,
                "throttle" => tally.throttles += 1,
                "fault" => tally.faults += 1,
                _ => {}
            }
            tally.latencies.push(latency / 1000);
        }
        let mut edges: Vec<Edge> = tallies
            .into_iter()
            .map(|((caller, callee), mut t)| {
                t.latencies.sort_unstable();
                Edge {
                    caller,
                    callee,
                    calls: t.calls,
                    errors: t.errors,
                    throttles: t.throttles,
                    faults: t.faults,
                    p50_micros: percentile(&t.latencies, 50),
                    p99_micros: percentile(&t.latencies, 99),
                }
            })
            .collect();
        edges.sort_by(|a, b| {
            b.calls
                .cmp(&a.calls)
                .then_with(|| (&a.caller, &a.callee).cmp(&(&b.caller, &b.callee)))
        });
        (edges, inner.order.len())
    }
}

/// The `p`th percentile of sorted values (nearest rank).
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: u8, id: u8, parent: u8, service: &str, kind: i32, class: &'static str) -> KeptSpan {
        KeptSpan {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 { Vec::new() } else { vec![parent; 8] },
            service: service.into(),
            name: format!("span {id}"),
            kind,
            start: u64::from(id) * 1000,
            end: u64::from(id) * 1000 + 2_000_000,
            class,
            status_message: String::new(),
            attributes: vec![("ferrymesh.order_id".into(), format!("ord-{trace}"))],
        }
    }

    #[test]
    fn the_oldest_spans_go_first_and_traces_are_found_by_order_id() {
        let store = Store::new(3);
        store.add(vec![
            span(1, 1, 0, "gateway", KIND_SERVER, "ok"),
            span(2, 2, 0, "gateway", KIND_SERVER, "ok"),
            span(2, 3, 2, "gateway", KIND_CLIENT, "ok"),
            span(2, 4, 3, "orders", KIND_SERVER, "ok"),
        ]);
        assert_eq!(store.len(), 3);
        assert!(store.find("ord-1", 10).is_empty(), "trace 1 was dropped");
        let found = store.find("ord-2", 10);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.len(), 3);
        let by_id = store.find(&hex::encode([2u8; 16]), 10);
        assert_eq!(by_id[0].1, found[0].1);
    }

    #[test]
    fn the_map_has_an_edge_per_caller_and_callee() {
        let store = Store::new(100);
        store.add(vec![
            span(1, 1, 0, "gateway", KIND_SERVER, "ok"),
            span(1, 2, 1, "gateway", KIND_CLIENT, "ok"),
            span(1, 3, 2, "orders", KIND_SERVER, "error"),
            span(1, 4, 3, "orders", KIND_CLIENT, "ok"),
            span(1, 5, 4, "catalog", KIND_SERVER, "fault"),
        ]);
        let (edges, count) = store.service_map();
        assert_eq!(count, 5);
        let find = |a: &str, b: &str| edges.iter().find(|e| e.caller == a && e.callee == b).cloned();
        assert_eq!(find("client", "gateway").map(|e| e.calls), Some(1));
        let orders = find("gateway", "orders").unwrap();
        assert_eq!((orders.calls, orders.errors), (1, 1));
        let catalog = find("orders", "catalog").unwrap();
        assert_eq!((catalog.calls, catalog.faults, catalog.p50_micros), (1, 1, 2000));
        assert_eq!(edges.len(), 3);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), 50);
        assert_eq!(percentile(&values, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
    }
}
