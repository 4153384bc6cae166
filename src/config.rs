//! `config.toml`: the settings a user keeps, and the one error type for every file they keep.
//!
//! This module reads and validates the config file into [`Config`]; every key has a default, so a
//! missing or empty file is valid, while an unknown key or a bad value is an error naming the file,
//! the line, the column and the key. [`ConfigError`] is shared with the theme and keymap loaders,
//! which use the span helpers here. It does not connect to anything: a Docker host listed here is
//! only a name and an address until a platform worker opens it.

use std::fmt::Display;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use toml::Spanned;

use crate::paths::Paths;

/// Everything that can go wrong reading `config.toml`, a theme or a keymap.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong type, an unknown key or a bad value.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        /// The file that failed.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        column: usize,
        /// What is wrong, without the position.
        message: String,
        /// The parser's own error, which also shows the offending line.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The file parsed, but a value is not allowed (an unknown scope, a duplicate name...).
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The file that failed.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        column: usize,
        /// What is wrong and which key holds it.
        message: String,
    },
    /// `theme = NAME` names neither a built-in theme nor a file in the themes directory.
    #[error(
        "no theme named `{name}`: it is not built in ({builtin}) and {} does not exist",
        path.display()
    )]
    UnknownTheme {
        /// The name asked for.
        name: String,
        /// The user file that was looked for.
        path: PathBuf,
        /// The built-in names, comma separated.
        builtin: String,
    },
    /// `keymap = NAME` is not `default` and names no file in the keymaps directory.
    #[error("no keymap named `{name}`: it is not `default` and {} does not exist", path.display())]
    UnknownKeymap {
        /// The name asked for.
        name: String,
        /// The user file that was looked for.
        path: PathBuf,
    },
    /// There is no home directory to derive a directory from, and its override is not set.
    #[error("cannot find a home directory to keep Pilothouse's files in; set {variable}")]
    NoHomeDirectory {
        /// The `PILOTHOUSE_*_DIR` variable that would fix it.
        variable: &'static str,
    },
}

impl ConfigError {
    /// A TOML error from parsing `text` (the contents of `path`), placed at its line and column.
    pub(crate) fn from_toml(path: &Path, text: &str, err: toml::de::Error) -> ConfigError {
        // A toml error without a span is rare (an error raised after the whole document was
        // read); the start of the file is the honest position for it.
        let offset = err.span().map_or(0, |span| span.start);
        let (line, column) = line_column(text, offset);
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: err.message().trim_end().to_string(),
            source: Box::new(err),
        }
    }

    /// A validation error at byte `span` of `text` (the contents of `path`).
    pub(crate) fn invalid(
        path: &Path,
        text: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = line_column(text, span.start);
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// The 1-based line and column (counted in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The contents of `path`, or `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether `name` can be a theme, keymap or target name: letters, digits, `.`, `_`, `-`.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The whole of `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Built-in `dark`, `light` or `high-contrast`, or `themes/NAME.toml` in the config directory.
    #[serde(deserialize_with = "theme_name")]
    pub theme: String,
    /// `keymaps/NAME.toml` in the config directory, merged over the built-in `default`.
    #[serde(deserialize_with = "keymap_name")]
    pub keymap: String,
    /// Refuse every action (scale, restart...) at the actuator.
    pub read_only: bool,
    /// Docker hosts, as written; use [`Config::docker_targets`] for the ones to connect to.
    pub docker: Vec<DockerTarget>,
    /// Log buffer limits.
    pub logs: LogsConfig,
    /// Drawing settings.
    pub ui: UiConfig,
    /// The autoscaler's defaults.
    pub autoscaler: AutoscalerConfig,
    /// The load balancer that rollouts keep in step.
    pub loadbalancer: LoadBalancerConfig,
    /// Kubernetes contexts to open.
    pub kubernetes: KubernetesConfig,
}

/// The `[kubernetes]` table. Without it (and without `--kubeconfig` / `--context`), the console
/// opens the current context of the kubeconfig when there is one (`KUBECONFIG`, or
/// `~/.kube/config`), as kubectl would.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Kubernetes off altogether: no kubeconfig is read.
    pub disabled: bool,
    /// A kubeconfig to read instead of `KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The contexts to open side by side (default: the current one); `["*"]` opens every one.
    pub contexts: Vec<String>,
    /// Only this namespace (default: the context's namespace, else all).
    pub namespace: Option<String>,
    /// The Prometheus server that pod CPU and memory are read from, for every context opened,
    /// instead of metrics-server; no default, so metrics-server is read unless one is named.
    #[serde(deserialize_with = "kube_prometheus")]
    pub prometheus: Option<String>,
    /// The instant query for each pod's CPU in cores, one series per pod labelled `namespace`
    /// and `pod` (default: [`DEFAULT_POD_CPU_QUERY`]); only with `prometheus`.
    #[serde(deserialize_with = "pod_cpu_query")]
    pub pod_cpu_query: Option<String>,
    /// The instant query for each pod's memory in bytes, labelled as the CPU query's (default:
    /// [`DEFAULT_POD_MEMORY_QUERY`]); only with `prometheus`.
    #[serde(deserialize_with = "pod_memory_query")]
    pub pod_memory_query: Option<String>,
}

/// Each pod's CPU in cores from the cAdvisor metrics the kubelet exposes (the pod-level and
/// pause-container series left out, as their usage is already in the containers').
pub const DEFAULT_POD_CPU_QUERY: &str = "sum by (namespace, pod) \
     (rate(container_cpu_usage_seconds_total{container!=\"\", container!=\"POD\", pod!=\"\"}[1m]))";

/// Each pod's working-set memory in bytes from cAdvisor, the figure the kubelet evicts by and
/// metrics-server reports.
pub const DEFAULT_POD_MEMORY_QUERY: &str = "sum by (namespace, pod) \
     (container_memory_working_set_bytes{container!=\"\", container!=\"POD\", pod!=\"\"})";

impl KubernetesConfig {
    /// The CPU query in effect: the one given, else [`DEFAULT_POD_CPU_QUERY`].
    pub fn pod_cpu_query(&self) -> &str {
        self.pod_cpu_query
            .as_deref()
            .unwrap_or(DEFAULT_POD_CPU_QUERY)
    }

    /// The memory query in effect: the one given, else [`DEFAULT_POD_MEMORY_QUERY`].
    pub fn pod_memory_query(&self) -> &str {
        self.pod_memory_query
            .as_deref()
            .unwrap_or(DEFAULT_POD_MEMORY_QUERY)
    }
}

/// The `[loadbalancer]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadBalancerConfig {
    /// HAProxy's runtime API: a socket path (`/run/haproxy/admin.sock`, `unix:/path`) or
    /// `tcp://ADDRESS:PORT`; no default, so nothing is touched unless it is named.
    pub haproxy_socket: Option<String>,
}

/// The `[autoscaler]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoscalerConfig {
    /// Run the rules while the console is open; `false` leaves scaling to a daemon.
    pub enabled: bool,
    /// The Prometheus server for rules without a `serverAddress`; no default, so a rule never
    /// reads from a server nobody named.
    #[serde(deserialize_with = "server_address")]
    pub prometheus: Option<String>,
    /// Where the console and the daemon take the lock that keeps two autoscalers off one Docker
    /// host; both must use the same directory (default: `locks/` in the state directory).
    pub lock_dir: Option<std::path::PathBuf>,
}

/// One `[[docker]]` entry: a named Docker host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerTarget {
    /// The target's name in the UI and in `:host NAME`; unique among targets.
    #[serde(deserialize_with = "target_name")]
    pub name: String,
    /// `unix://`, `tcp://` or `http://` address; `None` means `DOCKER_HOST` or the default socket.
    #[serde(default, deserialize_with = "docker_host")]
    pub host: Option<String>,
}

/// The `[logs]` table: how much of a log is kept and shown.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Lines kept per log view before the oldest are dropped (at least 100).
    #[serde(deserialize_with = "max_lines")]
    pub max_lines: usize,
    /// Bytes kept per log view before the oldest lines are dropped (at least 64 KiB).
    #[serde(deserialize_with = "max_bytes")]
    pub max_bytes: usize,
    /// Lines fetched when a log view opens; the buffer still keeps at most `max_lines`.
    pub tail: usize,
    /// Columns shown of one line (at least 16); the whole line stays in the buffer for search.
    #[serde(deserialize_with = "max_line_display")]
    pub max_line_display: usize,
}

/// The `[ui]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Redraw cap in frames per second (1 to 120); nothing is drawn while nothing changes.
    #[serde(deserialize_with = "frame_rate")]
    pub frame_rate: u32,
    /// Points kept per replica for the CPU and memory sparklines (2 to 3600).
    #[serde(deserialize_with = "stats_history")]
    pub stats_history: usize,
}

/// The target used when `config.toml` lists no `[[docker]]` host.
pub const LOCAL_TARGET: &str = "local";

impl Default for Config {
    fn default() -> Config {
        Config {
            theme: "dark".to_string(),
            keymap: "default".to_string(),
            read_only: false,
            docker: Vec::new(),
            logs: LogsConfig::default(),
            ui: UiConfig::default(),
            autoscaler: AutoscalerConfig::default(),
            loadbalancer: LoadBalancerConfig::default(),
            kubernetes: KubernetesConfig::default(),
        }
    }
}

impl Default for AutoscalerConfig {
    fn default() -> AutoscalerConfig {
        AutoscalerConfig {
            enabled: true,
            prometheus: None,
            lock_dir: None,
        }
    }
}

impl Default for LogsConfig {
    fn default() -> LogsConfig {
        LogsConfig {
            max_lines: 10_000,
            max_bytes: 8 * 1024 * 1024,
            tail: 200,
            max_line_display: 4096,
        }
    }
}

impl Default for UiConfig {
    fn default() -> UiConfig {
        UiConfig {
            frame_rate: 30,
            stats_history: 60,
        }
    }
}

impl Config {
    /// Reads `config.toml` from the config directory; a missing file gives the defaults.
    pub fn load(paths: &Paths) -> Result<Config, ConfigError> {
        let path = paths.config_file();
        match read_optional(&path)? {
            Some(text) => Config::parse(&path, &text),
            None => Ok(Config::default()),
        }
    }

    /// Parses and validates `text`, the contents of `path` (used only in error messages).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|err| ConfigError::from_toml(path, text, err))?;
        check_unique_target_names(path, text, &config.docker)?;
        check_pod_queries_have_a_server(path, text, &config.kubernetes)?;
        Ok(config)
    }

    /// The Docker hosts to connect to: those listed, or one named `local` when none is.
    pub fn docker_targets(&self) -> Vec<DockerTarget> {
        match self.implicit_docker_target() {
            Some(name) => vec![DockerTarget {
                name: name.to_string(),
                host: None,
            }],
            None => self.docker.clone(),
        }
    }

    /// The name of the target [`Config::docker_targets`] adds on its own when no `[[docker]]`
    /// entry is written; `None` when there are entries.
    pub fn implicit_docker_target(&self) -> Option<&'static str> {
        self.docker.is_empty().then_some(LOCAL_TARGET)
    }
}

/// Refuses a second `[[docker]]` entry with a name already used, pointing at the second one.
fn check_unique_target_names(
    path: &Path,
    text: &str,
    targets: &[DockerTarget],
) -> Result<(), ConfigError> {
    let Some(index) = (1..targets.len()).find(|&i| {
        targets[..i]
            .iter()
            .any(|earlier| earlier.name == targets[i].name)
    }) else {
        return Ok(());
    };
    let span = docker_name_span(text, index).unwrap_or(0..0);
    let message = format!(
        "`docker.name`: the name `{}` is already used by an earlier [[docker]] entry; \
         each target needs its own name",
        targets[index].name
    );
    Err(ConfigError::invalid(path, text, span, message))
}

/// Where the name of the `index`th `[[docker]]` entry is written in `text`.
fn docker_name_span(text: &str, index: usize) -> Option<Range<usize>> {
    #[derive(Deserialize)]
    struct Names {
        #[serde(default)]
        docker: Vec<Name>,
    }
    #[derive(Deserialize)]
    struct Name {
        name: Spanned<String>,
    }
    // This second, lenient pass cannot fail where the strict one succeeded; `None` only makes the
    // error point at the start of the file.
    let names: Names = toml::from_str(text).ok()?;
    names.docker.get(index).map(|entry| entry.name.span())
}

/// Refuses `pod_cpu_query` or `pod_memory_query` without `prometheus`, which would be ignored.
fn check_pod_queries_have_a_server(
    path: &Path,
    text: &str,
    kubernetes: &KubernetesConfig,
) -> Result<(), ConfigError> {
    if kubernetes.prometheus.is_some() {
        return Ok(());
    }
    let key = match (&kubernetes.pod_cpu_query, &kubernetes.pod_memory_query) {
        (Some(_), _) => "pod_cpu_query",
        (None, Some(_)) => "pod_memory_query",
        (None, None) => return Ok(()),
    };
    let span = kubernetes_key_span(text, key).unwrap_or(0..0);
    let message = format!(
        "`kubernetes.{key}` is set but `kubernetes.prometheus` is not; name the Prometheus \
         server to run it on (pod CPU and memory come from metrics-server without one)"
    );
    Err(ConfigError::invalid(path, text, span, message))
}

/// Where the value of `key` in the `[kubernetes]` table is written in `text`.
fn kubernetes_key_span(text: &str, key: &str) -> Option<Range<usize>> {
    #[derive(Deserialize)]
    struct Tables {
        kubernetes: std::collections::BTreeMap<String, Spanned<toml::Value>>,
    }
    // As in `docker_name_span`, a lenient second pass: `None` only moves the error's position.
    let tables: Tables = toml::from_str(text).ok()?;
    tables.kubernetes.get(key).map(Spanned::span)
}

/// A number that must lie in `min..=max`, with an error that names its key and unit.
fn bounded<'de, D, T>(
    deserializer: D,
    key: &str,
    min: T,
    max: Option<T>,
    unit: &str,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + Display,
{
    let value = T::deserialize(deserializer)?;
    match max {
        Some(max) if value < min || value > max => Err(D::Error::custom(format!(
            "`{key}` must be from {min} to {max} {unit}, not {value}"
        ))),
        None if value < min => Err(D::Error::custom(format!(
            "`{key}` must be at least {min} {unit}, not {value}"
        ))),
        _ => Ok(value),
    }
}

fn frame_rate<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    bounded(
        deserializer,
        "ui.frame_rate",
        1,
        Some(120),
        "frames per second",
    )
}

fn stats_history<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    bounded(deserializer, "ui.stats_history", 2, Some(3600), "points")
}

fn max_lines<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    bounded(deserializer, "logs.max_lines", 100, None, "lines")
}

fn max_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    bounded(
        deserializer,
        "logs.max_bytes",
        64 * 1024,
        None,
        "bytes (64 KiB)",
    )
}

fn max_line_display<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    bounded(deserializer, "logs.max_line_display", 16, None, "columns")
}

/// A file name stem or a target name, with an error that names its key.
fn plain_name<'de, D: Deserializer<'de>>(deserializer: D, key: &str) -> Result<String, D::Error> {
    let name = String::deserialize(deserializer)?;
    if is_plain_name(&name) {
        Ok(name)
    } else {
        Err(D::Error::custom(format!(
            "`{key}` must be a plain name of letters, digits, `.`, `_` and `-`, not {name:?}"
        )))
    }
}

fn theme_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    plain_name(deserializer, "theme")
}

fn keymap_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    plain_name(deserializer, "keymap")
}

fn target_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    plain_name(deserializer, "docker.name")
}

/// The address schemes a Docker host may use.
const DOCKER_SCHEMES: [&str; 3] = ["unix://", "tcp://", "http://"];

fn server_address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let address = String::deserialize(deserializer)?;
    match url::Url::parse(&address) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(Some(address)),
        _ => Err(D::Error::custom(format!(
            "`autoscaler.prometheus` {address:?} must be an http:// or https:// URL, \
             such as http://127.0.0.1:9090"
        ))),
    }
}

fn kube_prometheus<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let address = String::deserialize(deserializer)?;
    match crate::metrics::prometheus::check_address(&address) {
        Ok(()) => Ok(Some(address)),
        Err(err) => Err(D::Error::custom(format!("`kubernetes.prometheus`: {err}"))),
    }
}

/// A PromQL query that is not blank, with an error that names its key.
fn query_text<'de, D: Deserializer<'de>>(
    deserializer: D,
    key: &str,
) -> Result<Option<String>, D::Error> {
    let query = String::deserialize(deserializer)?;
    if query.trim().is_empty() {
        return Err(D::Error::custom(format!(
            "`{key}` is empty; give a PromQL query, or leave the key out for the default"
        )));
    }
    Ok(Some(query))
}

fn pod_cpu_query<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    query_text(deserializer, "kubernetes.pod_cpu_query")
}

fn pod_memory_query<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    query_text(deserializer, "kubernetes.pod_memory_query")
}

fn docker_host<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let host = String::deserialize(deserializer)?;
    let rest = DOCKER_SCHEMES
        .iter()
        .find_map(|scheme| host.strip_prefix(scheme));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(Some(host)),
        Some(_) => Err(D::Error::custom(format!(
            "`docker.host` {host:?} has a scheme but no address after it"
        ))),
        None => Err(D::Error::custom(format!(
            "`docker.host` {host:?} must start with unix://, tcp:// or http:// \
             (for example unix:///var/run/docker.sock)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/cfg/config.toml"), text)
    }

    fn error_text(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn a_missing_file_gives_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            config_dir: dir.path().join("none"),
            data_dir: dir.path().into(),
            state_dir: dir.path().into(),
        };
        assert_eq!(Config::load(&paths).unwrap(), Config::default());
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = Config::default();
        assert_eq!(config.theme, "dark");
        assert_eq!(config.keymap, "default");
        assert!(!config.read_only);
        assert_eq!(config.logs.max_lines, 10_000);
        assert_eq!(config.logs.max_bytes, 8_388_608);
        assert_eq!(config.logs.tail, 200);
        assert_eq!(config.logs.max_line_display, 4096);
        assert_eq!(config.ui.frame_rate, 30);
        assert_eq!(config.ui.stats_history, 60);
    }

    #[test]
    fn a_partial_table_keeps_the_defaults_of_the_keys_it_omits() {
        let config = parse("[logs]\ntail = 50\n").unwrap();
        assert_eq!(config.logs.tail, 50);
        assert_eq!(config.logs.max_lines, 10_000);
    }

    #[test]
    fn no_docker_entry_means_one_local_target_from_the_environment() {
        let targets = Config::default().docker_targets();
        assert_eq!(
            targets,
            vec![DockerTarget {
                name: "local".into(),
                host: None
            }]
        );
    }

    #[test]
    fn listed_docker_targets_replace_the_implicit_local_one() {
        let config = parse(
            "[[docker]]\nname = \"edge\"\nhost = \"tcp://10.0.0.5:2375\"\n\
             [[docker]]\nname = \"box\"\nhost = \"unix:///run/docker.sock\"\n",
        )
        .unwrap();
        let names: Vec<_> = config
            .docker_targets()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["edge", "box"]);
    }

    #[test]
    fn an_unknown_key_is_an_error_at_its_line_and_column() {
        let text = error_text("theme = \"dark\"\n[ui]\n  fram_rate = 10\n");
        assert!(
            text.starts_with("/cfg/config.toml:3:3: unknown field `fram_rate`"),
            "{text}"
        );
    }

    #[test]
    fn a_frame_rate_out_of_range_names_the_key_and_the_range() {
        let text = error_text("[ui]\nframe_rate = 500\n");
        assert_eq!(
            text,
            "/cfg/config.toml:2:14: `ui.frame_rate` must be from 1 to 120 frames per second, not 500"
        );
    }

    #[test]
    fn a_small_byte_limit_names_the_key() {
        let text = error_text("[logs]\nmax_bytes = 1024\n");
        assert!(
            text.starts_with("/cfg/config.toml:2:13: `logs.max_bytes` must be at least"),
            "{text}"
        );
    }

    #[test]
    fn a_duplicate_target_name_points_at_the_second_entry() {
        let text = error_text(
            "[[docker]]\nname = \"a\"\n\n[[docker]]\nname = \"b\"\n[[docker]]\nname = \"a\"\n",
        );
        assert!(
            text.starts_with("/cfg/config.toml:7:8: `docker.name`: the name `a`"),
            "{text}"
        );
    }

    #[test]
    fn a_docker_host_without_a_known_scheme_is_refused() {
        let text = error_text("[[docker]]\nname = \"a\"\nhost = \"ssh://box\"\n");
        assert!(
            text.starts_with("/cfg/config.toml:3:8: `docker.host` \"ssh://box\" must start"),
            "{text}"
        );
    }

    #[test]
    fn a_theme_name_that_is_a_path_is_refused() {
        let text = error_text("theme = \"../../etc/passwd\"\n");
        assert!(
            text.starts_with("/cfg/config.toml:1:9: `theme` must be a plain name"),
            "{text}"
        );
    }

    #[test]
    fn a_wrong_type_is_an_error_at_the_value() {
        let text = error_text("read_only = \"yes\"\n");
        assert!(
            text.starts_with("/cfg/config.toml:1:13: invalid type"),
            "{text}"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(line_column("é = 1\nñ = x", 10), (2, 3));
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("abc", 99), (1, 4));
    }

    #[test]
    fn kubernetes_pod_usage_from_prometheus_takes_its_address_and_queries() {
        let config = parse(
            "[kubernetes]\nprometheus = \"http://127.0.0.1:9090\"\n\
             pod_memory_query = \"sum by (namespace, pod) (my_pod_bytes)\"\n",
        )
        .unwrap();
        let kubernetes = &config.kubernetes;
        assert_eq!(
            kubernetes.prometheus.as_deref(),
            Some("http://127.0.0.1:9090")
        );
        assert_eq!(kubernetes.pod_cpu_query(), DEFAULT_POD_CPU_QUERY);
        assert_eq!(
            kubernetes.pod_memory_query(),
            "sum by (namespace, pod) (my_pod_bytes)"
        );
        assert!(
            DEFAULT_POD_CPU_QUERY
                .starts_with("sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{"),
            "{DEFAULT_POD_CPU_QUERY}"
        );
    }

    #[test]
    fn without_kubernetes_prometheus_pod_usage_comes_from_metrics_server() {
        let config = parse("[kubernetes]\nnamespace = \"shop\"\n").unwrap();
        assert_eq!(config.kubernetes.prometheus, None);
    }

    #[test]
    fn a_kubernetes_prometheus_that_is_not_an_http_url_names_the_key() {
        let text = error_text("[kubernetes]\nprometheus = \"127.0.0.1:9090\"\n");
        assert!(
            text.starts_with(
                "/cfg/config.toml:2:14: `kubernetes.prometheus`: invalid metric server address \
                 \"127.0.0.1:9090\": it does not start with http:// or https://"
            ),
            "{text}"
        );
        let text = error_text("[kubernetes]\nprometheus = \"http://h:9090/?q=1\"\n");
        assert!(text.contains("query string"), "{text}");
    }

    #[test]
    fn a_pod_query_without_a_prometheus_server_is_refused_where_it_is_written() {
        let text = error_text("[kubernetes]\ncontexts = [\"a\"]\npod_cpu_query = \"up\"\n");
        assert!(
            text.starts_with(
                "/cfg/config.toml:3:17: `kubernetes.pod_cpu_query` is set but \
                 `kubernetes.prometheus` is not"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_commented_example_of_every_default_shows_the_default_pod_queries() {
        let example = include_str!("../tests/valid_configs/defaults.toml");
        for query in [DEFAULT_POD_CPU_QUERY, DEFAULT_POD_MEMORY_QUERY] {
            assert!(example.contains(&format!("'{query}'")), "{query}");
        }
    }

    #[test]
    fn a_blank_pod_query_names_its_key() {
        let text =
            error_text("[kubernetes]\nprometheus = \"http://h:9090\"\npod_memory_query = \" \"\n");
        assert!(
            text.starts_with("/cfg/config.toml:3:20: `kubernetes.pod_memory_query` is empty"),
            "{text}"
        );
    }

    #[test]
    fn a_syntax_error_keeps_the_parser_error_as_its_source() {
        let err = parse("theme = \n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { line: 1, .. }), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
