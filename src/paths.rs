//! Where Pilothouse keeps its files: the config, data and state directories.
//!
//! The directories come from the platform conventions (XDG on Linux) through the `directories`
//! crate, and each one can be overridden by an environment variable so that tests and packagers
//! can point Pilothouse anywhere. This module only computes paths; it never creates or reads
//! files (see `fsutil` for writing and `config` for reading).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use directories::ProjectDirs;

use crate::config::ConfigError;

/// Environment variable that replaces the config directory (`config.toml`, themes, keymaps).
pub const CONFIG_DIR_VAR: &str = "PILOTHOUSE_CONFIG_DIR";
/// Environment variable that replaces the data directory (the application's own log file).
pub const DATA_DIR_VAR: &str = "PILOTHOUSE_DATA_DIR";
/// Environment variable that replaces the state directory (audit log, revision history).
pub const STATE_DIR_VAR: &str = "PILOTHOUSE_STATE_DIR";

/// The three directories Pilothouse uses; construct it directly in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Holds `config.toml`, `themes/`, `keymaps/` and `rules/`.
    pub config_dir: PathBuf,
    /// Holds the application's own log file.
    pub data_dir: PathBuf,
    /// Holds the audit log and other state that is not configuration.
    pub state_dir: PathBuf,
}

impl Paths {
    /// `config`, `data` and `state` folders under one root, as tests and scripts use.
    pub fn under(root: &Path) -> Paths {
        Paths {
            config_dir: root.join("config"),
            data_dir: root.join("data"),
            state_dir: root.join("state"),
        }
    }

    /// Platform directories, each replaced by its `PILOTHOUSE_*_DIR` variable when that is set.
    pub fn from_env() -> Result<Paths, ConfigError> {
        let project = ProjectDirs::from("", "", "pilothouse");
        Paths::from_lookup(|name| std::env::var_os(name), project.as_ref())
    }

    /// The same as [`Paths::from_env`] with the environment and the platform directories given.
    fn from_lookup(
        env: impl Fn(&str) -> Option<OsString>,
        project: Option<&ProjectDirs>,
    ) -> Result<Paths, ConfigError> {
        let override_of = |name: &str| {
            env(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        let config_dir = match override_of(CONFIG_DIR_VAR) {
            Some(dir) => dir,
            None => project_dir(project, CONFIG_DIR_VAR, |p| p.config_dir().to_path_buf())?,
        };
        let data_dir = match override_of(DATA_DIR_VAR) {
            Some(dir) => dir,
            None => project_dir(project, DATA_DIR_VAR, |p| p.data_dir().to_path_buf())?,
        };
        let state_dir = match override_of(STATE_DIR_VAR) {
            Some(dir) => dir,
            None => project_dir(project, STATE_DIR_VAR, default_state_dir)?,
        };
        Ok(Paths {
            config_dir,
            data_dir,
            state_dir,
        })
    }

    /// `config.toml` in the config directory.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// The user's theme files (`NAME.toml`), each a partial patch over a built-in theme.
    pub fn themes_dir(&self) -> PathBuf {
        self.config_dir.join("themes")
    }

    /// The user's keymap files (`NAME.toml`), each merged over the built-in keymap.
    pub fn keymaps_dir(&self) -> PathBuf {
        self.config_dir.join("keymaps")
    }

    /// The scaling rules (`*.yaml`).
    pub fn rules_dir(&self) -> PathBuf {
        self.config_dir.join("rules")
    }

    /// The audit log of actions and decisions, as JSON lines.
    pub fn audit_log(&self) -> PathBuf {
        self.state_dir.join("audit.jsonl")
    }

    /// The application's own log, which never goes to the terminal.
    pub fn log_file(&self) -> PathBuf {
        self.data_dir.join("pilothouse.log")
    }
}

/// One platform directory, or the error that says which variable to set instead.
fn project_dir(
    project: Option<&ProjectDirs>,
    variable: &'static str,
    pick: impl Fn(&ProjectDirs) -> PathBuf,
) -> Result<PathBuf, ConfigError> {
    project
        .map(pick)
        .ok_or(ConfigError::NoHomeDirectory { variable })
}

/// The platform state directory, or `state` under the data directory where the platform has none
/// (macOS and Windows).
fn default_state_dir(project: &ProjectDirs) -> PathBuf {
    match project.state_dir() {
        Some(dir) => dir.to_path_buf(),
        None => project.data_dir().join("state"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn overrides_replace_every_directory_without_a_home() {
        let env = env_of(&[
            (CONFIG_DIR_VAR, "/tmp/ph/config"),
            (DATA_DIR_VAR, "/tmp/ph/data"),
            (STATE_DIR_VAR, "/tmp/ph/state"),
        ]);
        let paths = Paths::from_lookup(env, None).unwrap();
        assert_eq!(paths.config_dir, PathBuf::from("/tmp/ph/config"));
        assert_eq!(paths.data_dir, PathBuf::from("/tmp/ph/data"));
        assert_eq!(paths.state_dir, PathBuf::from("/tmp/ph/state"));
    }

    #[test]
    fn no_home_and_no_override_names_the_variable_to_set() {
        let env = env_of(&[(CONFIG_DIR_VAR, "/tmp/ph/config"), (DATA_DIR_VAR, "")]);
        let err = Paths::from_lookup(env, None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(DATA_DIR_VAR), "{text}");
        assert!(text.contains("home directory"), "{text}");
    }

    #[test]
    fn platform_directories_are_used_where_no_override_is_set() {
        let Some(project) = ProjectDirs::from("", "", "pilothouse") else {
            // No home directory on this machine: the other test covers that branch.
            return;
        };
        let env = env_of(&[(STATE_DIR_VAR, "/tmp/ph/state")]);
        let paths = Paths::from_lookup(env, Some(&project)).unwrap();
        assert_eq!(paths.config_dir, project.config_dir());
        assert_eq!(paths.data_dir, project.data_dir());
        assert_eq!(paths.state_dir, PathBuf::from("/tmp/ph/state"));
    }

    #[test]
    fn helpers_place_each_file_in_its_directory() {
        let paths = Paths {
            config_dir: PathBuf::from("/c"),
            data_dir: PathBuf::from("/d"),
            state_dir: PathBuf::from("/s"),
        };
        assert_eq!(paths.config_file(), PathBuf::from("/c/config.toml"));
        assert_eq!(paths.themes_dir(), PathBuf::from("/c/themes"));
        assert_eq!(paths.keymaps_dir(), PathBuf::from("/c/keymaps"));
        assert_eq!(paths.rules_dir(), PathBuf::from("/c/rules"));
        assert_eq!(paths.audit_log(), PathBuf::from("/s/audit.jsonl"));
        assert_eq!(paths.log_file(), PathBuf::from("/d/pilothouse.log"));
    }
}
