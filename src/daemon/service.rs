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
use crate::autoscaler::status::{RuleState, RuleStatus};
use crate::autoscaler::{self, Command, EngineHandle, Status, setup};
use crate::config::Config;
use crate::model::{ConnState, PlatformKind};
use crate::paths::Paths;
use crate::platform::kubernetes::config as kube_config;
use crate::rules::{MetricSource, RuleTarget};
use crate::store::TargetState;

/// How long SIGTERM waits for the cycles in flight before the daemon exits regardless.
pub const STOP_GRACE: Duration = Duration::from_millis(1200);
/// How long SIGTERM then waits for actions in flight; what still runs is audited as
/// interrupted.
const ACTION_GRACE: Duration = Duration::from_millis(300);
/// How long SIGTERM then waits for the HTTP listener's open connections.
const HTTP_GRACE: Duration = Duration::from_millis(200);

/// What `/healthz` says before the detail of the implicit Docker target when it is down and no
/// running rule needs it.
const NOT_USED: &str = "not used (no rule names it)";

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
    let implicit = setup::implicit_docker_target(options.docker_host.as_deref(), &config);
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
        let handler = handler(
            engine.status.clone(),
            Arc::clone(&observed),
            default,
            implicit,
        );
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
    implicit_target: Option<&'static str>,
) -> Handler {
    Arc::new(move |path: &str| {
        let status = Arc::clone(&status.borrow());
        let health = health(
            &status,
            &observed,
            default_prometheus.as_deref(),
            implicit_target,
        );
        http::route(
            path,
            || exposition::render_metrics(&status, &health),
            || exposition::render_health(&health),
        )
    })
}

/// What `/healthz` judges: one check per target (connected or not), one per Prometheus server
/// the running rules read (its last query answered, or what went wrong), and one per running
/// rule (its last cycle found the workload and read every metric). The daemon is healthy only
/// when every check passes: a rule that cannot read its metrics holds its workload where it is,
/// so a daemon whose rules all hold blind is not doing its job even when every server answers.
///
/// `implicit_target` is the Docker target added because none was configured (`local`): while
/// no running rule names it, it is shown but does not count, so a daemon for Kubernetes alone
/// on a host without Docker can be healthy.
pub fn health(
    status: &Status,
    observed: &Observed,
    default_prometheus: Option<&str>,
    implicit_target: Option<&str>,
) -> Health {
    let mut checks = target_checks(observed, status, implicit_target);
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
            counts: true,
        });
    }
    checks.extend(status.rules.iter().filter(|r| runs(r)).map(rule_check));
    Health { checks }
}

/// One check per target, named by its platform (`docker:local`, `k8s:prod`); the implicit
/// Docker target does not count while no running rule names it.
fn target_checks(
    observed: &Observed,
    status: &Status,
    implicit_target: Option<&str>,
) -> Vec<Check> {
    let store = observed
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    store
        .targets()
        .iter()
        .map(|target| {
            let (ok, detail) = match &target.conn {
                ConnState::Connected { version, .. } => {
                    (true, format!("{} {version}", target.platform))
                }
                ConnState::Connecting => (false, "connecting".to_string()),
                ConnState::Disconnected { error, .. } => (false, error.clone()),
            };
            let counts = !unused_implicit(target, status, implicit_target);
            let detail = if ok || counts {
                detail
            } else {
                format!("{NOT_USED}: {detail}")
            };
            Check {
                name: format!("{}:{}", target.platform, target.name),
                ok,
                detail,
                counts,
            }
        })
        .collect()
}

/// Whether `target` is the implicit Docker target and no running rule acts on it.
fn unused_implicit(target: &TargetState, status: &Status, implicit_target: Option<&str>) -> bool {
    let names_it = |rule: &RuleStatus| matches!(&rule.rule.target, RuleTarget::Docker { host, .. } if *host == target.name);
    target.platform == PlatformKind::Docker
        && implicit_target == Some(target.name.as_str())
        && !status.rules.iter().filter(|r| runs(r)).any(names_it)
}

/// Whether the rule is evaluated: active, or standing by while another autoscaler acts (it
/// still reads its metrics). Paused rules and rules for a target this daemon lacks are not.
fn runs(rule: &RuleStatus) -> bool {
    matches!(rule.state, RuleState::Active | RuleState::Standby { .. })
}

/// Whether the rule's last cycle had what a decision needs: its workload, and a reading of
/// every metric; the detail says what was missing.
fn rule_check(rule: &RuleStatus) -> Check {
    let (ok, detail) = match rule.last() {
        None => (false, "not evaluated yet".to_string()),
        Some(record) if record.current.is_none() => (false, record.reason.clone()),
        Some(record) => {
            let failed: Vec<String> = rule
                .rule
                .metrics
                .iter()
                .zip(&record.readings)
                .filter_map(|(metric, reading)| {
                    reading
                        .as_ref()
                        .err()
                        .map(|e| format!("{}: {e}", metric.name))
                })
                .collect();
            if failed.is_empty() {
                (true, "read every metric".to_string())
            } else {
                (false, format!("cannot read {}", failed.join("; ")))
            }
        }
    };
    Check {
        name: format!("rule:{}", rule.name),
        ok,
        detail,
        counts: true,
    }
}

/// Each Prometheus server the running rules name: whether it answered its last query (an
/// answer with no usable number counts as answered), `None` before it was first queried.
fn prometheus_servers(
    status: &Status,
    default_prometheus: Option<&str>,
) -> BTreeMap<String, Option<Result<(), String>>> {
    let mut servers: BTreeMap<String, Option<Result<(), String>>> = BTreeMap::new();
    for rule in status.rules.iter().filter(|r| runs(r)) {
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
    use crate::autoscaler::status::{Act, DecisionRecord};
    use crate::model::PlatformKind;
    use crate::rules::Reading;
    use crate::store::Store;

    const SERVER: &str = "http://127.0.0.1:9090";

    fn rule(target: &str) -> Arc<crate::rules::Rule> {
        let text = format!(
            "name: web\n\
             target: {target}\n\
             maxReplicas: 3\n\
             metrics:\n\
             \x20 - name: rps\n\
             \x20   prometheus: {{ query: 'sum(x)', type: Value, target: 1 }}\n"
        );
        let rules = crate::rules::parse_rules(std::path::Path::new("web.yaml"), &text).unwrap();
        Arc::new(rules.into_iter().next().unwrap())
    }

    /// A rule whose last cycle found its workload at 1 replica and read `reading`.
    fn evaluated(rule: Arc<crate::rules::Rule>, reading: Reading) -> RuleStatus {
        let mut status = RuleStatus::new("web.yaml".into(), rule, RuleState::Active);
        status.current = Some(1);
        status.desired = Some(1);
        status.readings = vec![Some(reading.clone())];
        status.history = Arc::new(
            [DecisionRecord {
                at: chrono::Utc::now(),
                current: Some(1),
                desired: Some(1),
                readings: vec![reading],
                recommendations: Vec::new(),
                reason: "hold".to_string(),
                basis: None,
                action: Act::Hold,
            }]
            .into(),
        );
        status
    }

    fn docker_rule() -> Arc<crate::rules::Rule> {
        rule("{ platform: docker, host: local, workload: web }")
    }

    fn status(rule: RuleStatus, reached: Option<Result<(), String>>) -> Status {
        Status {
            rules: vec![rule],
            load_errors: Vec::new(),
            metric_servers: reached
                .map(|r| vec![(SERVER.to_string(), r)])
                .unwrap_or_default(),
        }
    }

    fn observed(targets: &[(&str, PlatformKind)]) -> Observed {
        let mut store = Store::new(2);
        for (name, kind) in targets {
            store.add_target(name, *kind);
        }
        Arc::new(std::sync::Mutex::new(store))
    }

    fn connect(observed: &Observed, target: &str, version: &str) {
        observed
            .lock()
            .unwrap()
            .apply(&crate::platform::Update::Connection {
                target: target.to_string(),
                state: ConnState::Connected {
                    version: version.to_string(),
                    api_version: "v1".to_string(),
                    engine_id: format!("{target}-id"),
                },
            });
    }

    fn checks(status: &Status) -> Vec<(String, bool, String)> {
        let observed = observed(&[("local", PlatformKind::Docker)]);
        health(status, &observed, Some(SERVER), Some("local"))
            .checks
            .into_iter()
            .map(|c| (c.name, c.ok, c.detail))
            .collect()
    }

    fn check<'a>(checks: &'a [(String, bool, String)], name: &str) -> &'a (String, bool, String) {
        checks
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
    }

    #[test]
    fn a_server_that_answered_with_no_usable_number_is_up_but_its_rule_fails() {
        // The query answered with no series: the server is fine, the rule's reading is not.
        let empty = evaluated(docker_rule(), Err("empty result".to_string()));
        let checks = checks(&status(empty, Some(Ok(()))));
        assert_eq!(
            check(&checks, &format!("prometheus:{SERVER}")),
            &(
                format!("prometheus:{SERVER}"),
                true,
                "answering".to_string()
            )
        );
        assert_eq!(
            check(&checks, "rule:web"),
            &(
                "rule:web".to_string(),
                false,
                "cannot read rps: empty result".to_string()
            )
        );
    }

    #[test]
    fn every_metric_read_failing_is_not_healthy_even_when_targets_and_servers_are_up() {
        let observed = observed(&[("local", PlatformKind::Docker)]);
        connect(&observed, "local", "27.0");
        let failing = evaluated(docker_rule(), Err("empty result".to_string()));
        let health = health(
            &status(failing, Some(Ok(()))),
            &observed,
            Some(SERVER),
            Some("local"),
        );
        assert!(!health.ready(), "{health:?}");
        let (code, body) = exposition::render_health(&health);
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("docker:local: ok docker 27.0"), "{body}");
        assert!(
            body.contains("rule:web: FAILING cannot read rps: empty result"),
            "{body}"
        );

        let reading = evaluated(docker_rule(), Ok(4.0));
        let health = super::health(
            &status(reading, Some(Ok(()))),
            &observed,
            Some(SERVER),
            Some("local"),
        );
        let (code, body) = exposition::render_health(&health);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("rule:web: ok read every metric"), "{body}");
    }

    #[test]
    fn a_rule_not_evaluated_yet_or_without_its_workload_fails_and_a_paused_one_is_left_out() {
        let fresh = RuleStatus::new("web.yaml".into(), docker_rule(), RuleState::Active);
        let found = checks(&status(fresh, None));
        assert_eq!(check(&found, "rule:web").2, "not evaluated yet");
        assert!(!check(&found, "rule:web").1);

        let mut missing = evaluated(docker_rule(), Ok(1.0));
        let record = Arc::make_mut(&mut missing.history).back_mut().unwrap();
        record.current = None;
        record.readings = Vec::new();
        record.reason = "no workload web on local".to_string();
        let found = checks(&status(missing, Some(Ok(()))));
        assert_eq!(
            check(&found, "rule:web"),
            &(
                "rule:web".to_string(),
                false,
                "no workload web on local".to_string()
            )
        );

        let mut paused = evaluated(docker_rule(), Err("empty result".to_string()));
        paused.state = RuleState::Paused;
        let found = checks(&status(paused, None));
        assert!(
            found
                .iter()
                .all(|(n, _, _)| !n.starts_with("rule:") && !n.starts_with("prometheus:")),
            "{found:?}"
        );
    }

    #[test]
    fn a_server_that_cannot_be_reached_fails_and_one_not_queried_yet_is_not_ready() {
        let down = evaluated(docker_rule(), Err("connection refused".to_string()));
        let down = checks(&status(down, Some(Err("connection refused".to_string()))));
        assert_eq!(
            check(&down, &format!("prometheus:{SERVER}")).2,
            "connection refused"
        );
        assert!(!check(&down, &format!("prometheus:{SERVER}")).1);
        let fresh = RuleStatus::new("web.yaml".into(), docker_rule(), RuleState::Active);
        let fresh = checks(&status(fresh, None));
        assert_eq!(
            check(&fresh, &format!("prometheus:{SERVER}")).2,
            "not queried yet"
        );
        assert_eq!(
            check(&fresh, "docker:local"),
            &("docker:local".to_string(), false, "connecting".to_string())
        );
    }

    fn disconnect(observed: &Observed, target: &str, error: &str) {
        observed
            .lock()
            .unwrap()
            .apply(&crate::platform::Update::Connection {
                target: target.to_string(),
                state: ConnState::Disconnected {
                    error: error.to_string(),
                    retry_in_secs: 4,
                },
            });
    }

    fn kube_rule() -> Arc<crate::rules::Rule> {
        rule("{ platform: kubernetes, context: prod, namespace: shop, workload: deployment/web }")
    }

    /// A cluster `prod` connected and a Docker target `local` that cannot be reached.
    fn cluster_without_docker() -> Observed {
        let observed = observed(&[
            ("local", PlatformKind::Docker),
            ("prod", PlatformKind::Kubernetes),
        ]);
        connect(&observed, "prod", "v1.31.0");
        disconnect(&observed, "local", NO_SOCKET);
        observed
    }

    const NO_SOCKET: &str = "cannot reach Docker at unix:///nonexistent/socket: no such socket";

    #[test]
    fn the_implicit_docker_target_no_rule_names_is_shown_as_not_used_and_keeps_the_daemon_ready() {
        let observed = cluster_without_docker();
        let status = status(evaluated(kube_rule(), Ok(2.0)), Some(Ok(())));
        let health = health(&status, &observed, Some(SERVER), Some("local"));
        let (code, body) = exposition::render_health(&health);
        assert_eq!(code, 200, "{body}");
        assert!(
            body.contains(&format!(
                "docker:local: not used (no rule names it): {NO_SOCKET}\n"
            )),
            "{body}"
        );
        assert!(body.contains("k8s:prod: ok k8s v1.31.0"), "{body}");
        assert!(body.contains("rule:web: ok read every metric"), "{body}");
        let metrics = exposition::render_metrics(&status, &health);
        assert!(!metrics.contains("check=\"docker:local\""), "{metrics}");
    }

    #[test]
    fn a_docker_target_that_was_configured_or_that_a_running_rule_names_fails_health_when_down() {
        // Configured (`--docker-host` or `[[docker]]`): no implicit target.
        let observed = cluster_without_docker();
        let kube = status(evaluated(kube_rule(), Ok(2.0)), Some(Ok(())));
        let (code, body) = exposition::render_health(&health(&kube, &observed, Some(SERVER), None));
        assert_eq!(code, 503, "{body}");
        assert!(
            body.contains(&format!("docker:local: FAILING {NO_SOCKET}\n")),
            "{body}"
        );

        // Implicit, but an active rule acts on it.
        let docker = status(evaluated(docker_rule(), Ok(2.0)), Some(Ok(())));
        let health = health(&docker, &observed, Some(SERVER), Some("local"));
        let (code, body) = exposition::render_health(&health);
        assert_eq!(code, 503, "{body}");
        assert!(
            body.contains(&format!("docker:local: FAILING {NO_SOCKET}\n")),
            "{body}"
        );

        // A paused rule acts on nothing, so the implicit target is not used again.
        let mut paused = evaluated(docker_rule(), Ok(2.0));
        paused.state = RuleState::Paused;
        let paused = status(paused, None);
        let (code, body) = exposition::render_health(&super::health(
            &paused,
            &observed,
            Some(SERVER),
            Some("local"),
        ));
        assert_eq!(code, 200, "{body}");
        assert!(
            body.contains("docker:local: not used (no rule names it): "),
            "{body}"
        );
    }

    #[test]
    fn a_kubernetes_target_and_its_rules_server_are_named_as_what_they_are() {
        let observed = observed(&[
            ("local", PlatformKind::Docker),
            ("prod", PlatformKind::Kubernetes),
        ]);
        connect(&observed, "prod", "v1.31.0");
        let kube = rule(
            "{ platform: kubernetes, context: prod, namespace: shop, workload: deployment/web }",
        );
        let status = status(evaluated(kube, Ok(2.0)), Some(Err("timed out".to_string())));
        let checks: Vec<(String, bool, String)> =
            health(&status, &observed, Some(SERVER), Some("local"))
                .checks
                .into_iter()
                .map(|c| (c.name, c.ok, c.detail))
                .collect();
        assert_eq!(
            check(&checks, "k8s:prod"),
            &("k8s:prod".to_string(), true, "k8s v1.31.0".to_string())
        );
        assert!(
            checks.iter().all(|(n, _, _)| n != "docker:prod"),
            "{checks:?}"
        );
        // A Kubernetes rule's Prometheus server counts as a Docker rule's does.
        assert_eq!(
            check(&checks, &format!("prometheus:{SERVER}")),
            &(
                format!("prometheus:{SERVER}"),
                false,
                "timed out".to_string()
            )
        );
    }
}
