//! Rollouts against real components: a Pilothouse group of busybox web servers on the real
//! Docker engine, behind a real HAProxy of the test's own on loopback, with a client sending
//! requests through HAProxy without pause, and the real `pilothouse` binary deploying as a
//! pipeline would.
//!
//! One workload goes through the three scenarios in turn: a rolling update to a new image (no
//! request fails, old replicas gone), a new image whose health check fails (rolled back by
//! itself, exit code 4, no request fails), and a rollback to a named revision, after which a new
//! process lists the history.

#[path = "support/haproxy.rs"]
mod haproxy_support;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bollard::container::InspectContainerOptions;
use haproxy_support::{BACKEND, TestHaproxy, haproxy_or_skip, try_get};
use pilothouse::lb::haproxy::Haproxy;
use support::rollout::{
    WEB_BAD, WEB_V1, WEB_V2, build_web_images, describe, json_lines, pilothouse, running,
    start_group, start_group_with, wait_healthy,
};
use support::{TestLabel, docker_or_skip};
use tokio::task::JoinHandle;

/// The requests sent through HAProxy while a rollout runs: every answer's body, and every
/// failure with why.
#[derive(Default)]
struct Traffic {
    ok: Vec<String>,
    failed: Vec<String>,
}

/// A client sending requests through the frontend, two at a time, until stopped.
struct Client {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Traffic>>,
}

impl Client {
    fn start(frontend: SocketAddr) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..2)
            .map(|_| {
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let mut traffic = Traffic::default();
                    // Bounded: at most 20,000 requests or until stopped.
                    for _ in 0..20_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match try_get(frontend).await {
                            Ok(answer) if answer.status == 200 => {
                                traffic.ok.push(answer.body.trim().to_string());
                            }
                            Ok(answer) => traffic.failed.push(format!(
                                "{}: {}",
                                answer.status,
                                answer.body.trim()
                            )),
                            Err(why) => traffic.failed.push(why),
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    traffic
                })
            })
            .collect();
        Client { stop, tasks }
    }

    async fn stop(self) -> Traffic {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Traffic::default();
        for task in self.tasks {
            let traffic = task.await.expect("client task");
            all.ok.extend(traffic.ok);
            all.failed.extend(traffic.failed);
        }
        all
    }
}

/// Runs a rollout command while the client sends requests; the command's output and what the
/// client saw.
async fn deploy(
    root: &Path,
    frontend: SocketAddr,
    args: &[&str],
) -> (std::process::Output, Traffic) {
    let client = Client::start(frontend);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let root = root.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pilothouse(&root, &args)
    })
    .await
    .expect("the rollout command ran");
    tokio::time::sleep(Duration::from_millis(300)).await;
    (output, client.stop().await)
}

async fn servers(haproxy: &TestHaproxy) -> Vec<String> {
    let client = Haproxy::new(&haproxy.socket().display().to_string()).expect("socket");
    let mut names: Vec<String> = client
        .servers(BACKEND)
        .await
        .expect("servers")
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_behind_haproxy_lose_no_request_roll_back_bad_images_and_return_to_named_revisions()
 {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    build_web_images(&docker).await;
    let label = TestLabel::new();
    let group = label.short();
    start_group(&docker, &label, &group, WEB_V1, 3).await;
    let root = tempfile::tempdir().expect("temp dir");
    let socket = haproxy.socket().display().to_string();
    // What every rollout and rollback here runs with: one replica at a time, behind HAProxy.
    let steady = [
        "--wait",
        "--max-surge",
        "1",
        "--max-unavailable",
        "0",
        "--backend",
        "web:8080",
        "--haproxy-socket",
        socket.as_str(),
        "--docker-host",
        "unix:///var/run/docker.sock",
    ];
    let with_steady = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter()
            .chain(steady.iter())
            .chain(tail.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let json = ["--output", "json", "--progress-deadline", "1m"];
    let rollout_args =
        |image: &str| with_steady(&["rollout", group.as_str(), "--image", image], &json);

    // The operator's setup before the first rollout: the three replicas serve behind HAProxy.
    let client = Haproxy::new(&socket).expect("socket");
    for (name, _) in running(&docker, &label, &group).await {
        let inspect = docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .expect("inspect");
        let ip = pilothouse::rollout::probe::replica_ip(&inspect).expect("an address");
        wait_healthy(&docker, &name).await;
        client
            .add_server(BACKEND, &name, SocketAddr::new(ip, 8080))
            .await
            .expect("add server");
    }
    let answer = try_get(haproxy.frontend()).await.expect("HAProxy answers");
    assert_eq!((answer.status, answer.body.trim()), (200, "v1"));

    let first = rollout_args(WEB_V2);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let (output, traffic) = deploy(root.path(), haproxy.frontend(), &first).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        traffic.failed.is_empty(),
        "failed requests: {:?}",
        traffic.failed
    );
    assert!(traffic.ok.iter().any(|b| b == "v1") && traffic.ok.iter().any(|b| b == "v2"));
    assert_eq!(traffic.ok.last().map(String::as_str), Some("v2"));
    let now = running(&docker, &label, &group).await;
    assert_eq!(now.len(), 3, "{now:?}\n{}", describe(&output));
    assert!(now.iter().all(|(_, image)| image == WEB_V2), "{now:?}");
    assert!(
        now.iter().all(|(name, _)| !["1", "2", "3"]
            .iter()
            .any(|n| *name == format!("{group}-{n}"))),
        "the old replicas are gone: {now:?}"
    );
    let names: Vec<String> = now.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(
        servers(&haproxy).await,
        names,
        "HAProxy serves the new replicas only"
    );
    let lines = json_lines(&output);
    let done = lines.last().expect("a done line");
    assert_eq!(done["event"], "done", "{lines:?}");
    assert_eq!(done["outcome"], "succeeded");
    assert_eq!(done["from_revision"], 1);
    assert_eq!(done["to_revision"], 2);
    assert!(
        lines.iter().any(|l| l["event"] == "step"),
        "one line per step: {lines:?}"
    );
    // A bad image must cost no request either.
    let bad = rollout_args(WEB_BAD);
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    let (output, traffic) = deploy(root.path(), haproxy.frontend(), &bad).await;
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(
        traffic.failed.is_empty(),
        "failed requests: {:?}",
        traffic.failed
    );
    assert!(!traffic.ok.is_empty(), "the client was answered");
    assert!(
        traffic.ok.iter().all(|body| body == "v2"),
        "only the previous revision served: {:?}",
        traffic
            .ok
            .iter()
            .filter(|b| *b != "v2")
            .take(5)
            .collect::<Vec<_>>()
    );
    let lines = json_lines(&output);
    let done = lines.last().expect("a done line");
    assert_eq!(done["outcome"], "rolled-back", "{lines:?}");
    assert_eq!(done["exit"], 4);
    assert!(
        done["reason"].as_str().unwrap_or("").contains("unhealthy"),
        "{done}"
    );
    let now = running(&docker, &label, &group).await;
    assert_eq!(
        now.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>(),
        names,
        "the same v2 replicas serve, and the bad one is gone"
    );
    assert_eq!(servers(&haproxy).await, names);

    // Back to revision 1 by number, with traffic flowing.
    let back = with_steady(&["rollback", group.as_str(), "--to-revision", "1"], &[]);
    let back: Vec<&str> = back.iter().map(String::as_str).collect();
    let (output, traffic) = deploy(root.path(), haproxy.frontend(), &back).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        traffic.failed.is_empty(),
        "failed requests: {:?}",
        traffic.failed
    );
    assert!(traffic.ok.iter().any(|b| b == "v1"), "v1 serves again");
    let now = running(&docker, &label, &group).await;
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(now.iter().all(|(_, image)| image == WEB_V1), "{now:?}");

    // A new process reads the history from the state directory.
    let history = pilothouse(
        root.path(),
        &[
            "history",
            group.as_str(),
            "--docker-host",
            "unix:///var/run/docker.sock",
            "--output",
            "json",
        ],
    );
    assert_eq!(history.status.code(), Some(0), "{}", describe(&history));
    let history: serde_json::Value =
        serde_json::from_slice(&history.stdout).expect("history is JSON");
    let revisions = history["revisions"].as_array().expect("revisions");
    let images: Vec<(u64, String)> = revisions
        .iter()
        .map(|r| {
            (
                r["revision"].as_u64().unwrap_or(0),
                r["image"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    // Rolling back to revision 1 renumbers it as the newest, as `kubectl rollout undo` does.
    assert_eq!(
        images,
        vec![
            (2, WEB_V2.to_string()),
            (3, WEB_BAD.to_string()),
            (4, WEB_V1.to_string())
        ],
        "{history}"
    );
    assert_eq!(history["current"], 4, "{history}");

    // Rolling back to what runs says so and does nothing.
    let again = pilothouse(
        root.path(),
        &[
            "rollback",
            group.as_str(),
            "--to-revision",
            "4",
            "--wait",
            "--docker-host",
            "unix:///var/run/docker.sock",
        ],
    );
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already runs revision 4"),
        "{}",
        describe(&again)
    );
    let missing = pilothouse(
        root.path(),
        &[
            "rollback",
            group.as_str(),
            "--to-revision",
            "9",
            "--wait",
            "--docker-host",
            "unix:///var/run/docker.sock",
        ],
    );
    assert_eq!(missing.status.code(), Some(1), "{}", describe(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("has no revision 9"),
        "{}",
        describe(&missing)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_a_workload_that_names_its_backend_keeps_haproxy_in_step_and_loses_no_request() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    let Some(haproxy) = haproxy_or_skip().await else {
        return;
    };
    build_web_images(&docker).await;
    let label = TestLabel::new();
    let group = label.short();
    let lb_labels = [
        ("pilothouse.lb.backend", BACKEND),
        ("pilothouse.lb.port", "8080"),
    ];
    start_group_with(&docker, &label, &group, WEB_V1, 1, &lb_labels).await;
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(root.path().join("config")).expect("config dir");
    std::fs::write(
        root.path().join("config/config.toml"),
        format!(
            "[loadbalancer]\nhaproxy_socket = {:?}\n",
            haproxy.socket().display().to_string()
        ),
    )
    .expect("config.toml");
    let scale = |n: &str| {
        [
            "scale",
            group.as_str(),
            n,
            "--docker-host",
            "unix:///var/run/docker.sock",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<String>>()
    };

    // Scaling to the count it has adds the ready replica that the backend lacks.
    wait_healthy(&docker, &format!("{group}-1")).await;
    let args = scale("1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = pilothouse(root.path(), &args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(servers(&haproxy).await, vec![format!("{group}-1")]);

    // Up to 3: the new replicas join once healthy; down to 1: the newest leave first, drained.
    for (n, expected) in [("3", vec![1, 2, 3]), ("1", vec![1])] {
        let args = scale(n);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (output, traffic) = deploy(root.path(), haproxy.frontend(), &args).await;
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        assert!(
            traffic.failed.is_empty(),
            "scale to {n}: failed requests: {:?}",
            traffic.failed
        );
        let names: Vec<String> = expected.iter().map(|i| format!("{group}-{i}")).collect();
        assert_eq!(servers(&haproxy).await, names, "after scaling to {n}");
        let now: Vec<String> = running(&docker, &label, &group)
            .await
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(now, names);
    }

    // A rollout without --backend keeps the backend its replicas name in step.
    let args = [
        "rollout",
        group.as_str(),
        "--image",
        WEB_V2,
        "--wait",
        "--docker-host",
        "unix:///var/run/docker.sock",
    ];
    let (output, traffic) = deploy(root.path(), haproxy.frontend(), &args).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        traffic.failed.is_empty(),
        "failed requests: {:?}",
        traffic.failed
    );
    let now = running(&docker, &label, &group).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(servers(&haproxy).await, vec![now[0].0.clone()]);
    assert_eq!(traffic.ok.last().map(String::as_str), Some("v2"));
}
