//! Starting what the console and the daemon share: a worker per Docker target, the engine's
//! store, and the engine's settings from config.toml and the command line.
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
use crate::platform::{self, Request, Update};
use crate::store::Store;

/// Capacity of the channel from workers to the console; a full channel slows the workers.
pub const UPDATE_QUEUE: usize = 1024;
/// Capacity of each worker's request channel.
pub const REQUEST_QUEUE: usize = 64;

/// The running workers.
pub struct Platforms {
    /// Target names, in config order.
    pub names: Vec<String>,
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

/// Start a worker per target, each keeping `lb` in step when it scales. Must be called inside
/// a tokio runtime.
pub fn start_docker(targets: Vec<DockerTarget>, lb: Option<Haproxy>) -> Platforms {
    let (updates_tx, updates) = mpsc::channel(UPDATE_QUEUE);
    let docker_host_env = std::env::var("DOCKER_HOST").ok();
    let mut platforms = Platforms {
        names: Vec::new(),
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
        platforms.endpoints.insert(target.name.clone(), endpoint);
        platforms.workers.insert(target.name, tx);
    }
    platforms
}

/// A store for the engine knowing the targets in `names`.
pub fn observed_store(names: &[String], stats_history: usize) -> Observed {
    let mut store = Store::new(stats_history);
    for name in names {
        store.add_target(name, PlatformKind::Docker);
    }
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
    }
}

/// How long one Prometheus query of a cycle may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
