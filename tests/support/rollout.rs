//! Helpers for rollout tests: the web images they roll between, the `pilothouse` binary run as a
//! pipeline runs it, and what a group's containers run.
//!
//! Not for starting HAProxy or Prometheus (see `haproxy.rs` and `prometheus.rs`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bollard::Docker;
use bollard::container::InspectContainerOptions;
use pilothouse::platform::docker::scale::{GROUP_LABEL, GROUP_NUMBER};

use super::{TestLabel, run_container};

pub const WEB_V1: &str = "pilothouse-test/rollout-web:v1";
pub const WEB_V2: &str = "pilothouse-test/rollout-web:v2";
pub const WEB_BAD: &str = "pilothouse-test/rollout-web:bad";

/// Builds the three web images (v1, v2, and bad, whose health check always fails).
pub async fn build_web_images(docker: &Docker) {
    super::build_image(docker, WEB_V1, &web_image("v1", true)).await;
    super::build_image(docker, WEB_V2, &web_image("v2", true)).await;
    super::build_image(docker, WEB_BAD, &web_image("bad", false)).await;
}

/// Starts `replicas` replicas of group `group` on `image`, numbered from 1, each stopped within
/// 2 s.
pub async fn start_group(
    docker: &Docker,
    label: &TestLabel,
    group: &str,
    image: &str,
    replicas: u32,
) {
    start_group_with(docker, label, group, image, replicas, &[]).await;
}

/// [`start_group`] with `extra` labels on every replica.
pub async fn start_group_with(
    docker: &Docker,
    label: &TestLabel,
    group: &str,
    image: &str,
    replicas: u32,
    extra: &[(&str, &str)],
) {
    for n in 1..=replicas {
        let number = n.to_string();
        let mut labels = vec![(GROUP_LABEL, group), (GROUP_NUMBER, number.as_str())];
        labels.extend_from_slice(extra);
        let config = bollard::container::Config {
            image: Some(image.to_string()),
            labels: Some(label.labels(&labels)),
            stop_timeout: Some(2),
            ..Default::default()
        };
        run_container(docker, &format!("{group}-{n}"), config).await;
    }
}

/// A web server on port 8080 answering with `version`, stopped at once by SIGTERM, healthy
/// once it answers (or never, with `check` false).
pub fn web_image(version: &str, check: bool) -> String {
    let health = if check {
        "wget -q -O /dev/null http://127.0.0.1:8080/"
    } else {
        "false"
    };
    format!(
        "RUN mkdir -p /www && echo {version} > /www/index.html\n\
         HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD {health}\n\
         STOPSIGNAL SIGTERM\n\
         CMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait\"]\n"
    )
}

/// The `pilothouse` binary with its directories under `root`.
pub fn pilothouse(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pilothouse"))
        .args(args)
        .env("PILOTHOUSE_CONFIG_DIR", root.join("config"))
        .env("PILOTHOUSE_DATA_DIR", root.join("data"))
        .env("PILOTHOUSE_STATE_DIR", root.join("state"))
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run pilothouse")
}

/// The group's running containers as (name, image), sorted by name.
pub async fn running(docker: &Docker, label: &TestLabel, group: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for id in label.containers(docker).await {
        let Ok(inspect) = docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
        else {
            continue;
        };
        let config = inspect.config.unwrap_or_default();
        let in_group = config
            .labels
            .as_ref()
            .and_then(|l| l.get(GROUP_LABEL))
            .is_some_and(|g| g == group);
        let is_running = inspect.state.and_then(|s| s.running).unwrap_or(false);
        if in_group && is_running {
            let name = inspect.name.unwrap_or_default();
            out.push((
                name.trim_start_matches('/').to_string(),
                config.image.unwrap_or_default(),
            ));
        }
    }
    out.sort();
    out
}

pub fn describe(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The JSON lines a command printed.
pub fn json_lines(output: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
        })
        .collect()
}

/// Waits until Docker calls the container healthy.
pub async fn wait_healthy(docker: &Docker, name: &str) {
    for _ in 0..300 {
        let inspect = docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .expect("inspect");
        let status = inspect.state.and_then(|s| s.health).and_then(|h| h.status);
        if status.map(|s| s.to_string()).as_deref() == Some("healthy") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} did not become healthy within 30 s");
}
