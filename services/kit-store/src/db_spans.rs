//! One client span per database statement, by the OpenTelemetry database
//! conventions (`db.system`, `db.operation`, `db.sql.table`,
//! `db.statement` without its values), as a child of the span running it.
//!
//! sea-orm reports each statement's duration to a callback once it has run;
//! the span is made then, with its start moved back by that duration. Only
//! statements run inside a sampled trace get one, so background work and
//! unsampled calls cost nothing here.

use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer};
use sea_orm::{DatabaseBackend, DatabaseConnection};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Longest statement text kept on a span.
const STATEMENT_LIMIT: usize = 2048;

/// Makes every statement run on `connection` a span.
pub(crate) fn trace_statements(connection: &mut DatabaseConnection) {
    let system = match connection.get_database_backend() {
        DatabaseBackend::Postgres => "postgresql",
        DatabaseBackend::MySql => "mysql",
        DatabaseBackend::Sqlite => "sqlite",
        _ => "other_sql",
    };
    connection.set_metric_callback(move |info| {
        record(system, &info.statement.sql, info.elapsed, info.failed);
    });
}

fn record(system: &'static str, sql: &str, elapsed: Duration, failed: bool) {
    let parent = tracing::Span::current().context();
    if !parent.span().span_context().is_sampled() {
        return;
    }
    let operation = operation(sql);
    let table = table(sql);
    let name = match &table {
        Some(table) => format!("{operation} {table}"),
        None => operation.to_string(),
    };
    let end = SystemTime::now();
    let mut attributes = vec![
        KeyValue::new("db.system", system),
        KeyValue::new("db.operation", operation),
        KeyValue::new("db.statement", truncate(sql, STATEMENT_LIMIT).to_string()),
    ];
    if let Some(table) = table {
        attributes.push(KeyValue::new("db.sql.table", table));
    }
    let tracer = opentelemetry::global::tracer("kit-store");
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_start_time(end.checked_sub(elapsed).unwrap_or(end))
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent);
    if failed {
        span.set_status(Status::error("the statement failed"));
    }
    span.end_with_timestamp(end);
}

/// The statement's verb: SELECT, INSERT, UPDATE, DELETE, or the first word.
fn operation(sql: &str) -> &'static str {
    let first = sql.split_whitespace().next().unwrap_or("");
    for verb in [
        "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT", "ROLLBACK",
    ] {
        if first.eq_ignore_ascii_case(verb) {
            return verb;
        }
    }
    "EXECUTE"
}

/// The table a statement reads or writes: the word after FROM, INTO or UPDATE.
fn table(sql: &str) -> Option<String> {
    let mut words = sql.split_whitespace();
    while let Some(word) = words.next() {
        if ["FROM", "INTO", "UPDATE"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k))
        {
            let name = words.next()?;
            let name = name
                .split(['(', ','])
                .next()
                .unwrap_or(name)
                .trim_matches(|c| c == '"' || c == '`' || c == ';');
            return (!name.is_empty()).then(|| name.to_string());
        }
    }
    None
}

fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_their_operation_and_table() {
        let select = r#"SELECT "orders"."id" FROM "orders" WHERE "orders"."id" = $1"#;
        assert_eq!(
            (operation(select), table(select).as_deref()),
            ("SELECT", Some("orders"))
        );
        let insert = r#"INSERT INTO "stock" ("sku", "on_hand") VALUES (?, ?)"#;
        assert_eq!(
            (operation(insert), table(insert).as_deref()),
            ("INSERT", Some("stock"))
        );
        let update = r#"UPDATE "payments" SET "state" = $1"#;
        assert_eq!(
            (operation(update), table(update).as_deref()),
            ("UPDATE", Some("payments"))
        );
        let delete = "DELETE FROM idempotency WHERE key = ?";
        assert_eq!(
            (operation(delete), table(delete).as_deref()),
            ("DELETE", Some("idempotency"))
        );
        assert_eq!((operation("BEGIN"), table("BEGIN")), ("BEGIN", None));
        assert_eq!(truncate("héllo", 2), "h");
    }
}
