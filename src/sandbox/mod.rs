//! The sandbox cluster: a Kubernetes API server of Pilothouse's own, on a loopback port.
//!
//! It speaks real Kubernetes JSON over plain HTTP, so the `kube` crate works against it
//! unchanged, and runs controllers that turn Deployments, StatefulSets and ReplicaSets into
//! pods. The Kubernetes platform's tests and `pilothouse demo` run on it. It is not a cluster:
//! nothing runs in its pods, and it keeps everything in memory.

pub mod api;
pub mod controllers;
pub mod demo;
pub mod faults;
pub mod logs;
pub mod patch;
pub mod promql;
pub mod resources;
pub mod selector;
pub mod status;
pub mod store;
pub mod traffic;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use faults::{Fault, Faults};

use controllers::events::Recorder;
use controllers::pods::{PodSims, Timing};
use status::ApiError;
use store::Store;

/// What the load simulation and the metrics endpoints read of the cluster.
pub trait ClusterView: Send + Sync {
    /// Every Deployment and StatefulSet, with its ready pods.
    fn workloads(&self) -> Vec<WorkloadView>;
}

/// One workload as the load simulation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadView {
    pub namespace: String,
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    pub name: String,
    /// The workload's `sandbox.pilothouse.dev/traffic` annotation, if any (the traffic
    /// module parses it).
    pub traffic: Option<String>,
    /// Names of its pods that are Ready, sorted.
    pub ready_pods: Vec<String>,
    /// The CPU request of one pod's containers, in millicores (0 when none is set).
    pub cpu_request_millicores: u64,
}

/// How a sandbox cluster starts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the API server listens; a loopback address (the default is 127.0.0.1:0).
    pub listen: SocketAddr,
    /// How many times faster than the wall clock the simulated traffic runs.
    pub speed: f64,
    /// The simulated time of day (seconds after midnight) at start; `None` is the local time.
    pub start_of_day: Option<f64>,
    /// Objects created at start, in order (namespaces first).
    pub objects: Vec<Value>,
    /// How long a new pod takes to become Ready.
    pub pod_start: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            speed: 1.0,
            start_of_day: None,
            objects: Vec::new(),
            pod_start: Duration::from_secs(2),
        }
    }
}

/// The namespaces every cluster starts with.
const BASE_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The state the API server and the controllers share.
pub struct Cluster {
    pub(crate) store: Arc<Store>,
    pub(crate) faults: Faults,
    pub(crate) pods: PodSims,
    pub(crate) events: Recorder,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    pub(crate) addr: SocketAddr,
}

impl Cluster {
    fn new(addr: SocketAddr) -> Cluster {
        let store = Arc::new(Store::new(store::HISTORY_LIMIT));
        Cluster {
            faults: Faults::new(store.clone()),
            store,
            pods: PodSims::default(),
            events: Recorder::default(),
            shutdown: tokio::sync::watch::channel(false).0,
            addr,
        }
    }

    /// Deletes an object; deleting a namespace deletes everything in it.
    pub(crate) fn delete(
        &self,
        resource: &'static resources::ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let deleted = self.store.delete(resource, namespace, name)?;
        if resource.plural == resources::NAMESPACES.plural {
            for kind in resources::ALL.iter().filter(|r| r.namespaced) {
                let names: Vec<String> = self.store.read(|inner| {
                    inner
                        .in_namespace(kind, name)
                        .map(|o| store::name_of(o).to_string())
                        .collect()
                });
                for object in names {
                    let _ = self.store.delete(kind, name, &object);
                }
            }
        }
        Ok(deleted)
    }

    /// Creates one of the start-up objects, in its own namespace or `default`.
    fn create_seed(&self, object: &Value) -> Result<(), String> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = store::name_of(object);
        let resource = resources::by_kind(api_version, kind).ok_or_else(|| {
            format!("object {name:?} is a {api_version} {kind}, which the sandbox cluster does not serve")
        })?;
        let namespace = match store::namespace_of(object) {
            "" if resource.namespaced => "default",
            namespace => namespace,
        };
        self.store
            .create(resource, namespace, object.clone(), "pilothouse")
            .map(|_| ())
            .map_err(|e| format!("cannot create {kind} {namespace}/{name}: {}", e.message))
    }
}

impl ClusterView for Cluster {
    fn workloads(&self) -> Vec<WorkloadView> {
        self.store.read(|inner| {
            let mut set_owner: HashMap<&str, &str> = HashMap::new();
            for set in inner.objects(&resources::REPLICASETS) {
                if let Some(("Deployment", owner)) = controllers::controller_of(set) {
                    set_owner.insert(store::uid_of(set), owner);
                }
            }
            let mut ready: HashMap<&str, Vec<String>> = HashMap::new();
            for pod in inner.objects(&resources::PODS) {
                if !controllers::pods::is_pod_ready(pod) {
                    continue;
                }
                let workload = match controllers::controller_of(pod) {
                    Some(("ReplicaSet", set)) => set_owner.get(set).copied(),
                    Some(("StatefulSet", set)) => Some(set),
                    _ => None,
                };
                if let Some(workload) = workload {
                    ready
                        .entry(workload)
                        .or_default()
                        .push(store::name_of(pod).to_string());
                }
            }
            let mut views = Vec::new();
            for resource in [&resources::DEPLOYMENTS, &resources::STATEFULSETS] {
                for workload in inner.objects(resource) {
                    let mut ready_pods = ready.remove(store::uid_of(workload)).unwrap_or_default();
                    ready_pods.sort();
                    views.push(WorkloadView {
                        namespace: store::namespace_of(workload).to_string(),
                        kind: resource.kind.to_string(),
                        name: store::name_of(workload).to_string(),
                        traffic: workload
                            .pointer("/metadata/annotations/sandbox.pilothouse.dev~1traffic")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        ready_pods,
                        cpu_request_millicores: cpu_request(workload),
                    });
                }
            }
            views
        })
    }
}

/// The summed CPU request of a workload template's containers, in millicores.
fn cpu_request(workload: &Value) -> u64 {
    let containers = workload
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array);
    containers
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/resources/requests/cpu"))
        .map(|cpu| match cpu {
            Value::String(text) => millicores(text),
            Value::Number(n) => n.as_f64().map(|c| (c * 1000.0).round() as u64).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// `250m` → 250, `0.5` → 500, `2` → 2000; anything else is 0.
fn millicores(text: &str) -> u64 {
    let text = text.trim();
    match text.strip_suffix('m') {
        Some(milli) => milli.parse().unwrap_or(0),
        None => text
            .parse::<f64>()
            .map(|c| (c * 1000.0).round() as u64)
            .unwrap_or(0),
    }
}

/// A running sandbox cluster; stops when shut down or dropped.
pub struct Sandbox {
    cluster: Arc<Cluster>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sandbox {
    /// Starts the API server and the controllers on the current tokio runtime.
    pub async fn start(options: Options) -> std::io::Result<Sandbox> {
        if !options.listen.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the sandbox cluster listens on loopback only, not {}",
                    options.listen
                ),
            ));
        }
        let listener = tokio::net::TcpListener::bind(options.listen).await?;
        let cluster = Arc::new(Cluster::new(listener.local_addr()?));
        seed(&cluster, &options.objects)?;

        let clock = match options.start_of_day {
            Some(start) => traffic::Clock::starting_at(start, options.speed),
            None => traffic::Clock::new(options.speed),
        };
        let clock = clock.map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--speed: {e}"))
        })?;
        let view: Arc<dyn ClusterView> = cluster.clone();
        let metrics = promql::router(view, clock).route_layer(
            axum::middleware::from_fn_with_state(cluster.clone(), faults::apply),
        );
        let router = api::router(cluster.clone()).merge(metrics);
        let mut shutdown = cluster.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = shutdown.changed().await;
            };
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the sandbox cluster's API server stopped");
            }
        });

        let timing = Timing {
            pod_start: options.pod_start,
        };
        let controllers = tokio::spawn(controllers::run(
            cluster.clone(),
            timing,
            cluster.shutdown.subscribe(),
        ));
        Ok(Sandbox {
            cluster,
            tasks: vec![server, controllers],
            thread: None,
        })
    }

    /// Starts it on a thread with a tokio runtime of its own.
    pub fn spawn(options: Options) -> std::io::Result<Sandbox> {
        let (started, receive) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sandbox-cluster".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("sandbox-cluster")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Sandbox::start(options).await {
                        Ok(sandbox) => {
                            let mut stop = sandbox.cluster.shutdown.subscribe();
                            let _ = started.send(Ok(sandbox.cluster.clone()));
                            let _ = stop.wait_for(|stopped| *stopped).await;
                            drop(sandbox);
                        }
                        Err(error) => {
                            let _ = started.send(Err(error));
                        }
                    }
                });
            })?;
        let cluster = receive.recv().map_err(|_| {
            std::io::Error::other("the sandbox cluster's thread ended before it started")
        })??;
        Ok(Sandbox {
            cluster,
            tasks: Vec::new(),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.cluster.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.cluster.addr)
    }

    /// A kubeconfig (YAML text) with one context `context` for this server, user `sandbox`.
    pub fn kubeconfig(&self, context: &str, namespace: Option<&str>) -> String {
        let quote = |text: &str| serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
        let namespace = namespace
            .map(|ns| format!("    namespace: {}\n", quote(ns)))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {context}\n  cluster:\n    server: {url}\n\
             contexts:\n- name: {context}\n  context:\n    cluster: {context}\n    user: sandbox\n\
             {namespace}current-context: {context}\nusers:\n- name: sandbox\n  user: {{}}\n\
             preferences: {{}}\n",
            context = quote(context),
            url = quote(&self.url()),
        )
    }

    pub fn faults(&self) -> &Faults {
        &self.cluster.faults
    }

    /// What the load simulation and the metrics endpoints read of this cluster.
    pub fn view(&self) -> Arc<dyn ClusterView> {
        self.cluster.clone()
    }

    /// Stops the API server and the controllers.
    pub fn shutdown(self) {}
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.cluster.shutdown.send_replace(true);
        for task in &self.tasks {
            task.abort();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Creates the base namespaces, then the given objects in order.
fn seed(cluster: &Cluster, objects: &[Value]) -> std::io::Result<()> {
    for name in BASE_NAMESPACES {
        let namespace =
            serde_json::json!({"metadata": {"name": name}, "status": {"phase": "Active"}});
        let created = cluster
            .store
            .create(&resources::NAMESPACES, "", namespace, "pilothouse");
        created.map_err(|e| std::io::Error::other(e.message))?;
    }
    for object in objects {
        cluster
            .create_seed(object)
            .map_err(|message| std::io::Error::new(std::io::ErrorKind::InvalidData, message))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_requests_read_millicores_and_cores() {
        assert_eq!(millicores("250m"), 250);
        assert_eq!(millicores("0.5"), 500);
        assert_eq!(millicores("2"), 2000);
        assert_eq!(millicores("lots"), 0);
    }
}
