//! The Kubernetes worker against the sandbox cluster over real HTTP: each test starts its own
//! sandbox API server on a loopback port, points a kubeconfig at it, runs the worker and reads
//! what it reports through the same store the console reads.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use pilothouse::model::{ConnState, PlatformKind, WorkloadId, WorkloadKind};
use pilothouse::platform::kubernetes::{self, Selection};
use pilothouse::platform::{LogRecord, LogStart, Request, Update};
use pilothouse::sandbox::faults::Fault;
use pilothouse::sandbox::{Options, Sandbox};
use pilothouse::store::{Store, Workload};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// The longest any test waits for the worker to report something.
const WAIT: Duration = Duration::from_secs(30);

const CONTEXT: &str = "sandbox test";

fn namespace(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } })
}

fn deployment(name: &str, replicas: u32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": "shop" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [ {
                    "name": name,
                    "image": image,
                    "resources": { "requests": { "cpu": "100m" } }
                } ] }
            }
        }
    })
}

/// A sandbox, a worker on it, and the store its updates go into.
struct Harness {
    sandbox: Option<Sandbox>,
    client: kube::Client,
    target: String,
    requests: mpsc::Sender<Request>,
    updates: mpsc::Receiver<Update>,
    store: Store,
    /// Every update since the last [`Harness::forget`], by kind, for assertions on how
    /// changes arrived.
    seen: Vec<&'static str>,
    events: Vec<(String, String)>,
    logs: Vec<LogRecord>,
    ended: Vec<(u64, String, String)>,
    _dir: tempfile::TempDir,
    _worker: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(objects: Vec<Value>, namespace: Option<&str>) -> Harness {
        let options = Options {
            objects,
            pod_start: Duration::from_millis(500),
            ..Options::default()
        };
        let sandbox = Sandbox::start(options).await.expect("the sandbox starts");
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, sandbox.kubeconfig(CONTEXT, namespace)).expect("kubeconfig written");
        let selection = Selection {
            kubeconfig: Some(path),
            ..Selection::default()
        };
        let target = kubernetes::resolve(&selection).expect("the sandbox's kubeconfig resolves");
        assert_eq!(target.name, CONTEXT);
        assert_eq!(target.namespace.as_deref(), namespace);
        let client = kube::Client::try_from(target.config.clone()).expect("a client");

        let (updates_tx, updates) = mpsc::channel(1024);
        let (requests, requests_rx) = mpsc::channel(16);
        let worker = tokio::spawn(kubernetes::run(target, updates_tx, requests_rx));
        let mut store = Store::new(10);
        store.add_target(CONTEXT, PlatformKind::Kubernetes);
        Harness {
            sandbox: Some(sandbox),
            client,
            target: CONTEXT.to_string(),
            requests,
            updates,
            store,
            seen: Vec::new(),
            events: Vec::new(),
            logs: Vec::new(),
            ended: Vec::new(),
            _dir: dir,
            _worker: worker,
        }
    }

    /// Takes in updates until `done` holds, failing the test after [`WAIT`].
    async fn until(&mut self, what: &str, done: impl Fn(&mut Harness) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            let update = tokio::time::timeout_at(deadline, self.updates.recv()).await;
            match update {
                Ok(Some(update)) => self.take(update),
                Ok(None) => panic!("the worker stopped while waiting for {what}"),
                Err(_) => panic!(
                    "no {what} within {WAIT:?}; seen {:?}; events {:?}; workloads {:#?}",
                    self.seen,
                    self.events,
                    self.store.workloads()
                ),
            }
        }
    }

    fn take(&mut self, update: Update) {
        let kind = match &update {
            Update::Connection { .. } => "connection",
            Update::Snapshot { .. } => "snapshot",
            Update::Replica { .. } => "replica",
            Update::ReplicaRemoved { .. } => "replica-removed",
            Update::Controllers { .. } => "controllers",
            Update::Controller { .. } => "controller",
            Update::ControllerRemoved { .. } => "controller-removed",
            Update::Stats { .. } => "stats",
            Update::Event { .. } => "event",
            Update::Logs { .. } => "logs",
            Update::LogsEnded { .. } => "logs-ended",
            Update::LogsPaused { .. } => "logs-paused",
            Update::Service { .. } | Update::ServiceRemoved { .. } => "service",
        };
        if kind != "stats" {
            self.seen.push(kind);
        }
        match &update {
            Update::Event { event, .. } => {
                self.events
                    .push((event.subject.clone(), event.action.clone()));
            }
            Update::Logs { lines, .. } => self.logs.extend(lines.iter().cloned()),
            Update::LogsEnded {
                stream,
                replica,
                reason,
            } => self.ended.push((*stream, replica.clone(), reason.clone())),
            _ => {}
        }
        self.store.apply(&update);
    }

    fn faults(&self) -> &pilothouse::sandbox::faults::Faults {
        self.sandbox.as_ref().expect("the sandbox runs").faults()
    }

    fn forget(&mut self) {
        self.seen.clear();
    }

    fn workload(&mut self, kind: WorkloadKind, name: &str) -> Option<Workload> {
        let target = self.target.clone();
        self.store
            .workloads()
            .iter()
            .find(|w| w.id.target == target && w.id.kind == kind && w.id.name == name)
            .cloned()
    }

    /// Waits until the Deployment `shop/NAME` has `n` replicas, all ready, and asks for `n`.
    async fn until_ready(&mut self, name: &str, n: usize) {
        let name = format!("shop/{name}");
        let what = format!("{name} with {n} ready replicas");
        self.until(&what, |h| {
            h.workload(WorkloadKind::Deployment, &name)
                .is_some_and(|w| w.replicas.len() == n && w.ready == n && w.desired == n)
        })
        .await;
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), "shop")
    }

    async fn set_replicas(&self, name: &str, replicas: u32) {
        let patch = Patch::Merge(json!({ "spec": { "replicas": replicas } }));
        self.deployments()
            .patch(name, &PatchParams::default(), &patch)
            .await
            .expect("the deployment is patched");
    }

    async fn ask(&self, request: Request) {
        self.requests
            .send(request)
            .await
            .expect("the worker takes requests");
    }

    fn web(&self) -> WorkloadId {
        WorkloadId {
            target: self.target.clone(),
            kind: WorkloadKind::Deployment,
            name: "shop/web".to_string(),
        }
    }

    /// Waits for the reply to an action while taking in updates.
    async fn reply(
        &mut self,
        mut rx: oneshot::Receiver<Result<String, String>>,
    ) -> Result<String, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            tokio::select! {
                reply = &mut rx => return reply.expect("the worker replies"),
                update = self.updates.recv() => match update {
                    Some(update) => self.take(update),
                    None => panic!("the worker stopped before replying"),
                },
                () = tokio::time::sleep_until(deadline) => panic!("no reply within {WAIT:?}"),
            }
        }
    }
}

fn connected_version(h: &Harness) -> Option<String> {
    match &h.store.target(CONTEXT)?.conn {
        ConnState::Connected { version, .. } => Some(version.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn pods_are_listed_grouped_into_their_deployment_with_its_desired_count() {
    let objects = vec![namespace("shop"), deployment("web", 3, "shop/web:1.0")];
    let mut h = Harness::start(objects, None).await;
    h.until_ready("web", 3).await;

    let version = connected_version(&h).expect("connected");
    assert!(version.starts_with("v1."), "{version}");
    let web = h.workload(WorkloadKind::Deployment, "shop/web").unwrap();
    assert_eq!(web.image, "shop/web:1.0");
    let target = h.store.target(CONTEXT).unwrap();
    let controller = &target.controllers[&(WorkloadKind::Deployment, "shop/web".to_string())];
    assert_eq!(controller.desired, 3);
    assert_eq!(controller.scaled_by, None);
    let replica = target.replicas.get(&web.replicas[0]).unwrap();
    assert!(replica.name.starts_with("web-"), "{}", replica.name);
    assert_eq!(replica.state, "running");
    assert_eq!(replica.status, "Running");
    assert_eq!(
        replica.cpu_limit,
        Some(pilothouse::model::CpuLimit::Cores(0.1))
    );
    assert_eq!(
        h.seen.iter().filter(|k| **k == "snapshot").count(),
        1,
        "one snapshot for the list: {:?}",
        h.seen
    );
}

#[tokio::test]
async fn a_change_of_ten_pods_arrives_as_updates_without_a_new_snapshot() {
    let objects = vec![namespace("shop"), deployment("web", 2, "shop/web:1.0")];
    let mut h = Harness::start(objects, Some("shop")).await;
    h.until_ready("web", 2).await;
    h.forget();

    h.set_replicas("web", 12).await;
    h.until_ready("web", 12).await;
    assert!(!h.seen.contains(&"snapshot"), "{:?}", h.seen);
    assert!(h.seen.iter().filter(|k| **k == "replica").count() >= 10);

    h.set_replicas("web", 1).await;
    h.until_ready("web", 1).await;
    assert!(h.seen.iter().filter(|k| **k == "replica-removed").count() >= 11);
}

#[tokio::test]
async fn a_change_made_while_the_watches_were_down_arrives_when_they_resume() {
    let objects = vec![namespace("shop"), deployment("web", 2, "shop/web:1.0")];
    let mut h = Harness::start(objects, Some("shop")).await;
    h.until_ready("web", 2).await;
    h.forget();

    // Every watch is cut, and the next two attempts to watch again fail, so the change below
    // is made while no watch is open.
    h.faults().fail(Fault {
        method: None,
        path_contains: "watch=true".to_string(),
        status: 500,
        times: Some(2),
        delay: None,
    });
    h.faults().drop_watches();
    h.set_replicas("web", 4).await;

    h.until_ready("web", 4).await;
    assert!(
        !h.seen.contains(&"snapshot"),
        "resumed from its resourceVersion, without a new list: {:?}",
        h.seen
    );
}

#[tokio::test]
async fn a_watch_that_ends_with_410_lists_again_and_loses_no_change() {
    let objects = vec![namespace("shop"), deployment("web", 2, "shop/web:1.0")];
    let mut h = Harness::start(objects, Some("shop")).await;
    h.until_ready("web", 2).await;
    h.forget();

    h.faults().fail(Fault {
        method: None,
        path_contains: "watch=true".to_string(),
        status: 500,
        times: Some(2),
        delay: None,
    });
    h.faults().expire_watches();
    h.set_replicas("web", 3).await;

    h.until("a new snapshot after the 410", |h| {
        h.seen.contains(&"snapshot")
    })
    .await;
    h.until_ready("web", 3).await;
}

#[tokio::test]
async fn a_403_on_pods_is_reported_naming_the_verb_and_resource_and_retried() {
    let objects = [namespace("shop"), deployment("web", 2, "shop/web:1.0")];
    let mut h = Harness::start(Vec::new(), Some("shop")).await;
    h.faults().fail(Fault {
        method: None,
        path_contains: "/pods?".to_string(),
        status: 403,
        times: None,
        delay: None,
    });
    // The namespace and the deployment are made after the worker started listing.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(h.client.clone());
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(objects[0].clone()).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let web: Deployment = serde_json::from_value(objects[1].clone()).unwrap();
    h.deployments()
        .create(&PostParams::default(), &web)
        .await
        .unwrap();

    let refusal = "forbidden: cannot list pods in namespace shop (403)";
    h.until("the refusal as an event", |h| {
        h.events.iter().any(|(s, a)| s == "pods" && a == refusal)
    })
    .await;
    h.until("the deployment, which may be listed, shown", |h| {
        let target = h.store.target(CONTEXT).unwrap();
        let key = (WorkloadKind::Deployment, "shop/web".to_string());
        target.controllers.contains_key(&key)
    })
    .await;
    let target = h.store.target(CONTEXT).unwrap();
    assert!(target.replicas.is_empty(), "no pod could be listed");

    h.faults().clear();
    h.until_ready("web", 2).await;
    let refusals = h.events.iter().filter(|(_, a)| a == refusal).count();
    assert_eq!(
        refusals, 1,
        "a refusal is told once while it lasts: {:?}",
        h.events
    );
}

#[tokio::test]
async fn a_target_where_nothing_can_be_listed_is_disconnected_with_the_refusals() {
    let mut h = Harness::start(vec![namespace("shop")], Some("shop")).await;
    h.faults().fail(Fault {
        method: None,
        path_contains: "/namespaces/shop/".to_string(),
        status: 403,
        times: None,
        delay: None,
    });
    h.until("a disconnected target", |h| {
        matches!(&h.store.target(CONTEXT).unwrap().conn,
            ConnState::Disconnected { error, .. } if error.contains("cannot list pods in namespace shop (403)")
                && error.contains("deployments"))
    })
    .await;
    h.faults().clear();
    h.until("connected again", |h| connected_version(h).is_some())
        .await;
}

#[tokio::test]
async fn scaling_through_a_request_reaches_the_pods() {
    let objects = vec![namespace("shop"), deployment("web", 2, "shop/web:1.0")];
    let mut h = Harness::start(objects, None).await;
    h.until_ready("web", 2).await;

    let (reply, rx) = oneshot::channel();
    h.ask(Request::Scale {
        workload: h.web(),
        replicas: 5,
        reply,
    })
    .await;
    let done = h.reply(rx).await;
    assert!(done.is_ok(), "{done:?}");
    h.until_ready("web", 5).await;
}

#[tokio::test]
async fn a_restart_deletes_the_pod_and_its_deployment_replaces_it() {
    let objects = vec![namespace("shop"), deployment("web", 2, "shop/web:1.0")];
    let mut h = Harness::start(objects, Some("shop")).await;
    h.until_ready("web", 2).await;
    let before = h
        .workload(WorkloadKind::Deployment, "shop/web")
        .unwrap()
        .replicas;
    let victim = before[0].clone();

    let (reply, rx) = oneshot::channel();
    h.ask(Request::Restart {
        id: victim.clone(),
        reply,
    })
    .await;
    let done = h.reply(rx).await.expect("the restart is done");
    assert!(done.contains("deleted pod shop/web-"), "{done}");
    h.until("a replacement pod, ready", |h| {
        h.workload(WorkloadKind::Deployment, "shop/web")
            .is_some_and(|w| w.replicas.len() == 2 && w.ready == 2 && !w.replicas.contains(&victim))
    })
    .await;
}

#[tokio::test]
async fn a_crash_looping_pod_shows_what_its_previous_instance_printed() {
    let objects = vec![namespace("shop"), deployment("web", 1, "shop/web:crash")];
    let mut h = Harness::start(objects, Some("shop")).await;
    h.until("a pod that crashed", |h| {
        h.workload(WorkloadKind::Deployment, "shop/web")
            .is_some_and(|w| w.restarts >= 1)
    })
    .await;
    let web = h.workload(WorkloadKind::Deployment, "shop/web").unwrap();
    let id = web.replicas[0].clone();
    let name = h.store.replica(CONTEXT, &id).unwrap().name.clone();

    h.ask(Request::FollowLogs {
        stream: 1,
        replicas: vec![(id.clone(), name.clone())],
        start: LogStart::Tail(100),
    })
    .await;
    h.until("the crash's last lines", |h| {
        h.logs
            .iter()
            .any(|r| r.line.text.contains("fatal: connection to db:5432 refused"))
    })
    .await;
    assert!(
        h.logs
            .iter()
            .all(|r| r.replica == name && r.timestamp.is_some())
    );

    h.logs.clear();
    h.ask(Request::PreviousLogs {
        stream: 2,
        replica: (id, name.clone()),
    })
    .await;
    h.until("the previous instance loaded", |h| {
        h.ended.iter().any(|(s, r, _)| *s == 2 && *r == name)
    })
    .await;
    let (_, _, reason) = h.ended.iter().find(|(s, _, _)| *s == 2).unwrap();
    assert_eq!(reason, "previous instance's lines loaded");
    assert!(
        h.logs
            .iter()
            .any(|r| r.line.text.starts_with("exiting with code")),
        "{:?}",
        h.logs.iter().map(|r| &r.line.text).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_deployment_that_an_hpa_scales_says_so() {
    let hpa = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "web-hpa", "namespace": "shop" },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" },
            "minReplicas": 1,
            "maxReplicas": 4
        }
    });
    let scaled = json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": { "name": "worker-queue", "namespace": "shop" },
        "spec": { "scaleTargetRef": { "name": "worker" } }
    });
    let objects = vec![
        namespace("shop"),
        deployment("web", 1, "shop/web:1.0"),
        deployment("worker", 1, "shop/worker:1.0"),
        hpa,
        scaled,
    ];
    let mut h = Harness::start(objects, None).await;
    let scaled_by = |h: &Harness, name: &str| {
        let target = h.store.target(CONTEXT)?;
        let key = (WorkloadKind::Deployment, name.to_string());
        target.controllers.get(&key)?.scaled_by.clone()
    };
    h.until("the HPA and the ScaledObject named", |h| {
        scaled_by(h, "shop/web").is_some() && scaled_by(h, "shop/worker").is_some()
    })
    .await;
    assert_eq!(
        scaled_by(&h, "shop/web").as_deref(),
        Some("HorizontalPodAutoscaler shop/web-hpa")
    );
    assert_eq!(
        scaled_by(&h, "shop/worker").as_deref(),
        Some("ScaledObject shop/worker-queue")
    );
}

#[tokio::test]
async fn an_api_server_that_goes_away_leaves_the_target_disconnected_saying_why() {
    let objects = vec![namespace("shop"), deployment("web", 1, "shop/web:1.0")];
    let mut h = Harness::start(objects, Some("shop")).await;
    h.until_ready("web", 1).await;
    let url = h.sandbox.as_ref().unwrap().url();

    if let Some(sandbox) = h.sandbox.take() {
        sandbox.shutdown();
    }
    h.until("a disconnected target", |h| {
        matches!(
            &h.store.target(CONTEXT).unwrap().conn,
            ConnState::Disconnected { .. }
        )
    })
    .await;
    let ConnState::Disconnected {
        error,
        retry_in_secs,
    } = h.store.target(CONTEXT).unwrap().conn.clone()
    else {
        unreachable!()
    };
    assert!(
        error.contains("the API server does not answer") && error.contains(&url),
        "{error}"
    );
    assert!(retry_in_secs >= 1);
}

#[tokio::test]
async fn pod_usage_from_metrics_server_arrives_as_stats_of_the_replicas() {
    let objects = vec![namespace("shop"), deployment("web", 2, "shop/web:1.0")];
    let mut h = Harness::start(objects, Some("shop")).await;
    h.until_ready("web", 2).await;
    h.until("stats of both replicas", |h| {
        let Some(web) = h.workload(WorkloadKind::Deployment, "shop/web") else {
            return false;
        };
        web.replicas.iter().all(|id| {
            h.store
                .replica_stats(CONTEXT, id)
                .is_some_and(|s| !s.is_empty())
        })
    })
    .await;
    let web = h.workload(WorkloadKind::Deployment, "shop/web").unwrap();
    let stats = web.stats.expect("the workload sums its replicas' stats");
    assert!(stats.mem_bytes > 0, "{stats:?}");
}
