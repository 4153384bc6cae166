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
use crate::platform::kubernetes::prom::PodQueries;
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
    /// Starts more workers on the same channel, as these were started.
    pub spawner: Spawner,
}

/// Starts one worker at a time: on the channel every worker sends its updates on, keeping the
/// load balancer in step and recording Kubernetes rollouts under the state directory.
#[derive(Clone)]
pub struct Spawner {
    updates: mpsc::Sender<Update>,
    lb: Option<Haproxy>,
    state_dir: Option<PathBuf>,
    /// `DOCKER_HOST`, read once, for the endpoints of Docker targets that name no host.
    docker_host_env: Option<String>,
}

/// One worker just started, and what the rest of the program reaches it by.
#[derive(Debug, Clone)]
pub struct Started {
    pub name: String,
    pub kind: PlatformKind,
    /// The worker's request channel.
    pub worker: mpsc::Sender<Request>,
    /// Where the target is, as the host lock names it (see [`Platforms::endpoints`]).
    pub endpoint: String,
}

impl Spawner {
    /// Start the worker of a Docker target.
    fn docker(&self, target: DockerTarget) -> Started {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        // A host that does not parse gets its own name as the lock key; its worker reports the
        // error and never connects, so no rule acts on it.
        let endpoint = resolve_endpoint(target.host.as_deref(), self.docker_host_env.as_deref())
            .map_or_else(
                |_| format!("unparsed:{}", target.name),
                |e| e.address().to_string(),
            );
        tokio::spawn(platform::docker::run_with(
            target.name.clone(),
            target.host,
            self.lb.clone(),
            self.updates.clone(),
            rx,
        ));
        Started {
            name: target.name,
            kind: PlatformKind::Docker,
            worker: tx,
            endpoint,
        }
    }

    /// Start the worker of a Kubernetes context.
    pub fn kubernetes(&self, target: kube_config::Target) -> Started {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        let name = target.name.clone();
        // Two names of one cluster share a lock, as two addresses of one engine do.
        let endpoint = format!("k8s:{}", target.config.cluster_url);
        tokio::spawn(platform::kubernetes::run_recording(
            target,
            self.state_dir.clone(),
            self.updates.clone(),
            rx,
        ));
        Started {
            name,
            kind: PlatformKind::Kubernetes,
            worker: tx,
            endpoint,
        }
    }
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

/// The Docker target [`docker_targets`] adds though nothing named it: `local` when neither
/// `--docker-host` nor a `[[docker]]` entry gives a host.
pub fn implicit_docker_target(docker_host: Option<&str>, config: &Config) -> Option<&'static str> {
    match docker_host {
        Some(_) => None,
        None => config.implicit_docker_target(),
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

/// Where the console reads Kubernetes contexts from: the command line's kubeconfig, context and
/// namespace, each else config.toml's `[kubernetes]`; `None` when config.toml turns Kubernetes
/// off and the command line chose nothing.
pub fn kube_source(
    selection: kube_config::Selection,
    config: &Config,
) -> Option<kube_config::Selection> {
    let chosen = selection.kubeconfig.is_some() || selection.context.is_some();
    if config.kubernetes.disabled && !chosen {
        return None;
    }
    Some(kube_config::Selection {
        kubeconfig: selection
            .kubeconfig
            .or_else(|| config.kubernetes.kubeconfig.clone()),
        namespace: selection
            .namespace
            .or_else(|| config.kubernetes.namespace.clone()),
        context: selection.context,
    })
}

/// The Kubernetes contexts to open: those `--kubeconfig` / `--context` / `--namespace` choose,
/// else those of config.toml's `[kubernetes]`, else the kubeconfig's current context when there
/// is a kubeconfig at all (none is not an error: the console then shows Docker alone).
pub fn kube_targets(
    selection: kube_config::Selection,
    config: &Config,
) -> Result<Vec<kube_config::Target>, String> {
    let chosen = selection.kubeconfig.is_some() || selection.context.is_some();
    let Some(selection) = kube_source(selection, config) else {
        return Ok(Vec::new());
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
    let pod_usage = PodQueries::configured(&config.kubernetes)?;
    match found {
        Ok(targets) => Ok(targets
            .into_iter()
            .map(|target| kube_config::Target {
                prometheus: pod_usage.clone(),
                ..target
            })
            .collect()),
        Err(kube_config::ConfigError::NotFound { .. }) if !chosen => Ok(Vec::new()),
        Err(e) => Err(crate::text::one_line(&error_chain(&e))),
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
    let mut platforms = Platforms {
        names: Vec::new(),
        kinds: HashMap::new(),
        workers: HashMap::new(),
        endpoints: HashMap::new(),
        updates,
        spawner: Spawner {
            updates: updates_tx,
            lb,
            state_dir,
            docker_host_env: std::env::var("DOCKER_HOST").ok(),
        },
    };
    for target in targets {
        let started = platforms.spawner.docker(target);
        platforms.add(started);
    }
    for target in kube {
        if platforms.kinds.contains_key(&target.name) {
            tracing::warn!(
                target = %target.name,
                "a Kubernetes context has the name of a Docker target; the context is left out"
            );
            continue;
        }
        let started = platforms.spawner.kubernetes(target);
        platforms.add(started);
    }
    platforms
}

impl Platforms {
    fn add(&mut self, started: Started) {
        self.names.push(started.name.clone());
        self.kinds.insert(started.name.clone(), started.kind);
        self.endpoints
            .insert(started.name.clone(), started.endpoint);
        self.workers.insert(started.name, started.worker);
    }

    /// Register every target in `store`, so the header shows each one connecting.
    pub fn register(&self, store: &mut Store) {
        for name in &self.names {
            let kind = self.kinds.get(name).copied();
            store.add_target(name, kind.unwrap_or(PlatformKind::Docker));
        }
    }
}

/// Opens, while the console runs, a context of the kubeconfig it started with: resolved from the
/// same kubeconfig with the same namespace, its worker started on the same channel.
pub struct ContextOpener {
    /// From [`kube_source`], without its context; `None` when Kubernetes is off.
    source: Option<kube_config::Selection>,
    spawner: Spawner,
    /// The engine's store, which learns of the target before its worker's first update.
    observed: Observed,
    /// Where an opened context reads pod CPU and memory, as [`kube_targets`] sets it for those
    /// opened at startup; `None` reads metrics-server.
    pod_usage: Option<PodQueries>,
}

/// How many context names an error lists before it says how many more there are.
const NAMES_LISTED: usize = 8;

impl ContextOpener {
    /// An opener reading `source` (see [`kube_source`]; the context it names is ignored).
    pub fn new(
        source: Option<kube_config::Selection>,
        spawner: Spawner,
        observed: Observed,
    ) -> Self {
        let source = source.map(|selection| kube_config::Selection {
            context: None,
            ..selection
        });
        ContextOpener {
            source,
            spawner,
            observed,
            pod_usage: None,
        }
    }

    /// The same opener, its contexts reading pod usage from `pod_usage` (see
    /// [`PodQueries::configured`]).
    pub fn with_pod_usage(self, pod_usage: Option<PodQueries>) -> Self {
        ContextOpener { pod_usage, ..self }
    }

    /// The kubeconfig's contexts, in its order; none when there is no kubeconfig or it cannot be
    /// read (opening one then says why).
    pub fn contexts(&self) -> Vec<String> {
        self.source
            .as_ref()
            .and_then(|source| kube_config::contexts(source).ok())
            .unwrap_or_default()
    }

    /// Resolve context `name` as startup does, make it known to the engine's store and start its
    /// worker. The error says what is wrong and where, and nothing has started.
    pub fn open(&self, name: &str) -> Result<Started, String> {
        let Some(source) = &self.source else {
            return Err(format!(
                "no target named {name:?} is open, and this console opens no Kubernetes context: \
                 [kubernetes] disabled = true in config.toml (--kubeconfig or --context turns it \
                 on)"
            ));
        };
        let selection = kube_config::Selection {
            context: Some(name.to_string()),
            ..source.clone()
        };
        let target = kube_config::resolve(&selection).map_err(|e| self.explain(name, &e))?;
        let target = kube_config::Target {
            prometheus: self.pod_usage.clone(),
            ..target
        };
        target
            .readable_credentials()
            .map_err(|e| format!("cannot open context {name:?}: {e}"))?;
        lock(&self.observed).add_target(&target.name, PlatformKind::Kubernetes);
        let started = self.spawner.kubernetes(target);
        tracing::info!(context = %started.name, endpoint = %started.endpoint, "context opened");
        Ok(started)
    }

    fn explain(&self, name: &str, error: &kube_config::ConfigError) -> String {
        if let kube_config::ConfigError::MissingContext { files, .. } = error {
            return format!(
                "no context named {name:?} is open or in {files}; its contexts: {}",
                short_list(&self.contexts())
            );
        }
        format!(
            "cannot open context {name:?}: {}",
            crate::text::one_line(&error_chain(error))
        )
    }
}

/// Quoted names, the first few of them, and how many more there are.
fn short_list(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    let mut out = names
        .iter()
        .take(NAMES_LISTED)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_LISTED {
        out.push_str(&format!(" and {} more", names.len() - NAMES_LISTED));
    }
    out
}

fn lock(observed: &Observed) -> std::sync::MutexGuard<'_, Store> {
    observed
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A kubeconfig of `contexts`, each on one cluster at a loopback port nothing answers on.
    fn kubeconfig(dir: &std::path::Path, contexts: &[&str], users: &str) -> PathBuf {
        let mut text = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    \
                        server: http://127.0.0.1:9\ncontexts:\n"
            .to_string();
        for name in contexts {
            text.push_str(&format!(
                "- name: {name:?}\n  context:\n    cluster: c\n    user: u\n    namespace: shop\n"
            ));
        }
        text.push_str(users);
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).unwrap();
        path
    }

    const USER: &str = "users:\n- name: u\n  user: {}\n";

    fn opener(kubeconfig: Option<PathBuf>) -> (ContextOpener, mpsc::Receiver<Update>, Observed) {
        let (updates, received) = mpsc::channel(16);
        let spawner = Spawner {
            updates,
            lb: None,
            state_dir: None,
            docker_host_env: None,
        };
        let observed: Observed = Arc::new(Mutex::new(Store::new(4)));
        let source = kubeconfig.map(|path| kube_config::Selection {
            kubeconfig: Some(path),
            context: Some("ignored".to_string()),
            namespace: None,
        });
        let opener = ContextOpener::new(source, spawner, Arc::clone(&observed));
        (opener, received, observed)
    }

    #[tokio::test]
    async fn an_opened_context_is_in_the_engines_store_before_its_worker_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = kubeconfig(dir.path(), &["prod", "staging eu"], USER);
        let (opener, mut updates, observed) = opener(Some(path));
        assert_eq!(opener.contexts(), ["prod", "staging eu"]);

        let started = opener.open("staging eu").unwrap();

        assert_eq!(started.name, "staging eu");
        assert_eq!(started.kind, PlatformKind::Kubernetes);
        assert_eq!(started.endpoint, "k8s:http://127.0.0.1:9/");
        let kind = lock(&observed).target("staging eu").map(|t| t.platform);
        assert_eq!(kind, Some(PlatformKind::Kubernetes));
        let first = tokio::time::timeout(Duration::from_secs(10), updates.recv()).await;
        match first {
            Ok(Some(Update::Connection { target, .. })) => assert_eq!(target, "staging eu"),
            other => panic!("expected the worker's connection state, got {other:?}"),
        }
    }

    #[test]
    fn a_context_not_in_the_kubeconfig_is_refused_listing_a_few_of_those_there() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let path = kubeconfig(dir.path(), &refs, USER);
        let (opener, _, observed) = opener(Some(path.clone()));

        let err = opener.open("nope").unwrap_err();

        assert_eq!(
            err,
            format!(
                "no context named \"nope\" is open or in {}; its contexts: \"c0\", \"c1\", \
                 \"c2\", \"c3\", \"c4\", \"c5\", \"c6\", \"c7\" and 2 more",
                path.display()
            )
        );
        assert!(lock(&observed).targets().is_empty(), "nothing registered");
    }

    #[test]
    fn missing_credentials_or_a_kubeconfig_that_does_not_parse_are_refused_saying_what_and_where() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("gone.pem");
        let users = format!(
            "users:\n- name: u\n  user:\n    client-certificate: {}\n    \
             client-key-data: a2V5\n",
            cert.display()
        );
        let path = kubeconfig(dir.path(), &["prod"], &users);
        let (opener, _, observed) = opener(Some(path.clone()));
        let err = opener.open("prod").unwrap_err();
        assert!(
            err.starts_with(&format!(
                "cannot open context \"prod\": its user's client-certificate {} cannot be read: ",
                cert.display()
            )),
            "{err}"
        );

        std::fs::write(&path, "apiVersion: v1\nkind: Config\nclusters: [oops\n").unwrap();
        let err = opener.open("prod").unwrap_err();
        assert!(
            err.starts_with(&format!(
                "cannot open context \"prod\": cannot read kubeconfig {}",
                path.display()
            )) && !err.contains('\n'),
            "{err}"
        );

        std::fs::remove_file(&path).unwrap();
        let err = opener.open("prod").unwrap_err();
        assert!(
            err.contains(&format!("kubeconfig {} does not exist", path.display())),
            "{err}"
        );
        assert!(lock(&observed).targets().is_empty(), "nothing registered");
    }

    #[test]
    fn local_is_implicit_only_when_no_docker_host_was_given_anywhere() {
        let mut config = Config::default();
        assert_eq!(implicit_docker_target(None, &config), Some("local"));
        assert_eq!(
            implicit_docker_target(Some("unix:///nonexistent/socket"), &config),
            None
        );
        config.docker = vec![DockerTarget {
            name: "local".to_string(),
            host: None,
        }];
        assert_eq!(implicit_docker_target(None, &config), None);
    }

    #[test]
    fn with_kubernetes_off_no_context_opens_and_the_error_says_why() {
        let (opener, _, _) = opener(None);
        assert!(opener.contexts().is_empty());
        let err = opener.open("prod").unwrap_err();
        assert!(err.contains("[kubernetes] disabled = true"), "{err}");
    }

    #[test]
    fn the_kubeconfig_and_namespace_come_from_the_command_line_else_config_toml() {
        let mut config = Config::default();
        config.kubernetes.kubeconfig = Some(PathBuf::from("/etc/kube"));
        config.kubernetes.namespace = Some("shop".to_string());
        let none = kube_config::Selection::default();
        let from_config = kube_source(none.clone(), &config).unwrap();
        assert_eq!(from_config.kubeconfig, Some(PathBuf::from("/etc/kube")));
        assert_eq!(from_config.namespace.as_deref(), Some("shop"));

        let chosen = kube_config::Selection {
            kubeconfig: Some(PathBuf::from("/mine")),
            context: Some("prod".to_string()),
            namespace: Some("lab".to_string()),
        };
        assert_eq!(kube_source(chosen.clone(), &config), Some(chosen.clone()));

        config.kubernetes.disabled = true;
        assert_eq!(kube_source(none, &config), None);
        assert_eq!(kube_source(chosen.clone(), &config), Some(chosen));
    }
}
