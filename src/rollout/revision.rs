//! The template of a Docker workload — what every replica of one revision runs: image, command,
//! entrypoint, env, labels, health check, working directory, user and resource limits — read
//! from a replica, changed by a new image the way `docker compose` changes it when it recreates
//! a container, and written into the configuration of a new replica with the labels that say
//! which revision it belongs to.
//!
//! Docker merges the image's configuration into a container's when it creates it, so a replica's
//! inspect holds both what the workload set and what it inherited. [`Template::with_image`] tells
//! them apart by comparing with the old image: a value equal to the old image's is inherited and
//! comes from the new image; any other value is the workload's own and is kept.
//!
//! Not for the rest of a replica's configuration (networks, mounts, ports, restart policy, stop
//! timeout): those are copied from the newest replica by [`crate::platform::docker::scale`] and
//! stay as they are across revisions. Not for recording revisions either (see
//! [`super::history`]).

use std::collections::{BTreeMap, HashMap};

use bollard::container::Config;
use bollard::models::{ContainerInspectResponse, HealthConfig, HostConfig, ImageInspect};
use serde::{Deserialize, Serialize};

use crate::platform::docker::scale::{COMPOSE_NUMBER, GROUP_NUMBER};
use crate::text::sanitize_plain;

/// The label holding a replica's revision number.
pub const REVISION_LABEL: &str = "pilothouse.revision";

/// The label holding the hash of a replica's template ([`Template::hash`]).
pub const HASH_LABEL: &str = "pilothouse.revision.hash";

/// The labels Compose writes about how it created one container rather than what the service
/// runs: the hash of the Compose file's service configuration (which covers ports, volumes and
/// networks that a template does not), the digest of the image Compose resolved, the version of
/// Compose, and the container a recreated one replaced. A rollout cannot make them true for a
/// new image, and replicas of one template may carry different values, so they stay with the
/// replica a new one is copied from and never enter a template or its hash.
const COMPOSE_CREATION_LABELS: [&str; 4] = [
    "com.docker.compose.config-hash",
    "com.docker.compose.image",
    "com.docker.compose.version",
    "com.docker.compose.replace",
];

/// Whether a label belongs to one replica rather than to the template: the revision and hash
/// labels, the replica number labels of Compose and of Pilothouse groups, and the labels
/// Compose writes about how it created a container (config hash, image digest, its version,
/// the container it replaced). Such labels are never in a [`Template`] and never hashed.
pub fn is_replica_label(key: &str) -> bool {
    key == REVISION_LABEL
        || key == HASH_LABEL
        || key == COMPOSE_NUMBER
        || key == GROUP_NUMBER
        || COMPOSE_CREATION_LABELS.contains(&key)
}

/// The revision number a replica's labels name, if any (and if it is a number).
pub fn revision_number(labels: &HashMap<String, String>) -> Option<u32> {
    labels.get(REVISION_LABEL)?.trim().parse().ok()
}

/// The template hash a replica's labels name, if any.
pub fn revision_hash(labels: &HashMap<String, String>) -> Option<&str> {
    labels
        .get(HASH_LABEL)
        .map(String::as_str)
        .filter(|h| !h.is_empty())
}

/// A health check as Docker's HealthConfig holds it. Durations are in nanoseconds; `None` is
/// Docker's 0, "the default".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `["CMD", args...]`, `["CMD-SHELL", command]`, or `["NONE"]` (the check is turned off).
    pub test: Vec<String>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    /// Engines before API 1.44 ignore it.
    pub start_interval: Option<i64>,
    pub retries: Option<i64>,
}

impl Health {
    /// The check a HealthConfig describes; none when its test is empty (Docker's "inherit",
    /// which after the image is merged in means there is no check).
    pub fn from_config(config: &HealthConfig) -> Option<Health> {
        let test = config.test.clone().unwrap_or_default();
        if test.is_empty() {
            return None;
        }
        Some(Health {
            test,
            interval: positive(config.interval),
            timeout: positive(config.timeout),
            start_period: positive(config.start_period),
            start_interval: positive(config.start_interval),
            retries: positive(config.retries),
        })
    }

    /// The HealthConfig to create a container with.
    pub fn to_config(&self) -> HealthConfig {
        HealthConfig {
            test: Some(self.test.clone()),
            interval: self.interval,
            timeout: self.timeout,
            start_period: self.start_period,
            start_interval: self.start_interval,
            retries: self.retries,
        }
    }

    /// Whether the check is Docker's `["NONE"]`, which turns off the image's check.
    pub fn is_disabled(&self) -> bool {
        self.test.first().map(String::as_str) == Some("NONE")
    }
}

/// The resource limits of a template, from the container's HostConfig; `None` is "no limit"
/// (Docker's 0, and for `pids_limit` also -1).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resources {
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    /// Bytes.
    pub memory: Option<i64>,
    /// Bytes.
    pub memory_reservation: Option<i64>,
    pub pids_limit: Option<i64>,
}

impl Resources {
    fn from_host(host: &HostConfig) -> Resources {
        Resources {
            nano_cpus: positive(host.nano_cpus),
            cpu_shares: positive(host.cpu_shares),
            cpu_quota: positive(host.cpu_quota),
            cpu_period: positive(host.cpu_period),
            memory: positive(host.memory),
            memory_reservation: positive(host.memory_reservation),
            pids_limit: positive(host.pids_limit),
        }
    }

    fn write_into(&self, host: &mut HostConfig) {
        host.nano_cpus = self.nano_cpus;
        host.cpu_shares = self.cpu_shares;
        host.cpu_quota = self.cpu_quota;
        host.cpu_period = self.cpu_period;
        host.memory = self.memory;
        host.memory_reservation = self.memory_reservation;
        host.pids_limit = self.pids_limit;
    }

    /// Each limit by name, for saying what changed.
    fn named(&self) -> [(&'static str, Option<i64>); 7] {
        [
            ("nano_cpus", self.nano_cpus),
            ("cpu_shares", self.cpu_shares),
            ("cpu_quota", self.cpu_quota),
            ("cpu_period", self.cpu_period),
            ("memory", self.memory),
            ("memory_reservation", self.memory_reservation),
            ("pids_limit", self.pids_limit),
        ]
    }
}

/// What every replica of one revision runs. Two templates are the same revision exactly when
/// they are equal, which [`Template::hash`] tells without the whole template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// The image as the container's Config.Image names it (a tag or a digest reference).
    // LIMITATION: a tag is recorded by name, not by the digest it stood for, so going back to
    // a revision whose tag has since been pushed again runs the new content under the old
    // revision's number; roll out by digest where that matters.
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE`, in the container's order.
    pub env: Vec<String>,
    /// Without the replica labels ([`is_replica_label`]).
    pub labels: BTreeMap<String, String>,
    pub healthcheck: Option<Health>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub resources: Resources,
}

/// What an image gives a container that does not set a field itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageDefaults {
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub healthcheck: Option<Health>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

impl ImageDefaults {
    /// The defaults of an image from its inspect; an image without a Config gives none.
    pub fn from_image(inspect: &ImageInspect) -> ImageDefaults {
        let Some(config) = inspect.config.as_ref() else {
            return ImageDefaults::default();
        };
        ImageDefaults {
            cmd: non_empty(config.cmd.clone()),
            entrypoint: non_empty(config.entrypoint.clone()),
            env: config.env.clone().unwrap_or_default(),
            labels: template_labels(config.labels.as_ref()),
            healthcheck: config.healthcheck.as_ref().and_then(Health::from_config),
            working_dir: non_blank(config.working_dir.clone()),
            user: non_blank(config.user.clone()),
        }
    }
}

impl Template {
    /// The template of a replica from its inspect (Config and HostConfig); replica labels are
    /// left out. Empty lists and strings are read as unset, as Docker treats them.
    pub fn from_container(inspect: &ContainerInspectResponse) -> Result<Template, String> {
        let name = inspect
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/');
        let Some(config) = inspect.config.as_ref() else {
            return Err(format!(
                "cannot read the template of {name}: the engine gave no configuration"
            ));
        };
        let image = config.image.clone().unwrap_or_default();
        if image.trim().is_empty() {
            return Err(format!(
                "cannot read the template of {name}: its configuration names no image"
            ));
        }
        let resources = inspect
            .host_config
            .as_ref()
            .map(Resources::from_host)
            .unwrap_or_default();
        Ok(Template {
            image,
            cmd: non_empty(config.cmd.clone()),
            entrypoint: non_empty(config.entrypoint.clone()),
            env: config.env.clone().unwrap_or_default(),
            labels: template_labels(config.labels.as_ref()),
            healthcheck: config.healthcheck.as_ref().and_then(Health::from_config),
            working_dir: non_blank(config.working_dir.clone()),
            user: non_blank(config.user.clone()),
            resources,
        })
    }

    /// A short hash of the template: the first 10 hex digits of the 64-bit FNV-1a of its
    /// compact JSON (fields in declaration order, labels sorted), so equal templates have equal
    /// hashes on every run and machine. A change to the fields or their order changes every
    /// hash; the unit tests pin one value so that cannot happen unnoticed.
    pub fn hash(&self) -> String {
        // Serialising strings, lists, string-keyed maps and integers cannot fail.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let digest = fnv1a_64(&bytes);
        format!("{digest:016x}")[..10].to_string()
    }

    /// The template a rollout to `image_ref` makes, as `docker compose` makes it when it
    /// recreates a container: what the workload set itself is kept, what it inherited from the
    /// old image is replaced by what the new image gives.
    ///
    /// - `entrypoint`, `working_dir`, `user`: equal to the old image's value means inherited,
    ///   so the new image's value is taken; any other value is kept.
    /// - `cmd`: likewise, except that a workload that set its own entrypoint keeps its cmd
    ///   whatever it is, since Docker does not give a container the image's CMD when the
    ///   entrypoint is overridden: that cmd (or its absence) is the workload's own.
    /// - `healthcheck`: equal to the old image's, the new image's is taken. A workload that
    ///   tuned parts of the old image's check (Docker fills the rest from the image) keeps each
    ///   part it set and takes the others from the new image, as Docker's merge does; when the
    ///   new image has no check to take the test from, the result has none. A check of the
    ///   workload's own (or `NONE`) when the old image had none or a different test is kept.
    /// - `env`: an entry not in the old image's env (a new variable, or a new value for one of
    ///   the image's) is the workload's and is kept, in its order; then come the new image's
    ///   entries for every other variable. The old image's entries are dropped.
    /// - `labels`: a label not in the old image's labels, or with another value, is kept over
    ///   the new image's labels; the old image's labels are dropped.
    /// - `resources` are the workload's and are kept.
    ///
    /// Docker's merge cannot be undone exactly: a value the workload set equal to the old
    /// image's (say `FOO=1` on an image that has `FOO=1`) looks inherited and follows the new
    /// image.
    // LIMITATION: a replica keeps no record of what was set for it and what came from its
    // image, so the rule above guesses from equality with the old image's values; Compose
    // itself knows from its file and does not need to guess.
    pub fn with_image(
        &self,
        image_ref: &str,
        old_image: &ImageDefaults,
        new_image: &ImageDefaults,
    ) -> Template {
        let entrypoint_inherited = self.entrypoint == old_image.entrypoint;
        let cmd = if entrypoint_inherited {
            inherit(&self.cmd, &old_image.cmd, &new_image.cmd)
        } else {
            self.cmd.clone()
        };
        Template {
            image: image_ref.to_string(),
            cmd,
            entrypoint: inherit(
                &self.entrypoint,
                &old_image.entrypoint,
                &new_image.entrypoint,
            ),
            env: merge_env(&self.env, &old_image.env, &new_image.env),
            labels: merge_labels(&self.labels, &old_image.labels, &new_image.labels),
            healthcheck: merge_health(
                self.healthcheck.as_ref(),
                old_image.healthcheck.as_ref(),
                new_image.healthcheck.as_ref(),
            ),
            working_dir: inherit(
                &self.working_dir,
                &old_image.working_dir,
                &new_image.working_dir,
            ),
            user: inherit(&self.user, &old_image.user, &new_image.user),
            resources: self.resources.clone(),
        }
    }

    /// Writes the template into a container configuration copied from a replica
    /// ([`crate::platform::docker::scale::new_replica`]): image, cmd, entrypoint, env, labels
    /// (the replica labels already there are kept, every other label is replaced), health
    /// check, working directory, user and, in its HostConfig, the resource limits; then labels
    /// it as revision `number` with this template's hash.
    pub fn apply(&self, number: u32, config: &mut Config<String>) {
        config.image = Some(self.image.clone());
        config.cmd = self.cmd.clone();
        config.entrypoint = self.entrypoint.clone();
        config.env = Some(self.env.clone());
        config.healthcheck = self.healthcheck.as_ref().map(Health::to_config);
        config.working_dir = self.working_dir.clone();
        config.user = self.user.clone();

        let labels = config.labels.get_or_insert_with(HashMap::new);
        labels.retain(|key, _| is_replica_label(key));
        for (key, value) in &self.labels {
            labels.insert(key.clone(), value.clone());
        }
        labels.insert(REVISION_LABEL.to_string(), number.to_string());
        labels.insert(HASH_LABEL.to_string(), self.hash());

        let host = config.host_config.get_or_insert_with(HostConfig::default);
        self.resources.write_into(host);
    }

    /// What differs from `before`, one line each, for people: `image web:1 → web:2`,
    /// `env +FOO`, `env -BAR`, `env ~BAZ` (a new value; env values are never shown, they may
    /// be secrets), `label +team=a`, `healthcheck changed`, `memory none → 268435456`. Values
    /// are made safe to print. Empty when the templates are equal.
    pub fn changes_from(&self, before: &Template) -> Vec<String> {
        let mut lines = Vec::new();
        if self.image != before.image {
            lines.push(format!(
                "image {} → {}",
                safe(&before.image),
                safe(&self.image)
            ));
        }
        change_line(
            &mut lines,
            "entrypoint",
            &words(&before.entrypoint),
            &words(&self.entrypoint),
        );
        change_line(&mut lines, "cmd", &words(&before.cmd), &words(&self.cmd));
        lines.extend(env_changes(&before.env, &self.env));
        lines.extend(label_changes(&before.labels, &self.labels));
        if let Some(line) = health_change(before.healthcheck.as_ref(), self.healthcheck.as_ref()) {
            lines.push(line);
        }
        change_line(
            &mut lines,
            "working dir",
            &text(&before.working_dir),
            &text(&self.working_dir),
        );
        change_line(&mut lines, "user", &text(&before.user), &text(&self.user));
        for ((name, old), (_, new)) in before
            .resources
            .named()
            .into_iter()
            .zip(self.resources.named())
        {
            change_line(&mut lines, name, &number(old), &number(new));
        }
        lines
    }
}

/// 64-bit FNV-1a.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// Docker's 0 (and a negative `pids_limit`) as unset.
fn positive(value: Option<i64>) -> Option<i64> {
    value.filter(|v| *v > 0)
}

fn non_empty(list: Option<Vec<String>>) -> Option<Vec<String>> {
    list.filter(|l| !l.is_empty())
}

fn non_blank(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

/// Labels without the replica labels, sorted.
fn template_labels(labels: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    labels
        .into_iter()
        .flatten()
        .filter(|(key, _)| !is_replica_label(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// The new image's value when `current` is the old image's, else `current`.
fn inherit<T: Clone + PartialEq>(current: &T, old: &T, new: &T) -> T {
    if current == old {
        new.clone()
    } else {
        current.clone()
    }
}

/// The name of an env entry: what comes before the first `=` (all of it when there is none).
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(key, _)| key)
}

/// The workload's own entries, then the new image's entries for every other variable.
fn merge_env(current: &[String], old: &[String], new: &[String]) -> Vec<String> {
    let own: Vec<String> = current
        .iter()
        .filter(|entry| !old.contains(entry))
        .cloned()
        .collect();
    let from_image = new
        .iter()
        .filter(|entry| !own.iter().any(|o| env_key(o) == env_key(entry)))
        .cloned();
    let mut merged = own.clone();
    merged.extend(from_image);
    merged
}

/// The new image's labels, overlaid with the labels the workload set itself.
fn merge_labels(
    current: &BTreeMap<String, String>,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut merged = new.clone();
    for (key, value) in current {
        if old.get(key) != Some(value) {
            merged.insert(key.clone(), value.clone());
        }
    }
    merged
}

/// The health check after a new image: see [`Template::with_image`].
fn merge_health(
    current: Option<&Health>,
    old: Option<&Health>,
    new: Option<&Health>,
) -> Option<Health> {
    if current == old {
        return new.cloned();
    }
    let (Some(current), Some(old)) = (current, old) else {
        return current.cloned();
    };
    if current.is_disabled() || current.test != old.test {
        return Some(current.clone());
    }
    // The workload tuned the old image's check: keep what it set, take the rest from the new.
    let new = new?;
    Some(Health {
        test: new.test.clone(),
        interval: inherit(&current.interval, &old.interval, &new.interval),
        timeout: inherit(&current.timeout, &old.timeout, &new.timeout),
        start_period: inherit(&current.start_period, &old.start_period, &new.start_period),
        start_interval: inherit(
            &current.start_interval,
            &old.start_interval,
            &new.start_interval,
        ),
        retries: inherit(&current.retries, &old.retries, &new.retries),
    })
}

/// Text made safe to print.
fn safe(text: &str) -> String {
    sanitize_plain(text)
}

fn words(list: &Option<Vec<String>>) -> String {
    match list {
        Some(list) => list
            .iter()
            .map(|word| format!("{:?}", safe(word)))
            .collect::<Vec<_>>()
            .join(" "),
        None => "none".to_string(),
    }
}

fn text(value: &Option<String>) -> String {
    value.as_deref().map_or_else(|| "none".to_string(), safe)
}

fn number(value: Option<i64>) -> String {
    value.map_or_else(|| "none".to_string(), |v| v.to_string())
}

fn change_line(lines: &mut Vec<String>, what: &str, before: &str, after: &str) {
    if before != after {
        lines.push(format!("{what} {before} → {after}"));
    }
}

/// `env +KEY`, `env -KEY`, `env ~KEY` by variable, in the order of the newer env (removed
/// ones after), or `env reordered` when only the order changed.
fn env_changes(before: &[String], after: &[String]) -> Vec<String> {
    let value_of = |env: &[String], key: &str| -> Option<String> {
        env.iter().find(|entry| env_key(entry) == key).cloned()
    };
    let mut lines = Vec::new();
    for entry in after {
        let key = env_key(entry);
        match value_of(before, key) {
            None => lines.push(format!("env +{}", safe(key))),
            Some(old) if old != *entry => lines.push(format!("env ~{}", safe(key))),
            Some(_) => {}
        }
    }
    for entry in before {
        let key = env_key(entry);
        if value_of(after, key).is_none() {
            lines.push(format!("env -{}", safe(key)));
        }
    }
    if lines.is_empty() && before != after {
        lines.push("env reordered".to_string());
    }
    lines
}

fn label_changes(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, value) in after {
        match before.get(key) {
            None => lines.push(format!("label +{}={}", safe(key), safe(value))),
            Some(old) if old != value => {
                lines.push(format!(
                    "label {}: {} → {}",
                    safe(key),
                    safe(old),
                    safe(value)
                ));
            }
            Some(_) => {}
        }
    }
    for key in before.keys().filter(|key| !after.contains_key(*key)) {
        lines.push(format!("label -{}", safe(key)));
    }
    lines
}

fn health_change(before: Option<&Health>, after: Option<&Health>) -> Option<String> {
    match (before, after) {
        (None, Some(_)) => Some("healthcheck added".to_string()),
        (Some(_), None) => Some("healthcheck removed".to_string()),
        (Some(b), Some(a)) if a != b => Some("healthcheck changed".to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn health(test: &[&str], interval: Option<i64>, retries: Option<i64>) -> Health {
        Health {
            test: strings(test),
            interval,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries,
        }
    }

    fn template() -> Template {
        Template {
            image: "web:1".into(),
            cmd: Some(strings(&["serve", "--port", "80"])),
            entrypoint: None,
            env: strings(&["PATH=/bin", "MODE=prod"]),
            labels: labels(&[("team", "shop")]),
            healthcheck: Some(health(&["CMD", "check"], Some(5_000_000_000), Some(3))),
            working_dir: Some("/srv".into()),
            user: Some("app".into()),
            resources: Resources {
                memory: Some(268_435_456),
                nano_cpus: Some(500_000_000),
                ..Resources::default()
            },
        }
    }

    fn inspect(value: serde_json::Value) -> ContainerInspectResponse {
        serde_json::from_value(value).expect("inspect JSON")
    }

    #[test]
    fn a_template_is_read_from_a_replica_without_its_replica_labels() {
        let replica = inspect(json!({
            "Name": "/shop-web-2",
            "Config": {
                "Image": "shop/web:1.3",
                "Cmd": ["serve"],
                "Entrypoint": [],
                "Env": ["PATH=/bin", "MODE=prod"],
                "Labels": {
                    "com.docker.compose.project": "shop",
                    "com.docker.compose.service": "web",
                    "com.docker.compose.container-number": "2",
                    "com.docker.compose.config-hash": "abc",
                    "com.docker.compose.version": "2.29.0",
                    "pilothouse.group.number": "2",
                    "pilothouse.revision": "4",
                    "pilothouse.revision.hash": "0123456789",
                    "team": "shop"
                },
                "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 2000000000, "Timeout": 0},
                "WorkingDir": "",
                "User": "app"
            },
            "HostConfig": {"Memory": 134217728, "NanoCpus": 0, "PidsLimit": -1, "CpuShares": 512}
        }));
        let t = Template::from_container(&replica).expect("template");
        assert_eq!(t.image, "shop/web:1.3");
        assert_eq!(t.cmd, Some(strings(&["serve"])));
        assert_eq!(t.entrypoint, None, "an empty entrypoint is none");
        assert_eq!(t.env, strings(&["PATH=/bin", "MODE=prod"]));
        assert_eq!(
            t.labels,
            labels(&[
                ("com.docker.compose.project", "shop"),
                ("com.docker.compose.service", "web"),
                ("team", "shop"),
            ])
        );
        assert_eq!(
            t.healthcheck,
            Some(health(&["CMD-SHELL", "true"], Some(2_000_000_000), None))
        );
        assert_eq!(t.working_dir, None);
        assert_eq!(t.user.as_deref(), Some("app"));
        assert_eq!(
            t.resources,
            Resources {
                memory: Some(134_217_728),
                cpu_shares: Some(512),
                ..Resources::default()
            }
        );
    }

    #[test]
    fn a_replica_without_a_configuration_or_an_image_is_an_error_naming_it() {
        let err = Template::from_container(&inspect(json!({"Name": "/web-1"}))).unwrap_err();
        assert_eq!(
            err,
            "cannot read the template of web-1: the engine gave no configuration"
        );
        let err = Template::from_container(&inspect(json!({"Name": "/web-1", "Config": {}})))
            .unwrap_err();
        assert!(err.contains("web-1") && err.contains("no image"), "{err}");
    }

    #[test]
    fn the_replica_labels_are_those_of_one_container() {
        for key in [
            REVISION_LABEL,
            HASH_LABEL,
            COMPOSE_NUMBER,
            GROUP_NUMBER,
            "com.docker.compose.config-hash",
            "com.docker.compose.image",
        ] {
            assert!(is_replica_label(key), "{key}");
        }
        for key in ["com.docker.compose.project", "pilothouse.group", "team"] {
            assert!(!is_replica_label(key), "{key}");
        }
    }

    #[test]
    fn the_hash_of_a_fixed_template_does_not_change() {
        assert_eq!(template().hash(), "ddb8266cc6");
        assert_eq!(template().hash(), template().hash());
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_hash_changes_with_every_field() {
        let base = template().hash();
        type Change = (&'static str, fn(&mut Template));
        let changes: Vec<Change> = vec![
            ("image", |t| t.image = "web:2".into()),
            ("cmd", |t| t.cmd = None),
            ("entrypoint", |t| t.entrypoint = Some(strings(&["tini"]))),
            ("env value", |t| t.env[1] = "MODE=dev".into()),
            ("env order", |t| t.env.reverse()),
            ("label", |t| {
                t.labels.insert("tier".into(), "front".into());
            }),
            ("healthcheck", |t| t.healthcheck = None),
            ("healthcheck retries", |t| {
                if let Some(h) = t.healthcheck.as_mut() {
                    h.retries = Some(4);
                }
            }),
            ("working dir", |t| t.working_dir = None),
            ("user", |t| t.user = Some("root".into())),
            ("memory", |t| t.resources.memory = None),
            ("pids", |t| t.resources.pids_limit = Some(100)),
            ("cpu period", |t| t.resources.cpu_period = Some(100_000)),
        ];
        for (what, change) in changes {
            let mut t = template();
            change(&mut t);
            assert_ne!(t.hash(), base, "{what}");
            assert_eq!(t.hash().len(), 10, "{what}");
        }
    }

    fn image(cmd: &[&str], env: &[&str], image_labels: &[(&str, &str)]) -> ImageDefaults {
        ImageDefaults {
            cmd: Some(strings(cmd)),
            entrypoint: None,
            env: strings(env),
            labels: labels(image_labels),
            healthcheck: None,
            working_dir: None,
            user: None,
        }
    }

    fn container(cmd: &[&str], env: &[&str], container_labels: &[(&str, &str)]) -> Template {
        Template {
            image: "web:1".into(),
            cmd: Some(strings(cmd)),
            entrypoint: None,
            env: strings(env),
            labels: labels(container_labels),
            healthcheck: None,
            working_dir: None,
            user: None,
            resources: Resources {
                memory: Some(1 << 28),
                ..Resources::default()
            },
        }
    }

    #[test]
    fn a_new_image_replaces_what_was_inherited_and_keeps_what_the_workload_set() {
        let old = image(&["old-cmd"], &["PATH=/bin", "A=1"], &[("version", "1")]);
        let new = image(&["new-cmd"], &["PATH=/usr/bin", "B=2"], &[("version", "2")]);
        // (case, container, expected cmd, env, labels)
        type Case = (
            &'static str,
            Template,
            Vec<String>,
            Vec<String>,
            Vec<(&'static str, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "everything inherited",
                container(&["old-cmd"], &["PATH=/bin", "A=1"], &[("version", "1")]),
                strings(&["new-cmd"]),
                strings(&["PATH=/usr/bin", "B=2"]),
                vec![("version", "2")],
            ),
            (
                "own cmd, own variable, own label",
                container(
                    &["my-cmd"],
                    &["MINE=x", "PATH=/bin", "A=1"],
                    &[("version", "1"), ("team", "shop")],
                ),
                strings(&["my-cmd"]),
                strings(&["MINE=x", "PATH=/usr/bin", "B=2"]),
                vec![("team", "shop"), ("version", "2")],
            ),
            (
                "an image variable and label given other values",
                container(
                    &["old-cmd"],
                    &["PATH=/opt/bin", "A=1"],
                    &[("version", "custom")],
                ),
                strings(&["new-cmd"]),
                strings(&["PATH=/opt/bin", "B=2"]),
                vec![("version", "custom")],
            ),
            (
                "the workload's value of a variable the new image brings wins",
                container(&["old-cmd"], &["B=mine", "PATH=/bin", "A=1"], &[]),
                strings(&["new-cmd"]),
                strings(&["B=mine", "PATH=/usr/bin"]),
                vec![("version", "2")],
            ),
        ];
        for (case, before, cmd, env, want_labels) in cases {
            let after = before.with_image("web:2", &old, &new);
            assert_eq!(after.image, "web:2", "{case}");
            assert_eq!(after.cmd, Some(cmd), "{case}");
            assert_eq!(after.env, env, "{case}");
            assert_eq!(after.labels, labels(&want_labels), "{case}");
            assert_eq!(
                after.resources, before.resources,
                "{case}: resources are kept"
            );
        }
    }

    #[test]
    fn entrypoint_working_dir_and_user_follow_the_image_unless_the_workload_set_them() {
        let old = ImageDefaults {
            entrypoint: Some(strings(&["/old-entry"])),
            cmd: Some(strings(&["old"])),
            working_dir: Some("/old".into()),
            user: Some("old".into()),
            ..ImageDefaults::default()
        };
        let new = ImageDefaults {
            entrypoint: Some(strings(&["/new-entry"])),
            cmd: Some(strings(&["new"])),
            working_dir: Some("/new".into()),
            user: None,
            ..ImageDefaults::default()
        };
        let mut inherited = container(&["old"], &[], &[]);
        inherited.entrypoint = Some(strings(&["/old-entry"]));
        inherited.working_dir = Some("/old".into());
        inherited.user = Some("old".into());
        let after = inherited.with_image("web:2", &old, &new);
        assert_eq!(after.entrypoint, Some(strings(&["/new-entry"])));
        assert_eq!(after.cmd, Some(strings(&["new"])));
        assert_eq!(after.working_dir.as_deref(), Some("/new"));
        assert_eq!(after.user, None, "the new image sets no user");

        let mut own = inherited.clone();
        own.working_dir = Some("/mine".into());
        own.user = Some("me".into());
        let after = own.with_image("web:2", &old, &new);
        assert_eq!(after.working_dir.as_deref(), Some("/mine"));
        assert_eq!(after.user.as_deref(), Some("me"));
    }

    #[test]
    fn a_workload_with_its_own_entrypoint_keeps_its_cmd_even_when_it_looks_inherited() {
        let old = image(&["serve"], &[], &[]);
        let new = image(&["serve", "--v2"], &[], &[]);
        // Docker gave this container no image CMD because its entrypoint is its own, so a cmd
        // equal to the image's was written by the workload.
        let mut own = container(&["serve"], &[], &[]);
        own.entrypoint = Some(strings(&["/bin/sh", "-c"]));
        let after = own.with_image("web:2", &old, &new);
        assert_eq!(after.entrypoint, Some(strings(&["/bin/sh", "-c"])));
        assert_eq!(after.cmd, Some(strings(&["serve"])));

        let mut bare = own.clone();
        bare.cmd = None;
        let after = bare.with_image("web:2", &old, &new);
        assert_eq!(
            after.cmd, None,
            "no cmd stays no cmd; the new image's is not taken"
        );
    }

    #[test]
    fn health_checks_follow_the_image_unless_the_workload_set_or_tuned_them() {
        let old_check = health(&["CMD", "old-check"], Some(5_000_000_000), Some(3));
        let new_check = health(&["CMD", "new-check"], Some(10_000_000_000), Some(5));
        let old = ImageDefaults {
            healthcheck: Some(old_check.clone()),
            ..ImageDefaults::default()
        };
        let new = ImageDefaults {
            healthcheck: Some(new_check.clone()),
            ..ImageDefaults::default()
        };
        let without = ImageDefaults::default();
        let own = health(&["CMD", "mine"], None, None);
        let tuned = health(&["CMD", "old-check"], Some(1_000_000_000), Some(3));
        let disabled = health(&["NONE"], None, None);
        // (case, container's check, old image, new image, expected)
        type Case<'a> = (
            &'static str,
            Option<Health>,
            &'a ImageDefaults,
            &'a ImageDefaults,
            Option<Health>,
        );
        let cases: Vec<Case> = vec![
            (
                "inherited",
                Some(old_check.clone()),
                &old,
                &new,
                Some(new_check.clone()),
            ),
            (
                "none, none before",
                None,
                &without,
                &new,
                Some(new_check.clone()),
            ),
            (
                "inherited, new has none",
                Some(old_check.clone()),
                &old,
                &without,
                None,
            ),
            (
                "own check",
                Some(own.clone()),
                &old,
                &new,
                Some(own.clone()),
            ),
            (
                "own check, old had none",
                Some(own.clone()),
                &without,
                &new,
                Some(own.clone()),
            ),
            (
                "turned off",
                Some(disabled.clone()),
                &old,
                &new,
                Some(disabled.clone()),
            ),
            (
                "interval tuned",
                Some(tuned.clone()),
                &old,
                &new,
                Some(health(&["CMD", "new-check"], Some(1_000_000_000), Some(5))),
            ),
            (
                "tuned, new has none",
                Some(tuned.clone()),
                &old,
                &without,
                None,
            ),
        ];
        for (case, check, old, new, want) in cases {
            let mut t = container(&["x"], &[], &[]);
            t.healthcheck = check;
            assert_eq!(t.with_image("web:2", old, new).healthcheck, want, "{case}");
        }
    }

    #[test]
    fn image_defaults_come_from_the_image_config() {
        let inspect: ImageInspect = serde_json::from_value(json!({
            "Id": "sha256:1",
            "Config": {
                "Cmd": ["sh"],
                "Entrypoint": null,
                "Env": ["PATH=/bin"],
                "Labels": {"version": "1", "pilothouse.revision": "9"},
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000},
                "WorkingDir": "/app",
                "User": ""
            }
        }))
        .expect("image JSON");
        let d = ImageDefaults::from_image(&inspect);
        assert_eq!(d.cmd, Some(strings(&["sh"])));
        assert_eq!(d.entrypoint, None);
        assert_eq!(d.env, strings(&["PATH=/bin"]));
        assert_eq!(d.labels, labels(&[("version", "1")]));
        assert_eq!(
            d.healthcheck,
            Some(health(&["CMD", "true"], Some(1_000_000_000), None))
        );
        assert_eq!(d.working_dir.as_deref(), Some("/app"));
        assert_eq!(d.user, None);
        assert_eq!(
            ImageDefaults::from_image(&ImageInspect::default()),
            ImageDefaults::default()
        );
    }

    #[test]
    fn apply_writes_every_field_and_the_revision_labels_and_keeps_the_number_labels() {
        let mut config: Config<String> = Config {
            image: Some("web:0".into()),
            cmd: Some(strings(&["old"])),
            entrypoint: Some(strings(&["/old"])),
            env: Some(strings(&["OLD=1"])),
            labels: Some(HashMap::from([
                (COMPOSE_NUMBER.to_string(), "3".to_string()),
                (
                    "com.docker.compose.config-hash".to_string(),
                    "abc".to_string(),
                ),
                ("stale".to_string(), "yes".to_string()),
                (REVISION_LABEL.to_string(), "1".to_string()),
            ])),
            healthcheck: Some(HealthConfig::default()),
            working_dir: Some("/old".into()),
            user: Some("old".into()),
            stop_timeout: Some(7),
            host_config: Some(HostConfig {
                memory: Some(1),
                pids_limit: Some(50),
                network_mode: Some("shop_default".into()),
                ..HostConfig::default()
            }),
            ..Config::default()
        };
        let t = template();
        t.apply(4, &mut config);
        assert_eq!(config.image.as_deref(), Some("web:1"));
        assert_eq!(config.cmd, t.cmd);
        assert_eq!(config.entrypoint, None);
        assert_eq!(config.env, Some(t.env.clone()));
        assert_eq!(
            config.healthcheck,
            Some(HealthConfig {
                test: Some(strings(&["CMD", "check"])),
                interval: Some(5_000_000_000),
                retries: Some(3),
                ..HealthConfig::default()
            })
        );
        assert_eq!(config.working_dir.as_deref(), Some("/srv"));
        assert_eq!(config.user.as_deref(), Some("app"));
        assert_eq!(config.stop_timeout, Some(7), "the rest of the copy stays");
        let got = config.labels.clone().expect("labels");
        let want = HashMap::from([
            (COMPOSE_NUMBER.to_string(), "3".to_string()),
            (
                "com.docker.compose.config-hash".to_string(),
                "abc".to_string(),
            ),
            ("team".to_string(), "shop".to_string()),
            (REVISION_LABEL.to_string(), "4".to_string()),
            (HASH_LABEL.to_string(), t.hash()),
        ]);
        assert_eq!(got, want);
        assert_eq!(revision_number(&got), Some(4));
        assert_eq!(revision_hash(&got), Some(t.hash().as_str()));
        let host = config.host_config.expect("host config");
        assert_eq!(host.memory, Some(268_435_456));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.pids_limit, None);
        assert_eq!(host.network_mode.as_deref(), Some("shop_default"));
    }

    #[test]
    fn an_applied_template_reads_back_as_itself() {
        let t = template();
        let mut config = Config::default();
        t.apply(2, &mut config);
        let inspect = inspect(json!({
            "Name": "/web-2",
            "Config": serde_json::to_value(&config).expect("config JSON"),
            "HostConfig": serde_json::to_value(&config.host_config).expect("host JSON"),
        }));
        assert_eq!(Template::from_container(&inspect), Ok(t));
    }

    #[test]
    fn changes_name_what_differs_without_showing_env_values() {
        let before = template();
        assert!(before.changes_from(&before).is_empty());
        let mut after = template();
        after.image = "web:2".into();
        after.env = strings(&["PATH=/usr/bin", "TOKEN=secret"]);
        after.labels.insert("tier".into(), "front".into());
        after.labels.insert("team".into(), "pay".into());
        after.healthcheck = None;
        after.user = None;
        after.resources.memory = Some(536_870_912);
        after.cmd = Some(strings(&["serve\x07"]));
        assert_eq!(
            after.changes_from(&before),
            strings(&[
                "image web:1 → web:2",
                "cmd \"serve\" \"--port\" \"80\" → \"serve␇\"",
                "env ~PATH",
                "env +TOKEN",
                "env -MODE",
                "label team: shop → pay",
                "label +tier=front",
                "healthcheck removed",
                "user app → none",
                "memory 268435456 → 536870912",
            ])
        );
        let mut reordered = template();
        reordered.env.reverse();
        assert_eq!(reordered.changes_from(&before), strings(&["env reordered"]));
    }
}
