//! `pilothouse --daemon`: the steps from the command line to a running autoscaler with no
//! terminal, and the way back out on a signal.
//!
//! Not for the autoscaler's logic (see [`crate::autoscaler`]) or for HTTP details
//! (see [`super::http`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use super::exposition::{self, Check, Health};
use super::http::{self, Handler};
use super::leader::{self, LeaseName};
use crate::actuator::{Actuator, AuditLog};
use crate::autoscaler::observe::{self, Observed};
use crate::autoscaler::{self, Command, EngineHandle, Status, setup};
use crate::config::Config;
use crate::model::ConnState;
use crate::paths::Paths;
use crate::platform::kubernetes::config as kube_config;
use crate::rules::{MetricSource, RuleTarget};

/// How long SIGTERM waits for the cycles in flight before the daemon exits regardless.
pub const STOP_GRACE: Duration = Duration::from_millis(1200);
/// How long SIGTERM then waits for actions in flight; what still runs is audited as
/// interrupted.
const ACTION_GRACE: Duration = Duration::from_millis(300);
/// How long SIGTERM then waits for the HTTP listener's open connections.
const HTTP_GRACE: Duration = Duration::from_millis(200);

// The daemon promises to exit within 2 s of SIGTERM. The three waits run one after the other,
// and `main` then gives the runtime up to 100 ms more to shut down, so together they must leave
// room for that and for the process to exit.
const _: () = assert!(
    STOP_GRACE.as_millis() + ACTION_GRACE.as_millis() + HTTP_GRACE.as_millis() <= 1700,
    "the stop sequence must fit in 2 s with room to exit"
);

/// What the daemon was started with.
#[derive(Debug, Clone)]
pub struct Options {
    pub rules_dir: Option<PathBuf>,
    pub docker_host: Option<String>,
    /// The Kubernetes contexts chosen on the command line (`--kubeconfig`, `--context`).
    pub kube: kube_config::Selection,
    /// Take part in this Lease's election and act only while holding it.
    pub leader_election: Option<LeaseName>,
    pub prometheus: Option<String>,
    pub listen: Option<SocketAddr>,
    pub read_only: bool,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("--rules {0}: not a directory")]
    RulesDir(PathBuf),
    #[error("{0}")]
    LoadBalancer(String),
    #[error("{0}")]
    Kubernetes(String),
}

/// Run until SIGTERM or SIGINT. Logging must already write to stdout.
pub async fn run(options: Options, config: Config, paths: Paths) -> Result<(), DaemonError> {
    // A rules directory named on the command line must exist: a typo must not run nothing.
    if let Some(dir) = options.rules_dir.as_ref().filter(|d| !d.is_dir()) {
        return Err(DaemonError::RulesDir(dir.clone()));
    }

    let lb = setup::load_balancer(&config).map_err(DaemonError::LoadBalancer)?;

    // Signals first, so a SIGTERM during start-up is not lost.
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;

    // The listener next, so a port in use stops the daemon before it touches anything.
    let listener = match options.listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };

    // Workers and the engine's store.
    let targets = setup::docker_targets(options.docker_host.as_deref(), &config);
    let kube =
        setup::kube_targets(options.kube.clone(), &config).map_err(DaemonError::Kubernetes)?;
    let election = match &options.leader_election {
        Some(lease) => {
            let target = kube.first().ok_or_else(|| {
                DaemonError::Kubernetes(format!(
                    "--leader-election {lease} needs a Kubernetes context (--context, or \
                     in-cluster configuration)"
                ))
            })?;
            let identity = leader::identity();
            tracing::info!(lease = %lease, %identity, context = %target.name, "taking part in leader election");
            Some(leader::start(target, lease, identity).map_err(DaemonError::Kubernetes)?)
        }
        None => None,
    };
    let platforms = setup::start(targets, kube, lb, Some(paths.state_dir.clone()));
    let observed = setup::observed_store(&platforms, config.ui.stats_history);
    tokio::spawn(observe::fan_out(
        platforms.updates,
        Arc::clone(&observed),
        None,
    ));

    // The actuator: outcomes are already logged by it, so they are only drained here.
    let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel();
    tokio::spawn(async move { while outcomes.recv().await.is_some() {} });
    let read_only = options.read_only || config.read_only;
    let actuator = Actuator::new(
        read_only,
        AuditLog::new(paths.audit_log()),
        platforms.workers.clone(),
        outcomes_tx,
    );

    // The rules and the engine.
    let rules_dir = options
        .rules_dir
        .clone()
        .unwrap_or_else(|| paths.rules_dir());
    let (rules, errors) = autoscaler::load_dir(&rules_dir);
    for error in &errors {
        tracing::error!(error = %error, "rule file not loaded");
    }
    if rules.is_empty() {
        tracing::warn!(dir = %rules_dir.display(), "no rules loaded; nothing will scale");
    }
    let mut settings = setup::settings(
        &config,
        &paths,
        rules_dir,
        options.prometheus.clone(),
        platforms.endpoints.clone(),
        "daemon",
    );
    settings.leader = election.as_ref().map(|e| e.standing.clone());
    let engine = autoscaler::start(
        settings,
        rules,
        errors,
        Arc::clone(&observed),
        actuator.clone(),
    );
    tracing::info!(read_only, "daemon started");

    // The HTTP listener.
    let (http_stop, http_stopped) = watch::channel(false);
    let server = listener.map(|listener| {
        let default = options
            .prometheus
            .clone()
            .or(config.autoscaler.prometheus.clone());
        let handler = handler(engine.status.clone(), Arc::clone(&observed), default);
        tokio::spawn(http::serve(listener, handler, http_stopped))
    });

    // Signals until the end.
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading rules");
                engine.send(Command::Reload);
            }
        }
    }
    stop(engine, &actuator, http_stop, server, election).await;
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, DaemonError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen { addr, source })?;
    tracing::info!(addr = %bound, "listening for /metrics and /healthz");
    Ok(listener)
}

async fn stop(
    engine: EngineHandle,
    actuator: &Actuator,
    http_stop: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
    election: Option<leader::Election>,
) {
    tracing::info!("stopping: finishing the cycles in flight");
    engine.stop(STOP_GRACE).await;
    // `settle` logs and audits each action it gives up on.
    actuator.settle(ACTION_GRACE).await;
    let _ = http_stop.send(true);
    // The Lease is given up once nothing acts any more, beside the listener's last answers.
    let release = async {
        if let Some(election) = election {
            election.stop(HTTP_GRACE).await;
        }
    };
    let listener = async {
        if let Some(server) = server {
            let _ = tokio::time::timeout(HTTP_GRACE, server).await;
        }
    };
    tokio::join!(release, listener);
    tracing::info!("daemon stopped");
}

fn handler(
    status: watch::Receiver<Arc<Status>>,
    observed: Observed,
    default_prometheus: Option<String>,
) -> Handler {
    Arc::new(move |path: &str| {
        let status = Arc::clone(&status.borrow());
        let health = health(&status, &observed, default_prometheus.as_deref());
        http::route(
            path,
            || exposition::render_metrics(&status, &health),
            || exposition::render_health(&health),
        )
    })
}

/// One check per Docker target (connected or not) and one per Prometheus server the rules
/// read (its last query answered, or what went wrong).
pub fn health(status: &Status, observed: &Observed, default_prometheus: Option<&str>) -> Health {
    let mut checks = Vec::new();
    {
        let store = observed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for target in store.targets() {
            let (ok, detail) = match &target.conn {
                ConnState::Connected { version, .. } => (true, format!("docker {version}")),
                ConnState::Connecting => (false, "connecting".to_string()),
                ConnState::Disconnected { error, .. } => (false, error.clone()),
            };
            checks.push(Check {
                name: format!("docker:{}", target.name),
                ok,
                detail,
            });
        }
    }
    for (server, result) in prometheus_servers(status, default_prometheus) {
        let (ok, detail) = match result {
            Some(Ok(())) => (true, "answering".to_string()),
            Some(Err(e)) => (false, e),
            None => (false, "not queried yet".to_string()),
        };
        checks.push(Check {
            name: format!("prometheus:{server}"),
            ok,
            detail,
        });
    }
    Health { checks }
}

/// Each Prometheus server the Docker rules name: whether it answered its last query (an
/// answer with no usable number counts as answered), `None` before it was first queried.
fn prometheus_servers(
    status: &Status,
    default_prometheus: Option<&str>,
) -> BTreeMap<String, Option<Result<(), String>>> {
    let mut servers: BTreeMap<String, Option<Result<(), String>>> = BTreeMap::new();
    for rule in &status.rules {
        if !matches!(rule.rule.target, RuleTarget::Docker { .. }) {
            continue;
        }
        for metric in &rule.rule.metrics {
            let MetricSource::Prometheus { server_address, .. } = &metric.source else {
                continue;
            };
            let server = server_address.as_deref().or(default_prometheus);
            let name = server.unwrap_or("none configured").to_string();
            let reached = match server {
                None => Some(Err(format!(
                    "metric {} of rule {} names no server (give --prometheus or serverAddress)",
                    metric.name, rule.name
                ))),
                Some(server) => status
                    .metric_servers
                    .iter()
                    .find(|(s, _)| s == server)
                    .map(|(_, reached)| reached.clone()),
            };
            servers.insert(name, reached);
        }
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaler::{RuleState, RuleStatus};
    use crate::model::PlatformKind;
    use crate::store::Store;

    fn status(reached: Option<Result<(), String>>) -> Status {
        let text = "name: web\n\
                    target: { platform: docker, host: local, workload: web }\n\
                    maxReplicas: 3\n\
                    metrics:\n\
                    \x20 - name: rps\n\
                    \x20   prometheus: { query: 'sum(x)', type: Value, target: 1 }\n";
        let rule = crate::rules::parse_rules(std::path::Path::new("web.yaml"), text).unwrap();
        let rule = Arc::new(rule.into_iter().next().unwrap());
        let mut rule_status = RuleStatus::new("web.yaml".into(), rule, RuleState::Active);
        rule_status.current = Some(1);
        rule_status.desired = Some(1);
        // The query answered with no series: the rule's reading failed.
        rule_status.readings = vec![Some(Err("empty result".to_string()))];
        Status {
            rules: vec![rule_status],
            load_errors: Vec::new(),
            metric_servers: reached
                .map(|r| vec![("http://127.0.0.1:9090".to_string(), r)])
                .unwrap_or_default(),
        }
    }

    fn checks(status: &Status) -> Vec<(String, bool, String)> {
        let mut store = Store::new(2);
        store.add_target("local", PlatformKind::Docker);
        let observed = Arc::new(std::sync::Mutex::new(store));
        health(status, &observed, Some("http://127.0.0.1:9090"))
            .checks
            .into_iter()
            .map(|c| (c.name, c.ok, c.detail))
            .collect()
    }

    #[test]
    fn a_server_that_answered_with_no_usable_number_is_healthy() {
        let checks = checks(&status(Some(Ok(()))));
        assert!(
            checks.contains(&(
                "prometheus:http://127.0.0.1:9090".to_string(),
                true,
                "answering".to_string()
            )),
            "{checks:?}"
        );
    }

    #[test]
    fn a_server_that_cannot_be_reached_fails_and_one_not_queried_yet_is_not_ready() {
        let down = checks(&status(Some(Err("connection refused".to_string()))));
        assert!(
            down.iter()
                .any(|(n, ok, d)| n.starts_with("prometheus:") && !ok && d == "connection refused")
        );
        let fresh = checks(&status(None));
        assert!(
            fresh
                .iter()
                .any(|(n, ok, d)| n.starts_with("prometheus:") && !ok && d == "not queried yet")
        );
        assert!(
            fresh
                .iter()
                .any(|(n, ok, d)| n == "docker:local" && !ok && d == "connecting"),
            "{fresh:?}"
        );
    }
}
