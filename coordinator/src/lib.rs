//! meshrun's control plane: the `meshrun-coordinator` service and the `meshrun` CLI.
//!
//! # Layout
//! - [`config`]: the coordinator's config file.
//! - [`control_node`]: the control node's own receptor: keys, receptor.conf, supervision.
//! - [`discovery`]: reads `status` every few seconds and keeps the instances in line with it.
//! - [`deprovision`]: `meshrun instances remove`: drains a node, cancels what still runs at the
//!   deadline, releases its units, deletes it and leaves a tombstone discovery respects.
//! - [`health`]: health checks (`--worker-info` through receptor) and their schedule.
//! - [`pki`]: the mesh CA: node certificates bound to node ids, the API's HTTPS certificate.
//! - [`node_loss`]: jobs whose node was lost, rebooted or went silent end as `error`; their
//!   units are released once the node is back.
//! - [`https`]: the API over TLS, with optional client certificates from the mesh CA.
//! - [`server`]: `run(config, shutdown)`: opens the store, starts the API and the job runner.
//! - [`service_cli`]: the `meshrun-coordinator` command line (parsed by the binary).
//! - [`store`]: SQLite store of jobs and events (migrations in `migrations/`).
//! - [`url_query`]: percent-encoding of query values (page links, CLI requests).
//! - [`project_archive`]: tar + zstd project archives: deterministic packing, hostile-input-safe
//!   unpacking.
//! - [`inventories`]: stored inventories' content: `ansible-inventory --list` import checks and
//!   rendering into inventory text for jobs.
//! - [`projects`]: content-addressed project archives, checked on upload.
//! - [`metrics`]: counters the loops update and `/metrics` renders.
//! - [`mesh`]: what the control node's receptor `status` says about nodes and routes.
//! - [`reaper`]: releases work units no active job needs (ended jobs', unknown jobs', ended
//!   health checks').
//! - [`runner`]: runs one job through receptor: payload, crash-safe submit, results, release.
//! - [`api`]: the HTTP API (AWX-shaped JSON under `/api/v2/`).
//! - [`events_bus`]: tells live followers that a job changed.
//! - [`cli`]: the `meshrun` command line (HTTP client, `transmit`, `process`).
//! - [`ad_hoc_modules`]: which modules ad hoc commands may run.

pub mod ad_hoc_modules;
pub mod api;
pub mod cli;
pub mod config;
pub mod control_node;
pub mod deprovision;
pub mod discovery;
pub mod events_bus;
pub mod health;
pub mod https;
pub mod inventories;
pub mod inventory_hosts;
pub mod mesh;
pub mod metrics;
pub mod node_loss;
pub mod pki;
pub mod project_archive;
pub mod projects;
pub mod reaper;
pub mod runner;
pub mod scheduler;
pub mod scm_url;
pub mod server;
pub mod service_cli;
pub mod store;
pub mod url_query;
