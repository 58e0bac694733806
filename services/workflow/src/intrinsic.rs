//! The intrinsic functions of the States Language that a `.$` value may call:
//! `States.Format`, `States.StringToJson`, `States.JsonToString`,
//! `States.Array`, `States.UUID`, `States.MathAdd`, plus `States.ArrayLength`
//! and `States.StringSplit`. Calls nest; arguments are quoted strings,
//! numbers, booleans, null and paths.

use serde_json::{Number, Value};

use crate::errors::Failure;
use crate::path::{Path, excerpt, kind_of};

/// One argument of a call.
#[derive(Debug, Clone)]
pub enum Arg {
    /// A literal.
    Literal(Value),
    /// A path over the input or the context.
    Path(Path),
    /// A nested call.
    Call(Intrinsic),
}

/// A parsed intrinsic function call.
#[derive(Debug, Clone)]
pub struct Intrinsic {
    name: String,
    args: Vec<Arg>,
}

/// The functions, with how many arguments each takes (min, max).
const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("States.Format", 1, usize::MAX),
    ("States.StringToJson", 1, 1),
    ("States.JsonToString", 1, 1),
    ("States.Array", 0, usize::MAX),
    ("States.UUID", 0, 0),
    ("States.MathAdd", 2, 2),
    ("States.ArrayLength", 1, 1),
    ("States.StringSplit", 2, 2),
];

impl Intrinsic {
    /// Parses `States.Name(args...)`, the whole text.
    pub fn parse(text: &str) -> Result<Intrinsic, String> {
        let mut parser = Parser {
            text,
            at: 0,
            depth: 0,
        };
        let call = parser.call()?;
        parser.skip_space();
        if parser.at != text.len() {
            return Err(format!(
                "{text:?} has text after the closing `)` of {}",
                call.name
            ));
        }
        Ok(call)
    }

    /// Evaluates the call.
    pub fn eval(&self, input: &Value, context: &Value) -> Result<Value, Failure> {
        let fail = |why: String| Failure::new("States.IntrinsicFailure", format!("{}: {why}", self.name));
        let mut values = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            values.push(match arg {
                Arg::Literal(v) => v.clone(),
                Arg::Path(p) => p
                    .select(input, context)
                    .ok_or_else(|| fail(format!("the path {:?} matched nothing", p.text())))?,
                Arg::Call(call) => call.eval(input, context)?,
            });
        }
        match self.name.as_str() {
            "States.Format" => {
                let Some((Value::String(template), rest)) = values.split_first() else {
                    return Err(fail("the first argument must be a string".into()));
                };
                format(template, rest).map_err(fail)
            }
            "States.StringToJson" => match &values[0] {
                Value::String(s) => serde_json::from_str(s).map_err(|e| fail(format!("not JSON: {e}"))),
                other => Err(fail(format!("needs a string, not a {}", kind_of(other)))),
            },
            "States.JsonToString" => Ok(Value::String(values[0].to_string())),
            "States.Array" => Ok(Value::Array(values)),
            "States.UUID" => Ok(Value::String(uuid::Uuid::new_v4().to_string())),
            "States.MathAdd" => {
                let (a, b) = (&values[0], &values[1]);
                match (a.as_i64(), b.as_i64()) {
                    (Some(x), Some(y)) => x
                        .checked_add(y)
                        .map(|n| Value::Number(n.into()))
                        .ok_or_else(|| fail(format!("{x} + {y} overflows"))),
                    _ => match (a.as_f64(), b.as_f64()) {
                        (Some(x), Some(y)) => Number::from_f64(x + y)
                            .map(Value::Number)
                            .ok_or_else(|| fail(format!("{x} + {y} is not a finite number"))),
                        _ => Err(fail(format!(
                            "needs two numbers, not {} and {}",
                            excerpt(a),
                            excerpt(b)
                        ))),
                    },
                }
            }
            "States.ArrayLength" => match &values[0] {
                Value::Array(items) => Ok(Value::Number(items.len().into())),
                other => Err(fail(format!("needs an array, not a {}", kind_of(other)))),
            },
            "States.StringSplit" => match (&values[0], &values[1]) {
                (Value::String(s), Value::String(sep)) => Ok(Value::Array(
                    s.split(|c| sep.contains(c))
                        .filter(|p| !p.is_empty())
                        .map(|p| Value::String(p.to_string()))
                        .collect(),
                )),
                _ => Err(fail("needs two strings".into())),
            },
            other => Err(fail(format!("{other} is not an intrinsic function"))),
        }
    }
}

/// `States.Format`: each `{}` takes the next argument; `\{` and `\}` are braces.
fn format(template: &str, args: &[Value]) -> Result<Value, String> {
    let mut out = String::with_capacity(template.len());
    let mut args = args.iter();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => out.push(escaped),
                None => out.push('\\'),
            },
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                match args.next() {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => {
                        out.push_str(&v.to_string())
                    }
                    Some(other) => {
                        return Err(format!("cannot format a {} into a string", kind_of(other)));
                    }
                    None => return Err(format!("{template:?} has more `{{}}` than arguments")),
                }
            }
            c => out.push(c),
        }
    }
    if args.next().is_some() {
        return Err(format!("{template:?} has fewer `{{}}` than arguments"));
    }
    Ok(Value::String(out))
}

/// Deepest nesting of calls in calls: parsing and evaluating recurse, and
/// a definition must not be able to overflow the stack.
const MAX_CALL_DEPTH: usize = 16;

struct Parser<'a> {
    text: &'a str,
    at: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn call(&mut self) -> Result<Intrinsic, String> {
        self.skip_space();
        let open = self
            .rest()
            .find('(')
            .ok_or_else(|| format!("{:?} is not a call: expected `States.Name(...)`", self.text))?;
        let name = self.rest()[..open].trim().to_string();
        let Some(&(_, min, max)) = FUNCTIONS.iter().find(|(n, _, _)| *n == name) else {
            let known: Vec<&str> = FUNCTIONS.iter().map(|f| f.0).collect();
            return Err(format!(
                "{name:?} is not an intrinsic function; the functions are {}",
                known.join(", ")
            ));
        };
        self.at += open + 1;
        let mut args = Vec::new();
        self.skip_space();
        if self.rest().starts_with(')') {
            self.at += 1;
        } else {
            loop {
                args.push(self.arg()?);
                self.skip_space();
                match self.rest().chars().next() {
                    Some(',') => self.at += 1,
                    Some(')') => {
                        self.at += 1;
                        break;
                    }
                    _ => return Err(format!("{name}: expected `,` or `)` in {:?}", self.text)),
                }
            }
        }
        if args.len() < min || args.len() > max {
            return Err(format!(
                "{name} takes {} arguments, not {}",
                arity(min, max),
                args.len()
            ));
        }
        Ok(Intrinsic { name, args })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        self.skip_space();
        let rest = self.rest();
        if rest.starts_with('\'') {
            return self.string().map(|s| Arg::Literal(Value::String(s)));
        }
        if rest.starts_with("States.") {
            if self.depth >= MAX_CALL_DEPTH {
                return Err(format!(
                    "{:?} nests calls more than {MAX_CALL_DEPTH} deep",
                    self.text
                ));
            }
            self.depth += 1;
            let call = self.call().map(Arg::Call);
            self.depth -= 1;
            return call;
        }
        // A path or a bare literal runs to the next `,` or `)` outside brackets and quotes.
        let mut depth = 0usize;
        let mut quoted = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '\'' => quoted = !quoted,
                '[' if !quoted => depth += 1,
                ']' if !quoted => depth = depth.saturating_sub(1),
                ',' | ')' if !quoted && depth == 0 => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let token = rest[..end].trim();
        self.at += end;
        if token.starts_with('$') {
            return Path::parse(token).map(Arg::Path);
        }
        match serde_json::from_str::<Value>(token) {
            Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => Ok(Arg::Literal(v)),
            _ => Err(format!(
                "{token:?} is not an argument: write a 'string', a number, true, false, null, a path or a call"
            )),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = self.rest().char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    // Keep `\{` and `\}` escaped for States.Format; unescape the rest.
                    if let Some((_, next)) = chars.next() {
                        if next == '{' || next == '}' {
                            out.push('\\');
                        }
                        out.push(next);
                    }
                }
                '\'' => {
                    self.at += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err(format!("{:?} has an unclosed string", self.text))
    }
}

fn arity(min: usize, max: usize) -> String {
    match (min, max) {
        (a, b) if a == b => a.to_string(),
        (a, usize::MAX) => format!("at least {a}"),
        (a, b) => format!("{a} to {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(text: &str, input: Value) -> Result<Value, String> {
        Intrinsic::parse(text)?
            .eval(&input, &json!({"Execution": {"Name": "e"}}))
            .map_err(|f| f.cause)
    }

    /// On a 2 MiB stack, as a Tokio worker has: found by the fuzzer.
    #[test]
    fn deeply_nested_calls_are_refused_not_a_stack_overflow() {
        let refused = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let deep = format!("{}1{}", "States.Array(".repeat(20_000), ")".repeat(20_000));
                Intrinsic::parse(&deep).err()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(refused.unwrap().contains("more than 16 deep"));
        let at_limit = format!("{}1{}", "States.Array(".repeat(17), ")".repeat(17));
        assert!(
            Intrinsic::parse(&at_limit).is_ok(),
            "16 calls inside the outer one parse"
        );
    }

    #[test]
    fn functions_compute() -> Result<(), String> {
        assert_eq!(
            eval(
                "States.Format('Hello, {} of {}!', $.name, $$.Execution.Name)",
                json!({"name": "Ada"})
            )?,
            json!("Hello, Ada of e!")
        );
        assert_eq!(
            eval("States.Format('a \\{b\\} {}', 3)", json!({}))?,
            json!("a {b} 3")
        );
        assert_eq!(
            eval("States.StringToJson($.s)", json!({"s": "{\"a\":[1]}"}))?,
            json!({"a": [1]})
        );
        assert_eq!(
            eval("States.JsonToString($.o)", json!({"o": {"a": 1}}))?,
            json!("{\"a\":1}")
        );
        assert_eq!(
            eval(
                "States.Array(1, 'two', $.x, States.MathAdd(1, 2))",
                json!({"x": null})
            )?,
            json!([1, "two", null, 3])
        );
        assert_eq!(eval("States.MathAdd($.n, -1)", json!({"n": 10}))?, json!(9));
        assert_eq!(eval("States.ArrayLength($.a)", json!({"a": [1, 2]}))?, json!(2));
        assert_eq!(
            eval("States.StringSplit('a,b,,c', ',')", json!({}))?,
            json!(["a", "b", "c"])
        );
        let uuid = eval("States.UUID()", json!({}))?;
        assert_eq!(uuid.as_str().map(str::len), Some(36));
        Ok(())
    }

    #[test]
    fn bad_calls_are_refused_at_parse_or_named_at_run() {
        assert!(Intrinsic::parse("States.Nope(1)").is_err_and(|e| e.contains("not an intrinsic function")));
        assert!(Intrinsic::parse("States.MathAdd(1)").is_err_and(|e| e.contains("takes 2 arguments")));
        assert!(Intrinsic::parse("States.Format('x'").is_err());
        assert!(Intrinsic::parse("States.Format('x') trailing").is_err());
        assert!(eval("States.Format('{} {}', 1)", json!({})).is_err_and(|e| e.contains("more `{}`")));
        assert!(
            eval("States.MathAdd(9223372036854775807, 1)", json!({})).is_err_and(|e| e.contains("overflows"))
        );
        assert!(eval("States.StringToJson($.s)", json!({"s": "{"})).is_err_and(|e| e.contains("not JSON")));
        assert!(
            eval("States.Format('{}', $.missing)", json!({})).is_err_and(|e| e.contains("matched nothing"))
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Any text parses or is refused; it never panics.
        #[test]
        fn parsing_never_panics(text in "States\\.[A-Za-z]{0,12}\\([ -~]{0,40}") {
            let _ = Intrinsic::parse(&text);
        }
    }
}
