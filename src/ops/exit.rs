//! The exit codes of the one-shot commands, as `docs/cli.md` documents them for pipelines.

/// Done: the rollout finished, the scale happened, the listing was printed.
pub const OK: u8 = 0;
/// Failed, and nothing was rolled back (or rolling back failed too).
pub const FAILED: u8 = 1;
/// The command line or a file it names is wrong (clap uses this code for its own errors too).
pub const USAGE: u8 = 2;
/// The target (Docker host, load balancer socket) could not be reached.
pub const UNREACHABLE: u8 = 3;
/// A health gate failed (or the rollout was aborted or timed out) and the previous revision
/// serves again.
pub const ROLLED_BACK: u8 = 4;
