//! Page tokens and sizes for List RPCs, following AIP-158.
//!
//! A token is opaque to callers and bound to the query it was issued for:
//! it carries the filters of that query and the key of the last item
//! returned, hex encoded behind a version tag. A token passed with other
//! filters, or not issued by the service at all, is INVALID_ARGUMENT.

use kit_values::Violations;

/// The page size used when a request says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// The largest page size a request may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;
/// The longest token accepted; longer is not one this service issued.
pub const MAX_TOKEN_LEN: usize = 2048;

const TAG: &str = "p2.";

/// A validated page request: how many, and after which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items to return.
    pub size: u32,
    /// The key of the last item of the previous page.
    pub after: Option<String>,
    /// The filters the token must be bound to, as the service describes them.
    filter: String,
}

impl PageRequest {
    /// Validates `page_size` and `page_token` for a query with `filter` (the
    /// request's filters, described the same way each time; `""` for none),
    /// recording what is wrong in `violations`.
    pub fn parse(
        page_size: i32,
        page_token: &str,
        filter: &str,
        violations: &mut Violations,
    ) -> Option<Self> {
        let size = match page_size {
            0 => Some(DEFAULT_PAGE_SIZE),
            n if n < 0 || n.unsigned_abs() > MAX_PAGE_SIZE => {
                violations.add(
                    "page_size",
                    format!("must be between 0 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE}), got {n}"),
                );
                None
            }
            n => Some(n.unsigned_abs()),
        };
        let after = if page_token.is_empty() {
            Some(None)
        } else {
            match decode(page_token) {
                Some((issued_for, key)) if issued_for == filter => Some(Some(key)),
                Some(_) => {
                    violations.add(
                        "page_token",
                        "was issued for a query with other filters: repeat the filters of the call that returned it, or start without a token",
                    );
                    None
                }
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
            filter: filter.to_string(),
        })
    }

    /// The token that resumes this query after `key`.
    pub fn next_token(&self, key: &str) -> String {
        encode(&self.filter, key)
    }

    /// Cuts `rows`, read with one more than the page holds, to the page, and
    /// returns the next page's token (empty on the last page), keyed by
    /// `key` of the page's last row.
    pub fn finish<T>(&self, rows: &mut Vec<T>, key: impl Fn(&T) -> String) -> String {
        let size = self.size as usize;
        if rows.len() <= size {
            return String::new();
        }
        rows.truncate(size);
        rows.last().map(|r| self.next_token(&key(r))).unwrap_or_default()
    }
}

fn encode(filter: &str, key: &str) -> String {
    format!("{TAG}{}.{}", hex::encode(filter), hex::encode(key))
}

fn decode(token: &str) -> Option<(String, String)> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (filter, key) = token.strip_prefix(TAG)?.split_once('.')?;
    let filter = String::from_utf8(hex::decode(filter).ok()?).ok()?;
    let key = String::from_utf8(hex::decode(key).ok()?).ok()?;
    (!key.is_empty()).then_some((filter, key))
}

#[cfg(test)]
mod finish_tests {
    use super::*;

    #[test]
    fn finish_cuts_to_the_page_and_tokens_the_last_row() {
        let mut v = Violations::new();
        let page = PageRequest::parse(2, "", "f", &mut v).unwrap_or_else(|| panic!("{v:?}"));
        let mut rows = vec![1, 2, 3];
        let token = page.finish(&mut rows, |r| r.to_string());
        assert_eq!(rows, [1, 2]);
        let mut v = Violations::new();
        let next = PageRequest::parse(2, &token, "f", &mut v).unwrap_or_else(|| panic!("{v:?}"));
        assert_eq!(next.after.as_deref(), Some("2"));
        let mut last = vec![3];
        assert_eq!(
            next.finish(&mut last, |r| r.to_string()),
            "",
            "no token on the last page"
        );
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn tokens_round_trip() {
        let mut v = Violations::new();
        let first = PageRequest::parse(5, "", "kitchen", &mut v).unwrap();
        let token = first.next_token("vintage-typewriter");
        let page = PageRequest::parse(5, &token, "kitchen", &mut v).unwrap();
        assert!(v.is_empty());
        assert_eq!(
            (page.size, page.after.as_deref()),
            (5, Some("vintage-typewriter"))
        );
    }

    #[test]
    fn a_token_works_only_for_its_own_filters() {
        let mut v = Violations::new();
        let token = PageRequest::parse(5, "", "kitchen", &mut v)
            .unwrap()
            .next_token("mug");
        assert_eq!(PageRequest::parse(5, &token, "garden", &mut v), None);
        assert!(
            v.to_string()
                .contains("page_token: was issued for a query with other filters"),
            "{v}"
        );
    }

    #[test]
    fn bad_sizes_and_tokens_are_violations() {
        let mut v = Violations::new();
        assert_eq!(PageRequest::parse(-1, "garbage", "", &mut v), None);
        let fields: Vec<&str> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["page_size", "page_token"]);
        let mut v = Violations::new();
        let page = PageRequest::parse(0, "", "", &mut v).unwrap();
        assert_eq!((page.size, page.after), (20, None));
        assert_eq!(PageRequest::parse(101, "", "", &mut v), None);
        assert_eq!(PageRequest::parse(i32::MIN, "", "", &mut v), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any token text is accepted only as one the service issued; never a panic.
        #[test]
        fn any_token_is_refused_or_decodes(token in "p2\\.[0-9a-f.]{0,40}|\\PC{0,40}", size in any::<i32>()) {
            let mut v = Violations::new();
            if let Some(page) = PageRequest::parse(size, &token, "", &mut v) {
                prop_assert!((1..=MAX_PAGE_SIZE).contains(&page.size));
                if let Some(key) = page.after {
                    prop_assert_eq!(page.filter.clone(), "");
                    prop_assert_eq!(encode("", &key), token.to_ascii_lowercase());
                }
            }
        }

        #[test]
        fn issued_tokens_round_trip(filter in "\\PC{0,30}", key in "\\PC{1,30}") {
            let mut v = Violations::new();
            let token = PageRequest::parse(1, "", &filter, &mut v).unwrap().next_token(&key);
            let page = PageRequest::parse(1, &token, &filter, &mut v).unwrap();
            prop_assert_eq!(page.after, Some(key));
        }
    }
}
