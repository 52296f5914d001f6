//! What a unit in `work list` says about who submitted it: a remote unit carries the submit's
//! extra keys (`meshrun_job=<id>`, `meshrun_health_check=<node>`); a local command unit shows
//! its params (`--private-data-dir=/tmp/meshrun_<id>_<rand>` for jobs, `--worker-info` for
//! health checks) only while its process runs, since receptor clears them when it exits.

use meshrun_shared::control_socket::UnitStatus;
use meshrun_shared::node_type::WORK_TYPE_LOCAL;

use crate::health::check::HEALTH_TAG_KEY;
use crate::runner::JOB_TAG_KEY;

/// The private data dir prefix job submits put in their params.
const JOB_DIR_PREFIX: &str = "--private-data-dir=/tmp/meshrun_";

/// Who a unit says it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Submitted for this job (by its tag, or the private data dir its params name).
    Job(i64),
    /// A health check.
    HealthCheck,
    /// A unit of meshrun's own `local` work type that no longer shows its params (its process
    /// exited): a job is found only by the unit id it recorded; otherwise it was a health
    /// check of the control node (or a local submit that never got recorded).
    LocalEnded,
    /// Nothing marks it as meshrun's: left alone.
    Foreign,
}

/// Reads `status`'s claim.
pub fn claim(status: &UnitStatus) -> Claim {
    if let Some(tag) = status.remote_param(JOB_TAG_KEY) {
        return tag.trim().parse().map(Claim::Job).unwrap_or(Claim::Foreign);
    }
    if status.remote_param(HEALTH_TAG_KEY).is_some() {
        return Claim::HealthCheck;
    }
    let params = status
        .remote_param("params")
        .or_else(|| status.extra_data.get("Params").and_then(|p| p.as_str()));
    if let Some(params) = params {
        if let Some(id) = job_in_params(params) {
            return Claim::Job(id);
        }
        if status.work_type == WORK_TYPE_LOCAL
            && params.split_whitespace().any(|p| p == "--worker-info")
        {
            return Claim::HealthCheck;
        }
        return Claim::Foreign;
    }
    if status.work_type == WORK_TYPE_LOCAL && status.state.is_final() {
        return Claim::LocalEnded;
    }
    Claim::Foreign
}

/// The job id in `--private-data-dir=/tmp/meshrun_<id>_<rand>`.
fn job_in_params(params: &str) -> Option<i64> {
    params.split_whitespace().find_map(|p| {
        let rest = p.strip_prefix(JOB_DIR_PREFIX)?;
        let (id, _) = rest.split_once('_')?;
        id.parse().ok().filter(|id| *id > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unit(work_type: &str, state: i64, extra: serde_json::Value) -> UnitStatus {
        serde_json::from_value(json!({
            "State": state, "StateName": "x", "Detail": "", "StdoutSize": 0,
            "WorkType": work_type, "ExtraData": extra,
        }))
        .unwrap()
    }

    #[test]
    fn remote_units_are_claimed_by_their_tags() {
        let job = unit(
            "remote",
            1,
            json!({"RemoteNode": "exec1", "RemoteParams": {"meshrun_job": "17", "params": "--private-data-dir=/tmp/meshrun_17_ab12cd34 --delete"}}),
        );
        assert_eq!(claim(&job), Claim::Job(17));
        let check = unit(
            "remote",
            2,
            json!({"RemoteParams": {"meshrun_health_check": "exec1", "params": "--worker-info"}}),
        );
        assert_eq!(claim(&check), Claim::HealthCheck);
        let bad_tag = unit("remote", 2, json!({"RemoteParams": {"meshrun_job": "x"}}));
        assert_eq!(claim(&bad_tag), Claim::Foreign);
        let untagged = unit(
            "remote",
            2,
            json!({"RemoteParams": {"params": "--private-data-dir=/tmp/awx_42_abc"}}),
        );
        assert_eq!(claim(&untagged), Claim::Foreign);
    }

    #[test]
    fn local_units_are_claimed_by_their_params_while_they_run() {
        let job = unit(
            "local",
            1,
            json!({"Pid": 10, "Params": "worker --private-data-dir=/tmp/meshrun_5_0a1b2c3d --delete"}),
        );
        assert_eq!(claim(&job), Claim::Job(5));
        let check = unit(
            "local",
            1,
            json!({"Pid": 10, "Params": "worker --worker-info"}),
        );
        assert_eq!(claim(&check), Claim::HealthCheck);
        // Params cleared once the process exited.
        assert_eq!(claim(&unit("local", 2, json!(null))), Claim::LocalEnded);
        assert_eq!(claim(&unit("local", 1, json!(null))), Claim::Foreign);
        // Another work type on the control node is not ours.
        assert_eq!(claim(&unit("cat", 2, json!(null))), Claim::Foreign);
        let other = unit(
            "local",
            1,
            json!({"Pid": 10, "Params": "--private-data-dir=/tmp/meshrun_x_1"}),
        );
        assert_eq!(claim(&other), Claim::Foreign);
    }
}
