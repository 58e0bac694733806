//! Logging, tracing and metrics: `tracing` everywhere, spans and metrics
//! exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, traces
//! sampled by X-Ray's rule (or `OTEL_TRACES_SAMPLER`), W3C trace context
//! propagation, metrics readable as Prometheus text, and log lines, human or
//! JSON, that carry the trace and span ids and the correlation id.

use std::fmt;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{LogFormat, ServerArgs};
use crate::metrics::PrometheusReader;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("log level `{0}` is not a valid filter: {1}")]
    Filter(String, String),
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP exporter for OTEL_EXPORTER_OTLP_ENDPOINT: {0}")]
    Exporter(String),
    /// The sampler settings are wrong.
    #[error(transparent)]
    Sampler(#[from] crate::sampling::SamplerError),
    /// A global subscriber was already installed.
    #[error("telemetry was already initialised in this process")]
    AlreadyInitialised,
}

/// Keeps the tracer provider and the log writer alive; [`Telemetry::shutdown`]
/// flushes spans not yet sent and log lines not yet written.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    meters: SdkMeterProvider,
    prometheus: PrometheusReader,
    _logs: tracing_appender::non_blocking::WorkerGuard,
}

impl Telemetry {
    /// The metrics, for the admin port's Prometheus page.
    pub fn prometheus(&self) -> PrometheusReader {
        self.prometheus.clone()
    }

    /// Sends the spans and metrics still buffered and stops the exporters;
    /// then the log writer writes what it holds and stops.
    pub async fn shutdown(self) {
        // The batch processor blocks while it flushes; keep that off the runtime's workers.
        let provider = self.provider;
        let meters = self.meters;
        let flushed = tokio::task::spawn_blocking(move || (provider.shutdown(), meters.shutdown())).await;
        if let Ok((spans, metrics)) = flushed {
            if let Err(error) = spans {
                eprintln!("telemetry: flushing spans failed: {error}");
            }
            if let Err(error) = metrics {
                eprintln!("telemetry: flushing metrics failed: {error}");
            }
        }
    }
}

/// Whether the environment asks for OTLP export.
pub fn otlp_enabled() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
        && !std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v == "none")
}

/// Whether the environment asks for OTLP metrics.
fn otlp_metrics_enabled() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
        && !std::env::var("OTEL_METRICS_EXPORTER").is_ok_and(|v| v == "none")
}

/// Installs the global subscriber, propagator, tracer and meter for a
/// service, with its log format and level and its sampling rule. Must run
/// inside a Tokio runtime (the OTLP exporter is a tonic client).
pub fn init(service_name: &str, args: &ServerArgs) -> Result<Telemetry, TelemetryError> {
    let (format, level) = (args.log_format, args.log_level.as_str());
    let sampler = crate::sampling::sampler(args.trace_reservoir, args.trace_rate)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the built-in name.
    let resource = if std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty()) {
        Resource::builder().build()
    } else {
        Resource::builder()
            .with_service_name(service_name.to_string())
            .build()
    };
    // Spans are made even without an exporter, so trace ids reach the logs
    // and the trace context is passed on to the services this one calls.
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_sampler(sampler);
    if otlp_enabled() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());

    let prometheus = PrometheusReader::default();
    let mut meters = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(prometheus.clone());
    if otlp_metrics_enabled() {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        // OTEL_METRIC_EXPORT_INTERVAL sets how often (60 s by default).
        meters = meters.with_periodic_exporter(exporter);
    }
    let meters = meters.build();
    opentelemetry::global::set_meter_provider(meters.clone());
    let tracer = provider.tracer(service_name.to_string());

    let filter =
        EnvFilter::try_new(level).map_err(|e| TelemetryError::Filter(level.to_string(), e.to_string()))?;
    // Spans are filtered apart from logs: quieting the logs must not lose traces.
    let span_filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF);
    // Source locations, threads and busy/idle times would double a span's
    // size on the wire and say nothing a reader of the trace needs.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(span_filter);

    // Lines are written to stderr by a thread of their own, so a handler never
    // waits on a write to a slow terminal or pipe. Never lossy: when the
    // writer falls behind, logging waits rather than drops lines.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let logs = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .with_filter(filter)
            .boxed(),
    };
    Registry::default()
        .with(otel)
        .with(logs)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
    Ok(Telemetry {
        provider,
        meters,
        prometheus,
        _logs: guard,
    })
}

/// One JSON object per event: time, level, target, message and fields, and the
/// fields of the spans it happened in (trace_id, span_id, correlation_id, ...),
/// the innermost span winning.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = serde_json::Map::new();
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        line.insert("timestamp".into(), time.into());
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("target".into(), event.metadata().target().into());
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                innermost = Some(span.name());
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(fields) {
                    for (k, v) in map {
                        // otel.* fields steer the exporter; they are noise in logs.
                        if k.starts_with("otel.") {
                            continue;
                        }
                        // Spans name it for search among other attributes; a log line plainly.
                        let k = if k == "ferrymesh.correlation_id" {
                            "correlation_id".to_string()
                        } else {
                            k
                        };
                        line.insert(k, v);
                    }
                }
            }
            if let Some(name) = innermost {
                line.insert("span".into(), name.into());
            }
        }
        let mut visitor = JsonVisitor(&mut line);
        event.record(&mut visitor);
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}
