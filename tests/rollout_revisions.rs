//! Revisions against the real engine: a replica's template read from its inspect, moved to a
//! new image as `docker compose` would recreate it, and written into a replica copied the way
//! scaling copies one. The new replica runs the new image's command and health check, keeps the
//! env variable and label the workload set itself, and loses what the old image gave it.
//!
//! The two images are built here from the local busybox test image (no registry), from
//! Dockerfiles that differ in CMD, ENV, LABEL and HEALTHCHECK.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::{Config, InspectContainerOptions};
use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use chrono::Utc;
use pilothouse::platform::docker::scale::{GROUP_LABEL, GROUP_NUMBER, Members, new_replica};
use pilothouse::rollout::history::History;
use pilothouse::rollout::revision::{
    HASH_LABEL, ImageDefaults, REVISION_LABEL, Template, revision_hash, revision_number,
};
use support::{TEST_LABEL_KEY, TestLabel, build_image, docker_or_skip};

const IMAGE_A: &str = "pilothouse-test/revisions:a";
const IMAGE_B: &str = "pilothouse-test/revisions:b";

/// Image a: its health check looks for a file nothing creates, so a replica that kept it
/// would never be healthy.
const IMAGE_A_BODY: &str = r#"
ENV FROM_A=1 SHARED=a
LABEL org.example.flavour=a org.example.only-a=yes
HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD test -e /tmp/a-ok
CMD ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
"#;

/// Image b: its command creates the file its health check looks for.
const IMAGE_B_BODY: &str = r#"
ENV FROM_B=1 SHARED=b
LABEL org.example.flavour=b
HEALTHCHECK --interval=1s --timeout=1s --retries=30 CMD test -e /tmp/b-ran
CMD ["sh", "-c", "touch /tmp/b-ran; trap 'exit 0' TERM; while :; do sleep 1; done"]
"#;

const B_CMD: &[&str] = &[
    "sh",
    "-c",
    "touch /tmp/b-ran; trap 'exit 0' TERM; while :; do sleep 1; done",
];

/// How long a replica may take to become healthy before the test gives up.
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);

async fn inspect(docker: &Docker, id: &str) -> ContainerInspectResponse {
    docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .expect("inspect the container")
}

async fn defaults(docker: &Docker, image: &str) -> ImageDefaults {
    let inspect = docker
        .inspect_image(image)
        .await
        .expect("inspect the image");
    ImageDefaults::from_image(&inspect)
}

/// Waits until the container's health check says healthy; panics on unhealthy or after
/// [`HEALTHY_WITHIN`].
async fn wait_healthy(docker: &Docker, id: &str) {
    let deadline = Instant::now() + HEALTHY_WITHIN;
    loop {
        let state = inspect(docker, id).await.state.unwrap_or_default();
        let status = state.health.and_then(|h| h.status);
        match status {
            Some(HealthStatusEnum::HEALTHY) => return,
            Some(HealthStatusEnum::UNHEALTHY) => panic!("{id} became unhealthy"),
            other => assert!(
                Instant::now() < deadline,
                "{id} was not healthy within {HEALTHY_WITHIN:?}: {other:?}, running {:?}",
                state.running
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn env_of(inspect: &ContainerInspectResponse) -> Vec<String> {
    inspect
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
}

fn labels_of(inspect: &ContainerInspectResponse) -> HashMap<String, String> {
    inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_replica_moved_to_a_new_image_runs_its_command_and_check_and_keeps_its_own_settings() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    build_image(&docker, IMAGE_A, IMAGE_A_BODY).await;
    build_image(&docker, IMAGE_B, IMAGE_B_BODY).await;

    // A group replica of image a, with one env variable and one label of its own.
    let label = TestLabel::new();
    let group = label.short();
    let members = Members::Group {
        name: group.clone(),
    };
    let first = Config {
        image: Some(IMAGE_A.to_string()),
        env: Some(vec!["MINE=1".to_string()]),
        labels: Some(label.labels(&[("team", "shop"), (GROUP_LABEL, &group), (GROUP_NUMBER, "1")])),
        stop_timeout: Some(1),
        ..Default::default()
    };
    let first_id = support::run_container(&docker, &members.replica_name(1), first).await;
    let first_inspect = inspect(&docker, &first_id).await;

    let template = Template::from_container(&first_inspect).expect("the template of image a");
    assert_eq!(template.image, IMAGE_A);
    for entry in ["MINE=1", "FROM_A=1", "SHARED=a"] {
        assert!(
            template.env.contains(&entry.to_string()),
            "{entry} in {:?}",
            template.env
        );
    }
    assert_eq!(
        template.labels.get("team").map(String::as_str),
        Some("shop")
    );
    assert_eq!(
        template
            .labels
            .get("org.example.flavour")
            .map(String::as_str),
        Some("a")
    );
    assert!(
        !template.labels.contains_key(GROUP_NUMBER),
        "the replica number is not part of the template"
    );
    let a_check = template
        .healthcheck
        .clone()
        .expect("image a's health check");
    assert_eq!(a_check.test, ["CMD-SHELL", "test -e /tmp/a-ok"]);

    // Roll it to image b and create the next replica from the result.
    let old = defaults(&docker, IMAGE_A).await;
    let new = defaults(&docker, IMAGE_B).await;
    let next = template.with_image(IMAGE_B, &old, &new);
    let mut replica = new_replica(&first_inspect, &members, 2).expect("a replica config");
    next.apply(2, &mut replica.config);
    let second_id = support::run_container(&docker, &replica.name, replica.config).await;
    let second = inspect(&docker, &second_id).await;

    let config = second.config.clone().expect("config");
    assert_eq!(config.image.as_deref(), Some(IMAGE_B));
    assert_eq!(
        config.cmd,
        Some(B_CMD.iter().map(|s| s.to_string()).collect())
    );
    let check = config.healthcheck.clone().expect("a health check");
    assert_eq!(
        check.test,
        Some(vec![
            "CMD-SHELL".to_string(),
            "test -e /tmp/b-ran".to_string()
        ])
    );
    assert_eq!(check.retries, Some(30));

    let env = env_of(&second);
    for entry in ["MINE=1", "FROM_B=1", "SHARED=b"] {
        assert!(env.contains(&entry.to_string()), "{entry} in {env:?}");
    }
    assert!(
        !env.iter()
            .any(|e| e.starts_with("FROM_A=") || e == "SHARED=a"),
        "image a's env is gone: {env:?}"
    );

    let labels = labels_of(&second);
    assert_eq!(labels.get("team").map(String::as_str), Some("shop"));
    assert_eq!(
        labels.get("org.example.flavour").map(String::as_str),
        Some("b")
    );
    assert!(!labels.contains_key("org.example.only-a"), "{labels:?}");
    assert_eq!(labels.get(GROUP_NUMBER).map(String::as_str), Some("2"));
    assert_eq!(labels.get(GROUP_LABEL), Some(&group));
    assert_eq!(labels.get(TEST_LABEL_KEY), Some(&label.value));
    assert_eq!(revision_number(&labels), Some(2));
    assert_eq!(revision_hash(&labels), Some(next.hash().as_str()));
    assert_eq!(labels.get(REVISION_LABEL).map(String::as_str), Some("2"));
    assert!(labels.contains_key(HASH_LABEL));

    // The engine's merge of image b into the new replica adds nothing the template lacks, so
    // the replica reads back as the template it was made from (which recovery relies on).
    let read_back = Template::from_container(&second).expect("the template of the replica");
    assert_eq!(read_back, next);
    assert_eq!(read_back.hash(), next.hash());
    assert_ne!(next.hash(), template.hash());

    // With the history file gone, the two replicas give back both revisions: the unlabelled
    // one of image a as revision 1, the new one under the number and hash on its labels.
    let recovered = History::recover(
        &group,
        &[
            (
                Template::from_container(&first_inspect).expect("template"),
                None,
            ),
            (read_back, revision_number(&labels)),
        ],
        Utc::now(),
    );
    let numbered: Vec<(u32, &str, &str)> = recovered
        .revisions
        .iter()
        .map(|r| (r.number, r.template.image.as_str(), r.hash.as_str()))
        .collect();
    let a_hash = template.hash();
    assert_eq!(
        numbered,
        vec![
            (1, IMAGE_A, a_hash.as_str()),
            (2, IMAGE_B, next.hash().as_str())
        ]
    );

    // It runs image b's command: image b's check, which looks for the file that command
    // creates, passes.
    wait_healthy(&docker, &second_id).await;
}
