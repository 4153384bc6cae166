//! `pilothouse rollout`, `rollback` and `history` (placeholder).

use crate::cli::Command;
use crate::config::Config;
use crate::ops::exit;
use crate::paths::Paths;

/// Runs `rollout`, `rollback` or `history`; the exit code.
pub async fn run(command: Command, _paths: &Paths, _config: &Config) -> u8 {
    eprintln!("pilothouse: {command:?} is not built yet");
    exit::FAILED
}
