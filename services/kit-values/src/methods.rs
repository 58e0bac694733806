//! Method patterns, as usage plans and the gateway write them:
//! `pkg.Service/Method`, `pkg.Service/*`, `pkg.*` (a package and every
//! package below it) or `*`.

use std::fmt;

/// A checked method pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodPattern {
    text: String,
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    Any,
    /// `pkg.*`: the text before `*`, with its dot.
    Package(String),
    /// `pkg.Service/*`: `pkg.Service/`.
    Service(String),
    /// `pkg.Service/Method`.
    Exact,
}

impl MethodPattern {
    /// Parses a pattern; the error says what a pattern looks like.
    pub fn parse(text: &str) -> Result<MethodPattern, String> {
        let bad = || {
            format!(
                "{} is not a method pattern: write pkg.Service/Method, pkg.Service/*, pkg.* or *",
                crate::quoted(text)
            )
        };
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|part| {
                    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        };
        let trimmed = text.trim_start_matches('/');
        if text.len() > 256 {
            return Err(bad());
        }
        let kind = if trimmed == "*" {
            PatternKind::Any
        } else if let Some((service, method)) = trimmed.split_once('/') {
            if !name_ok(service) || !service.contains('.') {
                return Err(bad());
            }
            if method == "*" {
                PatternKind::Service(format!("{service}/"))
            } else if name_ok(method) && !method.contains('.') {
                PatternKind::Exact
            } else {
                return Err(bad());
            }
        } else if let Some(package) = trimmed.strip_suffix(".*") {
            if !name_ok(package) {
                return Err(bad());
            }
            PatternKind::Package(format!("{package}."))
        } else {
            return Err(bad());
        };
        Ok(MethodPattern {
            text: trimmed.to_string(),
            kind,
        })
    }

    /// Whether the pattern covers `method`, given as `/pkg.Service/Method` or without the slash.
    pub fn matches(&self, method: &str) -> bool {
        let method = method.strip_prefix('/').unwrap_or(method);
        match &self.kind {
            PatternKind::Any => true,
            PatternKind::Package(prefix) | PatternKind::Service(prefix) => {
                method.starts_with(prefix.as_str())
            }
            PatternKind::Exact => method == self.text,
        }
    }

    /// The pattern as written, without a leading slash.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for MethodPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::MethodPattern;

    #[test]
    fn patterns_match_methods_packages_and_services() {
        let get = "/ferrymesh.catalog.v1.CatalogService/GetProduct";
        for (pattern, expected) in [
            ("*", true),
            ("ferrymesh.catalog.v1.*", true),
            ("ferrymesh.*", true),
            ("ferrymesh.catalog.v1.CatalogService/*", true),
            ("ferrymesh.catalog.v1.CatalogService/GetProduct", true),
            ("/ferrymesh.catalog.v1.CatalogService/GetProduct", true),
            ("ferrymesh.catalog.v1.CatalogService/ListProducts", false),
            ("ferrymesh.orders.v1.*", false),
            ("ferrymesh.cat.*", false),
        ] {
            let p = MethodPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(get), expected, "{pattern}");
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_the_forms_that_work() {
        for bad in [
            "",
            "catalog",
            "ferrymesh.catalog.v1.",
            "a/b/c",
            "pkg.S/Get*",
            "pkg.**",
            "x y.*",
        ] {
            let error = MethodPattern::parse(bad).unwrap_err();
            assert!(error.contains("pkg.Service/Method"), "{bad}: {error}");
        }
    }
}
