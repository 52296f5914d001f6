//! The coordinator's store: jobs and their events in SQLite (schema by migrations).
//!
//! Instances are written by optimistic read-modify-write (see `instances`). Every job status change is a conditional update (`... WHERE status IN (expected)`), so two loops
//! writing one job can never silently overwrite each other; events and the byte offset they were
//! parsed up to are written in one transaction, so a restart resumes exactly after them.

mod api_tokens;
mod cancel;
mod deprovision;
mod groups;
mod instances;
mod inventories;
mod jobs;
mod join_tokens;
mod scm_projects;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use api_tokens::{ApiToken, TOKEN_PREFIX, TokenError, TokenRole, token_hash, well_formed};
pub use cancel::CancelRequest;
pub use deprovision::{Deprovision, DeprovisionCount, RemovedNode};
pub use groups::{GroupChange, InstanceGroup};
pub use instances::{
    HealthCheckRecord, INSTANCE_ORDER_FIELDS, Instance, InstanceFilter, Link, NewInstance,
    NodeState,
};
pub use inventories::{HostRow, Inventory, NewInventory};
pub use jobs::{
    EventRow, JOB_ORDER_FIELDS, Job, JobFilter, JobKind, JobStatus, NewJob, NodeLoad, Page,
    StatusChange,
};
pub use join_tokens::{
    JoinOutcome, JoinRecord, JoinTokenRow, NewJoinToken, NewNodeCert, NodeCert, RenewOutcome,
};
pub use scm_projects::{NewProject, Project, ScmType};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The database file.
        path: String,
        /// What went wrong.
        source: sqlx::Error,
    },
    /// Migrations failed.
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored value is not what the code expects (a corrupt or foreign database).
    #[error("database holds an invalid {what}: {value:?}")]
    Invalid {
        /// Which field.
        what: &'static str,
        /// The value found.
        value: String,
    },
}

/// The current time as stored (RFC 3339, microseconds, UTC).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let url = format!("sqlite://{}", path.display());
        let opts = SqliteConnectOptions::from_str(&url)
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
