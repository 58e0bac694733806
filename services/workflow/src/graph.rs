//! An execution drawn: the state machine's top-level states, each marked with
//! what happened in it (from the history), as Mermaid, Graphviz DOT and SVG
//! (laid out in-process by `graph_svg`, no Graphviz needed).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use crate::asl::{Kind, Machine, transitions};
use crate::events::EventKind;
use crate::store::event;

/// What happened in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Not entered.
    NotReached,
    /// Entered, not left.
    InProgress,
    /// Left normally.
    Succeeded,
    /// Failed the execution.
    Failed,
    /// Failed, and a Catch handled it.
    Caught,
    /// Succeeded, then undone by an error path.
    Compensated,
    /// Ran on an error path.
    Compensation,
}

impl Progress {
    /// Fill colour, border colour and a word, for drawings.
    pub fn style(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Progress::NotReached => ("#f4f4f5", "#a1a1aa", "not reached"),
            Progress::InProgress => ("#dbeafe", "#2563eb", "in progress"),
            Progress::Succeeded => ("#dcfce7", "#16a34a", "succeeded"),
            Progress::Failed => ("#fee2e2", "#dc2626", "failed"),
            Progress::Caught => ("#ffedd5", "#ea580c", "caught"),
            Progress::Compensated => ("#fef9c3", "#ca8a04", "compensated"),
            Progress::Compensation => ("#ede9fe", "#7c3aed", "compensation"),
        }
    }
}

/// A node of the drawing.
#[derive(Debug, Clone)]
pub struct Node {
    /// State name.
    pub name: String,
    /// State type.
    pub kind: &'static str,
    /// What happened.
    pub progress: Progress,
    /// Retries of its task.
    pub retries: u32,
    /// The method of a Task.
    pub resource: String,
}

/// An edge of the drawing.
#[derive(Debug, Clone)]
pub struct Edge {
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// "next", "choice", "default" or "catch".
    pub label: &'static str,
    /// Taken by the execution.
    pub taken: bool,
}

/// The graph of one execution.
#[derive(Debug, Clone)]
pub struct Graph {
    /// States in definition order.
    pub nodes: Vec<Node>,
    /// Transitions.
    pub edges: Vec<Edge>,
}

/// Builds the graph of `machine` as the `events` of an execution left it.
pub fn build(machine: &Machine, events: &[event::Model], execution_failed: bool) -> Graph {
    let names: HashSet<&str> = machine.states.iter().map(|s| s.name.as_str()).collect();
    let mut entered: HashMap<&str, u32> = HashMap::new();
    let mut exited: HashSet<&str> = HashSet::new();
    let mut caught: HashSet<&str> = HashSet::new();
    let mut retries: HashMap<&str, u32> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for e in events {
        let state = e.state_name.as_str();
        if !names.contains(state) {
            continue;
        }
        let kind = EventKind::parse(&e.kind);
        if kind.is_some_and(EventKind::is_state_entered) {
            *entered.entry(state).or_default() += 1;
            order.push(state);
        } else if kind.is_some_and(EventKind::is_state_exited) {
            exited.insert(state);
            if e.details.contains("\"caught\"") {
                caught.insert(state);
            }
        } else if kind == Some(EventKind::TaskRetryScheduled) {
            *retries.entry(state).or_default() += 1;
        }
    }
    // States only a Catch leads to are the error path (a saga's compensations).
    let normal = reachable(machine, false);
    let any_compensation_ran = machine
        .states
        .iter()
        .any(|s| !normal.contains(s.name.as_str()) && entered.contains_key(s.name.as_str()));
    let nodes = machine
        .states
        .iter()
        .map(|s| {
            let name = s.name.as_str();
            let progress = if !entered.contains_key(name) {
                Progress::NotReached
            } else if caught.contains(name) {
                Progress::Caught
            } else if !exited.contains(name) {
                if execution_failed {
                    Progress::Failed
                } else {
                    Progress::InProgress
                }
            } else if !normal.contains(name) {
                Progress::Compensation
            } else if any_compensation_ran && matches!(s.kind, Kind::Task(_)) {
                Progress::Compensated
            } else {
                Progress::Succeeded
            };
            Node {
                name: s.name.clone(),
                kind: s.kind.type_name(),
                progress,
                retries: retries.get(name).copied().unwrap_or(0),
                resource: match &s.kind {
                    Kind::Task(t) => t.resource.clone(),
                    _ => String::new(),
                },
            }
        })
        .collect();
    let taken: HashSet<(&str, &str)> = order.windows(2).map(|w| (w[0], w[1])).collect();
    let mut edges = Vec::new();
    let mut seen = BTreeSet::new();
    for s in &machine.states {
        for (why, target) in transitions(s) {
            let label = match why {
                "Next" => "next",
                "Choice Next" => "choice",
                "Default" => "default",
                _ => "catch",
            };
            if !seen.insert((s.name.clone(), target.to_string(), label)) {
                continue;
            }
            edges.push(Edge {
                from: s.name.clone(),
                to: target.to_string(),
                label,
                taken: taken.contains(&(s.name.as_str(), target)),
            });
        }
    }
    Graph { nodes, edges }
}

/// States reachable from StartAt, through Catch transitions too or not.
fn reachable(machine: &Machine, with_catch: bool) -> HashSet<&str> {
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([machine.start_at.as_str()]);
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name) {
            continue;
        }
        if let Some(state) = machine.state(name) {
            for (why, target) in transitions(state) {
                if with_catch || why != "Catch Next" {
                    queue.push_back(target);
                }
            }
        }
    }
    seen
}

fn caption(node: &Node) -> String {
    let (_, _, word) = node.progress.style();
    let mut text = format!("{} ({}): {word}", node.name, node.kind);
    if node.retries > 0 {
        text.push_str(&format!(", retried {}x", node.retries));
    }
    text
}

impl Graph {
    /// A Mermaid flowchart with a class per progress.
    pub fn mermaid(&self) -> String {
        let id: HashMap<&str, String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), format!("s{i}")))
            .collect();
        let mut out = String::from("flowchart TD\n");
        for n in &self.nodes {
            out.push_str(&format!(
                "    {}[\"{}\"]\n",
                id[n.name.as_str()],
                caption(n).replace('"', "'")
            ));
        }
        for e in &self.edges {
            let (Some(from), Some(to)) = (id.get(e.from.as_str()), id.get(e.to.as_str())) else {
                continue;
            };
            // Taken edges are thick; a catch not taken is dotted.
            let line = match (e.label, e.taken) {
                (label, true) => format!("==>|{label}|"),
                ("catch", false) => "-. catch .->".to_string(),
                (label, false) => format!("-->|{label}|"),
            };
            out.push_str(&format!("    {from} {line} {to}\n"));
        }
        let mut classes: Vec<Progress> = Vec::new();
        for n in &self.nodes {
            if !classes.contains(&n.progress) {
                classes.push(n.progress);
            }
        }
        for p in classes {
            let (fill, stroke, word) = p.style();
            let class = word.replace(' ', "_");
            out.push_str(&format!(
                "    classDef {class} fill:{fill},stroke:{stroke},stroke-width:2px\n"
            ));
            let members: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| n.progress == p)
                .map(|n| id[n.name.as_str()].as_str())
                .collect();
            out.push_str(&format!("    class {} {class}\n", members.join(",")));
        }
        out
    }

    /// Graphviz DOT, filled by progress; taken edges bold, catch edges dashed.
    pub fn dot(&self) -> String {
        let mut out = String::from(
            "digraph execution {\n    node [shape=box, style=filled, fontname=\"Helvetica\"];\n",
        );
        for n in &self.nodes {
            let (fill, stroke, _) = n.progress.style();
            out.push_str(&format!(
                "    \"{}\" [label=\"{}\", fillcolor=\"{fill}\", color=\"{stroke}\"];\n",
                escape(&n.name),
                escape(&caption(n))
            ));
        }
        for e in &self.edges {
            let style = if e.label == "catch" { ", style=dashed" } else { "" };
            let color = if e.taken { "#111827" } else { "#9ca3af" };
            let width = if e.taken { 2 } else { 1 };
            out.push_str(&format!(
                "    \"{}\" -> \"{}\" [label=\"{}\", color=\"{color}\", penwidth={width}{style}];\n",
                escape(&e.from),
                escape(&e.to),
                e.label
            ));
        }
        out.push_str("}\n");
        out
    }

    /// The drawing as SVG, laid out in-process (see [`crate::graph_svg`]).
    pub fn svg(&self) -> Result<String, String> {
        Ok(crate::graph_svg::render(self))
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
