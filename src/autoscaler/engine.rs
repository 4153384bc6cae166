//! The live loop: a task per rule that, every pollingInterval, looks the workload up in the
//! engine's own store, reads the rule's metrics, calls [`decide`] and scales through the
//! actuator; and one engine task that owns the rules, takes commands (pause, resume, replace,
//! reload, preview) and publishes a [`Status`] after every cycle.
//!
//! Not for reading the platforms: the store is fed by the workers (see [`super::observe`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::lock::{HostLocks, LockError};
use super::observe::Observed;
use super::status::{Act, DecisionRecord, HISTORY, RuleState, RuleStatus, Status};
use crate::actuator::{ActionKind, ActionRequest, Actuator};
use crate::metrics::{MetricSource as _, PrometheusSource};
use crate::model::{ConnState, PlatformKind, WorkloadId};
use crate::rules::{self, MetricSource, Reading, Recommendation, Rule, RuleTarget, ScaleEvent};
use crate::rules::{Inputs, decide, retain_recent};

/// A scale the host has not reported back yet is taken as done for this long, so that a cycle
/// right after a scale does not see the old count and scale (and count a scale event) again.
const SCALE_REPORT_GRACE: TimeDelta = TimeDelta::seconds(15);

/// A rule and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedRule {
    pub file: PathBuf,
    pub rule: Rule,
}

/// What the engine needs besides its rules.
#[derive(Debug)]
pub struct Settings {
    /// Where `Command::Reload` reads the rules from.
    pub rules_dir: PathBuf,
    /// The Prometheus server for metrics without a `serverAddress`.
    pub default_prometheus: Option<String>,
    /// The targets the engine may scale (Docker hosts, Kubernetes contexts): name → endpoint
    /// (the lock is per endpoint).
    pub hosts: HashMap<String, String>,
    /// The host locks, already pointing at the shared directory.
    pub locks: HostLocks,
    /// How long one Prometheus query may take.
    pub query_timeout: Duration,
    /// Where rollouts keep their state: a workload whose rollout is running is not scaled.
    pub state_dir: Option<PathBuf>,
    /// A leader election this engine takes part in: `None` in the channel while it leads,
    /// otherwise who does (or why no one does), and then no rule acts.
    pub leader: Option<watch::Receiver<Option<String>>>,
}

/// What a front end asks of the engine.
#[derive(Debug)]
pub enum Command {
    /// Stop evaluating a rule (the action was already checked and audited by the actuator).
    Pause(String),
    /// Evaluate a paused rule again.
    Resume(String),
    /// The rules of `file` are now these (the editor saved it); others files' rules stay.
    ReplaceFile { file: PathBuf, rules: Vec<Rule> },
    /// Read the rules directory again; a file that does not load keeps its previous rules.
    Reload,
    /// What these rules would decide now, without acting: one record per rule.
    Preview {
        rules: Vec<Rule>,
        reply: oneshot::Sender<Vec<DecisionRecord>>,
    },
    /// A target opened after the start (`:ctx NAME`), at `endpoint` (the lock is per endpoint):
    /// its rules, unsupported until now, start.
    AddTarget { name: String, endpoint: String },
}

/// The running engine, as a front end holds it.
#[derive(Debug)]
pub struct EngineHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// The newest status; changes after every cycle and command.
    pub status: watch::Receiver<Arc<Status>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl EngineHandle {
    /// Hand a command to the engine; false when the engine has stopped.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// A sender of commands that outlives borrows of the handle (for signal handlers).
    pub fn commands(&self) -> mpsc::UnboundedSender<Command> {
        self.commands.clone()
    }

    /// Stop every rule: cycles in flight finish (for at most `grace`), then the engine ends.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!(
                ?grace,
                "autoscaler cycles still running at shutdown; cut short"
            );
            task.abort();
        }
    }
}

/// Read every `*.yaml` and `*.yml` file in `dir` (a missing directory has no rules). Errors are
/// `file:line:column: message` lines; a rule whose name an earlier file already used, or whose
/// workload an earlier rule already scales, is an error too, and is left out.
pub fn load_dir(dir: &Path) -> (Vec<LoadedRule>, Vec<String>) {
    let read = read_dir(dir);
    (read.rules, read.errors)
}

/// A rules directory as read: its rules, its errors, the files that did not load, and whether
/// the directory itself could be read.
struct DirRead {
    rules: Vec<LoadedRule>,
    errors: Vec<String>,
    failed: Vec<PathBuf>,
    listed: bool,
}

fn read_dir(dir: &Path) -> DirRead {
    let mut read = DirRead {
        rules: Vec::new(),
        errors: Vec::new(),
        failed: Vec::new(),
        listed: true,
    };
    let files = match rule_files(dir) {
        Ok(files) => files,
        Err(None) => return read,
        Err(Some(error)) => {
            read.errors.push(error);
            read.listed = false;
            return read;
        }
    };
    for file in files {
        match rules::load_rules(&file) {
            Ok(rules) => add_unique(&mut read.rules, &mut read.errors, &file, rules),
            Err(errs) => {
                read.errors.extend(errs.iter().map(ToString::to_string));
                read.failed.push(file);
            }
        }
    }
    read
}

/// The rule files in `dir`, sorted; `Err(None)` when there is no such directory.
fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, Option<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
        Err(e) => {
            return Err(Some(format!(
                "{}: cannot read the rules directory: {e}",
                dir.display()
            )));
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_rule_file(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Whether the loader reads `path`: `*.yaml` or `*.yml`, so drafts (`web.yaml.draft`) are not.
pub fn is_rule_file(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

fn add_unique(
    loaded: &mut Vec<LoadedRule>,
    errors: &mut Vec<String>,
    file: &Path,
    rules: Vec<Rule>,
) {
    for rule in rules {
        if let Some(error) = clash(loaded.iter().map(|l| (&l.file, &l.rule)), file, &rule) {
            errors.push(error);
            continue;
        }
        loaded.push(LoadedRule {
            file: file.to_path_buf(),
            rule,
        });
    }
}

/// Why `rule` (from `file`) cannot join the rules already loaded: its name is taken, or its
/// workload is scaled by another rule already (two rules on one workload fight each other).
fn clash<'a>(
    loaded: impl IntoIterator<Item = (&'a PathBuf, &'a Rule)>,
    file: &Path,
    rule: &Rule,
) -> Option<String> {
    for (other_file, other) in loaded {
        if other.name == rule.name {
            return Some(format!(
                "{}: rule {:?} is already defined in {}; this one is not loaded",
                file.display(),
                rule.name,
                other_file.display()
            ));
        }
        if other.target == rule.target {
            return Some(format!(
                "{}: rule {:?} scales {}, which rule {:?} in {} already scales; this one is not \
                 loaded",
                file.display(),
                rule.name,
                rule.target,
                other.name,
                other_file.display()
            ));
        }
    }
    None
}

/// Start the engine with `rules`; `load_errors` are shown until the next load.
pub fn start(
    settings: Settings,
    rules: Vec<LoadedRule>,
    load_errors: Vec<String>,
    observed: Observed,
    actuator: Actuator,
) -> EngineHandle {
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (status_tx, status) = watch::channel(Arc::new(Status::default()));
    let (stop_tx, stop) = watch::channel(false);
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        observed,
        actuator,
        default_prometheus: settings.default_prometheus,
        hosts: Mutex::new(settings.hosts),
        locks: Mutex::new(settings.locks),
        sources: Mutex::new(HashMap::new()),
        servers: Mutex::new(Default::default()),
        query_timeout: settings.query_timeout,
        state_dir: settings.state_dir,
        leader: settings.leader,
    });
    let mut engine = Engine {
        shared,
        rules_dir: settings.rules_dir,
        running: Vec::new(),
        load_errors,
        reports_tx,
        stop: stop.clone(),
        status_tx,
        generation: 0,
    };
    for loaded in rules {
        engine.add(loaded, Arc::new(Mutex::new(Memory::default())));
    }
    engine.publish();
    let task = tokio::spawn(engine.run(commands, reports, stop));
    EngineHandle {
        commands: commands_tx,
        status,
        stop: stop_tx,
        task,
    }
}

/// What every rule task reads from.
struct Shared {
    observed: Observed,
    actuator: Actuator,
    default_prometheus: Option<String>,
    /// Grows when a target is opened after the start.
    hosts: Mutex<HashMap<String, String>>,
    locks: Mutex<HostLocks>,
    /// One client per server address, made on first use.
    sources: Mutex<HashMap<String, Arc<PrometheusSource>>>,
    /// Whether each server answered its last query, by address.
    servers: Mutex<std::collections::BTreeMap<String, Result<(), String>>>,
    query_timeout: Duration,
    state_dir: Option<PathBuf>,
    leader: Option<watch::Receiver<Option<String>>>,
}

/// What a rule remembers from cycle to cycle.
#[derive(Debug, Clone, Default)]
struct Memory {
    recommendations: Vec<Recommendation>,
    scale_events: Vec<ScaleEvent>,
    failed_cycles: u32,
    /// The count of the last scale and when it was done, until the host reports it.
    last_scale: Option<(u32, DateTime<Utc>)>,
    /// The first cycle that found the workload: the history starts there.
    since: Option<DateTime<Utc>>,
    /// Scales that failed in a row, and the time before which the rule does not try again.
    failures: u32,
    retry_at: Option<DateTime<Utc>>,
}

/// The wait after the first failed scale; it doubles with each failure in a row.
const RETRY_FIRST: TimeDelta = TimeDelta::seconds(15);
/// The longest wait between tries of a scale that keeps failing.
const RETRY_MAX: TimeDelta = TimeDelta::seconds(300);

/// A rule the engine holds, and its task while it has one.
struct Running {
    file: PathBuf,
    rule: Arc<Rule>,
    memory: Arc<Mutex<Memory>>,
    paused: Arc<AtomicBool>,
    generation: u64,
    task: Option<JoinHandle<()>>,
    /// Tells the task to end after the cycle in flight (its rule was replaced or removed).
    retire: watch::Sender<bool>,
    status: RuleStatus,
}

/// A rule task's account of one cycle.
struct Report {
    rule: String,
    generation: u64,
    record: DecisionRecord,
    /// Who holds the host when this autoscaler does not.
    standby: Option<String>,
}

struct Engine {
    shared: Arc<Shared>,
    rules_dir: PathBuf,
    running: Vec<Running>,
    load_errors: Vec<String>,
    reports_tx: mpsc::UnboundedSender<Report>,
    stop: watch::Receiver<bool>,
    status_tx: watch::Sender<Arc<Status>>,
    generation: u64,
}

impl Engine {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut reports: mpsc::UnboundedReceiver<Report>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                Some(report) = reports.recv() => self.on_report(report),
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
            }
        }
        self.finish().await;
    }

    /// Let each task end its cycle in flight; the handle's grace bounds the wait.
    async fn finish(&mut self) {
        for running in &mut self.running {
            if let Some(task) = running.task.take() {
                let _ = task.await;
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Pause(name) => self.set_paused(&name, true),
            Command::Resume(name) => self.set_paused(&name, false),
            Command::ReplaceFile { file, rules } => {
                // The file loads now: what was said about it before no longer holds.
                let prefix = format!("{}:", file.display());
                self.load_errors.retain(|e| !e.starts_with(&prefix));
                self.replace_file(&file, rules);
                self.publish();
            }
            Command::Reload => self.reload(),
            Command::Preview { rules, reply } => self.preview(rules, reply),
            Command::AddTarget { name, endpoint } => self.add_target(name, endpoint),
        }
    }

    /// Know `name` from now on, and start the rules that were unsupported for want of it, each
    /// in its place and keeping whether it was paused.
    fn add_target(&mut self, name: String, endpoint: String) {
        tracing::info!(target = %name, %endpoint, "target added to the autoscaler");
        lock(&self.shared.hosts).insert(name.clone(), endpoint);
        let waiting: Vec<usize> = (0..self.running.len())
            .filter(|&i| {
                let running = &self.running[i];
                running.rule.target.target_name() == name
                    && matches!(running.status.state, RuleState::Unsupported(_))
            })
            .collect();
        for index in waiting {
            let old = self.running.remove(index);
            let paused = old.paused.load(Ordering::Relaxed);
            let loaded = LoadedRule {
                file: old.file,
                rule: (*old.rule).clone(),
            };
            self.add(loaded, old.memory);
            if let Some(mut new) = self.running.pop() {
                if paused {
                    new.paused.store(true, Ordering::Relaxed);
                    new.status.state = RuleState::Paused;
                }
                self.running.insert(index, new);
            }
        }
        self.publish();
    }

    fn set_paused(&mut self, name: &str, paused: bool) {
        let Some(running) = self.running.iter_mut().find(|r| r.rule.name == name) else {
            return;
        };
        running.paused.store(paused, Ordering::Relaxed);
        if matches!(running.status.state, RuleState::Unsupported(_)) {
            return;
        }
        running.status.state = if paused {
            RuleState::Paused
        } else {
            RuleState::Active
        };
        tracing::info!(rule = name, paused, "rule paused or resumed");
        self.publish();
    }

    fn reload(&mut self) {
        let read = read_dir(&self.rules_dir);
        // A directory that is gone or unreadable says nothing about the rules: keep them all.
        if !read.listed || !self.rules_dir.is_dir() {
            let mut errors = read.errors;
            errors.push(format!(
                "{}: the rules directory cannot be read; the {} loaded rule(s) keep running",
                self.rules_dir.display(),
                self.running.len()
            ));
            for error in &errors {
                tracing::warn!(error = %error, "rules not reloaded");
            }
            self.load_errors = errors;
            self.publish();
            return;
        }
        let DirRead {
            rules: loaded,
            errors,
            failed: failed_files,
            ..
        } = read;
        // From here on, replacing a file may add errors of its own (a name another file holds).
        self.load_errors = errors;
        let mut files: Vec<PathBuf> = self.running.iter().map(|r| r.file.clone()).collect();
        files.extend(loaded.iter().map(|l| l.file.clone()));
        files.sort();
        files.dedup();
        for file in files {
            if failed_files.contains(&file) {
                let kept = self.running.iter().filter(|r| r.file == file).count();
                if kept > 0 {
                    self.load_errors.push(format!(
                        "{}: keeps its previous {kept} rule(s) until it loads",
                        file.display()
                    ));
                }
                continue;
            }
            let rules = loaded
                .iter()
                .filter(|l| l.file == file)
                .map(|l| l.rule.clone())
                .collect();
            self.replace_file(&file, rules);
        }
        for error in &self.load_errors {
            tracing::warn!(error = %error, "rule file not loaded");
        }
        let errors = self.load_errors.len();
        tracing::info!(rules = self.running.len(), errors, "rules reloaded");
        self.publish();
    }

    /// Make `rules` the rules of `file`: a rule that stays the same keeps running untouched, a
    /// changed one restarts with its memory when it still scales the same workload.
    fn replace_file(&mut self, file: &Path, rules: Vec<Rule>) {
        let mut old: Vec<Running> = Vec::new();
        let mut index = 0;
        while index < self.running.len() {
            if self.running[index].file == file {
                old.push(self.running.remove(index));
            } else {
                index += 1;
            }
        }
        for rule in rules {
            let others = self.running.iter().map(|r| (&r.file, &*r.rule));
            if let Some(error) = clash(others, file, &rule) {
                self.load_errors.push(error);
                continue;
            }
            let previous = old
                .iter()
                .position(|r| r.rule.name == rule.name)
                .map(|i| old.remove(i));
            match previous {
                Some(same) if *same.rule == rule => self.running.push(same),
                Some(changed) => {
                    stop_task(&changed);
                    // The same workload: the new task shares the old one's memory, so a scale the
                    // old task's last cycle is still making is counted when it ends.
                    let memory = if changed.rule.target == rule.target {
                        Arc::clone(&changed.memory)
                    } else {
                        Arc::new(Mutex::new(Memory::default()))
                    };
                    let paused = changed.paused.load(Ordering::Relaxed);
                    let history = changed.status.history.clone();
                    let loaded = LoadedRule {
                        file: file.to_path_buf(),
                        rule,
                    };
                    self.add(loaded, memory);
                    if let Some(new) = self.running.last_mut() {
                        new.status.history = history;
                        if paused {
                            new.paused.store(true, Ordering::Relaxed);
                            new.status.state = RuleState::Paused;
                        }
                    }
                }
                None => self.add(
                    LoadedRule {
                        file: file.to_path_buf(),
                        rule,
                    },
                    Arc::new(Mutex::new(Memory::default())),
                ),
            }
        }
        for gone in old {
            tracing::info!(rule = %gone.rule.name, "rule removed");
            stop_task(&gone);
        }
    }

    fn add(&mut self, loaded: LoadedRule, memory: Arc<Mutex<Memory>>) {
        self.generation += 1;
        let rule = Arc::new(loaded.rule);
        let paused = Arc::new(AtomicBool::new(false));
        let unsupported = self.unsupported(&rule);
        let (retire, retired) = watch::channel(false);
        let task = match &unsupported {
            Some(_) => None,
            None => Some(tokio::spawn(rule_loop(RuleTask {
                shared: Arc::clone(&self.shared),
                rule: Arc::clone(&rule),
                memory: Arc::clone(&memory),
                paused: Arc::clone(&paused),
                generation: self.generation,
                reports: self.reports_tx.clone(),
                stop: self.stop.clone(),
                retired,
            }))),
        };
        let state = unsupported.map_or(RuleState::Active, RuleState::Unsupported);
        let status = RuleStatus::new(loaded.file.clone(), Arc::clone(&rule), state);
        tracing::info!(rule = %rule.name, target = %rule.target, "rule loaded");
        self.running.push(Running {
            file: loaded.file,
            rule,
            memory,
            paused,
            generation: self.generation,
            task,
            retire,
            status,
        });
    }

    fn unsupported(&self, rule: &Rule) -> Option<String> {
        match &rule.target {
            target if lock(&self.shared.hosts).contains_key(target.target_name()) => None,
            RuleTarget::Docker { host, .. } => Some(format!(
                "no Docker target named {host:?} here (add it to config.toml as [[docker]])"
            )),
            RuleTarget::Kubernetes { context, .. } => Some(format!(
                "no Kubernetes context named {context:?} here (choose it with --context, or \
                 list it in config.toml's [kubernetes] contexts)"
            )),
        }
    }

    fn on_report(&mut self, report: Report) {
        let Some(running) = self
            .running
            .iter_mut()
            .find(|r| r.rule.name == report.rule && r.generation == report.generation)
        else {
            return;
        };
        apply_report(&mut running.status, &running.paused, report);
        self.publish();
    }

    fn preview(&self, rules: Vec<Rule>, reply: oneshot::Sender<Vec<DecisionRecord>>) {
        let shared = Arc::clone(&self.shared);
        let memories: Vec<Memory> = rules
            .iter()
            .map(|rule| {
                self.running
                    .iter()
                    .find(|r| r.rule.name == rule.name && r.rule.target == rule.target)
                    .map(|r| lock(&r.memory).clone())
                    .unwrap_or_default()
            })
            .collect();
        tokio::spawn(async move {
            let mut records = Vec::new();
            for (rule, memory) in rules.iter().zip(memories) {
                let memory = Mutex::new(memory);
                let (record, _) = cycle(&shared, rule, &memory, false).await;
                records.push(record);
            }
            let _ = reply.send(records);
        });
    }

    fn publish(&self) {
        let metric_servers = lock(&self.shared.servers)
            .iter()
            .map(|(server, reached)| (server.clone(), reached.clone()))
            .collect();
        let status = Status {
            rules: self.running.iter().map(|r| r.status.clone()).collect(),
            load_errors: self.load_errors.clone(),
            metric_servers,
        };
        self.status_tx.send_replace(Arc::new(status));
    }
}

/// Let a replaced or removed rule's task end once its cycle in flight is done; a scale that
/// cycle started is never cut short.
fn stop_task(running: &Running) {
    let _ = running.retire.send(true);
}

fn apply_report(status: &mut RuleStatus, paused: &AtomicBool, report: Report) {
    let record = report.record;
    status.decisions_total += 1;
    let failed = record.readings.iter().filter(|r| r.is_err()).count();
    status.metric_errors_total += failed as u64;
    match &record.action {
        Act::Scaled { .. } => status.scales_total += 1,
        Act::Failed { .. } => {
            status.scales_total += 1;
            status.scale_errors_total += 1;
        }
        Act::Hold | Act::Standby { .. } | Act::ReadOnly { .. } => {}
    }
    status.current = record.current;
    status.desired = record.desired;
    if !record.readings.is_empty() {
        status.readings = record.readings.iter().cloned().map(Some).collect();
    }
    status.state = match report.standby {
        Some(holder) => RuleState::Standby { holder },
        None if paused.load(Ordering::Relaxed) => RuleState::Paused,
        None => RuleState::Active,
    };
    // Copies this rule's history once when the published status still shares it; the other
    // rules' histories are not touched.
    let history = Arc::make_mut(&mut status.history);
    if history.len() >= HISTORY {
        history.pop_front();
    }
    history.push_back(record);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each holder changes the value in one step, so a panic cannot leave it half changed.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one rule's task works with.
struct RuleTask {
    shared: Arc<Shared>,
    rule: Arc<Rule>,
    memory: Arc<Mutex<Memory>>,
    paused: Arc<AtomicBool>,
    generation: u64,
    reports: mpsc::UnboundedSender<Report>,
    /// The engine is stopping.
    stop: watch::Receiver<bool>,
    /// This rule was replaced or removed.
    retired: watch::Receiver<bool>,
}

async fn rule_loop(task: RuleTask) {
    let RuleTask {
        shared,
        rule,
        memory,
        paused,
        generation,
        reports,
        mut stop,
        mut retired,
    } = task;
    let mut ticker = tokio::time::interval(rule.polling_interval.max(Duration::from_secs(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
            changed = retired.changed() => {
                if changed.is_err() || *retired.borrow() {
                    return;
                }
            }
            _ = ticker.tick() => {}
        }
        if paused.load(Ordering::Relaxed) {
            continue;
        }
        let (record, standby) = cycle(&shared, &rule, &memory, true).await;
        log_record(&rule, &record);
        let report = Report {
            rule: rule.name.clone(),
            generation,
            record,
            standby,
        };
        if reports.send(report).is_err() {
            return;
        }
    }
}

fn log_record(rule: &Rule, record: &DecisionRecord) {
    let readings: Vec<String> = rule
        .metrics
        .iter()
        .zip(&record.readings)
        .map(|(m, r)| match r {
            Ok(v) => format!("{}={v}", m.name),
            Err(e) => format!("{}=error({e})", m.name),
        })
        .collect();
    tracing::info!(
        rule = %rule.name,
        // When the cycle decided; the line is written after any scale it started has finished.
        decided_at = %record.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        current = record.current,
        desired = record.desired,
        readings = %readings.join(" "),
        action = %record.action.describe(),
        reason = %record.reason,
        "decision"
    );
}

/// The workload as one cycle sees it.
struct Seen {
    id: WorkloadId,
    current: u32,
    cpu: Result<f64, String>,
}

/// One cycle of `rule`: look, read, decide and (when `act`) scale. Returns the record and, when
/// another autoscaler holds the host, who.
async fn cycle(
    shared: &Shared,
    rule: &Rule,
    memory: &Mutex<Memory>,
    act: bool,
) -> (DecisionRecord, Option<String>) {
    let now = Utc::now();
    // The lock first, so a rule whose workload is not there yet still says who holds the host.
    let standby = if act { take_lock(shared, rule) } else { None };
    let seen = match look(shared, rule) {
        Ok(seen) => seen,
        Err(reason) => return (no_workload(now, reason), standby),
    };
    let readings = read_metrics(shared, rule, &seen).await;

    let (current, decision) = {
        let mut memory = lock(memory);
        let current = expected_current(&mut memory, seen.current, now);
        let memory = &mut *memory;
        let since = *memory.since.get_or_insert(now);
        retain_recent(
            rule,
            now,
            &mut memory.recommendations,
            &mut memory.scale_events,
        );
        let decision = decide(
            rule,
            &Inputs {
                current,
                readings: &readings,
                recommendations: &memory.recommendations,
                scale_events: &memory.scale_events,
                failed_cycles: memory.failed_cycles,
                now,
                history_since: Some(since),
            },
        );
        if act {
            memory.recommendations.extend(decision.record);
            memory.failed_cycles = decision.failed_cycles;
        }
        (current, decision)
    };

    let mut reason = decision.reason.clone();
    let (from, to) = (current, decision.desired);
    let action = if !act || to == from {
        Act::Hold
    } else if shared.actuator.read_only() {
        Act::ReadOnly { from, to }
    } else if standby.is_some() {
        Act::Standby { from, to }
    } else if shared.actuator.busy(&seen.id) {
        // A scale started by an earlier cycle (or by the operator) is still running.
        reason.push_str("; an action on the workload is still running, so this cycle waits");
        Act::Hold
    } else if rollout_running(shared, &seen.id) {
        // The rollout keeps the count it started with; the next cycle after it decides anew.
        reason.push_str("; a rollout of the workload is running, so this cycle waits for it");
        Act::Hold
    } else if let Some(at) = retry_wait(memory, now) {
        let _ = write!(
            reason,
            "; the last scale failed, so the next try waits until {}",
            at.format("%H:%M:%S UTC")
        );
        Act::Hold
    } else {
        scale(shared, rule, &seen.id, current, &decision, memory, now).await
    };
    let record = DecisionRecord {
        at: now,
        current: Some(current),
        desired: Some(decision.desired),
        readings,
        recommendations: decision.recommendations,
        reason,
        basis: Some(decision.basis),
        action,
    };
    (record, standby)
}

/// The count to decide from: what the host reports, unless a scale this rule just made has not
/// been reported yet.
fn expected_current(memory: &mut Memory, reported: u32, now: DateTime<Utc>) -> u32 {
    match memory.last_scale {
        Some((count, _)) if count == reported => {
            memory.last_scale = None;
            reported
        }
        Some((count, at)) if now - at < SCALE_REPORT_GRACE => count,
        _ => {
            memory.last_scale = None;
            reported
        }
    }
}

fn no_workload(now: DateTime<Utc>, reason: String) -> DecisionRecord {
    DecisionRecord {
        at: now,
        current: None,
        desired: None,
        readings: Vec::new(),
        recommendations: Vec::new(),
        reason,
        basis: None,
        action: Act::Hold,
    }
}

/// Find the rule's workload in the store; the error says why there is nothing to decide on.
fn look(shared: &Shared, rule: &Rule) -> Result<Seen, String> {
    let host = rule.target.target_name();
    let workload = rule.target.workload_name();
    let mut store = lock(&shared.observed);
    let target = store
        .target(host)
        .ok_or_else(|| format!("no target named {host:?}"))?;
    match &target.conn {
        ConnState::Connected { .. } => {}
        ConnState::Connecting => return Err(format!("waiting for {host} to connect")),
        ConnState::Disconnected { error, .. } => {
            return Err(format!("{host} is not reachable: {error}; holding"));
        }
    }
    let found = store
        .workloads()
        .iter()
        .find(|w| rule.target.matches(&w.id))
        .cloned()
        .ok_or_else(|| format!("no workload {workload} on {host}"))?;
    // A workload that another autoscaler (an HPA, a KEDA ScaledObject) scales is left to it.
    let other = store
        .target(host)
        .and_then(|t| t.controllers.get(&(found.id.kind, found.id.name.clone())))
        .and_then(|c| c.scaled_by.clone());
    if let Some(other) = other {
        return Err(format!(
            "{workload} is already scaled by {other}; this rule leaves it alone"
        ));
    }
    let wants_cpu = rule
        .metrics
        .iter()
        .any(|m| matches!(m.source, MetricSource::Cpu { .. }));
    let cpu = if wants_cpu {
        store.cpu_utilization(&found)
    } else {
        Err("not read".to_string())
    };
    Ok(Seen {
        id: found.id.clone(),
        current: u32::try_from(found.desired).unwrap_or(u32::MAX),
        cpu,
    })
}

/// Every metric's reading, in the rule's order; the Prometheus queries run at the same time.
async fn read_metrics(shared: &Shared, rule: &Rule, seen: &Seen) -> Vec<Reading> {
    let reads = rule.metrics.iter().map(|metric| async move {
        match &metric.source {
            MetricSource::Cpu { .. } => seen.cpu.clone(),
            MetricSource::Prometheus {
                server_address,
                query,
                ..
            } => {
                let address = server_address
                    .as_deref()
                    .or(shared.default_prometheus.as_deref())
                    .ok_or_else(|| {
                        format!(
                            "no Prometheus server for metric {}: set serverAddress in the rule, \
                             or [autoscaler] prometheus in config.toml (--prometheus for the \
                             daemon)",
                            metric.name
                        )
                    })?;
                let source = source_for(shared, address).map_err(|e| e.to_string())?;
                let answer = source.instant(query).await;
                let reached = match &answer {
                    Err(e) if !e.server_answered() => Err(e.to_string()),
                    _ => Ok(()),
                };
                lock(&shared.servers).insert(address.to_string(), reached);
                answer.map_err(|e| e.to_string())
            }
        }
    });
    futures::future::join_all(reads).await
}

fn source_for(
    shared: &Shared,
    address: &str,
) -> Result<Arc<PrometheusSource>, crate::metrics::MetricError> {
    let mut sources = lock(&shared.sources);
    if let Some(source) = sources.get(address) {
        return Ok(Arc::clone(source));
    }
    let source = Arc::new(PrometheusSource::with_timeout(
        address,
        shared.query_timeout,
    )?);
    sources.insert(address.to_string(), Arc::clone(&source));
    Ok(source)
}

/// Whether a rollout of `workload` is running now (its process holds the rollout lock).
fn rollout_running(shared: &Shared, workload: &WorkloadId) -> bool {
    let Some(state_dir) = &shared.state_dir else {
        return false;
    };
    let engine_id = match lock(&shared.observed)
        .target(&workload.target)
        .map(|t| &t.conn)
    {
        Some(ConnState::Connected { engine_id, .. }) => engine_id.clone(),
        _ => return false,
    };
    let files = crate::rollout::state::Files::new(state_dir, &engine_id, &workload.name);
    crate::rollout::state::is_running(&files)
}

/// Take (or keep) the lock of the rule's engine. `None` when this autoscaler may act;
/// otherwise who holds the engine, or why the lock cannot be taken. An engine that is not
/// connected needs no lock yet (nothing can act on it), and a read-only autoscaler never takes
/// one, since it never acts and must not keep another from acting.
fn take_lock(shared: &Shared, rule: &Rule) -> Option<String> {
    let host = rule.target.target_name();
    if shared.actuator.read_only() {
        return None;
    }
    // An elected autoscaler acts only while it leads, whatever the target.
    if let Some(leader) = &shared.leader
        && let Some(holder) = leader.borrow().clone()
    {
        return Some(holder);
    }
    let engine_id = match lock(&shared.observed).target(host).map(|t| &t.conn) {
        Some(ConnState::Connected { engine_id, .. }) => engine_id.clone(),
        _ => return None,
    };
    let known = lock(&shared.hosts).get(host).cloned();
    let address = known.as_deref().unwrap_or("?");
    // A Docker engine is locked by its ID, a cluster by its API server's address: two contexts
    // of one cluster share its lock, as two addresses of one engine do.
    let (platform, key, about) = match &rule.target {
        RuleTarget::Docker { .. } => (
            PlatformKind::Docker,
            engine_id.as_str(),
            format!("docker engine {engine_id} at {address}"),
        ),
        RuleTarget::Kubernetes { context, .. } => {
            let cluster = address.strip_prefix("k8s:").unwrap_or(address);
            (
                PlatformKind::Kubernetes,
                cluster,
                format!("kubernetes cluster {cluster} (context {context})"),
            )
        }
    };
    match lock(&shared.locks).acquire(platform, key, &about) {
        Ok(()) => None,
        Err(LockError::Held(holder)) => Some(holder),
        Err(LockError::Unusable(why)) => {
            tracing::warn!(rule = %rule.name, %why, "cannot take the host lock, so not acting");
            Some(format!("no one: the lock cannot be taken ({why})"))
        }
    }
}

async fn scale(
    shared: &Shared,
    rule: &Rule,
    id: &WorkloadId,
    current: u32,
    decision: &rules::Decision,
    memory: &Mutex<Memory>,
    now: DateTime<Utc>,
) -> Act {
    let to = decision.desired;
    let explanations: Vec<&str> = decision
        .recommendations
        .iter()
        .map(|r| r.explanation.as_str())
        .collect();
    let request = ActionRequest {
        workload: id.clone(),
        kind: ActionKind::Scale {
            from: u64::from(current),
            to: u64::from(to),
        },
        origin: "autoscaler",
        confirmed: true,
        reason: Some(format!(
            "rule {}: {} ({})",
            rule.name,
            decision.reason,
            explanations.join("; ")
        )),
    };
    match shared.actuator.run(request).await {
        Ok(_) => {
            let mut memory = lock(memory);
            memory.scale_events.push(ScaleEvent {
                at: now,
                from: current,
                to,
            });
            memory.last_scale = Some((to, Utc::now()));
            memory.failures = 0;
            memory.retry_at = None;
            Act::Scaled { from: current, to }
        }
        Err(error) => {
            // A scale that fails (a fixed host port, a name in use) would fail again next
            // cycle: wait longer after each failure, so the audit log is not flooded.
            let mut memory = lock(memory);
            memory.failures = memory.failures.saturating_add(1);
            let doublings = memory.failures.saturating_sub(1).min(5);
            let wait = (RETRY_FIRST * (1 << doublings)).min(RETRY_MAX);
            memory.retry_at = Some(Utc::now() + wait);
            Act::Failed {
                from: current,
                to,
                error: error.to_string(),
            }
        }
    }
}

/// When a failed scale may be tried again, if the rule is still waiting for that.
fn retry_wait(memory: &Mutex<Memory>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    lock(memory).retry_at.filter(|at| *at > now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuator::AuditLog;
    use crate::model::PlatformKind;
    use crate::store::Store;

    fn rule_text(name: &str, workload: &str) -> String {
        format!(
            "name: {name}\n\
             target: {{ platform: docker, host: local, workload: {workload} }}\n\
             maxReplicas: 3\n\
             pollingInterval: 1s\n\
             metrics:\n\
             \x20 - name: cpu\n\
             \x20   cpu: {{ utilization: 50 }}\n"
        )
    }

    fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// An engine over an empty, never-connected host: every cycle holds, which is enough to see
    /// which rules run and how often.
    fn engine(dir: &Path) -> EngineHandle {
        let mut store = Store::new(10);
        store.add_target("local", PlatformKind::Docker);
        let observed = Arc::new(Mutex::new(store));
        let (outcomes, _) = mpsc::unbounded_channel();
        let actuator = Actuator::new(
            false,
            AuditLog::new(dir.join("audit.jsonl")),
            HashMap::new(),
            outcomes,
        );
        let settings = Settings {
            rules_dir: dir.to_path_buf(),
            default_prometheus: None,
            hosts: HashMap::from([("local".to_string(), "unix:///test.sock".to_string())]),
            locks: HostLocks::new(dir.join("locks"), "test".to_string()),
            query_timeout: Duration::from_secs(1),
            state_dir: Some(dir.join("state")),
            leader: None,
        };
        let (rules, errors) = load_dir(dir);
        start(settings, rules, errors, observed, actuator)
    }

    async fn wait_for(
        handle: &mut EngineHandle,
        what: &str,
        done: impl Fn(&Status) -> bool,
    ) -> Arc<Status> {
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let status = Arc::clone(&handle.status.borrow_and_update());
                if done(&status) {
                    return status;
                }
                if handle.status.changed().await.is_err() {
                    panic!("the engine stopped while waiting for {what}");
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    #[test]
    fn the_loader_reads_yaml_files_only_and_refuses_a_second_rule_of_one_name() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", &rule_text("web", "web"));
        write(dir.path(), "b.yml", &rule_text("web", "other"));
        write(dir.path(), "c.yaml.draft", "not: [valid");
        write(dir.path(), "d.txt", "ignored");

        let (rules, errors) = load_dir(dir.path());

        assert_eq!(rules.len(), 1);
        assert!(rules[0].file.ends_with("a.yaml"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("b.yml: rule \"web\" is already defined in"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_second_rule_for_one_workload_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", &rule_text("web", "shop"));
        write(dir.path(), "b.yaml", &rule_text("web-too", "shop"));

        let (rules, errors) = load_dir(dir.path());

        assert_eq!(rules.len(), 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("b.yaml: rule \"web-too\" scales local:shop, which rule \"web\""),
            "{errors:?}"
        );
    }

    #[tokio::test]
    async fn a_reload_with_the_rules_directory_gone_keeps_every_rule() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("rules");
        std::fs::create_dir(&dir).unwrap();
        write(&dir, "web.yaml", &rule_text("web", "web"));
        let mut handle = engine(&dir);
        wait_for(&mut handle, "the rule", |s| s.rules.len() == 1).await;

        std::fs::rename(&dir, root.path().join("moved")).unwrap();
        std::fs::write(&dir, "not a directory").unwrap();
        handle.send(Command::Reload);

        let status = wait_for(&mut handle, "the reload", |s| !s.load_errors.is_empty()).await;
        assert_eq!(status.rules.len(), 1, "{:?}", status.load_errors);
        assert!(
            status
                .load_errors
                .iter()
                .any(|e| e.contains("the 1 loaded rule(s) keep running")),
            "{:?}",
            status.load_errors
        );
        handle.stop(Duration::from_secs(2)).await;
    }

    #[test]
    fn a_missing_rules_directory_has_no_rules_and_no_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (rules, errors) = load_dir(&dir.path().join("nope"));
        assert!(rules.is_empty() && errors.is_empty());
    }

    #[tokio::test]
    async fn a_host_that_is_not_connected_holds_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "web.yaml", &rule_text("web", "web"));
        let mut handle = engine(dir.path());

        let status = wait_for(&mut handle, "a decision", |s| {
            s.rules.first().is_some_and(|r| r.decisions_total > 0)
        })
        .await;

        let last = status.rules[0].last().unwrap();
        assert_eq!(last.action, Act::Hold);
        assert_eq!(last.desired, None);
        assert_eq!(last.reason, "waiting for local to connect");
        handle.stop(Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn a_reload_keeps_the_rules_of_a_file_that_no_longer_loads() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "web.yaml", &rule_text("web", "web"));
        write(dir.path(), "api.yaml", &rule_text("api", "api"));
        let mut handle = engine(dir.path());
        wait_for(&mut handle, "two rules", |s| s.rules.len() == 2).await;

        std::fs::write(&file, "name: web\nminReplicas: [oops\n").unwrap();
        std::fs::remove_file(dir.path().join("api.yaml")).unwrap();
        handle.send(Command::Reload);

        let status = wait_for(&mut handle, "the reload", |s| !s.load_errors.is_empty()).await;
        let names: Vec<&str> = status.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["web"], "web kept, api removed with its file");
        assert!(
            status.load_errors.iter().any(|e| e.contains("web.yaml:")),
            "{:?}",
            status.load_errors
        );
        assert!(
            status
                .load_errors
                .iter()
                .any(|e| e.contains("keeps its previous 1 rule(s)")),
            "{:?}",
            status.load_errors
        );
        handle.stop(Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn a_reload_reports_a_name_another_file_still_holds() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yaml", &rule_text("web", "web"));
        let mut handle = engine(dir.path());
        wait_for(&mut handle, "the rule", |s| s.rules.len() == 1).await;

        std::fs::write(&a, "name: [broken\n").unwrap();
        write(dir.path(), "b.yaml", &rule_text("web", "other"));
        handle.send(Command::Reload);

        let status = wait_for(&mut handle, "the reload", |s| !s.load_errors.is_empty()).await;
        assert!(
            status
                .load_errors
                .iter()
                .any(|e| e.contains("b.yaml: rule \"web\" is already defined in")),
            "{:?}",
            status.load_errors
        );
        assert_eq!(status.rules.len(), 1);
        assert!(status.rules[0].file.ends_with("a.yaml"), "a.yaml keeps web");
        handle.stop(Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn a_paused_rule_is_not_evaluated_until_it_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "web.yaml", &rule_text("web", "web"));
        let mut handle = engine(dir.path());
        wait_for(&mut handle, "a first decision", |s| {
            s.rules[0].decisions_total > 0
        })
        .await;

        handle.send(Command::Pause("web".to_string()));
        let paused = wait_for(&mut handle, "the pause", |s| {
            s.rules[0].state == RuleState::Paused
        })
        .await;
        let before = paused.rules[0].decisions_total;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let still = Arc::clone(&handle.status.borrow());
        assert_eq!(still.rules[0].state, RuleState::Paused);
        assert!(
            still.rules[0].decisions_total <= before + 1,
            "at most the cycle in flight at the pause: {before} then {}",
            still.rules[0].decisions_total
        );

        handle.send(Command::Resume("web".to_string()));
        let after = still.rules[0].decisions_total;
        wait_for(&mut handle, "cycles again", |s| {
            s.rules[0].state == RuleState::Active && s.rules[0].decisions_total > after
        })
        .await;
        handle.stop(Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn a_replaced_rule_runs_as_saved_and_a_rule_for_an_unknown_host_is_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "web.yaml", &rule_text("web", "web"));
        let mut handle = engine(dir.path());
        wait_for(&mut handle, "the rule", |s| s.rules.len() == 1).await;

        let web = rule_text("web", "web").replace("maxReplicas: 3", "maxReplicas: 7");
        let far = rule_text("far", "x").replace("host: local", "host: elsewhere");
        let mut rules = crate::rules::parse_rules(&file, &web).unwrap();
        rules.extend(crate::rules::parse_rules(&file, &far).unwrap());
        handle.send(Command::ReplaceFile {
            file: file.clone(),
            rules,
        });

        let status = wait_for(&mut handle, "the new rules", |s| s.rules.len() == 2).await;
        assert_eq!(status.rule("web").unwrap().rule.max_replicas, 7);
        let far = status.rule("far").unwrap();
        assert!(
            matches!(&far.state, RuleState::Unsupported(why) if why.contains("elsewhere")),
            "{:?}",
            far.state
        );
        handle.stop(Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn a_target_added_at_run_time_starts_the_rules_that_waited_for_it_paused_ones_paused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "web.yaml", &rule_text("web", "web"));
        let far = rule_text("far", "x").replace("host: local", "host: later");
        write(dir.path(), "far.yaml", &far);
        let still = rule_text("still", "y").replace("host: local", "host: later");
        write(dir.path(), "still.yaml", &still);
        let mut handle = engine(dir.path());
        wait_for(&mut handle, "three rules", |s| s.rules.len() == 3).await;
        handle.send(Command::Pause("still".to_string()));

        handle.send(Command::AddTarget {
            name: "later".to_string(),
            endpoint: "unix:///later.sock".to_string(),
        });

        let status = wait_for(&mut handle, "far to run", |s| {
            s.rule("far").is_some_and(|r| r.decisions_total > 0)
        })
        .await;
        let names: Vec<&str> = status.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["far", "still", "web"], "each rule keeps its place");
        assert_eq!(status.rule("far").unwrap().state, RuleState::Active);
        assert_eq!(status.rule("still").unwrap().state, RuleState::Paused);
        assert_eq!(status.rule("still").unwrap().decisions_total, 0);
        let reason = &status.rule("far").unwrap().last().unwrap().reason;
        assert_eq!(
            reason, "no target named \"later\"",
            "the rule runs and looks for it"
        );
        handle.stop(Duration::from_secs(2)).await;
    }
}
