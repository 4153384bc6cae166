//! Pilothouse's rollout of a Kubernetes Deployment: set the image, follow the Deployment until
//! its controller has rolled it out, and roll back by itself when the rollout fails (the
//! progress deadline passes, a new pod crash-loops, the timeout passes, or an operator aborts).
//!
//! The Deployment's controller does the rolling; this module watches it by polling the one
//! Deployment, its ReplicaSets and its pods, reports each change, and writes the same state
//! file a Docker rollout writes, so the console's rollout view and `rollout status` show it.
//!
//! Not for StatefulSets: their revisions are ControllerRevisions, which a rollback would need.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::actions::{self, ActionError, HASH_LABEL, History, RolloutStatus};
use crate::model::{WorkloadId, WorkloadKind};
use crate::rollout::plan::{self, IntOrPercent};
use crate::rollout::state::{self, Control, Files, Kind, Phase, ReplicaView, RolloutState};

/// How a rollout is followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// From the start; passing it rolls back as an abort does.
    pub timeout: Option<Duration>,
    /// A pod of the new revision restarted this often is crash-looping: roll back.
    pub crash_restarts: u32,
    /// How often the Deployment, its ReplicaSets and pods are read.
    pub poll: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: None,
            crash_restarts: 3,
            poll: Duration::from_millis(500),
        }
    }
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every replica runs the new image and is available.
    Complete { revision: u64 },
    /// The workload already ran the image: nothing was changed.
    Unchanged,
    /// The rollout failed and the Deployment is back on revision `to`, and ready.
    RolledBack { from: u64, to: u64, reason: String },
    /// It stopped without rolling out, or rolling back failed too.
    Failed { reason: String },
}

impl Outcome {
    /// The exit code of `pilothouse rollout`, as `docs/cli.md` documents it.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Complete { .. } | Outcome::Unchanged => crate::ops::exit::OK,
            Outcome::RolledBack { .. } => crate::ops::exit::ROLLED_BACK,
            Outcome::Failed { .. } => crate::ops::exit::FAILED,
        }
    }

    /// The outcome word the Docker rollout uses too.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Complete { .. } => "succeeded",
            Outcome::Unchanged => "unchanged",
            Outcome::RolledBack { .. } => "rolled-back",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// One revision's replicas at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionCount {
    pub revision: u64,
    pub image: String,
    pub ready: u64,
    pub desired: u64,
}

/// What a rollout reports at each change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    /// The revision it started from, and the one it rolls out (once the controller made it).
    pub from: u64,
    pub to: Option<u64>,
    /// Every revision that has or wants replicas, in revision order.
    pub revisions: Vec<RevisionCount>,
    /// One line: `kubectl rollout status`'s, or why it rolls back.
    pub message: String,
}

/// Where the rollout's state file goes, so the console's rollout view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub state_dir: PathBuf,
    /// The engine ID the target's worker reports on connecting (`ConnState::Connected`): the
    /// console's rollout view looks for a target's rollouts under it.
    pub engine_id: String,
    /// The API server's address, shown where a Docker rollout shows its host.
    pub host: String,
    /// Who started it.
    pub by: String,
}

/// Everything a rollout needs.
#[derive(Clone)]
pub struct Job {
    pub client: kube::Client,
    pub workload: WorkloadId,
    pub image: String,
    pub options: Options,
    pub record: Option<Record>,
}

/// What one look at the Deployment found.
struct Look {
    history: History,
    pods: Vec<Pod>,
}

/// Why following stopped before the rollout completed.
enum Stop {
    /// Roll back, for this reason.
    Back(String),
    /// Stop where it is.
    Error(String),
}

/// Rolls `job.image` out and follows it to its end, sending [`Progress`] at each change; a true
/// value on `abort` rolls back.
pub async fn run(
    job: &Job,
    progress: &mpsc::UnboundedSender<Progress>,
    abort: watch::Receiver<bool>,
) -> Outcome {
    match Runner::start(job, progress, abort).await {
        Ok(Some(mut runner)) => {
            let outcome = runner.follow_and_settle().await;
            runner.finish(&outcome);
            outcome
        }
        Ok(None) => Outcome::Unchanged,
        Err(reason) => Outcome::Failed { reason },
    }
}

struct Runner<'a> {
    job: &'a Job,
    progress: &'a mpsc::UnboundedSender<Progress>,
    abort: watch::Receiver<bool>,
    namespace: String,
    name: String,
    files: Option<Files>,
    _lock: Option<state::RunLock>,
    state: Option<RolloutState>,
    from: u64,
    to: Option<u64>,
    phase: Phase,
    last: Option<Progress>,
    started: Instant,
    /// How long the controller may take to give a verdict when there is no timeout.
    limit: Duration,
    /// The ReplicaSet of the new revision, when an earlier rollout rolled back from it (its
    /// mark is taken away once this rollout completes).
    marked_new: Option<String>,
}

impl<'a> Runner<'a> {
    /// Reads the Deployment, takes the rollout lock and sets the image; `None` when the image
    /// is the one running already.
    async fn start(
        job: &'a Job,
        progress: &'a mpsc::UnboundedSender<Progress>,
        abort: watch::Receiver<bool>,
    ) -> Result<Option<Runner<'a>>, String> {
        if job.workload.kind != WorkloadKind::Deployment {
            return Err(format!(
                "{} is a {}: rollouts that roll back by themselves are for Deployments (a \
                 StatefulSet's revisions are ControllerRevisions, which Pilothouse does not read)",
                job.workload.name,
                job.workload.kind.label()
            ));
        }
        let (namespace, name) = actions::split_name(&job.workload).map_err(|e| e.to_string())?;
        let (namespace, name) = (namespace.to_string(), name.to_string());
        let history = actions::history(&job.client, &namespace, &name)
            .await
            .map_err(|e| e.to_string())?;
        let spec = history.deployment.spec.clone().unwrap_or_default();
        if spec.paused == Some(true) {
            return Err(format!(
                "cannot roll out the paused deployment {namespace}/{name}; resume it first"
            ));
        }
        if actions::runs_image(&spec.template, &job.image) {
            return Ok(None);
        }
        let Some(from) = history.revision().or_else(|| {
            history
                .current()
                .and_then(|rs| revision_number(rs.metadata.annotations.as_ref()))
        }) else {
            return Err(format!(
                "deployment {namespace}/{name} has no revision yet: its controller has not \
                 observed it (try again in a moment)"
            ));
        };
        let deadline = u64::try_from(spec.progress_deadline_seconds.unwrap_or(600)).unwrap_or(600);
        let mut runner = Runner {
            job,
            progress,
            abort,
            namespace,
            name,
            files: None,
            _lock: None,
            state: None,
            from,
            to: None,
            phase: Phase::Progressing,
            last: None,
            started: Instant::now(),
            limit: Duration::from_secs(deadline) + Duration::from_secs(30),
            marked_new: None,
        };
        runner.open_record(&history)?;
        if let Err(e) = actions::set_image(&job.client, &job.workload, &job.image).await {
            let reason = e.to_string();
            runner.phase = Phase::Failed;
            runner.announce(reason.clone());
            return Err(reason);
        }
        info!(workload = %job.workload, image = job.image, from, "rollout started");
        Ok(Some(runner))
    }

    /// Takes the workload's rollout lock and starts its state file.
    fn open_record(&mut self, history: &History) -> Result<(), String> {
        let Some(record) = &self.job.record else {
            return Ok(());
        };
        let files = Files::new(
            &record.state_dir,
            &record.engine_id,
            &self.job.workload.name,
        );
        let holder = format!("rollout pid {} ({})", std::process::id(), record.by);
        self._lock = Some(state::lock(&files, &holder)?);
        state::clear_control(&files);
        let spec = history.deployment.spec.clone().unwrap_or_default();
        let desired = u32::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        let (surge, unavailable) = strategy_bounds(&history.deployment, desired);
        let now = Utc::now();
        self.state = Some(RolloutState {
            workload: self.job.workload.name.clone(),
            host: record.host.clone(),
            engine_id: record.engine_id.clone(),
            kind: Kind::Rollout,
            phase: Phase::Progressing,
            from_revision: small(self.from),
            to_revision: small(self.from + 1),
            image: self.job.image.clone(),
            desired,
            max_surge: surge,
            max_unavailable: unavailable,
            replicas: Vec::new(),
            steps: Vec::new(),
            analysis: Vec::new(),
            message: format!("setting the image to {}", self.job.image),
            started: now,
            updated: now,
            pid: std::process::id(),
            by: record.by.clone(),
        });
        self.files = Some(files);
        self.write_state();
        Ok(())
    }

    async fn follow_and_settle(&mut self) -> Outcome {
        let reason = match self.follow().await {
            Ok(revision) => {
                self.unmark_new().await;
                return Outcome::Complete { revision };
            }
            Err(Stop::Error(reason)) => return Outcome::Failed { reason },
            Err(Stop::Back(reason)) => reason,
        };
        let failed = self.to.unwrap_or(self.from + 1);
        warn!(workload = %self.job.workload, %reason, from = failed, to = self.from, "rolling back");
        self.phase = Phase::RollingBack;
        self.announce(format!("rolling back to revision {}: {reason}", self.from));
        match self.roll_back(&reason).await {
            Ok(()) => Outcome::RolledBack {
                from: failed,
                to: self.from,
                reason,
            },
            Err(back) => Outcome::Failed {
                reason: format!("{reason}; rolling back failed too: {back}"),
            },
        }
    }

    /// Follows the rollout until it completes (its revision) or must stop.
    async fn follow(&mut self) -> Result<u64, Stop> {
        loop {
            self.obey_operator().await?;
            if let Some(timeout) = self.job.options.timeout
                && self.started.elapsed() >= timeout
            {
                return Err(Stop::Back(format!(
                    "timed out after {}",
                    crate::rollout::run::show_duration(timeout)
                )));
            }
            if self.started.elapsed() >= self.limit {
                return Err(Stop::Back(format!(
                    "the controller gave no verdict within {} (the progress deadline and a margin)",
                    crate::rollout::run::show_duration(self.limit)
                )));
            }
            match self.look().await {
                Ok(look) => {
                    if let Some(done) = self.judge(&look)? {
                        return Ok(done);
                    }
                }
                Err(e @ ActionError::Unreachable { .. }) => {
                    self.announce(format!("{e}; trying again"));
                }
                Err(e) => return Err(Stop::Error(e.to_string())),
            }
            self.pause_a_poll().await;
        }
    }

    /// One verdict on a look: done with a revision, roll back, or go on (`None`).
    fn judge(&mut self, look: &Look) -> Result<Option<u64>, Stop> {
        let current = look
            .history
            .current()
            .and_then(|rs| revision_number(rs.metadata.annotations.as_ref()));
        if current.is_some_and(|n| n != self.from) {
            self.to = current;
            self.marked_new = look
                .history
                .current()
                .filter(|rs| marked(rs))
                .and_then(|rs| rs.metadata.name.clone());
        }
        let status = actions::deployment_status(&look.history.deployment);
        self.report(look, status.message().to_string());
        if let Some(reason) = self.crash_loop(look) {
            return Err(Stop::Back(reason));
        }
        match status {
            RolloutStatus::Failed { message } => Err(Stop::Back(message)),
            RolloutStatus::Complete { .. } => match self.to {
                Some(revision) => Ok(Some(revision)),
                None => Ok(None),
            },
            RolloutStatus::Waiting { .. } | RolloutStatus::Paused { .. } => Ok(None),
        }
    }

    /// A pod of the new revision that restarted `crash_restarts` times, as a reason to roll back.
    fn crash_loop(&self, look: &Look) -> Option<String> {
        let hash = look.history.current().and_then(pod_hash)?;
        let limit = self.job.options.crash_restarts.max(1);
        look.pods
            .iter()
            .filter(|pod| label(pod, HASH_LABEL) == Some(hash.as_str()))
            .map(|pod| (pod.metadata.name.clone().unwrap_or_default(), restarts(pod)))
            .filter(|(_, count)| *count >= limit)
            .max_by_key(|(_, count)| *count)
            .map(|(pod, count)| {
                format!(
                    "pod {pod} of revision {} restarted {count} times: it crash-loops",
                    self.to.unwrap_or(self.from + 1)
                )
            })
    }

    /// The operator's abort (the channel, or the control file), pause and resume.
    async fn obey_operator(&mut self) -> Result<(), Stop> {
        if *self.abort.borrow() {
            return Err(Stop::Back("aborted by an operator".to_string()));
        }
        let Some(files) = self.files.clone() else {
            return Ok(());
        };
        let Some(control) = state::read_control(&files) else {
            return Ok(());
        };
        state::clear_control(&files);
        match control {
            Control::Abort => Err(Stop::Back("aborted by an operator".to_string())),
            Control::Pause | Control::Resume => {
                let pause = control == Control::Pause;
                match actions::set_paused(&self.job.client, &self.job.workload, pause).await {
                    Ok(message) => {
                        self.phase = if pause {
                            Phase::Paused
                        } else {
                            Phase::Progressing
                        };
                        self.announce(message);
                    }
                    Err(e) => self.announce(format!("could not {}: {e}", control.as_str())),
                }
                Ok(())
            }
        }
    }

    /// Marks the new revision's ReplicaSet as rolled back from, returns the Deployment to the
    /// revision it started from and waits until that is rolled out and ready.
    async fn roll_back(&mut self, reason: &str) -> Result<(), String> {
        let history = actions::history(&self.job.client, &self.namespace, &self.name)
            .await
            .map_err(|e| e.to_string())?;
        self.mark_failed(&history, reason).await;
        if history.deployment.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            actions::set_paused(&self.job.client, &self.job.workload, false)
                .await
                .map_err(|e| e.to_string())?;
        }
        let undone = actions::undo(&self.job.client, &self.job.workload, Some(self.from))
            .await
            .map_err(|e| e.to_string())?;
        self.announce(undone.said());
        let started = Instant::now();
        loop {
            if started.elapsed() >= self.limit {
                return Err(format!(
                    "revision {} was not rolled out again within {}",
                    self.from,
                    crate::rollout::run::show_duration(self.limit)
                ));
            }
            match self.look().await {
                Ok(look) => {
                    let status = actions::deployment_status(&look.history.deployment);
                    self.report(&look, status.message().to_string());
                    match status {
                        RolloutStatus::Complete { .. } => return Ok(()),
                        RolloutStatus::Failed { message } => return Err(message),
                        RolloutStatus::Waiting { .. } | RolloutStatus::Paused { .. } => {}
                    }
                }
                Err(e @ ActionError::Unreachable { .. }) => {
                    self.announce(format!("{e}; trying again"));
                }
                Err(e) => return Err(e.to_string()),
            }
            self.pause_a_poll().await;
        }
    }

    /// Marks the ReplicaSet of the Deployment's template, when it is not the revision rolled
    /// back to, so that a later rollback to the previous revision passes over it. Best effort:
    /// a mark that cannot be written is reported and the rollback goes on.
    async fn mark_failed(&mut self, history: &History, reason: &str) {
        let Some(rs) = history.current() else {
            // The controller made no ReplicaSet for the new template: nothing ran to mark.
            return;
        };
        if revision_number(rs.metadata.annotations.as_ref()) == Some(self.from) {
            return;
        }
        let Some(name) = rs.metadata.name.clone() else {
            return;
        };
        let marked =
            actions::mark_rolled_back(&self.job.client, &self.namespace, &name, Some(reason)).await;
        match marked {
            Ok(()) => {
                info!(workload = %self.job.workload, replica_set = name, reason, "marked rolled back");
                self.marked_new = None;
            }
            Err(e) => {
                warn!(workload = %self.job.workload, replica_set = name, error = %e, "could not mark the revision rolled back from");
                self.announce(format!(
                    "could not mark {name} as rolled back from ({e}): a rollback to the previous \
                     revision may return to it"
                ));
            }
        }
    }

    /// Takes the mark of an earlier rollback away from the revision this rollout completed.
    async fn unmark_new(&mut self) {
        let Some(name) = self.marked_new.take() else {
            return;
        };
        let client = &self.job.client;
        match actions::mark_rolled_back(client, &self.namespace, &name, None).await {
            Ok(()) => info!(workload = %self.job.workload, replica_set = name, "mark taken away"),
            Err(e) => {
                warn!(workload = %self.job.workload, replica_set = name, error = %e, "could not take the rolled-back mark away");
                self.announce(format!(
                    "could not take the rolled-back mark away from {name}: {e}"
                ));
            }
        }
    }

    /// Reads the Deployment, its ReplicaSets and its pods.
    async fn look(&self) -> Result<Look, ActionError> {
        let history = actions::history(&self.job.client, &self.namespace, &self.name).await?;
        let selector = history
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default();
        let pods = list_pods(&self.job.client, &self.namespace, &self.name, &selector).await?;
        Ok(Look { history, pods })
    }

    /// Waits one poll period, or less when the abort channel changes.
    async fn pause_a_poll(&mut self) {
        let poll = self.job.options.poll.max(Duration::from_millis(20));
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            changed = self.abort.changed() => {
                if changed.is_err() {
                    // The sender is gone, so no abort can come: keep polling at the pace asked.
                    tokio::time::sleep(poll).await;
                }
            }
        }
    }

    /// Sends progress and rewrites the state file when what they show changed.
    fn report(&mut self, look: &Look, message: String) {
        let revisions = revision_counts(&look.history);
        let now = Progress {
            phase: self.phase,
            from: self.from,
            to: self.to,
            revisions,
            message,
        };
        if self.last.as_ref() == Some(&now) {
            return;
        }
        let _ = self.progress.send(now.clone());
        if let Some(state) = self.state.as_mut() {
            state.phase = now.phase;
            state.to_revision = small(now.to.unwrap_or(self.from + 1));
            state.desired = look
                .history
                .deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(state.desired);
            state.replicas = replica_views(look);
            state.message = now.message.clone();
        }
        self.last = Some(now);
        self.write_state();
    }

    /// Reports a new message with the counts last seen.
    fn announce(&mut self, message: String) {
        let mut now = self.last.clone().unwrap_or(Progress {
            phase: self.phase,
            from: self.from,
            to: self.to,
            revisions: Vec::new(),
            message: String::new(),
        });
        now.phase = self.phase;
        now.message = message;
        if self.last.as_ref() == Some(&now) {
            return;
        }
        let _ = self.progress.send(now.clone());
        if let Some(state) = self.state.as_mut() {
            state.phase = now.phase;
            state.message = now.message.clone();
        }
        self.last = Some(now);
        self.write_state();
    }

    fn finish(&mut self, outcome: &Outcome) {
        let (phase, message) = match outcome {
            Outcome::Complete { revision } => {
                (Phase::Succeeded, format!("revision {revision} rolled out"))
            }
            Outcome::Unchanged => (Phase::Succeeded, "nothing to change".to_string()),
            Outcome::RolledBack { from, to, reason } => (
                Phase::RolledBack,
                format!("rolled back from revision {from} to {to}: {reason}"),
            ),
            Outcome::Failed { reason } => (Phase::Failed, reason.clone()),
        };
        info!(workload = %self.job.workload, outcome = outcome.as_str(), %message, "rollout ended");
        self.phase = phase;
        self.announce(message);
    }

    fn write_state(&mut self) {
        let (Some(files), Some(state)) = (&self.files, self.state.as_mut()) else {
            return;
        };
        state.updated = Utc::now();
        if let Err(why) = state::write_state(&files.state, state) {
            warn!(workload = %self.job.workload, %why, "could not write the rollout's state file");
        }
    }
}

fn small(number: u64) -> u32 {
    u32::try_from(number).unwrap_or(u32::MAX)
}

fn revision_number(annotations: Option<&BTreeMap<String, String>>) -> Option<u64> {
    annotations?
        .get(actions::REVISION_ANNOTATION)?
        .trim()
        .parse()
        .ok()
}

/// Whether Pilothouse marked this ReplicaSet as a revision it rolled back from.
fn marked(rs: &k8s_openapi::api::apps::v1::ReplicaSet) -> bool {
    rs.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(actions::ROLLED_BACK_ANNOTATION))
}

fn pod_hash(rs: &k8s_openapi::api::apps::v1::ReplicaSet) -> Option<String> {
    rs.metadata.labels.as_ref()?.get(HASH_LABEL).cloned()
}

fn label<'p>(pod: &'p Pod, key: &str) -> Option<&'p str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// The highest restart count of a pod's containers.
fn restarts(pod: &Pod) -> u32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| u32::try_from(c.restart_count).unwrap_or(0))
        .max()
        .unwrap_or(0)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn list_pods(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    selector: &BTreeMap<String, String>,
) -> Result<Vec<Pod>, ActionError> {
    let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut params = ListParams::default();
    if !labels.is_empty() {
        params = params.labels(&labels.join(","));
    }
    Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map(|list| list.items)
        .map_err(|e| {
            actions::Op {
                verb: "list",
                resource: "pods",
                namespace,
                name,
            }
            .fail(e)
        })
}

/// Every revision that has or wants replicas, with its counts.
fn revision_counts(history: &History) -> Vec<RevisionCount> {
    history
        .revisions()
        .into_iter()
        .filter(|r| r.desired > 0 || r.ready > 0 || r.current)
        .map(|r| RevisionCount {
            revision: r.number,
            image: r.image,
            ready: r.ready,
            desired: r.desired,
        })
        .collect()
}

/// The pods as the state file shows replicas: revision by their ReplicaSet's hash.
fn replica_views(look: &Look) -> Vec<ReplicaView> {
    let numbers: BTreeMap<String, u64> = look
        .history
        .replica_sets
        .iter()
        .filter_map(|rs| {
            Some((
                pod_hash(rs)?,
                revision_number(rs.metadata.annotations.as_ref())?,
            ))
        })
        .collect();
    let mut views: Vec<ReplicaView> = look
        .pods
        .iter()
        .map(|pod| {
            let revision = label(pod, HASH_LABEL)
                .and_then(|hash| numbers.get(hash).copied())
                .unwrap_or(0);
            let ready = pod_ready(pod);
            let health = if ready {
                "healthy".to_string()
            } else if restarts(pod) > 0 {
                format!("crash-looping ({} restarts)", restarts(pod))
            } else {
                "starting".to_string()
            };
            ReplicaView {
                name: pod.metadata.name.clone().unwrap_or_default(),
                revision: small(revision),
                health,
                ready,
            }
        })
        .collect();
    views.sort_by(|a, b| (a.revision, &a.name).cmp(&(b.revision, &b.name)));
    views
}

/// The Deployment's maxSurge and maxUnavailable as counts of `desired` replicas (25% each when
/// not set, as Kubernetes defaults them).
fn strategy_bounds(deployment: &Deployment, desired: u32) -> (u32, u32) {
    let rolling = deployment
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let read = |value: Option<&IntOrString>| match value {
        Some(IntOrString::Int(n)) => Some(IntOrPercent::Count(u32::try_from(*n).unwrap_or(0))),
        Some(IntOrString::String(text)) => IntOrPercent::parse(text).ok(),
        None => None,
    };
    let surge =
        read(rolling.and_then(|r| r.max_surge.as_ref())).unwrap_or(IntOrPercent::Percent(25));
    let unavailable =
        read(rolling.and_then(|r| r.max_unavailable.as_ref())).unwrap_or(IntOrPercent::Percent(25));
    plan::bounds(desired, surge, unavailable)
        .map(|b| (b.surge, b.unavailable))
        .unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

    fn with_strategy(surge: Option<IntOrString>, unavailable: Option<IntOrString>) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                strategy: Some(DeploymentStrategy {
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: surge,
                        max_unavailable: unavailable,
                    }),
                    type_: Some("RollingUpdate".into()),
                }),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    #[test]
    fn surge_and_unavailability_default_to_a_quarter_as_kubernetes_does() {
        assert_eq!(strategy_bounds(&with_strategy(None, None), 10), (3, 2));
        let counts = with_strategy(Some(IntOrString::Int(2)), Some(IntOrString::Int(0)));
        assert_eq!(strategy_bounds(&counts, 10), (2, 0));
        let percents = with_strategy(
            Some(IntOrString::String("50%".into())),
            Some(IntOrString::String("10%".into())),
        );
        assert_eq!(strategy_bounds(&percents, 10), (5, 1));
    }

    #[test]
    fn outcomes_exit_as_the_docker_rollout_does() {
        assert_eq!(Outcome::Complete { revision: 2 }.exit_code(), 0);
        assert_eq!(Outcome::Unchanged.exit_code(), 0);
        let back = Outcome::RolledBack {
            from: 2,
            to: 1,
            reason: "x".into(),
        };
        assert_eq!(back.exit_code(), 4);
        assert_eq!(back.as_str(), "rolled-back");
        assert_eq!(Outcome::Failed { reason: "x".into() }.exit_code(), 1);
    }
}
