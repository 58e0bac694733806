//! Paths and payload templates of the Amazon States Language: JSONPath
//! queries (serde_json_path, RFC 9535) over a state's input or the context
//! object (`$$`), the reference paths that ResultPath writes to, and the
//! Parameters / ResultSelector / ItemSelector templates whose `.$` keys are
//! evaluated.

use serde_json::{Map, Value};
use serde_json_path::JsonPath;

use crate::errors::Failure;
use crate::intrinsic::Intrinsic;

/// A JSONPath over the state's input (`$`) or the context object (`$$`).
#[derive(Debug, Clone)]
pub struct Path {
    text: String,
    query: JsonPath,
    context: bool,
    singular: bool,
}

/// Longest path, in bytes.
const MAX_PATH_BYTES: usize = 4096;
/// Deepest nesting of brackets and parentheses in a path: the JSONPath
/// parser recurses, and a definition must not be able to overflow the stack.
const MAX_PATH_NESTING: usize = 32;
/// Deepest nesting of brackets alone: a query inside a filter inside a
/// filter... The JSONPath parser (serde_json_path 0.7.2) backtracks, and
/// its time doubles with each level: found by the fuzzer, a 714-byte path
/// 32 deep took hours. At 4, the slowest 4 KiB path we found parses in
/// 5.4 ms; real paths nest two deep (`$.a[?@.b[0] == 1]`).
const MAX_QUERY_NESTING: usize = 4;

/// How deep brackets and parentheses nest in `text`, and brackets alone
/// (quotes not considered, so a quoted bracket counts too: a stricter
/// bound, never a looser one).
fn nesting(text: &str) -> (usize, usize) {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut brackets, mut deepest_brackets) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'(' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
                if b == b'[' {
                    brackets += 1;
                    deepest_brackets = deepest_brackets.max(brackets);
                }
            }
            b')' | b']' => {
                depth = depth.saturating_sub(1);
                if b == b']' {
                    brackets = brackets.saturating_sub(1);
                }
            }
            _ => {}
        }
    }
    (deepest, deepest_brackets)
}

/// Whether `text` ends inside a `\u` escape (fewer than its four hex
/// digits follow it). serde_json_path 0.7.2 reads the escape with one of
/// nom's streaming parsers, which at the end of the input answer
/// "incomplete" where the rest of the parser expects an error, and
/// `JsonPath::parse` then panics (`unreachable!`): found by the fuzzer, on
/// `$['\u`. A `u` is an escape when an odd run of backslashes precedes it.
fn ends_inside_unicode_escape(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let mut backslashes = 0usize;
    for (at, c) in chars.iter().enumerate() {
        if *c == 'u' && backslashes % 2 == 1 && chars.len() - at - 1 < 4 {
            return true;
        }
        backslashes = if *c == '\\' { backslashes + 1 } else { 0 };
    }
    false
}

/// `JsonPath::parse`, with any panic of the parser's own turned into a
/// refusal: a definition is a caller's input and must not panic a handler.
fn parse_query(text: &str) -> Result<JsonPath, String> {
    if ends_inside_unicode_escape(text) {
        return Err("it ends inside a \\u escape, which takes four hex digits".into());
    }
    match std::panic::catch_unwind(|| JsonPath::parse(text)) {
        Ok(parsed) => parsed.map_err(|e| e.to_string()),
        Err(_) => Err("the JSONPath parser could not read it".into()),
    }
}

impl Path {
    /// Parses `$...` or `$$...`.
    pub fn parse(text: &str) -> Result<Path, String> {
        if text.len() > MAX_PATH_BYTES {
            return Err(format!(
                "a path of {} bytes is longer than the {MAX_PATH_BYTES} allowed",
                text.len()
            ));
        }
        let (deepest, brackets) = nesting(text);
        if deepest > MAX_PATH_NESTING {
            return Err(format!(
                "path {:?}... nests brackets and parentheses {deepest} deep; at most {MAX_PATH_NESTING}",
                text.chars().take(40).collect::<String>()
            ));
        }
        if brackets > MAX_QUERY_NESTING {
            return Err(format!(
                "path {:?}... nests brackets {brackets} deep; at most {MAX_QUERY_NESTING}",
                text.chars().take(40).collect::<String>()
            ));
        }
        let (context, rest) = match text.strip_prefix("$$") {
            Some(rest) => (true, format!("${rest}")),
            None if text.starts_with('$') => (false, text.to_string()),
            None => {
                return Err(format!(
                    "path {text:?} must start with `$` (the input) or `$$` (the context)"
                ));
            }
        };
        let query = parse_query(&rest).map_err(|e| format!("path {text:?} is not JSONPath: {e}"))?;
        // Wildcards, slices, filters, unions and descendants select many nodes.
        let singular = !rest.contains(['*', '?', ':', ',']) && !rest.contains("..");
        Ok(Path {
            text: text.to_string(),
            query,
            context,
            singular,
        })
    }

    /// The path as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether it reads the context object.
    pub fn is_context(&self) -> bool {
        self.context
    }

    /// The value at the path: one node for a singular path, an array of the
    /// matches otherwise; `None` when a singular path matches nothing.
    pub fn select(&self, input: &Value, context: &Value) -> Option<Value> {
        let root = if self.context { context } else { input };
        let nodes = self.query.query(root);
        if self.singular {
            nodes.at_most_one().ok().flatten().cloned()
        } else {
            Some(Value::Array(nodes.all().into_iter().cloned().collect()))
        }
    }

    /// [`Path::select`], or a `States.Runtime` failure naming the path.
    pub fn require(&self, input: &Value, context: &Value, what: &str) -> Result<Value, Failure> {
        self.select(input, context).ok_or_else(|| {
            Failure::runtime(format!(
                "{what} {:?} matched nothing in {}",
                self.text,
                excerpt(if self.context { context } else { input })
            ))
        })
    }
}

/// At most 200 characters of a value, for error causes.
pub fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 200 {
        return text;
    }
    let head: String = text.chars().take(200).collect();
    format!("{head}…")
}

/// InputPath, OutputPath or ItemsPath: the whole value, a part, or nothing.
#[derive(Debug, Clone, Default)]
pub enum DataPath {
    /// `$` or absent: the whole value.
    #[default]
    Whole,
    /// `null`: an empty object.
    Discard,
    /// A path into the value.
    At(Path),
}

impl DataPath {
    /// Parses the field's JSON value (absent, null or a string).
    pub fn parse(field: Option<&Value>) -> Result<DataPath, String> {
        match field {
            None => Ok(DataPath::Whole),
            Some(Value::Null) => Ok(DataPath::Discard),
            Some(Value::String(s)) if s == "$" => Ok(DataPath::Whole),
            Some(Value::String(s)) => Path::parse(s).map(DataPath::At),
            Some(other) => Err(format!("must be a path string or null, not {other}")),
        }
    }

    /// Applies it to `value`.
    pub fn apply(&self, value: &Value, context: &Value, what: &str) -> Result<Value, Failure> {
        match self {
            DataPath::Whole => Ok(value.clone()),
            DataPath::Discard => Ok(Value::Object(Map::new())),
            DataPath::At(path) => path.require(value, context, what),
        }
    }
}

/// One step of a reference path.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// ResultPath: where a state's result goes in its input.
#[derive(Debug, Clone, Default)]
pub enum ResultPath {
    /// `$` or absent: the result replaces the input.
    #[default]
    Replace,
    /// `null`: the result is dropped, the input passes through.
    Discard,
    /// A reference path such as `$.payment` or `$.a['b'][0]`.
    At(Vec<Step>, String),
}

impl ResultPath {
    /// Parses the field's JSON value.
    pub fn parse(field: Option<&Value>) -> Result<ResultPath, String> {
        match field {
            None => Ok(ResultPath::Replace),
            Some(Value::Null) => Ok(ResultPath::Discard),
            Some(Value::String(s)) if s == "$" => Ok(ResultPath::Replace),
            Some(Value::String(s)) => parse_reference(s).map(|steps| ResultPath::At(steps, s.clone())),
            Some(other) => Err(format!("must be a reference path string or null, not {other}")),
        }
    }

    /// Puts `result` into `input` as the path says.
    pub fn merge(&self, input: Value, result: Value) -> Result<Value, Failure> {
        match self {
            ResultPath::Replace => Ok(result),
            ResultPath::Discard => Ok(input),
            ResultPath::At(steps, text) => {
                let mut root = input;
                set(&mut root, steps, result).map_err(|problem| {
                    Failure::new(
                        "States.ResultPathMatchFailure",
                        format!("ResultPath {text:?} cannot be written: {problem}"),
                    )
                })?;
                Ok(root)
            }
        }
    }
}

/// Parses a reference path: `$` followed by `.name`, `['name']` or `[n]`.
pub fn parse_reference(text: &str) -> Result<Vec<Step>, String> {
    let bad = |why: &str| format!("reference path {text:?} {why}");
    let mut rest = text.strip_prefix('$').ok_or_else(|| bad("must start with `$`"))?;
    if rest.starts_with('$') {
        return Err(bad("cannot write into the context object"));
    }
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() || name == "*" {
                return Err(bad("has an empty or wildcard member name"));
            }
            steps.push(Step::Key(name.to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("['") {
            let end = after.find("']").ok_or_else(|| bad("has an unclosed `['`"))?;
            steps.push(Step::Key(after[..end].to_string()));
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(|| bad("has an unclosed `[`"))?;
            let index = after[..end]
                .parse::<usize>()
                .map_err(|_| bad("may use only names and array indexes, not wildcards or filters"))?;
            steps.push(Step::Index(index));
            rest = &after[end + 1..];
        } else {
            return Err(bad("is not of the form `$.name`, `$['name']` or `$[0]`"));
        }
    }
    Ok(steps)
}

fn set(root: &mut Value, steps: &[Step], result: Value) -> Result<(), String> {
    let Some((first, rest)) = steps.split_first() else {
        *root = result;
        return Ok(());
    };
    match first {
        Step::Key(key) => {
            if root.is_null() {
                *root = Value::Object(Map::new());
            }
            let Value::Object(map) = root else {
                return Err(format!(
                    "{key:?} is under a {} value, not an object",
                    kind_of(root)
                ));
            };
            let child = map.entry(key.clone()).or_insert(Value::Null);
            set(child, rest, result)
        }
        Step::Index(index) => {
            let Value::Array(items) = root else {
                return Err(format!(
                    "[{index}] is under a {} value, not an array",
                    kind_of(root)
                ));
            };
            let len = items.len();
            let child = items
                .get_mut(*index)
                .ok_or_else(|| format!("[{index}] is past the end of an array of {len}"))?;
            set(child, rest, result)
        }
    }
}

/// The JSON type name of a value, for messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value in a template computed when the state runs.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A path over the input or the context.
    Path(Path),
    /// An intrinsic function call.
    Intrinsic(Intrinsic),
}

impl Expr {
    /// Parses the string value of a `.$` key.
    pub fn parse(text: &str) -> Result<Expr, String> {
        if text.starts_with("States.") {
            Intrinsic::parse(text).map(Expr::Intrinsic)
        } else {
            Path::parse(text).map(Expr::Path)
        }
    }

    /// Evaluates it.
    pub fn eval(&self, input: &Value, context: &Value) -> Result<Value, Failure> {
        match self {
            Expr::Path(path) => path
                .require(input, context, "the path")
                .map_err(|f| Failure::new("States.ParameterPathFailure", f.cause)),
            Expr::Intrinsic(call) => call.eval(input, context),
        }
    }
}

/// A payload template: Parameters, ResultSelector or ItemSelector.
#[derive(Debug, Clone)]
pub enum Template {
    /// Copied as written.
    Literal(Value),
    /// An object whose members are templates.
    Object(Vec<(String, Template)>),
    /// An array whose elements are templates.
    Array(Vec<Template>),
    /// A computed value.
    Expr(Expr),
}

impl Template {
    /// Compiles a template from its JSON.
    pub fn parse(value: &Value) -> Result<Template, String> {
        match value {
            Value::Object(map) => {
                let mut members = Vec::with_capacity(map.len());
                for (key, member) in map {
                    if let Some(name) = key.strip_suffix(".$") {
                        let Value::String(text) = member else {
                            return Err(format!(
                                "{key:?} ends in `.$`, so its value must be a path or an intrinsic function, not {member}"
                            ));
                        };
                        let expr = Expr::parse(text).map_err(|e| format!("{key:?}: {e}"))?;
                        members.push((name.to_string(), Template::Expr(expr)));
                    } else {
                        members.push((key.clone(), Template::parse(member)?));
                    }
                }
                Ok(Template::Object(members))
            }
            Value::Array(items) => Ok(Template::Array(
                items.iter().map(Template::parse).collect::<Result<_, _>>()?,
            )),
            other => Ok(Template::Literal(other.clone())),
        }
    }

    /// Builds the payload.
    pub fn render(&self, input: &Value, context: &Value) -> Result<Value, Failure> {
        Ok(match self {
            Template::Literal(value) => value.clone(),
            Template::Object(members) => {
                let mut map = Map::with_capacity(members.len());
                for (key, member) in members {
                    map.insert(key.clone(), member.render(input, context)?);
                }
                Value::Object(map)
            }
            Template::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.render(input, context))
                    .collect::<Result<_, _>>()?,
            ),
            Template::Expr(expr) => expr.eval(input, context)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// On a 2 MiB stack, as a Tokio worker has: found by the fuzzer, a
    /// path nested thousands deep overflowed the stack and aborted workflow.
    #[test]
    fn deeply_nested_paths_are_refused_not_a_stack_overflow() {
        let parsed = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let deep = format!("$[?{}@.a{}]", "(".repeat(2_000), ")".repeat(2_000));
                let at_limit = format!("$[?{}@.a{}]", "(".repeat(31), ")".repeat(31));
                (Path::parse(&deep).err(), Path::parse(&at_limit).err())
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(parsed.0.unwrap().contains("at most 32"));
        assert_eq!(parsed.1, None, "32 deep still parses");
        assert!(Path::parse(&format!("$.{}", "a".repeat(5000))).is_err());
    }

    /// Found by the fuzzer: the JSONPath parser's time doubles with each
    /// query nested in a filter, and a short path nested 32 deep took hours.
    #[test]
    fn queries_nested_past_four_are_refused_before_the_parser_sees_them() {
        let nested = |depth: usize| format!("$[?{}@.a{}]", "$[?".repeat(depth - 1), "]".repeat(depth - 1));
        assert!(Path::parse(&nested(4)).is_ok());
        let refused = Path::parse(&nested(5)).unwrap_err();
        assert!(refused.contains("nests brackets 5 deep; at most 4"), "{refused}");
        let fuzzed = format!("$[?(((($[?$[?$[?($[6667:6,{}", "?$[?$[?($[6667:6:6,".repeat(40));
        let refused = Path::parse(&fuzzed).unwrap_err();
        assert!(refused.contains("at most"), "{refused}");
        // Indexes and filters side by side are not nesting.
        assert!(Path::parse("$.a[0].b[1][?@.c[2] == 1].d[3][4][5]").is_ok());
    }

    /// Found by the fuzzer: the JSONPath parser panicked on a path that
    /// ends inside a `\u` escape.
    #[test]
    fn a_path_ending_inside_a_unicode_escape_is_refused_not_a_panic() {
        for cut in [
            r"$['\u",
            r"$['\u00",
            r"$['\uD",
            r"$['\uD800\u",
            r"$['\uD800\uD",
            r"$..['a\u0",
        ] {
            let refused = Path::parse(cut).expect_err(cut);
            assert!(refused.contains("\\u escape"), "{cut}: {refused}");
        }
        // An escaped backslash before `u` is no escape, and whole escapes parse.
        assert!(Path::parse(r"$['\\u']").is_ok());
        assert!(Path::parse(r"$['\u00e9']").is_ok());
        assert!(Path::parse(r"$['\uD83D\uDE00']").is_ok());
        assert!(
            Path::parse(r"$['\\u").is_err(),
            "unterminated, refused by the parser itself"
        );
    }

    #[test]
    fn paths_select_one_node_or_many() -> Result<(), String> {
        let input = json!({"order": {"items": [{"sku": "a"}, {"sku": "b"}]}});
        let ctx = json!({"Execution": {"Name": "x"}});
        assert_eq!(
            Path::parse("$.order.items[1].sku")?.select(&input, &ctx),
            Some(json!("b"))
        );
        assert_eq!(
            Path::parse("$.order.items[*].sku")?.select(&input, &ctx),
            Some(json!(["a", "b"]))
        );
        assert_eq!(
            Path::parse("$$.Execution.Name")?.select(&input, &ctx),
            Some(json!("x"))
        );
        assert_eq!(Path::parse("$.nope")?.select(&input, &ctx), None);
        assert!(Path::parse("order").is_err());
        assert!(Path::parse("$.[").is_err());
        Ok(())
    }

    #[test]
    fn result_path_writes_into_the_input() -> Result<(), String> {
        let merged = ResultPath::parse(Some(&json!("$.charge.payment")))?
            .merge(json!({"a": 1}), json!({"id": "p"}))
            .map_err(|f| f.cause)?;
        assert_eq!(merged, json!({"a": 1, "charge": {"payment": {"id": "p"}}}));
        let into_array = ResultPath::parse(Some(&json!("$.list[1]")))?
            .merge(json!({"list": [0, 0]}), json!(7))
            .map_err(|f| f.cause)?;
        assert_eq!(into_array, json!({"list": [0, 7]}));
        let bad = ResultPath::parse(Some(&json!("$.a.b")))?.merge(json!({"a": 3}), json!(1));
        assert!(matches!(bad, Err(f) if f.error == "States.ResultPathMatchFailure"));
        assert!(ResultPath::parse(Some(&json!("$.a[*]"))).is_err());
        assert!(ResultPath::parse(Some(&json!("$$.a"))).is_err());
        Ok(())
    }

    #[test]
    fn templates_evaluate_dollar_keys() -> Result<(), String> {
        let template = Template::parse(&json!({
            "static": [1, {"deep.$": "$.x"}],
            "id.$": "States.Format('ord-{}', $.x)",
            "name.$": "$$.Execution.Name"
        }))?;
        let out = template
            .render(&json!({"x": 5}), &json!({"Execution": {"Name": "e1"}}))
            .map_err(|f| f.cause)?;
        assert_eq!(
            out,
            json!({"static": [1, {"deep": 5}], "id": "ord-5", "name": "e1"})
        );
        let missing = Template::parse(&json!({"y.$": "$.y"}))?.render(&json!({}), &json!({}));
        assert!(matches!(missing, Err(f) if f.error == "States.ParameterPathFailure"));
        assert!(Template::parse(&json!({"y.$": 3})).is_err());
        Ok(())
    }
}
