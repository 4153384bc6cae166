//! The autoscaler's live loop end to end: a rule file read from disk, a real Prometheus scraping
//! a metrics endpoint the test sets every second, and a Pilothouse group of real containers on
//! the local Docker engine, scaled through the Docker worker and the actuator exactly as the
//! console wires them. The tests check what the engine reports, what the engine really did to
//! the containers, and what the audit log says about it.
//!
//! Each test has a workload, a rule and a series of its own. Skipped with a printed reason when
//! Docker or the `prometheus` binary is missing, and failed under
//! `PILOTHOUSE_REQUIRE_SERVICES=1`.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use pilothouse::actuator::{Actuator, AuditLog};
use pilothouse::autoscaler::lock::HostLocks;
use pilothouse::autoscaler::observe::{self, Observed};
use pilothouse::autoscaler::{
    Act, Command, DecisionRecord, EngineHandle, RuleState, RuleStatus, Settings,
};
use pilothouse::model::PlatformKind;
use pilothouse::rules::simulate::{Sample, Series, Step, simulate};
use pilothouse::store::Store;
use support::autoscale::{Group, audit_lines, rule_yaml, scales_audited, series, wait};
use support::prometheus::{prometheus_or_skip, shared_prometheus_or_skip};
use support::{TestLabel, docker_or_skip};
use tokio::sync::mpsc;

/// The endpoint string the engine locks the local host by.
const ENDPOINT: &str = "unix:///var/run/docker.sock";

/// How long a scale, or a change of state, may take to show.
const WITHIN: Duration = Duration::from_secs(60);

/// The rule's scale-down stabilization window.
const WINDOW: Duration = Duration::from_secs(10);

/// The metric every test's rule reads; each test's own series of it has `app="<group>"`.
const SERIES: &str = "test_load";

/// One autoscaler as the console runs it: a Docker worker for `local`, the engine's own store
/// fed by it, an actuator with an audit log, and the engine with the rule file on disk.
struct Autoscaler {
    engine: Option<EngineHandle>,
    rule: String,
    audit: PathBuf,
    _dir: tempfile::TempDir,
}

impl Autoscaler {
    /// Writes `group`'s rule to a rules directory of its own and starts everything, with the
    /// host locks in `locks` taken in the name of `holder`.
    fn start(group: &str, prometheus: &str, locks: &Path, holder: &str) -> Autoscaler {
        Autoscaler::start_at(group, prometheus, locks, holder, ENDPOINT)
    }

    /// As [`Autoscaler::start`], reaching the engine at `address`.
    fn start_at(
        group: &str,
        prometheus: &str,
        locks: &Path,
        holder: &str,
        address: &str,
    ) -> Autoscaler {
        let dir = tempfile::tempdir().expect("a directory for the autoscaler");
        let rules_dir = dir.path().join("rules");
        std::fs::create_dir_all(&rules_dir).expect("the rules directory");
        std::fs::write(
            rules_dir.join(format!("{group}.yaml")),
            rule_yaml(SERIES, group, WINDOW),
        )
        .expect("write the rule file");
        let (rules, errors) = pilothouse::autoscaler::load_dir(&rules_dir);
        assert!(errors.is_empty(), "the rule file loads: {errors:?}");
        assert_eq!(rules.len(), 1, "one rule in {}", rules_dir.display());

        // The worker and the engine's store, as main.rs wires them.
        let (updates_tx, updates_rx) = mpsc::channel(1024);
        let (requests_tx, requests_rx) = mpsc::channel(64);
        tokio::spawn(pilothouse::platform::docker::run(
            "local".to_string(),
            Some(address.to_string()),
            updates_tx,
            requests_rx,
        ));
        let mut store = Store::new(60);
        store.add_target("local", PlatformKind::Docker);
        let observed: Observed = Arc::new(Mutex::new(store));
        tokio::spawn(observe::fan_out(updates_rx, Arc::clone(&observed), None));

        // The actuator; nobody here watches outcomes, the engine awaits its own.
        let audit = dir.path().join("audit.jsonl");
        let (outcomes_tx, _outcomes) = mpsc::unbounded_channel();
        let workers = HashMap::from([("local".to_string(), requests_tx)]);
        let actuator = Actuator::new(false, AuditLog::new(audit.clone()), workers, outcomes_tx);

        let settings = Settings {
            rules_dir,
            default_prometheus: Some(prometheus.to_string()),
            hosts: HashMap::from([("local".to_string(), address.to_string())]),
            locks: HostLocks::new(locks.to_path_buf(), holder.to_string()),
            query_timeout: Duration::from_secs(2),
            state_dir: Some(locks.join("state")),
            leader: None,
        };
        let engine = pilothouse::autoscaler::start(settings, rules, errors, observed, actuator);
        Autoscaler {
            engine: Some(engine),
            rule: group.to_string(),
            audit,
            _dir: dir,
        }
    }

    fn engine(&self) -> &EngineHandle {
        self.engine.as_ref().expect("the engine runs")
    }

    /// The rule's newest status.
    fn status(&self) -> RuleStatus {
        let status = self.engine().status.borrow().clone();
        status
            .rule(&self.rule)
            .cloned()
            .unwrap_or_else(|| panic!("no status for rule {}: {status:?}", self.rule))
    }

    /// Stops the engine (and with it the actuator, the worker and the host lock).
    async fn stop(&mut self) {
        if let Some(engine) = self.engine.take() {
            engine.stop(Duration::from_secs(10)).await;
        }
    }

    /// The autoscaler's scale lines that finished well: (from, to, reason).
    fn scales_audited(&self) -> Vec<(u64, u64, String)> {
        scales_audited(&self.audit)
    }
}

/// The rule's status in one line, for failure messages.
fn describe(status: &RuleStatus) -> String {
    let last = status.last().map_or("no decision yet".to_string(), |r| {
        format!(
            "{} ({}), readings {:?}",
            r.action.describe(),
            r.reason,
            r.readings
        )
    });
    format!(
        "state {:?}, current {:?}, desired {:?}, {} decisions, {} scales, {} metric errors; \
         last: {last}",
        status.state,
        status.current,
        status.desired,
        status.decisions_total,
        status.scales_total,
        status.metric_errors_total
    )
}

/// Whether the engine and the engine's host agree the group has `n` replicas: the status says
/// `n` now and wants `n`, and `n` containers of the group run.
async fn replicas_are(autoscaler: &Autoscaler, group: &Group, n: u32) -> Result<(), String> {
    let status = autoscaler.status();
    let (running, listed) = group.running().await;
    let settled = status.current == Some(n) && status.desired == Some(n);
    if settled && running == n as usize {
        Ok(())
    } else {
        Err(format!(
            "{running} running {listed}; engine: {}",
            describe(&status)
        ))
    }
}

async fn wait_for_replicas(autoscaler: &Autoscaler, group: &Group, n: u32) {
    let what = format!("{} at {n} replicas", group.name);
    wait(&what, WITHIN, async || {
        replicas_are(autoscaler, group, n).await
    })
    .await;
}

/// Waits until the rule's newest decision read `value`.
async fn wait_for_reading(autoscaler: &Autoscaler, value: f64) {
    let what = format!("a decision reading load {value}");
    wait(&what, WITHIN, async || {
        let status = autoscaler.status();
        match status.last() {
            Some(record) if record.readings.first() == Some(&Ok(value)) => Ok(()),
            _ => Err(describe(&status)),
        }
    })
    .await;
}

/// The scales the engine's history says it did, oldest first.
fn scaled(history: &[DecisionRecord]) -> Vec<(u32, u32)> {
    history
        .iter()
        .filter_map(|r| match r.action {
            Act::Scaled { from, to } => Some((from, to)),
            _ => None,
        })
        .collect()
}

/// The readings the live loop made, as a `rules simulate` series starting at the first record.
fn series_of(history: &[DecisionRecord]) -> Series {
    let start = history.first().map_or_else(Utc::now, |r| r.at);
    let seconds = |at: DateTime<Utc>| (at - start).as_seconds_f64();
    let samples = history
        .iter()
        .filter(|r| !r.readings.is_empty())
        .map(|r| Sample {
            t: seconds(r.at),
            values: r
                .readings
                .iter()
                .map(|v| v.as_ref().ok().copied())
                .collect(),
        })
        .collect();
    Series { samples }
}

/// The live and the simulated scales side by side, for `--nocapture`.
fn print_timelines(history: &[DecisionRecord], simulated: &[Step]) {
    let start = history.first().map_or_else(Utc::now, |r| r.at);
    for record in history {
        eprintln!(
            "live +{:5.1}s  {:?} {:?}  {}  {}",
            (record.at - start).as_seconds_f64(),
            record.current,
            record.readings,
            record.action.describe(),
            record.reason
        );
    }
    for step in simulated.iter().filter(|s| s.decision.desired != s.current) {
        eprintln!(
            "simulated +{}s  {} → {}",
            step.t, step.current, step.decision.desired
        );
    }
}

#[tokio::test]
async fn the_workload_scales_up_to_what_the_query_asks_and_back_down_after_the_window() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    let Some(prometheus) = shared_prometheus_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let group = Group::start(&docker, &label).await;
    let load = series(SERIES, &group.name);
    prometheus.endpoint.set(&load, 10.0);
    let locks = tempfile::tempdir().expect("a lock directory");
    let mut autoscaler = Autoscaler::start(&group.name, &prometheus.url(), locks.path(), "test");

    // At 10 per replica, one replica is just right.
    wait_for_reading(&autoscaler, 10.0).await;
    replicas_are(&autoscaler, &group, 1)
        .await
        .expect("one replica holds at load 10");

    // 40 asks for ceil(40 / 10) = 4.
    prometheus.endpoint.set(&load, 40.0);
    wait_for_replicas(&autoscaler, &group, 4).await;

    // 5 asks for 1, but the window remembers the 4s for 10 s: a few seconds in, still 4.
    prometheus.endpoint.set(&load, 5.0);
    wait_for_reading(&autoscaler, 5.0).await;
    let held_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < held_until {
        let held = replicas_are(&autoscaler, &group, 4).await;
        assert_eq!(held, Ok(()), "4 replicas held inside the window");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_for_replicas(&autoscaler, &group, 1).await;

    // The engine's own account: one scale up, one scale down, the second a full window after
    // the last cycle that still asked for 4.
    let status = autoscaler.status();
    let history: Vec<DecisionRecord> = status.history.iter().cloned().collect();
    assert_eq!(scaled(&history), [(1, 4), (4, 1)], "{}", describe(&status));
    let last_high = history
        .iter()
        .rfind(|r| r.readings.first() == Some(&Ok(40.0)))
        .expect("a cycle read 40");
    let scale_down = history
        .iter()
        .find(|r| r.action == Act::Scaled { from: 4, to: 1 })
        .expect("the scale down is in the history");
    let waited = scale_down.at - last_high.at;
    assert!(
        waited >= TimeDelta::from_std(WINDOW).expect("a small window"),
        "scaled down {waited} after the last cycle that asked for 4; the window is {WINDOW:?}"
    );
    assert!(
        scale_down.reason.contains("load 5 / 10 per replica x 4"),
        "{}",
        scale_down.reason
    );

    // The audit log: both scales, by the autoscaler, each with the rule and the reading.
    let audited = autoscaler.scales_audited();
    let counts: Vec<(u64, u64)> = audited.iter().map(|(f, t, _)| (*f, *t)).collect();
    assert_eq!(counts, [(1, 4), (4, 1)], "{audited:?}");
    let rule = &group.name;
    assert!(
        audited[0].2.starts_with(&format!("rule {rule}: ")) && audited[0].2.contains("load 40"),
        "{}",
        audited[0].2
    );
    assert!(audited[1].2.contains("load 5"), "{}", audited[1].2);

    // `rules simulate` over the readings the live loop made gives the same scales in the same
    // order and ends at the same count. Its cycles fall on whole seconds from the first record
    // and its replicas follow each decision at once, while the live loop's cycles drift by the
    // time each one takes, so exactly when each scale happens cannot match.
    let simulated = simulate(&status.rule, &series_of(&history), 1);
    print_timelines(&history, &simulated);
    let changes: Vec<(u32, u32)> = simulated
        .iter()
        .filter(|s| s.decision.desired != s.current)
        .map(|s| (s.current, s.decision.desired))
        .collect();
    assert_eq!(
        changes,
        scaled(&history),
        "simulated and live scales differ"
    );
    let last = simulated.last().expect("the simulation has steps");
    assert_eq!((last.decision.desired, status.current), (1, Some(1)));

    autoscaler.stop().await;
    prometheus.endpoint.remove(&load);
}

#[tokio::test]
async fn a_prometheus_outage_holds_the_replicas_and_recovery_resumes() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    // This test kills its server, so it has one of its own.
    let Some(mut prometheus) = prometheus_or_skip(&[]).await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let group = Group::start(&docker, &label).await;
    let load = series(SERIES, &group.name);
    prometheus.endpoint.set(&load, 30.0);
    let locks = tempfile::tempdir().expect("a lock directory");
    let mut autoscaler = Autoscaler::start(&group.name, &prometheus.url(), locks.path(), "test");
    wait_for_replicas(&autoscaler, &group, 3).await;

    // Prometheus dies; the load that would ask for 1 never reaches the engine.
    prometheus.stop();
    prometheus.endpoint.set(&load, 0.0);
    let before = autoscaler.status().metric_errors_total;
    let failed = wait("a decision whose reading failed", WITHIN, async || {
        let status = autoscaler.status();
        match status.last() {
            Some(r) if r.readings.first().is_some_and(Result::is_err) => Ok(r.clone()),
            _ => Err(describe(&status)),
        }
    })
    .await;
    let error = failed.readings[0].clone().expect_err("the reading failed");
    eprintln!("during the outage: {}", failed.reason);
    assert!(
        error.contains("cannot reach") && error.contains(&prometheus.url()),
        "{error}"
    );
    assert!(
        failed.reason.contains("no metric read: holding 3"),
        "{}",
        failed.reason
    );

    // Several failed cycles later, still 3 everywhere.
    let first_failed = autoscaler.status().decisions_total;
    wait("five failed cycles", WITHIN, async || {
        let status = autoscaler.status();
        replicas_are(&autoscaler, &group, 3)
            .await
            .unwrap_or_else(|seen| panic!("the outage changed the replicas: {seen}"));
        let last_failed = status
            .last()
            .is_some_and(|r| r.readings.first().is_some_and(Result::is_err));
        assert!(last_failed, "a cycle read a value: {}", describe(&status));
        if status.decisions_total >= first_failed + 5 {
            Ok(status)
        } else {
            Err(describe(&status))
        }
    })
    .await;
    let status = autoscaler.status();
    assert!(
        status.metric_errors_total >= before + 5,
        "{}",
        describe(&status)
    );
    assert_eq!(status.last().map(|r| &r.action), Some(&Act::Hold));

    // Back on the same port with 50 (set first, so the first reading after recovery is 50).
    prometheus.endpoint.set(&load, 50.0);
    prometheus.restart().await;
    wait_for_replicas(&autoscaler, &group, 5).await;

    let audited = autoscaler.scales_audited();
    let counts: Vec<(u64, u64)> = audited.iter().map(|(f, t, _)| (*f, *t)).collect();
    assert_eq!(
        counts,
        [(1, 3), (3, 5)],
        "no scale during the outage: {audited:?}"
    );
    autoscaler.stop().await;
}

#[tokio::test]
async fn a_second_engine_on_the_same_host_stands_by_and_says_who_holds_it() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    let Some(prometheus) = shared_prometheus_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let group = Group::start(&docker, &label).await;
    let load = series(SERIES, &group.name);
    prometheus.endpoint.set(&load, 10.0);
    let locks = tempfile::tempdir().expect("a shared lock directory");

    // The first takes the host's lock in its first cycle that sees the workload.
    let mut first = Autoscaler::start(&group.name, &prometheus.url(), locks.path(), "engine A");
    wait(
        "the first engine deciding on 1 replica",
        WITHIN,
        async || {
            let status = first.status();
            let decided = status.last().is_some_and(|r| r.current == Some(1));
            match (&status.state, decided) {
                (RuleState::Active, true) => Ok(()),
                _ => Err(describe(&status)),
            }
        },
    )
    .await;
    // Paused, it keeps the lock and leaves the workload alone, so only the second could act.
    assert!(first.engine().send(Command::Pause(group.name.clone())));
    wait("the first engine paused", WITHIN, async || {
        let status = first.status();
        match status.state {
            RuleState::Paused => Ok(()),
            _ => Err(describe(&status)),
        }
    })
    .await;

    // The second reaches the same engine by another address where the host has one (the socket
    // through its resolved path: /var/run is often a link to /run), and still finds it locked.
    let other_address = std::fs::canonicalize("/var/run/docker.sock")
        .map(|path| format!("unix://{}", path.display()))
        .unwrap_or_else(|_| ENDPOINT.to_string());
    eprintln!("the second engine reaches the engine at {other_address}");
    let mut second = Autoscaler::start_at(
        &group.name,
        &prometheus.url(),
        locks.path(),
        "engine B",
        &other_address,
    );
    let holder = wait("the second engine on standby", WITHIN, async || {
        let status = second.status();
        match status.state {
            RuleState::Standby { holder } => Ok(holder),
            _ => Err(describe(&status)),
        }
    })
    .await;
    eprintln!("the second engine stands by for: {holder}");
    assert!(
        holder.starts_with("engine A since ")
            && holder.contains(" for docker engine ")
            && holder.ends_with(&format!(" at {ENDPOINT}")),
        "{holder}"
    );

    // 30 asks for 3: the second wants it and does not do it.
    prometheus.endpoint.set(&load, 30.0);
    wait("the second engine wanting 3", WITHIN, async || {
        let status = second.status();
        match status.last().map(|r| &r.action) {
            Some(Act::Standby { from: 1, to: 3 }) => Ok(()),
            _ => Err(describe(&status)),
        }
    })
    .await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let (running, listed) = group.running().await;
        assert_eq!(running, 1, "the standby engine scaled: {listed}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The first, resumed, scales; the second never did.
    assert!(first.engine().send(Command::Resume(group.name.clone())));
    wait_for_replicas(&first, &group, 3).await;
    let counts: Vec<(u64, u64)> = first
        .scales_audited()
        .iter()
        .map(|(f, t, _)| (*f, *t))
        .collect();
    assert_eq!(counts, [(1, 3)]);
    let status = second.status();
    assert!(
        matches!(status.state, RuleState::Standby { .. }),
        "{}",
        describe(&status)
    );
    assert_eq!(status.scales_total, 0, "{}", describe(&status));
    let history: Vec<DecisionRecord> = status.history.iter().cloned().collect();
    assert_eq!(scaled(&history), [], "{}", describe(&status));
    assert_eq!(audit_lines(&second.audit), Vec::<serde_json::Value>::new());

    // When the first stops, its lock goes with it and the second takes over.
    first.stop().await;
    wait("the second engine active", WITHIN, async || {
        let status = second.status();
        match status.state {
            RuleState::Active => Ok(()),
            _ => Err(describe(&status)),
        }
    })
    .await;
    prometheus.endpoint.set(&load, 40.0);
    wait_for_replicas(&second, &group, 4).await;
    let counts: Vec<(u64, u64)> = second
        .scales_audited()
        .iter()
        .map(|(f, t, _)| (*f, *t))
        .collect();
    assert_eq!(counts, [(3, 4)]);

    second.stop().await;
    prometheus.endpoint.remove(&load);
}

#[tokio::test]
async fn a_running_rollout_holds_the_rule_until_it_ends() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    let Some(prometheus) = shared_prometheus_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let group = Group::start(&docker, &label).await;
    let load = series(SERIES, &group.name);
    prometheus.endpoint.set(&load, 10.0);
    let locks = tempfile::tempdir().expect("a lock directory");
    let mut autoscaler = Autoscaler::start(&group.name, &prometheus.url(), locks.path(), "test");
    wait_for_reading(&autoscaler, 10.0).await;

    // A rollout process of the group holds its rollout lock, as `pilothouse rollout` does.
    let engine_id = docker
        .info()
        .await
        .expect("docker info")
        .id
        .expect("an engine ID");
    let files = pilothouse::rollout::state::Files::new(
        &locks.path().join("state"),
        &engine_id,
        &group.name,
    );
    let rollout =
        pilothouse::rollout::state::lock(&files, "rollout pid 1 (test)").expect("the rollout lock");

    prometheus.endpoint.set(&load, 40.0);
    wait("a cycle that waits for the rollout", WITHIN, async || {
        let status = autoscaler.status();
        match status.last() {
            Some(r) if r.readings.first() == Some(&Ok(40.0)) && r.reason.contains("a rollout") => {
                Ok(())
            }
            _ => Err(describe(&status)),
        }
    })
    .await;
    let (running, listed) = group.running().await;
    assert_eq!(running, 1, "no scale while the rollout runs: {listed}");

    drop(rollout);
    wait_for_replicas(&autoscaler, &group, 4).await;
    autoscaler.stop().await;
}
