//! The analysis gate of a rollout against a real Prometheus (scraping an endpoint the test
//! controls) and the real engine: a rollout whose query keeps its condition finishes once the
//! query has passed as often as asked; one whose query breaks it rolls back by itself (exit 4);
//! one whose query finds no series is inconclusive, and rolls back once that happened more often
//! than allowed.

mod support;

use support::prometheus::prometheus_or_skip;
use support::rollout::{
    WEB_V1, WEB_V2, build_web_images, describe, json_lines, pilothouse, running, start_group,
};
use support::{TestLabel, docker_or_skip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analysis_query_lets_a_rollout_finish_or_rolls_it_back() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    let label = TestLabel::new();
    let group = label.short();
    let errors = format!("rollout_errors{{app=\"{group}\"}}");
    let Some(prometheus) = prometheus_or_skip(&[(errors.as_str(), 0.0)]).await else {
        return;
    };
    build_web_images(&docker).await;
    start_group(&docker, &label, &group, WEB_V1, 2).await;
    let root = tempfile::tempdir().expect("temp dir");
    let url = prometheus.url();
    let rollout = |image: &str, query: &str| {
        let condition = format!("{query} < 0.5");
        pilothouse(
            root.path(),
            &[
                "--prometheus",
                url.as_str(),
                "rollout",
                group.as_str(),
                "--image",
                image,
                "--wait",
                "--max-surge",
                "1",
                "--max-unavailable",
                "0",
                "--analysis",
                condition.as_str(),
                "--analysis-interval",
                "1s",
                "--analysis-count",
                "2",
                "--analysis-inconclusive",
                "2",
                "--docker-host",
                "unix:///var/run/docker.sock",
                "--output",
                "json",
            ],
        )
    };
    let query = format!("max({errors})");

    // No errors: the rollout finishes after two passing readings.
    let output = tokio::task::block_in_place(|| rollout(WEB_V2, &query));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let now = running(&docker, &label, &group).await;
    assert!(
        now.len() == 2 && now.iter().all(|(_, image)| image == WEB_V2),
        "{now:?}"
    );
    let state = read_state(root.path());
    let passes = state["analysis"]
        .as_array()
        .expect("readings")
        .iter()
        .filter(|r| r["verdict"] == "pass" && r["value"] == 0.0)
        .count();
    assert!(passes >= 2, "two passing readings: {state}");

    // Errors at 1: the first reading breaks `< 0.5`, and v2 serves again.
    prometheus.endpoint.set(&errors, 1.0);
    wait_until_read(&prometheus.url(), &query, 1.0).await;
    let output = tokio::task::block_in_place(|| rollout(WEB_V1, &query));
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let done = json_lines(&output).pop().expect("a done line");
    assert_eq!(done["outcome"], "rolled-back", "{done}");
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("read 1, which is not < 0.5"), "{done}");
    let now = running(&docker, &label, &group).await;
    assert!(
        now.len() == 2 && now.iter().all(|(_, image)| image == WEB_V2),
        "{now:?}"
    );

    // A query that finds nothing: inconclusive three times is one more than allowed.
    let nothing = format!("max(rollout_missing{{app=\"{group}\"}})");
    let output = tokio::task::block_in_place(|| rollout(WEB_V1, &nothing));
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let done = json_lines(&output).pop().expect("a done line");
    assert!(
        done["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("inconclusive 3 times, more than the 2 allowed"),
        "{done}"
    );
    let state = read_state(root.path());
    let inconclusive = state["analysis"]
        .as_array()
        .expect("readings")
        .iter()
        .filter(|r| r["verdict"] == "inconclusive" && r["value"].is_null())
        .count();
    assert_eq!(inconclusive, 3, "{state}");
}

/// The one rollout state file under the state directory.
fn read_state(root: &std::path::Path) -> serde_json::Value {
    let rollouts = root.join("state").join("rollouts");
    let engine = std::fs::read_dir(&rollouts)
        .expect("the rollouts directory")
        .next()
        .expect("one engine")
        .expect("entry")
        .path();
    let file = std::fs::read_dir(&engine)
        .expect("the engine directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a state file");
    serde_json::from_str(&std::fs::read_to_string(file).expect("read")).expect("JSON")
}

/// Waits until Prometheus answers `query` with `value` (its scrapes come every second).
async fn wait_until_read(url: &str, query: &str, value: f64) {
    let source = pilothouse::metrics::PrometheusSource::new(url).expect("the test Prometheus");
    for _ in 0..100 {
        if source.query_instant(query).await.ok() == Some(value) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("Prometheus did not read {query} as {value} within 10 s");
}
