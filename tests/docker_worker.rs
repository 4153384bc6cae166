//! The Docker worker against the real engine: snapshot, events, stats and CPU limits, logs,
//! restart, and a host that cannot be reached. Every container carries the test's label and is
//! removed after.

mod support;

use std::time::Duration;

use bollard::Docker;
use bollard::container::{RemoveContainerOptions, StartContainerOptions};
use bollard::models::{HostConfig, RestartPolicy, RestartPolicyNameEnum};
use chrono::{DateTime, Utc};
use pilothouse::model::{ConnState, CpuLimit};
use pilothouse::platform::{LogRecord, LogStart, Request, Update};
use pilothouse::store::{GROUP_LABEL, Store};
use support::{
    SLEEP_FOREVER, Signals, TestLabel, WorkerUnderTest, busybox, docker_or_skip, raise_signal,
    run_container, wait_signal,
};

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

/// What a log stream said, in the order it said it.
#[derive(Debug, Clone, PartialEq)]
enum Said {
    Line(String, String),
    Paused(String, String),
    Ended(String, String),
}

/// The next thing stream `stream` says: a line (replica, text) for each line of a batch, a
/// pause or an end (replica, reason).
async fn next_said(worker: &mut WorkerUnderTest, stream: u64) -> Vec<Said> {
    worker
        .wait_for("the log stream", WAIT, |u| match u {
            Update::Logs { stream: s, lines } if *s == stream => Some(
                lines
                    .iter()
                    .map(|l| Said::Line(l.replica.clone(), l.line.text.clone()))
                    .collect(),
            ),
            Update::LogsPaused {
                stream: s,
                replica,
                reason,
            } if *s == stream => Some(vec![Said::Paused(replica.clone(), reason.clone())]),
            Update::LogsEnded {
                stream: s,
                replica,
                reason,
            } if *s == stream => Some(vec![Said::Ended(replica.clone(), reason.clone())]),
            _ => None,
        })
        .await
}

/// Every line, pause and end of `stream` among `updates`.
fn said_in(updates: &[Update], stream: u64) -> Vec<Said> {
    let mut said = Vec::new();
    for update in updates {
        match update {
            Update::Logs { stream: s, lines } if *s == stream => said.extend(
                lines
                    .iter()
                    .map(|l| Said::Line(l.replica.clone(), l.line.text.clone())),
            ),
            Update::LogsPaused {
                stream: s,
                replica,
                reason,
            } if *s == stream => said.push(Said::Paused(replica.clone(), reason.clone())),
            Update::LogsEnded {
                stream: s,
                replica,
                reason,
            } if *s == stream => said.push(Said::Ended(replica.clone(), reason.clone())),
            _ => {}
        }
    }
    said
}

/// The lines and ends of a stream of earlier lines, until every one of `replicas` ended.
async fn collect_earlier(
    worker: &mut WorkerUnderTest,
    stream: u64,
    replicas: usize,
) -> (Vec<LogRecord>, Vec<(String, String)>) {
    let mut lines = Vec::new();
    let mut ends = Vec::new();
    while ends.len() < replicas {
        let next = worker
            .wait_for("earlier lines", WAIT, |u| match u {
                Update::Logs { stream: s, lines } if *s == stream => Some(Ok(lines.clone())),
                Update::LogsEnded {
                    stream: s,
                    replica,
                    reason,
                } if *s == stream => Some(Err((replica.clone(), reason.clone()))),
                _ => None,
            })
            .await;
        match next {
            Ok(batch) => lines.extend(batch),
            Err(end) => ends.push(end),
        }
    }
    (lines, ends)
}

fn texts(lines: &[LogRecord]) -> Vec<&str> {
    lines.iter().map(|l| l.line.text.as_str()).collect()
}

/// Starts replicas `a` and `b` that print `a1 b1 a2 b2 … a<turns> b<turns>` taking turns
/// through `signals` (each line 50 ms or more after the other's), raising `a<turns + 1>` after
/// the last turn; then, when the test raises `go`, `a-last` and `b-last` in turn. They run until
/// stopped. The test raises `a1` to begin.
async fn start_taking_turns(
    docker: &Docker,
    label: &TestLabel,
    signals: &Signals,
    turns: u32,
) -> Vec<(String, String)> {
    let forever = "trap 'exit 0' TERM; while :; do sleep 1; done";
    let a = format!(
        "for i in $(seq 1 {turns}); do {}; usleep 50000; echo a$i; {}; done; \
         {}; usleep 50000; echo a-last; {}; {forever}",
        wait_signal("a$i"),
        raise_signal("b$i"),
        wait_signal("go"),
        raise_signal("b-last"),
    );
    let b = format!(
        "for i in $(seq 1 {turns}); do {}; usleep 50000; echo b$i; {}; done; \
         {}; usleep 50000; echo b-last; {forever}",
        wait_signal("b$i"),
        raise_signal("a$((i + 1))"),
        wait_signal("b-last"),
    );
    let mut replicas = Vec::new();
    for (part, script) in [("a", a), ("b", b)] {
        let name = format!("{}-{part}", label.short());
        let config = signals.mount(busybox(label, &["sh", "-c", &script], &[]));
        let id = run_container(docker, &name, config).await;
        replicas.push((id, name));
    }
    replicas
}

#[tokio::test]
async fn a_merged_tail_is_one_timeline_then_each_replica_follows_without_repeats() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let signals = Signals::new();
    let replicas = start_taking_turns(&docker, &label, &signals, 4).await;
    let (a, b) = (replicas[0].1.clone(), replicas[1].1.clone());
    signals.raise("a1");
    signals.raised("a5", WAIT).await;

    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;
    worker
        .send(Request::FollowLogs {
            stream: 4,
            replicas,
            start: LogStart::Tail(3),
        })
        .await;
    let backlog = collect_lines(&mut worker, 4, 6).await;
    assert_eq!(
        texts(&backlog),
        ["a2", "b2", "a3", "b3", "a4", "b4"],
        "each replica's last 3 lines, in time order"
    );
    let from: Vec<&str> = backlog.iter().map(|l| l.replica.as_str()).collect();
    assert_eq!(from, [&a, &b, &a, &b, &a, &b]);

    signals.raise("go");
    let followed = collect_lines(&mut worker, 4, 2).await;
    assert_eq!(texts(&followed), ["a-last", "b-last"]);
    let late = said_in(&worker.collect_for(Duration::from_millis(1500)).await, 4);
    assert_eq!(late, [], "nothing is sent twice");
    worker.stop().await;
}

#[tokio::test]
async fn earlier_lines_are_strictly_before_the_time_asked_from_every_replica_as_one_timeline() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let signals = Signals::new();
    let replicas = start_taking_turns(&docker, &label, &signals, 4).await;
    signals.raise("a1");
    signals.raised("a5", WAIT).await;

    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;
    worker
        .send(Request::FollowLogs {
            stream: 5,
            replicas: replicas.clone(),
            start: LogStart::Tail(2),
        })
        .await;
    let shown = collect_lines(&mut worker, 5, 4).await;
    assert_eq!(texts(&shown), ["a3", "b3", "a4", "b4"]);

    // Before a3: a3 itself is not repeated; b's lines before it are a1's and a2's neighbours.
    let at_a3 = shown[0].timestamp.expect("timestamps are on");
    worker
        .send(Request::FollowLogs {
            stream: 6,
            replicas: replicas.clone(),
            start: LogStart::Before(at_a3, 2),
        })
        .await;
    let (earlier, ends) = collect_earlier(&mut worker, 6, 2).await;
    assert_eq!(texts(&earlier), ["a1", "b1", "a2", "b2"]);
    assert!(earlier.iter().all(|l| l.timestamp < Some(at_a3)));
    let loaded = |name: &str| (name.to_string(), "earlier lines loaded".to_string());
    assert_eq!(ends, [loaded(&replicas[0].1), loaded(&replicas[1].1)]);

    // Before b3: the 2 newest of each replica strictly before it, b3 not among them.
    let at_b3 = shown[1].timestamp.expect("timestamps are on");
    worker
        .send(Request::FollowLogs {
            stream: 7,
            replicas: replicas.clone(),
            start: LogStart::Before(at_b3, 2),
        })
        .await;
    let (earlier, ends) = collect_earlier(&mut worker, 7, 2).await;
    assert_eq!(texts(&earlier), ["b1", "a2", "b2", "a3"]);
    assert_eq!(ends.len(), 2);
    worker.stop().await;
}

#[tokio::test]
async fn a_crash_looping_replica_stays_followed_and_shows_each_run_once() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    // Runs 1 and 2 fail (the engine restarts them at once), run 3 and later succeed and stay
    // exited; the container's own file system counts the runs.
    let script = "n=$(cat /tmp/runs 2>/dev/null || echo 0); n=$((n + 1)); echo $n > /tmp/runs; \
                  echo \"run $n\"; usleep 300000; [ $n -ge 3 ] && exit 0; exit 3";
    let mut config = busybox(&label, &["sh", "-c", script], &[]);
    config.host_config = Some(HostConfig {
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: None,
        }),
        ..Default::default()
    });
    let name = format!("{}-crashes", label.short());
    let id = run_container(&docker, &name, config).await;

    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;
    worker
        .send(Request::FollowLogs {
            stream: 8,
            replicas: vec![(id.clone(), name.clone())],
            start: LogStart::Tail(10),
        })
        .await;
    let waiting = Said::Paused(name.clone(), "exited, waiting for restart".into());
    let line = |n: u32| Said::Line(name.clone(), format!("run {n}"));

    let mut said = Vec::new();
    while !(said.contains(&line(3)) && said.last() == Some(&waiting)) {
        said.extend(next_said(&mut worker, 8).await);
    }
    let lines: Vec<&Said> = said
        .iter()
        .filter(|s| matches!(s, Said::Line(..)))
        .collect();
    assert_eq!(lines, [&line(1), &line(2), &line(3)], "{said:?}");
    assert!(
        !said.iter().any(|s| matches!(s, Said::Ended(..))),
        "{said:?}"
    );

    // Long after it exited, a start still brings its new output.
    docker
        .start_container(&id, None::<StartContainerOptions<String>>)
        .await
        .expect("start the replica again");
    let mut said = Vec::new();
    while !(said.contains(&line(4)) && said.last() == Some(&waiting)) {
        said.extend(next_said(&mut worker, 8).await);
    }
    assert_eq!(said, [line(4), waiting.clone()], "{said:?}");

    let force = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    docker
        .remove_container(&id, Some(force))
        .await
        .expect("remove the replica");
    let said = next_said(&mut worker, 8).await;
    assert_eq!(
        said,
        [Said::Ended(name.clone(), "the replica was removed".into())]
    );
    let late = said_in(&worker.collect_for(Duration::from_millis(1000)).await, 8);
    assert_eq!(late, [], "one end, and nothing after it");
    worker.stop().await;
}

#[tokio::test]
async fn stopping_or_replacing_a_stream_ends_only_the_replicas_it_still_follows() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let script = "echo hello; trap 'exit 0' TERM; while :; do sleep 1; done";
    let mut replicas = Vec::new();
    for part in ["a", "b"] {
        let name = format!("{}-{part}", label.short());
        let id = run_container(&docker, &name, busybox(&label, &["sh", "-c", script], &[])).await;
        replicas.push((id, name));
    }
    let (a, b) = (replicas[0].1.clone(), replicas[1].1.clone());

    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;
    worker
        .send(Request::FollowLogs {
            stream: 10,
            replicas: replicas.clone(),
            start: LogStart::Tail(10),
        })
        .await;
    let shown = collect_lines(&mut worker, 10, 2).await;
    assert_eq!(texts(&shown), ["hello", "hello"]);

    let force = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    docker
        .remove_container(&replicas[1].0, Some(force))
        .await
        .expect("remove b");
    let said = next_said(&mut worker, 10).await;
    assert_eq!(
        said,
        [Said::Ended(b.clone(), "the replica was removed".into())]
    );

    worker
        .send(Request::FollowLogs {
            stream: 10,
            replicas: vec![replicas[0].clone()],
            start: LogStart::Tail(10),
        })
        .await;
    let mut said = Vec::new();
    while said.len() < 2 {
        said.extend(next_said(&mut worker, 10).await);
    }
    assert_eq!(
        said,
        [
            Said::Ended(a.clone(), "replaced by a new request".into()),
            Said::Line(a.clone(), "hello".into()),
        ]
    );

    worker.send(Request::StopLogs { stream: 10 }).await;
    let said = said_in(&worker.collect_for(Duration::from_millis(1500)).await, 10);
    assert_eq!(said, [Said::Ended(a.clone(), "stopped on request".into())]);
    worker.stop().await;
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
    // Long enough for two stats reads: the first of a stream has no CPU baseline and is not
    // sent, so a container that lives for only one read would show no sample at all.
    let id = run_container(
        &docker,
        &name,
        busybox(&label, &["sh", "-c", "sleep 6; exit 3"], &[]),
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
async fn cpu_limits_reach_the_store_and_utilization_is_a_percent_of_each_replicas_limit() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let group = label.short();
    let in_group = [(GROUP_LABEL, group.as_str())];
    let busy = ["sh", "-c", "trap 'exit 0' TERM; while :; do :; done"];
    // `--cpus 0.5`
    let mut half = busybox(&label, &busy, &in_group);
    half.host_config = Some(HostConfig {
        nano_cpus: Some(500_000_000),
        ..Default::default()
    });
    let half_id = run_container(&docker, &format!("{group}-half"), half).await;
    // No CPU flags at all.
    let free = busybox(&label, SLEEP_FOREVER, &in_group);
    let free_id = run_container(&docker, &format!("{group}-free"), free).await;
    // `--cpu-quota 25000 --cpu-period 100000`, outside the group.
    let mut quota = busybox(&label, SLEEP_FOREVER, &[]);
    quota.host_config = Some(HostConfig {
        cpu_quota: Some(25_000),
        cpu_period: Some(100_000),
        ..Default::default()
    });
    let quota_id = run_container(&docker, &format!("{group}-quota"), quota).await;

    let mut worker = WorkerUnderTest::start("local", None);
    let mut store = Store::new(10);
    let ids = [&half_id, &free_id, &quota_id];
    let measured = |store: &mut Store| {
        let inspected = ids.iter().all(|id| {
            store
                .replica("local", id)
                .is_some_and(|r| r.cpu_limit.is_some())
        });
        let sampled = [&half_id, &free_id].iter().all(|id| {
            store
                .replica_stats("local", id)
                .is_some_and(|s| s.len() >= 2)
        });
        inspected && sampled
    };
    worker
        .feed_until(&mut store, "limits and two stats reads", WAIT, measured)
        .await;

    let limit = |id: &str| store.replica("local", id).and_then(|r| r.cpu_limit);
    assert_eq!(limit(&half_id), Some(CpuLimit::Cores(0.5)));
    assert_eq!(limit(&quota_id), Some(CpuLimit::Cores(0.25)));
    assert_eq!(limit(&free_id), Some(CpuLimit::Unlimited));

    let latest = |id: &str| {
        let series = store
            .replica_stats("local", id)
            .expect("stats of the replica");
        series.back().expect("a latest read").cpu_percent
    };
    // The engine holds the busy loop to half a core: about 50% of one core, never near 100%.
    // Every read is a real measurement: the first of a stream, which has no CPU baseline and
    // would read near 0%, is not sent.
    let half_reads: Vec<f64> = store
        .replica_stats("local", &half_id)
        .into_iter()
        .flatten()
        .map(|s| s.cpu_percent)
        .collect();
    assert!(
        half_reads.iter().all(|cpu| *cpu > 10.0 && *cpu < 60.0),
        "busy under --cpus 0.5, in % of one core: {half_reads:?}"
    );
    let (half_cpu, free_cpu) = (latest(&half_id), latest(&free_id));
    let workload = store
        .workloads()
        .iter()
        .find(|w| w.id.name == group)
        .cloned()
        .expect("the group is a workload");
    let utilization = store.cpu_utilization(&workload).expect("utilization");
    // Each replica against its own limit: the busy one / 0.5 core, the idle one / one core.
    let want = (half_cpu / 0.5 + free_cpu / 1.0) / 2.0;
    assert!(
        (utilization - want).abs() < 1e-9,
        "utilization {utilization}, want {want} from {half_cpu}% and {free_cpu}%"
    );
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
