//! Starting what the console and the daemon share: a worker per Docker target and Kubernetes
//! context, the engine's store, and the engine's settings from config.toml and the command line.
//!
//! Not for the front ends' own parts (the terminal, the HTTP listener).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::engine::Settings;
use super::lock::HostLocks;
use super::observe::Observed;
use crate::config::{Config, DockerTarget};
use crate::lb::haproxy::Haproxy;
use crate::model::PlatformKind;
use crate::paths::Paths;
use crate::platform::docker::connect::resolve_endpoint;
use crate::platform::kubernetes::config as kube_config;
use crate::platform::{self, Request, Update};
use crate::store::Store;

/// Capacity of the channel from workers to the console; a full channel slows the workers.
pub const UPDATE_QUEUE: usize = 1024;
/// Capacity of each worker's request channel.
pub const REQUEST_QUEUE: usize = 64;

/// The running workers.
pub struct Platforms {
    /// Target names, in config order (Docker hosts, then Kubernetes contexts).
    pub names: Vec<String>,
    /// Which platform speaks to each target, by target name.
    pub kinds: HashMap<String, PlatformKind>,
    /// Each worker's request channel, by target name.
    pub workers: HashMap<String, mpsc::Sender<Request>>,
    /// Each target's endpoint as an address (`unix:///var/run/docker.sock`), by target name:
    /// the host lock is taken per endpoint, so two names for one engine share a lock.
    pub endpoints: HashMap<String, String>,
    /// Every worker's updates.
    pub updates: mpsc::Receiver<Update>,
}

/// The Docker targets to use: `--docker-host` alone when given, else config.toml's.
pub fn docker_targets(docker_host: Option<&str>, config: &Config) -> Vec<DockerTarget> {
    match docker_host {
        Some(host) => vec![DockerTarget {
            name: crate::config::LOCAL_TARGET.to_string(),
            host: Some(host.to_string()),
        }],
        None => config.docker_targets(),
    }
}

/// The HAProxy of `[loadbalancer]` that scaling keeps in step, if one is named; a socket that
/// does not parse is refused here, before anything starts.
pub fn load_balancer(config: &Config) -> Result<Option<Haproxy>, String> {
    config
        .loadbalancer
        .haproxy_socket
        .as_deref()
        .map(|socket| {
            Haproxy::new(socket).map_err(|e| format!("[loadbalancer] haproxy_socket: {e}"))
        })
        .transpose()
}

/// The Kubernetes contexts to open: those `--kubeconfig` / `--context` / `--namespace` choose,
/// else those of config.toml's `[kubernetes]`, else the kubeconfig's current context when there
/// is a kubeconfig at all (none is not an error: the console then shows Docker alone).
pub fn kube_targets(
    selection: kube_config::Selection,
    config: &Config,
) -> Result<Vec<kube_config::Target>, String> {
    let chosen = selection.kubeconfig.is_some() || selection.context.is_some();
    if config.kubernetes.disabled && !chosen {
        return Ok(Vec::new());
    }
    let selection = kube_config::Selection {
        kubeconfig: selection
            .kubeconfig
            .or_else(|| config.kubernetes.kubeconfig.clone()),
        namespace: selection
            .namespace
            .or_else(|| config.kubernetes.namespace.clone()),
        context: selection.context,
    };
    let contexts = match &selection.context {
        Some(context) => vec![context.clone()],
        None => config.kubernetes.contexts.clone(),
    };
    let found = if contexts.iter().any(|c| c == "*") {
        kube_config::resolve_all(&kube_config::Selection {
            context: None,
            ..selection.clone()
        })
    } else if contexts.is_empty() {
        kube_config::resolve(&selection).map(|target| vec![target])
    } else {
        contexts
            .iter()
            .map(|context| {
                kube_config::resolve(&kube_config::Selection {
                    context: Some(context.clone()),
                    ..selection.clone()
                })
            })
            .collect()
    };
    match found {
        Ok(targets) => Ok(targets),
        Err(kube_config::ConfigError::NotFound { .. }) if !chosen => Ok(Vec::new()),
        Err(e) => Err(one_line(&error_chain(&e))),
    }
}

/// Start a worker per Docker target, each keeping `lb` in step when it scales. Must be called
/// inside a tokio runtime.
pub fn start_docker(targets: Vec<DockerTarget>, lb: Option<Haproxy>) -> Platforms {
    start(targets, Vec::new(), lb, None)
}

/// Start a worker per Docker target and per Kubernetes context, the latter recording the
/// rollouts they run under `state_dir`. Must be called inside a tokio runtime.
pub fn start(
    targets: Vec<DockerTarget>,
    kube: Vec<kube_config::Target>,
    lb: Option<Haproxy>,
    state_dir: Option<PathBuf>,
) -> Platforms {
    let (updates_tx, updates) = mpsc::channel(UPDATE_QUEUE);
    let docker_host_env = std::env::var("DOCKER_HOST").ok();
    let mut platforms = Platforms {
        names: Vec::new(),
        kinds: HashMap::new(),
        workers: HashMap::new(),
        endpoints: HashMap::new(),
        updates,
    };
    for target in targets {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        // A host that does not parse gets its own name as the lock key; its worker reports the
        // error and never connects, so no rule acts on it.
        let endpoint = resolve_endpoint(target.host.as_deref(), docker_host_env.as_deref())
            .map_or_else(
                |_| format!("unparsed:{}", target.name),
                |e| e.address().to_string(),
            );
        tokio::spawn(platform::docker::run_with(
            target.name.clone(),
            target.host.clone(),
            lb.clone(),
            updates_tx.clone(),
            rx,
        ));
        platforms.names.push(target.name.clone());
        platforms
            .kinds
            .insert(target.name.clone(), PlatformKind::Docker);
        platforms.endpoints.insert(target.name.clone(), endpoint);
        platforms.workers.insert(target.name, tx);
    }
    for target in kube {
        if platforms.kinds.contains_key(&target.name) {
            tracing::warn!(
                target = %target.name,
                "a Kubernetes context has the name of a Docker target; the context is left out"
            );
            continue;
        }
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        let name = target.name.clone();
        // Two names of one cluster share a lock, as two addresses of one engine do.
        let endpoint = format!("k8s:{}", target.config.cluster_url);
        tokio::spawn(platform::kubernetes::run_recording(
            target,
            state_dir.clone(),
            updates_tx.clone(),
            rx,
        ));
        platforms.names.push(name.clone());
        platforms
            .kinds
            .insert(name.clone(), PlatformKind::Kubernetes);
        platforms.endpoints.insert(name.clone(), endpoint);
        platforms.workers.insert(name, tx);
    }
    platforms
}

impl Platforms {
    /// Register every target in `store`, so the header shows each one connecting.
    pub fn register(&self, store: &mut Store) {
        for name in &self.names {
            let kind = self.kinds.get(name).copied();
            store.add_target(name, kind.unwrap_or(PlatformKind::Docker));
        }
    }
}

/// A store for the engine knowing the targets of `platforms`.
pub fn observed_store(platforms: &Platforms, stats_history: usize) -> Observed {
    let mut store = Store::new(stats_history);
    platforms.register(&mut store);
    Arc::new(Mutex::new(store))
}

/// The engine's settings: rules from `rules_dir`, the default Prometheus from the command line
/// or config.toml, the lock directory from config.toml or the state directory.
pub fn settings(
    config: &Config,
    paths: &Paths,
    rules_dir: PathBuf,
    prometheus: Option<String>,
    endpoints: HashMap<String, String>,
    role: &str,
) -> Settings {
    let lock_dir = config
        .autoscaler
        .lock_dir
        .clone()
        .unwrap_or_else(|| paths.state_dir.join("locks"));
    Settings {
        rules_dir,
        default_prometheus: prometheus.or_else(|| config.autoscaler.prometheus.clone()),
        hosts: endpoints,
        locks: HostLocks::new(lock_dir, super::lock::describe_holder(role)),
        query_timeout: QUERY_TIMEOUT,
        state_dir: Some(paths.state_dir.clone()),
        leader: None,
    }
}

/// How long one Prometheus query of a cycle may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// An error and its sources, each where it adds to what came before.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A parser's message, which may quote the file over several lines, on one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
