//! The meshrun node agent, installed on execution and hop nodes.
//!
//! # Layout
//! - [`cli`]: the command line (`config`, `run`, `worker`) and exit codes.
//! - [`capacity`]: the node's capacity report (`worker --worker-info`): cgroup-aware CPU and
//!   memory minus the node's reservation, and every reason the node cannot run jobs.
//! - [`join`]: `meshrun-agent join`: self-registration with a join token (key, CSR, files).
//! - [`settings`]: the agent's own config file (`/etc/meshrun/agent.toml`).
//! - [`config_cmd`]: renders `receptor.conf` for a node with the shared renderer.
//! - [`run`]: the node's service: writes receptor.conf from the settings and supervises receptor.
//! - [`worker`]: the work-command receptor runs for each unit: it runs `ansible-runner worker`
//!   and guarantees the unit's output is a well-formed ansible-runner stream.
//! - [`logging`]: tracing set-up; in worker mode nothing may reach stderr, because receptor
//!   merges a work-command's stderr into the unit's stdout.

pub mod byte_size;
pub mod capacity;
pub mod cli;
pub mod config_cmd;
pub mod join;
pub mod logging;
pub mod run;
pub mod settings;
pub mod worker;
