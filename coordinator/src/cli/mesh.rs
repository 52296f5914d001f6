//! `meshrun mesh`: the topology as a tree grown from the coordinator's control node.
//!
//! Links are undirected for drawing (who dialled whom does not matter to a reader), the tree is
//! breadth-first so every node hangs under a neighbour nearest the root, and each node is drawn
//! once: links that would close a cycle are listed after the tree, and nodes the root cannot
//! reach are drawn last, under "unlinked".

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use serde_json::{Value, json};

use super::client::Client;
use super::instances::list_all;

/// `meshrun mesh`.
#[derive(Debug, Args)]
pub struct MeshArgs {
    /// Print the mesh as JSON (the control node, instances and links).
    #[arg(long)]
    json: bool,
}

/// What a tree line says about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// `control`, `hybrid`, `execution` or `hop`.
    pub node_type: String,
    /// `installed`, `ready`, ...
    pub node_state: String,
    /// Whether it takes jobs.
    pub enabled: bool,
    /// Its capacity.
    pub capacity: i64,
}

fn label(name: &str, info: Option<&NodeInfo>) -> String {
    let Some(i) = info else {
        return format!("{name} (not registered)");
    };
    let mut parts = vec![i.node_type.clone(), i.node_state.clone()];
    if !i.enabled {
        parts.push("disabled".into());
    }
    let runs_jobs = matches!(i.node_type.as_str(), "execution" | "hybrid");
    if runs_jobs && i.node_state == "ready" {
        parts.push(format!("capacity {}", i.capacity));
    }
    format!("{name} ({})", parts.join(", "))
}

/// Breadth-first spanning tree of `start`'s component: children by parent, in name order.
fn spanning_tree(
    start: &str,
    adjacent: &BTreeMap<String, BTreeSet<String>>,
    seen: &mut BTreeSet<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    seen.insert(start.to_string());
    let mut queue = VecDeque::from([start.to_string()]);
    while let Some(n) = queue.pop_front() {
        for m in adjacent.get(&n).into_iter().flatten() {
            if seen.insert(m.clone()) {
                children.entry(n.clone()).or_default().push(m.clone());
                queue.push_back(m.clone());
            }
        }
    }
    children
}

fn draw(
    out: &mut String,
    name: &str,
    prefix: &str,
    children: &BTreeMap<String, Vec<String>>,
    nodes: &BTreeMap<String, NodeInfo>,
) {
    let kids = children.get(name).map(Vec::as_slice).unwrap_or_default();
    for (n, kid) in kids.iter().enumerate() {
        let last = n + 1 == kids.len();
        let (branch, indent) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        out.push_str(&format!("{prefix}{branch}{}\n", label(kid, nodes.get(kid))));
        draw(out, kid, &format!("{prefix}{indent}"), children, nodes);
    }
}

/// The mesh as text: the tree from `root`, links that close cycles, then nodes `root` cannot
/// reach. `links` are (source, target) hostnames; nodes named only by links are drawn too.
pub fn render_tree(
    root: &str,
    nodes: &BTreeMap<String, NodeInfo>,
    links: &[(String, String)],
) -> String {
    let mut adjacent: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in links {
        if a != b {
            adjacent.entry(a.clone()).or_default().insert(b.clone());
            adjacent.entry(b.clone()).or_default().insert(a.clone());
        }
    }
    let mut seen = BTreeSet::new();
    let mut out = format!("{}\n", label(root, nodes.get(root)));
    let mut tree_edges: BTreeSet<(String, String)> = BTreeSet::new();
    let mut record = |children: &BTreeMap<String, Vec<String>>| {
        for (p, kids) in children {
            for k in kids {
                tree_edges.insert(ordered(p, k));
            }
        }
    };
    let children = spanning_tree(root, &adjacent, &mut seen);
    record(&children);
    draw(&mut out, root, "", &children, nodes);

    let everyone: BTreeSet<&String> = nodes.keys().chain(adjacent.keys()).collect();
    let mut unlinked = String::new();
    for name in everyone {
        if seen.contains(name) {
            continue;
        }
        let children = spanning_tree(name, &adjacent, &mut seen);
        record(&children);
        unlinked.push_str(&format!("  {}\n", label(name, nodes.get(name))));
        draw(&mut unlinked, name, "  ", &children, nodes);
    }

    let extra: BTreeSet<(String, String)> = links
        .iter()
        .filter(|(a, b)| a != b)
        .map(|(a, b)| ordered(a, b))
        .filter(|e| !tree_edges.contains(e))
        .collect();
    if !extra.is_empty() {
        out.push_str("\nother links:\n");
        for (a, b) in extra {
            out.push_str(&format!("  {a} — {b}\n"));
        }
    }
    if !unlinked.is_empty() {
        out.push_str(&format!("\nunlinked (not reachable from {root}):\n"));
        out.push_str(&unlinked);
    }
    out
}

fn ordered(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// Runs `meshrun mesh`.
pub async fn run(url: &str, args: MeshArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(url);
    let ping = client.get("/api/v2/ping/").await?;
    let root = ping
        .get("node_id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the coordinator's ping answer names no node_id"))?
        .to_string();
    let instances = list_all(&client).await?;
    let mesh = client.get("/api/v2/mesh_visualizer/").await?;
    let links_json = mesh
        .get("links")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if args.json {
        let doc = json!({"root": root, "instances": instances, "links": links_json});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let nodes = instances
        .iter()
        .map(|i| {
            let info = NodeInfo {
                node_type: text(i, "node_type"),
                node_state: text(i, "node_state"),
                enabled: i.get("enabled").and_then(Value::as_bool).unwrap_or(true),
                capacity: i.get("capacity").and_then(Value::as_i64).unwrap_or(0),
            };
            (text(i, "hostname"), info)
        })
        .collect();
    let links: Vec<(String, String)> = links_json
        .iter()
        .map(|l| (text(l, "source"), text(l, "target")))
        .collect();
    print!("{}", render_tree(&root, &nodes, &links));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(t: &str, s: &str, capacity: i64) -> NodeInfo {
        NodeInfo {
            node_type: t.into(),
            node_state: s.into(),
            enabled: true,
            capacity,
        }
    }

    fn link(a: &str, b: &str) -> (String, String) {
        (a.into(), b.into())
    }

    fn demo_nodes() -> BTreeMap<String, NodeInfo> {
        BTreeMap::from([
            ("control".into(), info("control", "ready", 0)),
            ("hop".into(), info("hop", "ready", 0)),
            ("exec1".into(), info("execution", "ready", 220)),
            ("exec2".into(), info("execution", "unavailable", 0)),
        ])
    }

    #[test]
    fn the_demo_mesh_draws_as_a_tree() {
        let links = [
            link("hop", "control"),
            link("exec1", "hop"),
            link("exec2", "hop"),
        ];
        assert_eq!(
            render_tree("control", &demo_nodes(), &links),
            "control (control, ready)\n\
             └── hop (hop, ready)\n    \
                 ├── exec1 (execution, ready, capacity 220)\n    \
                 └── exec2 (execution, unavailable)\n"
        );
    }

    #[test]
    fn cycles_draw_each_node_once_and_list_the_closing_link() {
        let links = [
            link("control", "hop"),
            link("hop", "exec1"),
            link("hop", "exec2"),
            link("exec1", "exec2"),
            link("exec2", "control"),
            link("hop", "control"),
        ];
        let t = render_tree("control", &demo_nodes(), &links);
        for name in ["hop (", "exec1 (", "exec2 ("] {
            assert_eq!(t.matches(name).count(), 1, "{name} drawn once in\n{t}");
        }
        assert!(
            t.starts_with(
                "control (control, ready)\n\
                 ├── exec2 (execution, unavailable)\n\
                 │   └── exec1 (execution, ready, capacity 220)\n\
                 └── hop (hop, ready)\n"
            ),
            "breadth-first, neighbours in name order:\n{t}"
        );
        assert!(
            t.ends_with("\nother links:\n  exec1 — hop\n  exec2 — hop\n"),
            "{t}"
        );
    }

    #[test]
    fn unreachable_and_unregistered_nodes_are_shown_last() {
        let mut nodes = demo_nodes();
        nodes.insert("lonely".into(), info("execution", "installed", 0));
        let mut disabled = info("execution", "ready", 0);
        disabled.enabled = false;
        nodes.insert("island-a".into(), disabled);
        let links = [
            link("control", "hop"),
            link("hop", "exec1"),
            link("island-a", "island-b"),
        ];
        let t = render_tree("control", &nodes, &links);
        let (tree, rest) = t
            .split_once("\nunlinked (not reachable from control):\n")
            .unwrap();
        assert!(tree.contains("exec1") && !tree.contains("lonely"), "{t}");
        assert_eq!(
            rest,
            "  exec2 (execution, unavailable)\n  \
             island-a (execution, ready, disabled, capacity 0)\n  \
             └── island-b (not registered)\n  \
             lonely (execution, installed)\n"
        );
        assert!(!t.contains("other links"), "{t}");
    }

    #[test]
    fn an_unregistered_root_alone() {
        let t = render_tree("control", &BTreeMap::new(), &[]);
        assert_eq!(t, "control (not registered)\n");
    }
}
