//! Kubernetes actions, rollouts that roll back by themselves, and Lease leader election, over
//! real HTTP against the sandbox cluster: each test starts its own on a free loopback port and
//! talks to it through a `kube::Client` built from the kubeconfig it hands out.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::http::Method;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use pilothouse::model::{WorkloadId, WorkloadKind};
use pilothouse::platform::kubernetes::actions::{self, ActionError, RolloutStatus};
use pilothouse::platform::kubernetes::lease::{Elector, Leadership};
use pilothouse::platform::kubernetes::rollout::{self, Job, Options, Outcome, Progress, Record};
use pilothouse::rollout::state::{self, Files, Phase};
use pilothouse::sandbox::faults::Fault;
use pilothouse::sandbox::{self, Sandbox};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

/// The longest any wait for the cluster to settle may take before the test fails.
const SETTLE: Duration = Duration::from_secs(60);

fn web(image: &str, replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "shop" },
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 }
            },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": image }] }
            }
        }
    })
}

/// A sandbox with namespace `shop` and Deployment `shop/web` (two replicas of `shop/web:1`),
/// and a client for it.
async fn start() -> (Sandbox, kube::Client) {
    let options = sandbox::Options {
        objects: vec![
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "shop" } }),
            web("shop/web:1", 2),
        ],
        pod_start: Duration::from_millis(200),
        ..sandbox::Options::default()
    };
    let cluster = Sandbox::start(options).await.expect("sandbox starts");
    let client = client_of(&cluster).await;
    (cluster, client)
}

async fn client_of(cluster: &Sandbox) -> kube::Client {
    let kubeconfig = Kubeconfig::from_yaml(&cluster.kubeconfig("sandbox", Some("shop")))
        .expect("the sandbox's kubeconfig reads");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("the sandbox's kubeconfig is a config");
    kube::Client::try_from(config).expect("a client for the sandbox")
}

fn workload(name: &str) -> WorkloadId {
    WorkloadId {
        target: "sandbox".into(),
        kind: WorkloadKind::Deployment,
        name: name.into(),
    }
}

/// Calls `probe` until it gives a value, at most [`SETTLE`]; fails naming `what` otherwise.
async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(started.elapsed() < SETTLE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deployment(client: &kube::Client) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), "shop")
        .get("web")
        .await
        .expect("deployment shop/web reads")
}

fn image_of(deployment: &Deployment) -> String {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn pods(client: &kube::Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "shop")
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("pods list")
        .items
}

/// Waits until the rollout of shop/web is complete and returns its revision.
async fn rolled_out(client: &kube::Client) -> u64 {
    until("shop/web to be rolled out", || async {
        let status = actions::status(client, &workload("shop/web")).await.ok()?;
        if !matches!(status, RolloutStatus::Complete { .. }) {
            return None;
        }
        let found = deployment(client).await;
        found
            .metadata
            .annotations
            .as_ref()?
            .get(actions::REVISION_ANNOTATION)?
            .parse()
            .ok()
    })
    .await
}

/// Waits until shop/web has exactly `count` pods, all Ready and all running `image`.
async fn ready_pods_of(client: &kube::Client, count: usize, image: &str) -> Vec<Pod> {
    until(&format!("{count} ready pods of {image}"), || async {
        let found = pods(client).await;
        let all = found.len() == count
            && found.iter().all(|pod| {
                pod_ready(pod)
                    && pod.metadata.deletion_timestamp.is_none()
                    && pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.first())
                        .and_then(|c| c.image.as_deref())
                        == Some(image)
            });
        all.then_some(found)
    })
    .await
}

fn names(pods: &[Pod]) -> Vec<String> {
    let mut out: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn scaling_goes_through_the_scale_subresource_and_the_pods_follow() {
    let (_cluster, client) = start().await;
    rolled_out(&client).await;

    let message = actions::scale(&client, &workload("shop/web"), 4)
        .await
        .unwrap();

    assert_eq!(message, "scaled deployment shop/web from 2 to 4 replicas");
    let scale = Api::<Deployment>::namespaced(client.clone(), "shop")
        .get_scale("web")
        .await
        .unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(4));
    ready_pods_of(&client, 4, "shop/web:1").await;
}

#[tokio::test]
async fn a_restart_makes_a_new_revision_that_replaces_every_pod() {
    let (_cluster, client) = start().await;
    assert_eq!(rolled_out(&client).await, 1);
    let before = names(&ready_pods_of(&client, 2, "shop/web:1").await);

    let message = actions::restart(&client, &workload("shop/web"))
        .await
        .unwrap();

    assert_eq!(message, "restarted deployment shop/web");
    let annotations = deployment(&client)
        .await
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert!(
        annotations.contains_key(actions::RESTARTED_AT_ANNOTATION),
        "{annotations:?}"
    );
    assert_eq!(rolled_out(&client).await, 2);
    let after = names(&ready_pods_of(&client, 2, "shop/web:1").await);
    assert!(
        after.iter().all(|name| !before.contains(name)),
        "{before:?} then {after:?}"
    );
}

#[tokio::test]
async fn set_image_then_undo_to_the_previous_revision_and_to_a_named_one() {
    let (_cluster, client) = start().await;
    let web = workload("shop/web");
    rolled_out(&client).await;
    actions::set_image(&client, &web, "shop/web:2")
        .await
        .unwrap();
    assert_eq!(rolled_out(&client).await, 2);
    actions::set_image(&client, &web, "shop/web:3")
        .await
        .unwrap();
    assert_eq!(rolled_out(&client).await, 3);
    ready_pods_of(&client, 2, "shop/web:3").await;

    let back = actions::undo(&client, &web, None).await.unwrap();

    assert_eq!(
        back.message,
        "rolled back deployment shop/web to revision 2 (shop/web:2)"
    );
    assert_eq!(back.warning(), None);
    assert_eq!(image_of(&deployment(&client).await), "shop/web:2");
    // The controller reuses revision 2's ReplicaSet and numbers it anew, as Kubernetes does.
    assert_eq!(rolled_out(&client).await, 4);
    ready_pods_of(&client, 2, "shop/web:2").await;
    let numbers: Vec<(u64, String, bool)> = actions::revisions(&client, &web)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.number, r.image, r.current))
        .collect();
    assert_eq!(
        numbers,
        vec![
            (1, "shop/web:1".to_string(), false),
            (3, "shop/web:3".to_string(), false),
            (4, "shop/web:2".to_string(), true),
        ]
    );

    let first = actions::undo(&client, &web, Some(1)).await.unwrap();

    assert_eq!(
        first.message,
        "rolled back deployment shop/web to revision 1 (shop/web:1)"
    );
    assert_eq!(image_of(&deployment(&client).await), "shop/web:1");
    ready_pods_of(&client, 2, "shop/web:1").await;

    let unknown = actions::undo(&client, &web, Some(9)).await.unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("has no revision 9; its revisions are 3, 4, 5"),
        "{unknown}"
    );
}

#[tokio::test]
async fn undo_to_the_revision_already_running_is_skipped_and_patches_nothing() {
    let (_cluster, client) = start().await;
    let web = workload("shop/web");
    rolled_out(&client).await;
    actions::set_image(&client, &web, "shop/web:2")
        .await
        .unwrap();
    assert_eq!(rolled_out(&client).await, 2);
    let before = deployment(&client).await.metadata.generation;

    let undone = actions::undo(&client, &web, Some(2)).await.unwrap();

    assert_eq!(
        undone.message,
        "skipped rollback (current template already matches revision 2)"
    );
    assert!(!undone.changed);
    assert_eq!(deployment(&client).await.metadata.generation, before);
}

#[tokio::test]
async fn a_paused_deployment_is_not_rolled_back() {
    let (_cluster, client) = start().await;
    let web = workload("shop/web");
    rolled_out(&client).await;
    actions::set_image(&client, &web, "shop/web:2")
        .await
        .unwrap();
    assert_eq!(rolled_out(&client).await, 2);
    actions::set_paused(&client, &web, true).await.unwrap();

    let err = actions::undo(&client, &web, None).await.unwrap_err();

    assert!(matches!(err, ActionError::Refused(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot roll back a paused deployment; resume it first"),
        "{err}"
    );
    assert_eq!(image_of(&deployment(&client).await), "shop/web:2");
}

#[tokio::test]
async fn a_refused_scale_names_the_verb_and_the_resource_and_a_missing_workload_its_name() {
    let (cluster, client) = start().await;
    cluster.faults().fail(Fault {
        method: Some(Method::PATCH),
        path_contains: "/scale".into(),
        status: 403,
        times: None,
        delay: None,
    });

    let err = actions::scale(&client, &workload("shop/web"), 3)
        .await
        .unwrap_err();

    assert!(matches!(err, ActionError::Forbidden { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("forbidden: cannot patch deployments/scale \"web\" in namespace \"shop\""),
        "{err}"
    );
    let missing = actions::scale(&client, &workload("shop/api"), 3)
        .await
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "deployment \"api\" not found in namespace \"shop\""
    );
    let statefulset = WorkloadId {
        kind: WorkloadKind::StatefulSet,
        ..workload("shop/db")
    };
    let undo = actions::undo(&client, &statefulset, None)
        .await
        .unwrap_err();
    assert!(undo.to_string().contains("ControllerRevisions"), "{undo}");
}

fn job(client: &kube::Client, image: &str, record: Option<Record>) -> Job {
    Job {
        client: client.clone(),
        workload: workload("shop/web"),
        image: image.into(),
        options: Options {
            timeout: None,
            crash_restarts: 2,
            poll: Duration::from_millis(100),
        },
        record,
    }
}

/// Runs a rollout to its end and returns its outcome and every progress report.
async fn roll(job: &Job) -> (Outcome, Vec<Progress>) {
    let (send, mut receive) = mpsc::unbounded_channel();
    let (_abort, abort) = watch::channel(false);
    let outcome = tokio::time::timeout(SETTLE * 2, rollout::run(job, &send, abort))
        .await
        .expect("the rollout ends within its bound");
    let mut reports = Vec::new();
    while let Ok(report) = receive.try_recv() {
        reports.push(report);
    }
    (outcome, reports)
}

#[tokio::test]
async fn a_good_image_rolls_out_to_completion_and_its_state_file_says_so() {
    let (_cluster, client) = start().await;
    rolled_out(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let record = Record {
        state_dir: dir.path().to_path_buf(),
        engine_id: "http://127.0.0.1:1#sandbox".into(),
        host: "http://127.0.0.1".into(),
        by: "ana".into(),
    };

    let (outcome, reports) = roll(&job(&client, "shop/web:2", Some(record))).await;

    assert_eq!(outcome, Outcome::Complete { revision: 2 });
    ready_pods_of(&client, 2, "shop/web:2").await;
    assert!(
        reports.iter().any(|p| p
            .revisions
            .iter()
            .any(|r| r.revision == 2 && r.image == "shop/web:2")),
        "{reports:?}"
    );
    let files = Files::new(dir.path(), "http://127.0.0.1:1#sandbox", "shop/web");
    let written = state::read_state(&files.state)
        .unwrap()
        .expect("a state file");
    assert_eq!(written.phase, Phase::Succeeded);
    assert_eq!((written.from_revision, written.to_revision), (1, 2));
    assert_eq!(written.image, "shop/web:2");
    assert!(!state::is_running(&files));

    let (again, _) = roll(&job(&client, "shop/web:2", None)).await;
    assert_eq!(again, Outcome::Unchanged);
}

#[tokio::test]
async fn an_image_that_never_gets_ready_is_rolled_back_by_itself() {
    let (_cluster, client) = start().await;
    rolled_out(&client).await;

    let (outcome, reports) = roll(&job(&client, "shop/web:unhealthy", None)).await;

    let Outcome::RolledBack { from, to, reason } = &outcome else {
        panic!("expected a rollback, got {outcome:?}");
    };
    assert_eq!((*from, *to), (2, 1));
    assert!(
        reason.contains("exceeded its progress deadline"),
        "{reason}"
    );
    assert!(
        reports.iter().any(|p| p.phase == Phase::RollingBack),
        "{reports:?}"
    );
    assert_eq!(image_of(&deployment(&client).await), "shop/web:1");
    ready_pods_of(&client, 2, "shop/web:1").await;
}

/// The `pilothouse.dev/rolled-back` mark of each of shop/web's ReplicaSets, by revision.
async fn marks(client: &kube::Client) -> Vec<(u64, Option<String>)> {
    let mut out: Vec<(u64, Option<String>)> = actions::revisions(client, &workload("shop/web"))
        .await
        .expect("the revisions of shop/web read")
        .into_iter()
        .map(|r| (r.number, r.rolled_back))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_failed_rollout_marks_its_replica_set_and_a_later_rollback_passes_over_it() {
    let (_cluster, client) = start().await;
    let web = workload("shop/web");
    rolled_out(&client).await;
    assert_eq!(
        roll(&job(&client, "shop/web:2", None)).await.0,
        Outcome::Complete { revision: 2 }
    );

    let (outcome, _) = roll(&job(&client, "shop/web:unhealthy", None)).await;

    assert!(
        matches!(outcome, Outcome::RolledBack { from: 3, to: 2, .. }),
        "{outcome:?}"
    );
    // Revision 2's ReplicaSet came back as revision 4; the failed one keeps 3 and its mark.
    let after = marks(&client).await;
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(after[0], (1, None));
    assert_eq!(after[1].0, 3);
    let why = after[1].1.clone().expect("revision 3 is marked");
    assert!(why.contains("exceeded its progress deadline"), "{why}");
    assert_eq!(after[2], (4, None));
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), "shop")
        .list(&ListParams::default())
        .await
        .unwrap();
    let template_marked = sets.items.iter().any(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .is_some_and(|a| a.contains_key(actions::ROLLED_BACK_ANNOTATION))
    });
    assert!(
        !template_marked,
        "the mark is on the ReplicaSet, not its pod template"
    );
    rolled_out(&client).await;

    let back = actions::undo(&client, &web, None).await.unwrap();

    assert_eq!(
        back.message,
        "rolled back deployment shop/web to revision 1 (shop/web:1)"
    );
    assert_eq!(image_of(&deployment(&client).await), "shop/web:1");
    let annotations = deployment(&client)
        .await
        .metadata
        .annotations
        .unwrap_or_default();
    assert!(
        !annotations.contains_key(actions::ROLLED_BACK_ANNOTATION),
        "{annotations:?}"
    );
    ready_pods_of(&client, 2, "shop/web:1").await;

    let named = actions::undo(&client, &web, Some(3)).await.unwrap();

    assert_eq!(named.image, "shop/web:unhealthy");
    let warning = named
        .warning()
        .expect("a warning for a revision rolled back from");
    assert!(
        warning.starts_with("revision 3 (shop/web:unhealthy) is one Pilothouse rolled back from: "),
        "{warning}"
    );
}

#[tokio::test]
async fn after_the_only_earlier_revision_failed_a_rollback_says_why_and_changes_nothing() {
    let (_cluster, client) = start().await;
    let web = workload("shop/web");
    rolled_out(&client).await;
    let (outcome, _) = roll(&job(&client, "shop/web:unhealthy", None)).await;
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(rolled_out(&client).await, 3);
    let before = deployment(&client).await.metadata.generation;

    let err = actions::undo(&client, &web, None).await.unwrap_err();

    let text = err.to_string();
    assert!(
        text.starts_with(
            "deployment shop/web has no revision before 3 to roll back to that Pilothouse did \
             not roll back from; rolled back from: revision 2 (shop/web:unhealthy): "
        ),
        "{text}"
    );
    assert_eq!(deployment(&client).await.metadata.generation, before);
    assert_eq!(image_of(&deployment(&client).await), "shop/web:1");
}

#[tokio::test]
async fn a_rollout_that_completes_on_a_marked_revision_takes_the_mark_away() {
    let (_cluster, client) = start().await;
    rolled_out(&client).await;
    let (outcome, _) = roll(&job(&client, "shop/web:2", None)).await;
    assert_eq!(outcome, Outcome::Complete { revision: 2 });
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), "shop");
    let second = actions::revisions(&client, &workload("shop/web"))
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.number == 2)
        .expect("revision 2");
    actions::mark_rolled_back(&client, "shop", &second.replica_set, Some("was bad once"))
        .await
        .unwrap();
    assert_eq!(marks(&client).await[1], (2, Some("was bad once".into())));
    actions::undo(&client, &workload("shop/web"), Some(1))
        .await
        .unwrap();
    assert_eq!(rolled_out(&client).await, 3);

    let (again, _) = roll(&job(&client, "shop/web:2", None)).await;

    assert_eq!(again, Outcome::Complete { revision: 4 });
    let rs = sets.get(&second.replica_set).await.unwrap();
    let annotations = rs.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key(actions::ROLLED_BACK_ANNOTATION),
        "{annotations:?}"
    );
}

#[tokio::test]
async fn an_image_whose_pods_crash_loop_is_rolled_back_on_their_restarts() {
    let (_cluster, client) = start().await;
    rolled_out(&client).await;
    patient(&client).await;
    let crashing = job(&client, "shop/web:crash", None);

    let (outcome, _) = roll(&crashing).await;

    let Outcome::RolledBack { reason, to, .. } = &outcome else {
        panic!("expected a rollback, got {outcome:?}");
    };
    assert_eq!(*to, 1);
    assert!(reason.contains("crash-loops"), "{reason}");
    assert_eq!(image_of(&deployment(&client).await), "shop/web:1");
    ready_pods_of(&client, 2, "shop/web:1").await;
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), "shop")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(sets.items.len(), 2);
}

fn elector(client: &kube::Client, identity: &str) -> Elector {
    Elector::new(
        client.clone(),
        "shop",
        "pilothouse-autoscaler",
        identity,
        Duration::from_secs(2),
        Duration::from_millis(1500),
        Duration::from_millis(200),
    )
    .expect("valid election durations")
}

/// Tries `candidate` every retry period until it leads, at most [`SETTLE`].
async fn leads(candidate: &mut Elector) -> Instant {
    let started = Instant::now();
    loop {
        if candidate.try_acquire_or_renew().await.unwrap() == Leadership::Leader {
            return Instant::now();
        }
        assert!(
            started.elapsed() < SETTLE,
            "{} never led",
            candidate.identity()
        );
        tokio::time::sleep(candidate.retry_period()).await;
    }
}

#[tokio::test]
async fn of_two_electors_one_leads_and_the_other_takes_over_when_it_stops_renewing() {
    let (cluster, client) = start().await;
    let other_client = client_of(&cluster).await;
    let mut first = elector(&client, "daemon-a");
    let mut second = elector(&other_client, "daemon-b");

    assert_eq!(
        first.try_acquire_or_renew().await.unwrap(),
        Leadership::Leader
    );
    let Leadership::Follower { holder, .. } = second.try_acquire_or_renew().await.unwrap() else {
        panic!("the second candidate leads beside the first");
    };
    assert_eq!(holder, "daemon-a");
    assert_eq!(
        first.try_acquire_or_renew().await.unwrap(),
        Leadership::Leader
    );

    // The first stops renewing: the second takes over once the lease has expired.
    leads(&mut second).await;
    let Leadership::Follower { holder, .. } = first.try_acquire_or_renew().await.unwrap() else {
        panic!("the first candidate still leads after the second took over");
    };
    assert_eq!(holder, "daemon-b");
    let lease =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), "shop")
            .get("pilothouse-autoscaler")
            .await
            .unwrap()
            .spec
            .unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("daemon-b"));
    assert_eq!(lease.lease_transitions, Some(1));
    assert_eq!(lease.lease_duration_seconds, Some(2));

    // A release hands it over at the next attempt, without waiting for the lease to expire.
    second.release().await;
    assert_eq!(
        first.try_acquire_or_renew().await.unwrap(),
        Leadership::Leader
    );
}

#[tokio::test]
async fn a_scale_that_meets_a_conflict_reads_again_and_retries_once() {
    let (cluster, client) = start().await;
    rolled_out(&client).await;
    let conflict = |times| Fault {
        method: Some(Method::PATCH),
        path_contains: "/scale".into(),
        status: 409,
        times,
        delay: None,
    };
    cluster.faults().fail(conflict(Some(1)));

    let message = actions::scale(&client, &workload("shop/web"), 3)
        .await
        .unwrap();

    assert_eq!(message, "scaled deployment shop/web from 2 to 3 replicas");
    cluster.faults().fail(conflict(None));
    let err = actions::scale(&client, &workload("shop/web"), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, ActionError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("changed meanwhile"), "{err}");
}

/// A deployment whose progress deadline is too far away to end a test's rollout.
async fn patient(client: &kube::Client) {
    Api::<Deployment>::namespaced(client.clone(), "shop")
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": { "progressDeadlineSeconds": 600 } })),
        )
        .await
        .unwrap();
    rolled_out(client).await;
}

#[tokio::test]
async fn an_operators_abort_rolls_back() {
    let (_cluster, client) = start().await;
    patient(&client).await;
    let job = job(&client, "shop/web:unhealthy", None);
    let (send, mut receive) = mpsc::unbounded_channel::<Progress>();
    let (abort, aborted) = watch::channel(false);

    let abort_once_rolling = async {
        while let Some(report) = receive.recv().await {
            if report.to == Some(2) {
                let _ = abort.send(true);
                break;
            }
        }
    };
    let (outcome, ()) = tokio::time::timeout(SETTLE * 2, async {
        tokio::join!(rollout::run(&job, &send, aborted), abort_once_rolling)
    })
    .await
    .expect("the rollout ends within its bound");

    assert_eq!(
        outcome,
        Outcome::RolledBack {
            from: 2,
            to: 1,
            reason: "aborted by an operator".into()
        }
    );
    assert_eq!(image_of(&deployment(&client).await), "shop/web:1");
    ready_pods_of(&client, 2, "shop/web:1").await;
}

#[tokio::test]
async fn a_rollout_past_its_timeout_rolls_back() {
    let (_cluster, client) = start().await;
    patient(&client).await;
    let mut slow = job(&client, "shop/web:unhealthy", None);
    slow.options.timeout = Some(Duration::from_secs(1));

    let (outcome, _) = roll(&slow).await;

    let Outcome::RolledBack { reason, to, .. } = &outcome else {
        panic!("expected a rollback, got {outcome:?}");
    };
    assert_eq!(*to, 1);
    assert!(reason.starts_with("timed out after"), "{reason}");
    assert_eq!(image_of(&deployment(&client).await), "shop/web:1");
}

#[tokio::test]
async fn a_rollout_refused_by_the_api_server_fails_and_its_state_file_says_why() {
    let (cluster, client) = start().await;
    rolled_out(&client).await;
    cluster.faults().fail(Fault {
        method: Some(Method::PATCH),
        path_contains: "/deployments/web".into(),
        status: 403,
        times: None,
        delay: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let record = Record {
        state_dir: dir.path().to_path_buf(),
        engine_id: "E1".into(),
        host: "http://127.0.0.1".into(),
        by: "ana".into(),
    };

    let (outcome, _) = roll(&job(&client, "shop/web:2", Some(record))).await;

    let Outcome::Failed { reason } = &outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert!(
        reason.starts_with("forbidden: cannot patch deployments \"web\" in namespace \"shop\""),
        "{reason}"
    );
    let files = Files::new(dir.path(), "E1", "shop/web");
    let written = state::read_state(&files.state)
        .unwrap()
        .expect("a state file");
    assert_eq!(written.phase, Phase::Failed);
    assert_eq!(&written.message, reason);
    assert_eq!(image_of(&deployment(&client).await), "shop/web:1");
}

#[tokio::test]
async fn an_action_on_a_cluster_that_does_not_answer_says_why_in_words() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.local_addr().expect("its address")
    };
    let config = kube::Config::new(format!("http://{closed}").parse().expect("a URL"));
    let client = kube::Client::try_from(config).expect("a client");
    let err = actions::scale(&client, &workload("shop/web"), 3)
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, ActionError::Unreachable { .. }), "{err:?}");
    let said = err.to_string();
    assert!(
        said.starts_with("cannot reach the Kubernetes API server to ") && said.contains("refused"),
        "{said}"
    );
    assert!(!said.contains("ServiceError"), "{said}");
}
