//! The kit is split by weight: the serving runtime links no database driver,
//! so the gateway can stand on it without compiling one.

use crate::support::root;

/// `cargo tree` of `package`'s normal dependencies, one crate a line.
fn tree(package: &str) -> String {
    let output = std::process::Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn normal_dependencies(package: &str) -> Vec<String> {
    tree(package)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The workspace's own crates `package` depends on, directly or not (a
/// registry crate may share a service's name: `inventory` is one).
fn workspace_dependencies(package: &str) -> Vec<String> {
    let workspace = format!("({}", root().display());
    tree(package)
        .lines()
        .filter(|l| l.contains(&workspace))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn the_serving_runtime_links_no_database_driver() {
    let crates = normal_dependencies("kit");
    assert!(
        crates.iter().any(|c| c == "tonic"),
        "the tree was read: {crates:?}"
    );
    for forbidden in DATABASE {
        assert!(
            !crates.iter().any(|c| c == forbidden),
            "kit depends on {forbidden}"
        );
    }
}

#[test]
fn the_value_types_stand_alone() {
    let crates = normal_dependencies("kit-values");
    for forbidden in ["kit", "kit-store", "sea-orm", "sqlx", "opentelemetry"] {
        assert!(
            !crates.iter().any(|c| c == forbidden),
            "kit-values depends on {forbidden}"
        );
    }
}

const DATABASE: &[&str] = &[
    "sea-orm",
    "sea-orm-migration",
    "sqlx",
    "sqlx-core",
    "sqlx-sqlite",
    "sqlx-postgres",
    "kit-store",
];
const DOMAIN: &[&str] = &[
    "catalog",
    "inventory",
    "payments",
    "shipping",
    "orders",
    "apikeys",
];

#[test]
fn the_gateway_links_no_database_driver() {
    let crates = normal_dependencies("gateway");
    assert!(crates.iter().any(|c| c == "kit"), "the tree was read: {crates:?}");
    for forbidden in DATABASE {
        assert!(
            !crates.iter().any(|c| c == forbidden),
            "the gateway depends on {forbidden}"
        );
    }
}

#[test]
fn the_workflow_engine_knows_no_domain_service() {
    let crates = workspace_dependencies("workflow");
    assert!(crates.iter().any(|c| c == "kit"), "the tree was read: {crates:?}");
    for forbidden in DOMAIN.iter().chain(&["gateway"]) {
        assert!(
            !crates.iter().any(|c| c == forbidden),
            "workflow depends on {forbidden}"
        );
    }
}

/// Layers, bottom up: the value types, the runtime and the store, the
/// services, the command. A crate depends only on layers below its own (and
/// a service on the services it calls, whose client stubs it uses), never
/// on the gateway or the command.
#[test]
fn crates_depend_only_downward() {
    let kits = ["kit-values", "kit", "kit-store", "kit-testing"];
    for kit in &kits[..3] {
        let crates = workspace_dependencies(kit);
        for above in DOMAIN
            .iter()
            .chain(&["workflow", "gateway", "tracesink", "ferrymesh"])
        {
            assert!(!crates.iter().any(|c| c == above), "{kit} depends on {above}");
        }
    }
    for service in DOMAIN.iter().chain(&["workflow", "gateway", "tracesink"]) {
        let crates = workspace_dependencies(service);
        for above in ["gateway", "ferrymesh"] {
            if *service != above {
                assert!(!crates.iter().any(|c| c == above), "{service} depends on {above}");
            }
        }
    }
    // The one service that calls others through their crates' stubs.
    let orders = workspace_dependencies("orders");
    for not_called in ["inventory", "shipping", "apikeys", "workflow"] {
        assert!(
            !orders.iter().any(|c| c == not_called),
            "orders depends on {not_called}"
        );
    }
}

/// The engine's code names no domain service: the saga is orders', which
/// registers it. Only the call table names workloads, as a deployment's
/// policy (who may call workflow under mutual TLS).
#[test]
fn the_workflow_code_names_no_domain_service() {
    let dir = root().join("services/workflow/src");
    let mut files = vec![dir.clone()];
    let mut found = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut in_call_table = false;
        for (n, line) in text.lines().enumerate() {
            if line.starts_with("pub const CALLERS") {
                in_call_table = true;
            }
            let lower = line.to_lowercase();
            if !in_call_table
                && ["orders", "inventory", "payments", "shipping", "place-order"]
                    .iter()
                    .any(|w| lower.contains(w))
            {
                found.push(format!("{}:{}: {line}", path.display(), n + 1));
            }
            if in_call_table && line == "];" {
                in_call_table = false;
            }
        }
    }
    assert!(
        found.is_empty(),
        "workflow names a domain service:\n{}",
        found.join("\n")
    );
}
