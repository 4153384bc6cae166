//! Helpers for tests that let the autoscaler scale a real workload: the rule they run, the series
//! its query reads, a Pilothouse group of real containers on the local engine, a polling wait,
//! and the scale lines of the audit log.
//!
//! Not for reading what the autoscaler itself reports: the console's engine hands out its status
//! and the daemon serves `/metrics`, so each test binary keeps its own checks of those.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::ListContainersOptions;

use super::{SLEEP_FOREVER, TestLabel, busybox};

/// How often [`wait`] looks again.
const POLL: Duration = Duration::from_millis(250);

/// A rule for the workload `group` reading `max(<series_name>{app="<group>"})`: 10 per replica,
/// 1 to 5 replicas, a cycle a second, up at once and down after `window`.
pub fn rule_yaml(series_name: &str, group: &str, window: Duration) -> String {
    format!(
        r#"name: {group}
target: {{ platform: docker, host: local, workload: {group} }}
minReplicas: 1
maxReplicas: 5
pollingInterval: 1s
metrics:
  - name: load
    prometheus:
      query: 'max({series_name}{{app="{group}"}})'
      type: AverageValue
      target: 10
behavior:
  scaleUp:
    stabilizationWindow: 0s
    selectPolicy: Max
    policies: [{{ type: Pods, value: 10, period: 1s }}]
  scaleDown:
    stabilizationWindow: {window}s
    selectPolicy: Max
    policies: [{{ type: Percent, value: 100, period: 1s }}]
"#,
        window = window.as_secs()
    )
}

/// The series a metrics endpoint serves for `group`, as [`rule_yaml`]'s query reads it.
pub fn series(series_name: &str, group: &str) -> String {
    format!("{series_name}{{app={group:?}}}")
}

/// One Pilothouse group on the local engine, started with one replica.
pub struct Group {
    docker: Docker,
    pub name: String,
}

impl Group {
    /// Starts replica 1 of a new group labelled for `label`'s cleanup.
    pub async fn start(docker: &Docker, label: &TestLabel) -> Group {
        Group::start_with(docker, label, SLEEP_FOREVER, 1).await
    }

    /// [`Group::start`] with the replica running `cmd` and given `stop_timeout` seconds.
    pub async fn start_with(
        docker: &Docker,
        label: &TestLabel,
        cmd: &[&str],
        stop_timeout: i64,
    ) -> Group {
        let name = label.short();
        let labels = [
            ("pilothouse.group", name.as_str()),
            ("pilothouse.group.number", "1"),
        ];
        let mut config = busybox(label, cmd, &labels);
        config.stop_timeout = Some(stop_timeout);
        super::run_container(docker, &format!("{name}-1"), config).await;
        Group {
            docker: docker.clone(),
            name,
        }
    }

    /// The group's containers as `(name, state)`, sorted by name.
    pub async fn containers(&self) -> Vec<(String, String)> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("pilothouse.group={}", self.name)],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        };
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .unwrap_or_default();
        let mut out: Vec<(String, String)> = listed
            .iter()
            .map(|c| {
                let name = c.names.iter().flatten().next().cloned().unwrap_or_default();
                let state = c.state.clone().unwrap_or_default();
                (name.trim_start_matches('/').to_string(), state)
            })
            .collect();
        out.sort();
        out
    }

    /// How many of its containers run, and all of them as `name state` for messages.
    pub async fn running(&self) -> (usize, String) {
        let containers = self.containers().await;
        let running = containers.iter().filter(|(_, s)| s == "running").count();
        let listed: Vec<String> = containers.iter().map(|(n, s)| format!("{n} {s}")).collect();
        (running, format!("[{}]", listed.join(", ")))
    }
}

/// Polls `check` until it gives `Ok`; panics after `within`, saying what was awaited and the
/// last state `check` saw.
pub async fn wait<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let seen = match check().await {
            Ok(found) => return found,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; last seen: {seen}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Every line of the audit log at `path` (none when it was never written).
pub fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("audit line {l:?} in {}: {e}", path.display()))
        })
        .collect()
}

/// The autoscaler's scale lines in the audit log at `path` that finished well, as
/// (from, to, reason); panics on a scale line of another origin.
pub fn scales_audited(path: &Path) -> Vec<(u64, u64, String)> {
    audit_lines(path)
        .iter()
        .filter(|l| l["action"] == "scale" && l["outcome"] == "ok")
        .map(|l| {
            assert_eq!(l["origin"], "autoscaler", "{l}");
            let count = |key: &str| l[key].as_u64().unwrap_or_else(|| panic!("{key}: {l}"));
            let reason = l["reason"].as_str().unwrap_or_default().to_string();
            (count("from"), count("to"), reason)
        })
        .collect()
}
