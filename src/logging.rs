//! The app's own log: tracing to a file in the data directory, never to the terminal the
//! console owns; for the daemon, JSON lines on stdout.
//!
//! Not for the audit log, which records actions in the state directory.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Environment variable holding the log filter, e.g. `debug` or `pilothouse=debug`.
pub const LOG_ENV: &str = "PILOTHOUSE_LOG";

/// Start logging to `file` (appending); keep the guard alive until exit so lines are flushed.
pub fn init(file: &Path) -> std::io::Result<WorkerGuard> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let handle = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    let (writer, guard) = tracing_appender::non_blocking(handle);
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .init();
    Ok(guard)
}

/// Log JSON lines to stdout, one object per event, for the daemon under systemd or a container
/// runtime; the same filter variable applies.
pub fn init_json_stdout() {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        // Events name their Docker target `target`; the module path would clash with it.
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .init();
}
