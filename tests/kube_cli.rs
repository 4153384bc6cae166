//! The one-shot commands on a Kubernetes context: the real binary against a sandbox cluster in
//! this process, over HTTP on loopback, with its kubeconfig in a temporary file and every
//! Pilothouse directory in a temporary directory.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use pilothouse::sandbox::faults::Fault;
use pilothouse::sandbox::{Options, Sandbox, demo};
use serde_json::Value;

/// A sandbox cluster with the demo's workloads, and the files the binary is pointed at.
struct Harness {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

fn harness() -> Harness {
    let sandbox = Sandbox::spawn(Options {
        objects: demo::objects(),
        pod_start: Duration::from_millis(200),
        ..Options::default()
    })
    .expect("the sandbox starts");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sandbox.kubeconfig("sandbox", Some("shop"))).unwrap();
    let harness = Harness {
        sandbox,
        dir,
        kubeconfig,
    };
    harness.wait_ready("shop/web", 3);
    harness
}

impl Harness {
    /// Runs `pilothouse --kubeconfig FILE --context sandbox ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(&self.kubeconfig, args)
    }

    fn run_with(&self, kubeconfig: &std::path::Path, args: &[&str]) -> Output {
        let home = self.dir.path();
        std::process::Command::new(env!("CARGO_BIN_EXE_pilothouse"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--context", "sandbox"])
            .args(args)
            .env("PILOTHOUSE_CONFIG_DIR", home.join("config"))
            .env("PILOTHOUSE_DATA_DIR", home.join("data"))
            .env("PILOTHOUSE_STATE_DIR", home.join("state"))
            .env_remove("KUBECONFIG")
            .env_remove("DOCKER_HOST")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("the binary runs")
    }

    /// The context's report from `status --output json`.
    fn status(&self) -> Value {
        let out = self.run(&["status", "--output", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("status prints JSON");
        report["targets"][0].clone()
    }

    fn workload(&self, name: &str) -> Value {
        let target = self.status();
        target["workloads"]
            .as_array()
            .and_then(|all| all.iter().find(|w| w["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {target}"))
    }

    /// Waits (at most 20 s) until `name` has `count` replicas ready.
    fn wait_ready(&self, name: &str, count: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.workload(name);
            if found["ready"] == count && found["replicas"] == count {
                return;
            }
            assert!(Instant::now() < deadline, "{name} never got ready: {found}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn audit(&self) -> Vec<Value> {
        let path = self.dir.path().join("state").join("audit.jsonl");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("an audit line is JSON"))
            .collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_lines(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

#[test]
fn a_rollout_of_a_good_image_completes_and_rollbacks_return_to_the_revisions_named() {
    let h = harness();
    let out = h.run(&[
        "rollout",
        "deployment/web",
        "--image",
        "sandbox/web:1.5",
        "--wait",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines[0]["event"], "started", "{lines:?}");
    assert_eq!(lines[0]["from_revision"], 1);
    assert_eq!(lines[0]["desired"], 3);
    let done = lines.last().unwrap();
    assert_eq!(done["event"], "done");
    assert_eq!(done["outcome"], "succeeded");
    assert_eq!(done["revision"], 2);
    assert_eq!(h.workload("shop/web")["images"][0], "sandbox/web:1.5");
    assert_eq!(h.workload("shop/web")["rollout"]["phase"], "succeeded");

    // History: both revisions, the new one current.
    let out = h.run(&["history", "web", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let history: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history["workload"], "shop/web");
    assert_eq!(history["current"], 2);
    let images: Vec<&str> = history["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["image"].as_str().unwrap())
        .collect();
    assert_eq!(images, ["sandbox/web:1.4", "sandbox/web:1.5"]);

    // Back to the previous revision, then forward to a named one.
    let out = h.run(&["rollback", "deploy/web", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("to revision 1"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(h.workload("shop/web")["images"][0], "sandbox/web:1.4");
    let out = h.run(&["rollback", "web", "--to-revision", "2", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(h.workload("shop/web")["images"][0], "sandbox/web:1.5");

    // A revision that was never made fails and lists those there are (a rollback makes its
    // revision the newest, as Kubernetes numbers them).
    let out = h.run(&["rollback", "web", "--to-revision", "9"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no revision 9; its revisions are 3, 4"),
        "{stderr}"
    );

    // Every action is in the audit log, from the command line.
    let audit = h.audit();
    assert!(
        audit.iter().all(|a| a["origin"] == "cli"
            && a["target"] == "sandbox"
            && a["workload"] == "shop/web"),
        "{audit:?}"
    );
    let outcomes: Vec<&str> = audit.iter().filter_map(|a| a["outcome"].as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "started",
            "succeeded",
            "started",
            "ok",
            "started",
            "ok",
            "started",
            "refused"
        ],
        "{audit:?}"
    );
}

#[test]
fn an_image_that_never_gets_ready_is_rolled_back_and_exits_4() {
    let h = harness();
    let out = h.run(&[
        "rollout",
        "web",
        "--image",
        "sandbox/web:1.5-unhealthy",
        "--wait",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    let done = lines.last().unwrap();
    assert_eq!(done["event"], "done", "{lines:?}");
    assert_eq!(done["outcome"], "rolled-back");
    assert_eq!(done["exit"], 4);
    assert_eq!(done["revision"], 1);
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "phase" && l["phase"] == "rolling-back")
    );
    assert_eq!(h.workload("shop/web")["images"][0], "sandbox/web:1.4");
    // The state file tells `rollout status` how it ended.
    let out = h.run(&["rollout", "status", "web"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stdout));

    // The history says which revision was rolled back from, and why.
    let out = h.run(&["history", "web"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].ends_with("CAUSE  ROLLED BACK"), "{table}");
    let failed = lines
        .iter()
        .find(|l| l.starts_with("2 "))
        .unwrap_or_else(|| panic!("no row of revision 2 in {table}"));
    assert!(
        failed.contains("sandbox/web:1.5-unhealthy") && failed.contains("progress deadline"),
        "{table}"
    );
    let good = lines.iter().find(|l| l.starts_with("3*")).unwrap();
    assert!(good.ends_with("  -"), "{table}");
    let out = h.run(&["history", "web", "--output", "json"]);
    let history: Value = serde_json::from_slice(&out.stdout).unwrap();
    let marks: Vec<bool> = history["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rolled_back"].is_string())
        .collect();
    assert_eq!(marks, [true, false], "{history}");

    // A plain rollback does not return to it: it says so and changes nothing.
    let out = h.run(&["rollback", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "no revision before 3 to roll back to that Pilothouse did not roll back from; rolled \
             back from: revision 2 (sandbox/web:1.5-unhealthy): "
        ),
        "{stderr}"
    );
    assert_eq!(h.workload("shop/web")["images"][0], "sandbox/web:1.4");

    // Named by number it goes there, with a warning.
    let out = h.run(&["rollback", "web", "--to-revision", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(
            "pilothouse: warning: revision 2 (sandbox/web:1.5-unhealthy) is one Pilothouse \
             rolled back from: "
        ),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).contains("to revision 2 (sandbox/web:1.5-unhealthy)"),
        "{}",
        text(&out.stdout)
    );

    // The recorded rollout no longer tells the Deployment's state: status says so and shows
    // the Deployment's own rollout (the bad image is not ready yet), not the old exit 4.
    let out = h.run(&["rollout", "status", "web"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("(rolled-back, on revision 3) was followed by revision")
            && stderr.contains("(sandbox/web:1.5-unhealthy); showing the Deployment's own"),
        "{stderr}"
    );
}

#[test]
fn scale_status_and_rollout_status_read_and_change_the_cluster() {
    let h = harness();
    let out = h.run(&["scale", "deploy/web", "5", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let scaled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(scaled["workload"], "shop/web");
    assert_eq!(scaled["target"], "sandbox");
    assert_eq!(
        (scaled["from"].as_u64(), scaled["to"].as_u64()),
        (Some(3), Some(5))
    );
    h.wait_ready("shop/web", 5);

    let target = h.status();
    assert_eq!(target["name"], "sandbox");
    assert_eq!(target["connected"], true);
    assert_eq!(target["address"], format!("{}/", h.sandbox.url()));
    let web = h.workload("shop/web");
    assert_eq!(web["kind"], "deploy");
    assert_eq!(web["revision"], 1);
    assert_eq!(web["rollout"]["phase"], "succeeded");
    // With the context's namespace, only its workloads.
    assert!(
        target["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["name"].as_str().unwrap().starts_with("shop/"))
    );
    let out = h.run(&["--namespace", "batch", "status", "--output", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["targets"][0]["workloads"][0]["name"], "batch/queue");
    assert_eq!(report["targets"][0]["workloads"][0]["kind"], "sts");

    // No Pilothouse rollout recorded: the Deployment's own, as kubectl says it.
    let out = h.run(&["rollout", "status", "web"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("successfully rolled out"),
        "{}",
        text(&out.stdout)
    );

    // The scale went to the audit log.
    let audit = h.audit();
    assert!(
        audit
            .iter()
            .any(|a| a["outcome"] == "ok" && a["workload"] == "shop/web"),
        "{audit:?}"
    );
}

#[test]
fn a_workload_named_wrong_exits_2_and_a_missing_one_1() {
    let h = harness();
    for bad in ["shop/web", "pod/web", "deploy/Web"] {
        let out = h.run(&["scale", bad, "2"]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
        assert!(text(&out.stderr).starts_with("pilothouse: "));
    }
    let out = h.run(&["scale", "nothere", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_forbidden_scale_exits_1_naming_the_verb_and_the_resource() {
    let h = harness();
    h.sandbox.faults().fail(Fault {
        method: None,
        path_contains: "/deployments/web/scale".to_string(),
        status: 403,
        times: None,
        delay: None,
    });
    let out = h.run(&["scale", "web", "4"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("forbidden") && stderr.contains("get deployments/scale"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn an_api_server_that_does_not_answer_exits_3_naming_its_address_and_why() {
    let h = harness();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let address = format!("http://127.0.0.1:{closed}/");
    let config = std::fs::read_to_string(&h.kubeconfig)
        .unwrap()
        .replace(&h.sandbox.url(), &format!("http://127.0.0.1:{closed}"));
    let path = h.dir.path().join("closed-kubeconfig");
    std::fs::write(&path, config).unwrap();
    for args in [
        &["scale", "web", "2"][..],
        &["history", "web"],
        &["rollback", "web"],
        &["rollout", "status", "web"],
        &["rollout", "pause", "web"],
        &["rollout", "web", "--image", "sandbox/web:1.5", "--wait"],
        &["status"],
    ] {
        let out = h.run_with(&path, args);
        let stderr = text(&out.stderr);
        let said = format!("{stderr}{}", text(&out.stdout));
        assert_eq!(out.status.code(), Some(3), "{args:?}: {said}");
        assert!(
            said.contains(&format!(
                "cannot reach the Kubernetes API server at {address} (context sandbox) to "
            )),
            "{args:?}: {said}"
        );
        assert!(said.contains("Connection refused"), "{args:?}: {said}");
        assert!(!said.contains("ServiceError"), "{args:?}: {said}");
    }
    let out = h.run_with(&path, &["status", "--output", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["targets"][0]["connected"], false);
    let error = report["targets"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&address) && error.contains("Connection refused"),
        "{report}"
    );
}

#[test]
fn a_rollout_in_the_background_is_followed_and_aborted_through_its_state_file() {
    let h = harness();
    let out = h.run(&["rollout", "web", "--image", "sandbox/web:1.5"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("started in the background"),
        "{}",
        text(&out.stdout)
    );
    // The command it names reaches the same context, as run from a shell.
    let follow = format!(
        "follow it with `pilothouse --kubeconfig {} --context sandbox rollout status web --wait`",
        h.kubeconfig.display()
    );
    assert!(text(&out.stdout).contains(&follow), "{}", text(&out.stdout));
    let out = h.run(&["rollout", "status", "web", "--wait", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let last = json_lines(&out).pop().unwrap();
    assert_eq!(last["phase"], "succeeded", "{last}");
    assert_eq!(last["image"], "sandbox/web:1.5");

    // An image that never gets ready, aborted long before its progress deadline.
    let out = h.run(&["rollout", "web", "--image", "sandbox/web:1.6-unhealthy"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = h.run(&["rollout", "abort", "web"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = h.run(&["rollout", "status", "web", "--wait"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("aborted"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(h.workload("shop/web")["images"][0], "sandbox/web:1.5");

    // Nothing runs now: abort is refused, and so audited.
    let out = h.run(&["rollout", "abort", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(h.audit().iter().any(|a| a["outcome"] == "refused"));
}

#[test]
fn a_kubeconfig_that_does_not_parse_is_one_line_naming_where() {
    let h = harness();
    let bad = h.dir.path().join("bad-kubeconfig");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: [unclosed\n",
    )
    .unwrap();
    let out = h.run_with(&bad, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert_eq!(said.trim_end().lines().count(), 1, "{said}");
    assert!(said.starts_with("pilothouse: "), "{said}");
    assert!(
        said.contains("bad-kubeconfig") && said.contains("line 5"),
        "{said}"
    );
    assert!(
        !said.contains("-->"),
        "the parser's excerpt is left out: {said}"
    );
}
