//! The sandbox cluster's controllers: Deployments make ReplicaSets, ReplicaSets and
//! StatefulSets make pods, the node runs pods, and objects whose owner is gone are collected.
//!
//! One pass runs every 100 ms on wall-clock time. Each pass reads every pod once into an
//! index by owner, so its cost grows with the number of pods, never with its square.

pub mod deployment;
pub mod events;
pub mod pods;
pub mod replicaset;
pub mod statefulset;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::Cluster;
use super::resources::{DEPLOYMENTS, PODS, REPLICASETS, STATEFULSETS};
use super::store;

/// How often the controllers look at the cluster.
const PASS_EVERY: Duration = Duration::from_millis(100);
/// The most pods one controller creates for one workload in one pass.
pub const CREATE_BURST: usize = 1_000;
/// The field manager of the controllers' writes.
pub const MANAGER: &str = "kube-controller-manager";

/// Runs the controllers until `shutdown` changes.
pub async fn run(cluster: Arc<Cluster>, timing: pods::Timing, mut shutdown: watch::Receiver<bool>) {
    let mut rest = PASS_EVERY;
    let mut cache = IndexCache::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(rest) => {}
            _ = shutdown.changed() => return,
        }
        let started = std::time::Instant::now();
        let cluster = cluster.clone();
        let pass = tokio::task::spawn_blocking(move || {
            pass(&cluster, timing, &mut cache);
            cache
        })
        .await;
        cache = pass.unwrap_or_else(|error| {
            tracing::error!(%error, "a sandbox controller pass failed");
            IndexCache::default()
        });
        // A slow pass (many pods) is followed by as long a rest, so the controllers never
        // take more than half of a core from the API server.
        rest = PASS_EVERY.max(started.elapsed());
    }
}

/// The pod index of the last pass, and the pods' last write it was made at.
#[derive(Default)]
struct IndexCache {
    made_at: Option<u64>,
    index: PodIndex,
}

/// One pass of every controller, reading the pods again only when one was written since the
/// index in `cache` was made: on a cluster of many pods that do not change, a pass then costs
/// next to nothing and holds the store's lock only briefly.
fn pass(cluster: &Cluster, timing: pods::Timing, cache: &mut IndexCache) {
    pods::tick(cluster, timing);

    let pods_written = cluster.store.read(|inner| inner.last_write(&PODS));
    if cache.made_at != Some(pods_written) {
        // Scanned under the same lock as the write counter it is filed under, so a write
        // between the two cannot be missed.
        let (made_at, index) = PodIndex::scan(cluster);
        *cache = IndexCache {
            made_at: Some(made_at),
            index,
        };
    }
    let index = &cache.index;

    collect_garbage(cluster, index);

    replicaset::sync_all(cluster, index);

    deployment::sync_all(cluster, index);

    statefulset::sync_all(cluster, index);
}

/// What the controllers need to know of one pod.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub name: String,
    pub ready: bool,
    /// The `controller-revision-hash` label.
    pub revision: Option<String>,
    pub created: String,
}

/// Every pod, by the uid of the object that controls it.
#[derive(Debug, Default)]
pub struct PodIndex {
    by_owner: HashMap<String, Vec<PodInfo>>,
    /// Pods whose controller is a ReplicaSet or StatefulSet: (namespace, name, owner uid).
    controlled: Vec<(String, String, String)>,
}

impl PodIndex {
    /// Every pod read once, with the pods' last write the index is current for.
    fn scan(cluster: &Cluster) -> (u64, PodIndex) {
        cluster.store.read(|inner| {
            let mut index = PodIndex::default();
            for pod in inner.objects(&PODS) {
                let Some((kind, uid)) = controller_of(pod) else {
                    continue;
                };
                if kind != "ReplicaSet" && kind != "StatefulSet" {
                    continue;
                }
                let info = PodInfo {
                    name: store::name_of(pod).to_string(),
                    ready: pods::is_pod_ready(pod),
                    revision: pod
                        .pointer("/metadata/labels/controller-revision-hash")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    created: pod["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or("")
                        .into(),
                };
                let namespace = store::namespace_of(pod).to_string();
                index
                    .controlled
                    .push((namespace, info.name.clone(), uid.to_string()));
                index
                    .by_owner
                    .entry(uid.to_string())
                    .or_default()
                    .push(info);
            }
            (inner.last_write(&PODS), index)
        })
    }

    /// The pods an object controls.
    pub fn owned(&self, uid: &str) -> &[PodInfo] {
        self.by_owner.get(uid).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The kind and uid of the object's controlling owner.
pub fn controller_of(object: &Value) -> Option<(&str, &str)> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| Some((r["kind"].as_str()?, r["uid"].as_str()?)))
}

/// Deletes pods and ReplicaSets whose controller is gone, as the garbage collector does with
/// background propagation.
fn collect_garbage(cluster: &Cluster, index: &PodIndex) {
    let (owners, orphan_sets) = cluster.store.read(|inner| {
        let mut owners: HashSet<String> = HashSet::new();
        for resource in [&REPLICASETS, &STATEFULSETS] {
            owners.extend(
                inner
                    .objects(resource)
                    .map(|o| store::uid_of(o).to_string()),
            );
        }
        let deployments: HashSet<&str> = inner
            .objects(&DEPLOYMENTS)
            .map(|o| store::uid_of(o))
            .collect();
        let orphan_sets: Vec<(String, String)> = inner
            .objects(&REPLICASETS)
            .filter(|rs| {
                controller_of(rs)
                    .is_some_and(|(kind, uid)| kind == "Deployment" && !deployments.contains(uid))
            })
            .map(|rs| {
                (
                    store::namespace_of(rs).to_string(),
                    store::name_of(rs).to_string(),
                )
            })
            .collect();
        (owners, orphan_sets)
    });
    for (namespace, name) in orphan_sets {
        let _ = cluster.store.delete(&REPLICASETS, &namespace, &name);
    }
    for (namespace, name, owner) in &index.controlled {
        if !owners.contains(owner) {
            let _ = cluster.store.delete(&PODS, namespace, name);
        }
    }
}

/// A short, stable hash of a pod template, as `pod-template-hash` and revision names use.
pub fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let text = serde_json::to_string(template).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..10)
        .map(|_| {
            let c = ALPHABET[(hash % ALPHABET.len() as u64) as usize] as char;
            hash /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// An owner reference to `owner` as its controller.
pub fn owner_reference(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A pod made from a workload's template, owned by `owner`.
pub fn pod_from_template(
    template: &Value,
    owner: &Value,
    name: PodName<'_>,
    labels: &[(&str, &str)],
) -> Value {
    let mut metadata = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !metadata.is_object() {
        metadata = json!({});
    }
    for (key, value) in labels {
        metadata["labels"][*key] = json!(value);
    }
    match name {
        PodName::Generate(prefix) => metadata["generateName"] = json!(prefix),
        PodName::Fixed(name) => metadata["name"] = json!(name),
    }
    metadata["ownerReferences"] = json!([owner_reference(owner)]);
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    for (field, default) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
    ] {
        if spec.get(field).is_none() {
            spec[field] = default;
        }
    }
    json!({"metadata": metadata, "spec": spec, "status": {"phase": "Pending", "qosClass": "BestEffort"}})
}

/// How a new pod is named.
#[derive(Debug, Clone, Copy)]
pub enum PodName<'a> {
    /// A prefix the server completes.
    Generate(&'a str),
    Fixed(&'a str),
}

/// The `spec.replicas` of a workload (1 when unset).
pub fn replicas_of(object: &Value) -> i64 {
    object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0)
}

/// Deletes a pod a controller no longer wants, with the kubelet's Killing event.
pub fn delete_pod(cluster: &Cluster, namespace: &str, name: &str) -> bool {
    let Some(pod) = cluster.store.get(&PODS, namespace, name) else {
        return false;
    };
    for container in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let container = container["name"].as_str().unwrap_or("");
        cluster.events.record(
            &cluster.store,
            &pod,
            events::Severity::Normal,
            "Killing",
            &format!("Stopping container {container}"),
            "kubelet",
        );
    }
    cluster.store.delete(&PODS, namespace, name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_hash_follows_the_template() {
        let a = json!({"spec": {"containers": [{"name": "web", "image": "web:1"}]}});
        let b = json!({"spec": {"containers": [{"name": "web", "image": "web:2"}]}});
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert_eq!(template_hash(&a).len(), 10);
    }
}
