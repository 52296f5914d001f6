//! The JSON replies of receptor's control socket as Rust types.
//!
//! Field names follow what receptor 1.4.8 sends (Go struct field names, PascalCase). Receptor
//! marshals nil maps and slices as `null` and `status` may carry only some fields, so every field
//! defaults when missing or null; unknown fields are ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Reads `null` as the type's default, so Go's nil maps and slices need no special casing.
fn null_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Option::unwrap_or_default)
}

/// The reply to `status`: this node's view of the mesh.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Status {
    /// This node's id.
    #[serde(rename = "NodeID", default, deserialize_with = "null_default")]
    pub node_id: String,
    /// Receptor's version; empty when the binary was built without one.
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
    /// CPUs the Go runtime sees on this node.
    #[serde(rename = "SystemCPUCount", default, deserialize_with = "null_default")]
    pub system_cpu_count: u64,
    /// Total memory of this node in MiB.
    #[serde(rename = "SystemMemoryMiB", default, deserialize_with = "null_default")]
    pub system_memory_mib: u64,
    /// Direct neighbours only.
    #[serde(default, deserialize_with = "null_default")]
    pub connections: Vec<Connection>,
    /// Destination node → next hop: the nodes reachable now.
    #[serde(default, deserialize_with = "null_default")]
    pub routing_table: BTreeMap<String, String>,
    /// The whole link-state graph, node → peer → cost. Never pruned: dead nodes stay in it.
    #[serde(default, deserialize_with = "null_default")]
    pub known_connection_costs: BTreeMap<String, BTreeMap<String, f64>>,
    /// One entry per (node, service); re-sent only every 60 s and never expired.
    #[serde(default, deserialize_with = "null_default")]
    pub advertisements: Vec<Advertisement>,
}

impl Status {
    /// True if `node` is this node or appears in the routing table (reachable now).
    pub fn is_reachable(&self, node: &str) -> bool {
        node == self.node_id || self.routing_table.contains_key(node)
    }

    /// The work command `work_type` as `node` advertises it, if it does.
    pub fn advertised_work_command(&self, node: &str, work_type: &str) -> Option<&WorkCommandAd> {
        self.advertisements
            .iter()
            .filter(|ad| ad.node_id == node)
            .flat_map(|ad| ad.work_commands.iter())
            .find(|wc| wc.work_type == work_type)
    }
}

/// A direct neighbour in [`Status::connections`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Connection {
    /// The neighbour's node id.
    #[serde(rename = "NodeID", default, deserialize_with = "null_default")]
    pub node_id: String,
    /// The link cost.
    #[serde(default, deserialize_with = "null_default")]
    pub cost: f64,
}

/// A service advertisement in [`Status::advertisements`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Advertisement {
    /// The advertising node.
    #[serde(rename = "NodeID", default, deserialize_with = "null_default")]
    pub node_id: String,
    /// The service name, e.g. `control`.
    #[serde(default, deserialize_with = "null_default")]
    pub service: String,
    /// When it was sent, RFC 3339 with nanoseconds, as receptor wrote it.
    #[serde(default, deserialize_with = "null_default")]
    pub time: String,
    /// 0 datagram, 1 stream, 2 stream with TLS (then submits to this node need `tlsclient`).
    #[serde(default, deserialize_with = "null_default")]
    pub conn_type: u8,
    /// Service tags; control services carry `{"type": "Control Service"}`.
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    /// The work types the node offers (`remote` is never listed).
    #[serde(default, deserialize_with = "null_default")]
    pub work_commands: Vec<WorkCommandAd>,
}

/// One advertised work type.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkCommandAd {
    /// The work type name.
    #[serde(default, deserialize_with = "null_default")]
    pub work_type: String,
    /// The node verifies signatures for it: submit with `signwork` exactly when this is true.
    #[serde(default, deserialize_with = "null_default")]
    pub secure: bool,
}

/// The reply to `ping`. A failed ping is a normal answer, not an error.
#[derive(Debug, Clone, PartialEq)]
pub enum PingReply {
    /// The node answered.
    Reached {
        /// The node that answered.
        from: String,
        /// Round-trip time.
        elapsed: Duration,
    },
    /// Receptor reports why not, e.g. `no route to node`, `timeout`.
    Failed {
        /// Receptor's reason.
        error: String,
    },
}

/// The wire form of a ping reply, before it becomes a [`PingReply`].
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RawPing {
    success: bool,
    #[serde(default, deserialize_with = "null_default")]
    from: String,
    #[serde(default, deserialize_with = "null_default")]
    time: u64,
    #[serde(default, deserialize_with = "null_default")]
    error: String,
}

impl From<RawPing> for PingReply {
    fn from(raw: RawPing) -> Self {
        if raw.success {
            Self::Reached {
                from: raw.from,
                elapsed: Duration::from_nanos(raw.time),
            }
        } else {
            Self::Failed { error: raw.error }
        }
    }
}

/// The state of a work unit (receptor's `State` number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitState {
    /// 0: created, waiting for input or a remote start.
    Pending,
    /// 1: the work is running.
    Running,
    /// 2: finished with success.
    Succeeded,
    /// 3: finished with failure (also a unit killed by cancel, until the runner exits).
    Failed,
    /// 4: cancelled.
    Canceled,
    /// Any other number; kept rather than refused so one odd unit cannot break `work list`.
    Unknown(i64),
}

impl UnitState {
    /// Receptor's "complete": Succeeded or Failed only. `work results` ends only in these states.
    pub fn is_complete(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }

    /// The unit will not change any more: complete or Canceled.
    pub fn is_final(self) -> bool {
        self.is_complete() || self == Self::Canceled
    }

    /// Receptor's number for this state.
    pub fn code(self) -> i64 {
        match self {
            Self::Pending => 0,
            Self::Running => 1,
            Self::Succeeded => 2,
            Self::Failed => 3,
            Self::Canceled => 4,
            Self::Unknown(n) => n,
        }
    }

    /// The state for receptor's number.
    pub fn from_code(code: i64) -> Self {
        match code {
            0 => Self::Pending,
            1 => Self::Running,
            2 => Self::Succeeded,
            3 => Self::Failed,
            4 => Self::Canceled,
            n => Self::Unknown(n),
        }
    }
}

impl<'de> Deserialize<'de> for UnitState {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        i64::deserialize(de).map(Self::from_code)
    }
}

impl Serialize for UnitState {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_i64(self.code())
    }
}

/// The reply to `work status`, and each value of `work list`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnitStatus {
    /// The state.
    pub state: UnitState,
    /// Receptor's name for the state (`Pending`, ..., `Unknown: 7`).
    #[serde(default, deserialize_with = "null_default")]
    pub state_name: String,
    /// Free text, e.g. `Running: PID 1234`, `exit status 0`, `Work unit expired on ...`.
    #[serde(default, deserialize_with = "null_default")]
    pub detail: String,
    /// Bytes of stdout so far.
    #[serde(default, deserialize_with = "null_default")]
    pub stdout_size: u64,
    /// The work type; `remote` on the submitting node for units sent to another node.
    #[serde(default, deserialize_with = "null_default")]
    pub work_type: String,
    /// Varies by work type: `{"Pid","Params"}` or null for commands, `RemoteExtraData` for
    /// `remote` units, the string `Unknown WorkType` for units of a removed work type.
    #[serde(default)]
    pub extra_data: serde_json::Value,
}

impl UnitStatus {
    /// For a `remote` unit: one of the string keys it was submitted with (`params`, or an extra
    /// key such as a job tag), from `ExtraData.RemoteParams`. Receptor keeps no such keys for
    /// units run on the node that received the submit.
    pub fn remote_param(&self, key: &str) -> Option<&str> {
        self.extra_data.get("RemoteParams")?.get(key)?.as_str()
    }

    /// For a `remote` unit: the node it runs on.
    pub fn remote_node(&self) -> Option<&str> {
        self.extra_data.get("RemoteNode")?.as_str()
    }
}

/// How receptor answered `work cancel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// `{"cancelled": id}`.
    Cancelled,
    /// `{"cancel pending": id}`: a remote unit whose node could not be told yet.
    Pending,
}

/// How receptor answered `work release` or `work force-release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// `{"released": id}`: the unit is gone.
    Released,
    /// `{"release pending": id}`: a remote unit whose node could not be told yet; receptor keeps
    /// retrying and deletes the local files only after the remote confirms.
    Pending,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `status` reply copied from receptor 1.4.8.
    const REAL_STATUS: &str = r#"{"Advertisements":[{"NodeID":"t1","Service":"control","Time":"2026-11-27T20:29:47.346050088Z","ConnType":1,"Tags":{"type":"Control Service"},"WorkCommands":[{"WorkType":"cat","Secure":false}]}],"Connections":[],"KnownConnectionCosts":{},"NodeID":"t1","RoutingTable":{},"SystemCPUCount":2,"SystemMemoryMiB":24105,"Version":"1.4.8"}"#;

    #[test]
    fn parses_real_status() {
        let s: Status = serde_json::from_str(REAL_STATUS).unwrap();
        assert_eq!(s.node_id, "t1");
        assert_eq!(s.version, "1.4.8");
        assert_eq!(s.system_cpu_count, 2);
        assert_eq!(s.system_memory_mib, 24105);
        assert!(s.connections.is_empty());
        let ad = &s.advertisements[0];
        assert_eq!(ad.node_id, "t1");
        assert_eq!(ad.service, "control");
        assert_eq!(ad.conn_type, 1);
        assert_eq!(ad.time, "2026-11-27T20:29:47.346050088Z");
        assert_eq!(
            ad.tags.as_ref().unwrap().get("type").map(String::as_str),
            Some("Control Service")
        );
        let wc = s.advertised_work_command("t1", "cat").unwrap();
        assert!(!wc.secure);
        assert!(s.advertised_work_command("t1", "dog").is_none());
        assert!(s.advertised_work_command("t2", "cat").is_none());
    }

    #[test]
    fn status_tolerates_nulls_missing_and_unknown_fields() {
        let s: Status = serde_json::from_str(
            r#"{"NodeID":null,"Connections":null,"RoutingTable":null,"KnownConnectionCosts":null,
                "Advertisements":[{"NodeID":"h","Tags":null,"WorkCommands":null,"Extra":1}],
                "Surprise":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(s.node_id, "");
        assert_eq!(s.version, "");
        assert!(s.routing_table.is_empty());
        assert_eq!(s.advertisements[0].tags, None);
        assert!(s.advertisements[0].work_commands.is_empty());
        // `status` with requested_fields returns only some keys.
        let v: Status = serde_json::from_str(r#"{"Version":"1.4.8"}"#).unwrap();
        assert_eq!(v.version, "1.4.8");
    }

    #[test]
    fn status_mesh_fields_and_reachability() {
        let s: Status = serde_json::from_str(
            r#"{"NodeID":"c","Connections":[{"NodeID":"h","Cost":1.5}],
                "RoutingTable":{"h":"h","e":"h"},
                "KnownConnectionCosts":{"c":{"h":1.5},"h":{"c":1.5,"e":1},"gone":{"h":1}}}"#,
        )
        .unwrap();
        assert_eq!(s.connections[0].cost, 1.5);
        assert_eq!(s.known_connection_costs["h"]["e"], 1.0);
        assert!(s.is_reachable("c"));
        assert!(s.is_reachable("e"));
        assert!(!s.is_reachable("gone"));
    }

    #[test]
    fn status_rejects_wrong_types() {
        let err = serde_json::from_str::<Status>(r#"{"SystemCPUCount":"two"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        assert!(
            serde_json::from_str::<Status>(r#"{"Advertisements":[{"ConnType":300}]}"#).is_err()
        );
    }

    #[test]
    fn unit_state_codes_and_predicates() {
        let table = [
            (0, UnitState::Pending, false, false),
            (1, UnitState::Running, false, false),
            (2, UnitState::Succeeded, true, true),
            (3, UnitState::Failed, true, true),
            (4, UnitState::Canceled, false, true),
            (7, UnitState::Unknown(7), false, false),
            (-1, UnitState::Unknown(-1), false, false),
        ];
        for (code, state, complete, fin) in table {
            assert_eq!(UnitState::from_code(code), state);
            assert_eq!(state.code(), code);
            assert_eq!(state.is_complete(), complete, "{state:?}");
            assert_eq!(state.is_final(), fin, "{state:?}");
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(serde_json::from_str::<UnitState>(&json).unwrap(), state);
        }
    }

    #[test]
    fn parses_real_unit_statuses() {
        let running: UnitStatus = serde_json::from_str(
            r#"{"Detail":"Launching command runner","ExtraData":{"Pid":9075,"Params":""},"State":0,"StateName":"Pending","StdoutSize":0,"WorkType":"cat"}"#,
        )
        .unwrap();
        assert_eq!(running.state, UnitState::Pending);
        assert_eq!(running.extra_data["Pid"], 9075);
        assert_eq!(running.remote_param("params"), None);
        let done: UnitStatus = serde_json::from_str(
            r#"{"Detail":"exit status 0","ExtraData":null,"State":2,"StateName":"Succeeded","StdoutSize":5,"WorkType":"cat"}"#,
        )
        .unwrap();
        assert_eq!(done.state, UnitState::Succeeded);
        assert_eq!(done.stdout_size, 5);
        assert_eq!(done.detail, "exit status 0");
        assert!(done.extra_data.is_null());
        let remote: UnitStatus = serde_json::from_str(
            r#"{"Detail":"Work unit expired on Fri Nov 27 20:30:33","ExtraData":{"RemoteNode":"t2","RemoteWorkType":"cat","RemoteParams":{"params":"a b","tag":"job-7"},"RemoteUnitID":"","RemoteStarted":false,"LocalCancelled":false,"LocalReleased":false,"SignWork":false,"TLSClient":"","Expiration":"2026-11-27T20:30:33.08895657Z"},"State":3,"StateName":"Failed","StdoutSize":0,"WorkType":"remote"}"#,
        )
        .unwrap();
        assert_eq!(remote.remote_param("tag"), Some("job-7"));
        assert_eq!(remote.remote_param("params"), Some("a b"));
        assert_eq!(remote.remote_param("nope"), None);
        assert_eq!(remote.remote_node(), Some("t2"));
    }

    #[test]
    fn unit_status_hostile_values() {
        let odd: UnitStatus =
            serde_json::from_str(r#"{"State":9,"ExtraData":"Unknown WorkType","Detail":null}"#)
                .unwrap();
        assert_eq!(odd.state, UnitState::Unknown(9));
        assert_eq!(odd.remote_param("tag"), None);
        assert_eq!(odd.detail, "");
        let err = serde_json::from_str::<UnitStatus>(r#"{"State":2,"StdoutSize":-5}"#).unwrap_err();
        assert!(err.to_string().contains("-5"), "{err}");
        let err = serde_json::from_str::<UnitStatus>(r#"{"Detail":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("State"), "{err}");
        assert!(serde_json::from_str::<UnitStatus>(r#"{"State":"2"}"#).is_err());
        assert!(serde_json::from_str::<UnitStatus>(r#"{"State":2.5}"#).is_err());
    }

    #[test]
    fn ping_replies() {
        let ok: RawPing = serde_json::from_str(
            r#"{"From":"t1","Success":true,"Time":13159,"TimeStr":"13.159µs"}"#,
        )
        .unwrap();
        assert_eq!(
            PingReply::from(ok),
            PingReply::Reached {
                from: "t1".into(),
                elapsed: Duration::from_nanos(13159)
            }
        );
        let bad: RawPing =
            serde_json::from_str(r#"{"Error":"no route to node","Success":false}"#).unwrap();
        assert_eq!(
            PingReply::from(bad),
            PingReply::Failed {
                error: "no route to node".into()
            }
        );
        assert!(serde_json::from_str::<RawPing>(r#"{"From":"t1"}"#).is_err());
    }
}
