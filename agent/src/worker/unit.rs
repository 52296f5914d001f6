//! Who this worker runs for: receptor sets no unit-id variable, but the unit's stdin is the
//! file `<datadir>/<node id>/<unit id>/stdin`, so both ids can be read from `/proc/self/fd/0`.

use std::path::{Path, PathBuf};

use meshrun_shared::node_id::NodeId;

/// The node and unit a worker process serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitIdentity {
    /// The node id (from the agent config, else from the unit's directory).
    pub node_id: Option<NodeId>,
    /// receptor's unit id, or a local stand-in when stdin is not a unit file.
    pub unit_id: String,
    /// receptor's directory of this unit (`<datadir>/<node>/<unit>`), when stdin is its file.
    pub unit_dir: Option<PathBuf>,
}

/// Reads `(node id, unit id)` from the path of a unit's stdin file.
pub fn ids_from_stdin_path(path: &Path) -> Option<(NodeId, String)> {
    if path.file_name()? != "stdin" {
        return None;
    }
    let unit_dir = path.parent()?;
    let unit = unit_dir.file_name()?.to_str()?;
    let node = unit_dir.parent()?.file_name()?.to_str()?;
    let unit_ok =
        !unit.is_empty() && unit.len() <= 64 && unit.chars().all(|c| c.is_ascii_alphanumeric());
    if !unit_ok {
        return None;
    }
    Some((NodeId::new(node).ok()?, unit.to_string()))
}

impl UnitIdentity {
    /// Works out the identity of the current process.
    pub fn current(configured_node: Option<NodeId>) -> Self {
        let stdin = std::fs::read_link("/proc/self/fd/0").ok();
        let from_stdin = stdin.as_deref().and_then(ids_from_stdin_path);
        match (from_stdin, stdin) {
            (Some((node, unit)), Some(path)) => UnitIdentity {
                node_id: configured_node.or(Some(node)),
                unit_id: unit,
                unit_dir: path.parent().map(Path::to_path_buf),
            },
            _ => UnitIdentity {
                node_id: configured_node,
                unit_id: format!("local{}", std::process::id()),
                unit_dir: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_files_name_node_and_unit() {
        let (node, unit) =
            ids_from_stdin_path(Path::new("/var/lib/receptor/exec1/Ab3dE9xZ/stdin")).unwrap();
        assert_eq!(node.as_str(), "exec1");
        assert_eq!(unit, "Ab3dE9xZ");
    }

    #[test]
    fn other_paths_are_not_units() {
        for p in [
            "/dev/null",
            "/d/exec1/../stdin",
            "/d/bad id/u1/stdin",
            "/d/n/u-1/stdin",
            "/d/localhost/u1/stdin",
            "pipe:[123]",
        ] {
            assert_eq!(ids_from_stdin_path(Path::new(p)), None, "{p}");
        }
    }
}
