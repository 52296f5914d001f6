//! AWX's node types and what each means for receptor work types.

use std::fmt;
use std::str::FromStr;

/// The role a node plays in the mesh, as AWX names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    /// Runs the coordinator; offers work type `local` for control-plane work only.
    Control,
    /// A control node that also runs user-space jobs through `local`.
    Hybrid,
    /// Runs jobs through work type `ansible-runner`.
    Execution,
    /// Relays mesh traffic only; runs no work.
    Hop,
}

/// The work type offered by execution nodes.
pub const WORK_TYPE_EXECUTION: &str = "ansible-runner";
/// The work type offered by control and hybrid nodes.
pub const WORK_TYPE_LOCAL: &str = "local";

impl NodeType {
    /// All node types, in AWX's order.
    pub const ALL: [NodeType; 4] = [
        NodeType::Control,
        NodeType::Hybrid,
        NodeType::Execution,
        NodeType::Hop,
    ];

    /// The lowercase name used in configs, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Control => "control",
            NodeType::Hybrid => "hybrid",
            NodeType::Execution => "execution",
            NodeType::Hop => "hop",
        }
    }

    /// The receptor work type this node offers, if any.
    pub fn work_type(self) -> Option<&'static str> {
        match self {
            NodeType::Control | NodeType::Hybrid => Some(WORK_TYPE_LOCAL),
            NodeType::Execution => Some(WORK_TYPE_EXECUTION),
            NodeType::Hop => None,
        }
    }

    /// Whether user-space jobs (playbooks, ad hoc commands) may run on this node.
    pub fn runs_user_jobs(self) -> bool {
        matches!(self, NodeType::Hybrid | NodeType::Execution)
    }
}

impl fmt::Display for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node type name that is not one of `control`, `hybrid`, `execution`, `hop`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown node type {0:?}: expected control, hybrid, execution or hop")]
pub struct UnknownNodeType(pub String);

impl FromStr for NodeType {
    type Err = UnknownNodeType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownNodeType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for t in NodeType::ALL {
            assert_eq!(t.as_str().parse::<NodeType>().unwrap(), t);
        }
        let err = "worker".parse::<NodeType>().unwrap_err();
        assert!(err.to_string().contains("\"worker\""));
    }

    #[test]
    fn work_types_follow_awx() {
        assert_eq!(NodeType::Execution.work_type(), Some("ansible-runner"));
        assert_eq!(NodeType::Control.work_type(), Some("local"));
        assert_eq!(NodeType::Hybrid.work_type(), Some("local"));
        assert_eq!(NodeType::Hop.work_type(), None);
        assert!(!NodeType::Control.runs_user_jobs());
        assert!(NodeType::Hybrid.runs_user_jobs());
    }
}
