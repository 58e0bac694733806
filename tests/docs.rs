//! The README and the book under docs/ stay readable and whole: the README
//! is short, every page of docs/src is in the book's summary, and every
//! link between them (a file, or a heading in one) leads somewhere.
//! `mdbook build docs` in the test command builds the book itself; the
//! commands the pages show are run by mesh_up and mesh_security.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::support::root;

/// The README, then the book's pages in the summary's order: what a reader
/// reads, and the order the pasted-command tests run the commands in.
pub(crate) fn readme_and_book() -> String {
    let mut text = std::fs::read_to_string(root().join("README.md")).unwrap();
    for page in book_pages() {
        text.push('\n');
        text.push_str(&std::fs::read_to_string(root().join("docs/src").join(page)).unwrap());
    }
    text
}

/// The pages SUMMARY.md lists, in its order.
fn book_pages() -> Vec<String> {
    let summary = std::fs::read_to_string(root().join("docs/src/SUMMARY.md")).unwrap();
    summary
        .split("](")
        .skip(1)
        .map(|rest| rest.split(')').next().unwrap().to_string())
        .collect()
}

/// A heading's anchor as GitHub and mdBook make it.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> HashSet<String> {
    let mut fenced = false;
    let mut out = HashSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every `](target)` of a markdown text outside code.
fn links(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for rest in line.split("](").skip(1) {
            if let Some(target) = rest.split(')').next() {
                out.push(target.to_string());
            }
        }
    }
    out
}

fn broken_links(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let dir = file.parent().unwrap();
    let mut broken = Vec::new();
    for target in links(&text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
        let linked: PathBuf = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        if !linked.exists() {
            broken.push(format!("{target}: no such file"));
            continue;
        }
        if !anchor.is_empty() {
            let heads = anchors(&std::fs::read_to_string(&linked).unwrap_or_default());
            if !heads.contains(anchor) {
                broken.push(format!("{target}: no such heading"));
            }
        }
    }
    broken
}

#[test]
fn the_readme_is_short_and_the_book_whole() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "the README has {lines} lines; the rest belongs in docs/"
    );
    // Every page is in the summary (mdbook would not build one that is
    // listed and missing; one that is not listed would never be read).
    let listed: HashSet<String> = book_pages().into_iter().collect();
    for entry in std::fs::read_dir(root().join("docs/src")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".md") && name != "SUMMARY.md" {
            assert!(listed.contains(&name), "docs/src/{name} is not in SUMMARY.md");
        }
    }
    let mut files = vec![root().join("README.md")];
    files.extend(listed.iter().map(|p| root().join("docs/src").join(p)));
    let broken: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let shown = f.strip_prefix(root()).unwrap().display().to_string();
            broken_links(f).into_iter().map(move |b| format!("{shown}: {b}"))
        })
        .collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_finds_a_broken_link() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("a.md");
    std::fs::write(
        &page,
        "# A page\n\n[ok](#a-page) [gone](b.md) [nowhere](#no-heading)\n```\n[code](ignored.md)\n```\n",
    )
    .unwrap();
    let broken = broken_links(&page);
    assert_eq!(broken, vec!["b.md: no such file", "#no-heading: no such heading"]);
}
