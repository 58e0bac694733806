//! The code's shape: a file does one job and a function fits on a screen
//! or two. No Rust source file in `services/` or `cli/` passes 600 lines and
//! no function 120 (generated code and data are not written by hand, and
//! are not counted).

use std::path::{Path, PathBuf};

use crate::support::root;

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 120;

fn rust_sources() -> Vec<PathBuf> {
    let mut pending = vec![root().join("services"), root().join("cli")];
    let mut found = Vec::new();
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name == "target" || name == "node_modules" || name == "generated" {
                continue;
            }
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// `text` with comments, string and character literals blanked (newlines
/// kept), so that braces can be counted.
fn code_only(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 1;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 1;
                }
                j += 1;
            }
            blank(&mut out, i, j);
            i = j;
        } else if rest.starts_with(b"r\"") || rest.starts_with(b"r#") || rest.starts_with(b"br") {
            let start = if rest[0] == b'b' { i + 2 } else { i + 1 };
            let hashes = b[start..].iter().take_while(|&&c| c == b'#').count();
            if b.get(start + hashes) != Some(&b'"') || (i > 0 && is_ident(b[i - 1])) {
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = start + hashes + 1;
            let end = b[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| body + p + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if rest[0] == b'\'' {
            // A character literal ('x', '\n', '\u{7b}'), not a lifetime.
            let end = if rest.get(1) == Some(&b'\\') {
                rest[2..].iter().position(|&c| c == b'\'').map(|p| i + 2 + p)
            } else {
                let width = std::str::from_utf8(&rest[1..rest.len().min(5)])
                    .ok()
                    .or_else(|| std::str::from_utf8(&rest[1..rest.len().min(4)]).ok())
                    .or_else(|| std::str::from_utf8(&rest[1..rest.len().min(3)]).ok())
                    .or_else(|| std::str::from_utf8(&rest[1..rest.len().min(2)]).ok())
                    .and_then(|s| s.chars().next())
                    .map_or(1, char::len_utf8);
                (rest.get(1 + width) == Some(&b'\'')).then_some(i + 1 + width)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end + 1);
                    i = end + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Each function in `path` longer than the limit: `(name, first line, lines)`.
fn long_functions(path: &Path) -> Vec<(String, usize, usize)> {
    let text = std::fs::read_to_string(path).unwrap();
    let code = code_only(&text);
    let code = String::from_utf8_lossy(&code);
    let lines: Vec<&str> = code.lines().collect();
    let mut long = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(at) = find_fn(line) else { continue };
        let name: String = line[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The body: from the first `{` after the signature to its match; a
        // `;` first means a declaration without a body (in a trait).
        let mut depth = 0usize;
        let mut opened = false;
        'scan: for (m, l) in lines.iter().enumerate().skip(n) {
            let from = if m == n { at } else { 0 };
            for c in l[from..].chars() {
                match c {
                    ';' if !opened => break 'scan,
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            let length = m - n + 1;
                            if length > MAX_FN_LINES {
                                long.push((name.clone(), n + 1, length));
                            }
                            break 'scan;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    long
}

/// Where `fn ` starts as a keyword in `line`, if it does.
fn find_fn(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    line.match_indices("fn ").map(|(i, _)| i).find(|&i| {
        (i == 0 || !is_ident(b[i - 1]))
            && b.get(i + 3)
                .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_')
    })
}

#[test]
fn no_source_file_passes_600_lines() {
    let long: Vec<String> = rust_sources()
        .iter()
        .filter_map(|path| {
            let lines = std::fs::read_to_string(path).unwrap().lines().count();
            (lines > MAX_FILE_LINES).then(|| format!("{} ({lines} lines)", path.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these by concern (at most {MAX_FILE_LINES} lines a file):\n{}",
        long.join("\n")
    );
}

#[test]
fn no_function_passes_120_lines() {
    let long: Vec<String> = rust_sources()
        .iter()
        .flat_map(|path| {
            long_functions(path).into_iter().map(move |(name, line, length)| {
                format!("{}:{line}: fn {name} ({length} lines)", path.display())
            })
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these (at most {MAX_FN_LINES} lines a function):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_shape_checker_sees_braces_in_code_only() {
    let text = "fn a() {\n let s = \"}}}\"; let c = '}'; let r = r#\"{\"#; // }\n /* } */ x::<'a>()\n}\nfn b() { }\n";
    let code = String::from_utf8(code_only(text)).unwrap();
    assert_eq!(code.matches('{').count(), 2, "{code}");
    assert_eq!(code.matches('}').count(), 2, "{code}");
    assert_eq!(code.lines().count(), text.lines().count());
}
