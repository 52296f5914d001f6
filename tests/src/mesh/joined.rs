//! Nodes that join the mesh the way an operator's would: `meshrun-agent join --no-start` with a
//! join token from the coordinator's API, then `meshrun-agent run`, which renders receptor.conf
//! (mutual TLS on every link) and supervises receptor. Such a node is a [`Node`] whose process
//! is the agent rather than receptor itself.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

use super::{Mesh, Node, agent_config};
use crate::env;
use crate::procs::Proc;

/// The files of a node that joins.
#[derive(Debug, Clone)]
pub struct JoinedFiles {
    /// Its folder (also the join's `--config-dir`).
    pub dir: PathBuf,
    /// agent.toml.
    pub agent_toml: PathBuf,
    /// The mesh CA the join wrote.
    pub ca: PathBuf,
    /// Its certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The control socket of its receptor.
    pub socket: PathBuf,
    /// receptor.conf `run` writes.
    pub receptor_conf: PathBuf,
    /// The agent's stderr (`run`).
    pub run_log: PathBuf,
}

impl Mesh {
    /// The files node `name` joins with (nothing is written).
    pub fn joined_files(&self, name: &str) -> JoinedFiles {
        let dir = self.dir().join(name);
        JoinedFiles {
            agent_toml: dir.join("agent.toml"),
            ca: dir.join("tls/ca.crt"),
            cert: dir.join("tls/node.crt"),
            key: dir.join("tls/node.key"),
            socket: dir.join("run/receptor.sock"),
            receptor_conf: dir.join("receptor.conf"),
            run_log: dir.join("agent-run.log"),
            dir,
        }
    }

    /// A join token from `POST /api/v2/join_tokens/` with `body` (`node_type`, `ttl`, `uses`).
    pub fn join_token(&self, body: &Value) -> String {
        let (status, made) = crate::api::post(self, "/api/v2/join_tokens/", body);
        assert_eq!(status.as_u16(), 201, "join token: {made}");
        made["token"].as_str().expect("token text").to_string()
    }

    /// A join token for `node_type` with the defaults (1 h, one use).
    pub fn join_token_for(&self, node_type: &str) -> String {
        self.join_token(&json!({ "node_type": node_type }))
    }

    /// Writes node `name`'s base agent.toml (host-mode worker, receptor paths in its folder,
    /// `agent_extra` appended) unless it exists, then runs `meshrun-agent join --no-start` with
    /// `token` and `args`; returns the command's output.
    pub fn join_node(&self, name: &str, token: &str, args: &[&str], agent_extra: &str) -> Output {
        let f = self.joined_files(name);
        std::fs::create_dir_all(&f.dir).expect("node dir");
        if !f.agent_toml.exists() {
            let extra = format!(
                "{agent_extra}\n[receptor]\nbinary = \"{receptor}\"\nconfig = \"{conf}\"\n\
                 data_dir = \"{d}/receptor-data\"\nsocket = \"{socket}\"\n",
                receptor = env::receptor().display(),
                conf = f.receptor_conf.display(),
                d = f.dir.display(),
                socket = f.socket.display(),
            );
            std::fs::write(&f.agent_toml, agent_config(name, &f.dir, false, &extra))
                .expect("agent.toml");
        }
        let mut cmd = Command::new(env::bin("meshrun-agent"));
        cmd.args([
            "join",
            "--coordinator",
            self.api(),
            "--token",
            token,
            "--id",
            name,
        ])
        .arg("--config-dir")
        .arg(&f.dir)
        .arg("--no-start")
        .args(args);
        cmd.output().expect("meshrun-agent join")
    }

    /// Starts `meshrun-agent run` for the joined node `name` (listening on `port`, if it does).
    pub fn start_joined(&mut self, name: &str, port: Option<u16>) {
        let f = self.joined_files(name);
        let mut cmd = Command::new(env::bin("meshrun-agent"));
        cmd.arg("--config").arg(&f.agent_toml).arg("run");
        let proc = Proc::spawn(&format!("meshrun-agent run ({name})"), &mut cmd, &f.run_log);
        self.nodes.insert(
            name.to_string(),
            Node {
                name: name.to_string(),
                dir: f.dir.clone(),
                socket: f.socket.clone(),
                port,
                receptor: Some(proc),
                conf: f.receptor_conf.clone(),
                starts: 1,
                cgroup: None,
                // Joined nodes hold a mesh certificate for their own id.
                tls: super::NodeTls::Mesh,
            },
        );
    }
}
