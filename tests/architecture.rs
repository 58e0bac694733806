//! The architecture page's picture of the mesh is made from the code: each
//! service's CALLERS (who may call which of its methods under mutual TLS)
//! is the call graph. The page must show what the tables say; regenerate it
//! with `FERRYMESH_WRITE_DOCS=1 cargo nextest run -p ferrymesh -E 'test(architecture)'`.

use std::collections::BTreeMap;

use crate::support::root;

const BEGIN: &str = "<!-- the mesh: generated from CALLERS by tests/architecture.rs -->";
const END: &str = "<!-- end of the generated mesh -->";

/// Every service with a call table, and whether it keeps a database of its own.
fn tables() -> Vec<(&'static str, kit::authz::Callers)> {
    vec![
        ("apikeys", apikeys::CALLERS),
        ("catalog", catalog::CALLERS),
        ("inventory", inventory::CALLERS),
        ("orders", orders::CALLERS),
        ("payments", payments::CALLERS),
        ("shipping", shipping::CALLERS),
        ("workflow", workflow::CALLERS),
    ]
}

/// The picture and the table, as the page shows them.
fn generated() -> String {
    // caller -> callee -> methods
    let mut calls: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for (callee, callers) in tables() {
        for (caller, pattern) in callers {
            let method = pattern.rsplit_once('.').map_or(*pattern, |(_, m)| m);
            calls
                .entry(caller)
                .or_default()
                .entry(callee)
                .or_default()
                .push(method);
        }
    }
    let mut out = String::new();
    out.push_str(BEGIN);
    out.push_str("\n\n```text\n");
    out.push_str("clients (grpcurl, browsers, your services)\n   │ API key, gRPC or gRPC-Web\n   ▼\n");
    let width = calls.keys().map(|c| c.len()).max().unwrap_or(0);
    for (caller, callees) in &calls {
        let names: Vec<&str> = callees.keys().copied().collect();
        out.push_str(&format!("{caller:<width$} ──▶ {}\n", names.join(", ")));
    }
    out.push_str("\neach service ──▶ its own database (SQLite file or PostgreSQL database);\n");
    out.push_str("the gateway and the trace sink keep none\n```\n\n");
    out.push_str("| Service | Who may call it, and what (its `CALLERS`) |\n|---|---|\n");
    for (callee, callers) in tables() {
        let mut by_caller: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (caller, pattern) in callers {
            let method = pattern.strip_prefix("ferrymesh.").unwrap_or(pattern);
            by_caller.entry(caller).or_default().push(method);
        }
        let cell: Vec<String> = by_caller
            .iter()
            .map(|(caller, methods)| format!("{caller}: `{}`", methods.join("`, `")))
            .collect();
        out.push_str(&format!("| {callee} | {} |\n", cell.join("; ")));
    }
    out.push_str("\nThe operator's certificate (`ferrymesh certs`, grpcurl) may call every method.\n\n");
    out.push_str(END);
    out
}

#[test]
fn the_architecture_page_draws_the_mesh_from_the_call_tables() {
    let path = root().join("docs/src/architecture.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let (Some(begin), Some(end)) = (page.find(BEGIN), page.find(END)) else {
        panic!(
            "{} has no generated mesh between {BEGIN} and {END}",
            path.display()
        );
    };
    let shown = &page[begin..end + END.len()];
    let wanted = generated();
    if shown != wanted && std::env::var_os("FERRYMESH_WRITE_DOCS").is_some() {
        std::fs::write(&path, page.replace(shown, &wanted)).unwrap();
        return;
    }
    assert_eq!(
        shown, wanted,
        "the architecture page's mesh is out of date with the CALLERS tables: run \
         FERRYMESH_WRITE_DOCS=1 cargo nextest run -p ferrymesh -E 'test(architecture)'"
    );
    // Every service's crate is drawn.
    for (service, _) in tables() {
        assert!(shown.contains(&format!("| {service} |")), "{service}");
    }
}
