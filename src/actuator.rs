//! The actuator: the one path every action takes to a target. It refuses everything in
//! read-only mode, refuses an unconfirmed destructive action, hands the rest to the target's
//! worker, and writes one audit line per action with its outcome.
//!
//! Not for deciding what to do (the UI and, later, the autoscaler do) and not for speaking to
//! a platform (the workers do).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::fsutil;
use crate::model::WorkloadId;
use crate::platform::Request;

/// What an action does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ActionKind {
    /// Restart one replica of the workload.
    Restart { replica_id: String, replica: String },
    /// Set the workload's replica count; `from` is the count the operator saw.
    Scale { from: u64, to: u64 },
    /// Stop the autoscaler from evaluating a rule; its workload is left as it is.
    PauseRule { rule: String },
    /// Let a paused rule run again.
    ResumeRule { rule: String },
    /// Save a rule file from the editor (it changes what the autoscaler does).
    SaveRules { file: String, rules: Vec<String> },
    /// Roll the workload out to a new revision.
    Rollout {
        from_revision: u32,
        to_revision: u32,
        image: String,
    },
    /// Roll the workload back to an earlier revision.
    Rollback {
        from_revision: u32,
        to_revision: u32,
        image: String,
    },
    /// Leave a word (`pause`, `resume`, `abort`) for a rollout that another process runs.
    RolloutControl { word: String },
}

/// A scale-up that adds more replicas than this at once asks first: a slip of the finger
/// (5000 for 50) must not start thousands of containers.
pub const LARGE_SCALE_UP: u64 = 10;

/// One action on one workload, as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    pub workload: WorkloadId,
    pub kind: ActionKind,
    /// Who asks: `operator` for the console, `autoscaler` for a rule, later `cli`.
    pub origin: &'static str,
    /// Set once the operator answered yes to [`ActionRequest::confirmation`].
    pub confirmed: bool,
    /// Why, for the audit log: the rule and the metric values behind an autoscaler's scale.
    pub reason: Option<String>,
}

impl ActionRequest {
    /// The question to ask before this action runs, or `None` when it needs no confirmation.
    pub fn confirmation(&self) -> Option<String> {
        match &self.kind {
            ActionKind::Scale { to: 0, .. } => Some(format!(
                "Scale {} to 0? Every replica will be stopped and removed.",
                self.workload.name
            )),
            ActionKind::Scale { from, to } if to < from => Some(format!(
                "Scale {} from {from} to {to}? {} replica(s) will be stopped and removed.",
                self.workload.name,
                from - to
            )),
            ActionKind::Scale { from, to } if to - from > LARGE_SCALE_UP => Some(format!(
                "Scale {} from {from} to {to}? That starts {} new replicas.",
                self.workload.name,
                to - from
            )),
            ActionKind::Scale { .. } | ActionKind::PauseRule { .. } => None,
            ActionKind::ResumeRule { .. } | ActionKind::SaveRules { .. } => None,
            ActionKind::Rollout { .. } | ActionKind::Rollback { .. } => None,
            ActionKind::RolloutControl { .. } => None,
            ActionKind::Restart { replica, .. } => Some(format!("Restart {replica}?")),
        }
    }

    /// A short phrase for status lines: `scale shop/web 2 → 4`.
    pub fn describe(&self) -> String {
        match &self.kind {
            ActionKind::Restart { replica, .. } => format!("restart {replica}"),
            ActionKind::Scale { from, to } => {
                format!("scale {} {from} → {to}", self.workload.name)
            }
            ActionKind::PauseRule { rule } => format!("pause rule {rule}"),
            ActionKind::ResumeRule { rule } => format!("resume rule {rule}"),
            ActionKind::SaveRules { file, .. } => format!("save rules to {file}"),
            // Revision 0: the number is not known before the platform gives it.
            ActionKind::Rollout {
                to_revision: 0,
                image,
                ..
            } => format!("roll {} out to {image}", self.workload.name),
            ActionKind::Rollout {
                to_revision, image, ..
            } => format!(
                "roll {} out to revision {to_revision} ({image})",
                self.workload.name
            ),
            ActionKind::Rollback { to_revision: 0, .. } => {
                format!("roll {} back to its previous revision", self.workload.name)
            }
            ActionKind::Rollback { to_revision, .. } => {
                format!("roll {} back to revision {to_revision}", self.workload.name)
            }
            ActionKind::RolloutControl { word } => {
                format!("{word} the rollout of {}", self.workload.name)
            }
        }
    }
}

/// Why the actuator would not run an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("read-only mode: {0} refused (start without --read-only to act)")]
    ReadOnly(String),
    #[error("{0}")]
    NeedsConfirmation(String),
    #[error("no worker for target {0}: it is not configured")]
    UnknownTarget(String),
}

/// The result of an action that ran, sent back to whoever watches outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOutcome {
    pub request: ActionRequest,
    pub result: Result<String, String>,
}

/// One line of the audit log.
#[derive(Debug, Serialize)]
struct AuditEntry<'a> {
    time: String,
    user: &'a str,
    host: &'a str,
    origin: &'a str,
    target: &'a str,
    workload: &'a str,
    #[serde(flatten)]
    kind: &'a ActionKind,
    outcome: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// The audit log writer: JSON lines, one per action, appended.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    user: String,
    host: String,
}

impl AuditLog {
    /// An audit log at `path`, recording the current user and host name.
    pub fn new(path: PathBuf) -> Self {
        let user = current_user();
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        AuditLog { path, user, host }
    }

    /// Append one entry; a failure to write is logged, never fatal to the action.
    pub fn record(&self, req: &ActionRequest, outcome: &str, message: &str) {
        let entry = AuditEntry {
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            user: &self.user,
            host: &self.host,
            origin: req.origin,
            target: &req.workload.target,
            workload: &req.workload.name,
            kind: &req.kind,
            outcome,
            message,
            reason: req.reason.as_deref(),
        };
        let line = match serde_json::to_string(&entry) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode audit entry");
                return;
            }
        };
        if let Err(e) = fsutil::append_line(&self.path, &line) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write audit log");
        }
    }
}

/// Who runs this process: `USER`, else `LOGNAME`, else the name of its uid.
pub fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(user_from_uid)
}

/// The name of the process's user from its uid and `/etc/passwd`, or `uid N` when the uid has
/// no entry; for sessions (cron, systemd, `sudo -i` shells) where `USER` is not set.
fn user_from_uid() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
        });
    let Some(uid) = uid else {
        return "unknown".to_string();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 2 && fields[2] == uid)
        .map_or_else(|| format!("uid {uid}"), |fields| fields[0].to_string())
}

/// The single path from an intent to a target.
#[derive(Clone)]
pub struct Actuator {
    read_only: bool,
    audit: Arc<AuditLog>,
    /// Shared by every clone, so a target opened at run time is reached from all of them.
    workers: Arc<Mutex<HashMap<String, mpsc::Sender<Request>>>>,
    outcomes: mpsc::UnboundedSender<ActionOutcome>,
    /// Actions started and not finished, by a number of their own.
    in_flight: Arc<Mutex<Vec<(u64, ActionRequest)>>>,
    next_action: Arc<AtomicU64>,
}

impl Actuator {
    /// An actuator sending to `workers` (by target name) and reporting on `outcomes`.
    pub fn new(
        read_only: bool,
        audit: AuditLog,
        workers: HashMap<String, mpsc::Sender<Request>>,
        outcomes: mpsc::UnboundedSender<ActionOutcome>,
    ) -> Self {
        Actuator {
            read_only,
            audit: Arc::new(audit),
            workers: Arc::new(Mutex::new(workers)),
            outcomes,
            in_flight: Arc::new(Mutex::new(Vec::new())),
            next_action: Arc::new(AtomicU64::new(1)),
        }
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Reach target `name` through `worker` from now on, in this actuator and all its clones.
    pub fn add_worker(&self, name: &str, worker: mpsc::Sender<Request>) {
        lock(&self.workers).insert(name.to_string(), worker);
    }

    /// Check and start an action. Refusals come back at once; the outcome of an action that
    /// started comes later on the outcomes channel. Must be called inside a tokio runtime.
    pub fn submit(&self, req: ActionRequest) -> Result<(), Refusal> {
        self.start(req).map(drop)
    }

    /// Check and run an action to its end, for a caller that waits (the autoscaler): the
    /// outcome is returned, and also sent on the outcomes channel like any other.
    pub async fn run(&self, req: ActionRequest) -> Result<String, ActionError> {
        let done = self.start(req).map_err(ActionError::Refused)?;
        match done.await {
            Ok(result) => result.map_err(ActionError::Failed),
            Err(_) => Err(ActionError::Failed(
                "the action's task ended without a result".to_string(),
            )),
        }
    }

    /// Pause, resume or save a rule: an action with no worker behind it, refused in read-only mode
    /// and audited like the others. The caller tells the autoscaler once this says yes.
    pub fn record_rule_action(&self, req: &ActionRequest) -> Result<(), Refusal> {
        if self.read_only {
            let refusal = Refusal::ReadOnly(req.describe());
            self.audit.record(req, "refused", &refusal.to_string());
            return Err(refusal);
        }
        self.audit.record(req, "ok", "");
        Ok(())
    }

    /// An action this process carries out itself, at once, with no worker behind it (a word
    /// left for a rollout that another process runs): refused and audited in read-only mode;
    /// otherwise `act` runs and its outcome is audited.
    pub fn run_here(
        &self,
        req: &ActionRequest,
        act: impl FnOnce() -> Result<String, String>,
    ) -> Result<String, ActionError> {
        if self.read_only {
            let refusal = Refusal::ReadOnly(req.describe());
            self.audit.record(req, "refused", &refusal.to_string());
            return Err(ActionError::Refused(refusal));
        }
        let result = act();
        match &result {
            Ok(message) => self.audit.record(req, "ok", message),
            Err(message) => self.audit.record(req, "failed", message),
        }
        result.map_err(ActionError::Failed)
    }

    fn start(
        &self,
        req: ActionRequest,
    ) -> Result<oneshot::Receiver<Result<String, String>>, Refusal> {
        if self.read_only {
            let refusal = Refusal::ReadOnly(req.describe());
            self.audit.record(&req, "refused", &refusal.to_string());
            return Err(refusal);
        }
        if let Some(question) = req.confirmation().filter(|_| !req.confirmed) {
            return Err(Refusal::NeedsConfirmation(question));
        }
        let worker = lock(&self.workers).get(&req.workload.target).cloned();
        let Some(worker) = worker else {
            let refusal = Refusal::UnknownTarget(req.workload.target.clone());
            self.audit.record(&req, "refused", &refusal.to_string());
            return Err(refusal);
        };
        // A line before the action starts, so an action cut short (the console killed, the
        // host rebooted) still leaves a trace of what it set out to do.
        self.audit.record(&req, "started", "");
        let number = self.next_action.fetch_add(1, Ordering::Relaxed);
        lock(&self.in_flight).push((number, req.clone()));
        let audit = Arc::clone(&self.audit);
        let outcomes = self.outcomes.clone();
        let in_flight = Arc::clone(&self.in_flight);
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(async move {
            let result = run_on_worker(&worker, &req).await;
            lock(&in_flight).retain(|(n, _)| *n != number);
            let (outcome, message) = match &result {
                Ok(m) => ("ok", m.as_str()),
                Err(m) => ("failed", m.as_str()),
            };
            tracing::info!(action = %req.describe(), outcome, message, "action finished");
            audit.record(&req, outcome, message);
            // Nobody waits on `done` for a submitted action, and the outcomes receiver is gone
            // only while the app shuts down: in both cases nothing is left to tell.
            let _ = done_tx.send(result.clone());
            let _ = outcomes.send(ActionOutcome {
                request: req,
                result,
            });
        });
        Ok(done_rx)
    }
}

/// Why an action that was waited for did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Refused(Refusal),
    #[error("{0}")]
    Failed(String),
}

impl Actuator {
    /// Whether an action on `workload` has started and not finished.
    pub fn busy(&self, workload: &WorkloadId) -> bool {
        lock(&self.in_flight)
            .iter()
            .any(|(_, r)| r.workload == *workload)
    }

    /// Descriptions of the actions started and not finished.
    pub fn in_flight(&self) -> Vec<String> {
        lock(&self.in_flight)
            .iter()
            .map(|(_, r)| r.describe())
            .collect()
    }

    /// Wait at most `within` for the actions in flight to finish. Those still running then are
    /// recorded as interrupted in the audit log and returned, so that leaving the console never
    /// loses what an action set out to do.
    pub async fn settle(&self, within: Duration) -> Vec<ActionRequest> {
        let deadline = tokio::time::Instant::now() + within;
        while !lock(&self.in_flight).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(SETTLE_POLL).await;
        }
        let left: Vec<ActionRequest> = lock(&self.in_flight).drain(..).map(|(_, r)| r).collect();
        for req in &left {
            tracing::warn!(action = %req.describe(), "action interrupted by shutdown");
            self.audit
                .record(req, "interrupted", "pilothouse stopped before it finished");
        }
        left
    }
}

/// How often [`Actuator::settle`] looks whether the actions in flight are done.
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// The list of actions in flight, or the workers; a panic while holding either cannot leave it
/// half changed (each change is one push, retain or insert), so a poisoned lock is taken as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn run_on_worker(
    worker: &mpsc::Sender<Request>,
    req: &ActionRequest,
) -> Result<String, String> {
    let (reply, answer) = oneshot::channel();
    let request = match &req.kind {
        ActionKind::Restart { replica_id, .. } => Request::Restart {
            id: replica_id.clone(),
            reply,
        },
        ActionKind::Scale { to, .. } => Request::Scale {
            workload: req.workload.clone(),
            replicas: *to,
            reply,
        },
        // A worker that rolls out itself (Kubernetes) takes these; a Docker worker refuses them.
        ActionKind::Rollout { image, .. } => Request::SetImage {
            workload: req.workload.clone(),
            image: image.clone(),
            reply,
        },
        ActionKind::Rollback { to_revision, .. } => Request::Undo {
            workload: req.workload.clone(),
            to_revision: (*to_revision > 0).then_some(u64::from(*to_revision)),
            reply,
        },
        ActionKind::PauseRule { .. }
        | ActionKind::ResumeRule { .. }
        | ActionKind::SaveRules { .. }
        | ActionKind::RolloutControl { .. } => {
            return Err(format!("{} is not an action for a worker", req.describe()));
        }
    };
    let gone = || format!("the worker for {} has stopped", req.workload.target);
    worker.send(request).await.map_err(|_| gone())?;
    answer.await.map_err(|_| gone())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WorkloadKind;

    fn scale(from: u64, to: u64, confirmed: bool) -> ActionRequest {
        ActionRequest {
            workload: WorkloadId {
                target: "local".to_string(),
                kind: WorkloadKind::Compose,
                name: "shop/web".to_string(),
            },
            kind: ActionKind::Scale { from, to },
            origin: "operator",
            confirmed,
            reason: None,
        }
    }

    fn actuator(read_only: bool, dir: &std::path::Path) -> (Actuator, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(4);
        let (otx, _orx) = mpsc::unbounded_channel();
        let workers = HashMap::from([("local".to_string(), tx)]);
        let audit = AuditLog::new(dir.join("audit.jsonl"));
        (Actuator::new(read_only, audit, workers, otx), rx)
    }

    fn audit_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn scaling_down_or_to_zero_asks_first_and_scaling_up_does_not() {
        assert!(scale(3, 1, false).confirmation().is_some());
        assert!(scale(1, 0, false).confirmation().unwrap().contains("to 0"));
        assert_eq!(scale(1, 4, false).confirmation(), None);
        assert_eq!(scale(2, 12, false).confirmation(), None);
        let big = scale(1, 5000, false).confirmation().unwrap();
        assert!(big.contains("starts 4999 new replicas"), "{big}");
    }

    #[test]
    fn the_user_is_found_from_the_uid_when_no_variable_names_it() {
        let name = user_from_uid();
        assert!(!name.is_empty() && name != "unknown", "{name}");
    }

    #[tokio::test]
    async fn read_only_mode_refuses_at_the_actuator_and_audits_the_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let (act, mut rx) = actuator(true, dir.path());
        let err = act.submit(scale(1, 4, true)).unwrap_err();
        assert!(matches!(err, Refusal::ReadOnly(_)));
        assert!(rx.try_recv().is_err(), "nothing may reach the worker");
        let lines = audit_lines(dir.path());
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["outcome"], "refused");
        assert_eq!(lines[0]["action"], "scale");
        assert_eq!(lines[0]["to"], 4);
    }

    #[tokio::test]
    async fn an_action_still_running_at_shutdown_is_audited_as_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let (act, mut rx) = actuator(false, dir.path());
        act.submit(scale(1, 3, true)).unwrap();
        // The worker takes the request and never answers, like one cut off mid-scale.
        let held = rx.recv().await;
        assert!(matches!(held, Some(Request::Scale { .. })));
        assert_eq!(act.in_flight(), ["scale shop/web 1 → 3"]);
        let left = act.settle(Duration::from_millis(200)).await;
        assert_eq!(left.len(), 1);
        let outcomes: Vec<String> = audit_lines(dir.path())
            .iter()
            .map(|l| l["outcome"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(outcomes, ["started", "interrupted"]);
        drop(held);
    }

    #[tokio::test]
    async fn settling_returns_at_once_when_every_action_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (act, mut rx) = actuator(false, dir.path());
        act.submit(scale(1, 3, true)).unwrap();
        if let Some(Request::Scale { reply, .. }) = rx.recv().await {
            reply.send(Ok("scaled".to_string())).unwrap();
        }
        let started = std::time::Instant::now();
        assert!(act.settle(Duration::from_secs(30)).await.is_empty());
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(act.in_flight().is_empty());
    }

    #[tokio::test]
    async fn an_unconfirmed_scale_down_never_reaches_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        let (act, mut rx) = actuator(false, dir.path());
        let err = act.submit(scale(3, 1, false)).unwrap_err();
        assert!(matches!(err, Refusal::NeedsConfirmation(_)));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_finished_action_is_audited_with_its_outcome_user_and_host() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let (otx, mut orx) = mpsc::unbounded_channel();
        let workers = HashMap::from([("local".to_string(), tx)]);
        let act = Actuator::new(
            false,
            AuditLog::new(dir.path().join("audit.jsonl")),
            workers,
            otx,
        );
        act.submit(scale(3, 1, true)).unwrap();
        match rx.recv().await {
            Some(Request::Scale {
                replicas, reply, ..
            }) => {
                assert_eq!(replicas, 1);
                reply.send(Err("engine said no".to_string())).unwrap();
            }
            other => panic!("expected a scale request, got {other:?}"),
        }
        let outcome = orx.recv().await.unwrap();
        assert_eq!(outcome.result, Err("engine said no".to_string()));
        let lines = audit_lines(dir.path());
        assert_eq!(lines.len(), 2, "a line when it starts and one when it ends");
        assert_eq!(lines[0]["outcome"], "started");
        assert_eq!(lines[1]["outcome"], "failed");
        assert_eq!(lines[1]["message"], "engine said no");
        assert_eq!(lines[1]["workload"], "shop/web");
        assert!(
            lines[1]["user"]
                .as_str()
                .is_some_and(|u| !u.is_empty() && u != "unknown")
        );
        assert!(lines[1]["host"].as_str().is_some_and(|h| !h.is_empty()));
    }
}
