//! The OTLP receiver, the forwarder, and the TracesService handlers.

use std::sync::Arc;

use kit_values::Violations;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::pb::ferrymesh::traces::v1 as pb;
use crate::store::{KeptSpan, Store, class_of};

/// Passes every export on to another OTLP endpoint, from a queue of its
/// own: a slow or absent collector never slows the services down, and
/// exports that do not fit in the queue are dropped and counted in the log.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    queue: mpsc::Sender<ExportTraceServiceRequest>,
}

impl Forwarder {
    /// Starts forwarding to `url`.
    pub(crate) fn start(url: &str) -> Result<Forwarder, kit::BoxError> {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("--forward {url:?} is not a URL: {e}"))?
            .connect_timeout(std::time::Duration::from_secs(2))
            .connect_lazy();
        let mut client = TraceServiceClient::new(channel);
        let (queue, mut exports) = mpsc::channel::<ExportTraceServiceRequest>(256);
        let target = url.to_string();
        tokio::spawn(async move {
            while let Some(export) = exports.recv().await {
                if let Err(status) = client.export(export).await {
                    tracing::warn!(forward = %target, error = %status.message(), "spans not passed on");
                }
            }
        });
        Ok(Forwarder { queue })
    }

    fn send(&self, export: ExportTraceServiceRequest) {
        if self.queue.try_send(export).is_err() {
            tracing::warn!("the forward queue is full; spans dropped for the forward target");
        }
    }
}

/// Takes spans over OTLP/gRPC.
#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    store: Arc<Store>,
    forward: Option<Forwarder>,
}

impl Receiver {
    pub(crate) fn new(store: Arc<Store>, forward: Option<Forwarder>) -> Self {
        Receiver { store, forward }
    }
}

fn text(value: Option<AnyValue>) -> String {
    match value.and_then(|v| v.value) {
        Some(any_value::Value::StringValue(s)) => s,
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn pairs(attributes: Vec<KeyValue>) -> Vec<(String, String)> {
    attributes
        .into_iter()
        .map(|kv| (kv.key, text(kv.value)))
        .collect()
}

/// The spans of an export, as kept: moved, not copied, as the sink shares
/// the machine with the services it watches.
pub(crate) fn kept(export: ExportTraceServiceRequest) -> (Vec<KeptSpan>, i64) {
    let mut spans = Vec::new();
    let mut rejected = 0i64;
    for resource_spans in export.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| pairs(r.attributes))
            .unwrap_or_default();
        let service: Arc<str> = resource
            .iter()
            .find(|(k, _)| k == "service.name")
            .map_or("unknown_service", |(_, v)| v.as_str())
            .into();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                if span.trace_id.len() != 16 || span.span_id.len() != 8 {
                    rejected += 1;
                    continue;
                }
                let attributes = KeptSpan::bound_attributes(pairs(span.attributes));
                let status_is_error = span
                    .status
                    .as_ref()
                    .is_some_and(|s| s.code == StatusCode::Error as i32);
                let class = class_of(
                    attributes
                        .iter()
                        .find(|(k, _)| k == "ferrymesh.class")
                        .map(|(_, v)| v.as_str()),
                    status_is_error,
                );
                spans.push(KeptSpan {
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    service: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    start: span.start_time_unix_nano,
                    end: span.end_time_unix_nano.max(span.start_time_unix_nano),
                    class,
                    status_message: span.status.map(|s| s.message).unwrap_or_default(),
                    attributes,
                });
            }
        }
    }
    (spans, rejected)
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let export = request.into_inner();
        if let Some(forward) = &self.forward {
            forward.send(export.clone());
        }
        let (spans, rejected) = kept(export);
        self.store.add(spans);
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: "a span's trace_id must be 16 bytes and its span_id 8".into(),
            }),
        }))
    }
}

/// Answers for traces and the service map.
#[derive(Debug, Clone)]
pub(crate) struct TracesApi {
    store: Arc<Store>,
}

impl TracesApi {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        TracesApi { store }
    }
}

fn span_to_pb(span: KeptSpan) -> pb::Span {
    pb::Span {
        span_id: hex::encode(&span.span_id),
        parent_span_id: hex::encode(&span.parent_span_id),
        service_name: span.service.to_string(),
        duration_nanos: i64::try_from(span.duration()).unwrap_or(i64::MAX),
        start_unix_nanos: i64::try_from(span.start).unwrap_or(i64::MAX),
        kind: match span.kind {
            1..=5 => span.kind,
            _ => pb::SpanKind::Unspecified as i32,
        },
        class: span.class.to_string(),
        status_message: span.status_message,
        attributes: span.attributes.into_iter().collect(),
        name: span.name,
    }
}

#[tonic::async_trait]
impl pb::traces_service_server::TracesService for TracesApi {
    async fn find_traces(
        &self,
        request: Request<pb::FindTracesRequest>,
    ) -> Result<Response<pb::FindTracesResponse>, Status> {
        let request = request.into_inner();
        let query = request.query.trim();
        let mut violations = Violations::new();
        if query.is_empty() {
            violations.add(
                "query",
                "must be a trace id, an order id, an execution id or a correlation id",
            );
        } else if query.len() > 256 {
            violations.add("query", "must be at most 256 characters");
        }
        if !(0..=100).contains(&request.max_traces) {
            violations.add("max_traces", "must be 0 (for 10) to 100");
        }
        if !violations.is_empty() {
            return Err(kit::error::invalid_argument(violations));
        }
        let max = match request.max_traces {
            0 => 10,
            n => usize::try_from(n).unwrap_or(10),
        };
        let traces = self
            .store
            .find(query, max)
            .into_iter()
            .map(|(id, spans)| pb::Trace {
                trace_id: hex::encode(id),
                spans: spans.into_iter().map(span_to_pb).collect(),
            })
            .collect::<Vec<_>>();
        if traces.is_empty() {
            return Err(kit::error::not_found("trace", query));
        }
        Ok(Response::new(pb::FindTracesResponse { traces }))
    }

    async fn get_service_map(
        &self,
        _request: Request<pb::GetServiceMapRequest>,
    ) -> Result<Response<pb::GetServiceMapResponse>, Status> {
        let (edges, count) = self.store.service_map();
        Ok(Response::new(pb::GetServiceMapResponse {
            edges: edges
                .into_iter()
                .map(|e| pb::ServiceMapEdge {
                    caller: e.caller,
                    callee: e.callee,
                    calls: e.calls as i64,
                    errors: e.errors as i64,
                    throttles: e.throttles as i64,
                    faults: e.faults as i64,
                    p50_micros: e.p50_micros as i64,
                    p99_micros: e.p99_micros as i64,
                })
                .collect(),
            span_count: count as i64,
        }))
    }
}
