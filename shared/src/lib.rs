//! Building blocks shared by `meshrun-agent` and `meshrun-coordinator`.
//!
//! Everything here is pure logic or a thin protocol client: no global state, no policy about
//! where files live or when things run. The binaries decide that.
//!
//! # Layout
//! - [`capacity`]: AWX's capacity and task-impact arithmetic.
//! - [`node_id`]: the rules a receptor node id must follow, with errors that say which one broke.
//! - [`node_type`]: AWX's node types (control, hybrid, execution, hop) and their work types.
//! - [`receptor_conf`]: a model of `receptor.conf`, a byte-stable renderer for every node type and a
//!   parser for existing files.
//! - [`control_socket`]: an async client for receptor's control socket (`status`, `work ...`).
//! - [`runner_stream`]: the ansible-runner streaming protocol: the controller→worker encoder and a
//!   push-based decoder of worker output, with safe extraction of the zipped directories they carry.
//! - [`join`]: the join token format and the wire types of joining and certificate renewal.
//! - [`worker_info`]: parsing of `worker --worker-info` answers (health checks).

pub mod capacity;
pub mod control_socket;
pub mod join;
pub mod node_id;
pub mod node_type;
pub mod receptor_conf;
pub mod runner_stream;
pub mod worker_info;
