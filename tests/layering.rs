//! The kit is split by weight: the serving runtime links no database driver,
//! so the gateway can stand on it without compiling one.

use crate::support::root;

fn normal_dependencies(package: &str) -> Vec<String> {
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
    String::from_utf8_lossy(&output.stdout)
        .lines()
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
    for forbidden in [
        "sea-orm",
        "sea-orm-migration",
        "sqlx",
        "sqlx-core",
        "sqlx-sqlite",
        "sqlx-postgres",
        "kit-store",
    ] {
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
