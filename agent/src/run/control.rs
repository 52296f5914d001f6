//! The one control-socket command `run` sends: `reload`, bounded in time.

use std::path::Path;
use std::time::Duration;

use meshrun_shared::control_socket::{ControlClient, ControlError};

/// How long connecting, the greeting and the reply may take together. A reload stops and
/// starts every backend, which takes well under a second on a healthy node.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The control socket failed or receptor refused (the message says which).
    #[error("control socket {path}: {source}")]
    Control {
        /// The socket.
        path: String,
        /// What went wrong.
        source: ControlError,
    },
    /// No complete answer in time.
    #[error("control socket {path}: no answer to reload within {after:?}")]
    Timeout {
        /// The socket.
        path: String,
        /// The limit.
        after: Duration,
    },
}

/// Asks the receptor at `socket` to reload its config file.
pub async fn reload(socket: &Path, limit: Duration) -> Result<(), ReloadError> {
    let path = socket.display().to_string();
    let attempt = async {
        let mut client = ControlClient::connect_unix(socket).await?;
        client.reload().await
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(result) => result.map_err(|source| ReloadError::Control { path, source }),
        Err(_) => Err(ReloadError::Timeout { path, after: limit }),
    }
}
