//! Pod CPU and memory from Prometheus, for a target whose config names a server: two instant
//! queries read as often as metrics-server would be, each series matched to a pod of the store
//! by its `namespace` and `pod` labels and sent as that pod's replica stats, in the shape
//! [`super::metrics`] sends (CPU as percent of one core, memory in bytes).
//!
//! Not a fallback and not a second source: with a server configured, metrics-server is not read,
//! whatever Prometheus answers, so the numbers on screen always come from the source the log
//! names.

use std::collections::HashMap;
use std::mem::Discriminant;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::convert;
use super::metrics::{self, POLL};
use crate::config::KubernetesConfig;
use crate::metrics::prometheus::Vector;
use crate::metrics::{MetricError, PrometheusSource};
use crate::model::StatsSample;
use crate::platform::Update;

/// The server and the two queries a target's pod usage is read with.
#[derive(Debug, Clone)]
pub struct PodQueries {
    pub source: PrometheusSource,
    /// Each pod's CPU in use, in cores.
    pub cpu: String,
    /// Each pod's memory in use, in bytes.
    pub memory: String,
}

impl PodQueries {
    /// Queries for the server at `address`; an address that cannot be one is refused.
    pub fn new(address: &str, cpu: &str, memory: &str) -> Result<PodQueries, MetricError> {
        Ok(PodQueries {
            source: PrometheusSource::new(address)?,
            cpu: cpu.to_string(),
            memory: memory.to_string(),
        })
    }
}

impl PodQueries {
    /// The queries config.toml's `[kubernetes]` table asks for, for every context it opens;
    /// `None` when it names no server. The error names the key.
    pub fn configured(kubernetes: &KubernetesConfig) -> Result<Option<PodQueries>, String> {
        let Some(address) = &kubernetes.prometheus else {
            return Ok(None);
        };
        let cpu = kubernetes.pod_cpu_query();
        let memory = kubernetes.pod_memory_query();
        PodQueries::new(address, cpu, memory)
            .map(Some)
            .map_err(|e| format!("[kubernetes] prometheus: {e}"))
    }
}

/// A pod by namespace and name.
type PodKey = (String, String);

/// Reads both queries every [`POLL`] until the task is aborted or the store is gone, and sends
/// the stats of every pod that both answers name and the store knows.
pub async fn poll(
    queries: PodQueries,
    target: String,
    pods: Store<Pod>,
    updates: mpsc::Sender<Update>,
) {
    let server = queries.source.server().to_string();
    info!(%target, %server, cpu_query = %queries.cpu, memory_query = %queries.memory,
        "pod CPU and memory are read from Prometheus (metrics-server is not read)");
    let mut cpu_health = Health::new("CPU");
    let mut memory_health = Health::new("memory");
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (cpu, memory) = tokio::join!(
            queries.source.query_vector(&queries.cpu),
            queries.source.query_vector(&queries.memory),
        );
        let cpu = cpu_health.judge(&target, by_pod(&server, &queries.cpu, cpu));
        let memory = memory_health.judge(&target, by_pod(&server, &queries.memory, memory));
        // A pod is sent only with both numbers: a zero put in for a missing one would read as
        // an idle pod to a CPU rule.
        let (Some(cpu), Some(memory)) = (cpu, memory) else {
            continue;
        };
        let samples = samples(&cpu, &memory, &pods);
        debug!(%target, series = cpu.len(), pods = samples.len(), "pod usage read from Prometheus");
        if !metrics::send_stats(&updates, &target, samples).await {
            return;
        }
    }
}

/// The stats of each pod of the store that has both a CPU and a memory value, by replica id;
/// series of pods the store does not know are left out.
fn samples(
    cpu: &HashMap<PodKey, f64>,
    memory: &HashMap<PodKey, f64>,
    pods: &Store<Pod>,
) -> Vec<(String, StatsSample)> {
    let mut out = Vec::new();
    for (key, cores) in cpu {
        let Some(bytes) = memory.get(key) else {
            continue;
        };
        let Some(pod) = pods.get(&ObjectRef::new(&key.1).within(&key.0)) else {
            continue;
        };
        out.push((convert::pod_id(&pod), sample(*cores, *bytes)));
    }
    out
}

/// A pod's stats from its cores and bytes.
fn sample(cores: f64, bytes: f64) -> StatsSample {
    StatsSample {
        cpu_percent: cores * 100.0,
        // The value is finite and not negative (see `by_pod`); the cast saturates above u64.
        mem_bytes: bytes.round() as u64,
        ..StatsSample::default()
    }
}

/// Why one query gave no usable values this time.
#[derive(Debug)]
enum Trouble {
    /// The request failed, or the server refused the query.
    Failed(MetricError),
    /// The answer is an empty vector.
    NoSeries { server: String, query: String },
    /// Series came back, but none with both a `namespace` and a `pod` label.
    NoPodLabels {
        server: String,
        query: String,
        count: usize,
    },
}

/// Which kind of trouble, so each kind is logged once when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TroubleKind {
    Failed(Discriminant<MetricError>),
    NoSeries,
    NoPodLabels,
}

impl Trouble {
    fn kind(&self) -> TroubleKind {
        match self {
            Trouble::Failed(error) => TroubleKind::Failed(std::mem::discriminant(error)),
            Trouble::NoSeries { .. } => TroubleKind::NoSeries,
            Trouble::NoPodLabels { .. } => TroubleKind::NoPodLabels,
        }
    }
}

impl std::fmt::Display for Trouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trouble::Failed(error) => write!(f, "{error}"),
            Trouble::NoSeries { server, query } => write!(
                f,
                "query {query:?} on {server} matched no series (check the metric names, and \
                 that Prometheus scrapes the kubelets' cAdvisor metrics)"
            ),
            Trouble::NoPodLabels {
                server,
                query,
                count,
            } => write!(
                f,
                "query {query:?} on {server} returned {count} series, none with both a \
                 `namespace` and a `pod` label (aggregate with sum by (namespace, pod) (...))"
            ),
        }
    }
}

/// Each pod's value in a vector answer, series of one pod summed (a query by container gives
/// the pod's total); series without both labels, or with a value that is negative, NaN or
/// infinite, are left out.
fn by_pod(
    server: &str,
    query: &str,
    answer: Result<Vector, MetricError>,
) -> Result<HashMap<PodKey, f64>, Trouble> {
    let series = answer.map_err(Trouble::Failed)?;
    if series.is_empty() {
        return Err(Trouble::NoSeries {
            server: server.to_string(),
            query: query.to_string(),
        });
    }
    let mut values: HashMap<PodKey, f64> = HashMap::new();
    let mut labelled = 0;
    for (labels, value) in &series {
        let (Some(namespace), Some(pod)) = (labels.get("namespace"), labels.get("pod")) else {
            continue;
        };
        labelled += 1;
        if !value.is_finite() || *value < 0.0 {
            debug!(server, query, %namespace, %pod, value, "a pod's value is not a usage; left out");
            continue;
        }
        *values.entry((namespace.clone(), pod.clone())).or_default() += value;
    }
    if labelled == 0 {
        return Err(Trouble::NoPodLabels {
            server: server.to_string(),
            query: query.to_string(),
            count: series.len(),
        });
    }
    Ok(values)
}

/// Whether one query has been answering, so a failure is logged once when it starts (and again
/// only when it turns into another kind), and the recovery once.
struct Health {
    /// `CPU` or `memory`, for the log.
    what: &'static str,
    trouble: Option<TroubleKind>,
}

impl Health {
    fn new(what: &'static str) -> Health {
        Health {
            what,
            trouble: None,
        }
    }

    /// The values of a reading, or `None` after logging what is wrong if it is news.
    fn judge(
        &mut self,
        target: &str,
        reading: Result<HashMap<PodKey, f64>, Trouble>,
    ) -> Option<HashMap<PodKey, f64>> {
        match reading {
            Ok(values) => {
                if self.trouble.take().is_some() {
                    info!(%target, query = self.what, "Prometheus answers the pod query again");
                }
                Some(values)
            }
            Err(trouble) => {
                let kind = trouble.kind();
                if self.trouble != Some(kind) {
                    self.log(target, &trouble);
                    self.trouble = Some(kind);
                }
                None
            }
        }
    }

    fn log(&self, target: &str, trouble: &Trouble) {
        let what = self.what;
        match trouble {
            Trouble::Failed(MetricError::QueryRejected { .. }) => {
                warn!(%target, query = what, error = %trouble,
                    "Prometheus rejects the pod {what} query; no pod stats until it is fixed in config.toml");
            }
            Trouble::Failed(_) | Trouble::NoPodLabels { .. } => {
                warn!(%target, query = what, error = %trouble,
                    "reading pod {what} from Prometheus failed; retrying (metrics-server is not read instead)");
            }
            Trouble::NoSeries { .. } => {
                info!(%target, query = what, error = %trouble,
                    "the pod {what} query matches nothing yet; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "Prometheus at http://127.0.0.1:9";

    fn series(pairs: &[(&str, &str)], value: f64) -> (HashMap<String, String>, f64) {
        let labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (labels, value)
    }

    fn key(namespace: &str, pod: &str) -> PodKey {
        (namespace.to_string(), pod.to_string())
    }

    #[test]
    fn series_of_one_pod_are_summed_and_unusable_ones_left_out() {
        let answer = vec![
            series(
                &[("namespace", "shop"), ("pod", "web-1"), ("container", "a")],
                0.25,
            ),
            series(
                &[("namespace", "shop"), ("pod", "web-1"), ("container", "b")],
                0.5,
            ),
            series(&[("namespace", "shop"), ("pod", "web-2")], f64::NAN),
            series(&[("namespace", "shop"), ("pod", "web-3")], -1.0),
            series(&[("pod", "web-4")], 9.0),
            series(&[("namespace", "batch"), ("pod", "web-1")], 2.0),
        ];
        let values = by_pod(SERVER, "q", Ok(answer)).unwrap();
        assert_eq!(values.len(), 2, "{values:?}");
        assert_eq!(values[&key("shop", "web-1")], 0.75);
        assert_eq!(values[&key("batch", "web-1")], 2.0);
    }

    #[test]
    fn an_empty_answer_and_one_without_pod_labels_are_trouble_naming_the_query() {
        let empty = by_pod(SERVER, "up", Ok(Vec::new())).unwrap_err();
        assert_eq!(empty.kind(), TroubleKind::NoSeries);
        assert!(
            empty.to_string().contains("query \"up\" on Prometheus at"),
            "{empty}"
        );

        let summed = vec![series(&[], 3.0)];
        let unlabelled = by_pod(SERVER, "sum(x)", Ok(summed)).unwrap_err();
        assert_eq!(unlabelled.kind(), TroubleKind::NoPodLabels);
        assert!(
            unlabelled.to_string().contains("1 series, none with both"),
            "{unlabelled}"
        );
    }

    #[test]
    fn a_failure_is_news_once_until_it_changes_kind_or_the_query_answers_again() {
        let rejected = || {
            Err(Trouble::Failed(MetricError::QueryRejected {
                server: SERVER.into(),
                query: "q(".into(),
                kind: "bad_data".into(),
                message: "parse error".into(),
            }))
        };
        let mut health = Health::new("CPU");
        assert!(health.judge("t", rejected()).is_none());
        let first = health.trouble;
        assert!(matches!(first, Some(TroubleKind::Failed(_))));
        assert!(health.judge("t", rejected()).is_none());
        assert_eq!(health.trouble, first);

        let empty = Err(Trouble::NoSeries {
            server: SERVER.into(),
            query: "q".into(),
        });
        assert!(health.judge("t", empty).is_none());
        assert_eq!(health.trouble, Some(TroubleKind::NoSeries));

        let values = HashMap::from([(key("shop", "web-1"), 1.0)]);
        assert_eq!(health.judge("t", Ok(values.clone())), Some(values));
        assert_eq!(health.trouble, None);
    }

    #[test]
    fn cores_are_percent_of_one_core_and_bytes_are_rounded() {
        let sample = sample(0.255, 1024.6);
        assert!((sample.cpu_percent - 25.5).abs() < 1e-9, "{sample:?}");
        assert_eq!(sample.mem_bytes, 1025);
    }
}
