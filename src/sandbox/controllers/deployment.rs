//! The Deployment controller, as Kubernetes' own behaves: a ReplicaSet per pod template
//! (named by the template's hash), revision numbers, rolling updates within maxSurge and
//! maxUnavailable, Recreate, pause, revision history pruning, progress deadline and status.

use std::sync::Arc;

use serde_json::{Value, json};

use super::events::Severity;
use super::{MANAGER, PodIndex, owner_reference, replicas_of, template_hash};
use crate::sandbox::Cluster;
use crate::sandbox::resources::{DEPLOYMENTS, REPLICASETS};
use crate::sandbox::store::{self, timestamp};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DEFAULT_PROGRESS_DEADLINE: i64 = 600;
const DEFAULT_HISTORY_LIMIT: usize = 10;

/// A ReplicaSet of one Deployment, with its pods counted.
#[derive(Debug, Clone)]
struct Set {
    name: String,
    hash: String,
    revision: u64,
    /// spec.replicas, changed by this pass.
    replicas: i64,
    was: i64,
    pods: i64,
    available: i64,
    object: Arc<Value>,
}

pub fn sync_all(cluster: &Cluster, index: &PodIndex) {
    let (deployments, sets) = cluster.store.read(|inner| {
        let deployments: Vec<Arc<Value>> = inner.objects(&DEPLOYMENTS).cloned().collect();
        let sets: Vec<Arc<Value>> = inner.objects(&REPLICASETS).cloned().collect();
        (deployments, sets)
    });
    for deployment in deployments {
        let uid = store::uid_of(&deployment);
        let owned: Vec<Set> = sets
            .iter()
            .filter(|rs| super::controller_of(rs).is_some_and(|(_, owner)| owner == uid))
            .map(|rs| set_of(rs, index))
            .collect();
        sync(cluster, &deployment, owned);
    }
}

fn set_of(rs: &Arc<Value>, index: &PodIndex) -> Set {
    let pods = index.owned(store::uid_of(rs));
    let revision = rs
        .pointer(&format!(
            "/metadata/annotations/{}",
            REVISION.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let replicas = replicas_of(rs);
    Set {
        name: store::name_of(rs).to_string(),
        hash: rs
            .pointer("/metadata/labels/pod-template-hash")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        revision,
        replicas,
        was: replicas,
        pods: pods.len() as i64,
        available: pods.iter().filter(|p| p.ready).count() as i64,
        object: rs.clone(),
    }
}

/// maxSurge or maxUnavailable: an int, or a percent of `desired` rounded up or down.
fn resolve(value: Option<&Value>, default_percent: i64, desired: i64, round_up: bool) -> i64 {
    let percent = |p: i64| {
        let scaled = p * desired;
        if round_up {
            (scaled + 99) / 100
        } else {
            scaled / 100
        }
    };
    match value {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0).max(0),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.trim().parse().ok()) {
            Some(p) => percent(p),
            None => s.trim().parse().unwrap_or(0),
        },
        _ => percent(default_percent),
    }
}

fn sync(cluster: &Cluster, deployment: &Value, mut sets: Vec<Set>) {
    let desired = replicas_of(deployment);
    let template = deployment
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let hash = template_hash(&template);
    let paused = deployment
        .pointer("/spec/paused")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let max_revision = sets.iter().map(|s| s.revision).max().unwrap_or(0);
    sets.sort_by_key(|s| s.revision);

    let mut found = None;
    let current = sets.iter().position(|s| s.hash == hash);
    let new = match current {
        Some(i) => {
            if sets[i].revision < max_revision && !paused {
                let revision = max_revision + 1;
                set_revision(cluster, &sets[i], revision);
                sets[i].revision = revision;
                found = Some(Progress::FoundNew);
            }
            Some(i)
        }
        None if paused => None,
        None => match create_set(cluster, deployment, &template, &hash, max_revision + 1) {
            Some(set) => {
                found = Some(Progress::CreatedNew);
                sets.push(set);
                Some(sets.len() - 1)
            }
            None => None,
        },
    };

    if let Some(new) = new {
        scale_sets(deployment, &mut sets, new, desired, paused);
        write_scales(cluster, deployment, &sets);
    }

    prune_history(cluster, deployment, &sets, new);

    write_status(cluster, deployment, &sets, new, desired, found);
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Progress {
    CreatedNew,
    FoundNew,
}

fn create_set(
    cluster: &Cluster,
    deployment: &Value,
    template: &Value,
    hash: &str,
    revision: u64,
) -> Option<Set> {
    let namespace = store::namespace_of(deployment);
    let name = format!("{}-{hash}", store::name_of(deployment));
    let mut template = template.clone();
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = deployment
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or_else(|| json!({}));
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let mut labels = deployment
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    labels["pod-template-hash"] = json!(hash);
    let desired = replicas_of(deployment);
    let rs = json!({
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                REVISION: revision.to_string(),
                "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                "deployment.kubernetes.io/max-replicas": desired.to_string(),
            },
            "ownerReferences": [owner_reference(deployment)],
        },
        "spec": {
            "replicas": 0,
            "minReadySeconds": deployment.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0)),
            "selector": selector,
            "template": template,
        },
    });
    let created = cluster
        .store
        .create(&REPLICASETS, namespace, rs, MANAGER)
        .ok()?;
    Some(Set {
        name: store::name_of(&created).to_string(),
        hash: hash.to_string(),
        revision,
        replicas: 0,
        was: 0,
        pods: 0,
        available: 0,
        object: created,
    })
}

fn set_revision(cluster: &Cluster, set: &Set, revision: u64) {
    let namespace = store::namespace_of(&set.object);
    let _ = cluster
        .store
        .update(&REPLICASETS, namespace, &set.name, MANAGER, |rs| {
            rs["metadata"]["annotations"][REVISION] = json!(revision.to_string());
        });
}

/// Decides the replicas of every ReplicaSet for this pass (in `sets[..].replicas`).
fn scale_sets(deployment: &Value, sets: &mut [Set], new: usize, desired: i64, paused: bool) {
    let olds_active = sets
        .iter()
        .enumerate()
        .any(|(i, s)| i != new && s.replicas > 0);
    if paused {
        if !olds_active {
            sets[new].replicas = desired;
        }
        return;
    }
    let strategy = deployment
        .pointer("/spec/strategy/type")
        .and_then(Value::as_str);
    if strategy == Some("Recreate") {
        let old_pods: i64 = sets
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != new)
            .map(|(_, s)| s.pods)
            .sum();
        for (i, set) in sets.iter_mut().enumerate() {
            if i != new {
                set.replicas = 0;
            }
        }
        if old_pods == 0 {
            sets[new].replicas = desired;
        }
        return;
    }
    let rolling = deployment.pointer("/spec/strategy/rollingUpdate");
    let surge = resolve(rolling.and_then(|r| r.get("maxSurge")), 25, desired, true);
    let mut unavailable = resolve(
        rolling.and_then(|r| r.get("maxUnavailable")),
        25,
        desired,
        false,
    );
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }

    // Scale the new ReplicaSet up within the surge.
    let total: i64 = sets.iter().map(|s| s.replicas).sum();
    if sets[new].replicas < desired {
        let room = (desired + surge - total).max(0);
        sets[new].replicas += room.min(desired - sets[new].replicas);
    } else if sets[new].replicas > desired {
        sets[new].replicas = desired;
    }

    // Scale old ReplicaSets down within the availability floor: unhealthy pods first.
    let min_available = desired - unavailable;
    let new_unavailable = (sets[new].replicas - sets[new].available).max(0);
    let all_pods: i64 = sets.iter().map(|s| s.pods).sum();
    let mut budget = all_pods - min_available - new_unavailable;
    for (i, set) in sets.iter_mut().enumerate() {
        if i == new || budget <= 0 {
            continue;
        }
        let unhealthy = (set.replicas - set.available).max(0).min(budget);
        set.replicas -= unhealthy;
        budget -= unhealthy;
    }
    let available: i64 = sets.iter().map(|s| s.available).sum();
    let mut budget = available - min_available - new_unavailable;
    for (i, set) in sets.iter_mut().enumerate() {
        if i == new || budget <= 0 {
            continue;
        }
        let down = set.replicas.min(budget);
        set.replicas -= down;
        budget -= down;
    }
}

fn write_scales(cluster: &Cluster, deployment: &Value, sets: &[Set]) {
    let namespace = store::namespace_of(deployment);
    let desired = replicas_of(deployment);
    for set in sets.iter().filter(|s| s.replicas != s.was) {
        let written = cluster
            .store
            .update(&REPLICASETS, namespace, &set.name, MANAGER, |rs| {
                rs["spec"]["replicas"] = json!(set.replicas);
                rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                    json!(desired.to_string());
            });
        if written.is_ok() {
            let direction = if set.replicas > set.was { "up" } else { "down" };
            let message = format!(
                "Scaled {direction} replica set {} from {} to {}",
                set.name, set.was, set.replicas
            );
            cluster.events.record(
                &cluster.store,
                deployment,
                Severity::Normal,
                "ScalingReplicaSet",
                &message,
                "deployment-controller",
            );
        }
    }
}

/// Deletes the oldest empty ReplicaSets beyond `revisionHistoryLimit`.
fn prune_history(cluster: &Cluster, deployment: &Value, sets: &[Set], new: Option<usize>) {
    let limit = deployment
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_u64)
        .map(|l| l as usize)
        .unwrap_or(DEFAULT_HISTORY_LIMIT);
    let empty: Vec<&Set> = sets
        .iter()
        .enumerate()
        .filter(|(i, s)| Some(*i) != new && s.replicas == 0 && s.pods == 0)
        .map(|(_, s)| s)
        .collect();
    let excess = empty.len().saturating_sub(limit);
    for set in empty.into_iter().take(excess) {
        let _ = cluster
            .store
            .delete(&REPLICASETS, store::namespace_of(deployment), &set.name);
    }
}

fn write_status(
    cluster: &Cluster,
    deployment: &Value,
    sets: &[Set],
    new: Option<usize>,
    desired: i64,
    found: Option<Progress>,
) {
    let new_set = new.map(|i| &sets[i]);
    let pods: i64 = sets.iter().map(|s| s.pods).sum();
    let available: i64 = sets.iter().map(|s| s.available).sum();
    let total_spec: i64 = sets.iter().map(|s| s.replicas).sum();
    let updated = new_set.map(|s| s.pods).unwrap_or(0);
    let ready = available;
    let rolling = deployment.pointer("/spec/strategy/rollingUpdate");
    let recreate = deployment
        .pointer("/spec/strategy/type")
        .and_then(Value::as_str)
        == Some("Recreate");
    let max_unavailable = if recreate {
        desired
    } else {
        resolve(
            rolling.and_then(|r| r.get("maxUnavailable")),
            25,
            desired,
            false,
        )
    };
    let old = deployment
        .get("status")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let number = |field: &str| old.get(field).and_then(Value::as_i64).unwrap_or(0);
    let counts_changed = number("replicas") != pods
        || number("updatedReplicas") != updated
        || number("readyReplicas") != ready
        || number("availableReplicas") != available;
    let complete = new_set.is_some_and(|s| s.replicas == desired)
        && updated == desired
        && available >= desired
        && pods == desired;
    let now = timestamp();
    let mut conditions: Vec<Value> = old
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();

    let (ok, reason, message) = if available >= desired - max_unavailable {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    set_condition(
        &mut conditions,
        "Available",
        ok,
        reason,
        message,
        &now,
        false,
    );

    let paused = deployment
        .pointer("/spec/paused")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let set_name = new_set.map(|s| s.name.as_str()).unwrap_or("");
    let previous = conditions
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned();
    let previous_reason = previous
        .as_ref()
        .and_then(|c| c["reason"].as_str())
        .unwrap_or("");
    if paused {
        set_condition(
            &mut conditions,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            &now,
            false,
        );
    } else if previous_reason == "DeploymentPaused" {
        set_condition(
            &mut conditions,
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed",
            &now,
            true,
        );
    } else if complete {
        let message = format!("ReplicaSet \"{set_name}\" has successfully progressed.");
        let again = previous_reason != "NewReplicaSetAvailable";
        set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &message,
            &now,
            again,
        );
    } else if found == Some(Progress::CreatedNew) {
        let message = format!("Created new replica set \"{set_name}\"");
        set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &message,
            &now,
            true,
        );
    } else if found == Some(Progress::FoundNew) {
        let message = format!("Found new replica set \"{set_name}\"");
        set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "FoundNewReplicaSet",
            &message,
            &now,
            true,
        );
    } else if counts_changed || sets.iter().any(|s| s.replicas != s.was) {
        let message = format!("ReplicaSet \"{set_name}\" is progressing.");
        set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &message,
            &now,
            true,
        );
    } else if previous_reason != "ProgressDeadlineExceeded"
        && previous_reason != "NewReplicaSetAvailable"
    {
        let deadline = deployment
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE);
        let since = previous
            .as_ref()
            .and_then(|c| c["lastUpdateTime"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let waited =
            since.map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds());
        if waited.is_some_and(|w| w > deadline) {
            let message = format!("ReplicaSet \"{set_name}\" has timed out progressing.");
            set_condition(
                &mut conditions,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &message,
                &now,
                true,
            );
        } else if previous.is_none() {
            let message = format!("ReplicaSet \"{set_name}\" is progressing.");
            set_condition(
                &mut conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &message,
                &now,
                true,
            );
        }
    }

    let status = json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": pods,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (total_spec - available).max(0),
        "conditions": conditions,
    });
    let revision = new_set.map(|s| s.revision.to_string());
    let namespace = store::namespace_of(deployment);
    let name = store::name_of(deployment);
    let _ = cluster
        .store
        .update(&DEPLOYMENTS, namespace, name, MANAGER, |d| {
            d["status"] = status;
            if let Some(revision) = revision {
                d["metadata"]["annotations"][REVISION] = json!(revision);
            }
        });
}

/// Sets a condition; its lastTransitionTime changes only with its status, and its
/// lastUpdateTime when `touched` or the status changes.
fn set_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
    touched: bool,
) {
    let existing = conditions.iter_mut().find(|c| c["type"] == kind);
    match existing {
        Some(condition) => {
            let changed = condition["status"] != status;
            if changed {
                condition["lastTransitionTime"] = json!(now);
            }
            if changed || touched {
                condition["lastUpdateTime"] = json!(now);
            }
            condition["status"] = json!(status);
            condition["reason"] = json!(reason);
            condition["message"] = json!(message);
        }
        None => conditions.push(json!({
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastUpdateTime": now,
            "lastTransitionTime": now,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surge_and_unavailable_resolve_ints_and_percents() {
        assert_eq!(resolve(None, 25, 10, true), 3);
        assert_eq!(resolve(None, 25, 10, false), 2);
        assert_eq!(resolve(Some(&json!(2)), 25, 10, true), 2);
        assert_eq!(resolve(Some(&json!("50%")), 25, 3, true), 2);
        assert_eq!(resolve(Some(&json!("50%")), 25, 3, false), 1);
        assert_eq!(resolve(Some(&json!("0")), 25, 3, false), 0);
    }

    fn set(replicas: i64, pods: i64, available: i64, revision: u64) -> Set {
        Set {
            name: format!("web-{revision}"),
            hash: revision.to_string(),
            revision,
            replicas,
            was: replicas,
            pods,
            available,
            object: Arc::new(json!({})),
        }
    }

    #[test]
    fn a_rolling_update_surges_first_and_keeps_the_floor() {
        let deployment = json!({"spec": {"replicas": 4, "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}});
        let mut sets = vec![set(4, 4, 4, 1), set(0, 0, 0, 2)];
        scale_sets(&deployment, &mut sets, 1, 4, false);
        assert_eq!((sets[0].replicas, sets[1].replicas), (4, 1));
        // The new pod is Ready: one old one goes, one more new one comes.
        let mut sets = vec![set(4, 4, 4, 1), set(1, 1, 1, 2)];
        scale_sets(&deployment, &mut sets, 1, 4, false);
        assert_eq!(sets[0].replicas, 3);
        let mut sets = vec![set(3, 3, 3, 1), set(1, 1, 1, 2)];
        scale_sets(&deployment, &mut sets, 1, 4, false);
        assert_eq!(sets[1].replicas, 2);
    }

    #[test]
    fn a_stalled_new_set_takes_no_old_pod_below_the_floor() {
        let deployment = json!({"spec": {"replicas": 4}});
        // 25% surge = 1, 25% unavailable = 1: the new set may not pass 2 unready pods.
        let mut sets = vec![set(3, 3, 3, 1), set(2, 2, 0, 2)];
        scale_sets(&deployment, &mut sets, 1, 4, false);
        assert_eq!((sets[0].replicas, sets[1].replicas), (3, 2));
    }

    #[test]
    fn recreate_empties_old_sets_before_the_new_one_grows() {
        let deployment = json!({"spec": {"replicas": 2, "strategy": {"type": "Recreate"}}});
        let mut sets = vec![set(2, 2, 2, 1), set(0, 0, 0, 2)];
        scale_sets(&deployment, &mut sets, 1, 2, false);
        assert_eq!((sets[0].replicas, sets[1].replicas), (0, 0));
        let mut sets = vec![set(0, 0, 0, 1), set(0, 0, 0, 2)];
        scale_sets(&deployment, &mut sets, 1, 2, false);
        assert_eq!(sets[1].replicas, 2);
    }
}
