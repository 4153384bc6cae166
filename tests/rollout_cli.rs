//! The rollout command line against the real engine, without a load balancer: rollouts with no
//! surge room, a rollout cut short and taken on again, a state file that does not read, and a
//! rollback that passes over a revision which failed its health gate.

mod support;

use std::time::{Duration, Instant};

use support::rollout::{
    WEB_BAD, WEB_V1, WEB_V2, build_web_images, describe, pilothouse, running, start_group,
};
use support::{TestLabel, docker_or_skip};

const HOST: &str = "unix:///var/run/docker.sock";

/// The binary with `args` against the local engine, from a test on the multi-thread runtime.
fn cli(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--docker-host", HOST]);
    tokio::task::block_in_place(|| pilothouse(root, &all))
}

fn all_on(now: &[(String, String)], image: &str, count: usize) -> bool {
    now.len() == count && now.iter().all(|(_, i)| i == image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_rolls_out_with_no_surge_room() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    build_web_images(&docker).await;
    let label = TestLabel::new();
    let group = label.short();
    start_group(&docker, &label, &group, WEB_V1, 1).await;
    let root = tempfile::tempdir().expect("temp dir");

    // The only replica goes first; the new one copies the configuration seen before.
    let output = cli(
        root.path(),
        &[
            "rollout",
            &group,
            "--image",
            WEB_V2,
            "--wait",
            "--max-surge",
            "0",
            "--max-unavailable",
            "1",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let now = running(&docker, &label, &group).await;
    assert!(all_on(&now, WEB_V2, 1), "{now:?}");

    // Both bounds 0 is a usage error, refused before anything is touched.
    let output = cli(
        root.path(),
        &[
            "rollout",
            &group,
            "--image",
            WEB_V1,
            "--wait",
            "--max-surge",
            "0",
            "--max-unavailable",
            "0",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(all_on(&running(&docker, &label, &group).await, WEB_V2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_cut_short_is_taken_on_again_with_its_count_and_a_bad_revision_is_passed_over() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    build_web_images(&docker).await;
    let label = TestLabel::new();
    let group = label.short();
    start_group(&docker, &label, &group, WEB_V1, 3).await;
    let root = tempfile::tempdir().expect("temp dir");

    // A rollout killed once its first new replica exists leaves the workload mixed, one over.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pilothouse"))
        .args([
            "rollout",
            &group,
            "--image",
            WEB_V2,
            "--wait",
            "--max-surge",
            "1",
            "--max-unavailable",
            "0",
            "--docker-host",
            HOST,
        ])
        .env("PILOTHOUSE_CONFIG_DIR", root.path().join("config"))
        .env("PILOTHOUSE_DATA_DIR", root.path().join("data"))
        .env("PILOTHOUSE_STATE_DIR", root.path().join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the rollout");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = running(&docker, &label, &group).await;
        if now.iter().any(|(_, image)| image == WEB_V2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no v2 replica within 60 s: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("kill -9 the rollout");
    let _ = child.wait();
    let mixed = running(&docker, &label, &group).await;
    assert_eq!(mixed.len(), 4, "one replica over the count: {mixed:?}");

    // The same rollout again finishes the job, at the count the first one started with.
    let output = cli(
        root.path(),
        &["rollout", &group, "--image", WEB_V2, "--wait"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("nothing to do"), "{stdout}");
    let now = running(&docker, &label, &group).await;
    assert!(all_on(&now, WEB_V2, 3), "{now:?}");

    // Now every replica runs v2: nothing to do, and it says so.
    let output = cli(
        root.path(),
        &["rollout", &group, "--image", WEB_V2, "--wait"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing to do"));

    // A replica of v2 stopped by hand is no longer "nothing to do": it is replaced.
    let (stopped, _) = now[0].clone();
    docker
        .stop_container(&stopped, None)
        .await
        .expect("stop a replica");
    let output = cli(
        root.path(),
        &["rollout", &group, "--image", WEB_V2, "--wait"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("nothing to do"));
    let now = running(&docker, &label, &group).await;
    assert!(all_on(&now, WEB_V2, 3), "{now:?}");
    assert!(
        docker.inspect_container(&stopped, None).await.is_err(),
        "the stopped replica {stopped} was replaced and removed"
    );

    // A bad image rolls back; `rollback` then goes to v1, passing over the bad revision.
    let output = cli(
        root.path(),
        &["rollout", &group, "--image", WEB_BAD, "--wait"],
    );
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let history = cli(root.path(), &["history", &group]);
    let history = String::from_utf8_lossy(&history.stdout).to_string();
    assert!(history.contains("(rolled back)"), "{history}");
    let output = cli(root.path(), &["rollback", &group, "--wait"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let now = running(&docker, &label, &group).await;
    assert!(all_on(&now, WEB_V1, 3), "{now:?}\n{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_that_does_not_read_is_kept_and_named() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    build_web_images(&docker).await;
    let label = TestLabel::new();
    let group = label.short();
    start_group(&docker, &label, &group, WEB_V1, 1).await;
    let root = tempfile::tempdir().expect("temp dir");
    let engine_id = docker.info().await.expect("info").id.expect("engine ID");
    let files =
        pilothouse::rollout::state::Files::new(&root.path().join("state"), &engine_id, &group);
    std::fs::create_dir_all(files.state.parent().expect("dir")).expect("state dir");
    std::fs::write(&files.state, "garbage").expect("write");

    let output = cli(
        root.path(),
        &["rollout", &group, "--image", WEB_V2, "--wait"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&files.state.display().to_string()) && stderr.contains("move the file"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&files.state).expect("kept"),
        "garbage"
    );
    assert!(all_on(&running(&docker, &label, &group).await, WEB_V1, 1));
}
