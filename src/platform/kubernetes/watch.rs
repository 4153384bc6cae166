//! Keeping a cluster's picture current: one watcher per kind of object (pods, ReplicaSets,
//! Deployments, StatefulSets, HPAs, KEDA ScaledObjects, Events), each re-listing and
//! re-watching by itself with the watcher's backoff, feeding one [`Cluster`] that holds
//! reflector stores (managed fields stripped) and turns what changed into [`Update`]s.
//!
//! Not for sending: [`Cluster::flush`] returns the updates and the session sends them, so a
//! burst of changes becomes one batch, and a list of any size becomes one snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::convert;
use crate::model::{Controller, EngineEvent, RevisionMark, WorkloadKind};
use crate::platform::Update;

/// A ReplicaSet owner change that would move more pods than this is sent as a new snapshot.
const REMAP_AS_SNAPSHOT: usize = 200;

/// How many of the Events a first list finds are shown (the newest).
const EVENTS_ON_LIST: usize = 50;

/// The annotation `kubectl apply` leaves, a copy of the whole object: dropped before storing.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The kinds of object the worker watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pods,
    ReplicaSets,
    Deployments,
    StatefulSets,
    Hpas,
    ScaledObjects,
    Events,
}

impl Kind {
    /// The resource's name in the API, as RBAC rules and kubectl name it.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pods => "pods",
            Kind::ReplicaSets => "replicasets",
            Kind::Deployments => "deployments",
            Kind::StatefulSets => "statefulsets",
            Kind::Hpas => "horizontalpodautoscalers",
            Kind::ScaledObjects => "scaledobjects",
            Kind::Events => "events",
        }
    }

    /// Whether a cluster may lack this API altogether (a 404 on its list).
    fn optional(self) -> bool {
        matches!(self, Kind::ScaledObjects | Kind::Hpas)
    }
}

/// The kinds without which the target shows nothing: when every one of them fails, the target
/// counts as disconnected.
const CORE: [Kind; 4] = [
    Kind::Pods,
    Kind::ReplicaSets,
    Kind::Deployments,
    Kind::StatefulSets,
];

/// What a watcher task hands the session.
#[derive(Debug)]
pub enum Watched {
    Pod(watcher::Event<Pod>),
    ReplicaSet(watcher::Event<ReplicaSet>),
    Deployment(watcher::Event<Deployment>),
    StatefulSet(watcher::Event<StatefulSet>),
    Hpa(watcher::Event<HorizontalPodAutoscaler>),
    ScaledObject(watcher::Event<DynamicObject>),
    Event(watcher::Event<CoreEvent>),
    /// A list or watch failed; the watcher retries after its backoff.
    Failed {
        kind: Kind,
        error: watcher::Error,
    },
    /// The API server does not serve this kind (404 on its list); its watcher stopped.
    // LIMITATION: an API installed later (KEDA after the worker connected) is seen only after
    // the next reconnect, as a stopped watcher does not ask again.
    NotServed(Kind),
}

/// KEDA's ScaledObject, served by the KEDA operator where it is installed.
pub fn scaled_object_resource() -> ApiResource {
    ApiResource {
        group: "keda.sh".to_string(),
        version: "v1alpha1".to_string(),
        api_version: "keda.sh/v1alpha1".to_string(),
        kind: "ScaledObject".to_string(),
        plural: "scaledobjects".to_string(),
    }
}

/// Starts a watcher per kind but Events ([`spawn_events`]), in `namespace` or in every
/// namespace; each sends into `tx` until `tx` is closed or its task is aborted.
pub fn spawn(
    client: &Client,
    namespace: Option<&str>,
    tx: &mpsc::Sender<Watched>,
) -> Vec<JoinHandle<()>> {
    let scaled = scaled_object_resource();
    let scaled_api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &scaled),
        None => Api::all_with(client.clone(), &scaled),
    };
    vec![
        tokio::spawn(forward(
            Kind::Pods,
            api(client, namespace),
            tx.clone(),
            Watched::Pod,
        )),
        tokio::spawn(forward(
            Kind::ReplicaSets,
            api(client, namespace),
            tx.clone(),
            Watched::ReplicaSet,
        )),
        tokio::spawn(forward(
            Kind::Deployments,
            api(client, namespace),
            tx.clone(),
            Watched::Deployment,
        )),
        tokio::spawn(forward(
            Kind::StatefulSets,
            api(client, namespace),
            tx.clone(),
            Watched::StatefulSet,
        )),
        tokio::spawn(forward(
            Kind::Hpas,
            api(client, namespace),
            tx.clone(),
            Watched::Hpa,
        )),
        tokio::spawn(forward(
            Kind::ScaledObjects,
            scaled_api,
            tx.clone(),
            Watched::ScaledObject,
        )),
    ]
}

/// Starts the Events watcher. The worker starts it once the first pod snapshot is out: on a
/// large cluster the Event list is the longest of all (several per pod) and only its newest
/// [`EVENTS_ON_LIST`] are shown, so it must not hold up the first screen.
pub fn spawn_events(
    client: &Client,
    namespace: Option<&str>,
    tx: &mpsc::Sender<Watched>,
) -> JoinHandle<()> {
    tokio::spawn(forward(
        Kind::Events,
        api(client, namespace),
        tx.clone(),
        Watched::Event,
    ))
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Objects asked for per page of a list. kube's default is client-go's 500; a console wants its
/// first screen soon, and on a cluster of 10,000 pods twenty round trips cost more than the
/// memory of a larger page (a few MB at once).
const LIST_PAGE: u32 = 2500;

/// Runs one watcher (managed fields and the last-applied copy stripped before anything keeps
/// an object) and hands on what it sees.
async fn forward<K>(
    kind: Kind,
    api: Api<K>,
    tx: mpsc::Sender<Watched>,
    wrap: fn(watcher::Event<K>) -> Watched,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let stream = watcher(api, watcher::Config::default().page_size(LIST_PAGE))
        .modify(strip::<K>)
        .default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        let watched = match item {
            Ok(event) => wrap(event),
            Err(error) if kind.optional() && is_not_found(&error) => {
                let _ = tx.send(Watched::NotServed(kind)).await;
                return;
            }
            Err(error) => Watched::Failed { kind, error },
        };
        if tx.send(watched).await.is_err() {
            return;
        }
    }
}

fn strip<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    if object.annotations().contains_key(LAST_APPLIED) {
        object.annotations_mut().remove(LAST_APPLIED);
    }
}

fn is_not_found(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.code == 404
    )
}

/// What one failure of a watcher means.
#[derive(Debug, Clone, PartialEq)]
struct Failure {
    /// The line to show, naming the verb, the resource and the scope.
    message: String,
    /// 401 or 403: reported as an event of the target.
    refused: bool,
    /// The kind cannot be listed or watched now (not a stream cut that resumes by itself).
    blocking: bool,
    /// What went wrong underneath, for a transport failure (`Connection refused`).
    transport: Option<String>,
}

/// Names the verb on the resource that failed and how.
fn describe(kind: Kind, error: &watcher::Error, namespace: Option<&str>) -> Failure {
    let (verb, blocking) = match error {
        watcher::Error::InitialListFailed(_) => ("list", true),
        watcher::Error::WatchStartFailed(_) => ("watch", true),
        watcher::Error::WatchError(_) | watcher::Error::WatchFailed(_) => ("watch", false),
        watcher::Error::NoResourceVersion => ("watch", false),
    };
    let code = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    };
    let scope = match namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "at the cluster scope (all namespaces)".to_string(),
    };
    let plural = kind.plural();
    match code {
        Some(code @ (401 | 403)) => {
            let word = if code == 401 {
                "unauthorized"
            } else {
                "forbidden"
            };
            Failure {
                message: format!("{word}: cannot {verb} {plural} {scope} ({code})"),
                refused: true,
                blocking: true,
                transport: None,
            }
        }
        Some(_) => Failure {
            message: format!("cannot {verb} {plural} {scope}: {}", cause(error)),
            refused: false,
            blocking,
            transport: None,
        },
        None => Failure {
            message: format!("cannot {verb} {plural} {scope}: {}", cause(error)),
            refused: false,
            blocking,
            transport: Some(cause(error)),
        },
    }
}

/// The innermost useful text of a watcher error.
fn cause(error: &watcher::Error) -> String {
    match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => client_cause(e),
        watcher::Error::WatchError(s) => format!("{} ({})", s.message, s.code),
        watcher::Error::NoResourceVersion => error.to_string(),
    }
}

/// A client error in one line: the API's own message, or the deepest source of a transport
/// error (what `connection refused` hides under).
pub fn client_cause(error: &kube::Error) -> String {
    if let kube::Error::Api(status) = error {
        let message = if status.message.is_empty() {
            status.reason.as_str()
        } else {
            status.message.as_str()
        };
        return format!("{message} ({})", status.code);
    }
    let mut deepest: &dyn std::error::Error = error;
    while let Some(source) = deepest.source() {
        deepest = source;
    }
    deepest.to_string()
}

/// How one kind's watcher is doing.
#[derive(Debug, Default)]
struct Access {
    /// Why it cannot list or watch now; `None` once it delivered something.
    failing: Option<Failure>,
    /// The refusal last reported, so a watcher retrying does not repeat it.
    reported: Option<String>,
}

/// A cluster as the watchers have shown it, and what of it the store has not been told.
pub struct Cluster {
    target: String,
    namespace: Option<String>,
    pods: reflector::store::Writer<Pod>,
    deployments: reflector::store::Writer<Deployment>,
    statefulsets: reflector::store::Writer<StatefulSet>,
    hpas: reflector::store::Writer<HorizontalPodAutoscaler>,
    scaled_objects: reflector::store::Writer<DynamicObject>,

    /// The Deployment of each ReplicaSet that has one, by (namespace, ReplicaSet).
    rs_owner: Arc<HashMap<(String, String), String>>,
    /// Each Deployment-owned ReplicaSet's revision, by (namespace, ReplicaSet), with its
    /// Deployment (`NAMESPACE/NAME`): what a rollback's confirmation names.
    rs_revisions: HashMap<(String, String), (String, RevisionMark)>,
    /// The ReplicaSets a list in progress has shown, to forget the others when it ends.
    rs_revisions_seen: Option<HashSet<(String, String)>>,
    /// ReplicaSets of a list in progress.
    rs_listing: Option<HashMap<(String, String), String>>,
    rs_listed: bool,
    /// ReplicaSets whose Deployment changed: their pods are sent again.
    remap: HashSet<(String, String)>,

    /// A pod list finished and its snapshot is not sent yet.
    snapshot_due: bool,
    snapshot_sent: bool,
    dirty_pods: HashSet<ObjectRef<Pod>>,
    removed_pods: Vec<String>,

    /// A Deployment or StatefulSet list finished: every controller is sent.
    controllers_due: bool,
    controllers_sent: bool,
    dirty_controllers: HashSet<(WorkloadKind, String)>,
    removed_controllers: Vec<(WorkloadKind, String)>,
    autoscalers_dirty: bool,
    /// What the store was last told of each controller.
    sent: HashMap<(WorkloadKind, String), Controller>,

    /// Events of a list in progress, and the newest event time sent.
    events_listing: Option<Vec<EngineEvent>>,
    newest_event: Option<DateTime<Utc>>,

    access: BTreeMap<Kind, Access>,
    /// Updates made while applying (events, refusals), sent first at the next flush.
    pending: Vec<Update>,
    /// A core kind has delivered something since the session began.
    synced: bool,
}

impl Cluster {
    /// A cluster not yet listed; Events up to `events_seen` were sent by an earlier session and
    /// are not sent again.
    pub fn new(
        target: &str,
        namespace: Option<&str>,
        events_seen: Option<DateTime<Utc>>,
    ) -> Cluster {
        let scaled = scaled_object_resource();
        Cluster {
            target: target.to_string(),
            namespace: namespace.map(str::to_string),
            pods: reflector::store::Writer::default(),
            deployments: reflector::store::Writer::default(),
            statefulsets: reflector::store::Writer::default(),
            hpas: reflector::store::Writer::default(),
            scaled_objects: reflector::store::Writer::new(scaled),
            rs_owner: Arc::new(HashMap::new()),
            rs_revisions: HashMap::new(),
            rs_revisions_seen: None,
            rs_listing: None,
            rs_listed: false,
            remap: HashSet::new(),
            snapshot_due: false,
            snapshot_sent: false,
            dirty_pods: HashSet::new(),
            removed_pods: Vec::new(),
            controllers_due: false,
            controllers_sent: false,
            dirty_controllers: HashSet::new(),
            removed_controllers: Vec::new(),
            autoscalers_dirty: false,
            sent: HashMap::new(),
            events_listing: None,
            newest_event: events_seen,
            access: BTreeMap::new(),
            pending: Vec::new(),
            synced: false,
        }
    }

    /// The pods as last seen, for readers outside the session (logs, metrics).
    pub fn pods(&self) -> Store<Pod> {
        self.pods.as_reader()
    }

    /// The time of the newest Event sent.
    pub fn events_seen(&self) -> Option<DateTime<Utc>> {
        self.newest_event
    }

    /// Whether the pods are known or cannot be: the first snapshot went out, or listing pods
    /// fails.
    pub fn pods_settled(&self) -> bool {
        self.snapshot_sent
            || self
                .access
                .get(&Kind::Pods)
                .is_some_and(|a| a.failing.is_some())
    }

    /// Whether a core kind has been listed or watched since the session began.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The pod with this id (uid), if it is known.
    pub fn pod(&self, id: &str) -> Option<Arc<Pod>> {
        self.pods.as_reader().find(|p| convert::pod_id(p) == id)
    }

    /// A known pod as a replica now.
    pub fn replica_of(&self, pod: &Pod, now: DateTime<Utc>) -> crate::model::Replica {
        let owners = Arc::clone(&self.rs_owner);
        let deployment_of =
            move |ns: &str, rs: &str| owners.get(&(ns.to_string(), rs.to_string())).cloned();
        convert::replica(pod, &deployment_of, now)
    }

    /// Why the target shows nothing: every core kind fails; `None` while one works. One
    /// transport failure shared by all is told once.
    pub fn lost(&self) -> Option<String> {
        let failures: Vec<&Failure> = CORE
            .iter()
            .map(|k| self.access.get(k).and_then(|a| a.failing.as_ref()))
            .collect::<Option<_>>()?;
        let first = failures.first()?;
        if let Some(cause) = &first.transport
            && failures.iter().all(|f| f.transport.as_ref() == Some(cause))
        {
            return Some(format!("the API server does not answer: {cause}"));
        }
        let messages: Vec<&str> = failures.iter().map(|f| f.message.as_str()).collect();
        Some(messages.join("; "))
    }

    /// Takes in one thing a watcher saw.
    pub fn apply(&mut self, watched: Watched) {
        match watched {
            Watched::Pod(event) => {
                self.succeeded(Kind::Pods);
                self.on_pod(&event);
                self.pods.apply_watcher_event(&event);
            }
            Watched::ReplicaSet(event) => {
                self.succeeded(Kind::ReplicaSets);
                self.on_replicaset(event);
            }
            Watched::Deployment(event) => {
                self.succeeded(Kind::Deployments);
                self.on_controller(&event, WorkloadKind::Deployment);
                self.deployments.apply_watcher_event(&event);
            }
            Watched::StatefulSet(event) => {
                self.succeeded(Kind::StatefulSets);
                self.on_controller(&event, WorkloadKind::StatefulSet);
                self.statefulsets.apply_watcher_event(&event);
            }
            Watched::Hpa(event) => {
                self.succeeded(Kind::Hpas);
                self.autoscalers_dirty |= !matches!(event, watcher::Event::Init);
                self.hpas.apply_watcher_event(&event);
            }
            Watched::ScaledObject(event) => {
                self.succeeded(Kind::ScaledObjects);
                self.autoscalers_dirty |= !matches!(event, watcher::Event::Init);
                self.scaled_objects.apply_watcher_event(&event);
            }
            Watched::Event(event) => {
                self.succeeded(Kind::Events);
                self.on_event(event);
            }
            Watched::Failed { kind, error } => self.failed(kind, &error),
            Watched::NotServed(kind) => {
                info!(target = %self.target, resource = kind.plural(), "not served by this cluster; not watched");
            }
        }
    }

    fn succeeded(&mut self, kind: Kind) {
        let access = self.access.entry(kind).or_default();
        access.failing = None;
        access.reported = None;
        self.synced |= CORE.contains(&kind);
    }

    fn failed(&mut self, kind: Kind, error: &watcher::Error) {
        if let watcher::Error::WatchError(status) = error
            && status.code == 410
        {
            debug!(target = %self.target, resource = kind.plural(), "watch expired (410), listing again");
            return;
        }
        let failure = describe(kind, error, self.namespace.as_deref());
        let access = self.access.entry(kind).or_default();
        if failure.blocking {
            access.failing = Some(failure.clone());
        }
        if failure.refused {
            if access.reported.as_deref() == Some(failure.message.as_str()) {
                return;
            }
            access.reported = Some(failure.message.clone());
            warn!(target = %self.target, refused = %failure.message, "kubernetes API refused");
            self.pending.push(Update::Event {
                target: self.target.clone(),
                event: EngineEvent {
                    time: Utc::now(),
                    subject: kind.plural().to_string(),
                    action: failure.message,
                },
            });
        } else {
            debug!(target = %self.target, error = %failure.message, "kubernetes watcher failed");
        }
    }

    fn on_pod(&mut self, event: &watcher::Event<Pod>) {
        match event {
            watcher::Event::InitDone => {
                self.snapshot_due = true;
                self.dirty_pods.clear();
                self.removed_pods.clear();
            }
            watcher::Event::Apply(pod) => {
                self.dirty_pods.insert(ObjectRef::from_obj(pod));
            }
            watcher::Event::Delete(pod) => {
                self.dirty_pods.remove(&ObjectRef::from_obj(pod));
                self.removed_pods.push(convert::pod_id(pod));
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    fn on_replicaset(&mut self, event: watcher::Event<ReplicaSet>) {
        let key = |rs: &ReplicaSet| {
            let meta = &rs.metadata;
            (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            )
        };
        match &event {
            watcher::Event::Init => self.rs_revisions_seen = Some(HashSet::new()),
            watcher::Event::InitApply(rs) | watcher::Event::Apply(rs) => {
                self.note_revision(key(rs), rs);
            }
            watcher::Event::InitDone => {
                let seen = self.rs_revisions_seen.take().unwrap_or_default();
                let gone: Vec<(String, String)> = self
                    .rs_revisions
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    self.forget_revision(&key);
                }
            }
            watcher::Event::Delete(rs) => self.forget_revision(&key(rs)),
        }
        match event {
            watcher::Event::Init => self.rs_listing = Some(HashMap::new()),
            watcher::Event::InitApply(rs) => {
                if let (Some(listing), Some(owner)) = (
                    self.rs_listing.as_mut(),
                    convert::replicaset_owner(&rs.metadata),
                ) {
                    listing.insert(key(&rs), owner);
                }
            }
            watcher::Event::InitDone => {
                let listed = self.rs_listing.take().unwrap_or_default();
                let before = &self.rs_owner;
                let changed = listed
                    .iter()
                    .filter(|(k, v)| before.get(*k) != Some(*v))
                    .map(|(k, _)| k.clone());
                self.remap.extend(changed);
                self.rs_owner = Arc::new(listed);
                self.rs_listed = true;
            }
            watcher::Event::Apply(rs) => {
                let owner = convert::replicaset_owner(&rs.metadata);
                let key = key(&rs);
                if self.rs_owner.get(&key) != owner.as_ref() {
                    let owners = Arc::make_mut(&mut self.rs_owner);
                    match owner {
                        Some(owner) => owners.insert(key.clone(), owner),
                        None => owners.remove(&key),
                    };
                    self.remap.insert(key);
                }
            }
            watcher::Event::Delete(rs) => {
                let key = key(&rs);
                if self.rs_owner.contains_key(&key) {
                    Arc::make_mut(&mut self.rs_owner).remove(&key);
                }
            }
        }
    }

    /// Keeps a ReplicaSet's revision; its Deployment is sent again when it changed.
    fn note_revision(&mut self, key: (String, String), rs: &ReplicaSet) {
        if let Some(seen) = self.rs_revisions_seen.as_mut() {
            seen.insert(key.clone());
        }
        let Some((owner, mark)) = convert::replicaset_revision(rs) else {
            self.forget_revision(&key);
            return;
        };
        let deployment = format!("{}/{owner}", key.0);
        let known = self.rs_revisions.get(&key);
        if known.is_some_and(|(d, m)| *d == deployment && *m == mark) {
            return;
        }
        if let Some((before, _)) = known
            && *before != deployment
        {
            self.dirty_controllers
                .insert((WorkloadKind::Deployment, before.clone()));
        }
        self.dirty_controllers
            .insert((WorkloadKind::Deployment, deployment.clone()));
        self.rs_revisions.insert(key, (deployment, mark));
    }

    fn forget_revision(&mut self, key: &(String, String)) {
        if let Some((deployment, _)) = self.rs_revisions.remove(key) {
            self.dirty_controllers
                .insert((WorkloadKind::Deployment, deployment));
        }
    }

    /// The revisions of every Deployment, oldest first.
    fn revisions_by_deployment(&self) -> HashMap<&str, Vec<RevisionMark>> {
        let mut out: HashMap<&str, Vec<RevisionMark>> = HashMap::new();
        for (deployment, mark) in self.rs_revisions.values() {
            out.entry(deployment.as_str())
                .or_default()
                .push(mark.clone());
        }
        for marks in out.values_mut() {
            marks.sort_by_key(|m| m.number);
        }
        out
    }

    /// The revisions of one Deployment (`NAMESPACE/NAME`), oldest first.
    fn revisions_of(&self, deployment: &str) -> Vec<RevisionMark> {
        let mut marks: Vec<RevisionMark> = self
            .rs_revisions
            .values()
            .filter(|(d, _)| d == deployment)
            .map(|(_, m)| m.clone())
            .collect();
        marks.sort_by_key(|m| m.number);
        marks
    }

    fn on_controller<K: Resource>(&mut self, event: &watcher::Event<K>, kind: WorkloadKind) {
        let key = |o: &K| {
            let meta = o.meta();
            (kind, convert::qualified(meta))
        };
        match event {
            watcher::Event::InitDone => self.controllers_due = true,
            watcher::Event::Apply(o) => {
                self.dirty_controllers.insert(key(o));
            }
            watcher::Event::Delete(o) => {
                let key = key(o);
                self.dirty_controllers.remove(&key);
                self.removed_controllers.push(key);
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    fn on_event(&mut self, event: watcher::Event<CoreEvent>) {
        match event {
            watcher::Event::Init => self.events_listing = Some(Vec::new()),
            watcher::Event::InitApply(e) => {
                if let Some(listing) = self.events_listing.as_mut() {
                    listing.push(convert::event(&e));
                    if listing.len() > 4 * EVENTS_ON_LIST {
                        keep_newest(listing, EVENTS_ON_LIST);
                    }
                }
            }
            watcher::Event::InitDone => {
                let mut listed = self.events_listing.take().unwrap_or_default();
                if let Some(newest) = self.newest_event {
                    listed.retain(|e| e.time > newest);
                }
                keep_newest(&mut listed, EVENTS_ON_LIST);
                for event in listed {
                    self.push_event(event);
                }
            }
            watcher::Event::Apply(e) => self.push_event(convert::event(&e)),
            watcher::Event::Delete(_) => {}
        }
    }

    fn push_event(&mut self, event: EngineEvent) {
        self.newest_event = self.newest_event.max(Some(event.time));
        self.pending.push(Update::Event {
            target: self.target.clone(),
            event,
        });
    }

    /// Everything the store has not been told yet, coalesced: one snapshot after a pod list,
    /// one controller list after a Deployment or StatefulSet list, else one update per pod or
    /// controller that changed (however often it changed).
    pub fn flush(&mut self, now: DateTime<Utc>) -> Vec<Update> {
        let mut out = std::mem::take(&mut self.pending);
        self.flush_pods(now, &mut out);
        self.flush_controllers(&mut out);
        out
    }

    fn flush_pods(&mut self, now: DateTime<Utc>, out: &mut Vec<Update>) {
        self.remap_pods();
        let rs_known = self.rs_listed
            || self
                .access
                .get(&Kind::ReplicaSets)
                .is_some_and(|a| a.failing.is_some());
        if self.snapshot_due && rs_known {
            let reader = self.pods.as_reader();
            let replicas = reader
                .state()
                .iter()
                .map(|pod| self.replica_of(pod, now))
                .collect();
            out.push(Update::Snapshot {
                target: self.target.clone(),
                replicas,
                services: Vec::new(),
            });
            self.snapshot_due = false;
            self.snapshot_sent = true;
            self.dirty_pods.clear();
            self.removed_pods.clear();
            return;
        }
        if !self.snapshot_sent || self.snapshot_due {
            // Nothing to change yet: the snapshot, when it goes, holds these changes.
            self.dirty_pods.clear();
            self.removed_pods.clear();
            return;
        }
        for id in self.removed_pods.drain(..) {
            out.push(Update::ReplicaRemoved {
                target: self.target.clone(),
                id,
            });
        }
        let reader = self.pods.as_reader();
        let dirty: Vec<ObjectRef<Pod>> = self.dirty_pods.drain().collect();
        for key in dirty {
            if let Some(pod) = reader.get(&key) {
                out.push(Update::Replica {
                    target: self.target.clone(),
                    replica: self.replica_of(&pod, now),
                });
            }
        }
    }

    /// Marks the pods of ReplicaSets whose Deployment changed, or asks for a snapshot when
    /// there are many.
    fn remap_pods(&mut self) {
        if self.remap.is_empty() {
            return;
        }
        let remap = std::mem::take(&mut self.remap);
        if !self.snapshot_sent || self.snapshot_due {
            return;
        }
        let moved: Vec<ObjectRef<Pod>> = self
            .pods
            .as_reader()
            .state()
            .iter()
            .filter(|pod| {
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                convert::controller_owner(&pod.metadata).is_some_and(|o| {
                    o.kind == "ReplicaSet" && remap.contains(&(namespace.clone(), o.name.clone()))
                })
            })
            .map(|pod| ObjectRef::from_obj(pod.as_ref()))
            .collect();
        if moved.len() > REMAP_AS_SNAPSHOT {
            self.snapshot_due = true;
        } else {
            self.dirty_pods.extend(moved);
        }
    }

    fn flush_controllers(&mut self, out: &mut Vec<Update>) {
        let scaled_by = self.scaled_by();
        if self.controllers_due {
            let controllers = self.all_controllers(&scaled_by);
            self.sent = controllers.iter().map(|c| (c.key(), c.clone())).collect();
            out.push(Update::Controllers {
                target: self.target.clone(),
                controllers,
            });
            self.controllers_due = false;
            self.controllers_sent = true;
            self.autoscalers_dirty = false;
            self.dirty_controllers.clear();
            self.removed_controllers.clear();
            return;
        }
        if !self.controllers_sent {
            self.dirty_controllers.clear();
            self.removed_controllers.clear();
            return;
        }
        for (kind, name) in self.removed_controllers.drain(..) {
            self.sent.remove(&(kind, name.clone()));
            out.push(Update::ControllerRemoved {
                target: self.target.clone(),
                kind,
                name,
            });
        }
        let changed: Vec<Controller> = if std::mem::take(&mut self.autoscalers_dirty) {
            self.dirty_controllers.clear();
            self.all_controllers(&scaled_by)
        } else {
            let dirty: Vec<_> = self.dirty_controllers.drain().collect();
            dirty
                .into_iter()
                .filter_map(|key| self.controller(&key, &scaled_by))
                .collect()
        };
        for controller in changed {
            if self.sent.get(&controller.key()) == Some(&controller) {
                continue;
            }
            self.sent.insert(controller.key(), controller.clone());
            out.push(Update::Controller {
                target: self.target.clone(),
                controller,
            });
        }
    }

    /// Who scales each workload, from the HPAs and ScaledObjects seen.
    fn scaled_by(&self) -> BTreeMap<convert::ScaleTarget, String> {
        let hpas = self.hpas.as_reader().state();
        let scaled = self.scaled_objects.as_reader().state();
        let targets = hpas.iter().filter_map(|h| convert::hpa_target(h)).chain(
            scaled
                .iter()
                .filter_map(|s| convert::scaled_object_target(s)),
        );
        convert::scaled_by_index(targets)
    }

    fn all_controllers(
        &self,
        scaled_by: &BTreeMap<convert::ScaleTarget, String>,
    ) -> Vec<Controller> {
        let deployments = self.deployments.as_reader().state();
        let statefulsets = self.statefulsets.as_reader().state();
        let by = |kind, meta| scaled_by.get(&(kind, convert::qualified(meta))).cloned();
        let mut revisions = self.revisions_by_deployment();
        let mut out: Vec<Controller> = deployments
            .iter()
            .map(|d| {
                let mut controller =
                    convert::deployment(d, by(WorkloadKind::Deployment, &d.metadata));
                controller.revisions = revisions
                    .remove(controller.name.as_str())
                    .unwrap_or_default();
                controller
            })
            .chain(
                statefulsets
                    .iter()
                    .map(|s| convert::statefulset(s, by(WorkloadKind::StatefulSet, &s.metadata))),
            )
            .collect();
        out.sort_by_key(Controller::key);
        out
    }

    fn controller(
        &self,
        (kind, name): &(WorkloadKind, String),
        scaled_by: &BTreeMap<convert::ScaleTarget, String>,
    ) -> Option<Controller> {
        let (namespace, short) = name.split_once('/')?;
        let by = scaled_by.get(&(*kind, name.clone())).cloned();
        match kind {
            WorkloadKind::Deployment => {
                let key = ObjectRef::new(short).within(namespace);
                let d = self.deployments.as_reader().get(&key)?;
                let mut controller = convert::deployment(&d, by);
                controller.revisions = self.revisions_of(name);
                Some(controller)
            }
            WorkloadKind::StatefulSet => {
                let key = ObjectRef::new(short).within(namespace);
                let s = self.statefulsets.as_reader().get(&key)?;
                Some(convert::statefulset(&s, by))
            }
            _ => None,
        }
    }
}

/// Keeps the newest `n` events, oldest first.
fn keep_newest(events: &mut Vec<EngineEvent>, n: usize) {
    events.sort_by_key(|e| e.time);
    let cut = events.len().saturating_sub(n);
    events.drain(..cut);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(name: &str, uid: &str, rs: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                uid: Some(uid.into()),
                resource_version: Some("1".into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: rs.into(),
                    uid: "rs".into(),
                    controller: Some(true),
                    block_owner_deletion: None,
                }]),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn replicaset(name: &str, deployment: &str) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: deployment.into(),
                    uid: "d".into(),
                    controller: Some(true),
                    block_owner_deletion: None,
                }]),
                ..ObjectMeta::default()
            },
            ..ReplicaSet::default()
        }
    }

    fn listed<K>(wrap: fn(watcher::Event<K>) -> Watched, items: Vec<K>) -> Vec<Watched> {
        let mut out = vec![wrap(watcher::Event::Init)];
        out.extend(
            items
                .into_iter()
                .map(|i| wrap(watcher::Event::InitApply(i))),
        );
        out.push(wrap(watcher::Event::InitDone));
        out
    }

    fn feed(cluster: &mut Cluster, items: Vec<Watched>) -> Vec<Update> {
        items.into_iter().for_each(|w| cluster.apply(w));
        cluster.flush(Utc::now())
    }

    #[test]
    fn a_pod_list_of_any_size_is_one_snapshot_sent_once_replicasets_are_known() {
        let mut cluster = Cluster::new("prod", Some("shop"), None);
        let pods = (0..10_000)
            .map(|i| pod(&format!("web-{i}"), &format!("uid-{i}"), "web-1"))
            .collect();
        let updates = feed(&mut cluster, listed(Watched::Pod, pods));
        assert!(updates.is_empty(), "held until the ReplicaSets are listed");

        let updates = feed(
            &mut cluster,
            listed(Watched::ReplicaSet, vec![replicaset("web-1", "web")]),
        );
        assert_eq!(updates.len(), 1);
        let Update::Snapshot { replicas, .. } = &updates[0] else {
            panic!("expected a snapshot, got {:?}", updates[0]);
        };
        assert_eq!(replicas.len(), 10_000);
        assert!(
            replicas
                .iter()
                .all(|r| r.workload == Some((WorkloadKind::Deployment, "shop/web".into())))
        );
    }

    #[test]
    fn a_burst_of_changes_to_one_pod_is_one_update_and_a_delete_removes_it() {
        let mut cluster = Cluster::new("prod", None, None);
        feed(
            &mut cluster,
            listed(Watched::ReplicaSet, vec![replicaset("web-1", "web")]),
        );
        feed(
            &mut cluster,
            listed(Watched::Pod, vec![pod("web-a", "a", "web-1")]),
        );
        let burst = (0..50)
            .map(|_| Watched::Pod(watcher::Event::Apply(pod("web-b", "b", "web-1"))))
            .collect();
        let updates = feed(&mut cluster, burst);
        assert_eq!(updates.len(), 1);
        assert!(matches!(&updates[0], Update::Replica { replica, .. } if replica.id == "b"));

        let gone = vec![Watched::Pod(watcher::Event::Delete(pod(
            "web-a", "a", "web-1",
        )))];
        let updates = feed(&mut cluster, gone);
        assert!(matches!(&updates[..], [Update::ReplicaRemoved { id, .. }] if id == "a"));
    }

    #[test]
    fn a_pod_seen_before_its_replicaset_moves_to_its_deployment_when_the_replicaset_comes() {
        let mut cluster = Cluster::new("prod", None, None);
        feed(&mut cluster, listed(Watched::ReplicaSet, vec![]));
        feed(&mut cluster, listed(Watched::Pod, vec![]));
        let early = vec![Watched::Pod(watcher::Event::Apply(pod(
            "web-a", "a", "web-2",
        )))];
        let updates = feed(&mut cluster, early);
        assert!(matches!(&updates[..], [Update::Replica { replica, .. }]
            if replica.workload == Some((WorkloadKind::Pod, "shop/web-a".into()))));

        let rs = vec![Watched::ReplicaSet(watcher::Event::Apply(replicaset(
            "web-2", "web",
        )))];
        let updates = feed(&mut cluster, rs);
        assert!(matches!(&updates[..], [Update::Replica { replica, .. }]
            if replica.workload == Some((WorkloadKind::Deployment, "shop/web".into()))));
    }

    #[test]
    fn a_refused_list_is_reported_once_naming_the_verb_and_resource() {
        let mut cluster = Cluster::new("prod", Some("shop"), None);
        let refusal = || {
            let status =
                kube::core::Status::failure("pods is forbidden", "Forbidden").with_code(403);
            Watched::Failed {
                kind: Kind::Pods,
                error: watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status))),
            }
        };
        let updates = feed(&mut cluster, vec![refusal(), refusal()]);
        assert_eq!(updates.len(), 1, "{updates:?}");
        let Update::Event { event, .. } = &updates[0] else {
            panic!("expected an event");
        };
        assert_eq!(event.subject, "pods");
        assert_eq!(
            event.action,
            "forbidden: cannot list pods in namespace shop (403)"
        );
        assert_eq!(cluster.lost(), None, "other kinds may still work");
    }

    #[test]
    fn the_target_is_lost_only_when_every_core_kind_fails() {
        let mut cluster = Cluster::new("prod", None, None);
        let refusal = |kind| {
            let status = kube::core::Status::failure("forbidden", "Forbidden").with_code(403);
            Watched::Failed {
                kind,
                error: watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status))),
            }
        };
        feed(
            &mut cluster,
            vec![refusal(Kind::Pods), refusal(Kind::ReplicaSets)],
        );
        feed(&mut cluster, vec![refusal(Kind::Deployments)]);
        assert_eq!(cluster.lost(), None);
        feed(&mut cluster, vec![refusal(Kind::StatefulSets)]);
        let lost = cluster.lost().unwrap();
        assert!(
            lost.contains("cannot list statefulsets at the cluster scope"),
            "{lost}"
        );
    }

    #[test]
    fn an_hpa_marks_the_deployment_it_scales_and_unchanged_controllers_are_not_sent_again() {
        let mut cluster = Cluster::new("prod", None, None);
        let deployment: Deployment = Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                ..ObjectMeta::default()
            },
            ..Deployment::default()
        };
        let updates = feed(
            &mut cluster,
            listed(Watched::Deployment, vec![deployment.clone()]),
        );
        assert!(
            matches!(&updates[..], [Update::Controllers { controllers, .. }]
            if controllers.len() == 1 && controllers[0].scaled_by.is_none())
        );

        let same = vec![Watched::Deployment(watcher::Event::Apply(deployment))];
        assert!(feed(&mut cluster, same).is_empty());

        let hpa: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "web-hpa", "namespace": "shop" },
            "spec": { "scaleTargetRef": { "kind": "Deployment", "name": "web" }, "maxReplicas": 5 }
        }))
        .unwrap();
        let updates = feed(&mut cluster, vec![Watched::Hpa(watcher::Event::Apply(hpa))]);
        assert!(
            matches!(&updates[..], [Update::Controller { controller, .. }]
            if controller.scaled_by.as_deref() == Some("HorizontalPodAutoscaler shop/web-hpa"))
        );
    }
}
