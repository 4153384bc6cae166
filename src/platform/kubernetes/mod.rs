//! The Kubernetes platform: one worker per target (a kubeconfig context, or the pod's service
//! account). It connects (`GET /version`), keeps pods, ReplicaSets, Deployments,
//! StatefulSets, HPAs, KEDA ScaledObjects and Events current through watchers, sends them as
//! [`Update`]s, streams pod logs and pod usage (metrics-server's, or Prometheus' when
//! config.toml names a server), and carries out the actions (scale, set image, rollout
//! restart, undo, restart a pod) without ever blocking on them.
//!
//! Not for deciding anything or for rendering: the worker reports what the API server says and
//! does what [`Request`]s ask.

pub mod actions;
pub mod config;
pub mod convert;
pub mod lease;
mod logs;
pub mod metrics;
pub mod prom;
pub mod rollout;
pub mod watch;

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

pub use config::{ConfigError, Selection, Target, contexts, resolve, resolve_all};

use crate::model::ConnState;
use crate::platform::docker::connect::Backoff;
use crate::platform::{Request, Update};
use watch::{Cluster, Watched, client_cause};

/// The longest `GET /version` may take before the attempt counts as failed.
const VERSION_TIMEOUT: Duration = Duration::from_secs(15);

/// At most this many watcher items are taken in before the updates they make are sent.
const BATCH_ITEMS: usize = 512;

/// Runs the worker for one Kubernetes target until `requests` is closed (the app is quitting);
/// every task it started (watchers, logs, metrics, actions) is aborted when it returns.
pub async fn run(target: Target, updates: mpsc::Sender<Update>, requests: mpsc::Receiver<Request>) {
    run_recording(target, None, updates, requests).await;
}

/// As [`run`], with the rollouts it runs recorded under `state_dir`, where the console's rollout
/// view and `pilothouse rollout status` read them.
pub async fn run_recording(
    target: Target,
    state_dir: Option<std::path::PathBuf>,
    updates: mpsc::Sender<Update>,
    mut requests: mpsc::Receiver<Request>,
) {
    let mut worker = Worker {
        name: target.name.clone(),
        state_dir,
        target,
        updates,
        actions: JoinSet::new(),
        events_seen: None,
    };
    worker.run(&mut requests).await;
    debug!(target = %worker.name, "kubernetes worker stopped");
}

/// The engine ID a Kubernetes target reports and its rollouts are filed under: the API
/// server's address and the context's name.
pub fn engine_id(cluster_url: &str, context: &str) -> String {
    format!("{cluster_url}#{context}")
}

/// How a session ended.
enum Outcome {
    /// The app is quitting (requests closed, or the store is gone).
    Quit,
    /// The target cannot be served now; retry after a backoff. `synced` when the session had
    /// listed something, so the backoff starts over.
    Lost { error: String, synced: bool },
}

/// The part of the worker that outlives connections.
struct Worker {
    name: String,
    target: Target,
    /// Where rollouts are recorded; `None` records none.
    state_dir: Option<std::path::PathBuf>,
    updates: mpsc::Sender<Update>,
    /// Actions in flight; they finish on their own or are aborted on drop.
    actions: JoinSet<()>,
    /// The newest Event an earlier session sent, so a new one does not repeat it.
    events_seen: Option<chrono::DateTime<Utc>>,
}

impl Worker {
    async fn run(&mut self, requests: &mut mpsc::Receiver<Request>) {
        let mut backoff = Backoff::default();
        loop {
            let (error, synced) = match self.connect_and_serve(requests).await {
                Outcome::Quit => return,
                Outcome::Lost { error, synced } => (error, synced),
            };
            if synced {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            warn!(target = %self.name, %error, retry_in_secs = delay, "kubernetes target disconnected");
            let state = ConnState::Disconnected {
                error: error.clone(),
                retry_in_secs: delay,
            };
            if !self.send_state(state).await {
                return;
            }
            if !self
                .wait_refusing(requests, Duration::from_secs(delay), &error)
                .await
            {
                return;
            }
        }
    }

    /// One connection attempt and, if it works, the session on it.
    async fn connect_and_serve(&mut self, requests: &mut mpsc::Receiver<Request>) -> Outcome {
        if !self.send_state(ConnState::Connecting).await {
            return Outcome::Quit;
        }
        let url = self.target.config.cluster_url.to_string();
        // A credential file that is missing is a fault of the kubeconfig, not of the network:
        // say which file. It is still retried, for a file that is yet to be mounted.
        if let Err(e) = self.target.readable_credentials() {
            return Outcome::Lost {
                error: format!(
                    "cannot make a client for {url}: {e} (fix the kubeconfig's user or create \
                     the file)"
                ),
                synced: false,
            };
        }
        let client = match Client::try_from(self.target.config.clone()) {
            Ok(client) => client,
            Err(e) => {
                return Outcome::Lost {
                    error: format!("cannot make a client for {url}: {}", client_cause(&e)),
                    synced: false,
                };
            }
        };
        let version = {
            let attempt = tokio::time::timeout(VERSION_TIMEOUT, client.apiserver_version());
            tokio::pin!(attempt);
            loop {
                tokio::select! {
                    result = &mut attempt => break result,
                    request = requests.recv() => match request {
                        None => return Outcome::Quit,
                        Some(request) => self.refuse(request, "still connecting").await,
                    },
                }
            }
        };
        let version = match version {
            Ok(Ok(info)) => info.git_version,
            Ok(Err(e)) => {
                return Outcome::Lost {
                    error: format!("cannot reach the API server at {url}: {}", client_cause(&e)),
                    synced: false,
                };
            }
            Err(_) => {
                return Outcome::Lost {
                    error: format!(
                        "the API server at {url} did not answer within {}s",
                        VERSION_TIMEOUT.as_secs()
                    ),
                    synced: false,
                };
            }
        };
        info!(target = %self.name, %url, %version, namespace = self.target.namespace.as_deref().unwrap_or("all namespaces"), "kubernetes API server answered");
        let connected = ConnState::Connected {
            version,
            api_version: "v1".to_string(),
            engine_id: engine_id(&url, &self.name),
        };
        let mut session = Session::new(self, client);
        let outcome = session.serve(self, requests, connected).await;
        session.close(&outcome).await;
        self.events_seen = session.cluster.events_seen();
        outcome
    }

    async fn send_state(&self, state: ConnState) -> bool {
        let update = Update::Connection {
            target: self.name.clone(),
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
        format!("not connected to Kubernetes target {}: {why}", self.name)
    }

    /// Runs an action in the background and replies with its outcome.
    fn spawn_action<F>(&mut self, reply: oneshot::Sender<Result<String, String>>, action: F)
    where
        F: Future<Output = Result<String, String>> + Send + 'static,
    {
        let target = self.name.clone();
        crate::platform::spawn_action(&mut self.actions, target, "kubernetes", reply, action);
    }
}

/// Tasks that are aborted when this value is dropped.
#[derive(Debug, Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}

/// One connection to the API server: everything here is aborted when it ends.
struct Session {
    target: String,
    client: Client,
    updates: mpsc::Sender<Update>,
    cluster: Cluster,
    logs: logs::Logs,
    watched_tx: mpsc::Sender<Watched>,
    watched_rx: mpsc::Receiver<Watched>,
    tasks: Tasks,
}

impl Session {
    fn new(worker: &Worker, client: Client) -> Session {
        let namespace = worker.target.namespace.as_deref();
        let cluster = Cluster::new(&worker.name, namespace, worker.events_seen);
        let logs = logs::Logs::new(client.clone(), cluster.pods(), worker.updates.clone());
        let (watched_tx, watched_rx) = mpsc::channel(1024);
        Session {
            target: worker.name.clone(),
            client,
            updates: worker.updates.clone(),
            cluster,
            logs,
            watched_tx,
            watched_rx,
            tasks: Tasks::default(),
        }
    }

    /// Watchers, requests and metrics until every core watcher fails or the app quits. The
    /// target counts as connected once something was listed; Events and pod usage are read
    /// once the pods are known.
    async fn serve(
        &mut self,
        worker: &mut Worker,
        requests: &mut mpsc::Receiver<Request>,
        connected: ConnState,
    ) -> Outcome {
        let namespace = worker.target.namespace.clone();
        self.tasks.0 = watch::spawn(&self.client, namespace.as_deref(), &self.watched_tx);

        let mut told_connected = false;
        let mut pods_known = false;
        loop {
            tokio::select! {
                request = requests.recv() => match request {
                    None => return Outcome::Quit,
                    Some(request) => {
                        if !self.handle(worker, request).await {
                            return Outcome::Quit;
                        }
                    }
                },
                Some(first) = self.watched_rx.recv() => {
                    self.take_in(first);
                    if !told_connected && self.cluster.synced() {
                        told_connected = true;
                        if !worker.send_state(connected.clone()).await {
                            return Outcome::Quit;
                        }
                    }
                    if !self.send_changes().await {
                        return Outcome::Quit;
                    }
                    if !pods_known && self.cluster.pods_settled() {
                        // What the first screen does not need waits for the pods: on a large
                        // cluster the Event list is the longest of all, and pod usage has
                        // nothing to attach to before the pods are known.
                        pods_known = true;
                        let events =
                            watch::spawn_events(&self.client, namespace.as_deref(), &self.watched_tx);
                        self.tasks.0.push(events);
                        self.tasks.0.push(self.spawn_pod_usage(&worker.target));
                    }
                    if let Some(error) = self.cluster.lost() {
                        let url = &worker.target.config.cluster_url;
                        let error = format!("{error} (API server {url})");
                        return Outcome::Lost { error, synced: told_connected };
                    }
                }
            }
        }
    }

    /// Starts reading pod CPU and memory: from Prometheus when config.toml names a server for
    /// the target, else from metrics-server.
    fn spawn_pod_usage(&self, target: &Target) -> JoinHandle<()> {
        let name = self.target.clone();
        let (pods, updates) = (self.cluster.pods(), self.updates.clone());
        match target.prometheus.clone() {
            Some(queries) => tokio::spawn(prom::poll(queries, name, pods, updates)),
            None => {
                let (client, namespace) = (self.client.clone(), target.namespace.clone());
                tokio::spawn(metrics::poll(client, namespace, name, pods, updates))
            }
        }
    }

    /// Applies one watcher item and whatever else is already waiting, up to [`BATCH_ITEMS`].
    fn take_in(&mut self, first: Watched) {
        self.cluster.apply(first);
        for _ in 1..BATCH_ITEMS {
            match self.watched_rx.try_recv() {
                Ok(next) => self.cluster.apply(next),
                Err(_) => break,
            }
        }
    }

    async fn send_changes(&mut self) -> bool {
        for update in self.cluster.flush(Utc::now()) {
            if self.updates.send(update).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Serves one request; false when the store is gone.
    async fn handle(&mut self, worker: &mut Worker, request: Request) -> bool {
        match request {
            Request::Restart { id, reply } => self.restart(worker, &id, reply),
            Request::Scale {
                workload,
                replicas,
                reply,
            } => {
                let client = self.client.clone();
                worker.spawn_action(reply, async move {
                    let done = actions::scale(&client, &workload, replicas).await;
                    done.map_err(|e| e.to_string())
                });
            }
            Request::SetImage {
                workload,
                image,
                reply,
            } => {
                let client = self.client.clone();
                let url = worker.target.config.cluster_url.to_string();
                let record = worker.state_dir.clone().map(|state_dir| rollout::Record {
                    state_dir,
                    engine_id: engine_id(&url, &worker.name),
                    host: url,
                    by: crate::actuator::current_user(),
                });
                worker.spawn_action(reply, async move {
                    roll_out(client, workload, image, record).await
                });
            }
            Request::RolloutRestart { workload, reply } => {
                let client = self.client.clone();
                worker.spawn_action(reply, async move {
                    let done = actions::restart(&client, &workload).await;
                    done.map_err(|e| e.to_string())
                });
            }
            Request::Undo {
                workload,
                to_revision,
                reply,
            } => {
                let client = self.client.clone();
                worker.spawn_action(reply, async move {
                    let done = actions::undo(&client, &workload, to_revision).await;
                    done.map(|undone| undone.said()).map_err(|e| e.to_string())
                });
            }
            Request::FollowLogs {
                stream,
                replicas,
                start,
            } => return self.logs.follow(stream, replicas, start).await,
            Request::PreviousLogs { stream, replica } => {
                return self.logs.previous(stream, replica).await;
            }
            Request::StopLogs { stream } => {
                return self.logs.stop(stream, "stopped on request").await;
            }
            Request::Inspect { id } => {
                if let Some(pod) = self.cluster.pod(&id) {
                    let replica = self.cluster.replica_of(&pod, Utc::now());
                    let update = Update::Replica {
                        target: self.target.clone(),
                        replica,
                    };
                    return self.updates.send(update).await.is_ok();
                }
            }
        }
        true
    }

    /// Deletes a pod so that its controller replaces it; a pod no controller owns is left alone,
    /// as nothing would bring it back.
    fn restart(
        &mut self,
        worker: &mut Worker,
        id: &str,
        reply: oneshot::Sender<Result<String, String>>,
    ) {
        let Some(pod) = self.cluster.pod(id) else {
            let _ = reply.send(Err(format!("no pod with id {id} on {}", self.target)));
            return;
        };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        if convert::controller_owner(&pod.metadata).is_none() {
            let _ = reply.send(Err(format!(
                "pod {namespace}/{name} has no controller to replace it, so it is not deleted \
                 (delete it with kubectl if that is what you want)"
            )));
            return;
        }
        let client = self.client.clone();
        let uid = pod.metadata.uid.clone();
        worker.spawn_action(reply, async move {
            delete_pod(client, &namespace, &name, uid).await
        });
    }

    /// Ends the session's tasks; tells the store about log streams cut by a lost connection.
    async fn close(&mut self, outcome: &Outcome) {
        self.tasks.0.iter().for_each(JoinHandle::abort);
        let reason = match outcome {
            Outcome::Lost { error, .. } => Some(format!("connection lost: {error}")),
            Outcome::Quit => None,
        };
        self.logs.close(reason.as_deref()).await;
    }
}

/// Deletes one pod (that uid only: a pod of the same name made since is left alone).
async fn delete_pod(
    client: Client,
    namespace: &str,
    name: &str,
    uid: Option<String>,
) -> Result<String, String> {
    let api: Api<Pod> = Api::namespaced(client, namespace);
    let params = DeleteParams {
        preconditions: uid.map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(format!(
            "deleted pod {namespace}/{name}; its controller starts a new one"
        )),
        Err(e) => Err(format!(
            "cannot delete pod {namespace}/{name}: {}",
            client_cause(&e)
        )),
    }
}

/// A new image for a workload: on a Deployment, Pilothouse's rollout (it follows the controller
/// and rolls back by itself when the new revision fails); on a StatefulSet, the image alone.
async fn roll_out(
    client: Client,
    workload: crate::model::WorkloadId,
    image: String,
    record: Option<rollout::Record>,
) -> Result<String, String> {
    if workload.kind != crate::model::WorkloadKind::Deployment {
        let done = actions::set_image(&client, &workload, &image).await;
        return done.map_err(|e| e.to_string());
    }
    let job = rollout::Job {
        client,
        workload,
        image: image.clone(),
        options: rollout::Options::default(),
        record,
    };
    // Progress goes to the state file; an abort comes through its control file.
    let (progress, _) = mpsc::unbounded_channel();
    let (_abort, aborted) = tokio::sync::watch::channel(false);
    match rollout::run(&job, &progress, aborted).await {
        rollout::Outcome::Complete { revision } => {
            Ok(format!("rolled out {image} as revision {revision}"))
        }
        rollout::Outcome::Unchanged => Ok(format!("already runs {image}; nothing to do")),
        rollout::Outcome::RolledBack { from, to, reason } => Err(format!(
            "revision {from} ({image}) failed and was rolled back to revision {to}: {reason}"
        )),
        rollout::Outcome::Failed { reason } => Err(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_client_certificate_is_reported_by_its_file_not_as_a_failed_connection() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("gone.pem");
        let kubeconfig = dir.path().join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    \
             server: http://127.0.0.1:9\ncontexts:\n- name: certless\n  context:\n    \
             cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    client-certificate: {}\n    \
             client-key-data: a2V5\n",
            cert.display()
        );
        std::fs::write(&kubeconfig, text).unwrap();
        let target = resolve(&Selection {
            kubeconfig: Some(kubeconfig),
            context: Some("certless".to_string()),
            namespace: None,
        })
        .unwrap();
        let (updates_tx, mut updates) = mpsc::channel(16);
        let (requests_tx, requests) = mpsc::channel(1);
        let worker = tokio::spawn(run(target, updates_tx, requests));

        let error = loop {
            let update = tokio::time::timeout(Duration::from_secs(5), updates.recv())
                .await
                .expect("a connection state within 5 s")
                .expect("the worker runs");
            if let Update::Connection {
                state: ConnState::Disconnected { error, .. },
                ..
            } = update
            {
                break error;
            }
        };
        assert_eq!(
            error,
            format!(
                "cannot make a client for http://127.0.0.1:9/: its user's client-certificate {} \
                 cannot be read: No such file or directory (os error 2) (fix the kubeconfig's \
                 user or create the file)",
                cert.display()
            )
        );
        drop(requests_tx);
        worker.await.unwrap();
    }
}
