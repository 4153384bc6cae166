//! The ReplicaSet controller: as many pods as the ReplicaSet asks for, and its status.

use std::sync::Arc;

use serde_json::{Value, json};

use super::events::Severity;
use super::{
    CREATE_BURST, MANAGER, PodIndex, PodInfo, PodName, delete_pod, pod_from_template, replicas_of,
};
use crate::sandbox::Cluster;
use crate::sandbox::resources::{PODS, REPLICASETS};
use crate::sandbox::store;

pub fn sync_all(cluster: &Cluster, index: &PodIndex) {
    let sets: Vec<Arc<Value>> = cluster
        .store
        .read(|inner| inner.objects(&REPLICASETS).cloned().collect());
    for set in sets {
        sync(cluster, &set, index.owned(store::uid_of(&set)));
    }
}

fn sync(cluster: &Cluster, set: &Value, pods: &[PodInfo]) {
    let (namespace, name) = (store::namespace_of(set), store::name_of(set));
    let desired = replicas_of(set) as usize;
    if pods.len() < desired {
        create_pods(cluster, set, desired - pods.len());
    } else if pods.len() > desired {
        let mut victims: Vec<&PodInfo> = pods.iter().collect();
        // Not-ready pods go first, then the newest.
        victims.sort_by(|a, b| {
            a.ready
                .cmp(&b.ready)
                .then_with(|| b.created.cmp(&a.created))
        });
        for victim in victims.into_iter().take(pods.len() - desired) {
            if delete_pod(cluster, namespace, &victim.name) {
                let message = format!("Deleted pod: {}", victim.name);
                cluster.events.record(
                    &cluster.store,
                    set,
                    Severity::Normal,
                    "SuccessfulDelete",
                    &message,
                    "replicaset-controller",
                );
            }
        }
    }
    let ready = pods.iter().filter(|p| p.ready).count();
    let status = json!({
        "replicas": pods.len(),
        "fullyLabeledReplicas": pods.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": set["metadata"]["generation"],
    });
    let _ = cluster
        .store
        .update(&REPLICASETS, namespace, name, MANAGER, |set| {
            set["status"] = status
        });
}

fn create_pods(cluster: &Cluster, set: &Value, count: usize) {
    let namespace = store::namespace_of(set);
    let template = &set["spec"]["template"];
    let prefix = format!("{}-", store::name_of(set));
    for _ in 0..count.min(CREATE_BURST) {
        let pod = pod_from_template(template, set, PodName::Generate(&prefix), &[]);
        match cluster.store.create(&PODS, namespace, pod, MANAGER) {
            Ok(pod) => {
                let message = format!("Created pod: {}", store::name_of(&pod));
                cluster.events.record(
                    &cluster.store,
                    set,
                    Severity::Normal,
                    "SuccessfulCreate",
                    &message,
                    "replicaset-controller",
                );
            }
            Err(error) => {
                let message = format!("Error creating: {}", error.message);
                cluster.events.record(
                    &cluster.store,
                    set,
                    Severity::Warning,
                    "FailedCreate",
                    &message,
                    "replicaset-controller",
                );
                return;
            }
        }
    }
}
