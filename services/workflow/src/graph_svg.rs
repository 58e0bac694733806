//! An execution's graph as SVG a person can read: sans-serif labels of
//! 13 and 12 px at their natural size, boxes sized to their text, the
//! normal path in one column and the error path (a saga's compensations)
//! beside it, each compensation level with the state whose failure leads
//! to it. Taken transitions are drawn thick and dark, catches dashed.
//!
//! Laid out here rather than by a general graph layout: state machines
//! are small and nearly linear, and a layout that knows the normal path
//! from the error path draws a saga as people draw one.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::graph::{Graph, Node};

const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif";
/// The state's name.
const NAME_PX: f64 = 13.0;
/// The line under it: kind, what happened, retries.
const NOTE_PX: f64 = 12.0;
/// An upper bound of a character's advance, per pixel of font size, for
/// boxes that fit their text in any sans-serif (bold 'm' is about 0.9em;
/// names are mostly lower case, about 0.6em).
const ADVANCE: f64 = 0.62;
const PAD_X: f64 = 14.0;
const BOX_H: f64 = 46.0;
const GAP_Y: f64 = 30.0;
const GAP_X: f64 = 56.0;
const MARGIN: f64 = 12.0;

struct Placed {
    rank: usize,
    column: usize,
}

/// Where each state goes: a rank (row) and a column.
fn place(graph: &Graph) -> HashMap<&str, Placed> {
    let names: Vec<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
    // The normal path: reached from the first state without a Catch.
    let mut normal: Vec<&str> = Vec::new();
    if let Some(first) = names.first() {
        let mut stack = vec![*first];
        while let Some(n) = stack.pop() {
            if normal.contains(&n) {
                continue;
            }
            normal.push(n);
            for e in graph.edges.iter().filter(|e| e.from == n && e.label != "catch") {
                stack.push(e.to.as_str());
            }
        }
    }
    // Ranks on the normal path: longest path from the start, back edges
    // (loops) left out, found by relaxing in definition order.
    let mut rank: HashMap<&str, usize> = HashMap::new();
    if let Some(first) = names.first() {
        rank.insert(first, 0);
    }
    let order: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    for _ in 0..names.len() {
        for e in graph.edges.iter().filter(|e| e.label != "catch") {
            let (Some(&from), true) = (rank.get(e.from.as_str()), normal.contains(&e.to.as_str())) else {
                continue;
            };
            // A transition to an earlier state of the definition is a loop.
            if order.get(e.to.as_str()) <= order.get(e.from.as_str()) {
                continue;
            }
            let to = rank.entry(e.to.as_str()).or_insert(0);
            *to = (*to).max(from + 1);
        }
    }
    // The error path: beside the earliest state whose failure leads to it,
    // or (where only the error path leads, as to a final Fail state) to the
    // right of the error state before it.
    for _ in 0..names.len() {
        for n in names.iter().filter(|n| !normal.contains(n)) {
            let by_catch = graph
                .edges
                .iter()
                .filter(|e| e.to == *n && e.label == "catch" && normal.contains(&e.from.as_str()))
                .filter_map(|e| rank.get(e.from.as_str()).copied())
                .min();
            let by_error = graph
                .edges
                .iter()
                .filter(|e| e.to == *n && !normal.contains(&e.from.as_str()))
                .filter_map(|e| rank.get(e.from.as_str()).copied())
                .max();
            if let Some(r) = by_catch.or(by_error) {
                rank.insert(n, r);
            }
        }
    }
    // States nothing reaches go last, one per rank.
    let mut next = rank.values().max().map_or(0, |r| r + 1);
    for n in &names {
        rank.entry(n).or_insert_with(|| {
            next += 1;
            next - 1
        });
    }
    // Columns: normal states first within a rank, then the error path in
    // the columns to their right.
    let normal_width = (0..names.len())
        .map(|r| normal.iter().filter(|n| rank.get(*n) == Some(&r)).count())
        .max()
        .unwrap_or(1)
        .max(1);
    let mut used: HashMap<(usize, bool), usize> = HashMap::new();
    let mut out = HashMap::new();
    for n in &names {
        let r = rank[n];
        let is_normal = normal.contains(n);
        let slot = used.entry((r, is_normal)).or_insert(0);
        let column = if is_normal { *slot } else { normal_width + *slot };
        *slot += 1;
        out.insert(*n, Placed { rank: r, column });
    }
    out
}

fn note(node: &Node) -> String {
    let (_, _, word) = node.progress.style();
    let mut text = format!("{} · {word}", node.kind);
    if node.retries > 0 {
        let _ = write!(text, " · {} retries", node.retries);
    }
    text
}

fn text_width(text: &str, px: f64) -> f64 {
    text.chars().count() as f64 * px * ADVANCE
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The graph as a standalone SVG document.
pub fn render(graph: &Graph) -> String {
    let placed = place(graph);
    let columns = placed.values().map(|p| p.column + 1).max().unwrap_or(1);
    let ranks = placed.values().map(|p| p.rank + 1).max().unwrap_or(1);
    // Each column as wide as its widest label.
    let mut widths = vec![120.0_f64; columns];
    for n in &graph.nodes {
        let p = &placed[n.name.as_str()];
        let w = text_width(&n.name, NAME_PX).max(text_width(&note(n), NOTE_PX)) + 2.0 * PAD_X;
        widths[p.column] = widths[p.column].max(w.ceil());
    }
    let mut lefts = Vec::with_capacity(columns);
    let mut x = MARGIN;
    for w in &widths {
        lefts.push(x);
        x += w + GAP_X;
    }
    let width = (x - GAP_X + MARGIN).ceil();
    let height = (MARGIN * 2.0 + ranks as f64 * BOX_H + (ranks.saturating_sub(1)) as f64 * GAP_Y).ceil();
    let top = |rank: usize| MARGIN + rank as f64 * (BOX_H + GAP_Y);
    let summary: Vec<String> = graph
        .nodes
        .iter()
        .map(|n| format!("{}: {}", n.name, n.progress.style().2))
        .collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}"><title>{}</title><defs><marker id="fm-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="context-stroke"/></marker></defs><g font-family="{FONT}">"##,
        xml(&format!("Execution graph. {}", summary.join("; "))),
        xml(&summary.join("; ")),
    );
    // Transitions first, under the boxes.
    for e in &graph.edges {
        let (Some(a), Some(b)) = (placed.get(e.from.as_str()), placed.get(e.to.as_str())) else {
            continue;
        };
        let (ax, bx) = (lefts[a.column], lefts[b.column]);
        let (aw, bw) = (widths[a.column], widths[b.column]);
        let (ay, by) = (top(a.rank), top(b.rank));
        let path = if b.rank > a.rank {
            let (x1, y1, x2, y2) = (ax + aw / 2.0, ay + BOX_H, bx + bw / 2.0, by);
            format!(
                "M{x1},{y1} C{x1},{} {x2},{} {x2},{y2}",
                y1 + GAP_Y / 2.0,
                y2 - GAP_Y / 2.0
            )
        } else if b.rank < a.rank {
            // Up the error path: out of the top, into the bottom.
            let (x1, y1, x2, y2) = (ax + aw / 2.0, ay, bx + bw / 2.0, by + BOX_H);
            format!(
                "M{x1},{y1} C{x1},{} {x2},{} {x2},{y2}",
                y1 - GAP_Y / 2.0,
                y2 + GAP_Y / 2.0
            )
        } else if b.column > a.column {
            let (x1, x2, y) = (ax + aw, bx, ay + BOX_H / 2.0);
            format!("M{x1},{y} L{x2},{y}")
        } else {
            let (x1, x2, y) = (ax, bx + bw, ay + BOX_H / 2.0);
            format!("M{x1},{y} L{x2},{y}")
        };
        let (color, stroke) = if e.taken {
            ("#111827", 2.5)
        } else {
            ("#9ca3af", 1.25)
        };
        let dash = if e.label == "catch" {
            r#" stroke-dasharray="5 4""#
        } else {
            ""
        };
        let _ = write!(
            svg,
            r##"<path d="{path}" fill="none" stroke="{color}" stroke-width="{stroke}"{dash} marker-end="url(#fm-arrow)"><title>{} → {} ({}{})</title></path>"##,
            xml(&e.from),
            xml(&e.to),
            e.label,
            if e.taken { ", taken" } else { "" }
        );
    }
    for n in &graph.nodes {
        let p = &placed[n.name.as_str()];
        let (x, y, w) = (lefts[p.column], top(p.rank), widths[p.column]);
        let (fill, stroke, _) = n.progress.style();
        let border = if matches!(n.progress, crate::graph::Progress::Failed) {
            3
        } else {
            2
        };
        let _ = write!(
            svg,
            r##"<g><title>{title}</title><rect x="{x}" y="{y}" width="{w}" height="{BOX_H}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="{border}"/><text x="{tx}" y="{ny}" font-size="{NAME_PX}" font-weight="600" fill="#111827">{name}</text><text x="{tx}" y="{ky}" font-size="{NOTE_PX}" fill="#374151">{note}</text></g>"##,
            title = xml(&if n.resource.is_empty() {
                n.name.clone()
            } else {
                format!("{} calls {}", n.name, n.resource.trim_start_matches("grpc:"))
            }),
            tx = x + PAD_X,
            ny = y + 19.0,
            ky = y + 36.0,
            name = xml(&n.name),
            note = xml(&note(n)),
        );
    }
    svg.push_str("</g></svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Edge, Progress};

    fn node(name: &str, progress: Progress) -> Node {
        Node {
            name: name.into(),
            kind: "Task",
            progress,
            retries: 0,
            resource: String::new(),
        }
    }

    fn edge(from: &str, to: &str, label: &'static str) -> Edge {
        Edge {
            from: from.into(),
            to: to.into(),
            label,
            taken: false,
        }
    }

    /// A saga: the normal path in one column, each compensation beside the
    /// step whose failure leads to it.
    fn saga() -> Graph {
        Graph {
            nodes: vec![
                node("Reserve stock", Progress::Succeeded),
                node("Charge card", Progress::Caught),
                node("Commit stock", Progress::NotReached),
                node("Release stock", Progress::Failed),
                node("Fail order", Progress::NotReached),
                node("Order failed", Progress::NotReached),
            ],
            edges: vec![
                edge("Reserve stock", "Charge card", "next"),
                edge("Charge card", "Commit stock", "next"),
                edge("Reserve stock", "Fail order", "catch"),
                edge("Charge card", "Release stock", "catch"),
                edge("Release stock", "Fail order", "next"),
                edge("Fail order", "Order failed", "next"),
            ],
        }
    }

    #[test]
    fn a_saga_is_two_columns_with_compensations_beside_their_steps() {
        let graph = saga();
        let placed = place(&graph);
        let at = |n: &str| (placed[n].rank, placed[n].column);
        assert_eq!(at("Reserve stock"), (0, 0));
        assert_eq!(at("Charge card"), (1, 0));
        assert_eq!(at("Commit stock"), (2, 0));
        assert_eq!(at("Release stock"), (1, 1));
        assert_eq!(at("Fail order"), (0, 1));
        assert_eq!(at("Order failed"), (0, 2));
    }

    #[test]
    fn labels_are_sans_serif_at_twelve_pixels_or_more_in_boxes_that_fit_them() {
        let svg = render(&saga());
        assert!(svg.contains("sans-serif"), "{svg}");
        for size in svg.split("font-size=\"").skip(1) {
            let px: f64 = size.split('"').next().unwrap().parse().unwrap();
            assert!(px >= 12.0, "{px}px text in {svg}");
        }
        // Drawn at its natural size: width and height equal the viewBox.
        let width = svg
            .split("width=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        assert!(svg.contains(&format!("viewBox=\"0 0 {width} ")), "{svg}");
        // Every box is as wide as its longest line at the widest advance.
        for rect in svg.split("<rect ").skip(1) {
            let w: f64 = rect
                .split("width=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(w >= text_width("Release stock", NAME_PX) + 2.0 * PAD_X, "{w}");
        }
        assert!(svg.contains("Task · failed"), "{svg}");
    }

    #[test]
    fn names_are_escaped() {
        let mut graph = saga();
        graph.nodes[0].name = "<script>&".into();
        let svg = render(&graph);
        assert!(
            svg.contains("&lt;script&gt;&amp;") && !svg.contains("<script>"),
            "{svg}"
        );
    }
}
