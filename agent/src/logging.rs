//! Tracing set-up. Interactive subcommands log to stderr; worker mode logs only to the
//! agent's log file, because receptor writes a work-command's stderr into the unit's stdout.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

fn filter() -> EnvFilter {
    EnvFilter::try_from_env("MESHRUN_LOG").unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Logs to stderr (for `config` and other interactive subcommands).
pub fn init_stderr() {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Logs to `path` (created with its parent directory if needed). If the file cannot be opened
/// the logs are dropped: writing them to stderr would corrupt the unit's output stream.
pub fn init_file(path: &Path) -> bool {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    match OpenOptions::new().create(true).append(true).open(path) {
        Ok(file) => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .try_init()
            .is_ok(),
        Err(_) => false,
    }
}
