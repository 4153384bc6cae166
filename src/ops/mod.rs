//! One-shot commands for pipelines and scripts: connect to one target, do one thing, exit with a
//! code a pipeline can branch on. `scale` and `status` live here, with the target connection
//! that `rollout`, `rollback` and `history` share (see [`target`]).
//!
//! Not for the console or the daemon, which keep workers connected; these connect once.
//! What they print is documented in `docs/cli.md`; field names of `--output json` are stable.

pub mod exit;
pub mod scale;
pub mod status;
pub mod target;

use serde::Serialize;

use crate::cli::Command;
use crate::config::Config;
use crate::paths::Paths;
use crate::platform::kubernetes::Selection;

pub use target::{Failure, Target};

/// Runs `scale` or `status`; the exit code. `config.read_only` already holds `--read-only`.
/// A Kubernetes context chosen in `kube` (`--context` or `--kubeconfig`) is scaled or listed
/// too (see [`crate::rollout::kube_cli`]).
pub async fn run(command: Command, paths: &Paths, config: &Config, kube: &Selection) -> u8 {
    if crate::rollout::kube_cli::chosen(kube) {
        return crate::rollout::kube_cli::run(command, paths, config, kube).await;
    }
    match command {
        Command::Scale {
            target,
            replicas,
            output,
        } => scale::run(&target, replicas, output, paths, config.read_only, config).await,
        Command::Status {
            docker_host,
            target,
            output,
        } => {
            status::run(
                docker_host.as_deref(),
                target.as_deref(),
                output,
                paths,
                config,
            )
            .await
        }
        _ => {
            eprintln!("pilothouse: this command is not one of scale and status");
            exit::USAGE
        }
    }
}

/// `value` as one line of JSON that a terminal shows as text: serde_json escapes the C0
/// controls, and this escapes what it leaves raw (DEL, the C1 controls, the bidi overrides and
/// isolates), which can only stand inside strings, where the escape means the same character.
pub fn json_line<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap_or_else(|e| {
        // Only a map with non-string keys fails to encode, and none of ours has one.
        format!("{{\"error\":\"cannot encode the output: {e}\"}}")
    });
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if matches!(c, '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes `text` and a newline to stdout; a reader that went away (`| head`) is not an error.
pub fn print_out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
}

/// Says on stderr why the command stopped, and gives its exit code.
pub fn report(failure: &Failure) -> u8 {
    eprintln!("pilothouse: {}", failure.message);
    failure.code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_escape_what_a_terminal_would_act_on() {
        let line = json_line(&serde_json::json!({"name": "a\u{1b}[2J\u{9b}b\u{202e}c\u{7f}"}));
        assert_eq!(line, r#"{"name":"a\u001b[2J\u009bb\u202ec\u007f"}"#);
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["name"], "a\u{1b}[2J\u{9b}b\u{202e}c\u{7f}");
    }
}
