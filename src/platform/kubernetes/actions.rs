//! Actions on Kubernetes workloads, through the API as `kubectl` does them: scale through the
//! scale subresource, `rollout restart`, `set image`, `rollout undo`, the revision history and
//! `rollout status`.
//!
//! Not for following a rollout to its end or rolling back by itself (see [`super::rollout`]),
//! nor for checking read-only mode or writing the audit log: the actuator does that before it
//! calls here.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tracing::info;

use crate::model::{WorkloadId, WorkloadKind};

/// The annotation a Deployment's controller numbers its ReplicaSets (and the Deployment) with.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The label a Deployment's controller tells its ReplicaSets' pods apart with.
pub const HASH_LABEL: &str = "pod-template-hash";
/// The pod template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// The annotation `kubectl` keeps a revision's reason for being in.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The annotation Pilothouse's rollout puts on the ReplicaSet of a revision it rolled back
/// from, saying why in a few words. It lives in the cluster, so every machine that rolls back
/// sees it: a rollback to the previous revision passes over a revision so marked.
pub const ROLLED_BACK_ANNOTATION: &str = "pilothouse.dev/rolled-back";
/// The longest reason a mark keeps, in characters; a longer one is cut.
const MARK_MAX_CHARS: usize = 200;

/// Annotations of a Deployment that belong to it rather than to a revision: a rollback keeps
/// the Deployment's own and takes every other one from the ReplicaSet, as `kubectl` does.
const DEPLOYMENT_OWN_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// The field manager named on every change Pilothouse makes.
const FIELD_MANAGER: &str = "pilothouse";

/// Why an action was refused or could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// 401: the kubeconfig's credentials were not accepted.
    #[error(
        "unauthorized: the API server did not accept the credentials to {verb} {resource} \
         {name:?} in namespace {namespace:?} (check the kubeconfig's user)"
    )]
    Unauthorized {
        verb: &'static str,
        resource: &'static str,
        name: String,
        namespace: String,
    },
    /// 403: the user may not do this verb on this resource.
    #[error("forbidden: cannot {verb} {resource} {name:?} in namespace {namespace:?}{}", detail(.message))]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        name: String,
        namespace: String,
        message: String,
    },
    /// 404: the workload (or the object named) does not exist.
    #[error("{kind} {name:?} not found in namespace {namespace:?}")]
    NotFound {
        kind: &'static str,
        name: String,
        namespace: String,
    },
    /// 409: the object changed between reading and writing it.
    #[error(
        "{kind} {name:?} in namespace {namespace:?} changed meanwhile{} (read it again and retry)",
        detail(.message)
    )]
    Conflict {
        kind: &'static str,
        name: String,
        namespace: String,
        message: String,
    },
    /// The API server could not be reached, or the connection broke.
    #[error(
        "cannot reach the Kubernetes API server to {verb} {resource} {name:?}: {}",
        super::watch::client_cause(.source)
    )]
    Unreachable {
        verb: &'static str,
        resource: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Any other answer of the API server that is not a success.
    #[error(
        "the API server refused to {verb} {resource} {name:?} in namespace {namespace:?}: \
         {code} {message}"
    )]
    Api {
        verb: &'static str,
        resource: &'static str,
        name: String,
        namespace: String,
        code: u16,
        message: String,
    },
    /// The API server answered with something that is not what Kubernetes sends.
    #[error("unexpected answer to {verb} {resource} {name:?}: {source}")]
    Response {
        verb: &'static str,
        resource: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Pilothouse itself refuses: the action cannot apply to this workload as it is.
    #[error("{0}")]
    Refused(String),
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// One revision of a Deployment, as its ReplicaSet tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The ReplicaSet's `deployment.kubernetes.io/revision`.
    pub number: u64,
    pub replica_set: String,
    /// The image of the template's first container.
    pub image: String,
    /// Whether the Deployment's template is this revision's.
    pub current: bool,
    /// The ReplicaSet's `spec.replicas` and `status.readyReplicas`.
    pub desired: u64,
    pub ready: u64,
    /// `kubernetes.io/change-cause`, where someone recorded one.
    pub change_cause: Option<String>,
    /// Why Pilothouse rolled back from this revision ([`ROLLED_BACK_ANNOTATION`]), if it did.
    pub rolled_back: Option<String>,
}

/// Where a rollout stands, as `kubectl rollout status` judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutStatus {
    /// Every replica runs the current template and is available.
    Complete { message: String },
    /// Still rolling: the controller has not caught up, or replicas are not updated or ready.
    Waiting { message: String },
    /// `spec.paused`: nothing moves until it is resumed.
    Paused { message: String },
    /// The progress deadline passed (`ProgressDeadlineExceeded`).
    Failed { message: String },
}

impl RolloutStatus {
    /// The line `kubectl rollout status` would print.
    pub fn message(&self) -> &str {
        match self {
            RolloutStatus::Complete { message }
            | RolloutStatus::Waiting { message }
            | RolloutStatus::Paused { message }
            | RolloutStatus::Failed { message } => message,
        }
    }
}

/// What one API call was about, to name it in an error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op<'a> {
    pub verb: &'static str,
    pub resource: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Op<'_> {
    /// The kind a resource names, for messages: `deployments/scale` is a `deployment`.
    fn kind(&self) -> &'static str {
        match self.resource.split('/').next().unwrap_or(self.resource) {
            "deployments" => "deployment",
            "statefulsets" => "statefulset",
            "replicasets" => "replicaset",
            "pods" => "pod",
            "leases" => "lease",
            _ => "object",
        }
    }

    /// The error a failed call of this operation is.
    pub fn fail(&self, err: kube::Error) -> ActionError {
        let name = self.name.to_string();
        let namespace = self.namespace.to_string();
        match err {
            kube::Error::Api(status) => match status.code {
                401 => ActionError::Unauthorized {
                    verb: self.verb,
                    resource: self.resource,
                    name,
                    namespace,
                },
                403 => ActionError::Forbidden {
                    verb: self.verb,
                    resource: self.resource,
                    name,
                    namespace,
                    message: status.message,
                },
                404 => ActionError::NotFound {
                    kind: self.kind(),
                    name,
                    namespace,
                },
                409 => ActionError::Conflict {
                    kind: self.kind(),
                    name,
                    namespace,
                    message: status.message,
                },
                code => ActionError::Api {
                    verb: self.verb,
                    resource: self.resource,
                    name,
                    namespace,
                    code,
                    message: status.message,
                },
            },
            source @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => {
                ActionError::Unreachable {
                    verb: self.verb,
                    resource: self.resource,
                    name,
                    source,
                }
            }
            source => ActionError::Response {
                verb: self.verb,
                resource: self.resource,
                name,
                source,
            },
        }
    }
}

/// Splits a workload's `NAMESPACE/NAME`.
pub fn split_name(workload: &WorkloadId) -> Result<(&str, &str), ActionError> {
    match workload.name.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
            Ok((namespace, name))
        }
        _ => Err(ActionError::Refused(format!(
            "{:?} is not a Kubernetes workload name: expected NAMESPACE/NAME",
            workload.name
        ))),
    }
}

/// The kind of a workload these actions can change, or why not.
fn controller_kind(workload: &WorkloadId) -> Result<Kind, ActionError> {
    match workload.kind {
        WorkloadKind::Deployment => Ok(Kind::Deployment),
        WorkloadKind::StatefulSet => Ok(Kind::StatefulSet),
        other => Err(ActionError::Refused(format!(
            "{} is a {}, not a Deployment or StatefulSet: Kubernetes actions do not apply to it",
            workload.name,
            other.label()
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployment,
    StatefulSet,
}

impl Kind {
    fn resource(self) -> &'static str {
        match self {
            Kind::Deployment => "deployments",
            Kind::StatefulSet => "statefulsets",
        }
    }

    fn scale_resource(self) -> &'static str {
        match self {
            Kind::Deployment => "deployments/scale",
            Kind::StatefulSet => "statefulsets/scale",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
        }
    }
}

/// A Deployment or StatefulSet as these actions need it: its pod template and whether it is
/// paused.
struct Controlled {
    template: PodTemplateSpec,
    paused: bool,
}

async fn read_controlled(
    client: &kube::Client,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Result<Controlled, ActionError> {
    let op = Op {
        verb: "get",
        resource: kind.resource(),
        namespace,
        name,
    };
    let (spec_template, paused) = match kind {
        Kind::Deployment => {
            let found = Api::<Deployment>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| op.fail(e))?;
            let spec = found.spec.unwrap_or_default();
            (spec.template, spec.paused.unwrap_or(false))
        }
        Kind::StatefulSet => {
            let found = Api::<StatefulSet>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| op.fail(e))?;
            (found.spec.unwrap_or_default().template, false)
        }
    };
    Ok(Controlled {
        template: spec_template,
        paused,
    })
}

async fn patch_controller(
    client: &kube::Client,
    kind: Kind,
    op: Op<'_>,
    patch: &Patch<Value>,
) -> Result<(), ActionError> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let result = match kind {
        Kind::Deployment => Api::<Deployment>::namespaced(client.clone(), op.namespace)
            .patch(op.name, &params, patch)
            .await
            .map(drop),
        Kind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), op.namespace)
            .patch(op.name, &params, patch)
            .await
            .map(drop),
    };
    result.map_err(|e| op.fail(e))
}

/// A JSON patch from operations Pilothouse writes itself.
fn json_patch(operations: Value) -> Result<Patch<Value>, ActionError> {
    serde_json::from_value::<json_patch::Patch>(operations)
        .map(Patch::Json)
        .map_err(|e| ActionError::Refused(format!("internal error building a JSON patch: {e}")))
}

/// Sets the replica count through the scale subresource; a conflict is read again and retried
/// once, as `kubectl scale` does.
pub async fn scale(
    client: &kube::Client,
    workload: &WorkloadId,
    replicas: u64,
) -> Result<String, ActionError> {
    let kind = controller_kind(workload)?;
    let (namespace, name) = split_name(workload)?;
    let count = i32::try_from(replicas).map_err(|_| {
        ActionError::Refused(format!(
            "{replicas} replicas is more than Kubernetes accepts for {}",
            workload.name
        ))
    })?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match scale_once(client, kind, namespace, name, count).await {
            Err(ActionError::Conflict { .. }) if attempt < 2 => continue,
            Err(e) => return Err(e),
            Ok(before) => {
                info!(workload = %workload, before, replicas, "scaled");
                return Ok(format!(
                    "scaled {} {namespace}/{name} from {before} to {replicas} replicas",
                    kind.word()
                ));
            }
        }
    }
}

/// One read of the scale subresource and one patch conditional on what was read; the count
/// before.
async fn scale_once(
    client: &kube::Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    replicas: i32,
) -> Result<i32, ActionError> {
    let read = Op {
        verb: "get",
        resource: kind.scale_resource(),
        namespace,
        name,
    };
    let write = Op {
        verb: "patch",
        ..read
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let mut body = json!({ "spec": { "replicas": replicas } });
    let (current, version) = match kind {
        Kind::Deployment => {
            let api = Api::<Deployment>::namespaced(client.clone(), namespace);
            let found = api.get_scale(name).await.map_err(|e| read.fail(e))?;
            (
                found.spec.and_then(|s| s.replicas),
                found.metadata.resource_version,
            )
        }
        Kind::StatefulSet => {
            let api = Api::<StatefulSet>::namespaced(client.clone(), namespace);
            let found = api.get_scale(name).await.map_err(|e| read.fail(e))?;
            (
                found.spec.and_then(|s| s.replicas),
                found.metadata.resource_version,
            )
        }
    };
    if let Some(version) = version {
        body["metadata"] = json!({ "resourceVersion": version });
    }
    let patch = Patch::Merge(body);
    let result = match kind {
        Kind::Deployment => Api::<Deployment>::namespaced(client.clone(), namespace)
            .patch_scale(name, &params, &patch)
            .await
            .map(drop),
        Kind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), namespace)
            .patch_scale(name, &params, &patch)
            .await
            .map(drop),
    };
    result.map_err(|e| write.fail(e))?;
    Ok(current.unwrap_or(0))
}

/// Replaces every replica, as `kubectl rollout restart` does: a new `restartedAt` annotation on
/// the pod template makes a new revision.
pub async fn restart(client: &kube::Client, workload: &WorkloadId) -> Result<String, ActionError> {
    let kind = controller_kind(workload)?;
    let (namespace, name) = split_name(workload)?;
    let current = read_controlled(client, kind, namespace, name).await?;
    if current.paused {
        return Err(ActionError::Refused(format!(
            "cannot restart the paused deployment {namespace}/{name}; resume it first"
        )));
    }
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let patch = Patch::Merge(json!({
        "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT_ANNOTATION: now } } } }
    }));
    let op = Op {
        verb: "patch",
        resource: kind.resource(),
        namespace,
        name,
    };
    patch_controller(client, kind, op, &patch).await?;
    info!(workload = %workload, restarted_at = now, "restarted");
    Ok(format!("restarted {} {namespace}/{name}", kind.word()))
}

/// The indexes of the containers `set image` changes: every one whose image is the first
/// container's, which always includes the first.
fn containers_to_set(template: &PodTemplateSpec) -> Vec<(usize, String, String)> {
    let containers = template
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let first = containers
        .first()
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    containers
        .iter()
        .enumerate()
        .filter(|(i, c)| *i == 0 || c.image.as_deref() == Some(first.as_str()))
        .map(|(i, c)| (i, c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect()
}

/// Rolls out a new image, as `kubectl set image` does, to every container that runs the pod
/// template's first image. Nothing is patched when they all run it already.
pub async fn set_image(
    client: &kube::Client,
    workload: &WorkloadId,
    image: &str,
) -> Result<String, ActionError> {
    let kind = controller_kind(workload)?;
    let (namespace, name) = split_name(workload)?;
    if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
        return Err(ActionError::Refused(format!(
            "{image:?} is not an image reference (for {namespace}/{name})"
        )));
    }
    let current = read_controlled(client, kind, namespace, name).await?;
    let targets = containers_to_set(&current.template);
    if targets.is_empty() {
        return Err(ActionError::Refused(format!(
            "{} {namespace}/{name} has no container in its pod template",
            kind.word()
        )));
    }
    if targets.iter().all(|(_, _, old)| old == image) {
        return Ok(unchanged_message(kind, namespace, name, image));
    }
    let mut operations = Vec::new();
    for (index, container, _) in &targets {
        let base = format!("/spec/template/spec/containers/{index}");
        operations
            .push(json!({ "op": "test", "path": format!("{base}/name"), "value": container }));
        operations
            .push(json!({ "op": "replace", "path": format!("{base}/image"), "value": image }));
    }
    let op = Op {
        verb: "patch",
        resource: kind.resource(),
        namespace,
        name,
    };
    patch_controller(client, kind, op, &json_patch(Value::Array(operations))?).await?;
    let names: Vec<&str> = targets.iter().map(|(_, c, _)| c.as_str()).collect();
    info!(workload = %workload, image, containers = %names.join(", "), "image set");
    Ok(format!(
        "set image of {} {namespace}/{name} to {image} ({})",
        kind.word(),
        names.join(", ")
    ))
}

fn unchanged_message(kind: Kind, namespace: &str, name: &str, image: &str) -> String {
    format!(
        "{} {namespace}/{name} already runs {image}: nothing changed",
        kind.word()
    )
}

/// Whether `set image` to `image` would change nothing in this template.
pub fn runs_image(template: &PodTemplateSpec, image: &str) -> bool {
    let targets = containers_to_set(template);
    !targets.is_empty() && targets.iter().all(|(_, _, old)| old == image)
}

/// A revision number from an object's annotations.
fn revision_of(annotations: Option<&BTreeMap<String, String>>) -> Option<u64> {
    annotations?.get(REVISION_ANNOTATION)?.trim().parse().ok()
}

/// A pod template as JSON without the `pod-template-hash` label, for comparing revisions.
fn without_hash(template: &PodTemplateSpec) -> Value {
    let mut copy = template.clone();
    if let Some(labels) = copy.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    if let Some(meta) = copy.metadata.as_mut() {
        if meta.labels.as_ref().is_some_and(BTreeMap::is_empty) {
            meta.labels = None;
        }
        if meta.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
            meta.annotations = None;
        }
        if *meta == Default::default() {
            copy.metadata = None;
        }
    }
    serde_json::to_value(&copy).unwrap_or(Value::Null)
}

/// Whether two pod templates are the same revision, ignoring the hash label.
pub fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// A Deployment and the ReplicaSets it controls.
pub(crate) struct History {
    pub deployment: Deployment,
    pub replica_sets: Vec<ReplicaSet>,
}

impl History {
    pub fn template(&self) -> PodTemplateSpec {
        self.deployment
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    /// The Deployment's own revision number.
    pub fn revision(&self) -> Option<u64> {
        revision_of(self.deployment.metadata.annotations.as_ref())
    }

    /// The ReplicaSet of the Deployment's current template, if the controller made it yet.
    pub fn current(&self) -> Option<&ReplicaSet> {
        let template = self.template();
        self.replica_sets
            .iter()
            .filter(|rs| rs_template(rs).is_some_and(|t| same_template(t, &template)))
            .max_by_key(|rs| revision_of(rs.metadata.annotations.as_ref()))
    }

    pub fn revisions(&self) -> Vec<Revision> {
        let current = self.current().and_then(|rs| rs.metadata.uid.clone());
        let mut out: Vec<Revision> = self
            .replica_sets
            .iter()
            .filter_map(|rs| {
                let number = revision_of(rs.metadata.annotations.as_ref())?;
                Some(revision_from(
                    rs,
                    number,
                    current.is_some() && rs.metadata.uid == current,
                ))
            })
            .collect();
        out.sort_by_key(|r| r.number);
        out
    }
}

fn rs_template(rs: &ReplicaSet) -> Option<&PodTemplateSpec> {
    rs.spec.as_ref()?.template.as_ref()
}

fn revision_from(rs: &ReplicaSet, number: u64, current: bool) -> Revision {
    let image = rs_template(rs)
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let count = |n: Option<i32>| u64::try_from(n.unwrap_or(0)).unwrap_or(0);
    Revision {
        number,
        replica_set: rs.metadata.name.clone().unwrap_or_default(),
        image,
        current,
        desired: count(rs.spec.as_ref().and_then(|s| s.replicas)),
        ready: count(rs.status.as_ref().and_then(|s| s.ready_replicas)),
        change_cause: annotation(rs, CHANGE_CAUSE_ANNOTATION),
        rolled_back: annotation(rs, ROLLED_BACK_ANNOTATION),
    }
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<String> {
    rs.metadata.annotations.as_ref()?.get(key).cloned()
}

/// Reads a Deployment and the ReplicaSets it controls (its `ownerReferences` with
/// `controller: true`).
pub(crate) async fn history(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<History, ActionError> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| {
            Op {
                verb: "get",
                resource: "deployments",
                namespace,
                name,
            }
            .fail(e)
        })?;
    let uid = deployment.metadata.uid.clone().unwrap_or_default();
    let selector = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let mut params = ListParams::default();
    if !selector.is_empty() {
        params = params.labels(&selector);
    }
    let listed = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(|e| {
            Op {
                verb: "list",
                resource: "replicasets",
                namespace,
                name,
            }
            .fail(e)
        })?;
    let replica_sets = listed
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata.owner_references.as_ref().is_some_and(|owners| {
                owners
                    .iter()
                    .any(|o| o.controller == Some(true) && o.uid == uid && o.kind == "Deployment")
            })
        })
        .collect();
    Ok(History {
        deployment,
        replica_sets,
    })
}

/// What a rollback is called when one is refused.
const ROLLING_BACK: &str = "rolling back";

/// Why a rollback of the StatefulSet `name` is refused, in the words the worker refuses it
/// in, so the console can say it before asking.
pub fn statefulset_rollback_refusal(name: &str) -> String {
    statefulset_refusal(ROLLING_BACK, name)
}

fn statefulset_refusal(what: &str, name: &str) -> String {
    format!(
        "{what} of the StatefulSet {name} is not supported: its revisions are \
         ControllerRevisions, which Pilothouse does not read (use kubectl rollout undo \
         statefulset)"
    )
}

fn deployment_only(workload: &WorkloadId, what: &str) -> Result<(), ActionError> {
    match workload.kind {
        WorkloadKind::Deployment => Ok(()),
        WorkloadKind::StatefulSet => Err(ActionError::Refused(statefulset_refusal(
            what,
            &workload.name,
        ))),
        other => Err(ActionError::Refused(format!(
            "{} is a {}, not a Deployment: it has no revisions",
            workload.name,
            other.label()
        ))),
    }
}

/// A Deployment's revisions, oldest first, from its ReplicaSets' revision annotations.
pub async fn revisions(
    client: &kube::Client,
    workload: &WorkloadId,
) -> Result<Vec<Revision>, ActionError> {
    deployment_only(workload, "the revision history")?;
    let (namespace, name) = split_name(workload)?;
    Ok(history(client, namespace, name).await?.revisions())
}

/// One revision as a rollback to the previous revision weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub number: u64,
    /// The Deployment's template is this revision's.
    pub current: bool,
    /// Pilothouse rolled back from it ([`ROLLED_BACK_ANNOTATION`]).
    pub rolled_back: bool,
}

impl From<&Revision> for Candidate {
    fn from(revision: &Revision) -> Candidate {
        Candidate {
            number: revision.number,
            current: revision.current,
            rolled_back: revision.rolled_back.is_some(),
        }
    }
}

/// Where a rollback to the previous revision goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Previous {
    /// The highest revision below the current one that is not the current template and that
    /// Pilothouse did not roll back from.
    To(u64),
    /// No revision is below the current one.
    Nothing,
    /// Every revision below the current one was rolled back from: these, oldest first.
    AllRolledBack(Vec<u64>),
}

/// Decides where a rollback without a revision goes from revision `current`: as `kubectl
/// rollout undo` does, but passing over the revisions Pilothouse rolled back from, so that an
/// undo after an automatic rollback never returns to the revision that failed.
pub fn previous(candidates: &[Candidate], current: u64) -> Previous {
    let earlier: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.number < current && !c.current)
        .collect();
    if let Some(best) = earlier
        .iter()
        .filter(|c| !c.rolled_back)
        .max_by_key(|c| c.number)
    {
        return Previous::To(best.number);
    }
    if earlier.is_empty() {
        return Previous::Nothing;
    }
    let mut marked: Vec<u64> = earlier.iter().map(|c| c.number).collect();
    marked.sort_unstable();
    Previous::AllRolledBack(marked)
}

/// What a rollback is to do, decided from the history alone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum UndoPlan {
    /// The current template already is that revision's.
    Skip { revision: u64, image: String },
    /// Patch the Deployment to this revision's template and annotations.
    Patch {
        revision: u64,
        image: String,
        template: Value,
        annotations: BTreeMap<String, String>,
        /// Why Pilothouse rolled back from this revision, when `to_revision` named one it did.
        rolled_back: Option<String>,
    },
}

/// Decides a rollback as `kubectl rollout undo` does: `to_revision` exactly, else the previous
/// revision as [`previous`] decides it (the revisions Pilothouse rolled back from passed over).
pub(crate) fn plan_undo(
    history: &History,
    namespace: &str,
    name: &str,
    to_revision: Option<u64>,
) -> Result<UndoPlan, ActionError> {
    if history.deployment.spec.as_ref().and_then(|s| s.paused) == Some(true) {
        return Err(ActionError::Refused(format!(
            "cannot roll back a paused deployment; resume it first ({namespace}/{name})"
        )));
    }
    let revisions = history.revisions();
    let numbers: Vec<u64> = revisions.iter().map(|r| r.number).collect();
    if numbers.is_empty() {
        return Err(ActionError::Refused(format!(
            "no rollout history found for deployment {namespace}/{name}"
        )));
    }
    let chosen = match to_revision {
        Some(wanted) => revisions
            .iter()
            .find(|r| r.number == wanted)
            .ok_or_else(|| {
                ActionError::Refused(format!(
                    "deployment {namespace}/{name} has no revision {wanted}; its revisions are {}",
                    list_numbers(&numbers)
                ))
            })?,
        None => {
            let current = history
                .revision()
                .or_else(|| numbers.last().copied())
                .unwrap_or(0);
            previous_of(&revisions, current, namespace, name)?
        }
    };
    let revision = chosen.number;
    let rs = history
        .replica_sets
        .iter()
        .find(|rs| {
            rs.metadata.name.as_deref() == Some(chosen.replica_set.as_str())
                && revision_of(rs.metadata.annotations.as_ref()) == Some(revision)
        })
        .ok_or_else(|| {
            ActionError::Refused(format!(
                "the ReplicaSet of revision {revision} of deployment {namespace}/{name} has no name"
            ))
        })?;
    let Some(template) = rs_template(rs) else {
        return Err(ActionError::Refused(format!(
            "the ReplicaSet {} of revision {revision} has no pod template to roll back to",
            rs.metadata.name.as_deref().unwrap_or("?")
        )));
    };
    let image = chosen.image.clone();
    if same_template(template, &history.template()) {
        return Ok(UndoPlan::Skip { revision, image });
    }
    let mut copy = template.clone();
    if let Some(labels) = copy.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    let template = serde_json::to_value(&copy).map_err(|e| {
        ActionError::Refused(format!(
            "the template of revision {revision} does not encode: {e}"
        ))
    })?;
    Ok(UndoPlan::Patch {
        revision,
        image,
        template,
        annotations: rollback_annotations(history, rs),
        rolled_back: chosen.rolled_back.clone(),
    })
}

/// The revision a rollback without a revision goes to from `current`, or why there is none.
fn previous_of<'r>(
    revisions: &'r [Revision],
    current: u64,
    namespace: &str,
    name: &str,
) -> Result<&'r Revision, ActionError> {
    let candidates: Vec<Candidate> = revisions.iter().map(Candidate::from).collect();
    let numbers: Vec<u64> = revisions.iter().map(|r| r.number).collect();
    match previous(&candidates, current) {
        Previous::To(number) => revisions
            .iter()
            .find(|r| r.number == number)
            .ok_or_else(|| {
                ActionError::Refused(format!(
                    "internal error: revision {number} of deployment {namespace}/{name} was \
                     chosen but is not in its history"
                ))
            }),
        Previous::Nothing => Err(ActionError::Refused(format!(
            "deployment {namespace}/{name} has no revision before {current} to roll back to; \
             its revisions are {}",
            list_numbers(&numbers)
        ))),
        Previous::AllRolledBack(marked) => {
            let listed: Vec<String> = marked
                .iter()
                .filter_map(|n| revisions.iter().find(|r| r.number == *n))
                .map(|r| {
                    format!(
                        "revision {} ({}): {}",
                        r.number,
                        r.image,
                        r.rolled_back.as_deref().unwrap_or("")
                    )
                })
                .collect();
            Err(ActionError::Refused(format!(
                "deployment {namespace}/{name} has no revision before {current} to roll back to \
                 that Pilothouse did not roll back from; rolled back from: {} (`pilothouse \
                 rollback --to-revision N` goes to one of them anyway)",
                listed.join("; ")
            )))
        }
    }
}

fn list_numbers(numbers: &[u64]) -> String {
    numbers
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Deployment's annotations after a rollback: its own kept, the revision's taken.
fn rollback_annotations(history: &History, rs: &ReplicaSet) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(own) = &history.deployment.metadata.annotations {
        for key in DEPLOYMENT_OWN_ANNOTATIONS {
            if let Some(value) = own.get(*key) {
                out.insert((*key).to_string(), value.clone());
            }
        }
    }
    if let Some(theirs) = &rs.metadata.annotations {
        for (key, value) in theirs {
            // The mark belongs to the ReplicaSet: on the Deployment, Kubernetes' controller would
            // copy it to the ReplicaSets of later revisions.
            if !DEPLOYMENT_OWN_ANNOTATIONS.contains(&key.as_str()) && key != ROLLED_BACK_ANNOTATION
            {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undone {
    /// The revision gone to, as it was numbered (its controller then numbers it anew).
    pub revision: u64,
    /// Its first container's image.
    pub image: String,
    /// False when the template already was that revision's, so nothing was patched.
    pub changed: bool,
    /// Why Pilothouse had rolled back from the revision gone to, when one so marked was asked
    /// for by number.
    pub rolled_back: Option<String>,
    /// One line saying what was done.
    pub message: String,
}

impl Undone {
    /// The warning for a rollback to a revision Pilothouse had rolled back from.
    pub fn warning(&self) -> Option<String> {
        let why = self.rolled_back.as_deref()?;
        Some(format!(
            "revision {} ({}) is one Pilothouse rolled back from: {why}",
            self.revision, self.image
        ))
    }

    /// The message, with the warning after it when there is one: what the console shows.
    pub fn said(&self) -> String {
        match self.warning() {
            Some(warning) => format!("{}; warning: {warning}", self.message),
            None => self.message.clone(),
        }
    }
}

/// Returns a Deployment to an earlier revision, as `kubectl rollout undo` does: `to_revision`,
/// or the previous one, passing over the revisions Pilothouse rolled back from. The controller
/// then scales the old ReplicaSet back up.
pub async fn undo(
    client: &kube::Client,
    workload: &WorkloadId,
    to_revision: Option<u64>,
) -> Result<Undone, ActionError> {
    deployment_only(workload, ROLLING_BACK)?;
    let (namespace, name) = split_name(workload)?;
    let history = history(client, namespace, name).await?;
    let (revision, image, template, annotations, rolled_back) =
        match plan_undo(&history, namespace, name, to_revision)? {
            UndoPlan::Skip { revision, image } => {
                return Ok(Undone {
                    revision,
                    image,
                    changed: false,
                    rolled_back: None,
                    message: format!(
                        "skipped rollback (current template already matches revision {revision})"
                    ),
                });
            }
            UndoPlan::Patch {
                revision,
                image,
                template,
                annotations,
                rolled_back,
            } => (revision, image, template, annotations, rolled_back),
        };
    let patch = json_patch(json!([
        { "op": "replace", "path": "/spec/template", "value": template },
        { "op": "add", "path": "/metadata/annotations", "value": annotations },
    ]))?;
    let op = Op {
        verb: "patch",
        resource: "deployments",
        namespace,
        name,
    };
    patch_controller(client, Kind::Deployment, op, &patch).await?;
    info!(workload = %workload, revision, image, marked = rolled_back.is_some(), "rolled back");
    Ok(Undone {
        message: format!(
            "rolled back deployment {namespace}/{name} to revision {revision} ({image})"
        ),
        revision,
        image,
        changed: true,
        rolled_back,
    })
}

/// The mark's value for `why`: one line, at most [`MARK_MAX_CHARS`] characters.
fn mark_value(why: &str) -> String {
    let line: String = why
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    if line.chars().count() <= MARK_MAX_CHARS {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(MARK_MAX_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Marks the ReplicaSet `replica_set` as a revision Pilothouse rolled back from, with why
/// ([`ROLLED_BACK_ANNOTATION`]); `None` for `why` takes the mark away.
pub async fn mark_rolled_back(
    client: &kube::Client,
    namespace: &str,
    replica_set: &str,
    why: Option<&str>,
) -> Result<(), ActionError> {
    let value = why.map_or(Value::Null, |why| Value::String(mark_value(why)));
    let patch = Patch::Merge(json!({
        "metadata": { "annotations": { ROLLED_BACK_ANNOTATION: value } }
    }));
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .patch(replica_set, &params, &patch)
        .await
        .map(drop)
        .map_err(|e| {
            Op {
                verb: "patch",
                resource: "replicasets",
                namespace,
                name: replica_set,
            }
            .fail(e)
        })
}

/// Where a workload's rollout stands, as `kubectl rollout status` would say.
pub async fn status(
    client: &kube::Client,
    workload: &WorkloadId,
) -> Result<RolloutStatus, ActionError> {
    let kind = controller_kind(workload)?;
    let (namespace, name) = split_name(workload)?;
    let op = Op {
        verb: "get",
        resource: kind.resource(),
        namespace,
        name,
    };
    match kind {
        Kind::Deployment => {
            let found = Api::<Deployment>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| op.fail(e))?;
            Ok(deployment_status(&found))
        }
        Kind::StatefulSet => {
            let found = Api::<StatefulSet>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| op.fail(e))?;
            Ok(statefulset_status(&found))
        }
    }
}

/// The judgement of `kubectl rollout status` on a Deployment, from its generation, counts,
/// `Progressing` condition and `paused`.
pub fn deployment_status(deployment: &Deployment) -> RolloutStatus {
    let name = deployment.metadata.name.as_deref().unwrap_or("");
    let spec = deployment.spec.clone().unwrap_or_default();
    let status = deployment.status.clone().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or(0);
    if generation > status.observed_generation.unwrap_or(0) {
        return RolloutStatus::Waiting {
            message: "Waiting for deployment spec update to be observed...".to_string(),
        };
    }
    let timed_out = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if timed_out {
        return RolloutStatus::Failed {
            message: format!("deployment {name:?} exceeded its progress deadline"),
        };
    }
    let desired = spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let waiting = if updated < desired {
        Some(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {desired} new \
             replicas have been updated..."
        ))
    } else if replicas > updated {
        Some(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending \
             termination...",
            replicas - updated
        ))
    } else if available < updated {
        Some(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated \
             replicas are available..."
        ))
    } else {
        None
    };
    match waiting {
        None => RolloutStatus::Complete {
            message: format!("deployment {name:?} successfully rolled out"),
        },
        Some(message) if spec.paused == Some(true) => RolloutStatus::Paused {
            message: format!("{message} (the deployment is paused: resume it to continue)"),
        },
        Some(message) => RolloutStatus::Waiting { message },
    }
}

/// The judgement of `kubectl rollout status` on a StatefulSet with rolling updates.
pub fn statefulset_status(set: &StatefulSet) -> RolloutStatus {
    let spec = set.spec.clone().unwrap_or_default();
    let status = set.status.clone().unwrap_or_default();
    let strategy = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.clone())
        .unwrap_or_else(|| "RollingUpdate".to_string());
    if strategy != "RollingUpdate" {
        return RolloutStatus::Failed {
            message: format!(
                "rollout status is only available for the RollingUpdate strategy, not {strategy}"
            ),
        };
    }
    let observed = status.observed_generation.unwrap_or(0);
    if observed == 0 || set.metadata.generation.unwrap_or(0) > observed {
        return RolloutStatus::Waiting {
            message: "Waiting for statefulset spec update to be observed...".to_string(),
        };
    }
    let desired = spec.replicas.unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < desired {
        return RolloutStatus::Waiting {
            message: format!("Waiting for {} pods to be ready...", desired - ready),
        };
    }
    let update = status.update_revision.clone().unwrap_or_default();
    if status.current_revision.as_deref().unwrap_or("") != update {
        return RolloutStatus::Waiting {
            message: format!(
                "waiting for statefulset rolling update to complete {} pods at revision {update}...",
                status.updated_replicas.unwrap_or(0)
            ),
        };
    }
    RolloutStatus::Complete {
        message: format!(
            "statefulset rolling update complete {} pods at revision {update}...",
            status.current_replicas.unwrap_or(ready)
        ),
    }
}

/// Pauses or resumes a Deployment's rollout, as `kubectl rollout pause` and `resume` do.
pub async fn set_paused(
    client: &kube::Client,
    workload: &WorkloadId,
    paused: bool,
) -> Result<String, ActionError> {
    deployment_only(workload, if paused { "pausing" } else { "resuming" })?;
    let (namespace, name) = split_name(workload)?;
    let op = Op {
        verb: "patch",
        resource: "deployments",
        namespace,
        name,
    };
    let patch = Patch::Merge(json!({ "spec": { "paused": paused } }));
    patch_controller(client, Kind::Deployment, op, &patch).await?;
    info!(workload = %workload, paused, "rollout paused or resumed");
    Ok(format!(
        "{} deployment {namespace}/{name}",
        if paused { "paused" } else { "resumed" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentCondition, DeploymentSpec, DeploymentStatus, ReplicaSetSpec,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn template(images: &[&str], hash: Option<&str>) -> PodTemplateSpec {
        let mut labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        if let Some(hash) = hash {
            labels.insert(HASH_LABEL.to_string(), hash.to_string());
        }
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: images
                    .iter()
                    .enumerate()
                    .map(|(i, image)| Container {
                        name: format!("c{i}"),
                        image: Some(image.to_string()),
                        ..Container::default()
                    })
                    .collect(),
                ..PodSpec::default()
            }),
        }
    }

    fn replica_set(revision: u64, image: &str, cause: Option<&str>) -> ReplicaSet {
        let mut annotations =
            BTreeMap::from([(REVISION_ANNOTATION.to_string(), revision.to_string())]);
        if let Some(cause) = cause {
            annotations.insert(CHANGE_CAUSE_ANNOTATION.to_string(), cause.to_string());
        }
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("web-{revision}")),
                uid: Some(format!("rs-{revision}")),
                annotations: Some(annotations),
                owner_references: Some(vec![OwnerReference {
                    controller: Some(true),
                    kind: "Deployment".into(),
                    uid: "d1".into(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                template: Some(template(&[image], Some(&format!("h{revision}")))),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        }
    }

    fn history(current_image: &str, revision: u64, paused: bool, sets: Vec<ReplicaSet>) -> History {
        History {
            deployment: Deployment {
                metadata: ObjectMeta {
                    name: Some("web".into()),
                    uid: Some("d1".into()),
                    annotations: Some(BTreeMap::from([
                        (REVISION_ANNOTATION.to_string(), revision.to_string()),
                        ("team".to_string(), "shop".to_string()),
                    ])),
                    ..ObjectMeta::default()
                },
                spec: Some(DeploymentSpec {
                    paused: Some(paused),
                    template: template(&[current_image], None),
                    ..DeploymentSpec::default()
                }),
                status: None,
            },
            replica_sets: sets,
        }
    }

    fn three_revisions(current: u64) -> History {
        let image = format!("web:{current}");
        history(
            &image,
            current,
            false,
            vec![
                replica_set(1, "web:1", None),
                replica_set(2, "web:2", Some("bump")),
                replica_set(3, "web:3", None),
            ],
        )
    }

    #[test]
    fn undo_goes_to_the_highest_revision_below_the_current_one() {
        let plan = plan_undo(&three_revisions(3), "shop", "web", None).unwrap();
        let UndoPlan::Patch {
            revision,
            template,
            annotations,
            ..
        } = plan
        else {
            panic!("expected a patch, got {plan:?}");
        };
        assert_eq!(revision, 2);
        assert_eq!(template["spec"]["containers"][0]["image"], "web:2");
        assert_eq!(template["metadata"]["labels"], json!({ "app": "web" }));
        assert_eq!(
            annotations.get(REVISION_ANNOTATION).map(String::as_str),
            Some("3")
        );
        assert_eq!(
            annotations.get(CHANGE_CAUSE_ANNOTATION).map(String::as_str),
            Some("bump")
        );
        assert!(!annotations.contains_key("team"), "{annotations:?}");
    }

    #[test]
    fn undo_to_a_revision_that_is_the_current_template_is_skipped() {
        let plan = plan_undo(&three_revisions(3), "shop", "web", Some(3)).unwrap();
        assert_eq!(
            plan,
            UndoPlan::Skip {
                revision: 3,
                image: "web:3".into()
            }
        );
    }

    #[test]
    fn undo_to_an_unknown_revision_lists_those_there_are() {
        let err = plan_undo(&three_revisions(3), "shop", "web", Some(7)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "deployment shop/web has no revision 7; its revisions are 1, 2, 3"
        );
    }

    #[test]
    fn a_paused_deployment_is_not_rolled_back() {
        let mut paused = three_revisions(3);
        paused.deployment.spec.as_mut().unwrap().paused = Some(true);
        let err = plan_undo(&paused, "shop", "web", None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot roll back a paused deployment; resume it first"),
            "{err}"
        );
    }

    #[test]
    fn the_first_revision_has_nothing_before_it() {
        let only = history("web:1", 1, false, vec![replica_set(1, "web:1", None)]);
        let err = plan_undo(&only, "shop", "web", None).unwrap_err();
        assert!(err.to_string().contains("no revision before 1"), "{err}");
    }

    /// `three_revisions(current)` with these revisions marked as rolled back from.
    fn marked(current: u64, marks: &[(u64, &str)]) -> History {
        let mut found = three_revisions(current);
        for rs in &mut found.replica_sets {
            let number = revision_of(rs.metadata.annotations.as_ref());
            if let Some((_, why)) = marks.iter().find(|(n, _)| Some(*n) == number) {
                rs.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(ROLLED_BACK_ANNOTATION.to_string(), why.to_string());
            }
        }
        found
    }

    fn planned_revision(plan: &UndoPlan) -> u64 {
        match plan {
            UndoPlan::Skip { revision, .. } | UndoPlan::Patch { revision, .. } => *revision,
        }
    }

    #[test]
    fn undo_passes_over_a_revision_pilothouse_rolled_back_from() {
        let plan = plan_undo(&marked(3, &[(2, "it crash-loops")]), "shop", "web", None).unwrap();
        assert_eq!(planned_revision(&plan), 1);
        let UndoPlan::Patch {
            image, rolled_back, ..
        } = plan
        else {
            panic!("expected a patch, got {plan:?}");
        };
        assert_eq!(image, "web:1");
        assert_eq!(rolled_back, None);
    }

    #[test]
    fn undo_when_every_earlier_revision_was_rolled_back_from_lists_them_with_why() {
        let history = marked(3, &[(1, "timed out after 5m"), (2, "it crash-loops")]);
        let err = plan_undo(&history, "shop", "web", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "deployment shop/web has no revision before 3 to roll back to that Pilothouse did \
             not roll back from; rolled back from: revision 1 (web:1): timed out after 5m; \
             revision 2 (web:2): it crash-loops (`pilothouse rollback --to-revision N` goes to \
             one of them anyway)"
        );
    }

    #[test]
    fn undo_to_a_named_revision_goes_there_even_when_it_was_rolled_back_from() {
        let history = marked(3, &[(2, "it crash-loops")]);
        let plan = plan_undo(&history, "shop", "web", Some(2)).unwrap();
        let UndoPlan::Patch {
            revision,
            image,
            rolled_back,
            annotations,
            ..
        } = plan
        else {
            panic!("expected a patch, got {plan:?}");
        };
        assert_eq!((revision, image.as_str()), (2, "web:2"));
        assert_eq!(rolled_back.as_deref(), Some("it crash-loops"));
        assert!(
            !annotations.contains_key(ROLLED_BACK_ANNOTATION),
            "the mark stays on the ReplicaSet, not the Deployment: {annotations:?}"
        );
    }

    #[test]
    fn a_mark_on_the_current_revision_does_not_stop_an_undo() {
        let plan = plan_undo(
            &marked(3, &[(3, "aborted by an operator")]),
            "shop",
            "web",
            None,
        );
        assert_eq!(planned_revision(&plan.unwrap()), 2);
    }

    #[test]
    fn previous_passes_over_the_current_template_even_below_the_deployments_number() {
        // Just after an undo to revision 1: the template is 1's, the controller has not
        // renumbered it yet, so the Deployment still says 3.
        let candidates = [
            Candidate {
                number: 1,
                current: true,
                rolled_back: false,
            },
            Candidate {
                number: 2,
                current: false,
                rolled_back: false,
            },
            Candidate {
                number: 3,
                current: false,
                rolled_back: true,
            },
        ];
        assert_eq!(previous(&candidates, 3), Previous::To(2));
        assert_eq!(previous(&candidates[..1], 3), Previous::Nothing);
        let mut all_marked = candidates;
        all_marked[1].rolled_back = true;
        assert_eq!(previous(&all_marked, 3), Previous::AllRolledBack(vec![2]));
        assert_eq!(
            previous(&all_marked, 4),
            Previous::AllRolledBack(vec![2, 3])
        );
    }

    #[test]
    fn a_mark_is_one_line_and_a_long_reason_is_cut() {
        assert_eq!(mark_value("  crash\nloops\u{1b}[2J "), "crash loops [2J");
        let long = "x".repeat(500);
        let cut = mark_value(&long);
        assert_eq!(cut.chars().count(), MARK_MAX_CHARS);
        assert!(cut.ends_with('…'), "{cut}");
    }

    #[test]
    fn revisions_mark_the_one_whose_template_the_deployment_runs() {
        let revisions = three_revisions(2).revisions();
        let current: Vec<u64> = revisions
            .iter()
            .filter(|r| r.current)
            .map(|r| r.number)
            .collect();
        assert_eq!(current, vec![2]);
        assert_eq!(revisions[1].image, "web:2");
        assert_eq!(revisions[1].change_cause.as_deref(), Some("bump"));
        assert_eq!(revisions[1].rolled_back, None);
        let marks = marked(3, &[(2, "it crash-loops")]).revisions();
        assert_eq!(marks[1].rolled_back.as_deref(), Some("it crash-loops"));
    }

    #[test]
    fn set_image_changes_every_container_running_the_first_image() {
        let pod = template(&["web:1", "sidecar:1", "web:1"], None);
        let chosen: Vec<usize> = containers_to_set(&pod).iter().map(|(i, _, _)| *i).collect();
        assert_eq!(chosen, vec![0, 2]);
        assert!(runs_image(
            &template(&["web:2", "sidecar:1"], None),
            "web:2"
        ));
        assert!(!runs_image(&pod, "web:2"));
    }

    fn rolling(generation: i64, observed: i64, counts: (i32, i32, i32, i32)) -> Deployment {
        let (desired, updated, replicas, available) = counts;
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(desired),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                updated_replicas: Some(updated),
                replicas: Some(replicas),
                available_replicas: Some(available),
                ..DeploymentStatus::default()
            }),
        }
    }

    #[test]
    fn rollout_status_says_what_kubectl_says() {
        let message = |d: &Deployment| deployment_status(d).message().to_string();
        assert_eq!(
            message(&rolling(2, 1, (3, 3, 3, 3))),
            "Waiting for deployment spec update to be observed..."
        );
        assert_eq!(
            message(&rolling(2, 2, (3, 1, 4, 1))),
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
        assert_eq!(
            message(&rolling(2, 2, (3, 3, 4, 3))),
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
        );
        assert_eq!(
            message(&rolling(2, 2, (3, 3, 3, 1))),
            "Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available..."
        );
        assert!(matches!(
            deployment_status(&rolling(2, 2, (3, 3, 3, 3))),
            RolloutStatus::Complete { .. }
        ));
    }

    #[test]
    fn an_exceeded_progress_deadline_is_a_failed_rollout_and_paused_is_told() {
        let mut late = rolling(2, 2, (3, 1, 4, 3));
        late.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            ..DeploymentCondition::default()
        }]);
        assert_eq!(
            deployment_status(&late),
            RolloutStatus::Failed {
                message: "deployment \"web\" exceeded its progress deadline".into()
            }
        );
        let mut paused = rolling(2, 2, (3, 1, 4, 3));
        paused.spec.as_mut().unwrap().paused = Some(true);
        assert!(matches!(
            deployment_status(&paused),
            RolloutStatus::Paused { .. }
        ));
    }

    #[test]
    fn api_errors_name_the_verb_the_resource_and_the_workload() {
        let op = Op {
            verb: "patch",
            resource: "deployments/scale",
            namespace: "shop",
            name: "web",
        };
        let status = kube::core::Status::failure("denied", "Forbidden").with_code(403);
        let err = op.fail(kube::Error::Api(status.boxed()));
        assert_eq!(
            err.to_string(),
            "forbidden: cannot patch deployments/scale \"web\" in namespace \"shop\": denied"
        );
        let missing = op.fail(kube::Error::Api(
            kube::core::Status::failure("gone", "NotFound")
                .with_code(404)
                .boxed(),
        ));
        assert_eq!(
            missing.to_string(),
            "deployment \"web\" not found in namespace \"shop\""
        );
    }

    #[test]
    fn a_statefulset_rollback_is_refused_in_the_words_the_console_says_before_asking() {
        let set = WorkloadId {
            target: "sandbox".to_string(),
            kind: WorkloadKind::StatefulSet,
            name: "batch/queue".to_string(),
        };
        let Err(ActionError::Refused(why)) = deployment_only(&set, ROLLING_BACK) else {
            panic!("a StatefulSet's rollback was not refused");
        };
        assert_eq!(why, statefulset_rollback_refusal("batch/queue"));
        assert_eq!(
            why,
            "rolling back of the StatefulSet batch/queue is not supported: its revisions are \
             ControllerRevisions, which Pilothouse does not read (use kubectl rollout undo \
             statefulset)"
        );
    }
}
