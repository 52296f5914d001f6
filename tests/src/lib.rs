//! Integration-test harness: real receptor meshes, a real coordinator and real agents on
//! loopback, plus the paths of the real ansible-runner venv.
//!
//! # Layout
//! - [`api`]: the coordinator's REST API as tests call it (status codes kept, jobs, groups).
//! - [`env`]: where the binaries, receptor and the venv are (from `MESHRUN_*` variables set by
//!   the Makefile, else the repository's `.tools/` and `.venv/`).
//! - [`stream`]: decoding ansible-runner streams in assertions.
//! - [`procs`]: child processes that are always stopped (only those this harness started), and
//!   finding what a job left running.
//! - [`netns`]: network namespaces for nodes, joined to the root namespace by veth pairs.
//! - [`link_proxy`]: a TCP proxy per link that can add latency or cut the link.
//! - [`mesh`]: a builder for meshes of control, hop and execution nodes, and a running coordinator.
//! - [`node_kill`]: a node's processes in a cgroup of their own, killed all at once with its
//!   labelled containers.
//! - [`hostile`]: hostile archives and streams, and a sandbox proving what a refused input
//!   did not write.
//! - [`wait`]: `eventually` — poll a condition until a deadline instead of sleeping.

pub mod api;
pub mod env;
pub mod hostile;
pub mod link_proxy;
pub mod mesh;
pub mod netns;
pub mod node_kill;
pub mod procs;
pub mod stream;
pub mod wait;
