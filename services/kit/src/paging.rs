//! Page tokens and sizes for List RPCs, following AIP-158.
//!
//! A token is opaque to callers: the key of the last item returned, hex
//! encoded behind a version tag, so a token can be checked on the way in.

use crate::error::Violations;

/// The page size used when a request says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// The largest page size a request may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;

const TAG: &str = "p1.";

/// A validated page request: how many, and after which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items to return.
    pub size: u32,
    /// The key of the last item of the previous page.
    pub after: Option<String>,
}

impl PageRequest {
    /// Validates `page_size` and `page_token`, recording what is wrong in `violations`.
    pub fn parse(page_size: i32, page_token: &str, violations: &mut Violations) -> Option<Self> {
        let size = match page_size {
            0 => Some(DEFAULT_PAGE_SIZE),
            n if n < 0 || n as u32 > MAX_PAGE_SIZE => {
                violations.add(
                    "page_size",
                    format!("must be between 0 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE}), got {n}"),
                );
                None
            }
            n => Some(n as u32),
        };
        let after = if page_token.is_empty() {
            Some(None)
        } else {
            match decode(page_token) {
                Some(key) => Some(Some(key)),
                None => {
                    violations.add(
                        "page_token",
                        "is not a token this service issued: pass back next_page_token unchanged",
                    );
                    None
                }
            }
        };
        Some(PageRequest {
            size: size?,
            after: after?,
        })
    }
}

/// The token that resumes after `key`.
pub fn encode(key: &str) -> String {
    let mut token = String::with_capacity(TAG.len() + key.len() * 2);
    token.push_str(TAG);
    for byte in key.as_bytes() {
        token.push_str(&format!("{byte:02x}"));
    }
    token
}

fn decode(token: &str) -> Option<String> {
    let hex = token.strip_prefix(TAG)?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let mut v = Violations::new();
        let page = PageRequest::parse(5, &encode("vintage-typewriter"), &mut v);
        assert!(v.is_empty());
        assert_eq!(
            page,
            Some(PageRequest {
                size: 5,
                after: Some("vintage-typewriter".into())
            })
        );
    }

    #[test]
    fn bad_sizes_and_tokens_are_violations() {
        let mut v = Violations::new();
        assert_eq!(PageRequest::parse(-1, "garbage", &mut v), None);
        let fields: Vec<&str> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["page_size", "page_token"]);
        let mut v = Violations::new();
        assert_eq!(
            PageRequest::parse(0, "", &mut v),
            Some(PageRequest {
                size: 20,
                after: None
            })
        );
        assert_eq!(PageRequest::parse(101, "", &mut v), None);
    }
}
