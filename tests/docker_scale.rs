//! Scaling a Compose-labelled workload through the Docker worker against the real engine: new
//! replicas are named, labelled and networked as `docker compose up --scale` does it, removal
//! goes newest first, and a fixed host port is refused before anything is created.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::{Config, InspectContainerOptions, ListContainersOptions};
use bollard::models::{EndpointSettings, HostConfig, PortBinding};
use pilothouse::model::{WorkloadId, WorkloadKind};
use pilothouse::platform::{Request, Update};
use support::{SLEEP_FOREVER, TestLabel, WorkerUnderTest, busybox, docker_or_skip};

const WAIT: Duration = Duration::from_secs(30);

fn compose_labels(project: &str, number: &str) -> Vec<(String, String)> {
    vec![
        ("com.docker.compose.project".into(), project.into()),
        ("com.docker.compose.service".into(), "web".into()),
        ("com.docker.compose.container-number".into(), number.into()),
    ]
}

fn with_labels(mut config: Config<String>, extra: Vec<(String, String)>) -> Config<String> {
    config.labels.get_or_insert_with(HashMap::new).extend(extra);
    config
}

fn workload(project: &str) -> WorkloadId {
    WorkloadId {
        target: "local".into(),
        kind: WorkloadKind::Compose,
        name: format!("{project}/web"),
    }
}

/// Starts replica `n` of the project's `web` service, sleeping until stopped.
async fn run_replica(docker: &Docker, label: &TestLabel, project: &str, n: u64) {
    let config = with_labels(
        busybox(label, SLEEP_FOREVER, &[]),
        compose_labels(project, &n.to_string()),
    );
    support::run_container(docker, &format!("{project}-web-{n}"), config).await;
}

/// Names of the containers of the project, sorted.
async fn project_containers(docker: &Docker, project: &str) -> Vec<String> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("com.docker.compose.project={project}")],
    )]);
    let options = ListContainersOptions {
        all: true,
        filters,
        ..Default::default()
    };
    let listed = docker.list_containers(Some(options)).await.expect("list");
    let mut names: Vec<String> = listed
        .iter()
        .flat_map(|c| c.names.iter().flatten())
        .map(|n| n.trim_start_matches('/').to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn scaling_a_compose_workload_from_one_to_three_and_back_to_one() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let project = label.short();
    let network = format!("{project}_default");
    label.network(&docker, &network).await;

    let mut config = with_labels(
        busybox(&label, SLEEP_FOREVER, &[]),
        compose_labels(&project, "1"),
    );
    config.host_config = Some(HostConfig {
        network_mode: Some(network.clone()),
        ..Default::default()
    });
    let endpoint = EndpointSettings {
        aliases: Some(vec!["web".into()]),
        ..Default::default()
    };
    config.networking_config = Some(bollard::container::NetworkingConfig {
        endpoints_config: HashMap::from([(network.clone(), endpoint)]),
    });
    support::run_container(&docker, &format!("{project}-web-1"), config).await;

    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;
    let up = worker
        .ask(WAIT, |reply| Request::Scale {
            workload: workload(&project),
            replicas: 3,
            reply,
        })
        .await;
    assert_eq!(
        up,
        Ok(format!(
            "scaled {project}/web from 1 to 3: created {project}-web-2, {project}-web-3"
        ))
    );
    let names = project_containers(&docker, &project).await;
    assert_eq!(names, [1, 2, 3].map(|n| format!("{project}-web-{n}")));

    for n in [2, 3] {
        let name = format!("{project}-web-{n}");
        let inspect = docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .expect("inspect new replica");
        let labels = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .expect("labels");
        assert_eq!(labels["com.docker.compose.project"], project);
        assert_eq!(labels["com.docker.compose.service"], "web");
        assert_eq!(labels["com.docker.compose.container-number"], n.to_string());
        assert_eq!(
            labels[support::TEST_LABEL_KEY],
            label.value,
            "the other labels are copied"
        );
        let state = inspect.state.as_ref().and_then(|s| s.running);
        assert_eq!(state, Some(true), "{name} is started");
        let networks = inspect
            .network_settings
            .and_then(|s| s.networks)
            .expect("networks");
        let aliases = networks
            .get(&network)
            .and_then(|e| e.aliases.clone())
            .unwrap_or_default();
        assert!(
            aliases.contains(&"web".to_string()),
            "{name} answers to web on {network}: {aliases:?}"
        );
        assert_eq!(
            networks.len(),
            1,
            "only the workload's network: {:?}",
            networks.keys()
        );
    }

    let down = worker
        .ask(WAIT, |reply| Request::Scale {
            workload: workload(&project),
            replicas: 1,
            reply,
        })
        .await;
    assert_eq!(
        down,
        Ok(format!(
            "scaled {project}/web from 3 to 1: removed {project}-web-3, {project}-web-2"
        ))
    );
    assert_eq!(
        project_containers(&docker, &project).await,
        [format!("{project}-web-1")]
    );
    let mut destroyed = Vec::new();
    while destroyed.len() < 2 {
        let subject = worker
            .wait_for("destroy events", WAIT, |u| match u {
                Update::Event { event, .. }
                    if event.action == "destroy" && event.subject.starts_with(&project) =>
                {
                    Some(event.subject.clone())
                }
                _ => None,
            })
            .await;
        destroyed.push(subject);
    }
    // The two are stopped and removed at once, so their destroy events come in either order.
    destroyed.sort();
    assert_eq!(
        destroyed,
        [format!("{project}-web-2"), format!("{project}-web-3")]
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_fixed_host_port_makes_scale_up_fail_with_the_reason_and_creates_nothing() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let project = label.short();
    let mut config = with_labels(
        busybox(&label, SLEEP_FOREVER, &[]),
        compose_labels(&project, "1"),
    );
    let binding = PortBinding {
        host_ip: Some("127.0.0.1".into()),
        host_port: Some("18080".into()),
    };
    config.exposed_ports = Some(HashMap::from([("80/tcp".to_string(), HashMap::new())]));
    config.host_config = Some(HostConfig {
        port_bindings: Some(HashMap::from([("80/tcp".to_string(), Some(vec![binding]))])),
        ..Default::default()
    });
    // Created, not started: the refusal depends on the configuration alone.
    support::create_container(&docker, &format!("{project}-web-1"), config).await;

    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;
    let reply = worker
        .ask(WAIT, |reply| Request::Scale {
            workload: workload(&project),
            replicas: 3,
            reply,
        })
        .await;
    assert_eq!(
        reply,
        Err(format!(
            "cannot scale {project}/web to 3: it publishes fixed host port 18080, which a \
             second replica would collide with; publish a range or no host port"
        ))
    );
    assert_eq!(
        project_containers(&docker, &project).await,
        [format!("{project}-web-1")]
    );

    let standalone = WorkloadId {
        target: "local".into(),
        kind: WorkloadKind::Container,
        name: format!("{project}-web-1"),
    };
    let reply = worker
        .ask(WAIT, |reply| Request::Scale {
            workload: standalone,
            replicas: 2,
            reply,
        })
        .await;
    assert_eq!(
        reply,
        Err("a standalone container cannot be scaled; give it a pilothouse.group label".into())
    );
    worker.stop().await;
}

#[tokio::test]
async fn scaling_down_stops_the_removed_replicas_at_once_not_one_after_another() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let project = label.short();
    // As process 1 without a trap, the shell ignores SIGTERM: each stop takes its full timeout.
    let deaf = ["sh", "-c", "while :; do sleep 1; done"];
    let stop_timeout = 6;
    for n in 1..=3 {
        let mut config = with_labels(
            busybox(&label, &deaf, &[]),
            compose_labels(&project, &n.to_string()),
        );
        config.stop_timeout = Some(stop_timeout);
        support::run_container(&docker, &format!("{project}-web-{n}"), config).await;
    }

    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;
    let started = Instant::now();
    let down = worker
        .ask(WAIT, |reply| Request::Scale {
            workload: workload(&project),
            replicas: 1,
            reply,
        })
        .await;
    let took = started.elapsed();
    assert_eq!(
        down,
        Ok(format!(
            "scaled {project}/web from 3 to 1: removed {project}-web-3, {project}-web-2"
        ))
    );
    assert_eq!(
        project_containers(&docker, &project).await,
        [format!("{project}-web-1")]
    );
    let one_stop = Duration::from_secs(stop_timeout as u64);
    assert!(
        took >= one_stop && took < one_stop * 2,
        "two stops of {one_stop:?} each took {took:?}: they did not run at once"
    );
    worker.stop().await;
}

#[tokio::test]
async fn scaling_down_removes_the_newest_replica_first_even_when_its_number_is_lowest() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let project = label.short();
    for n in [2, 3] {
        run_replica(&docker, &label, &project, n).await;
    }
    // The list gives creation times to the second: replica 1, recreated after a full second,
    // is the newest for certain.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    run_replica(&docker, &label, &project, 1).await;

    let mut worker = WorkerUnderTest::start("local", None);
    worker.snapshot().await;
    let down = worker
        .ask(WAIT, |reply| Request::Scale {
            workload: workload(&project),
            replicas: 2,
            reply,
        })
        .await;
    assert_eq!(
        down,
        Ok(format!(
            "scaled {project}/web from 3 to 2: removed {project}-web-1"
        ))
    );
    assert_eq!(
        project_containers(&docker, &project).await,
        [2, 3].map(|n| format!("{project}-web-{n}"))
    );

    // 2 and 3 may share a creation second; then the higher number goes first, as it does when
    // 3 is the later one.
    let down = worker
        .ask(WAIT, |reply| Request::Scale {
            workload: workload(&project),
            replicas: 1,
            reply,
        })
        .await;
    assert_eq!(
        down,
        Ok(format!(
            "scaled {project}/web from 2 to 1: removed {project}-web-3"
        ))
    );
    assert_eq!(
        project_containers(&docker, &project).await,
        [format!("{project}-web-2")]
    );
    worker.stop().await;
}
