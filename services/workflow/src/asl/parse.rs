//! Reading each state of a definition, with the problem named where it is.

use super::*;

pub(super) struct ParseContext<'a> {
    pub(super) methods: &'a dyn Methods,
    pub(super) raised: BTreeSet<String>,
}

const COMMON_FIELDS: &[&str] = &["Type", "Comment", "InputPath", "OutputPath", "Next", "End"];

impl ParseContext<'_> {
    pub(super) fn machine(&self, map: &Map<String, Value>, prefix: &str) -> Result<Machine, DefinitionError> {
        let where_ = if prefix.is_empty() {
            String::new()
        } else {
            format!(" of {prefix}")
        };
        let start_at = match map.get("StartAt") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(top(format!("StartAt{where_} must name the first state"))),
        };
        let Some(Value::Object(raw_states)) = map.get("States") else {
            return Err(top(format!("States{where_} must be an object of states by name")));
        };
        if raw_states.is_empty() {
            return Err(top(format!("States{where_} is empty")));
        }
        for key in map.keys() {
            if ![
                "StartAt",
                "States",
                "Comment",
                "TimeoutSeconds",
                "Version",
                "ProcessorConfig",
                "QueryLanguage",
            ]
            .contains(&key.as_str())
            {
                return Err(top(format!("{key:?}{where_} is not a field of a state machine")));
            }
        }
        let timeout = match map.get("TimeoutSeconds") {
            None => None,
            Some(v) => Some(positive_seconds(v).map_err(|e| top(format!("TimeoutSeconds {e}")))?),
        };
        let mut states = Vec::with_capacity(raw_states.len());
        let mut index = HashMap::new();
        for (name, raw) in raw_states {
            let full = format!("{prefix}{name}");
            if name.is_empty() || name.chars().count() > 80 {
                return Err(at(&full, "a state name must be 1 to 80 characters"));
            }
            let Value::Object(fields) = raw else {
                return Err(at(&full, "must be an object with a Type"));
            };
            index.insert(name.clone(), states.len());
            states.push(self.state(name, &full, fields, prefix)?);
        }
        let machine = Machine {
            start_at,
            states,
            index,
            timeout,
        };
        check_graph(&machine, prefix)?;
        Ok(machine)
    }

    fn state(
        &self,
        name: &str,
        full: &str,
        f: &Map<String, Value>,
        prefix: &str,
    ) -> Result<State, DefinitionError> {
        let type_name = f.get("Type").and_then(Value::as_str).unwrap_or_default();
        let allowed = allowed_fields(type_name).map_err(|problem| at(full, problem))?;
        for key in f.keys() {
            if !COMMON_FIELDS.contains(&key.as_str()) && !allowed.contains(&key.as_str()) {
                return Err(at(full, format!("{key:?} is not a field of a {type_name} state")));
            }
        }
        let fields = Fields { f, full };
        let e = |problem: String| at(full, problem);
        let next = fields.next(type_name)?;
        let input_path = DataPath::parse(f.get("InputPath")).map_err(|p| e(format!("InputPath {p}")))?;
        let output_path = DataPath::parse(f.get("OutputPath")).map_err(|p| e(format!("OutputPath {p}")))?;
        if matches!(type_name, "Fail") && (f.contains_key("InputPath") || f.contains_key("OutputPath")) {
            return Err(e("a Fail state takes no InputPath or OutputPath".into()));
        }
        let nested = |suffix: &str| format!("{prefix}{name}/{suffix}");
        let kind = match type_name {
            "Task" => self.task(&fields)?,
            "Pass" => Kind::Pass {
                result: f.get("Result").cloned(),
                parameters: fields.template("Parameters")?,
                result_path: ResultPath::parse(f.get("ResultPath"))
                    .map_err(|p| e(format!("ResultPath {p}")))?,
            },
            "Choice" => fields.choice()?,
            "Wait" => Kind::Wait(fields.wait()?),
            "Succeed" => Kind::Succeed,
            "Fail" => Kind::Fail {
                error: fields.text_or_path("Error", "ErrorPath")?,
                cause: fields.text_or_path("Cause", "CausePath")?,
            },
            "Parallel" => self.parallel(&fields, &nested)?,
            _ => self.map(&fields, &nested)?,
        };
        Ok(State {
            name: name.to_string(),
            kind,
            input_path,
            output_path,
            next,
        })
    }

    fn task(&self, fields: &Fields<'_>) -> Result<Kind, DefinitionError> {
        let (f, e) = (fields.f, |problem: String| fields.at(problem));
        let resource = f.get("Resource").and_then(Value::as_str).ok_or_else(|| {
            e("needs Resource naming a gRPC method, e.g. \"grpc:ferrymesh.catalog.v1.CatalogService/GetProduct\"".into())
        })?;
        let method = self.methods.resolve(resource).map_err(e)?;
        let timeout = match f.get("TimeoutSeconds") {
            None => DEFAULT_TASK_TIMEOUT,
            Some(v) => positive_seconds(v).map_err(|p| e(format!("TimeoutSeconds {p}")))?,
        };
        Ok(Kind::Task(Box::new(Task {
            resource: resource.to_string(),
            method,
            parameters: fields.template("Parameters")?,
            timeout,
            handlers: self.handlers(f, fields.full)?,
        })))
    }

    /// A Parallel state; `nested(i)` names its branch `i`'s prefix.
    fn parallel(
        &self,
        fields: &Fields<'_>,
        nested: &dyn Fn(&str) -> String,
    ) -> Result<Kind, DefinitionError> {
        let (f, e) = (fields.f, |problem: String| fields.at(problem));
        let Some(Value::Array(raw)) = f.get("Branches") else {
            return Err(e("needs Branches, a non-empty array of state machines".into()));
        };
        if raw.is_empty() {
            return Err(e("Branches is empty".into()));
        }
        let mut branches = Vec::with_capacity(raw.len());
        for (i, branch) in raw.iter().enumerate() {
            let Value::Object(map) = branch else {
                return Err(e(format!(
                    "Branches[{i}] must be an object with StartAt and States"
                )));
            };
            branches.push(self.machine(map, &nested(&format!("{i}/")))?);
        }
        Ok(Kind::Parallel(Box::new(Parallel {
            branches,
            parameters: fields.template("Parameters")?,
            handlers: self.handlers(f, fields.full)?,
        })))
    }

    /// An inline Map state; `nested("")` names its processor's prefix.
    fn map(&self, fields: &Fields<'_>, nested: &dyn Fn(&str) -> String) -> Result<Kind, DefinitionError> {
        let (f, e) = (fields.f, |problem: String| fields.at(problem));
        let raw = match (f.get("ItemProcessor"), f.get("Iterator")) {
            (Some(Value::Object(p)), None) | (None, Some(Value::Object(p))) => p,
            _ => return Err(e("needs ItemProcessor, an object with StartAt and States".into())),
        };
        if let Some(Value::Object(config)) = raw.get("ProcessorConfig")
            && config
                .get("Mode")
                .and_then(Value::as_str)
                .is_some_and(|m| m != "INLINE")
        {
            return Err(e("only the INLINE processing mode is supported".into()));
        }
        let items_path = DataPath::parse(f.get("ItemsPath")).map_err(|p| e(format!("ItemsPath {p}")))?;
        let item_selector = match (fields.template("ItemSelector")?, fields.template("Parameters")?) {
            (Some(_), Some(_)) => return Err(e("takes ItemSelector or Parameters, not both".into())),
            (a, b) => a.or(b),
        };
        let max_concurrency = match f.get("MaxConcurrency") {
            None => 0,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n <= 1000)
                .ok_or_else(|| e("MaxConcurrency must be a whole number from 0 (no limit) to 1000".into()))?,
        };
        Ok(Kind::Map(Box::new(MapState {
            items_path,
            item_selector,
            processor: self.machine(raw, &nested(""))?,
            max_concurrency,
            handlers: self.handlers(f, fields.full)?,
        })))
    }

    fn handlers(&self, f: &Map<String, Value>, full: &str) -> Result<Handlers, DefinitionError> {
        let e = |problem: String| at(full, problem);
        let result_selector = f
            .get("ResultSelector")
            .map(|v| Template::parse(v).map_err(|p| e(format!("ResultSelector: {p}"))))
            .transpose()?;
        let result_path = ResultPath::parse(f.get("ResultPath")).map_err(|p| e(format!("ResultPath {p}")))?;
        let mut retry = Vec::new();
        if let Some(raw) = f.get("Retry") {
            let Value::Array(rules) = raw else {
                return Err(e("Retry must be an array of rules".into()));
            };
            for (i, rule) in rules.iter().enumerate() {
                let errors = self.error_names(rule, &format!("Retry[{i}]"), full)?;
                let number = |key: &str, default: f64| -> Result<f64, DefinitionError> {
                    match rule.get(key) {
                        None => Ok(default),
                        Some(v) => v
                            .as_f64()
                            .filter(|n| n.is_finite() && *n >= 0.0)
                            .ok_or_else(|| e(format!("Retry[{i}].{key} must be a number of at least 0"))),
                    }
                };
                let max_attempts = number("MaxAttempts", 3.0)?;
                if max_attempts.fract() != 0.0 || max_attempts > 99_999_999.0 {
                    return Err(e(format!(
                        "Retry[{i}].MaxAttempts must be a whole number up to 99999999"
                    )));
                }
                let backoff_rate = number("BackoffRate", 2.0)?;
                if backoff_rate < 1.0 {
                    return Err(e(format!("Retry[{i}].BackoffRate must be at least 1.0")));
                }
                let interval = number("IntervalSeconds", 1.0)?;
                if interval <= 0.0 {
                    return Err(e(format!("Retry[{i}].IntervalSeconds must be more than 0")));
                }
                let max_delay = rule
                    .get("MaxDelaySeconds")
                    .map(|_| number("MaxDelaySeconds", 0.0))
                    .transpose()?;
                let full_jitter = match rule.get("JitterStrategy").and_then(Value::as_str) {
                    None | Some("NONE") => false,
                    Some("FULL") => true,
                    Some(other) => {
                        return Err(e(format!(
                            "Retry[{i}].JitterStrategy {other:?} must be FULL or NONE"
                        )));
                    }
                };
                for key in rule.as_object().into_iter().flat_map(|m| m.keys()) {
                    if ![
                        "ErrorEquals",
                        "IntervalSeconds",
                        "MaxAttempts",
                        "BackoffRate",
                        "MaxDelaySeconds",
                        "JitterStrategy",
                        "Comment",
                    ]
                    .contains(&key.as_str())
                    {
                        return Err(e(format!("Retry[{i}]: {key:?} is not a field of a retrier")));
                    }
                }
                retry.push(Retrier {
                    errors,
                    interval,
                    // Checked whole and in range above.
                    max_attempts: max_attempts as u32,
                    backoff_rate,
                    max_delay,
                    full_jitter,
                });
            }
        }
        let mut catch = Vec::new();
        if let Some(raw) = f.get("Catch") {
            let Value::Array(rules) = raw else {
                return Err(e("Catch must be an array of rules".into()));
            };
            for (i, rule) in rules.iter().enumerate() {
                let errors = self.error_names(rule, &format!("Catch[{i}]"), full)?;
                let next = rule
                    .get("Next")
                    .and_then(Value::as_str)
                    .ok_or_else(|| e(format!("Catch[{i}] needs Next")))?;
                let result_path = ResultPath::parse(rule.get("ResultPath"))
                    .map_err(|p| e(format!("Catch[{i}].ResultPath {p}")))?;
                catch.push(Catcher {
                    errors,
                    next: next.to_string(),
                    result_path,
                });
            }
        }
        Ok(Handlers {
            result_selector,
            result_path,
            retry,
            catch,
        })
    }

    fn error_names(&self, rule: &Value, what: &str, full: &str) -> Result<Vec<String>, DefinitionError> {
        let e = |problem: String| at(full, problem);
        let Some(Value::Array(names)) = rule.get("ErrorEquals") else {
            return Err(e(format!(
                "{what} needs ErrorEquals, a non-empty array of error names"
            )));
        };
        if names.is_empty() {
            return Err(e(format!("{what}.ErrorEquals is empty")));
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let Some(name) = name.as_str() else {
                return Err(e(format!("{what}.ErrorEquals holds {name}, not an error name")));
            };
            let known =
                GRPC_ERRORS.contains(&name) || STATES_ERRORS.contains(&name) || self.raised.contains(name);
            if !known {
                return Err(e(format!(
                    "{what}.ErrorEquals names {name:?}, an unknown error; use a gRPC status name such as UNAVAILABLE, a States.* name, or an Error a Fail state raises"
                )));
            }
            if name == "States.Runtime" {
                return Err(e(format!("{what}: States.Runtime cannot be retried or caught")));
            }
            if name == "States.ALL" && names.len() > 1 {
                return Err(e(format!("{what}: States.ALL must appear alone in ErrorEquals")));
            }
            out.push(name.to_string());
        }
        Ok(out)
    }
}

fn positive_seconds(v: &Value) -> Result<Duration, String> {
    v.as_f64()
        .filter(|s| *s > 0.0 && *s <= 31_536_000.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| "must be a number of seconds from more than 0 to 31536000".to_string())
}

/// The fields a state of `type_name` may have besides the common ones.
fn allowed_fields(type_name: &str) -> Result<&'static [&'static str], String> {
    Ok(match type_name {
        "Task" => &[
            "Resource",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "TimeoutSeconds",
            "Retry",
            "Catch",
        ],
        "Pass" => &["Result", "ResultPath", "Parameters"],
        "Choice" => &["Choices", "Default"],
        "Wait" => &["Seconds", "SecondsPath", "Timestamp", "TimestampPath"],
        "Succeed" => &[],
        "Fail" => &["Error", "Cause", "ErrorPath", "CausePath"],
        "Parallel" => &[
            "Branches",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
        ],
        "Map" => &[
            "ItemsPath",
            "ItemSelector",
            "Parameters",
            "ItemProcessor",
            "Iterator",
            "MaxConcurrency",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
        ],
        "" => return Err("has no Type".into()),
        other => {
            return Err(format!(
                "Type {other:?} is not a state type; use Task, Pass, Choice, Wait, Succeed, Fail, Parallel or Map"
            ));
        }
    })
}

/// One state's fields, with the problems they have named at the state.
struct Fields<'a> {
    f: &'a Map<String, Value>,
    full: &'a str,
}

impl Fields<'_> {
    fn at(&self, problem: String) -> DefinitionError {
        at(self.full, problem)
    }

    fn template(&self, key: &str) -> Result<Option<Template>, DefinitionError> {
        self.f
            .get(key)
            .map(|v| Template::parse(v).map_err(|p| self.at(format!("{key}: {p}"))))
            .transpose()
    }

    /// Next, or `None` for End (and for the types that end by themselves).
    fn next(&self, type_name: &str) -> Result<Option<String>, DefinitionError> {
        let f = self.f;
        if matches!(type_name, "Succeed" | "Fail" | "Choice") {
            if f.contains_key("Next") || f.contains_key("End") {
                return Err(self.at(format!("a {type_name} state takes neither Next nor End")));
            }
            return Ok(None);
        }
        match (f.get("Next"), f.get("End")) {
            (Some(Value::String(next)), None) => Ok(Some(next.clone())),
            (None, Some(Value::Bool(true))) => Ok(None),
            (Some(_), Some(_)) => Err(self.at("has both Next and End; keep one".into())),
            _ => Err(self.at("needs Next (a state name) or \"End\": true".into())),
        }
    }

    fn choice(&self) -> Result<Kind, DefinitionError> {
        let Some(Value::Array(raw)) = self.f.get("Choices") else {
            return Err(self.at("needs Choices, a non-empty array of rules".into()));
        };
        if raw.is_empty() {
            return Err(self.at("Choices is empty".into()));
        }
        let mut choices = Vec::with_capacity(raw.len());
        for (i, rule) in raw.iter().enumerate() {
            let next = rule
                .get("Next")
                .and_then(Value::as_str)
                .ok_or_else(|| self.at(format!("Choices[{i}] needs Next")))?;
            let parsed = Rule::parse(rule, true).map_err(|p| self.at(format!("Choices[{i}]: {p}")))?;
            choices.push((parsed, next.to_string()));
        }
        let default = match self.f.get("Default") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(self.at("Default must name a state".into())),
        };
        Ok(Kind::Choice { choices, default })
    }

    fn wait(&self) -> Result<WaitFor, DefinitionError> {
        let f = self.f;
        let set: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
            .into_iter()
            .filter(|k| f.contains_key(*k))
            .collect();
        if set.len() != 1 {
            return Err(self.at("needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath".into()));
        }
        let path = |key: &str| -> Result<Path, DefinitionError> {
            match f.get(key) {
                Some(Value::String(s)) => Path::parse(s).map_err(|p| self.at(format!("{key}: {p}"))),
                _ => Err(self.at(format!("{key} must be a path string"))),
            }
        };
        Ok(match set[0] {
            "Seconds" => WaitFor::Seconds(
                f.get("Seconds")
                    .and_then(Value::as_f64)
                    .filter(|s| (0.0..=31_536_000.0).contains(s))
                    .ok_or_else(|| self.at("Seconds must be a number from 0 to 31536000".into()))?,
            ),
            "SecondsPath" => WaitFor::SecondsPath(path("SecondsPath")?),
            "Timestamp" => WaitFor::Timestamp(
                f.get("Timestamp")
                    .and_then(Value::as_str)
                    .filter(|t| {
                        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
                    })
                    .ok_or_else(|| {
                        self.at("Timestamp must be an RFC 3339 time, e.g. 2026-01-01T00:00:00Z".into())
                    })?
                    .to_string(),
            ),
            _ => WaitFor::TimestampPath(path("TimestampPath")?),
        })
    }

    /// A Fail state's Error or Cause: literal, or by path.
    fn text_or_path(&self, plain: &str, by_path: &str) -> Result<Option<Text>, DefinitionError> {
        match (self.f.get(plain), self.f.get(by_path)) {
            (Some(_), Some(_)) => Err(self.at(format!("takes {plain} or {by_path}, not both"))),
            (Some(Value::String(s)), None) => Ok(Some(Text::Literal(s.clone()))),
            (Some(_), None) => Err(self.at(format!("{plain} must be a string"))),
            (None, Some(Value::String(s))) => Expr::parse(s)
                .map(|x| Some(Text::Computed(x)))
                .map_err(|p| self.at(format!("{by_path}: {p}"))),
            (None, Some(_)) => Err(self.at(format!("{by_path} must be a path or an intrinsic function"))),
            (None, None) => Ok(None),
        }
    }
}
