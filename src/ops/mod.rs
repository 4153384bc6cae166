//! One-shot commands for pipelines and scripts: connect to one target, do one thing, exit with a
//! code a pipeline can branch on.
//!
//! Not for the console or the daemon, which keep workers connected; these connect once.

pub mod exit;
pub mod target;

use crate::cli::Command;
use crate::config::Config;
use crate::paths::Paths;

/// Runs `scale` or `status`; the exit code.
pub async fn run(command: Command, _paths: &Paths, _config: &Config) -> u8 {
    eprintln!("pilothouse: {command:?} is not built yet");
    exit::FAILED
}
