//! Kubernetes objects as the model's values: a pod as a [`Replica`], a Deployment or
//! StatefulSet as a [`Controller`], a core Event as an [`EngineEvent`], and who scales what
//! (HPAs and KEDA ScaledObjects by their `scaleTargetRef`).
//!
//! Not for fetching anything: every function here is pure, and what it needs from other objects
//! (a ReplicaSet's owner, the autoscaler of a workload) is passed in.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStatus, EnvVar, Event, Pod, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;

use crate::model::{
    Controller, CpuLimit, EngineEvent, Health, PortMapping, Replica, ReplicaDetails, RevisionMark,
    Security, WorkloadKind,
};
use crate::text::sanitize_plain;

/// The annotation a Deployment's controller keeps its revision in.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
use super::actions::ROLLED_BACK_ANNOTATION;

/// How long a running pod that is not Ready yet counts as starting rather than unhealthy.
pub const STARTING_GRACE: Duration = Duration::seconds(30);

/// Whether `name` can name an object: a DNS subdomain (RFC 1123) of lower-case letters,
/// digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters.
pub fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// `NAMESPACE/NAME` of an object.
pub fn qualified(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// A pod's id in the model: its uid, or `NAMESPACE/NAME` if it has none.
pub fn pod_id(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => qualified(&pod.metadata),
    }
}

/// A pod as a replica. `deployment_of(namespace, replicaset)` names the Deployment that owns a
/// ReplicaSet, if it is known; `now` tells a pod that is still starting from one that fails
/// its readiness.
pub fn replica(
    pod: &Pod,
    deployment_of: &dyn Fn(&str, &str) -> Option<String>,
    now: DateTime<Utc>,
) -> Replica {
    let meta = &pod.metadata;
    let empty_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty_spec);
    let empty_status = PodStatus::default();
    let status = pod.status.as_ref().unwrap_or(&empty_status);
    let statuses = status.container_statuses.as_deref().unwrap_or_default();

    let state = state_word(pod, statuses);
    let health = health(status, statuses, &state, now);
    Replica {
        id: pod_id(pod),
        name: meta.name.clone().unwrap_or_default(),
        image: spec
            .containers
            .first()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        status: status_column(pod),
        state,
        health,
        created: meta.creation_timestamp.as_ref().and_then(|t| time(&t.0)),
        started_at: started_at(status, statuses),
        restart_count: statuses
            .iter()
            .map(|s| u64::try_from(s.restart_count).unwrap_or(0))
            .sum(),
        ports: ports(&spec.containers),
        labels: meta.labels.clone().unwrap_or_default(),
        details: Some(details(spec)),
        cpu_limit: Some(cpu_requests(&spec.containers)),
        workload: Some(workload(meta, deployment_of)),
    }
}

/// A jiff timestamp (k8s-openapi's) as chrono's.
pub fn time(t: &Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(t.subsec_nanosecond()).unwrap_or(0);
    DateTime::from_timestamp(t.as_second(), nanos)
}

/// The workload of a pod: the Deployment through its ReplicaSet, its StatefulSet, else itself.
fn workload(
    meta: &ObjectMeta,
    deployment_of: &dyn Fn(&str, &str) -> Option<String>,
) -> (WorkloadKind, String) {
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    if let Some(owner) = controller_owner(meta) {
        match owner.kind.as_str() {
            "ReplicaSet" => {
                if let Some(deployment) = deployment_of(namespace, &owner.name) {
                    return (
                        WorkloadKind::Deployment,
                        format!("{namespace}/{deployment}"),
                    );
                }
            }
            "StatefulSet" => {
                return (
                    WorkloadKind::StatefulSet,
                    format!("{namespace}/{}", owner.name),
                );
            }
            _ => {}
        }
    }
    (WorkloadKind::Pod, qualified(meta))
}

/// The owner reference marked as the object's controller (the first owner if none is marked).
pub fn controller_owner(meta: &ObjectMeta) -> Option<&OwnerReference> {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
}

/// The Deployment that owns a ReplicaSet, by its metadata.
pub fn replicaset_owner(meta: &ObjectMeta) -> Option<String> {
    controller_owner(meta)
        .filter(|o| o.kind == "Deployment")
        .map(|o| o.name.clone())
}

/// Docker's state words where they fit: `running`, `pending`, `restarting` (crash-looping),
/// `exited` (succeeded or failed), `unknown`.
fn state_word(pod: &Pod, statuses: &[ContainerStatus]) -> String {
    let crash_looping = statuses
        .iter()
        .any(|s| waiting_reason(s.state.as_ref()) == Some("CrashLoopBackOff"));
    if crash_looping {
        return "restarting".to_string();
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    match phase {
        Some("Running") => "running",
        Some("Pending") | None => "pending",
        Some("Succeeded") | Some("Failed") => "exited",
        Some(_) => "unknown",
    }
    .to_string()
}

fn waiting_reason(state: Option<&ContainerState>) -> Option<&str> {
    state?.waiting.as_ref()?.reason.as_deref()
}

/// Health from the Ready condition: Ready is healthy; running but not Ready is starting within
/// [`STARTING_GRACE`] of the last change of readiness (or while a startup probe has not
/// passed), unhealthy after it. Pods that are not running have none.
// LIMITATION: a pod that stays not Ready is shown as starting until its next change reaches
// the worker, since the worker does not revisit pods on a timer.
fn health(
    status: &PodStatus,
    statuses: &[ContainerStatus],
    state: &str,
    now: DateTime<Utc>,
) -> Option<Health> {
    if state != "running" {
        return None;
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let ready = conditions.iter().find(|c| c.type_ == "Ready");
    if ready.is_some_and(|c| c.status == "True") {
        return Some(Health::Healthy);
    }
    if statuses.iter().any(|s| s.started == Some(false)) {
        return Some(Health::Starting);
    }
    let since = ready
        .and_then(|c| c.last_transition_time.as_ref())
        .or(status.start_time.as_ref())
        .and_then(|t| time(&t.0));
    match since {
        Some(since) if now - since < STARTING_GRACE => Some(Health::Starting),
        Some(_) => Some(Health::Unhealthy),
        None => Some(Health::Starting),
    }
}

/// The one-line status kubectl's STATUS column shows: `Running`, `ContainerCreating`,
/// `CrashLoopBackOff`, `Completed`, `Init:0/1`, `Terminating`, ...
pub fn status_column(pod: &Pod) -> String {
    let Some(status) = pod.status.as_ref() else {
        return "Pending".to_string();
    };
    let mut reason = status
        .reason
        .clone()
        .or_else(|| status.phase.clone())
        .unwrap_or_else(|| "Pending".to_string());

    let inits = status
        .init_container_statuses
        .as_deref()
        .unwrap_or_default();
    let mut initializing = false;
    for (i, init) in inits.iter().enumerate() {
        let state = init.state.as_ref();
        if let Some(done) = state.and_then(|s| s.terminated.as_ref()) {
            if done.exit_code == 0 {
                continue;
            }
            reason = match (&done.reason, done.signal) {
                (Some(r), _) if !r.is_empty() => format!("Init:{r}"),
                (_, Some(signal)) if signal != 0 => format!("Init:Signal:{signal}"),
                _ => format!("Init:ExitCode:{}", done.exit_code),
            };
        } else if let Some(r) = waiting_reason(state).filter(|r| *r != "PodInitializing") {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", inits.len());
        }
        initializing = true;
        break;
    }

    if !initializing {
        let statuses = status.container_statuses.as_deref().unwrap_or_default();
        let mut has_running = false;
        for s in statuses.iter().rev() {
            let state = s.state.as_ref();
            if let Some(r) = waiting_reason(state).filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if let Some(done) = state.and_then(|s| s.terminated.as_ref()) {
                reason = match (&done.reason, done.signal) {
                    (Some(r), _) if !r.is_empty() => r.clone(),
                    (_, Some(signal)) if signal != 0 => format!("Signal:{signal}"),
                    _ => format!("ExitCode:{}", done.exit_code),
                };
            } else if s.ready && state.and_then(|s| s.running.as_ref()).is_some() {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".to_string();
        }
    }

    if pod.metadata.deletion_timestamp.is_some() {
        reason = "Terminating".to_string();
    }
    sanitize_plain(&reason)
}

/// When the pod's first container started running, else when the pod started.
fn started_at(status: &PodStatus, statuses: &[ContainerStatus]) -> Option<DateTime<Utc>> {
    let running = statuses
        .iter()
        .filter_map(|s| s.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .min();
    running
        .or(status.start_time.as_ref())
        .and_then(|t| time(&t.0))
}

/// Container ports; a pod's ports are not published on a host port here.
fn ports(containers: &[Container]) -> Vec<PortMapping> {
    containers
        .iter()
        .flat_map(|c| c.ports.as_deref().unwrap_or_default())
        .filter_map(|p| {
            Some(PortMapping {
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                host_port: None,
                host_ip: None,
            })
        })
        .collect()
}

/// The sum of the containers' CPU requests, which utilization is measured against (as the HPA
/// does); unlimited when no container requests any.
pub fn cpu_requests(containers: &[Container]) -> CpuLimit {
    let cores: f64 = containers
        .iter()
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get("cpu"))
        .filter_map(|q| parse_cpu(&q.0))
        .sum();
    if cores > 0.0 {
        CpuLimit::Cores(cores)
    } else {
        CpuLimit::Unlimited
    }
}

/// A CPU quantity in cores: `250m`, `0.5`, `2`, `100000n`, `1e3m`.
pub fn parse_cpu(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let (number, scale) = match q.char_indices().last()? {
        (i, 'm') => (&q[..i], 1e-3),
        (i, 'u') => (&q[..i], 1e-6),
        (i, 'n') => (&q[..i], 1e-9),
        (i, 'k') => (&q[..i], 1e3),
        _ => (q, 1.0),
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value * scale)
}

/// A memory quantity in bytes: `128974848`, `129e6`, `129M`, `123Mi`, `1Gi`, `512Ki`.
pub fn parse_memory(quantity: &str) -> Option<u64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("k", 1e3),
        ("K", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("m", 1e-3),
    ];
    let q = quantity.trim();
    let (number, scale) = SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| q.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((q, 1.0));
    let value: f64 = number.parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    // Rounded up, as Kubernetes reads a fractional byte count; the range is checked above.
    Some((value * scale).ceil() as u64)
}

/// Env (values as the spec gives them), security settings and command of a pod's containers.
fn details(spec: &PodSpec) -> ReplicaDetails {
    let several = spec.containers.len() > 1;
    let mut env = Vec::new();
    for container in &spec.containers {
        for var in container.env.as_deref().unwrap_or_default() {
            let name = if several {
                format!("{}/{}", container.name, var.name)
            } else {
                var.name.clone()
            };
            env.push((sanitize_plain(&name), sanitize_plain(&env_value(var))));
        }
    }
    let command = spec
        .containers
        .first()
        .map(|c| {
            let command = c.command.iter().flatten();
            command.chain(c.args.iter().flatten()).cloned().collect()
        })
        .unwrap_or_default();
    ReplicaDetails {
        env,
        security: security(spec),
        command,
    }
}

/// An env variable's value, or where it comes from when the spec does not hold it.
fn env_value(var: &EnvVar) -> String {
    if let Some(value) = &var.value {
        return value.clone();
    }
    let Some(from) = &var.value_from else {
        return String::new();
    };
    if let Some(secret) = &from.secret_key_ref {
        return format!("(from secret {}/{})", secret.name, secret.key);
    }
    if let Some(map) = &from.config_map_key_ref {
        return format!("(from config map {}/{})", map.name, map.key);
    }
    if let Some(field) = &from.field_ref {
        return format!("(from field {})", field.field_path);
    }
    if let Some(resource) = &from.resource_field_ref {
        return format!("(from resource {})", resource.resource);
    }
    String::new()
}

/// The pod's security settings, the riskiest of its containers' where they differ.
fn security(spec: &PodSpec) -> Security {
    let pod = spec.security_context.as_ref();
    let contexts: Vec<_> = spec
        .containers
        .iter()
        .map(|c| c.security_context.as_ref())
        .collect();
    let privileged = contexts
        .iter()
        .flatten()
        .any(|c| c.privileged == Some(true));
    let pod_user = pod.and_then(|p| p.run_as_user);
    // The user shown is the riskiest: root if any container runs as root.
    let users: Vec<Option<i64>> = contexts
        .iter()
        .map(|c| c.and_then(|c| c.run_as_user).or(pod_user))
        .collect();
    let user = if users.contains(&Some(0)) {
        "0".to_string()
    } else if users.iter().any(Option::is_none) {
        String::new()
    } else {
        users
            .first()
            .copied()
            .flatten()
            .map_or_else(String::new, |u| u.to_string())
    };
    let mut cap_add: Vec<String> = contexts
        .iter()
        .flatten()
        .filter_map(|c| c.capabilities.as_ref()?.add.clone())
        .flatten()
        .collect();
    cap_add.sort();
    cap_add.dedup();
    let read_only_rootfs = !contexts.is_empty()
        && contexts
            .iter()
            .all(|c| c.and_then(|c| c.read_only_root_filesystem) == Some(true));
    let pod_seccomp = pod
        .and_then(|p| p.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str());
    let seccomp = contexts
        .iter()
        .flatten()
        .filter_map(|c| c.seccomp_profile.as_ref().map(|p| p.type_.as_str()))
        .chain(pod_seccomp)
        .map(profile_word)
        .max_by_key(|w| w == "unconfined");
    let pod_apparmor = pod
        .and_then(|p| p.app_armor_profile.as_ref())
        .map(|p| p.type_.as_str());
    let apparmor = contexts
        .iter()
        .flatten()
        .filter_map(|c| c.app_armor_profile.as_ref().map(|p| p.type_.as_str()))
        .chain(pod_apparmor)
        .map(profile_word)
        .max_by_key(|w| w == "unconfined");
    Security {
        privileged,
        user,
        seccomp,
        apparmor,
        cap_add,
        read_only_rootfs,
        network_mode: (spec.host_network == Some(true)).then(|| "host".to_string()),
        pid_mode: (spec.host_pid == Some(true)).then(|| "host".to_string()),
    }
}

/// A seccomp or AppArmor profile type in the words Docker uses.
fn profile_word(kind: &str) -> String {
    match kind {
        "Unconfined" => "unconfined".to_string(),
        "RuntimeDefault" => "runtime/default".to_string(),
        "Localhost" => "localhost".to_string(),
        other => other.to_ascii_lowercase(),
    }
}

/// A Deployment as a controller, with the autoscaler that scales it, if any.
pub fn deployment(d: &Deployment, scaled_by: Option<String>) -> Controller {
    let spec = d.spec.as_ref();
    let paused = spec.and_then(|s| s.paused).unwrap_or(false);
    let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
    let image = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let revision = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok());
    Controller {
        kind: WorkloadKind::Deployment,
        name: qualified(&d.metadata),
        desired: u64::try_from(desired).unwrap_or(0),
        image,
        revision,
        paused,
        rollout: deployment_rollout(d, paused, desired),
        scaled_by,
        revisions: Vec::new(),
    }
}

/// A Deployment-owned ReplicaSet's revision, with the Deployment's name (in the ReplicaSet's
/// namespace); `None` for one without an owning Deployment or a revision number.
pub fn replicaset_revision(rs: &ReplicaSet) -> Option<(String, RevisionMark)> {
    let owner = replicaset_owner(&rs.metadata)?;
    let annotations = rs.metadata.annotations.as_ref()?;
    let number = annotations.get(REVISION_ANNOTATION)?.trim().parse().ok()?;
    let image = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let rolled_back = annotations.get(ROLLED_BACK_ANNOTATION).cloned();
    Some((
        owner,
        RevisionMark {
            number,
            image,
            rolled_back,
        },
    ))
}

/// The rollout as `kubectl rollout status` judges it: failed past the progress deadline,
/// paused, progressing until every replica is updated and available, else at rest.
fn deployment_rollout(d: &Deployment, paused: bool, desired: i32) -> Option<String> {
    let status = d.status.as_ref();
    let conditions = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let deadline_exceeded = conditions.iter().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if deadline_exceeded {
        return Some("failed: ProgressDeadlineExceeded".to_string());
    }
    if paused {
        return Some("paused".to_string());
    }
    let generation = d.metadata.generation.unwrap_or(0);
    let observed = status.and_then(|s| s.observed_generation).unwrap_or(0);
    let count = |f: fn(&k8s_openapi::api::apps::v1::DeploymentStatus) -> Option<i32>| {
        status.and_then(f).unwrap_or(0)
    };
    let updated = count(|s| s.updated_replicas);
    let replicas = count(|s| s.replicas);
    let available = count(|s| s.available_replicas);
    let settled =
        observed >= generation && updated >= desired && replicas <= updated && available >= updated;
    (!settled).then(|| "progressing".to_string())
}

/// A StatefulSet as a controller, with the autoscaler that scales it, if any.
pub fn statefulset(s: &StatefulSet, scaled_by: Option<String>) -> Controller {
    let spec = s.spec.as_ref();
    let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
    let image = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let status = s.status.as_ref();
    let generation = s.metadata.generation.unwrap_or(0);
    let observed = status.and_then(|s| s.observed_generation).unwrap_or(0);
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let revisions_differ = status
        .is_some_and(|s| s.update_revision.is_some() && s.current_revision != s.update_revision);
    let settled = observed >= generation && ready >= desired && updated >= desired;
    let rollout = (!settled || revisions_differ).then(|| "progressing".to_string());
    Controller {
        kind: WorkloadKind::StatefulSet,
        name: qualified(&s.metadata),
        desired: u64::try_from(desired).unwrap_or(0),
        image,
        revision: None,
        paused: false,
        rollout,
        scaled_by,
        revisions: Vec::new(),
    }
}

/// What an autoscaler object scales: the workload kind and `NAMESPACE/NAME`.
pub type ScaleTarget = (WorkloadKind, String);

/// The workload an HPA scales, with the phrase naming the HPA.
pub fn hpa_target(hpa: &HorizontalPodAutoscaler) -> Option<(ScaleTarget, String)> {
    let target = &hpa.spec.as_ref()?.scale_target_ref;
    let kind = scalable_kind(&target.kind)?;
    let namespace = hpa.metadata.namespace.as_deref().unwrap_or_default();
    let by = format!("HorizontalPodAutoscaler {}", qualified(&hpa.metadata));
    Some(((kind, format!("{namespace}/{}", target.name)), by))
}

/// The workload a KEDA ScaledObject scales (`spec.scaleTargetRef`, kind Deployment unless it
/// says otherwise), with the phrase naming it.
pub fn scaled_object_target(object: &DynamicObject) -> Option<(ScaleTarget, String)> {
    let target = object.data.get("spec")?.get("scaleTargetRef")?;
    let name = target.get("name")?.as_str()?;
    let kind = target
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("Deployment");
    let kind = scalable_kind(kind)?;
    let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
    let by = format!("ScaledObject {}", qualified(&object.metadata));
    Some(((kind, format!("{namespace}/{name}")), by))
}

fn scalable_kind(kind: &str) -> Option<WorkloadKind> {
    match kind {
        "Deployment" => Some(WorkloadKind::Deployment),
        "StatefulSet" => Some(WorkloadKind::StatefulSet),
        _ => None,
    }
}

/// Who scales each workload, from every autoscaler object's target; with several, the first
/// by name.
pub fn scaled_by_index(
    targets: impl Iterator<Item = (ScaleTarget, String)>,
) -> BTreeMap<ScaleTarget, String> {
    let mut index: BTreeMap<ScaleTarget, String> = BTreeMap::new();
    for (target, by) in targets {
        match index.get(&target) {
            Some(existing) if *existing <= by => {}
            _ => {
                index.insert(target, by);
            }
        }
    }
    index
}

/// A core Event for the detail pane: `kind/name` of what it is about, `reason: message`.
pub fn event(e: &Event) -> EngineEvent {
    let object = &e.involved_object;
    let subject = format!(
        "{}/{}",
        object
            .kind
            .as_deref()
            .unwrap_or("object")
            .to_ascii_lowercase(),
        object.name.as_deref().unwrap_or_default()
    );
    let reason = e.reason.as_deref().unwrap_or("Event");
    let action = match e.message.as_deref() {
        Some(message) if !message.is_empty() => format!("{reason}: {message}"),
        _ => reason.to_string(),
    };
    let when = e
        .last_timestamp
        .as_ref()
        .map(|t| &t.0)
        .or(e.event_time.as_ref().map(|t| &t.0))
        .or(e.first_timestamp.as_ref().map(|t| &t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| &t.0))
        .and_then(time);
    EngineEvent {
        time: when.unwrap_or_else(Utc::now),
        subject: sanitize_plain(&subject),
        action: sanitize_plain(&action),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = format!(
            "{}/tests/fixtures/kubernetes/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn owners(namespace: &str, rs: &str) -> Option<String> {
        (namespace == "shop" && rs == "web-7d9f8b6c4").then(|| "web".to_string())
    }

    #[test]
    fn a_running_ready_pod_of_a_deployment_is_a_healthy_replica_of_it() {
        let pod: Pod = fixture("pod-running.json");
        let r = replica(&pod, &owners, at("2025-06-01T12:00:00Z"));
        assert_eq!(r.id, "5b3c1a4e-0000-4a8e-9a52-1f1d1b2c3d4e");
        assert_eq!(r.name, "web-7d9f8b6c4-x2k9p");
        assert_eq!(r.image, "registry.local/shop/web:1.4");
        assert_eq!(r.state, "running");
        assert_eq!(r.status, "Running");
        assert_eq!(r.health, Some(Health::Healthy));
        assert_eq!(r.restart_count, 3, "summed over both containers");
        assert_eq!(
            r.workload,
            Some((WorkloadKind::Deployment, "shop/web".into()))
        );
        assert_eq!(r.cpu_limit, Some(CpuLimit::Cores(0.35)));
        assert_eq!(r.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(r.ports.len(), 2);
        assert_eq!(r.ports[0].to_string(), "8080/tcp");
        assert_eq!(r.created, Some(at("2025-06-01T10:00:00Z")));
        assert_eq!(r.started_at, Some(at("2025-06-01T10:00:05Z")));
        assert!(r.is_ready());
    }

    #[test]
    fn pod_details_hold_env_from_the_spec_security_and_command() {
        let pod: Pod = fixture("pod-running.json");
        let r = replica(&pod, &owners, at("2025-06-01T12:00:00Z"));
        let details = r.details.unwrap();
        assert_eq!(
            details.env,
            vec![
                ("web/LOG_LEVEL".to_string(), "info".to_string()),
                (
                    "web/DB_PASSWORD".to_string(),
                    "(from secret db/password)".to_string()
                ),
                ("sidecar/MODE".to_string(), "proxy".to_string()),
            ]
        );
        assert_eq!(details.command, vec!["/web", "--port", "8080"]);
        let security = details.security;
        assert!(security.privileged);
        assert_eq!(security.user, "0", "the sidecar runs as root");
        assert_eq!(security.cap_add, vec!["NET_ADMIN"]);
        assert!(!security.read_only_rootfs, "only one container has it");
        assert_eq!(security.network_mode.as_deref(), Some("host"));
        assert_eq!(security.pid_mode, None);
        assert_eq!(security.seccomp.as_deref(), Some("runtime/default"));
        assert!(security.risks().contains(&"cap NET_ADMIN".to_string()));
    }

    #[test]
    fn a_crash_looping_pod_is_restarting_with_the_reason_as_its_status() {
        let pod: Pod = fixture("pod-crashloop.json");
        let r = replica(&pod, &owners, at("2025-06-01T12:00:00Z"));
        assert_eq!(r.state, "restarting");
        assert_eq!(r.status, "CrashLoopBackOff");
        assert_eq!(r.health, None);
        assert_eq!(r.restart_count, 7);
        assert_eq!(
            r.workload,
            Some((WorkloadKind::StatefulSet, "db/pg".into()))
        );
        assert_eq!(r.cpu_limit, Some(CpuLimit::Unlimited));
    }

    #[test]
    fn a_pending_pod_creating_its_container_says_container_creating() {
        let pod: Pod = fixture("pod-creating.json");
        let r = replica(&pod, &|_: &str, _: &str| None, at("2025-06-01T12:00:00Z"));
        assert_eq!(r.state, "pending");
        assert_eq!(r.status, "ContainerCreating");
        assert_eq!(r.health, None);
        assert_eq!(
            r.workload,
            Some((WorkloadKind::Pod, "shop/web-7d9f8b6c4-new".into())),
            "a ReplicaSet whose Deployment is not known leaves the pod on its own"
        );
    }

    #[test]
    fn a_completed_pod_is_exited_and_a_pod_without_owner_is_its_own_workload() {
        let pod: Pod = fixture("pod-completed.json");
        let r = replica(&pod, &owners, at("2025-06-01T12:00:00Z"));
        assert_eq!(r.state, "exited");
        assert_eq!(r.status, "Completed");
        assert_eq!(
            r.workload,
            Some((WorkloadKind::Pod, "default/migrate".into()))
        );
    }

    #[test]
    fn a_running_pod_that_is_not_ready_starts_then_turns_unhealthy() {
        let mut pod: Pod = fixture("pod-running.json");
        let status = pod.status.as_mut().unwrap();
        for c in status.conditions.as_mut().unwrap() {
            if c.type_ == "Ready" {
                c.status = "False".into();
            }
        }
        let soon = replica(&pod, &owners, at("2025-06-01T10:00:20Z"));
        assert_eq!(soon.health, Some(Health::Starting));
        let later = replica(&pod, &owners, at("2025-06-01T10:05:00Z"));
        assert_eq!(later.health, Some(Health::Unhealthy));
        assert!(!later.is_ready());
    }

    #[test]
    fn a_pod_being_deleted_says_terminating() {
        let mut pod: Pod = fixture("pod-running.json");
        pod.metadata.deletion_timestamp = pod.metadata.creation_timestamp.clone();
        assert_eq!(status_column(&pod), "Terminating");
    }

    #[test]
    fn cpu_and_memory_quantities_parse_in_every_suffix() {
        assert_eq!(parse_cpu("250m"), Some(0.25));
        assert_eq!(parse_cpu("2"), Some(2.0));
        assert_eq!(parse_cpu("0.5"), Some(0.5));
        assert_eq!(parse_cpu("1500000n"), Some(0.0015));
        assert_eq!(parse_cpu("lots"), None);
        assert_eq!(parse_cpu(""), None);
        assert_eq!(parse_memory("123Mi"), Some(123 * 1_048_576));
        assert_eq!(parse_memory("1Gi"), Some(1_073_741_824));
        assert_eq!(parse_memory("129M"), Some(129_000_000));
        assert_eq!(parse_memory("4096"), Some(4096));
        assert_eq!(parse_memory("512Ki"), Some(524_288));
        assert_eq!(parse_memory("-1"), None);
    }

    #[test]
    fn a_deployment_at_rest_has_its_count_image_and_revision() {
        let d: Deployment = fixture("deployment.json");
        let c = deployment(&d, None);
        assert_eq!(c.kind, WorkloadKind::Deployment);
        assert_eq!(c.name, "shop/web");
        assert_eq!(c.desired, 5);
        assert_eq!(c.image, "registry.local/shop/web:1.4");
        assert_eq!(c.revision, Some(3));
        assert!(!c.paused);
        assert_eq!(c.rollout, None);
    }

    #[test]
    fn a_deployment_past_its_deadline_is_failed_and_one_updating_is_progressing() {
        let mut d: Deployment = fixture("deployment.json");
        let status = d.status.as_mut().unwrap();
        status.updated_replicas = Some(2);
        assert_eq!(deployment(&d, None).rollout.as_deref(), Some("progressing"));

        let status = d.status.as_mut().unwrap();
        for c in status.conditions.as_mut().unwrap() {
            if c.type_ == "Progressing" {
                c.status = "False".into();
                c.reason = Some("ProgressDeadlineExceeded".into());
            }
        }
        assert_eq!(
            deployment(&d, None).rollout.as_deref(),
            Some("failed: ProgressDeadlineExceeded")
        );

        let mut paused: Deployment = fixture("deployment.json");
        paused.spec.as_mut().unwrap().paused = Some(true);
        let c = deployment(&paused, None);
        assert!(c.paused);
        assert_eq!(c.rollout.as_deref(), Some("paused"));
    }

    #[test]
    fn an_hpa_and_a_scaled_object_name_the_workload_they_scale() {
        let hpa: HorizontalPodAutoscaler = fixture("hpa.json");
        let (target, by) = hpa_target(&hpa).unwrap();
        assert_eq!(target, (WorkloadKind::Deployment, "shop/web".to_string()));
        assert_eq!(by, "HorizontalPodAutoscaler shop/web-hpa");

        let object: DynamicObject = fixture("scaledobject.json");
        let (target, by) = scaled_object_target(&object).unwrap();
        assert_eq!(target, (WorkloadKind::StatefulSet, "db/pg".to_string()));
        assert_eq!(by, "ScaledObject db/pg-queue");

        let index = scaled_by_index([hpa_target(&hpa).unwrap()].into_iter());
        let d: Deployment = fixture("deployment.json");
        let key = (WorkloadKind::Deployment, qualified(&d.metadata));
        let c = deployment(&d, index.get(&key).cloned());
        assert_eq!(
            c.scaled_by.as_deref(),
            Some("HorizontalPodAutoscaler shop/web-hpa")
        );
    }

    #[test]
    fn a_core_event_names_its_object_and_says_reason_and_message() {
        let e: Event = fixture("event.json");
        let ev = event(&e);
        assert_eq!(ev.subject, "pod/web-7d9f8b6c4-x2k9p");
        assert_eq!(
            ev.action,
            "BackOff: Back-off restarting failed container web"
        );
        assert_eq!(ev.time, at("2025-06-01T11:59:00Z"));
    }
}
