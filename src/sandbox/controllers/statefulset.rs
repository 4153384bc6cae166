//! The StatefulSet controller: pods `NAME-0` to `NAME-(N-1)`, created in order (each after the
//! one before is Ready, unless `podManagementPolicy: Parallel`), removed from the highest
//! ordinal, and updated from the highest ordinal down, one pod at a time.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::events::Severity;
use super::{
    MANAGER, PodIndex, PodInfo, PodName, delete_pod, pod_from_template, replicas_of, template_hash,
};
use crate::sandbox::Cluster;
use crate::sandbox::resources::{PODS, STATEFULSETS};
use crate::sandbox::store;

pub fn sync_all(cluster: &Cluster, index: &PodIndex) {
    let sets: Vec<Arc<Value>> = cluster
        .store
        .read(|inner| inner.objects(&STATEFULSETS).cloned().collect());
    for set in sets {
        sync(cluster, &set, index.owned(store::uid_of(&set)));
    }
}

fn sync(cluster: &Cluster, set: &Value, pods: &[PodInfo]) {
    let (namespace, name) = (store::namespace_of(set), store::name_of(set));
    let desired = replicas_of(set) as usize;
    let template = set
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let update_revision = format!("{name}-{}", template_hash(&template));
    let parallel = set
        .pointer("/spec/podManagementPolicy")
        .and_then(Value::as_str)
        == Some("Parallel");
    let by_ordinal: HashMap<usize, &PodInfo> = pods
        .iter()
        .filter_map(|p| {
            let ordinal = p.name.strip_prefix(name)?.strip_prefix('-')?.parse().ok()?;
            Some((ordinal, p))
        })
        .collect();

    // Create missing pods in order.
    for ordinal in 0..desired {
        if by_ordinal.contains_key(&ordinal) {
            continue;
        }
        let all_before_ready = (0..ordinal).all(|o| by_ordinal.get(&o).is_some_and(|p| p.ready));
        if !parallel && !all_before_ready {
            break;
        }
        create_pod(cluster, set, &template, ordinal, &update_revision);
        if !parallel {
            break;
        }
    }

    // Remove pods beyond the count, highest first.
    let mut extra: Vec<usize> = by_ordinal
        .keys()
        .copied()
        .filter(|o| *o >= desired)
        .collect();
    extra.sort_unstable_by(|a, b| b.cmp(a));
    let removing = !extra.is_empty();
    for ordinal in extra
        .into_iter()
        .take(if parallel { usize::MAX } else { 1 })
    {
        let pod = format!("{name}-{ordinal}");
        if delete_pod(cluster, namespace, &pod) {
            let message = format!("delete Pod {pod} in StatefulSet {name} successful");
            cluster.events.record(
                &cluster.store,
                set,
                Severity::Normal,
                "SuccessfulDelete",
                &message,
                "statefulset-controller",
            );
        }
    }

    // Roll one out-of-date pod, from the highest ordinal, once all are Ready.
    let on_delete = set
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        == Some("OnDelete");
    let partition = set
        .pointer("/spec/updateStrategy/rollingUpdate/partition")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let all_ready = (0..desired).all(|o| by_ordinal.get(&o).is_some_and(|p| p.ready));
    if !on_delete && !removing && all_ready {
        let stale = (partition..desired).rev().find(|o| {
            by_ordinal
                .get(o)
                .is_some_and(|p| p.revision.as_deref() != Some(&update_revision))
        });
        if let Some(ordinal) = stale {
            let pod = format!("{name}-{ordinal}");
            if delete_pod(cluster, namespace, &pod) {
                let message = format!("delete Pod {pod} in StatefulSet {name} successful");
                cluster.events.record(
                    &cluster.store,
                    set,
                    Severity::Normal,
                    "SuccessfulDelete",
                    &message,
                    "statefulset-controller",
                );
            }
        }
    }

    write_status(cluster, set, pods, &update_revision);
}

fn create_pod(cluster: &Cluster, set: &Value, template: &Value, ordinal: usize, revision: &str) {
    let (namespace, name) = (store::namespace_of(set), store::name_of(set));
    let pod_name = format!("{name}-{ordinal}");
    let ordinal_text = ordinal.to_string();
    let labels = [
        ("controller-revision-hash", revision),
        ("statefulset.kubernetes.io/pod-name", pod_name.as_str()),
        ("apps.kubernetes.io/pod-index", ordinal_text.as_str()),
    ];
    let mut pod = pod_from_template(template, set, PodName::Fixed(&pod_name), &labels);
    pod["spec"]["hostname"] = json!(pod_name);
    if let Some(service) = set.pointer("/spec/serviceName").and_then(Value::as_str) {
        pod["spec"]["subdomain"] = json!(service);
    }
    match cluster.store.create(&PODS, namespace, pod, MANAGER) {
        Ok(_) => {
            let message = format!("create Pod {pod_name} in StatefulSet {name} successful");
            cluster.events.record(
                &cluster.store,
                set,
                Severity::Normal,
                "SuccessfulCreate",
                &message,
                "statefulset-controller",
            );
        }
        Err(error) => {
            let message = format!(
                "create Pod {pod_name} in StatefulSet {name} failed error: {}",
                error.message
            );
            cluster.events.record(
                &cluster.store,
                set,
                Severity::Warning,
                "FailedCreate",
                &message,
                "statefulset-controller",
            );
        }
    }
}

fn write_status(cluster: &Cluster, set: &Value, pods: &[PodInfo], update_revision: &str) {
    let (namespace, name) = (store::namespace_of(set), store::name_of(set));
    let updated = pods
        .iter()
        .filter(|p| p.revision.as_deref() == Some(update_revision))
        .count();
    let ready = pods.iter().filter(|p| p.ready).count();
    let previous = set
        .pointer("/status/currentRevision")
        .and_then(Value::as_str);
    let current_revision = match previous {
        Some(previous) if updated < pods.len() || pods.len() < replicas_of(set) as usize => {
            previous.to_string()
        }
        _ => update_revision.to_string(),
    };
    let current = pods
        .iter()
        .filter(|p| p.revision.as_deref() == Some(&current_revision))
        .count();
    let status = json!({
        "observedGeneration": set["metadata"]["generation"],
        "replicas": pods.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "collisionCount": 0,
    });
    let _ = cluster
        .store
        .update(&STATEFULSETS, namespace, name, MANAGER, |s| {
            s["status"] = status
        });
}
