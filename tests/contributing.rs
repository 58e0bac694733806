//! CONTRIBUTING.md stays true to the code: every file it names exists,
//! every "`NAME` in `FILE`" is in that file, and its test command is the
//! README's (the one CI runs).

use crate::support::root;

fn page() -> String {
    std::fs::read_to_string(root().join("CONTRIBUTING.md")).unwrap()
}

/// The spans between backticks, in order.
fn code_spans(text: &str) -> Vec<&str> {
    text.split("```")
        .step_by(2)
        .flat_map(|prose| prose.split('`').skip(1).step_by(2))
        .collect()
}

/// Whether a code span names a file or folder of the repository (by its
/// path from the root; `build.rs` alone is a kind of file, not one file).
fn is_path(span: &str) -> bool {
    let file = [".rs", ".md", ".toml", ".yaml", ".sh", ".binpb"]
        .iter()
        .any(|ext| span.ends_with(ext));
    !span.contains(' ')
        && !span.contains('<')
        && (span.contains('/') && (file || span.ends_with('/'))
            || file && !span.starts_with(char::is_lowercase))
}

#[test]
fn every_file_contributing_names_exists() {
    let page = page();
    let missing: Vec<&str> = code_spans(&page)
        .into_iter()
        .filter(|s| is_path(s) && !root().join(s).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "CONTRIBUTING.md names what is not there: {missing:?}"
    );
}

#[test]
fn every_name_contributing_places_in_a_file_is_there() {
    // "`NAME` in `FILE`", with the page's line breaks and indents as one space.
    let page = page().split_whitespace().collect::<Vec<_>>().join(" ");
    let mut checked = 0;
    for (at, _) in page.match_indices("` in `") {
        let name = page[..at].rsplit('`').next().unwrap();
        let file = page[at + 6..].split('`').next().unwrap();
        if !is_path(file) {
            continue;
        }
        let text = std::fs::read_to_string(root().join(file)).unwrap_or_default();
        assert!(
            text.contains(name),
            "CONTRIBUTING.md says `{name}` is in {file}, and it is not"
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} names checked");
}

#[test]
fn contributing_gives_the_readme_test_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let command = "bash build-support/test.sh";
    assert!(readme.contains(command));
    assert!(page().contains(&format!("```sh\n{command}\n```")));
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.contains("build-support/test.sh"));
}
