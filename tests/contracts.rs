//! The contract checks the test command runs: a breaking edit to a released
//! contract fails them, an additive one passes.

use std::path::Path;
use std::process::Command;

use crate::support::{copy_tree, root};

/// A copy of the contracts and their checks, to edit without touching the repo.
fn workspace_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = root();
    copy_tree(&root.join("proto"), &dir.path().join("proto"));
    std::fs::copy(root.join("buf.yaml"), dir.path().join("buf.yaml")).unwrap();
    std::fs::create_dir_all(dir.path().join("build-support")).unwrap();
    std::fs::copy(
        root.join("build-support/check-contracts.sh"),
        dir.path().join("build-support/check-contracts.sh"),
    )
    .unwrap();
    std::os::unix::fs::symlink(root.join(".tools"), dir.path().join(".tools")).unwrap();
    dir
}

fn check(dir: &Path) -> (bool, String) {
    let output = Command::new("bash")
        .arg(dir.join("build-support/check-contracts.sh"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join("proto").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} in {file}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

const PRODUCT_WEIGHT: &str = "  // The shipping weight of one unit, in grams.\n  int32 weight_grams = 7;\n";

#[test]
fn the_contracts_as_committed_pass_the_checks() {
    let copy = workspace_copy();
    let (passed, said) = check(copy.path());
    assert!(passed, "{said}");
}

#[test]
fn removing_a_field_of_a_released_message_fails_the_checks() {
    let copy = workspace_copy();
    edit(
        copy.path(),
        "ferrymesh/catalog/v1/catalog.proto",
        PRODUCT_WEIGHT,
        "",
    );
    let (passed, said) = check(copy.path());
    assert!(!passed, "{said}");
    assert!(
        said.contains(
            r#"Previously present field "7" with name "weight_grams" on message "Product" was deleted."#
        ),
        "{said}"
    );
}

#[test]
fn renumbering_a_released_field_fails_the_checks() {
    let copy = workspace_copy();
    edit(
        copy.path(),
        "ferrymesh/catalog/v1/catalog.proto",
        "int32 weight_grams = 7;",
        "int32 weight_grams = 9;",
    );
    let (passed, said) = check(copy.path());
    assert!(!passed, "{said}");
    assert!(
        said.contains(
            r#"Previously present field "7" with name "weight_grams" on message "Product" was deleted."#
        ),
        "{said}"
    );
}

#[test]
fn adding_a_field_passes_the_checks() {
    let copy = workspace_copy();
    edit(
        copy.path(),
        "ferrymesh/catalog/v1/catalog.proto",
        PRODUCT_WEIGHT,
        &format!("{PRODUCT_WEIGHT}  // The maker.\n  string brand = 8;\n"),
    );
    let (passed, said) = check(copy.path());
    assert!(passed, "{said}");
}

#[test]
fn every_shipped_package_is_guarded_too() {
    let copy = workspace_copy();
    edit(
        copy.path(),
        "ferrymesh/orders/v2/orders.proto",
        "string idempotency_key = 1;",
        "int64 idempotency_key = 1;",
    );
    edit(
        copy.path(),
        "ferrymesh/inventory/v1/inventory.proto",
        "  RESERVATION_STATUS_RELEASED = 3;\n",
        "",
    );
    let (passed, said) = check(copy.path());
    assert!(!passed, "{said}");
    assert!(
        said.contains(r#"changed type from "string" to "int64""#),
        "{said}"
    );
    assert!(
        said.contains(r#"Previously present enum value "3" on enum "ReservationStatus" was deleted"#),
        "{said}"
    );
}
