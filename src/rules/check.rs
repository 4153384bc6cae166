//! `pilothouse rules check FILE|DIR...`: validate rule files and report every error, and what
//! the loader would refuse across the files of one directory (a rule name used twice).
//!
//! Not for loading rules into the autoscaler; that uses [`crate::autoscaler::load_dir`]. This
//! module only reads the same files the same way and says what it found.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Rule;
use crate::autoscaler::engine::is_rule_file;
use crate::config::ConfigError;

/// Check every file, and every `*.yaml` and `*.yml` file of every directory, in sorted order;
/// print `ok FILE (N rules)` to `out` per good file and each error to `err`.
///
/// Returns 0 when every file is good and 1 otherwise.
pub fn run(paths: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let items = files_to_check(paths);
    let mut checked: Vec<Checked> = items
        .iter()
        .filter_map(|item| item.as_ref().ok())
        .map(|path| Checked::load(path.clone()))
        .collect();
    mark_names_used_twice(&mut checked);

    let mut code = 0;
    let mut files = checked.iter();
    for item in &items {
        if let Err(problem) = item {
            code = 1;
            let _ = writeln!(err, "{}", inert(problem));
            continue;
        }
        // One checked file per path, in the same order.
        let Some(file) = files.next() else { break };
        if file.errors.is_empty() {
            let count = file.rules.len();
            let noun = if count == 1 { "rule" } else { "rules" };
            let shown = file.path.display().to_string();
            let _ = writeln!(out, "ok {} ({count} {noun})", inert(&shown));
        } else {
            code = 1;
            for error in &file.errors {
                let _ = writeln!(err, "{}", inert(error));
            }
        }
    }
    code
}

/// One file as checked: its rules when it parsed, and everything wrong with it.
struct Checked {
    path: PathBuf,
    rules: Vec<Rule>,
    errors: Vec<String>,
}

impl Checked {
    fn load(path: PathBuf) -> Checked {
        match super::load_rules(&path) {
            Ok(rules) => Checked {
                path,
                rules,
                errors: Vec::new(),
            },
            Err(errors) => Checked {
                path,
                rules: Vec::new(),
                errors: errors.iter().map(ToString::to_string).collect(),
            },
        }
    }
}

/// The files named, with each directory replaced by its rule files (sorted, as the loader reads
/// them; drafts such as `web.yaml.draft` are not rule files). A directory that cannot be read
/// or holds no rule file is a problem, so that a check of the wrong directory cannot pass.
fn files_to_check(paths: &[PathBuf]) -> Vec<Result<PathBuf, String>> {
    let mut items = Vec::new();
    for path in paths {
        if !path.is_dir() {
            items.push(Ok(path.clone()));
            continue;
        }
        match rule_files_in(path) {
            Ok(found) if found.is_empty() => items.push(Err(format!(
                "{}: no rule files (*.yaml, *.yml) in this directory",
                path.display()
            ))),
            Ok(found) => items.extend(found.into_iter().map(Ok)),
            Err(source) => items.push(Err(ConfigError::Read {
                path: path.clone(),
                source,
            }
            .to_string())),
        }
    }
    items
}

/// The rule files directly in `dir`, sorted.
fn rule_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if is_rule_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Add an error to each file that uses a rule name an earlier file of the same directory
/// already used: the loader reads a directory's files in sorted order and skips such a rule.
///
/// Only files the loader reads count (`*.yaml`, `*.yml`); a file named twice is one file.
fn mark_names_used_twice(checked: &mut [Checked]) {
    let mut by_dir: HashMap<PathBuf, Vec<(PathBuf, usize)>> = HashMap::new();
    for (index, file) in checked.iter().enumerate() {
        if !is_rule_file(&file.path) {
            continue;
        }
        // The directory's real path, so `rules/` and `./rules/` are one; the file keeps its
        // own name, since the loader reads a link in the directory as a file of it.
        let (Some(parent), Some(name)) = (file.path.parent(), file.path.file_name()) else {
            continue;
        };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let Ok(dir) = std::fs::canonicalize(parent) else {
            continue;
        };
        let real = dir.join(name);
        let files = by_dir.entry(dir).or_default();
        if !files.iter().any(|(seen, _)| *seen == real) {
            files.push((real, index));
        }
    }
    for mut files in by_dir.into_values() {
        files.sort();
        let mut first_use: HashMap<String, usize> = HashMap::new();
        for (_, index) in files {
            let names: Vec<String> = checked[index]
                .rules
                .iter()
                .map(|r| r.name.clone())
                .collect();
            for name in names {
                match first_use.get(&name) {
                    Some(&earlier) => {
                        let message = format!(
                            "{}: rule `{name}` is already defined in {}; the loader keeps that \
                             one and skips this one",
                            checked[index].path.display(),
                            checked[earlier].path.display()
                        );
                        checked[index].errors.push(message);
                    }
                    None => {
                        first_use.insert(name, index);
                    }
                }
            }
        }
    }
}

/// `text` with nothing in it that a terminal would act on, for a message that quotes a file,
/// a path or a name: the C0 controls and DEL become their control pictures (ESC shows as `␛`,
/// so an escape sequence is seen as text, not obeyed), and the C1 controls and the bidi
/// overrides and isolates become U+FFFD, as [`crate::text`] shows them.
pub(crate) fn inert(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| match u32::from(c) {
                // In range: C0 controls map onto U+2400..U+241F.
                code @ 0..=0x1f => char::from_u32(0x2400 + code).unwrap_or('\u{fffd}'),
                0x7f => '\u{2421}',
                _ if needs_escape(c) => '\u{fffd}',
                _ => c,
            })
            .collect(),
    )
}

/// Whether a terminal could act on `c`, or it could reorder the text around it.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_pictures_and_c1_and_bidi_become_replacement_characters() {
        assert_eq!(inert("web"), "web");
        assert!(matches!(inert("shop/web → 5"), Cow::Borrowed(_)));
        assert_eq!(
            inert("evil\u{1b}[31mRED\u{1b}]0;pwned\u{7}\t\n\u{7f}"),
            "evil␛[31mRED␛]0;pwned␇␉␊␡"
        );
        assert_eq!(
            inert("a\u{9b}31mb\u{202e}c\u{2066}d"),
            "a\u{fffd}31mb\u{fffd}c\u{fffd}d"
        );
    }
}
