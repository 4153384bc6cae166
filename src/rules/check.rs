//! `pilothouse rules check FILE...`: validate rule files and report every error.
//!
//! Not for loading rules into the autoscaler; that uses [`super::load_rules`] directly.

use std::io::Write;
use std::path::PathBuf;

/// Check every file; print `ok FILE (N rules)` to `out` per good file and each error to `err`.
///
/// Returns 0 when every file is good and 1 otherwise.
pub fn run(files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let mut code = 0;
    for file in files {
        match super::load_rules(file) {
            Ok(rules) => {
                let noun = if rules.len() == 1 { "rule" } else { "rules" };
                let _ = writeln!(out, "ok {} ({} {noun})", file.display(), rules.len());
            }
            Err(errors) => {
                code = 1;
                for error in errors {
                    let _ = writeln!(err, "{error}");
                }
            }
        }
    }
    code
}
