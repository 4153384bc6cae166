//! The sandbox cluster driven by the `kube` crate over HTTP, as the Kubernetes platform
//! drives a real API server: Api verbs, the scale subresource, watches through kube's
//! watcher, the deployment controller's rollouts and rollbacks, pod logs and faults.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use pilothouse::sandbox::{Fault, Options, Sandbox};
use serde_json::json;

/// How long any wait for the cluster may take before the test fails.
const WAIT_LIMIT: Duration = Duration::from_secs(40);

async fn sandbox() -> Sandbox {
    let options = Options {
        objects: vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        ],
        pod_start: Duration::from_millis(300),
        ..Options::default()
    };
    Sandbox::start(options)
        .await
        .expect("the sandbox cluster starts")
}

async fn client(sandbox: &Sandbox) -> Client {
    let text = sandbox.kubeconfig("sandbox test", Some("shop"));
    let kubeconfig = Kubeconfig::from_yaml(&text).expect("the kubeconfig parses");
    let options = KubeConfigOptions {
        context: Some("sandbox test".into()),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("config");
    assert_eq!(config.default_namespace, "shop");
    Client::try_from(config).expect("client")
}

/// Polls `check` until it gives a value, for at most WAIT_LIMIT.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < WAIT_LIMIT, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image}]}
            }
        }
    }))
    .expect("a valid Deployment")
}

fn set_image(image: &str) -> Patch<serde_json::Value> {
    Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": image}
    ]}}}}))
}

fn progressing_reason(deployment: &Deployment) -> Option<String> {
    let conditions = deployment.status.as_ref()?.conditions.as_ref()?;
    let progressing = conditions.iter().find(|c| c.type_ == "Progressing")?;
    progressing.reason.clone()
}

fn revision(object: &kube::api::ObjectMeta) -> Option<String> {
    object
        .annotations
        .as_ref()?
        .get("deployment.kubernetes.io/revision")
        .cloned()
}

/// Waits until the Deployment has rolled out `image` to `replicas` Ready pods.
async fn rolled_out(api: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    eventually(&format!("{name} to roll out"), || async {
        let deployment = api.get(name).await.ok()?;
        let status = deployment.status.as_ref()?;
        let done = status.updated_replicas == Some(replicas)
            && status.available_replicas == Some(replicas)
            && status.replicas == Some(replicas)
            && progressing_reason(&deployment).as_deref() == Some("NewReplicaSetAvailable");
        done.then_some(deployment)
    })
    .await
}

#[tokio::test]
async fn kube_lists_gets_creates_patches_and_scales() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let version = client.apiserver_version().await.expect("version");
    assert_eq!(version.git_version, "v1.33.0-sandbox");

    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let created = api
        .create(&PostParams::default(), &deployment("web", 1, "web:1"))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let again = api
        .create(&PostParams::default(), &deployment("web", 1, "web:1"))
        .await;
    match again {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                (status.code, status.reason.as_str()),
                (409, "AlreadyExists")
            )
        }
        other => panic!("a second create is AlreadyExists, not {other:?}"),
    }
    api.create(&PostParams::default(), &deployment("db", 1, "db:1"))
        .await
        .unwrap();

    let listed = api
        .list(&ListParams::default().labels("app in (web, cache)"))
        .await
        .unwrap();
    let names: Vec<_> = listed
        .items
        .iter()
        .filter_map(|d| d.metadata.name.clone())
        .collect();
    assert_eq!(names, ["web"]);
    let all: Api<Deployment> = Api::all(client.clone());
    let everywhere = all
        .list(&ListParams::default().fields("metadata.name=db"))
        .await
        .unwrap();
    assert_eq!(everywhere.items.len(), 1);

    let params = PatchParams::default();
    let merged = api
        .patch(
            "web",
            &params,
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged
            .metadata
            .labels
            .unwrap()
            .get("tier")
            .map(String::as_str),
        Some("front")
    );
    let patched = api
        .patch("web", &params, &set_image("web:2"))
        .await
        .unwrap();
    let containers = patched.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(
        (containers.len(), containers[0].image.as_deref()),
        (1, Some("web:2"))
    );
    assert_eq!(patched.metadata.generation, Some(2));
    let json_patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/spec/minReadySeconds", "value": 1}
    ]))
    .unwrap();
    let added = api
        .patch("web", &params, &Patch::Json::<()>(json_patch))
        .await
        .unwrap();
    assert_eq!(added.spec.unwrap().min_ready_seconds, Some(1));
    let apply = PatchParams::apply("pilothouse").force();
    let applied = api
        .patch(
            "cache",
            &apply,
            &Patch::Apply(deployment("cache", 1, "cache:1")),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.name.as_deref(), Some("cache"));

    let scaled = api
        .patch_scale(
            "web",
            &params,
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(3));
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(
        scale.status.map(|s| s.selector),
        Some(Some("app=web".to_string()))
    );
    assert_eq!(
        api.get("web").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );

    api.delete("db", &Default::default()).await.unwrap();
    let missing = api.get("db").await;
    assert!(matches!(missing, Err(kube::Error::Api(s)) if s.code == 404));
}

#[tokio::test]
async fn a_deployment_rolls_out_and_a_rollback_reuses_its_replica_set_with_a_new_revision() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &deployment("web", 2, "web:1"))
        .await
        .unwrap();
    let first = rolled_out(&api, "web", 2).await;
    assert_eq!(revision(&first.metadata).as_deref(), Some("1"));
    let listed = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2);
    for pod in &listed.items {
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let ready = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready");
        assert_eq!(ready.map(|c| c.status.as_str()), Some("True"));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("ReplicaSet", Some(true))
        );
    }
    let original = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(original.len(), 1);
    let original_name = original[0].metadata.name.clone().unwrap();

    api.patch("web", &PatchParams::default(), &set_image("web:2"))
        .await
        .unwrap();
    eventually("the new revision to start", || async {
        let d = api.get("web").await.ok()?;
        (revision(&d.metadata).as_deref() == Some("2")).then_some(())
    })
    .await;
    let second = rolled_out(&api, "web", 2).await;
    assert_eq!(revision(&second.metadata).as_deref(), Some("2"));
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );

    api.patch("web", &PatchParams::default(), &set_image("web:1"))
        .await
        .unwrap();
    eventually("the rollback to take revision 3", || async {
        let d = api.get("web").await.ok()?;
        (revision(&d.metadata).as_deref() == Some("3")).then_some(())
    })
    .await;
    rolled_out(&api, "web", 2).await;
    let after = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(after.len(), 2, "the rollback made no third ReplicaSet");
    let reused = after
        .iter()
        .find(|rs| rs.metadata.name.as_deref() == Some(&original_name));
    assert_eq!(
        reused.and_then(|rs| revision(&rs.metadata)).as_deref(),
        Some("3")
    );
    assert_eq!(reused.and_then(|rs| rs.spec.as_ref()?.replicas), Some(2));

    let events: Api<Event> = Api::default_namespaced(client.clone());
    let reasons: BTreeSet<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for reason in [
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "SuccessfulDelete",
        "Scheduled",
        "Started",
        "Killing",
    ] {
        assert!(
            reasons.contains(reason),
            "no {reason} event among {reasons:?}"
        );
    }
}

#[tokio::test]
async fn an_unhealthy_image_stalls_the_rollout_until_its_progress_deadline() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let mut web = deployment("web", 2, "web:1");
    web.spec.as_mut().unwrap().progress_deadline_seconds = Some(2);
    api.create(&PostParams::default(), &web).await.unwrap();
    rolled_out(&api, "web", 2).await;

    api.patch(
        "web",
        &PatchParams::default(),
        &set_image("web:2-unhealthy"),
    )
    .await
    .unwrap();
    let stalled = eventually("the progress deadline to pass", || async {
        let d = api.get("web").await.ok()?;
        (progressing_reason(&d).as_deref() == Some("ProgressDeadlineExceeded")).then_some(d)
    })
    .await;
    let status = stalled.status.unwrap();
    assert_eq!(
        status.available_replicas,
        Some(2),
        "the old pods keep serving"
    );
    assert_eq!(
        status.updated_replicas,
        Some(1),
        "one surge pod, never Ready"
    );
    let progressing = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Progressing");
    assert_eq!(progressing.map(|c| c.status), Some("False".to_string()));

    let events: Api<Event> = Api::default_namespaced(client.clone());
    let unhealthy = eventually("an Unhealthy event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Unhealthy"))
    })
    .await;
    assert_eq!(unhealthy.type_.as_deref(), Some("Warning"));
    assert_eq!(unhealthy.involved_object.kind.as_deref(), Some("Pod"));
}

#[tokio::test]
async fn a_crashing_container_restarts_and_its_previous_log_is_readable() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod = |name: &str, image: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": image}]}
        }))
        .unwrap()
    };
    pods.create(&PostParams::default(), &pod("worker", "worker:crash"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("steady", "worker:1"))
        .await
        .unwrap();

    let crashed = eventually("the container to crash and back off", || async {
        let p = pods.get("worker").await.ok()?;
        let status = p.status?.container_statuses?.into_iter().next()?;
        let waiting = status.state.as_ref()?.waiting.as_ref()?.reason.clone();
        (status.restart_count >= 1 && waiting.as_deref() == Some("CrashLoopBackOff"))
            .then_some(status)
    })
    .await;
    let last = crashed
        .last_state
        .and_then(|s| s.terminated)
        .expect("a terminated last state");
    assert_eq!(last.exit_code, 1);
    assert!(!crashed.ready);

    let previous = LogParams {
        previous: true,
        ..LogParams::default()
    };
    let log = pods.logs("worker", &previous).await.unwrap();
    assert!(log.starts_with("starting worker:crash\n"), "{log}");
    assert!(log.trim_end().ends_with("exiting with code 1"), "{log}");
    let tail = LogParams {
        previous: true,
        tail_lines: Some(1),
        timestamps: true,
        ..LogParams::default()
    };
    let last_line = pods.logs("worker", &tail).await.unwrap();
    assert_eq!(last_line.lines().count(), 1);
    assert!(last_line.contains("Z exiting with code 1"), "{last_line}");

    eventually("the steady pod to start", || async {
        let p = pods.get("steady").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let never = pods.logs("steady", &previous).await;
    match never {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 400);
            assert!(
                status.message.contains("previous terminated container"),
                "{}",
                status.message
            );
        }
        other => {
            panic!("previous logs of a container that never restarted are a 400, not {other:?}")
        }
    }
    assert!(
        pods.logs("steady", &LogParams::default())
            .await
            .unwrap()
            .contains("starting worker:1")
    );
}

#[tokio::test]
async fn kubes_watcher_recovers_from_a_dropped_watch_and_an_expired_one() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let leases: Api<Lease> = Api::default_namespaced(client.clone());
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let inits = Arc::new(Mutex::new(0usize));
    let watch = {
        let (seen, inits) = (seen.clone(), inits.clone());
        let stream = watcher(leases.clone(), watcher::Config::default()).default_backoff();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Init) => *inits.lock().unwrap() += 1,
                    Ok(watcher::Event::InitApply(lease) | watcher::Event::Apply(lease)) => {
                        seen.lock()
                            .unwrap()
                            .insert(lease.metadata.name.unwrap_or_default());
                    }
                    _ => {}
                }
            }
        })
    };
    let lease = |name: &str| -> Lease {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"holderIdentity": "a"}}))
            .unwrap()
    };
    let saw = |name: &'static str| {
        let seen = seen.clone();
        async move {
            eventually(&format!("the watcher to see {name}"), || {
                let seen = seen.clone();
                async move { seen.lock().unwrap().contains(name).then_some(()) }
            })
            .await
        }
    };
    leases
        .create(&PostParams::default(), &lease("one"))
        .await
        .unwrap();
    saw("one").await;

    sandbox.faults().drop_watches();
    leases
        .create(&PostParams::default(), &lease("two"))
        .await
        .unwrap();
    saw("two").await;
    assert_eq!(
        *inits.lock().unwrap(),
        1,
        "a dropped watch resumes without a new list"
    );

    sandbox.faults().expire_watches();
    leases
        .create(&PostParams::default(), &lease("three"))
        .await
        .unwrap();
    saw("three").await;
    eventually("a fresh list after the 410", || {
        let inits = inits.clone();
        async move { (*inits.lock().unwrap() >= 2).then_some(()) }
    })
    .await;
    watch.abort();
}

#[tokio::test]
async fn a_stale_lease_update_is_a_conflict() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let leases: Api<Lease> = Api::default_namespaced(client.clone());
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut mine = leases.get("leader").await.unwrap();
    let mut theirs = mine.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let won = leases
        .replace("leader", &PostParams::default(), &mine)
        .await
        .unwrap();
    assert_eq!(won.spec.unwrap().holder_identity.as_deref(), Some("b"));
    theirs.spec.as_mut().unwrap().holder_identity = Some("c".into());
    match leases
        .replace("leader", &PostParams::default(), &theirs)
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
            assert!(
                status.message.contains("the object has been modified"),
                "{}",
                status.message
            );
        }
        other => panic!("a stale replace is a Conflict, not {other:?}"),
    }
    assert_eq!(
        leases
            .get("leader")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("b")
    );
}

#[tokio::test]
async fn an_injected_403_reaches_the_client_as_a_forbidden_status() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &deployment("web", 1, "web:1"))
        .await
        .unwrap();
    sandbox.faults().fail(Fault {
        method: Some(axum::http::Method::PATCH),
        path_contains: "/deployments/web/scale".into(),
        status: 403,
        times: Some(1),
        delay: None,
    });
    let scale = Patch::Merge(json!({"spec": {"replicas": 4}}));
    match api
        .patch_scale("web", &PatchParams::default(), &scale)
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
            assert_eq!(
                status.message,
                "deployments.apps \"web\" is forbidden: User \"sandbox\" cannot patch resource \
                 \"deployments/scale\" in API group \"apps\" in the namespace \"shop\""
            );
        }
        other => panic!("the injected fault is a 403, not {other:?}"),
    }
    let scaled = api
        .patch_scale("web", &PatchParams::default(), &scale)
        .await
        .unwrap();
    assert_eq!(
        scaled.spec.and_then(|s| s.replicas),
        Some(4),
        "the fault answered once"
    );
}

#[tokio::test]
async fn a_statefulset_makes_ordered_pods_and_reports_its_revisions() {
    let sandbox = sandbox().await;
    let client = client(&sandbox).await;
    let api: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": {"containers": [{"name": "db", "image": "db:1"}]}}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &set).await.unwrap();
    let ready = eventually("three ready db pods", || async {
        let s = api.get("db").await.ok()?;
        let status = s.status?;
        (status.ready_replicas == Some(3)).then_some(status)
    })
    .await;
    assert_eq!(ready.current_revision, ready.update_revision);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut names: Vec<String> = pods
        .list(&ListParams::default().labels("app=db"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
}
