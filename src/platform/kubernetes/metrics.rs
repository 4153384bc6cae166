//! Pod CPU and memory from metrics-server (`metrics.k8s.io/v1beta1` PodMetrics), polled while
//! it answers and sent as stats of each pod's replica: CPU as percent of one core, as
//! `docker stats` shows it, so utilization against requests is read as the HPA reads it.
//!
//! Not for Prometheus: a target whose config names a server reads pod usage there instead
//! ([`super::prom`]), and rules that name a Prometheus query read it through the metric sources.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::convert;
use super::watch::client_cause;
use crate::model::StatsSample;
use crate::platform::Update;

/// How often pod metrics are read; metrics-server itself scrapes every 15 s by default.
pub const POLL: Duration = Duration::from_secs(5);

/// The PodMetrics resource metrics-server serves.
pub fn pod_metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".to_string(),
        version: "v1beta1".to_string(),
        api_version: "metrics.k8s.io/v1beta1".to_string(),
        kind: "PodMetrics".to_string(),
        plural: "pods".to_string(),
    }
}

/// Polls pod metrics in `namespace` (or everywhere) until the task is aborted or the store is
/// gone; stops for good, saying so once, when the cluster has no metrics-server (404).
pub async fn poll(
    client: Client,
    namespace: Option<String>,
    target: String,
    pods: Store<Pod>,
    updates: mpsc::Sender<Update>,
) {
    let resource = pod_metrics_resource();
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(client, ns, &resource),
        None => Api::all_with(client, &resource),
    };
    info!(%target, "pod CPU and memory are read from metrics-server (config.toml names no [kubernetes] prometheus)");
    let mut failing = false;
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                info!(%target, "no metrics-server (metrics.k8s.io not served): pod CPU and memory are not read");
                return;
            }
            Err(error) => {
                if !failing {
                    info!(%target, error = %client_cause(&error), "reading pod metrics failed; retrying");
                }
                failing = true;
                continue;
            }
        };
        failing = false;
        let samples: Vec<_> = list
            .items
            .iter()
            .filter_map(|item| sample_of(item, &pods))
            .collect();
        if !send_stats(&updates, &target, samples).await {
            return;
        }
        debug!(%target, pods = list.items.len(), "pod metrics read");
    }
}

/// Sends each pod's stats, by replica id, as the target's; false when the store is gone.
pub async fn send_stats(
    updates: &mpsc::Sender<Update>,
    target: &str,
    samples: impl IntoIterator<Item = (String, StatsSample)>,
) -> bool {
    for (id, sample) in samples {
        let update = Update::Stats {
            target: target.to_string(),
            id,
            sample,
        };
        if updates.send(update).await.is_err() {
            return false;
        }
    }
    true
}

/// One PodMetrics as the stats of its pod's replica (by uid); `None` for a pod not known.
fn sample_of(item: &DynamicObject, pods: &Store<Pod>) -> Option<(String, StatsSample)> {
    let name = item.metadata.name.as_deref()?;
    let namespace = item.metadata.namespace.as_deref()?;
    let pod = pods.get(&ObjectRef::new(name).within(namespace))?;
    Some((convert::pod_id(&pod), usage(&item.data)))
}

/// The summed usage of a PodMetrics' containers.
fn usage(data: &Value) -> StatsSample {
    let containers = data
        .get("containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut cores = 0.0;
    let mut mem_bytes = 0;
    for container in containers {
        let usage = container.get("usage");
        let field = |key: &str| usage.and_then(|u| u.get(key)).and_then(Value::as_str);
        cores += field("cpu").and_then(convert::parse_cpu).unwrap_or(0.0);
        mem_bytes += field("memory").and_then(convert::parse_memory).unwrap_or(0);
    }
    StatsSample {
        cpu_percent: cores * 100.0,
        mem_bytes,
        ..StatsSample::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_metrics_sum_their_containers_as_percent_of_a_core_and_bytes() {
        let data = serde_json::json!({
            "timestamp": "2025-06-01T12:00:00Z",
            "window": "15s",
            "containers": [
                { "name": "web", "usage": { "cpu": "250m", "memory": "100Mi" } },
                { "name": "proxy", "usage": { "cpu": "50000000n", "memory": "2048Ki" } },
                { "name": "broken", "usage": { "cpu": "lots" } }
            ]
        });
        let sample = usage(&data);
        assert!(
            (sample.cpu_percent - 30.0).abs() < 1e-9,
            "{}",
            sample.cpu_percent
        );
        assert_eq!(sample.mem_bytes, 100 * 1_048_576 + 2048 * 1024);
    }
}
