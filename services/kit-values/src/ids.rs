//! Ids a caller sends: SKUs (the catalog's product ids) and the ids that make a
//! call idempotent.

use crate::Violations;

/// Most characters of a caller's value a message quotes back.
pub const MAX_QUOTED_CHARS: usize = 64;

/// `text` quoted for a refusal, at most [`MAX_QUOTED_CHARS`] of it: the
/// message travels in a header (`grpc-message`, and the details beside it),
/// so echoing a huge value whole would turn a clear refusal into a broken
/// stream.
pub fn quoted(text: &str) -> String {
    let count = text.chars().count();
    if count <= MAX_QUOTED_CHARS {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    format!("{head:?}… ({} more characters)", count - MAX_QUOTED_CHARS)
}

/// Checks a SKU (also the catalog's product id): 3 to 64 lowercase letters,
/// digits and hyphens, starting and ending with a letter or digit.
pub fn check_sku(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty: pass a product id such as \"vintage-typewriter\"".into());
    }
    let well_formed = (3..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if !well_formed {
        return Err(format!(
            "must be 3 to 64 lowercase letters, digits or hyphens, starting and ending with a letter or digit; got {}",
            quoted(text)
        ));
    }
    Ok(())
}

/// Checks a caller-chosen id that makes a call idempotent (reservation_id,
/// payment_id, ...): 1 to 128 letters, digits, '.', '_', ':' or '-'.
pub fn check_request_id(field: &str, text: &str, violations: &mut Violations) -> Option<String> {
    if text.is_empty() {
        violations.add(
            field,
            "must not be empty: choose an id and reuse it when retrying",
        );
        return None;
    }
    if text.len() > 128
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        violations.add(
            field,
            format!(
                "must be 1 to 128 letters, digits, '.', '_', ':' or '-'; got {}",
                quoted(text)
            ),
        );
        return None;
    }
    Some(text.to_string())
}

/// What every API key's secret starts with, so secret scanners can find leaked ones.
pub const API_KEY_PREFIX: &str = "fmk_";
/// Random characters after the prefix: 40 alphanumerics, about 238 bits.
pub const API_KEY_RANDOM_CHARS: usize = 40;

/// Whether `text` has the shape of an API key's secret: checked before any
/// lookup, so junk costs no database read and no network call.
pub fn looks_like_api_key(text: &str) -> bool {
    text.len() == API_KEY_PREFIX.len() + API_KEY_RANDOM_CHARS
        && text.starts_with(API_KEY_PREFIX)
        && text[API_KEY_PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn long_values_are_quoted_short() {
        assert_eq!(quoted("mug"), "\"mug\"");
        let long = "é".repeat(100);
        assert_eq!(
            quoted(&long),
            format!("{:?}… (36 more characters)", "é".repeat(64))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// An API key is accepted exactly when it is the prefix and 40
        /// alphanumerics; nothing, multi-byte text included, panics it.
        #[test]
        fn api_keys_have_one_shape(text in "fmk_[A-Za-z0-9]{38,42}|fmk_\\PC{40}|\\PC{0,60}") {
            let shaped = text.len() == 44
                && text.starts_with("fmk_")
                && text.bytes().skip(4).all(|b| b.is_ascii_alphanumeric());
            prop_assert_eq!(looks_like_api_key(&text), shaped);
        }

        /// Ids are accepted exactly when they are 1 to 128 of the allowed characters.
        #[test]
        fn request_ids_are_bounded(text in "[A-Za-z0-9._:-]{0,140}|\\PC{0,20}") {
            let mut v = Violations::new();
            let allowed = !text.is_empty()
                && text.len() <= 128
                && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
            let parsed = check_request_id("id", &text, &mut v);
            prop_assert_eq!(parsed.is_some(), allowed);
            prop_assert_eq!(v.is_empty(), allowed);
        }

        #[test]
        fn skus_never_panic_and_bound_their_length(text in "[a-z0-9-]{0,70}|\\PC{0,20}") {
            if check_sku(&text).is_ok() {
                prop_assert!((3..=64).contains(&text.len()));
                prop_assert!(!text.starts_with('-') && !text.ends_with('-'));
            }
        }
    }
}
