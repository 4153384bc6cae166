//! The Docker worker against the real engine: snapshot, events, stats, logs, restart, and a
//! host that cannot be reached. Every container carries the test's label and is removed after.

mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use pilothouse::model::ConnState;
use pilothouse::platform::{LogRecord, LogStart, Request, Update};
use support::{SLEEP_FOREVER, TestLabel, WorkerUnderTest, busybox, docker_or_skip, run_container};

const WAIT: Duration = Duration::from_secs(15);

/// The lines of `stream` until `count` lines came or the stream ended.
async fn collect_lines(worker: &mut WorkerUnderTest, stream: u64, count: usize) -> Vec<LogRecord> {
    let mut lines = Vec::new();
    while lines.len() < count {
        let batch = worker
            .wait_for("log lines", WAIT, |u| match u {
                Update::Logs { stream: s, lines } if *s == stream => Some(Some(lines.clone())),
                Update::LogsEnded { stream: s, .. } if *s == stream => Some(None),
                _ => None,
            })
            .await;
        match batch {
            Some(batch) => lines.extend(batch),
            None => break,
        }
    }
    lines
}

#[tokio::test]
async fn the_snapshot_shows_a_compose_labelled_container_the_test_started() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let project = label.short();
    let name = format!("{project}-web-1");
    let compose = [
        ("com.docker.compose.project", project.as_str()),
        ("com.docker.compose.service", "web"),
        ("com.docker.compose.container-number", "1"),
    ];
    let mut config = busybox(&label, SLEEP_FOREVER, &compose);
    config.env = Some(vec!["SHOP_API_TOKEN=abc123".to_string()]);
    let id = run_container(&docker, &name, config).await;

    let mut worker = WorkerUnderTest::start("local", None);
    let state = worker
        .wait_for("connected", WAIT, |u| match u {
            Update::Connection {
                state: s @ ConnState::Connected { .. },
                ..
            } => Some(s.clone()),
            _ => None,
        })
        .await;
    let ConnState::Connected { api_version, .. } = state else {
        unreachable!()
    };
    assert!(
        api_version.starts_with("1."),
        "negotiated API version {api_version}"
    );

    let replicas = worker.snapshot().await;
    let replica = replicas
        .iter()
        .find(|r| r.id == id)
        .expect("the test's container is in the snapshot");
    assert_eq!(replica.name, name);
    assert_eq!(replica.image, support::TEST_IMAGE);
    assert_eq!(replica.state, "running");
    assert!(
        replica.status.starts_with("Up"),
        "status {}",
        replica.status
    );
    assert_eq!(replica.labels["com.docker.compose.project"], project);
    assert_eq!(replica.labels["com.docker.compose.service"], "web");
    assert!(replica.created.is_some());
    assert!(
        replica.details.is_none(),
        "the snapshot is sent before any inspect"
    );

    let inspected = worker
        .wait_for("the background inspect", WAIT, |u| match u {
            Update::Replica { replica, .. } if replica.id == id => Some(replica.clone()),
            _ => None,
        })
        .await;
    let details = inspected.details.expect("an inspected replica has details");
    assert_eq!(details.command, vec!["sh", "-c", SLEEP_FOREVER[2]]);
    assert!(
        details
            .env
            .contains(&("SHOP_API_TOKEN".to_string(), "abc123".to_string()))
    );
    assert!(!details.security.privileged);
    assert!(inspected.started_at.is_some());
    worker.stop().await;
}

#[tokio::test]
async fn a_container_started_after_the_snapshot_arrives_through_events_and_its_destroy_removes_it()
{
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;

    let name = format!("{}-late", label.short());
    let id = run_container(&docker, &name, busybox(&label, SLEEP_FOREVER, &[])).await;
    let running = worker
        .wait_for("the new container running", WAIT, |u| match u {
            Update::Replica { replica, .. } if replica.id == id && replica.state == "running" => {
                Some(replica.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(running.name, name);
    worker
        .wait_for("a start event", WAIT, |u| match u {
            Update::Event { event, .. } if event.subject == name && event.action == "start" => {
                Some(())
            }
            _ => None,
        })
        .await;

    let force = bollard::container::RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    docker
        .remove_container(&id, Some(force))
        .await
        .expect("remove");
    worker
        .wait_for("the replica removed", WAIT, |u| match u {
            Update::ReplicaRemoved { id: gone, .. } if *gone == id => Some(()),
            _ => None,
        })
        .await;
    worker.stop().await;
}

#[tokio::test]
async fn a_container_that_exits_is_shown_exited_and_its_stats_stop() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;

    let name = format!("{}-exits", label.short());
    let id = run_container(
        &docker,
        &name,
        busybox(&label, &["sh", "-c", "sleep 2; exit 3"], &[]),
    )
    .await;
    worker
        .wait_for("a stats sample while it runs", WAIT, |u| match u {
            Update::Stats { id: of, .. } if *of == id => Some(()),
            _ => None,
        })
        .await;
    worker
        .wait_for("the replica exited", WAIT, |u| match u {
            Update::Replica { replica, .. } if replica.id == id && replica.state == "exited" => {
                Some(())
            }
            _ => None,
        })
        .await;
    // Samples already in flight may still land; after a moment there must be none.
    worker.collect_for(Duration::from_millis(1500)).await;
    let late = worker.collect_for(Duration::from_secs(3)).await;
    let stats = late
        .iter()
        .filter(|u| matches!(u, Update::Stats { id: of, .. } if *of == id))
        .count();
    assert_eq!(stats, 0, "stats kept coming for an exited container");
    worker.stop().await;
}

#[tokio::test]
async fn stats_arrive_for_a_busy_container_with_a_cpu_value_above_zero() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let busy = ["sh", "-c", "trap 'exit 0' TERM; while :; do :; done"];
    let id = run_container(
        &docker,
        &format!("{}-busy", label.short()),
        busybox(&label, &busy, &[]),
    )
    .await;

    let mut worker = WorkerUnderTest::start("local", None);
    let sample = worker
        .wait_for("a stats sample with CPU above zero", WAIT, |u| match u {
            Update::Stats { id: of, sample, .. } if *of == id && sample.cpu_percent > 0.0 => {
                Some(*sample)
            }
            _ => None,
        })
        .await;
    assert!(
        sample.cpu_percent <= 100.0 * 256.0,
        "cpu {}",
        sample.cpu_percent
    );
    assert!(sample.mem_bytes > 0, "memory in use {}", sample.mem_bytes);
    assert!(sample.mem_limit >= sample.mem_bytes);
    worker.stop().await;
}

#[tokio::test]
async fn following_a_container_that_prints_lines_gives_those_lines_in_order_sanitized() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let script = "for i in 1 2 3 4 5; do echo \"line $i\"; done; \
                  printf 'evil \\033]0;title\\007 \\033[2J bell\\007 end\\n'; \
                  echo 'to stderr' >&2; \
                  trap 'exit 0' TERM; while :; do sleep 1; done";
    let name = format!("{}-logs", label.short());
    let id = run_container(&docker, &name, busybox(&label, &["sh", "-c", script], &[])).await;

    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;
    let start = LogStart::Tail(100);
    worker
        .send(Request::FollowLogs {
            stream: 1,
            replicas: vec![(id.clone(), name.clone())],
            start,
        })
        .await;
    let lines = collect_lines(&mut worker, 1, 7).await;

    assert_eq!(lines.len(), 7, "{lines:?}");
    let stdout: Vec<&str> = lines
        .iter()
        .filter(|l| !l.stderr)
        .map(|l| l.line.text.as_str())
        .collect();
    assert_eq!(
        &stdout[..5],
        ["line 1", "line 2", "line 3", "line 4", "line 5"]
    );
    let evil = stdout[5];
    assert!(
        evil.starts_with("evil") && evil.ends_with("end"),
        "{evil:?}"
    );
    assert!(
        !evil.chars().any(|c| c.is_control()),
        "control characters left in {evil:?}"
    );
    assert!(
        !evil.contains("title"),
        "the OSC title payload is not shown: {evil:?}"
    );
    let stderr: Vec<&LogRecord> = lines.iter().filter(|l| l.stderr).collect();
    assert_eq!(stderr.len(), 1);
    assert_eq!(stderr[0].line.text, "to stderr");
    assert!(
        lines
            .iter()
            .all(|l| l.replica == name && l.timestamp.is_some())
    );

    worker.send(Request::StopLogs { stream: 1 }).await;
    let reason = worker
        .wait_for("the stream to end", WAIT, |u| match u {
            Update::LogsEnded {
                stream: 1, reason, ..
            } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reason, "stopped on request");
    worker.stop().await;
}

#[tokio::test]
async fn the_tail_start_gives_the_last_lines_and_the_before_start_the_lines_before_a_time() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let script = "for i in $(seq 1 12); do echo \"n$i\"; usleep 30000; done; \
                  trap 'exit 0' TERM; while :; do sleep 1; done";
    let name = format!("{}-tail", label.short());
    let id = run_container(&docker, &name, busybox(&label, &["sh", "-c", script], &[])).await;
    tokio::time::sleep(Duration::from_millis(900)).await;

    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;
    let replicas = vec![(id.clone(), name.clone())];
    worker
        .send(Request::FollowLogs {
            stream: 2,
            replicas: replicas.clone(),
            start: LogStart::Tail(4),
        })
        .await;
    let tail = collect_lines(&mut worker, 2, 4).await;
    let texts: Vec<&str> = tail.iter().map(|l| l.line.text.as_str()).collect();
    assert_eq!(texts, ["n9", "n10", "n11", "n12"]);

    let first_shown: DateTime<Utc> = tail[0].timestamp.expect("timestamps are on");
    let start = LogStart::Before(first_shown, 3);
    worker
        .send(Request::FollowLogs {
            stream: 3,
            replicas,
            start,
        })
        .await;
    let earlier = collect_lines(&mut worker, 3, 100).await;
    let texts: Vec<&str> = earlier.iter().map(|l| l.line.text.as_str()).collect();
    assert_eq!(
        texts,
        ["n6", "n7", "n8"],
        "the 3 lines before n9, and the stream ends"
    );
    worker.stop().await;
}

#[tokio::test]
async fn restart_changes_started_at() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let name = format!("{}-restart", label.short());
    let id = run_container(&docker, &name, busybox(&label, SLEEP_FOREVER, &[])).await;

    let mut worker = WorkerUnderTest::start("local", None);
    let before = worker
        .wait_for("the inspected replica", WAIT, |u| match u {
            Update::Replica { replica, .. } if replica.id == id => replica.started_at,
            _ => None,
        })
        .await;
    let reply = worker
        .ask(WAIT, |reply| Request::Restart {
            id: id.clone(),
            reply,
        })
        .await;
    assert_eq!(reply, Ok(format!("restarted {name}")));
    let after = worker
        .wait_for("a later StartedAt", WAIT, |u| match u {
            Update::Replica { replica, .. } if replica.id == id => {
                replica.started_at.filter(|t| *t > before)
            }
            _ => None,
        })
        .await;
    assert!(after > before);
    worker.stop().await;
}

#[tokio::test]
async fn an_unreachable_host_gives_disconnected_with_a_clear_error_and_no_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("nothing-here").join("docker.sock");
    let host = format!("unix://{}", socket.display());
    let mut worker = WorkerUnderTest::start("nowhere", Some(host.clone()));
    let (error, retry) = worker
        .wait_for("disconnected", WAIT, |u| match u {
            Update::Connection {
                target,
                state:
                    ConnState::Disconnected {
                        error,
                        retry_in_secs,
                    },
            } if target == "nowhere" => Some((error.clone(), *retry_in_secs)),
            _ => None,
        })
        .await;
    assert_eq!(
        error,
        format!(
            "cannot reach Docker at {host}: no such socket (is the daemon running? set \
             DOCKER_HOST or --docker-host)"
        )
    );
    assert_eq!(retry, 1, "the first retry comes after 1 s");
    let reply = worker
        .ask(WAIT, |reply| Request::Restart {
            id: "x".into(),
            reply,
        })
        .await;
    let refusal = reply.expect_err("no restart without an engine");
    assert!(
        refusal.contains("not connected") && refusal.contains(&host),
        "{refusal}"
    );
    let retry = worker
        .wait_for("the second attempt", WAIT, |u| match u {
            Update::Connection {
                state: ConnState::Disconnected { retry_in_secs, .. },
                ..
            } => Some(*retry_in_secs),
            _ => None,
        })
        .await;
    assert_eq!(retry, 2, "the backoff doubles");
    worker.stop().await;
}

#[tokio::test]
async fn closing_the_requests_ends_the_worker_and_every_task_it_started() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let name = format!("{}-quit", label.short());
    let chatty = [
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do echo tick; sleep 1; done",
    ];
    let id = run_container(&docker, &name, busybox(&label, &chatty, &[])).await;

    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;
    worker
        .send(Request::FollowLogs {
            stream: 9,
            replicas: vec![(id.clone(), name)],
            start: LogStart::Tail(1),
        })
        .await;
    collect_lines(&mut worker, 9, 1).await;
    worker
        .wait_for("stats of the container", WAIT, |u| match u {
            Update::Stats { id: of, .. } if *of == id => Some(()),
            _ => None,
        })
        .await;

    worker.requests = None;
    let task = &mut worker.task;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("ends")
        .expect("no panic");
    // Every task holds a sender of the updates: the channel closes only when all are gone.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while worker.updates.recv().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "a stats or log task outlived the worker");
}

/// A unix socket in a temp dir that forwards to the local engine, and can drop every
/// connection at once as a daemon restart does.
struct Relay {
    path: std::path::PathBuf,
    accept: tokio::task::JoinHandle<()>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    fn start(path: &std::path::Path) -> Relay {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).expect("bind relay socket");
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = std::sync::Arc::clone(&links);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    let engine = std::env::var("DOCKER_HOST")
                        .ok()
                        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
                        .unwrap_or_else(|| "/var/run/docker.sock".to_string());
                    if let Ok(mut upstream) = tokio::net::UnixStream::connect(engine).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                held.lock().expect("relay links").push(link);
            }
        });
        Relay {
            path: path.to_path_buf(),
            accept,
            links,
        }
    }

    /// Stops listening and cuts every open connection.
    fn cut(self) {
        self.accept.abort();
        for link in self.links.lock().expect("relay links").drain(..) {
            link.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[tokio::test]
async fn a_lost_engine_connection_gives_disconnected_then_a_fresh_snapshot_after_reconnecting() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("relay.sock");
    let relay = Relay::start(&socket);
    let mut worker =
        WorkerUnderTest::start("relayed", Some(format!("unix://{}", socket.display())));
    worker.snapshot().await;

    relay.cut();
    let (error, retry) = worker
        .wait_for("disconnected", WAIT, |u| match u {
            Update::Connection {
                state:
                    ConnState::Disconnected {
                        error,
                        retry_in_secs,
                    },
                ..
            } => Some((error.clone(), *retry_in_secs)),
            _ => None,
        })
        .await;
    assert!(
        error.contains(&socket.display().to_string()),
        "the error names the address: {error}"
    );
    assert_eq!(retry, 1);

    // A container created while the engine was out of reach shows in the fresh snapshot.
    let name = format!("{}-while-away", label.short());
    let id = run_container(&docker, &name, busybox(&label, SLEEP_FOREVER, &[])).await;
    let _relay = Relay::start(&socket);
    worker
        .wait_for("connected again", WAIT, |u| match u {
            Update::Connection {
                state: ConnState::Connected { .. },
                ..
            } => Some(()),
            _ => None,
        })
        .await;
    let replicas = worker.snapshot().await;
    assert!(
        replicas.iter().any(|r| r.id == id),
        "the fresh snapshot has {name}"
    );
    worker.stop().await;
}
