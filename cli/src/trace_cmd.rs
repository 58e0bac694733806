//! `ferrymesh trace`: a trace as a waterfall in the terminal, or the
//! service map, from the trace sink that `ferrymesh up --trace-sink` runs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use tracesink::pb::ferrymesh::traces::v1 as pb;
use tracesink::pb::ferrymesh::traces::v1::traces_service_client::TracesServiceClient;

/// Flags of `ferrymesh trace`.
#[derive(Debug, clap::Args)]
pub(crate) struct TraceArgs {
    /// A trace id, an order id, an execution id or a correlation id; or
    /// `map` for the service map.
    #[arg(value_name = "ID|map")]
    query: String,
    /// Where the trace sink listens.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:4317",
        env = "FERRYMESH_TRACE_SINK"
    )]
    sink: String,
    /// The most traces to show when an id names several (a redriven order).
    #[arg(long, value_name = "N", default_value_t = 5)]
    max_traces: i32,
    /// Show database spans too (hidden by default: a saga makes many).
    #[arg(long)]
    db: bool,
    /// Width of the timeline column.
    #[arg(long, value_name = "COLUMNS", default_value_t = 40)]
    width: usize,
}

pub(crate) async fn run(args: TraceArgs) -> ExitCode {
    let channel = match tonic::transport::Endpoint::from_shared(args.sink.clone()) {
        Ok(endpoint) => endpoint.connect_timeout(Duration::from_secs(2)).connect_lazy(),
        Err(error) => {
            eprintln!("ferrymesh: --sink {:?} is not a URL: {error}", args.sink);
            return ExitCode::from(2);
        }
    };
    let mut client = TracesServiceClient::new(channel);
    let result = if args.query == "map" {
        client
            .get_service_map(pb::GetServiceMapRequest {})
            .await
            .map(|r| print!("{}", render_map(&r.into_inner())))
    } else {
        client
            .find_traces(pb::FindTracesRequest {
                query: args.query.clone(),
                max_traces: args.max_traces,
            })
            .await
            .map(|r| {
                for trace in r.into_inner().traces {
                    print!("{}", render_trace(&trace, args.db, args.width.clamp(10, 200)));
                }
            })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(status) if status.code() == tonic::Code::Unavailable => {
            eprintln!(
                "ferrymesh: no trace sink answers at {}: start the mesh with `ferrymesh up --trace-sink` ({})",
                args.sink,
                status.message()
            );
            ExitCode::FAILURE
        }
        Err(status) if status.code() == tonic::Code::NotFound => {
            eprintln!(
                "ferrymesh: no trace found for {:?}; spans reach the sink about a second after the call, and it keeps the most recent only",
                args.query
            );
            ExitCode::FAILURE
        }
        Err(status) => {
            eprintln!("ferrymesh: {:?}: {}", status.code(), status.message());
            ExitCode::FAILURE
        }
    }
}

fn ms(nanos: i64) -> String {
    format!("{:.1}ms", nanos as f64 / 1e6)
}

fn is_database(span: &pb::Span) -> bool {
    span.attributes.contains_key("db.system")
}

/// The waterfall: one line per span, children under their parent, each
/// with its service, start offset, duration, a bar on the trace's timeline,
/// and its class; a failed span says why.
pub(crate) fn render_trace(trace: &pb::Trace, with_db: bool, width: usize) -> String {
    let spans: Vec<&pb::Span> = trace
        .spans
        .iter()
        .filter(|s| with_db || !is_database(s))
        .collect();
    let hidden = trace.spans.len() - spans.len();
    let start = spans.iter().map(|s| s.start_unix_nanos).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.start_unix_nanos.saturating_add(s.duration_nanos))
        .max()
        .unwrap_or(start);
    let total = (end - start).max(1);
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<&pb::Span>> = HashMap::new();
    let mut roots = Vec::new();
    for span in &spans {
        if ids.contains(span.parent_span_id.as_str()) {
            children
                .entry(span.parent_span_id.as_str())
                .or_default()
                .push(span);
        } else {
            roots.push(*span);
        }
    }
    let mut ordered: Vec<(usize, &pb::Span)> = Vec::new();
    let mut stack: Vec<(usize, &pb::Span)> = roots.into_iter().rev().map(|s| (0, s)).collect();
    while let Some((depth, span)) = stack.pop() {
        ordered.push((depth, span));
        if let Some(kids) = children.get(span.span_id.as_str()) {
            for kid in kids.iter().rev() {
                stack.push((depth + 1, kid));
            }
        }
    }

    // The service column names the process; the package prefix is noise.
    let named: Vec<(String, &pb::Span)> = ordered
        .into_iter()
        .map(|(depth, span)| {
            let indent = "  ".repeat(depth.min(12));
            (
                format!("{indent}{}", span.name.trim_start_matches("ferrymesh.")),
                span,
            )
        })
        .collect();
    let column = named
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 90);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "trace {}  {} spans  {}{}",
        trace.trace_id,
        spans.len(),
        ms(total),
        if hidden > 0 {
            format!("  ({hidden} database spans hidden; --db shows them)")
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "{:<10} {:<column$} {:>9} {:>9}  {:<width$}  CLASS",
        "SERVICE", "SPAN", "START", "DURATION", "TIMELINE"
    );
    for (mut name, span) in named {
        if name.chars().count() > column {
            name = name.chars().take(column - 1).collect::<String>() + "…";
        }
        let offset = span.start_unix_nanos - start;
        let from = ((offset as f64 / total as f64) * width as f64).floor() as usize;
        let length = (((span.duration_nanos as f64 / total as f64) * width as f64).round() as usize).max(1);
        let from = from.min(width - 1);
        let length = length.min(width - from);
        let bar = format!(
            "{}{}{}",
            " ".repeat(from),
            "█".repeat(length),
            " ".repeat(width - from - length)
        );
        let why = span
            .attributes
            .get("workflow.error")
            .or_else(|| Some(&span.status_message).filter(|m| !m.is_empty()))
            .filter(|_| span.class != "ok")
            .map(|m| format!("  {m}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<10} {:<column$} {:>9} {:>9}  {bar}  {}{why}",
            span.service_name,
            name,
            ms(offset),
            ms(span.duration_nanos),
            span.class
        );
    }
    out.push('\n');
    out
}

/// The service map: one line per edge with its calls, the share of errors,
/// throttles and faults, and the latency the caller saw.
pub(crate) fn render_map(map: &pb::GetServiceMapResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "service map from {} spans", map.span_count);
    let _ = writeln!(
        out,
        "{:<10}    {:<11} {:>7} {:>7} {:>9} {:>7} {:>10} {:>10}",
        "CALLER", "CALLEE", "CALLS", "ERRORS", "THROTTLES", "FAULTS", "P50", "P99"
    );
    let share = |n: i64, of: i64| format!("{:.1}%", 100.0 * n as f64 / of.max(1) as f64);
    for edge in &map.edges {
        let _ = writeln!(
            out,
            "{:<10} -> {:<11} {:>7} {:>7} {:>9} {:>7} {:>10} {:>10}",
            edge.caller,
            edge.callee,
            edge.calls,
            share(edge.errors, edge.calls),
            share(edge.throttles, edge.calls),
            share(edge.faults, edge.calls),
            ms(edge.p50_micros * 1000),
            ms(edge.p99_micros * 1000)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(
        id: &str,
        parent: &str,
        service: &str,
        name: &str,
        start: i64,
        duration: i64,
        class: &str,
    ) -> pb::Span {
        pb::Span {
            span_id: id.into(),
            parent_span_id: parent.into(),
            service_name: service.into(),
            name: name.into(),
            kind: pb::SpanKind::Server as i32,
            start_unix_nanos: start,
            duration_nanos: duration,
            class: class.into(),
            status_message: String::new(),
            attributes: Default::default(),
        }
    }

    #[test]
    fn a_waterfall_nests_children_and_draws_their_time() {
        let mut failed = span("c", "a", "payments", "Charge", 50_000_000, 10_000_000, "error");
        failed.status_message = "card declined".into();
        let mut db = span("d", "a", "orders", "INSERT orders", 1_000_000, 1_000_000, "ok");
        db.attributes.insert("db.system".into(), "sqlite".into());
        let trace = pb::Trace {
            trace_id: "t".into(),
            spans: vec![
                span("a", "", "gateway", "PlaceOrder", 0, 100_000_000, "ok"),
                db,
                failed,
            ],
        };
        let text = render_trace(&trace, false, 10);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("2 spans") && lines[0].contains("1 database spans hidden"),
            "{text}"
        );
        assert!(lines[2].starts_with("gateway    PlaceOrder "), "{text}");
        assert!(
            lines[2].contains("██████████"),
            "the root spans the timeline: {text}"
        );
        assert!(
            lines[3].starts_with("payments     Charge"),
            "indented under its parent: {text}"
        );
        assert!(
            lines[3].contains("     █    "),
            "starts half way, a tenth long: {text}"
        );
        assert!(lines[3].ends_with("error  card declined"), "{text}");
        assert!(render_trace(&trace, true, 10).contains("INSERT orders"));
    }
}
