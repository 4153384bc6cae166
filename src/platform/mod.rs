//! Platforms: the code that speaks to one kind of target. Each target runs in a worker task of
//! its own; the worker sends [`Update`]s to the store and takes [`Request`]s from the actuator
//! and the UI.
//!
//! Not for deciding anything: a worker reports what it sees and does what it is told.

pub mod docker;
pub mod kubernetes;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::model::{
    ConnState, Controller, EngineEvent, Replica, StatsSample, SwarmService, WorkloadId,
    WorkloadKind,
};
use crate::text::SafeLine;

/// What a worker tells the store. Every update names its target.
// A `Replica` update is larger than the others, but updates move through a channel one by one
// and are consumed at once; boxing it would cost an allocation per update for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Update {
    /// The worker connected, lost its connection or is retrying.
    Connection { target: String, state: ConnState },
    /// A complete picture of the target, replacing whatever the store held for it.
    Snapshot {
        target: String,
        replicas: Vec<Replica>,
        services: Vec<SwarmService>,
    },
    /// A replica appeared or changed.
    Replica { target: String, replica: Replica },
    /// A replica is gone (destroyed).
    ReplicaRemoved { target: String, id: String },
    /// A Swarm service appeared or changed.
    Service {
        target: String,
        service: SwarmService,
    },
    /// A Swarm service is gone.
    ServiceRemoved { target: String, id: String },
    /// Every Deployment and StatefulSet of a Kubernetes target, replacing what the store held.
    Controllers {
        target: String,
        controllers: Vec<Controller>,
    },
    /// A Deployment or StatefulSet appeared or changed.
    Controller {
        target: String,
        controller: Controller,
    },
    /// A Deployment or StatefulSet is gone.
    ControllerRemoved {
        target: String,
        kind: WorkloadKind,
        name: String,
    },
    /// A stats point for one replica.
    Stats {
        target: String,
        id: String,
        sample: StatsSample,
    },
    /// Something the engine reported.
    Event { target: String, event: EngineEvent },
    /// Lines of a followed log, already sanitized; `stream` is the id given in the request.
    Logs { stream: u64, lines: Vec<LogRecord> },
    /// A followed log ended (replica gone, connection lost, or stopped on request).
    LogsEnded {
        stream: u64,
        replica: String,
        reason: String,
    },
    /// A followed replica's container stopped but still exists: its lines continue on the same
    /// stream when the container runs again, and `reason` says what it waits for meanwhile.
    LogsPaused {
        stream: u64,
        replica: String,
        reason: String,
    },
}

/// One line of a replica's output, made safe for the terminal by [`crate::text::sanitize`].
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// Container name of the replica that printed it.
    pub replica: String,
    pub stderr: bool,
    pub timestamp: Option<DateTime<Utc>>,
    pub line: SafeLine,
}

/// Where a log stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStart {
    /// The last N lines, then follow.
    Tail(u64),
    /// Everything up to (not including) this time, without following: earlier lines on scroll.
    Before(DateTime<Utc>, u64),
}

/// What the actuator or the UI asks a worker to do.
#[derive(Debug)]
pub enum Request {
    /// Restart one replica (by container id).
    Restart {
        id: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Set the replica count of a workload.
    Scale {
        workload: WorkloadId,
        replicas: u64,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Roll a workload out to a new image (Kubernetes: what `kubectl set image` does).
    SetImage {
        workload: WorkloadId,
        image: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Replace every replica of a workload by a new one (`kubectl rollout restart`).
    RolloutRestart {
        workload: WorkloadId,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Return a workload to an earlier revision (`kubectl rollout undo`): the previous one, or
    /// `to_revision`.
    Undo {
        workload: WorkloadId,
        to_revision: Option<u64>,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Start following the logs of these replicas (container ids) under the given stream id;
    /// any earlier stream with the same id is stopped first.
    FollowLogs {
        stream: u64,
        replicas: Vec<(String, String)>,
        start: LogStart,
    },
    /// Show what the previous instance of a replica's containers printed before it ended
    /// (Kubernetes keeps the log of the last terminated container), on stream `stream`.
    PreviousLogs {
        stream: u64,
        replica: (String, String),
    },
    /// Stop a log stream.
    StopLogs { stream: u64 },
    /// Inspect one replica now (env, security) and send it as an [`Update::Replica`].
    Inspect { id: String },
}

impl Request {
    /// Answers this request with `reason` instead of doing it: an action's reply is the error,
    /// and a log stream it asks for ends at once saying why.
    pub async fn refuse(self, reason: &str, updates: &mpsc::Sender<Update>) {
        let ended = |stream, replica| Update::LogsEnded {
            stream,
            replica,
            reason: reason.to_string(),
        };
        match self {
            Request::Restart { reply, .. }
            | Request::Scale { reply, .. }
            | Request::SetImage { reply, .. }
            | Request::RolloutRestart { reply, .. }
            | Request::Undo { reply, .. } => {
                let _ = reply.send(Err(reason.to_string()));
            }
            Request::FollowLogs {
                stream, replicas, ..
            } => {
                for (_, replica) in replicas {
                    let _ = updates.send(ended(stream, replica)).await;
                }
            }
            Request::PreviousLogs { stream, replica } => {
                let _ = updates.send(ended(stream, replica.1)).await;
            }
            Request::StopLogs { .. } | Request::Inspect { .. } => {}
        }
    }
}

/// Sleeps `delay`, refusing every request that arrives meanwhile with `reason`; false when
/// `requests` closed (the app is quitting).
pub async fn wait_refusing(
    requests: &mut mpsc::Receiver<Request>,
    delay: std::time::Duration,
    reason: &str,
    updates: &mpsc::Sender<Update>,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            request = requests.recv() => match request {
                None => return false,
                Some(request) => request.refuse(reason, updates).await,
            },
        }
    }
}

/// Runs `action` among a worker's `tasks` (finished ones are reaped first) and replies with its
/// outcome, logged under `target` and `platform`.
pub(crate) fn spawn_action<F>(
    tasks: &mut tokio::task::JoinSet<()>,
    target: String,
    platform: &'static str,
    reply: oneshot::Sender<Result<String, String>>,
    action: F,
) where
    F: std::future::Future<Output = Result<String, String>> + Send + 'static,
{
    while tasks.try_join_next().is_some() {}
    tasks.spawn(async move {
        let outcome = action.await;
        match &outcome {
            Ok(message) => tracing::info!(%target, platform, %message, "action done"),
            Err(reason) => tracing::warn!(%target, platform, %reason, "action failed"),
        }
        let _ = reply.send(outcome);
    });
}
