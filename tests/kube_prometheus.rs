//! Pod CPU and memory from Prometheus on a Kubernetes target, over real HTTP: each test starts a
//! sandbox cluster (whose query API stands in for Prometheus), writes a config.toml whose
//! `[kubernetes]` table names it, makes the targets as the console does and runs the worker.
//! Faults injected into the sandbox's metrics-server API or query API show which one the
//! numbers came from.

use std::time::Duration;

use pilothouse::autoscaler::setup;
use pilothouse::config::Config;
use pilothouse::model::{PlatformKind, StatsSample, WorkloadKind};
use pilothouse::platform::kubernetes::prom::PodQueries;
use pilothouse::platform::kubernetes::{self, Selection};
use pilothouse::platform::{Request, Update};
use pilothouse::sandbox::faults::Fault;
use pilothouse::sandbox::{Options, Sandbox};
use pilothouse::store::Store;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The longest any test waits for the worker to report something.
const WAIT: Duration = Duration::from_secs(30);

/// Longer than one poll of pod usage, so that a source that answers has sent by then.
const A_POLL_AND_MORE: Duration = Duration::from_secs(7);

const CONTEXT: &str = "sandbox";

/// A sandbox pod's idle CPU (5 millicores) as percent of one core, and its memory at rest.
const IDLE_PERCENT: f64 = 0.5;
const IDLE_BYTES: u64 = 48 * 1024 * 1024;

fn objects() -> Vec<Value> {
    let namespace =
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "shop" } });
    let web = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "shop" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [ { "name": "web", "image": "shop/web:1.0" } ] }
            }
        }
    });
    vec![namespace, web]
}

/// A sandbox and a worker on it, made from a config.toml, and the store its updates go into.
struct Harness {
    sandbox: Sandbox,
    updates: mpsc::Receiver<Update>,
    store: Store,
    stats_seen: usize,
    _requests: mpsc::Sender<Request>,
    _dir: tempfile::TempDir,
    _worker: tokio::task::JoinHandle<()>,
}

impl Harness {
    /// Starts the sandbox with `faults` in force from the first request, and a worker from a
    /// config.toml whose `[kubernetes]` table is `kubernetes` plus the kubeconfig and, with
    /// `prometheus`, the sandbox as the Prometheus server.
    async fn start(kubernetes: &str, prometheus: bool, faults: &[Fault]) -> Harness {
        let options = Options {
            objects: objects(),
            pod_start: Duration::from_millis(300),
            ..Options::default()
        };
        let sandbox = Sandbox::start(options).await.expect("the sandbox starts");
        for fault in faults {
            sandbox.faults().fail(fault.clone());
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, sandbox.kubeconfig(CONTEXT, Some("shop")))
            .expect("kubeconfig written");

        let server = if prometheus {
            format!("prometheus = {:?}\n", sandbox.url())
        } else {
            String::new()
        };
        let text = format!(
            "[kubernetes]\nkubeconfig = {:?}\n{server}{kubernetes}",
            kubeconfig.display().to_string()
        );
        let path = dir.path().join("config.toml");
        let config = Config::parse(&path, &text).expect("the config parses");
        let mut targets =
            setup::kube_targets(Selection::default(), &config).expect("the targets are made");
        assert_eq!(targets.len(), 1, "one context");
        let target = targets.remove(0);
        assert_eq!(target.prometheus.is_some(), prometheus, "{text}");

        let (updates_tx, updates) = mpsc::channel(1024);
        let (requests, requests_rx) = mpsc::channel(16);
        let worker = tokio::spawn(kubernetes::run(target, updates_tx, requests_rx));
        let mut store = Store::new(10);
        store.add_target(CONTEXT, PlatformKind::Kubernetes);
        Harness {
            sandbox,
            updates,
            store,
            stats_seen: 0,
            _requests: requests,
            _dir: dir,
            _worker: worker,
        }
    }

    fn take(&mut self, update: Update) {
        if matches!(update, Update::Stats { .. }) {
            self.stats_seen += 1;
        }
        self.store.apply(&update);
    }

    /// Takes in updates until `done` holds, failing the test after [`WAIT`].
    async fn until(&mut self, what: &str, done: impl Fn(&mut Harness) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            match tokio::time::timeout_at(deadline, self.updates.recv()).await {
                Ok(Some(update)) => self.take(update),
                Ok(None) => panic!("the worker stopped while waiting for {what}"),
                Err(_) => panic!("no {what} within {WAIT:?}"),
            }
        }
    }

    /// Takes in every update for `how_long`.
    async fn for_a_while(&mut self, how_long: Duration) {
        let deadline = Instant::now() + how_long;
        while let Ok(Some(update)) = tokio::time::timeout_at(deadline, self.updates.recv()).await {
            self.take(update);
        }
    }

    /// The replica ids of `shop/web` once both of its pods are ready.
    async fn web_replicas(&mut self) -> Vec<String> {
        self.until("shop/web with 2 ready replicas", |h| {
            web(h).is_some_and(|w| w.ready == 2)
        })
        .await;
        web(self).map(|w| w.replicas).unwrap_or_default()
    }

    /// Every stats sample each replica has received, oldest first.
    fn samples(&self, replicas: &[String]) -> Vec<Vec<StatsSample>> {
        replicas
            .iter()
            .map(|id| {
                self.store
                    .replica_stats(CONTEXT, id)
                    .map(|series| series.iter().copied().collect())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Waits until every replica has at least `n` samples.
    async fn until_samples(&mut self, replicas: &[String], n: usize) {
        let what = format!("{n} stats samples of each replica");
        self.until(&what, |h| {
            h.samples(replicas).iter().all(|series| series.len() >= n)
        })
        .await;
    }
}

fn web(h: &mut Harness) -> Option<pilothouse::store::Workload> {
    h.store
        .workloads()
        .iter()
        .find(|w| w.id.kind == WorkloadKind::Deployment && w.id.name == "shop/web")
        .cloned()
}

/// Every request to the sandbox's metrics-server API fails.
fn metrics_server_down() -> Fault {
    Fault {
        method: None,
        path_contains: "/apis/metrics.k8s.io/".to_string(),
        status: 503,
        times: None,
        delay: None,
    }
}

/// Every request to the sandbox's Prometheus query API fails.
fn prometheus_down() -> Fault {
    Fault {
        method: None,
        path_contains: "/api/v1/query".to_string(),
        status: 503,
        times: None,
        delay: None,
    }
}

fn assert_idle(sample: &StatsSample) {
    assert!(
        (sample.cpu_percent - IDLE_PERCENT).abs() < 1e-6,
        "{sample:?}"
    );
    assert_eq!(sample.mem_bytes, IDLE_BYTES, "{sample:?}");
}

#[tokio::test]
async fn with_the_default_queries_pods_get_cpu_and_memory_while_metrics_server_is_down() {
    let mut h = Harness::start("", true, &[metrics_server_down()]).await;
    let replicas = h.web_replicas().await;
    h.until_samples(&replicas, 1).await;
    for series in h.samples(&replicas) {
        series.iter().for_each(assert_idle);
    }
}

#[tokio::test]
async fn the_stats_come_from_the_configured_queries_and_never_from_metrics_server() {
    let queries = "pod_cpu_query = \"sum by (namespace, pod) (sandbox_pod_cpu_usage_cores) * 10\"\n\
                   pod_memory_query = \"sum by (namespace, pod) (sandbox_pod_memory_bytes) + 1000\"\n";
    let mut h = Harness::start(queries, true, &[]).await;
    let replicas = h.web_replicas().await;
    // Two polls each, with metrics-server answering all along: any sample it gave would be
    // the idle 0.5% and 48 MiB, not these.
    h.until_samples(&replicas, 2).await;
    for series in h.samples(&replicas) {
        for sample in &series {
            assert!(
                (sample.cpu_percent - 10.0 * IDLE_PERCENT).abs() < 1e-6,
                "{sample:?}"
            );
            assert_eq!(sample.mem_bytes, IDLE_BYTES + 1000, "{sample:?}");
        }
    }
}

#[tokio::test]
async fn while_prometheus_fails_no_stats_are_sent_and_they_come_once_it_answers() {
    let mut h = Harness::start("", true, &[prometheus_down()]).await;
    let replicas = h.web_replicas().await;
    h.for_a_while(A_POLL_AND_MORE).await;
    assert_eq!(h.stats_seen, 0, "metrics-server answers, but is not read");

    h.sandbox.faults().clear();
    h.until_samples(&replicas, 1).await;
    for series in h.samples(&replicas) {
        series.iter().for_each(assert_idle);
    }
}

#[tokio::test]
async fn a_query_prometheus_rejects_gives_no_stats() {
    // A parenthesis left open: bad_data, from the sandbox as from Prometheus.
    let queries = "pod_cpu_query = \"sum by (namespace, pod) (sandbox_pod_cpu_usage_cores\"\n";
    let mut h = Harness::start(queries, true, &[]).await;
    let _ = h.web_replicas().await;
    h.for_a_while(A_POLL_AND_MORE).await;
    assert_eq!(h.stats_seen, 0);
}

#[tokio::test]
async fn without_a_prometheus_server_pod_usage_still_comes_from_metrics_server() {
    let mut h = Harness::start("", false, &[prometheus_down()]).await;
    let replicas = h.web_replicas().await;
    h.until_samples(&replicas, 1).await;
    for series in h.samples(&replicas) {
        series.iter().for_each(assert_idle);
    }
}

#[tokio::test]
async fn a_context_opened_while_the_console_runs_reads_prometheus_too() {
    let options = Options {
        objects: objects(),
        pod_start: Duration::from_millis(300),
        ..Options::default()
    };
    let sandbox = Sandbox::start(options).await.expect("the sandbox starts");
    sandbox.faults().fail(metrics_server_down());
    let dir = tempfile::tempdir().expect("a temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sandbox.kubeconfig(CONTEXT, Some("shop")))
        .expect("kubeconfig written");
    let text = format!(
        "[kubernetes]\nkubeconfig = {:?}\nprometheus = {:?}\n",
        kubeconfig.display().to_string(),
        sandbox.url()
    );
    let config = Config::parse(&dir.path().join("config.toml"), &text).expect("the config parses");

    // No context at startup; `:ctx sandbox` opens it through the opener.
    let platforms = setup::start(Vec::new(), Vec::new(), None, None);
    let observed = setup::observed_store(&platforms, 10);
    let source = setup::kube_source(Selection::default(), &config);
    let pod_usage = PodQueries::configured(&config.kubernetes).expect("the queries are made");
    let opener = setup::ContextOpener::new(source, platforms.spawner.clone(), observed)
        .with_pod_usage(pod_usage);
    let started = opener.open(CONTEXT).expect("the context opens");
    assert_eq!(started.name, CONTEXT);

    let mut updates = platforms.updates;
    let deadline = Instant::now() + WAIT;
    let sample = loop {
        match tokio::time::timeout_at(deadline, updates.recv()).await {
            Ok(Some(Update::Stats { sample, .. })) => break sample,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the worker stopped"),
            Err(_) => panic!("no stats within {WAIT:?} while metrics-server is down"),
        }
    };
    assert_idle(&sample);
}
