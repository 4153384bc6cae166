//! `pilothouse scale` and `pilothouse status`, run as the real binary against the real engine on
//! this machine's local socket, on Pilothouse groups of the test's own containers, with the
//! config, state and data directories in a temp dir of the test's own.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bollard::Docker;
use pilothouse::rollout::state;
use support::autoscale::{Group, audit_lines};
use support::{SLEEP_FOREVER, TEST_IMAGE, TestLabel, busybox, docker_or_skip};

/// A temp dir holding the binary's config, state and data directories.
struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        Dirs {
            root: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn config(&self) -> PathBuf {
        self.root.path().join("config")
    }

    fn state(&self) -> PathBuf {
        self.root.path().join("state")
    }

    fn audit_log(&self) -> PathBuf {
        self.state().join("audit.jsonl")
    }

    /// Writes `config.toml`.
    fn config_toml(&self, text: &str) {
        std::fs::create_dir_all(self.config()).expect("config dir");
        std::fs::write(self.config().join("config.toml"), text).expect("config.toml");
    }

    /// Writes `rules/NAME.yaml`.
    fn rule(&self, name: &str, text: &str) {
        let dir = self.config().join("rules");
        std::fs::create_dir_all(&dir).expect("rules dir");
        std::fs::write(dir.join(format!("{name}.yaml")), text).expect("rule file");
    }

    /// Runs the binary with `args` on these directories.
    fn run(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_pilothouse"))
            .args(args)
            .env("PILOTHOUSE_CONFIG_DIR", self.config())
            .env("PILOTHOUSE_STATE_DIR", self.state())
            .env("PILOTHOUSE_DATA_DIR", self.root.path().join("data"))
            .env("NO_COLOR", "1")
            .output()
            .expect("the binary runs");
        Run::from(output)
    }

    /// The audit log's lines about `workload`.
    fn audited(&self, workload: &str) -> Vec<serde_json::Value> {
        audit_lines(&self.audit_log())
            .into_iter()
            .filter(|l| l["workload"] == workload)
            .collect()
    }
}

/// What a run of the binary gave.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The group's containers that run.
async fn running(group: &Group) -> Vec<String> {
    group
        .containers()
        .await
        .into_iter()
        .filter(|(_, state)| state == "running")
        .map(|(name, _)| name)
        .collect()
}

/// The engine's ID, under which rollout files are kept.
async fn engine_id(docker: &Docker) -> String {
    let info = docker.info().await.expect("docker info");
    info.id
        .filter(|id| !id.is_empty())
        .expect("the engine has an ID")
}

/// `status --output json`'s entry for `workload` on the local target.
fn status_of(dirs: &Dirs, workload: &str) -> serde_json::Value {
    let run = dirs.run(&["status", "--output", "json"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(run.stdout.lines().count(), 1, "one JSON line: {run}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("status JSON");
    let target = &report["targets"][0];
    assert_eq!(target["name"], "local", "{report}");
    assert_eq!(target["connected"], true, "{report}");
    assert!(target["error"].is_null(), "{report}");
    let workloads = target["workloads"].as_array().expect("workloads array");
    workloads
        .iter()
        .find(|w| w["name"] == workload)
        .unwrap_or_else(|| panic!("{workload} in {report}"))
        .clone()
}

/// A rule that scales `group` on `local` by CPU.
fn cpu_rule(group: &str) -> String {
    format!(
        "name: {group}\ntarget: {{ platform: docker, host: local, workload: {group} }}\n\
         minReplicas: 1\nmaxReplicas: 4\nmetrics:\n  - name: cpu\n    cpu: {{ utilization: 70 }}\n"
    )
}

#[tokio::test]
async fn scale_takes_a_group_from_one_to_three_and_back_and_audits_both() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let group = Group::start(&docker, &label).await;
    let name = group.name.clone();
    let dirs = Dirs::new();

    let up = dirs.run(&["scale", &name, "3"]);
    assert_eq!(up.code, Some(0), "{up}");
    assert_eq!(
        up.stdout,
        format!("scaled {name} from 1 to 3: created {name}-2, {name}-3\n")
    );
    assert_eq!(up.stderr, "", "no rule, no warning");
    assert_eq!(
        running(&group).await,
        [1, 2, 3].map(|n| format!("{name}-{n}"))
    );

    // A rule for the group: the scale still happens, with a warning on stderr.
    dirs.rule("scaler", &cpu_rule(&name));
    let down = dirs.run(&["scale", &name, "1", "--output", "json"]);
    assert_eq!(down.code, Some(0), "{down}");
    let json: serde_json::Value = serde_json::from_str(&down.stdout).expect("scale JSON");
    assert_eq!(json["workload"], name.as_str());
    assert_eq!(json["target"], "local");
    assert_eq!(json["from"], 3);
    assert_eq!(json["to"], 1);
    let message = json["message"].as_str().expect("message");
    assert!(
        message.starts_with(&format!("scaled {name} from 3 to 1: removed ")),
        "{message}"
    );
    assert!(
        down.stderr
            .starts_with(&format!("pilothouse: warning: rule {name} (")),
        "{down}"
    );
    assert!(down.stderr.contains("next cycle"), "{down}");
    assert_eq!(running(&group).await, [format!("{name}-1")]);
    assert_eq!(
        group.containers().await.len(),
        1,
        "removed, not just stopped"
    );

    let audited = dirs.audited(&name);
    let summary: Vec<(String, String, u64, u64)> = audited
        .iter()
        .map(|l| {
            assert_eq!(l["action"], "scale", "{l}");
            assert_eq!(l["target"], "local", "{l}");
            (
                l["origin"].as_str().unwrap_or_default().to_string(),
                l["outcome"].as_str().unwrap_or_default().to_string(),
                l["from"].as_u64().unwrap_or(99),
                l["to"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    let line = |outcome: &str, from, to| ("cli".to_string(), outcome.to_string(), from, to);
    assert_eq!(
        summary,
        [
            line("started", 1, 3),
            line("ok", 1, 3),
            line("started", 3, 1),
            line("ok", 3, 1)
        ]
    );
    assert_eq!(audited[1]["message"], up.stdout.trim_end());
}

#[tokio::test]
async fn scaling_a_workload_that_does_not_exist_fails_with_what_was_asked_and_near_names() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let group = Group::start(&docker, &label).await;
    let dirs = Dirs::new();

    let missing = format!("{}x", group.name);
    let run = dirs.run(&["scale", &missing, "2"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.starts_with(&format!(
            "pilothouse: no workload named {missing} on local (unix://"
        )),
        "{run}"
    );
    assert!(
        run.stderr.contains(&format!("did you mean {}", group.name)),
        "{run}"
    );
    assert!(dirs.audited(&missing).is_empty(), "nothing was acted on");
    assert_eq!(running(&group).await.len(), 1);
}

#[tokio::test]
async fn scaling_a_group_to_zero_is_refused_and_removes_nothing() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let group = Group::start(&docker, &label).await;
    let dirs = Dirs::new();

    let run = dirs.run(&["scale", &group.name, "0"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr
            .starts_with(&format!("pilothouse: cannot scale {} to 0 ", group.name)),
        "{run}"
    );
    assert_eq!(running(&group).await, [format!("{}-1", group.name)]);
    let audited = dirs.audited(&group.name);
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["outcome"], "refused");
}

#[test]
fn an_engine_that_cannot_be_reached_exits_3_naming_its_socket() {
    let dirs = Dirs::new();
    let socket = "unix:///nonexistent.sock";

    let scale = dirs.run(&["scale", "--docker-host", socket, "web", "2"]);
    assert_eq!(scale.code, Some(3), "{scale}");
    assert!(
        scale
            .stderr
            .starts_with(&format!("pilothouse: cannot reach Docker at {socket}: ")),
        "{scale}"
    );

    let status = dirs.run(&["status", "--docker-host", socket, "--output", "json"]);
    assert_eq!(status.code, Some(3), "{status}");
    let report: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    let target = &report["targets"][0];
    assert_eq!(target["address"], socket);
    assert_eq!(target["connected"], false);
    assert!(
        target["error"].as_str().is_some_and(|e| e.contains(socket)),
        "{report}"
    );

    let text = dirs.run(&["status", "--docker-host", socket]);
    assert_eq!(text.code, Some(3), "{text}");
    assert!(
        text.stdout.starts_with(&format!(
            "local  {socket}\n  not reachable: cannot reach Docker"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn status_lists_a_group_with_its_replicas_image_and_revision() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let name = label.short();
    for n in ["1", "2"] {
        let labels = [
            ("pilothouse.group", name.as_str()),
            ("pilothouse.group.number", n),
            ("pilothouse.revision", "3"),
        ];
        let config = busybox(&label, SLEEP_FOREVER, &labels);
        support::run_container(&docker, &format!("{name}-{n}"), config).await;
    }
    let dirs = Dirs::new();

    let workload = status_of(&dirs, &name);
    assert_eq!(workload["kind"], "group", "{workload}");
    assert_eq!(workload["replicas"], 2, "{workload}");
    assert_eq!(workload["ready"], 2, "{workload}");
    assert_eq!(workload["images"], serde_json::json!([TEST_IMAGE]));
    assert_eq!(workload["revision"], 3, "{workload}");
    assert!(workload["rollout"].is_null(), "{workload}");

    let text = dirs.run(&["status"]);
    assert_eq!(text.code, Some(0), "{text}");
    let header = text
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("WORKLOAD"))
        .expect("a header");
    let row = text
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("a row for {name}: {text}"));
    let words: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(words, [name.as_str(), "group", "2/2", TEST_IMAGE, "3", "-"]);
    let column = |line: &str, word: &str| line.find(word).expect("the word is there");
    assert_eq!(
        column(header, "READY"),
        column(row, "2/2"),
        "columns align:\n{header}\n{row}"
    );
}

#[tokio::test]
async fn a_rollout_in_progress_keeps_scale_off_and_shows_in_status() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let group = Group::start(&docker, &label).await;
    let name = group.name.clone();
    let dirs = Dirs::new();
    let files = state::Files::new(&dirs.state(), &engine_id(&docker).await, &name);
    let held = state::lock(&files, "rollout pid 1 (test)").expect("the rollout lock");
    write_state(&files.state, &name, state::Phase::Progressing);

    let run = dirs.run(&["scale", &name, "2"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr.starts_with(&format!(
            "pilothouse: a rollout of {name} is in progress; scale it after it ends"
        )),
        "{run}"
    );
    assert_eq!(running(&group).await.len(), 1, "nothing was created");
    let audited = dirs.audited(&name);
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["outcome"], "refused");
    assert_eq!(audited[0]["origin"], "cli");

    let rollout = status_of(&dirs, &name)["rollout"].clone();
    assert_eq!(
        rollout,
        serde_json::json!({"phase": "progressing", "to_revision": 2, "message": "step 1"})
    );

    // The process holding the lock is gone: the rollout did not finish, it was interrupted.
    drop(held);
    assert_eq!(status_of(&dirs, &name)["rollout"]["phase"], "interrupted");
}

/// A state file of a rollout of `workload` to revision 2.
fn write_state(path: &Path, workload: &str, phase: state::Phase) {
    let now = chrono::Utc::now();
    let rollout = state::RolloutState {
        workload: workload.to_string(),
        host: "unix:///var/run/docker.sock".into(),
        engine_id: "test".into(),
        kind: state::Kind::Rollout,
        phase,
        from_revision: 1,
        to_revision: 2,
        image: TEST_IMAGE.into(),
        desired: 1,
        max_surge: 1,
        max_unavailable: 0,
        replicas: vec![],
        steps: vec![],
        analysis: vec![],
        message: "step 1".into(),
        started: now,
        updated: now,
        pid: std::process::id(),
        by: "test".into(),
    };
    state::write_state(path, &rollout).expect("state file");
}

#[tokio::test]
async fn read_only_mode_from_config_or_flag_refuses_a_scale() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let group = Group::start(&docker, &label).await;
    let name = group.name.clone();

    let flagged = Dirs::new();
    let run = flagged.run(&["--read-only", "scale", &name, "2"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("read-only mode"), "{run}");

    let configured = Dirs::new();
    configured.config_toml("read_only = true\n");
    let run = configured.run(&["scale", &name, "2"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr
            .contains(&format!("read-only mode: scale {name} 1 → 2 refused")),
        "{run}"
    );
    assert_eq!(configured.audited(&name)[0]["outcome"], "refused");
    assert_eq!(running(&group).await.len(), 1, "nothing was created");
}

#[test]
fn usage_errors_exit_2() {
    let dirs = Dirs::new();
    let not_a_number = dirs.run(&["scale", "web", "three"]);
    assert_eq!(not_a_number.code, Some(2), "{not_a_number}");
    assert!(not_a_number.stderr.contains("three"), "{not_a_number}");

    let unknown = dirs.run(&["scale", "--target", "nope", "web", "2"]);
    assert_eq!(unknown.code, Some(2), "{unknown}");
    assert_eq!(
        unknown.stderr,
        "pilothouse: no target named nope in config.toml; its targets are: local\n"
    );

    dirs.config_toml(
        "[[docker]]\nname = \"a\"\nhost = \"unix:///nonexistent/a.sock\"\n\
         [[docker]]\nname = \"b\"\nhost = \"unix:///nonexistent/b.sock\"\n",
    );
    let which = dirs.run(&["scale", "web", "2"]);
    assert_eq!(which.code, Some(2), "{which}");
    assert!(which.stderr.contains("--target NAME: a, b"), "{which}");
    let status = dirs.run(&["status", "--target", "c"]);
    assert_eq!(status.code, Some(2), "{status}");
    assert_eq!(status.stdout, "");

    // Without --target, status shows every target, each with why it is not reachable.
    let all = dirs.run(&["status"]);
    assert_eq!(all.code, Some(3), "{all}");
    let heads: Vec<&str> = all
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .collect();
    assert_eq!(
        heads,
        [
            "a  unix:///nonexistent/a.sock",
            "b  unix:///nonexistent/b.sock"
        ]
    );
}
