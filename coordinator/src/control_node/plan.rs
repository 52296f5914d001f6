//! The control node's `[control_node]` settings turned into the agent's [`RunPlan`]: the
//! receptor.conf entries the coordinator owns (rendered by the shared renderer) and where
//! receptor's binary, config, data, socket, log and PID file are. Pure: nothing is read or written.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use meshrun_agent::run::plan::RunPlan;
use meshrun_shared::node_id::NodeId;
use meshrun_shared::node_type::NodeType;
use meshrun_shared::receptor_conf::{ConfError, ListenSpec, NodeConfigSpec, TlsFiles, node_config};

use crate::config::ControlNodeSettings;

/// receptor's stdout and stderr, in the coordinator's data dir.
pub const RECEPTOR_LOG_NAME: &str = "receptor.log";
/// The PID of the receptor the coordinator started, in the coordinator's data dir. A coordinator
/// that was killed leaves its receptor running; the next start stops that one through this file.
pub const PID_FILE_NAME: &str = "receptor.pid";

/// Why the settings cannot drive the control node's receptor.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A setting has a value receptor or meshrun cannot use.
    #[error("control_node.{field}: {reason}")]
    Invalid {
        /// The setting, under `control_node`.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The renderer refused a value (its message names the field).
    #[error("control_node: {0}")]
    Render(#[source] ConfError),
    /// receptor cannot be run from `control_node.receptor`.
    #[error("control_node.receptor: {0} is not an executable file")]
    Binary(PathBuf),
}

/// The plan for `settings`, with the control socket at `socket` and the log and PID file in
/// `state_dir` (the coordinator's data dir).
pub fn run_plan(
    settings: &ControlNodeSettings,
    socket: &Path,
    state_dir: &Path,
    tls: Option<TlsFiles>,
) -> Result<RunPlan, PlanError> {
    let mut spec = node_spec(settings, socket)?;
    spec.tls = tls;
    let owned = node_config(&spec).map_err(PlanError::Render)?;
    if !is_executable_file(&settings.receptor) {
        return Err(PlanError::Binary(settings.receptor.clone()));
    }
    Ok(RunPlan {
        owned,
        binary: settings.receptor.clone(),
        config: settings.receptor_config.clone(),
        data_dir: settings.data_dir.clone(),
        socket: socket.to_path_buf(),
        receptor_log: state_dir.join(RECEPTOR_LOG_NAME),
        state_dir: state_dir.to_path_buf(),
        pid_file: state_dir.join(PID_FILE_NAME),
    })
}

/// The renderer's input: a control or hybrid node that listens, runs `local` work with
/// `meshrun-agent --config <agent_config> worker`, signs work and verifies its own `local` work.
pub fn node_spec(
    settings: &ControlNodeSettings,
    socket: &Path,
) -> Result<NodeConfigSpec, PlanError> {
    let invalid = |field, reason: String| PlanError::Invalid { field, reason };
    let node_type = match settings.node_type.parse::<NodeType>() {
        Ok(t @ (NodeType::Control | NodeType::Hybrid)) => t,
        _ => {
            return Err(invalid(
                "node_type",
                format!("must be control or hybrid, got {:?}", settings.node_type),
            ));
        }
    };
    let id = NodeId::new(settings.node_id.as_str())
        .map_err(|e| invalid("node_id", format!("{:?}: {e}", settings.node_id)))?;
    let agent_config = settings.agent_config.to_str().ok_or_else(|| {
        invalid(
            "agent_config",
            format!("{:?} is not valid UTF-8", settings.agent_config),
        )
    })?;
    // receptor splits params like a shell; a space would cut the path in two.
    if agent_config.chars().any(char::is_whitespace) {
        return Err(invalid(
            "agent_config",
            format!("{agent_config:?} contains white space, which receptor's params cannot carry"),
        ));
    }
    let mut spec = NodeConfigSpec::new(node_type, id, &settings.data_dir, socket, &settings.agent);
    spec.listen = Some(ListenSpec {
        port: settings.listen_port,
        bindaddr: settings.listen_bind.clone(),
    });
    spec.worker_params = format!("--config {agent_config} worker");
    spec.log_level = settings.log_level.clone();
    spec.work_signing_key = Some(settings.work_signing_key.clone());
    spec.work_verification_key = Some(settings.work_verification_key.clone());
    Ok(spec)
}

/// True for a regular file someone may execute.
pub fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use meshrun_shared::receptor_conf::{Entry, FirewallAction};

    use super::*;

    fn settings(node_type: &str) -> ControlNodeSettings {
        ControlNodeSettings {
            node_id: "control".into(),
            node_type: node_type.into(),
            receptor: "/bin/sh".into(),
            receptor_config: "/etc/receptor/receptor.conf".into(),
            data_dir: "/var/lib/receptor".into(),
            listen_port: 27199,
            listen_bind: Some("127.0.0.1".into()),
            agent: "/usr/bin/meshrun-agent".into(),
            agent_config: "/etc/meshrun/agent.toml".into(),
            work_signing_key: "/etc/meshrun/keys/work.key".into(),
            work_verification_key: "/etc/meshrun/keys/work.pub".into(),
            log_level: "info".into(),
            mesh_tls: true,
        }
    }

    const SOCKET: &str = "/run/receptor/receptor.sock";

    #[test]
    fn a_control_node_listens_signs_verifies_its_local_work_and_shuts_its_control_service() {
        let plan = run_plan(
            &settings("control"),
            Path::new(SOCKET),
            Path::new("/var/lib/meshrun/coordinator"),
            None,
        )
        .unwrap();
        assert_eq!(plan.binary, PathBuf::from("/bin/sh"));
        assert_eq!(
            plan.pid_file,
            PathBuf::from("/var/lib/meshrun/coordinator/receptor.pid")
        );
        let node = plan.owned.node().unwrap();
        assert_eq!(node.id.as_ref().unwrap(), "control");
        let rule = &node.firewallrules[0];
        assert_eq!(rule.action, FirewallAction::Reject);
        assert_eq!(rule.tonode.as_deref(), Some("control"));
        assert_eq!(rule.toservice.as_deref(), Some("control"));
        let wc = plan.owned.work_commands().next().unwrap();
        assert_eq!(wc.worktype, "local");
        assert_eq!(wc.command, "/usr/bin/meshrun-agent");
        assert_eq!(
            wc.params.as_deref(),
            Some("--config /etc/meshrun/agent.toml worker")
        );
        assert_eq!(wc.verifysignature, Some(true));
        let has = |f: fn(&Entry) -> bool| plan.owned.entries.iter().any(f);
        assert!(has(
            |e| matches!(e, Entry::TcpListener(l) if l.port == 27199
            && l.bindaddr.as_deref() == Some("127.0.0.1"))
        ));
        assert!(has(
            |e| matches!(e, Entry::WorkSigning(s) if s.privatekey == "/etc/meshrun/keys/work.key")
        ));
        assert!(has(
            |e| matches!(e, Entry::WorkVerification(v) if v.publickey == "/etc/meshrun/keys/work.pub")
        ));
        assert!(!has(|e| matches!(e, Entry::LocalOnly)));
    }

    #[test]
    fn with_tls_the_listener_requires_client_certs_and_the_control_service_stays_plain() {
        let tls = TlsFiles {
            ca: "/pki/ca.crt".into(),
            cert: "/pki/control-node.crt".into(),
            key: "/pki/control-node.key".into(),
        };
        let plan = run_plan(
            &settings("control"),
            Path::new(SOCKET),
            Path::new("/tmp"),
            Some(tls),
        )
        .unwrap();
        let has = |f: fn(&Entry) -> bool| plan.owned.entries.iter().any(f);
        assert!(has(|e| matches!(e, Entry::TlsServer(s)
            if s.requireclientcert == Some(true) && s.clientcas.as_deref() == Some("/pki/ca.crt"))));
        assert!(has(|e| matches!(e, Entry::TlsClient(c)
            if c.rootcas.as_deref() == Some("/pki/ca.crt")
            && c.cert.as_deref() == Some("/pki/control-node.crt"))));
        assert!(has(
            |e| matches!(e, Entry::TcpListener(l) if l.tls.as_deref() == Some("tls_server"))
        ));
        assert!(has(
            |e| matches!(e, Entry::ControlService(c) if c.tls.is_none())
        ));
    }

    #[test]
    fn a_hybrid_node_renders_like_a_control_node() {
        let control = node_spec(&settings("control"), Path::new(SOCKET)).unwrap();
        let hybrid = node_spec(&settings("hybrid"), Path::new(SOCKET)).unwrap();
        assert_eq!(hybrid.node_type, NodeType::Hybrid);
        assert_eq!(
            NodeConfigSpec {
                node_type: NodeType::Control,
                ..hybrid
            },
            control
        );
    }

    #[test]
    fn bad_settings_are_refused_naming_the_setting() {
        type Change = fn(&mut ControlNodeSettings);
        let cases: [(Change, &str); 6] = [
            (
                |s| s.node_type = "execution".into(),
                "control_node.node_type",
            ),
            (|s| s.node_id = "localhost".into(), "control_node.node_id"),
            (|s| s.listen_port = 0, "listen.port"),
            (|s| s.log_level = "loud".into(), "log_level"),
            (
                |s| s.agent_config = "/etc/my meshrun/agent.toml".into(),
                "control_node.agent_config",
            ),
            (
                |s| s.receptor = "/nonexistent/receptor".into(),
                "/nonexistent/receptor",
            ),
        ];
        for (change, needle) in cases {
            let mut s = settings("control");
            change(&mut s);
            let e = run_plan(&s, Path::new(SOCKET), Path::new("/tmp"), None).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }
}
