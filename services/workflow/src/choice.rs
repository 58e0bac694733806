//! Choice rules: the String, Numeric, Boolean and Timestamp comparisons and
//! their `...Path` forms, `StringMatches`, the type tests (`IsPresent`,
//! `IsNull`, `IsNumeric`, `IsString`, `IsBoolean`, `IsTimestamp`), and
//! `And`, `Or`, `Not`.

use std::cmp::Ordering;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::path::Path;

/// A comparison's kind of operand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Family {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Equals,
    LessThan,
    GreaterThan,
    LessThanEquals,
    GreaterThanEquals,
    Matches,
}

/// What a variable is compared with.
#[derive(Debug, Clone)]
pub enum Operand {
    Value(Value),
    Path(Path),
}

/// The type tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Test {
    IsPresent,
    IsNull,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

/// A Choice rule.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Every rule holds.
    And(Vec<Rule>),
    /// Some rule holds.
    Or(Vec<Rule>),
    /// The rule does not hold.
    Not(Box<Rule>),
    /// A comparison of the variable.
    Compare {
        variable: Path,
        family: Family,
        op: Op,
        operand: Operand,
    },
    /// A type test of the variable, expecting `expected`.
    Test {
        variable: Path,
        test: Test,
        expected: bool,
    },
}

const FAMILIES: &[(&str, Family)] = &[
    ("String", Family::String),
    ("Numeric", Family::Numeric),
    ("Boolean", Family::Boolean),
    ("Timestamp", Family::Timestamp),
];

const OPS: &[(&str, Op)] = &[
    ("LessThanEquals", Op::LessThanEquals),
    ("GreaterThanEquals", Op::GreaterThanEquals),
    ("LessThan", Op::LessThan),
    ("GreaterThan", Op::GreaterThan),
    ("Equals", Op::Equals),
    ("Matches", Op::Matches),
];

const TESTS: &[(&str, Test)] = &[
    ("IsPresent", Test::IsPresent),
    ("IsNull", Test::IsNull),
    ("IsNumeric", Test::IsNumeric),
    ("IsString", Test::IsString),
    ("IsBoolean", Test::IsBoolean),
    ("IsTimestamp", Test::IsTimestamp),
];

impl Rule {
    /// Parses a rule object; `top` rules carry `Next`, which is skipped here.
    pub fn parse(value: &Value, top: bool) -> Result<Rule, String> {
        let Value::Object(map) = value else {
            return Err(format!("a choice rule must be an object, not {value}"));
        };
        for (combinator, _) in [("And", ()), ("Or", ())] {
            if let Some(list) = map.get(combinator) {
                let Value::Array(items) = list else {
                    return Err(format!("{combinator} must be an array of rules"));
                };
                if items.is_empty() {
                    return Err(format!("{combinator} must hold at least one rule"));
                }
                let rules = items
                    .iter()
                    .map(|r| Rule::parse(r, false))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(if combinator == "And" {
                    Rule::And(rules)
                } else {
                    Rule::Or(rules)
                });
            }
        }
        if let Some(inner) = map.get("Not") {
            return Ok(Rule::Not(Box::new(Rule::parse(inner, false)?)));
        }
        let variable = match map.get("Variable") {
            Some(Value::String(text)) => Path::parse(text)?,
            Some(other) => return Err(format!("Variable must be a path string, not {other}")),
            None => return Err("a choice rule needs Variable with a comparison, or And, Or or Not".into()),
        };
        let mut found = None;
        for (key, operand) in map {
            if key == "Variable" || (top && key == "Next") || key == "Comment" {
                continue;
            }
            if found.is_some() {
                return Err(format!(
                    "a choice rule takes one comparison; {key} is one too many"
                ));
            }
            found = Some(parse_comparison(&variable, key, operand)?);
        }
        found.ok_or_else(|| {
            format!(
                "the rule on {} has no comparison, e.g. StringEquals",
                variable.text()
            )
        })
    }

    /// Whether the rule holds for `input`.
    pub fn holds(&self, input: &Value, context: &Value) -> bool {
        match self {
            Rule::And(rules) => rules.iter().all(|r| r.holds(input, context)),
            Rule::Or(rules) => rules.iter().any(|r| r.holds(input, context)),
            Rule::Not(rule) => !rule.holds(input, context),
            Rule::Test {
                variable,
                test,
                expected,
            } => {
                let value = variable.select(input, context);
                let result = match (test, &value) {
                    (Test::IsPresent, v) => v.is_some(),
                    (_, None) => false,
                    (Test::IsNull, Some(v)) => v.is_null(),
                    (Test::IsNumeric, Some(v)) => v.is_number(),
                    (Test::IsString, Some(v)) => v.is_string(),
                    (Test::IsBoolean, Some(v)) => v.is_boolean(),
                    (Test::IsTimestamp, Some(v)) => v.as_str().and_then(timestamp).is_some(),
                };
                result == *expected
            }
            Rule::Compare {
                variable,
                family,
                op,
                operand,
            } => {
                let Some(left) = variable.select(input, context) else {
                    return false;
                };
                let right = match operand {
                    Operand::Value(v) => v.clone(),
                    Operand::Path(p) => match p.select(input, context) {
                        Some(v) => v,
                        None => return false,
                    },
                };
                compare(*family, *op, &left, &right)
            }
        }
    }
}

fn parse_comparison(variable: &Path, key: &str, operand: &Value) -> Result<Rule, String> {
    if let Some(&(_, test)) = TESTS.iter().find(|(name, _)| *name == key) {
        let Value::Bool(expected) = operand else {
            return Err(format!("{key} takes true or false, not {operand}"));
        };
        return Ok(Rule::Test {
            variable: variable.clone(),
            test,
            expected: *expected,
        });
    }
    let (name, by_path) = match key.strip_suffix("Path") {
        Some(name) => (name, true),
        None => (key, false),
    };
    let parsed = FAMILIES.iter().find_map(|(prefix, family)| {
        let rest = name.strip_prefix(prefix)?;
        OPS.iter()
            .find(|(op, _)| *op == rest)
            .map(|(_, op)| (*family, *op))
    });
    let Some((family, op)) =
        parsed.filter(|(f, op)| *op != Op::Matches || (*f == Family::String && !by_path))
    else {
        return Err(format!(
            "{key} is not a comparison; use e.g. StringEquals, NumericGreaterThanPath, BooleanEquals, TimestampLessThan, StringMatches, IsPresent"
        ));
    };
    let operand = if by_path {
        match operand {
            Value::String(text) => Operand::Path(Path::parse(text)?),
            other => return Err(format!("{key} takes a path string, not {other}")),
        }
    } else {
        let fits = match family {
            Family::String => operand.is_string(),
            Family::Numeric => operand.is_number(),
            Family::Boolean => operand.is_boolean(),
            Family::Timestamp => operand.as_str().and_then(timestamp).is_some(),
        };
        if !fits {
            let wanted = match family {
                Family::String => "string",
                Family::Numeric => "number",
                Family::Boolean => "boolean",
                Family::Timestamp => "RFC 3339 timestamp",
            };
            return Err(format!("{key} needs a {wanted} operand, not {operand}"));
        }
        Operand::Value(operand.clone())
    };
    Ok(Rule::Compare {
        variable: variable.clone(),
        family,
        op,
        operand,
    })
}

fn timestamp(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

fn compare(family: Family, op: Op, left: &Value, right: &Value) -> bool {
    let ordering = match family {
        Family::String => match (left.as_str(), right.as_str()) {
            (Some(l), Some(r)) if op == Op::Matches => return wildcard(l, r),
            (Some(l), Some(r)) => l.cmp(r),
            _ => return false,
        },
        Family::Numeric => match (left.as_f64(), right.as_f64()) {
            (Some(l), Some(r)) => match l.partial_cmp(&r) {
                Some(o) => o,
                None => return false,
            },
            _ => return false,
        },
        Family::Boolean => match (left.as_bool(), right.as_bool()) {
            (Some(l), Some(r)) if op == Op::Equals => return l == r,
            _ => return false,
        },
        Family::Timestamp => match (
            left.as_str().and_then(timestamp),
            right.as_str().and_then(timestamp),
        ) {
            (Some(l), Some(r)) => l.cmp(&r),
            _ => return false,
        },
    };
    match op {
        Op::Equals => ordering == Ordering::Equal,
        Op::LessThan => ordering == Ordering::Less,
        Op::GreaterThan => ordering == Ordering::Greater,
        Op::LessThanEquals => ordering != Ordering::Greater,
        Op::GreaterThanEquals => ordering != Ordering::Less,
        Op::Matches => false,
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` a star.
fn wildcard(text: &str, pattern: &str) -> bool {
    let mut parts: Vec<String> = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next()
                    && let Some(last) = parts.last_mut()
                {
                    last.push(next);
                }
            }
            '*' => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    let (first, rest) = parts
        .split_first()
        .map(|(f, r)| (f.as_str(), r))
        .unwrap_or(("", &[]));
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part.as_str()) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(rule: Value, input: Value) -> Result<bool, String> {
        Ok(Rule::parse(&rule, true)?.holds(&input, &json!({})))
    }

    #[test]
    fn comparisons_hold_as_step_functions_says() -> Result<(), String> {
        let input = json!({"n": 5, "s": "b", "t": "2026-01-01T00:00:00Z", "ok": true, "nul": null, "m": 5});
        assert!(holds(
            json!({"Variable": "$.n", "NumericGreaterThan": 4, "Next": "x"}),
            input.clone()
        )?);
        assert!(holds(
            json!({"Variable": "$.n", "NumericEqualsPath": "$.m"}),
            input.clone()
        )?);
        assert!(!holds(
            json!({"Variable": "$.n", "NumericLessThan": 5}),
            input.clone()
        )?);
        assert!(holds(
            json!({"Variable": "$.n", "NumericLessThanEquals": 5}),
            input.clone()
        )?);
        assert!(holds(
            json!({"Variable": "$.s", "StringGreaterThanEquals": "a"}),
            input.clone()
        )?);
        assert!(holds(
            json!({"Variable": "$.ok", "BooleanEquals": true}),
            input.clone()
        )?);
        assert!(holds(
            json!({"Variable": "$.t", "TimestampLessThan": "2026-06-01T00:00:00+02:00"}),
            input.clone()
        )?);
        assert!(holds(
            json!({"Variable": "$.nul", "IsNull": true}),
            input.clone()
        )?);
        assert!(holds(
            json!({"Variable": "$.missing", "IsPresent": false}),
            input.clone()
        )?);
        assert!(holds(
            json!({"Variable": "$.t", "IsTimestamp": true}),
            input.clone()
        )?);
        assert!(!holds(
            json!({"Variable": "$.missing", "StringEquals": "b"}),
            input.clone()
        )?);
        assert!(holds(
            json!({"And": [{"Variable": "$.n", "IsNumeric": true}, {"Not": {"Variable": "$.s", "StringEquals": "c"}}]}),
            input.clone()
        )?);
        assert!(holds(
            json!({"Or": [{"Variable": "$.n", "IsString": true}, {"Variable": "$.ok", "IsBoolean": true}]}),
            input
        )?);
        Ok(())
    }

    #[test]
    fn string_matches_uses_stars() {
        assert!(wildcard("log-2026.txt", "log-*.txt"));
        assert!(wildcard("anything", "*"));
        assert!(wildcard("a*b", "a\\*b"));
        assert!(!wildcard("axb", "a\\*b"));
        assert!(!wildcard("log.txt", "log-*"));
        assert!(wildcard("aXbYc", "a*b*c"));
        assert!(!wildcard("ab", "a*b*c"));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let err = |v: Value| Rule::parse(&v, true).err().unwrap_or_default();
        assert!(err(json!({"Variable": "$.n", "NumericEquals": "5"})).contains("needs a number operand"));
        assert!(err(json!({"Variable": "$.n", "StringIs": "5"})).contains("not a comparison"));
        assert!(err(json!({"Variable": "$.n"})).contains("has no comparison"));
        assert!(err(json!({"Variable": "n", "IsNull": true})).contains("must start with `$`"));
        assert!(err(json!({"And": []})).contains("at least one"));
        assert!(err(json!({"Variable": "$.n", "IsNull": true, "IsString": true})).contains("one too many"));
    }
}
