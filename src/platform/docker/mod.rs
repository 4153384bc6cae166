//! The Docker platform: one worker per Docker target. It connects (negotiating the API
//! version), sends a snapshot of every container and Swarm service, keeps it current from the
//! engine's events stream, streams stats and logs, and carries out restarts and scaling.
//!
//! Not for deciding anything or for rendering: the worker reports what the engine says through
//! [`Update`]s and does what [`Request`]s ask. It never re-lists on a timer.

pub mod connect;
pub mod convert;
mod events;
pub(crate) mod logs;
pub mod scale;
pub mod stats;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::container::{InspectContainerOptions, ListContainersOptions, RestartContainerOptions};
use bollard::errors::Error as BollardError;
use bollard::models::EventMessage;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::lb::haproxy::Haproxy;
use crate::model::{ConnState, Replica, SwarmService};
use crate::platform::{Request, Update};

pub use connect::{DEFAULT_HOST, Endpoint, resolve_endpoint};
pub use logs::{BATCH_DELAY, BATCH_LINES, MAX_LINE_BYTES};

/// How many containers are inspected at once after a snapshot or a burst of events.
pub const INSPECT_CONCURRENCY: usize = 8;

/// How far before the engine's clock at snapshot time the events subscription starts, so an
/// event between the list and the subscription is never missed (a repeat only re-reads).
const EVENTS_OVERLAP: Duration = Duration::from_secs(2);

/// Runs the worker for one Docker target until `requests` is closed (the app is quitting);
/// every task it started (stats, logs, inspections, actions) is aborted when it returns.
///
/// `host` is `--docker-host` or the target's address from config; `None` means `DOCKER_HOST`
/// or the default local socket.
pub async fn run(
    target: String,
    host: Option<String>,
    updates: mpsc::Sender<Update>,
    requests: mpsc::Receiver<Request>,
) {
    run_with(target, host, None, updates, requests).await;
}

/// A Docker worker rolls nothing out itself: a rollout on Docker is a rolling replace that
/// `pilothouse rollout` runs and records.
const DOCKER_ROLLOUTS: &str =
    "a rollout on Docker runs through `pilothouse rollout` and `pilothouse rollback`";

/// Docker keeps one log per container across its restarts, so there is no earlier instance.
const NO_PREVIOUS: &str =
    "Docker keeps no previous container: a restarted container's log goes on in the same log";

/// [`run`], keeping the HAProxy at `lb` in step when it scales a workload whose replicas name a
/// backend (see [`scale::lb_binding`]).
pub async fn run_with(
    target: String,
    host: Option<String>,
    lb: Option<Haproxy>,
    updates: mpsc::Sender<Update>,
    mut requests: mpsc::Receiver<Request>,
) {
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let endpoint = resolve_endpoint(host.as_deref(), docker_host.as_deref());
    let mut worker = Worker {
        target,
        updates,
        actions: JoinSet::new(),
        lb,
    };
    worker.run(endpoint, &mut requests).await;
    debug!(target = %worker.target, "docker worker stopped");
}

/// How a connected session ended.
enum Outcome {
    /// The app is quitting (requests closed, or the store is gone).
    Quit,
    /// The connection broke; reconnect after a backoff.
    Lost(String),
}

/// The part of the worker that outlives connections.
struct Worker {
    target: String,
    updates: mpsc::Sender<Update>,
    /// Restarts and scalings in flight; they finish on their own or are aborted on drop.
    actions: JoinSet<()>,
    /// The load balancer scaling keeps in step, if one is configured.
    lb: Option<Haproxy>,
}

impl Worker {
    async fn run(
        &mut self,
        endpoint: Result<Endpoint, String>,
        requests: &mut mpsc::Receiver<Request>,
    ) {
        let mut backoff = connect::Backoff::default();
        loop {
            let outcome = match &endpoint {
                Ok(endpoint) => {
                    self.connect_and_serve(endpoint, requests, &mut backoff)
                        .await
                }
                Err(error) => Outcome::Lost(error.clone()),
            };
            let error = match outcome {
                Outcome::Quit => return,
                Outcome::Lost(error) => error,
            };

            let delay = backoff.next_delay();
            warn!(target = %self.target, %error, retry_in_secs = delay, "docker target disconnected");
            let state = ConnState::Disconnected {
                error: error.clone(),
                retry_in_secs: delay,
            };
            if !self.send_state(state).await {
                return;
            }
            let waited = self
                .wait_refusing(requests, Duration::from_secs(delay), &error)
                .await;
            if !waited {
                return;
            }
        }
    }

    /// One connection attempt and, if it works, the session on it.
    async fn connect_and_serve(
        &mut self,
        endpoint: &Endpoint,
        requests: &mut mpsc::Receiver<Request>,
        backoff: &mut connect::Backoff,
    ) -> Outcome {
        if !self.send_state(ConnState::Connecting).await {
            return Outcome::Quit;
        }
        let attempt = connect::open(endpoint);
        tokio::pin!(attempt);
        let connected = loop {
            tokio::select! {
                result = &mut attempt => break result,
                request = requests.recv() => match request {
                    None => return Outcome::Quit,
                    Some(request) => self.refuse(request, "still connecting").await,
                },
            }
        };
        let connected = match connected {
            Ok(connected) => connected,
            Err(error) => return Outcome::Lost(error),
        };

        info!(
            target = %self.target,
            address = endpoint.address(),
            version = %connected.version,
            api_version = %connected.api_version,
            "connected to docker"
        );
        let state = ConnState::Connected {
            version: connected.version.clone(),
            api_version: connected.api_version.clone(),
            engine_id: connected.engine_id.clone(),
        };
        if !self.send_state(state).await {
            return Outcome::Quit;
        }
        backoff.reset();
        let mut session = Session::new(self, connected.docker, endpoint.address().to_string());
        let outcome = session.serve(self, requests).await;
        session.close(&outcome).await;
        outcome
    }

    async fn send_state(&self, state: ConnState) -> bool {
        let update = Update::Connection {
            target: self.target.clone(),
            state,
        };
        self.updates.send(update).await.is_ok()
    }

    /// Sleeps `delay`, answering requests with the reason the target cannot serve them; false
    /// when the app quits meanwhile.
    async fn wait_refusing(
        &mut self,
        requests: &mut mpsc::Receiver<Request>,
        delay: Duration,
        why: &str,
    ) -> bool {
        let reason = self.not_connected(why);
        crate::platform::wait_refusing(requests, delay, &reason, &self.updates).await
    }

    /// Answers a request that cannot be served while the target is not connected.
    async fn refuse(&mut self, request: Request, why: &str) {
        request
            .refuse(&self.not_connected(why), &self.updates)
            .await;
    }

    fn not_connected(&self, why: &str) -> String {
        format!("not connected to Docker target {}: {why}", self.target)
    }

    /// Runs an action in the background and replies with its outcome.
    fn spawn_action<F>(
        &mut self,
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
        action: F,
    ) where
        F: Future<Output = Result<String, String>> + Send + 'static,
    {
        let target = self.target.clone();
        crate::platform::spawn_action(&mut self.actions, target, "docker", reply, action);
    }
}

/// Tasks that are aborted when this value is dropped.
#[derive(Debug, Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    fn is_finished(&self) -> bool {
        self.0.iter().all(JoinHandle::is_finished)
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}

/// A followed log stream: its task, and its followers to wake and to end.
struct LogStream {
    tasks: Tasks,
    followers: logs::Followers,
}

/// The result of reading one container again.
struct Fetched {
    id: String,
    generation: u64,
    result: Result<Option<Replica>, BollardError>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<EventMessage, BollardError>> + Send>>;

/// One connection to the engine: everything here is aborted when the connection is lost.
struct Session {
    target: String,
    docker: Docker,
    address: String,
    updates: mpsc::Sender<Update>,
    stats: HashMap<String, Tasks>,
    logs: HashMap<u64, LogStream>,
    inspections: JoinSet<()>,
    inspect_slots: Arc<Semaphore>,
    /// The latest read asked for each container; older answers are dropped.
    generations: HashMap<String, u64>,
    next_generation: u64,
    fetched_tx: mpsc::Sender<Fetched>,
    fetched_rx: mpsc::Receiver<Fetched>,
}

impl Session {
    fn new(worker: &Worker, docker: Docker, address: String) -> Self {
        let (fetched_tx, fetched_rx) = mpsc::channel(64);
        Session {
            target: worker.target.clone(),
            docker,
            address,
            updates: worker.updates.clone(),
            stats: HashMap::new(),
            logs: HashMap::new(),
            inspections: JoinSet::new(),
            inspect_slots: Arc::new(Semaphore::new(INSPECT_CONCURRENCY)),
            generations: HashMap::new(),
            next_generation: 0,
            fetched_tx,
            fetched_rx,
        }
    }

    /// Snapshot, then events, requests and inspections until the connection breaks or the app
    /// quits.
    async fn serve(
        &mut self,
        worker: &mut Worker,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Outcome {
        let (since, replicas, services) = match self.snapshot().await {
            Ok(snapshot) => snapshot,
            Err(err) => return Outcome::Lost(connect::describe_failure(&self.address, &err)),
        };
        let ids: Vec<(String, String)> = replicas
            .iter()
            .map(|r| (r.id.clone(), r.state.clone()))
            .collect();
        let update = Update::Snapshot {
            target: self.target.clone(),
            replicas,
            services,
        };
        if self.updates.send(update).await.is_err() {
            return Outcome::Quit;
        }

        for (id, state) in &ids {
            self.reconcile_stats(id, state);
        }
        for (id, _) in ids {
            self.queue_fetch(id);
        }

        let mut events: EventStream =
            Box::pin(self.docker.events(Some(events::options_since(since))));
        loop {
            let alive = tokio::select! {
                request = requests.recv() => match request {
                    None => return Outcome::Quit,
                    Some(request) => self.handle(worker, request).await,
                },
                event = events.next() => match event {
                    None => return Outcome::Lost(format!(
                        "Docker at {} closed its events stream (did the daemon restart?)",
                        self.address
                    )),
                    Some(Err(err)) => {
                        return Outcome::Lost(connect::describe_failure(&self.address, &err));
                    }
                    Some(Ok(event)) => self.on_event(event).await,
                },
                Some(fetched) = self.fetched_rx.recv() => self.on_fetched(fetched).await,
            };
            if !alive {
                return Outcome::Quit;
            }
        }
    }

    /// Lists every container (and Swarm service on a manager) without inspecting any, so the
    /// first picture comes fast; returns the time to subscribe to events from.
    async fn snapshot(
        &self,
    ) -> Result<(DateTime<Utc>, Vec<Replica>, Vec<SwarmService>), BollardError> {
        let options = ListContainersOptions::<String> {
            all: true,
            ..Default::default()
        };
        let (info, containers) = tokio::join!(
            self.docker.info(),
            self.docker.list_containers(Some(options))
        );
        let info = info?;
        let replicas: Vec<Replica> = containers?
            .iter()
            .map(convert::replica_from_summary)
            .collect();

        let manager = info
            .swarm
            .as_ref()
            .and_then(|s| s.control_available)
            .unwrap_or(false);
        let services = if manager {
            let listed = self.docker.list_services::<String>(None).await?;
            listed.iter().map(convert::swarm_service).collect()
        } else {
            Vec::new()
        };

        let engine_now = info
            .system_time
            .as_deref()
            .and_then(convert::parse_engine_time);
        let since = engine_now.unwrap_or_else(Utc::now) - EVENTS_OVERLAP;
        debug!(target = %self.target, replicas = replicas.len(), services = services.len(), "snapshot listed");
        Ok((since, replicas, services))
    }

    /// Starts a stats stream for a running replica that has none; ends it for one that stopped.
    fn reconcile_stats(&mut self, id: &str, state: &str) {
        if state != "running" {
            self.stats.remove(id);
            return;
        }
        if self.stats.get(id).is_some_and(|tasks| !tasks.is_finished()) {
            return;
        }
        let task = stats::follow(
            self.docker.clone(),
            self.target.clone(),
            id.to_string(),
            self.updates.clone(),
        );
        self.stats
            .insert(id.to_string(), Tasks(vec![tokio::spawn(task)]));
    }

    /// Reads a container again in the background (list entry + inspect), at most
    /// [`INSPECT_CONCURRENCY`] at once.
    fn queue_fetch(&mut self, id: String) {
        while self.inspections.try_join_next().is_some() {}
        self.next_generation += 1;
        let generation = self.next_generation;
        self.generations.insert(id.clone(), generation);
        let docker = self.docker.clone();
        let slots = Arc::clone(&self.inspect_slots);
        let tx = self.fetched_tx.clone();
        self.inspections.spawn(async move {
            let Ok(_permit) = slots.acquire_owned().await else {
                return;
            };
            let result = fetch_replica(&docker, &id).await;
            let _ = tx
                .send(Fetched {
                    id,
                    generation,
                    result,
                })
                .await;
        });
    }

    /// Sends a fresh read of a container, unless a newer read was asked for since.
    async fn on_fetched(&mut self, fetched: Fetched) -> bool {
        if self.generations.get(&fetched.id) != Some(&fetched.generation) {
            return true;
        }
        self.generations.remove(&fetched.id);
        match fetched.result {
            Ok(Some(replica)) => {
                self.reconcile_stats(&replica.id, &replica.state);
                let update = Update::Replica {
                    target: self.target.clone(),
                    replica,
                };
                self.updates.send(update).await.is_ok()
            }
            Ok(None) => self.remove_replica(fetched.id).await,
            Err(err) => {
                debug!(container = %fetched.id, error = %err, "reading a container failed");
                true
            }
        }
    }

    async fn remove_replica(&mut self, id: String) -> bool {
        self.generations.remove(&id);
        self.stats.remove(&id);
        for log in self.logs.values() {
            log.followers.removed(&id);
        }
        let update = Update::ReplicaRemoved {
            target: self.target.clone(),
            id,
        };
        self.updates.send(update).await.is_ok()
    }

    /// Applies one engine event: reads what changed again, or drops what is gone.
    async fn on_event(&mut self, event: EventMessage) -> bool {
        if let Some(engine_event) = events::engine_event(&event) {
            let update = Update::Event {
                target: self.target.clone(),
                event: engine_event,
            };
            if self.updates.send(update).await.is_err() {
                return false;
            }
        }
        if let Some(id) = events::started(&event) {
            for log in self.logs.values() {
                log.followers.started(&id);
            }
        }
        match events::effect(&event) {
            events::Effect::RefreshReplica(id) => {
                self.queue_fetch(id);
                true
            }
            events::Effect::RemoveReplica(id) => self.remove_replica(id).await,
            events::Effect::RefreshService(id) => self.refresh_service(&id).await,
            events::Effect::RemoveService(id) => {
                let update = Update::ServiceRemoved {
                    target: self.target.clone(),
                    id,
                };
                self.updates.send(update).await.is_ok()
            }
            events::Effect::Nothing => true,
        }
    }

    async fn refresh_service(&mut self, id: &str) -> bool {
        match self.docker.inspect_service(id, None).await {
            Ok(service) => {
                let service = convert::swarm_service(&service);
                let update = Update::Service {
                    target: self.target.clone(),
                    service,
                };
                self.updates.send(update).await.is_ok()
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                let update = Update::ServiceRemoved {
                    target: self.target.clone(),
                    id: id.to_string(),
                };
                self.updates.send(update).await.is_ok()
            }
            Err(err) => {
                debug!(service = id, error = %err, "reading a service failed");
                true
            }
        }
    }

    /// Serves one request; false when the store is gone.
    async fn handle(&mut self, worker: &mut Worker, request: Request) -> bool {
        match request {
            Request::Restart { id, reply } => {
                let docker = self.docker.clone();
                worker.spawn_action(reply, async move { restart(&docker, &id).await });
            }
            Request::Scale {
                workload,
                replicas,
                reply,
            } => {
                let docker = self.docker.clone();
                let lb = worker.lb.clone();
                worker.spawn_action(reply, async move {
                    scale::scale_with(&docker, &workload, replicas, lb.as_ref()).await
                });
            }
            Request::FollowLogs {
                stream,
                replicas,
                start,
            } => {
                self.logs.retain(|_, s| !s.tasks.is_finished());
                if !self.end_logs(stream, "replaced by a new request").await {
                    return false;
                }
                let (task, followers) =
                    logs::spawn_stream(&self.docker, stream, replicas, start, self.updates.clone());
                let log = LogStream {
                    tasks: Tasks(vec![task]),
                    followers,
                };
                self.logs.insert(stream, log);
            }
            Request::StopLogs { stream } => {
                return self.end_logs(stream, "stopped on request").await;
            }
            Request::PreviousLogs { stream, replica } => {
                let ended = Update::LogsEnded {
                    stream,
                    replica: replica.1,
                    reason: NO_PREVIOUS.to_string(),
                };
                return self.updates.send(ended).await.is_ok();
            }
            Request::Inspect { id } => self.queue_fetch(id),
            Request::SetImage { reply, .. }
            | Request::RolloutRestart { reply, .. }
            | Request::Undo { reply, .. } => {
                let _ = reply.send(Err(DOCKER_ROLLOUTS.to_string()));
            }
        }
        true
    }

    /// Stops a log stream, if there is one, and ends the replicas it has not ended itself.
    async fn end_logs(&mut self, stream: u64, reason: &str) -> bool {
        let Some(stopped) = self.logs.remove(&stream) else {
            return true;
        };
        drop(stopped.tasks);
        let open = stopped.followers.take_open();
        self.send_logs_ended(stream, open, reason).await
    }

    async fn send_logs_ended(&self, stream: u64, replicas: Vec<String>, reason: &str) -> bool {
        for replica in replicas {
            let ended = Update::LogsEnded {
                stream,
                replica,
                reason: reason.to_string(),
            };
            if self.updates.send(ended).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Ends the session's tasks; tells the store about log streams cut by a lost connection.
    async fn close(&mut self, outcome: &Outcome) {
        self.stats.clear();
        self.inspections.abort_all();
        let streams: Vec<(u64, LogStream)> = self.logs.drain().collect();
        for (stream, log) in streams {
            drop(log.tasks);
            let open = log.followers.take_open();
            if let Outcome::Lost(error) = outcome {
                let reason = format!("connection lost: {error}");
                if !self.send_logs_ended(stream, open, &reason).await {
                    return;
                }
            }
        }
    }
}

/// A container as the list and an inspect describe it; `None` when it no longer exists.
async fn fetch_replica(docker: &Docker, id: &str) -> Result<Option<Replica>, BollardError> {
    let filters = HashMap::from([("id".to_string(), vec![id.to_string()])]);
    let options = ListContainersOptions {
        all: true,
        filters,
        ..Default::default()
    };
    let listed = docker.list_containers(Some(options)).await?;
    let Some(summary) = listed.iter().find(|s| s.id.as_deref() == Some(id)) else {
        return Ok(None);
    };
    match docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(inspect) => Ok(Some(convert::merge_inspect(
            convert::replica_from_summary(summary),
            &inspect,
        ))),
        Err(BollardError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Restarts a container, giving it its own stop timeout (Docker's default 10 s) to stop.
async fn restart(docker: &Docker, id: &str) -> Result<String, String> {
    let inspect = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .map_err(|e| format!("cannot restart {id}: reading the container failed: {e}"))?;
    let name = inspect
        .name
        .as_deref()
        .unwrap_or(id)
        .trim_start_matches('/')
        .to_string();
    let timeout = inspect
        .config
        .as_ref()
        .and_then(|c| c.stop_timeout)
        .unwrap_or(scale::DEFAULT_STOP_TIMEOUT);
    let t = isize::try_from(timeout).unwrap_or(isize::MAX);
    docker
        .restart_container(id, Some(RestartContainerOptions { t }))
        .await
        .map_err(|e| format!("cannot restart {name}: {e}"))?;
    Ok(format!("restarted {name}"))
}
