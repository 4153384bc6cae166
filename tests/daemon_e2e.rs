//! `pilothouse --daemon` end to end: the real binary with no terminal, its rules in a directory
//! of the test's own, reading a real Prometheus that scrapes a metrics endpoint the test sets,
//! and scaling a Pilothouse group of real containers on the local Docker engine. The tests read
//! what an operator would read: the JSON lines on stdout, `/metrics`, `/healthz`, the audit
//! log, the containers the engine really runs, and the exit status after a signal.
//!
//! Tests that need Docker or the `prometheus` binary are skipped with a printed reason when
//! either is missing, and fail under `PILOTHOUSE_REQUIRE_SERVICES=1`. The tests of reloading
//! and of bad flags need neither: their daemon is pointed at a Docker socket that does not exist
//! and at a closed loopback port.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::autoscale::{Group, audit_lines, rule_yaml, scales_audited, series, wait};
use support::prometheus::{prometheus_or_skip, shared_prometheus_or_skip};
use support::{TestLabel, docker_or_skip};

/// The binary under test.
const PILOTHOUSE: &str = env!("CARGO_BIN_EXE_pilothouse");

/// The local engine's socket: the only Docker host these daemons are pointed at.
const LOCAL_DOCKER: &str = "unix:///var/run/docker.sock";

/// A Docker host that cannot answer, for daemons that must touch no engine.
const NO_DOCKER: &str = "unix:///nonexistent/socket";

/// How long a scale, a reload or a change of health may take to show.
const WITHIN: Duration = Duration::from_secs(60);

/// The rule's scale-down stabilization window.
const WINDOW: Duration = Duration::from_secs(8);

/// The daemon's promise on SIGTERM: it exits 0 within two seconds of the signal.
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// The message of the log line that carries the listening address.
const LISTENING: &str = "listening for /metrics and /healthz";

/// The metric every test's rule reads; each test's own series of it has `app="<group>"`.
const SERIES: &str = "ph_daemon_load";

/// The directories one daemon uses: config, data and state (each set through its
/// `PILOTHOUSE_*_DIR` variable), and a rules directory.
struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let root = tempfile::Builder::new()
            .prefix("pilothouse-daemon-")
            .tempdir()
            .expect("a directory for the daemon");
        for sub in ["config", "data", "state", "rules"] {
            std::fs::create_dir_all(root.path().join(sub)).expect("the daemon's directories");
        }
        Dirs { root }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.root.path().join(sub)
    }

    fn rules(&self) -> PathBuf {
        self.path("rules")
    }

    /// Writes `text` to `rules/<file>` and returns the file's path.
    fn write_rule(&self, file: &str, text: &str) -> PathBuf {
        let path = self.rules().join(file);
        std::fs::write(&path, text).expect("write a rule file");
        path
    }

    /// Every line of the audit log (none when it was never written).
    fn audit_lines(&self) -> Vec<serde_json::Value> {
        audit_lines(&self.audit_log())
    }

    /// Where the daemon writes its audit log.
    fn audit_log(&self) -> PathBuf {
        self.path("state").join("audit.jsonl")
    }

    /// A `pilothouse` command with the three directory variables pointing here and the log
    /// filter at its default, so nothing from the environment changes what it logs.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(PILOTHOUSE);
        command
            .args(args)
            .env("PILOTHOUSE_CONFIG_DIR", self.path("config"))
            .env("PILOTHOUSE_DATA_DIR", self.path("data"))
            .env("PILOTHOUSE_STATE_DIR", self.path("state"))
            .env("PILOTHOUSE_LOG", "info")
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null());
        command
    }
}

/// A running `pilothouse --daemon`, its stdout read line by line on a thread of its own.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: PathBuf,
    addr: SocketAddr,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts the daemon with `args` after `--daemon --listen 127.0.0.1:0`, and waits for the
    /// line that logs the address it listens on.
    async fn start(dirs: &Dirs, args: &[&str]) -> Daemon {
        Daemon::start_with_env(dirs, args, &[]).await
    }

    /// [`Daemon::start`] with these environment variables set.
    async fn start_with_env(dirs: &Dirs, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut all = vec!["--daemon", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let stderr = dirs.path("daemon.stderr");
        let stderr_file = std::fs::File::create(&stderr).expect("the daemon's stderr file");
        let mut child = dirs
            .command(&all)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .spawn()
            .expect("start pilothouse --daemon");
        let stdout = child.stdout.take().expect("the daemon's stdout is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("daemon: {line}");
                    lines.lock().expect("the lines lock").push(line);
                }
            })
        };
        let mut daemon = Daemon {
            child,
            lines,
            reader: Some(reader),
            stderr,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .no_proxy()
                .build()
                .expect("an HTTP client"),
        };
        daemon.addr = daemon.listening_address().await;
        daemon
    }

    /// The address in the `listening for /metrics and /healthz` line.
    async fn listening_address(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.logged().into_iter().find_map(|line| {
                (line["message"] == LISTENING).then(|| line["addr"].as_str().map(str::to_string))
            });
            if let Some(addr) = found {
                let addr = addr.unwrap_or_else(|| panic!("{LISTENING:?} without an addr"));
                return addr
                    .parse()
                    .unwrap_or_else(|e| panic!("the logged address {addr:?}: {e}"));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the daemon exited with {status} before listening\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the daemon logged no address within 20 s\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The stdout lines so far, as they came.
    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("the lines lock").clone()
    }

    /// The stdout lines so far that parse as JSON objects.
    fn logged(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(serde_json::Value::is_object)
            .collect()
    }

    /// Stdout and stderr so far, for failure messages.
    fn output(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("stdout:\n{}\nstderr:\n{stderr}", self.lines().join("\n"))
    }

    /// Sends signal `name` (`TERM`, `HUP`) to the daemon with `kill`.
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// `GET path`: the status code and the body, or why there was none.
    async fn get(&self, path: &str) -> Result<(u16, String), String> {
        let url = format!("http://{}{path}", self.addr);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok((status, body))
    }

    /// The `/metrics` body, or why there was none.
    async fn metrics(&self) -> Result<String, String> {
        match self.get("/metrics").await? {
            (200, body) => Ok(body),
            (status, body) => Err(format!("/metrics answered {status}: {body}")),
        }
    }

    /// SIGTERM, then the exit status and how long after the signal it came; panics when the
    /// daemon is still running 10 s after it.
    fn terminate(&mut self) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        self.signal("TERM");
        let deadline = sent + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the daemon") {
                let took = sent.elapsed();
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return (status, took);
            }
            assert!(
                Instant::now() < deadline,
                "the daemon still runs 10 s after SIGTERM\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, and the daemon exits 0 within [`STOP_WITHIN`] of it, logging that it stopped.
    fn terminate_cleanly(&mut self) {
        let (status, took) = self.terminate();
        eprintln!("exited {status} {took:?} after SIGTERM");
        assert_eq!(
            status.code(),
            Some(0),
            "exit after SIGTERM\n{}",
            self.output()
        );
        assert!(
            took <= STOP_WITHIN,
            "exited {took:?} after SIGTERM; allowed {STOP_WITHIN:?}\n{}",
            self.output()
        );
        let last = self.logged().last().cloned().unwrap_or_default();
        assert_eq!(last["message"], "daemon stopped", "{}", self.output());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of the sample `name` (with its labels exactly as rendered, such as
/// `pilothouse_rule_current_replicas{rule="web"}`) in an exposition body.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

/// Whether the daemon and the engine agree the group has `n` replicas: `/metrics` says `n`
/// now and wants `n`, and `n` containers of the group run. `Ok` holds the `/metrics` body.
async fn replicas_are(daemon: &Daemon, group: &Group, n: u32) -> Result<String, String> {
    let body = daemon.metrics().await?;
    let rule = &group.name;
    let current = sample(
        &body,
        &format!("pilothouse_rule_current_replicas{{rule={rule:?}}}"),
    );
    let desired = sample(
        &body,
        &format!("pilothouse_rule_desired_replicas{{rule={rule:?}}}"),
    );
    let (running, listed) = group.running().await;
    let n_f = f64::from(n);
    if current == Some(n_f) && desired == Some(n_f) && running == n as usize {
        Ok(body)
    } else {
        Err(format!(
            "{running} running {listed}; /metrics current {current:?}, desired {desired:?}"
        ))
    }
}

async fn wait_for_replicas(daemon: &Daemon, group: &Group, n: u32) -> String {
    let what = format!("{} at {n} replicas", group.name);
    wait(&what, WITHIN, async || replicas_are(daemon, group, n).await).await
}

/// Waits until `/metrics` shows `value` as the last reading of the group's `load`.
async fn wait_for_reading(daemon: &Daemon, group: &Group, value: f64) {
    let name = format!(
        "pilothouse_rule_metric_value{{rule={:?},metric=\"load\"}}",
        group.name
    );
    let what = format!("{name} {value}");
    wait(&what, WITHIN, async || {
        let seen = sample(&daemon.metrics().await?, &name);
        if seen == Some(value) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
}

/// A loopback address where nothing listens (it was free a moment ago).
fn closed_loopback_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("the port's address")
}

#[tokio::test]
async fn the_daemon_scales_a_workload_up_and_down_and_reports_it_on_metrics() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    let Some(prometheus) = shared_prometheus_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let group = Group::start(&docker, &label).await;
    let load = series(SERIES, &group.name);
    prometheus.endpoint.set(&load, 10.0);
    let dirs = Dirs::new();
    dirs.write_rule(
        &format!("{}.yaml", group.name),
        &rule_yaml(SERIES, &group.name, WINDOW),
    );
    let rules = dirs.rules();
    let prometheus_url = prometheus.url();
    let args = [
        "--rules",
        rules.to_str().expect("a UTF-8 temp path"),
        "--prometheus",
        &prometheus_url,
        "--docker-host",
        LOCAL_DOCKER,
    ];
    let mut daemon = Daemon::start(&dirs, &args).await;

    // At 10 per replica, one replica is just right.
    wait_for_reading(&daemon, &group, 10.0).await;
    replicas_are(&daemon, &group, 1)
        .await
        .expect("one replica holds at load 10");

    // 30 asks for ceil(30 / 10) = 3: three containers run and /metrics says so.
    prometheus.endpoint.set(&load, 30.0);
    let body = wait_for_replicas(&daemon, &group, 3).await;
    let rule = &group.name;
    let value = sample(
        &body,
        &format!("pilothouse_rule_metric_value{{rule={rule:?},metric=\"load\"}}"),
    );
    assert_eq!(value, Some(30.0), "{body}");
    let scales = sample(
        &body,
        &format!("pilothouse_rule_scales_total{{rule={rule:?}}}"),
    );
    assert_eq!(scales, Some(1.0), "{body}");

    // Docker connected and Prometheus answering: ready, one line per check.
    let (status, health) = daemon.get("/healthz").await.expect("/healthz answers");
    assert_eq!(status, 200, "{health}");
    assert!(health.starts_with("ok\n"), "{health}");
    assert!(health.contains("docker:local: ok"), "{health}");
    assert!(
        health.contains(&format!("prometheus:{prometheus_url}: ok")),
        "{health}"
    );

    // 5 asks for 1; after the window the group is back to one replica.
    prometheus.endpoint.set(&load, 5.0);
    wait_for_reading(&daemon, &group, 5.0).await;
    wait_for_replicas(&daemon, &group, 1).await;

    // The audit log: both scales, by the autoscaler, each with the rule and its reading.
    let audited = scales_audited(&dirs.audit_log());
    let counts: Vec<(u64, u64)> = audited.iter().map(|(f, t, _)| (*f, *t)).collect();
    assert_eq!(counts, [(1, 3), (3, 1)], "{audited:?}");
    assert!(
        audited[0].2.starts_with(&format!("rule {rule}: ")) && audited[0].2.contains("load 30"),
        "{}",
        audited[0].2
    );
    assert!(audited[1].2.contains("load 5"), "{}", audited[1].2);

    daemon.terminate_cleanly();

    // Every stdout line is one JSON object with a timestamp, a level and a message, and the
    // decisions to scale are among them.
    let lines = daemon.lines();
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "message"] {
            assert!(value[key].is_string(), "no {key} in {line}");
        }
    }
    let logged = daemon.logged();
    let decided: Vec<&str> = logged
        .iter()
        .filter(|l| l["message"] == "decision" && l["rule"] == rule.as_str())
        .filter_map(|l| l["action"].as_str())
        .filter(|action| *action != "hold")
        .collect();
    assert_eq!(decided.len(), 2, "two scale decisions logged: {decided:?}");
    prometheus.endpoint.remove(&load);
}

#[tokio::test]
async fn sighup_reloads_the_rules_and_a_bad_file_keeps_the_previous_rules() {
    let dirs = Dirs::new();
    let good = rule_yaml(SERIES, "web", WINDOW);
    let file = dirs.write_rule("web.yaml", &good);
    let rules = dirs.rules();
    let prometheus_url = format!("http://{}", closed_loopback_port());
    let args = [
        "--rules",
        rules.to_str().expect("a UTF-8 temp path"),
        "--prometheus",
        &prometheus_url,
        "--docker-host",
        NO_DOCKER,
    ];
    let mut daemon = Daemon::start(&dirs, &args).await;
    let active = |rule: &str| format!("pilothouse_rule_state{{rule={rule:?},state=\"active\"}}");
    let decisions = |rule: &str| format!("pilothouse_rule_decisions_total{{rule={rule:?}}}");
    let body = wait("rule web on /metrics", WITHIN, async || {
        let body = daemon.metrics().await?;
        match sample(&body, &active("web")) {
            Some(1.0) => Ok(body),
            _ => Err(body),
        }
    })
    .await;
    assert_eq!(
        sample(&body, "pilothouse_rule_load_errors"),
        Some(0.0),
        "{body}"
    );

    // A typo: the flow mapping of line 2 is never closed. The error names the file, the line
    // and the column; the rule of the file keeps running.
    let broken = good.replacen(" workload: web }", " workload: web", 1);
    std::fs::write(&file, broken).expect("break the rule file");
    daemon.signal("HUP");
    let expected = format!("{}:3:12: ", file.display());
    let error = wait("the reload's error in the log", WITHIN, async || {
        let found = daemon.logged().into_iter().find_map(|l| {
            let error = l["error"].as_str()?;
            error.starts_with(&expected).then(|| error.to_string())
        });
        found.ok_or_else(|| daemon.lines().join("\n"))
    })
    .await;
    assert!(
        error.contains("did not find expected ',' or '}'"),
        "{error}"
    );
    let errored = wait("load errors on /metrics", WITHIN, async || {
        let body = daemon.metrics().await?;
        match sample(&body, "pilothouse_rule_load_errors") {
            Some(errors) if errors > 0.0 => Ok(body),
            _ => Err(body),
        }
    })
    .await;
    assert_eq!(sample(&errored, &active("web")), Some(1.0), "{errored}");
    let before = sample(&errored, &decisions("web")).expect("web has decided");
    wait("web deciding after the bad reload", WITHIN, async || {
        let body = daemon.metrics().await?;
        match sample(&body, &decisions("web")) {
            Some(now) if now >= before + 2.0 => Ok(()),
            _ => Err(body),
        }
    })
    .await;

    // Fixed with a new maxReplicas, and a second file: both rules load, no errors left.
    let loaded_web = |daemon: &Daemon| {
        let logged = daemon.logged();
        logged
            .iter()
            .filter(|l| l["message"] == "rule loaded" && l["rule"] == "web")
            .count()
    };
    assert_eq!(loaded_web(&daemon), 1, "{}", daemon.output());
    std::fs::write(&file, good.replace("maxReplicas: 5", "maxReplicas: 7"))
        .expect("fix the rule file");
    dirs.write_rule("api.yaml", &rule_yaml(SERIES, "api", WINDOW));
    daemon.signal("HUP");
    let body = wait(
        "both rules and no load errors on /metrics",
        WITHIN,
        async || {
            let body = daemon.metrics().await?;
            let both = sample(&body, &active("web")) == Some(1.0)
                && sample(&body, &active("api")) == Some(1.0);
            if both && sample(&body, "pilothouse_rule_load_errors") == Some(0.0) {
                Ok(body)
            } else {
                Err(body)
            }
        },
    )
    .await;
    assert!(sample(&body, &decisions("api")).is_some(), "{body}");
    let reloads = || {
        daemon
            .logged()
            .into_iter()
            .filter(|l| l["message"] == "rules reloaded")
            .map(|l| (l["rules"].as_u64(), l["errors"].as_u64()))
            .collect::<Vec<_>>()
    };
    // The daemon's stdout is read by another thread, which may be a line behind /metrics.
    let reloaded = wait("the second reload logged", WITHIN, async || {
        let reloaded = reloads();
        if reloaded.len() >= 2 {
            Ok(reloaded)
        } else {
            Err(format!("{reloaded:?}"))
        }
    })
    .await;
    assert_eq!(reloaded.len(), 2, "two reloads logged: {reloaded:?}");
    assert_eq!(
        reloaded[0].0,
        Some(1),
        "the bad file's rule kept: {reloaded:?}"
    );
    assert!(
        reloaded[0].1 >= Some(1),
        "the bad reload logs its errors: {reloaded:?}"
    );
    assert_eq!(reloaded[1], (Some(2), Some(0)), "{reloaded:?}");
    assert_eq!(
        loaded_web(&daemon),
        2,
        "the changed rule web is loaded again\n{}",
        daemon.output()
    );

    daemon.terminate_cleanly();
}

#[tokio::test]
async fn healthz_is_not_ready_while_prometheus_is_down() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    // This test kills its server, so it has one of its own.
    let Some(mut prometheus) = prometheus_or_skip(&[]).await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    let group = Group::start(&docker, &label).await;
    let load = series(SERIES, &group.name);
    prometheus.endpoint.set(&load, 20.0);
    let dirs = Dirs::new();
    dirs.write_rule(
        &format!("{}.yaml", group.name),
        &rule_yaml(SERIES, &group.name, WINDOW),
    );
    let rules = dirs.rules();
    let prometheus_url = prometheus.url();
    let args = [
        "--rules",
        rules.to_str().expect("a UTF-8 temp path"),
        "--prometheus",
        &prometheus_url,
        "--docker-host",
        LOCAL_DOCKER,
    ];
    let mut daemon = Daemon::start(&dirs, &args).await;
    wait_for_replicas(&daemon, &group, 2).await;
    let (status, health) = daemon.get("/healthz").await.expect("/healthz answers");
    assert_eq!(status, 200, "{health}");

    // Prometheus dies: not ready, and the failing check is the Prometheus server.
    prometheus.stop();
    let check = format!("prometheus:{prometheus_url}");
    let health = wait("/healthz 503", WITHIN, async || {
        match daemon.get("/healthz").await? {
            (503, body) => Ok(body),
            (status, body) => Err(format!("{status}: {body}")),
        }
    })
    .await;
    assert!(health.contains("docker:local: ok"), "{health}");
    let failing = health
        .lines()
        .find(|l| l.starts_with(&format!("{check}: FAILING")))
        .unwrap_or_else(|| panic!("no failing line for {check}: {health}"));
    assert!(
        failing.len() > format!("{check}: FAILING").len(),
        "says why: {failing}"
    );
    let body = daemon.metrics().await.expect("/metrics answers");
    let up = |check: &str| format!("pilothouse_check_up{{check={check:?}}}");
    assert_eq!(sample(&body, &up(&check)), Some(0.0), "{body}");
    assert_eq!(sample(&body, &up("docker:local")), Some(1.0), "{body}");

    // Five more cycles without a reading, and nothing scaled: still 2 everywhere.
    let rule = &group.name;
    let decisions = format!("pilothouse_rule_decisions_total{{rule={rule:?}}}");
    let metric_ok = format!("pilothouse_rule_metric_ok{{rule={rule:?},metric=\"load\"}}");
    let before = sample(&body, &decisions).expect("the rule has decided");
    wait("five cycles during the outage", WITHIN, async || {
        let body = replicas_are(&daemon, &group, 2)
            .await
            .unwrap_or_else(|seen| panic!("the outage changed the replicas: {seen}"));
        assert_eq!(sample(&body, &metric_ok), Some(0.0), "{body}");
        match sample(&body, &decisions) {
            Some(now) if now >= before + 5.0 => Ok(()),
            _ => Err(body),
        }
    })
    .await;

    // Back on the same port: ready again, and still 2.
    prometheus.restart().await;
    wait(
        "/healthz 200 after recovery",
        WITHIN,
        async || match daemon.get("/healthz").await? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status}: {body}")),
        },
    )
    .await;
    replicas_are(&daemon, &group, 2)
        .await
        .expect("still 2 after recovery");
    let audited = scales_audited(&dirs.audit_log());
    let counts: Vec<(u64, u64)> = audited.iter().map(|(f, t, _)| (*f, *t)).collect();
    assert_eq!(counts, [(1, 2)], "no scale during the outage: {audited:?}");

    daemon.terminate_cleanly();
}

/// Runs `pilothouse` with `args` until it exits (at most 20 s): the exit status, stdout and
/// stderr.
fn run_to_exit(dirs: &Dirs, args: &[&str]) -> (ExitStatus, String, String) {
    let stdout = dirs.path("run.stdout");
    let stderr = dirs.path("run.stderr");
    let mut child = dirs
        .command(args)
        .stdout(std::fs::File::create(&stdout).expect("a stdout file"))
        .stderr(std::fs::File::create(&stderr).expect("a stderr file"))
        .spawn()
        .expect("start pilothouse");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for pilothouse") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pilothouse {args:?} still runs after 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |path: &Path| std::fs::read_to_string(path).expect("read the output");
    (status, read(&stdout), read(&stderr))
}

/// The one line of a message on stderr; panics when there is not exactly one.
fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr:?}");
    lines[0]
}

#[tokio::test]
async fn a_bad_flag_value_is_a_clear_error() {
    let dirs = Dirs::new();
    let rules = dirs.rules();
    let rules = rules.to_str().expect("a UTF-8 temp path");
    let daemon = ["--daemon", "--docker-host", NO_DOCKER];

    // A rules directory that does not exist.
    let missing = dirs.path("no-such-rules");
    let missing = missing.to_str().expect("a UTF-8 temp path");
    let (status, stdout, stderr) =
        run_to_exit(&dirs, &[&daemon[..], &["--rules", missing]].concat());
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    let line = one_line(&stderr);
    assert_eq!(
        line,
        format!("pilothouse: --rules {missing}: not a directory")
    );
    assert!(!stdout.contains("daemon started"), "{stdout}");

    // A Prometheus address that is not a URL.
    let args = [&daemon[..], &["--rules", rules, "--prometheus", "notaurl"]].concat();
    let (status, stdout, stderr) = run_to_exit(&dirs, &args);
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    let line = one_line(&stderr);
    assert!(line.starts_with("pilothouse: --prometheus: "), "{line}");
    assert!(
        line.contains("\"notaurl\"") && line.contains("http://"),
        "{line}"
    );
    assert!(!stdout.contains("daemon started"), "{stdout}");

    // A port that is taken (by this test, on loopback).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("take a loopback port");
    let addr = taken.local_addr().expect("the taken address").to_string();
    let args = [&daemon[..], &["--rules", rules, "--listen", &addr]].concat();
    let (status, stdout, stderr) = run_to_exit(&dirs, &args);
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    let line = one_line(&stderr);
    assert!(
        line.starts_with(&format!("pilothouse: cannot listen on {addr}: ")),
        "{line}"
    );
    assert!(!stdout.contains("daemon started"), "{stdout}");
    drop(taken);
}

#[tokio::test]
async fn sigterm_during_a_scale_exits_within_two_seconds_and_audits_it_as_interrupted() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    let Some(prometheus) = shared_prometheus_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = TestLabel::new();
    // Replicas that ignore SIGTERM and have 30 s to stop: removing one takes 30 s.
    let stubborn = ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"];
    let group = Group::start_with(&docker, &label, &stubborn, 30).await;
    let load = series(SERIES, &group.name);
    prometheus.endpoint.set(&load, 20.0);
    let dirs = Dirs::new();
    dirs.write_rule(
        &format!("{}.yaml", group.name),
        &rule_yaml(SERIES, &group.name, WINDOW),
    );
    let rules = dirs.rules();
    let prometheus_url = prometheus.url();
    let args = [
        "--rules",
        rules.to_str().expect("a UTF-8 temp path"),
        "--prometheus",
        &prometheus_url,
        "--docker-host",
        LOCAL_DOCKER,
    ];
    let mut daemon = Daemon::start(&dirs, &args).await;
    wait_for_replicas(&daemon, &group, 2).await;

    // 5 asks for 1: after the window the scale down starts, and stopping the replica hangs.
    prometheus.endpoint.set(&load, 5.0);
    let is_down = |l: &serde_json::Value| l["action"] == "scale" && l["to"] == 1;
    wait("the scale down started", WITHIN, async || {
        let lines = dirs.audit_lines();
        let started = lines
            .iter()
            .any(|l| is_down(l) && l["outcome"] == "started");
        if started {
            Ok(())
        } else {
            Err(format!("{lines:?}"))
        }
    })
    .await;
    let (running, listed) = group.running().await;
    assert_eq!(running, 2, "the stop is still in flight: {listed}");

    // A probe that has connected but not sent its request yet must not hold the exit either.
    let probe = std::net::TcpStream::connect(daemon.addr).expect("connect to the daemon");
    daemon.terminate_cleanly();
    drop(probe);
    let outcomes: Vec<String> = dirs
        .audit_lines()
        .iter()
        .filter(|l| is_down(l))
        .map(|l| l["outcome"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        outcomes,
        ["started", "interrupted"],
        "{:?}",
        dirs.audit_lines()
    );
    let warned = daemon
        .logged()
        .iter()
        .filter(|l| l["message"] == "action interrupted by shutdown")
        .filter(|l| l["action"] == format!("scale {} 2 → 1", group.name).as_str())
        .count();
    assert_eq!(
        warned,
        1,
        "one warning for the one interrupted scale\n{}",
        daemon.output()
    );
    prometheus.endpoint.remove(&load);
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Waits until a line `accept` takes appears in the daemon's log, for at most `within`.
async fn wait_logged(
    daemon: &Daemon,
    what: &str,
    within: Duration,
    accept: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = daemon.logged().into_iter().find(|l| accept(l)) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {within:?}\n{}",
            daemon.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_on_one_cluster_elect_one_leader_and_the_other_takes_over_when_it_stops() {
    use pilothouse::sandbox::{self, Sandbox};
    let cluster = Sandbox::start(sandbox::Options {
        objects: sandbox::demo::objects(),
        ..sandbox::Options::default()
    })
    .await
    .expect("the sandbox cluster starts");
    let url = cluster.url();
    let dirs = [Dirs::new(), Dirs::new()];
    let mut args = Vec::new();
    for d in &dirs {
        let kubeconfig = d.path("kubeconfig");
        std::fs::write(&kubeconfig, cluster.kubeconfig("sandbox", None)).expect("a kubeconfig");
        for (file, text) in sandbox::demo::rules("sandbox") {
            d.write_rule(&file, &text);
        }
        args.push(vec![
            "--docker-host".to_string(),
            NO_DOCKER.to_string(),
            "--kubeconfig".to_string(),
            kubeconfig.display().to_string(),
            "--context".to_string(),
            "sandbox".to_string(),
            "--prometheus".to_string(),
            url.clone(),
            "--leader-election".to_string(),
            "shop/pilothouse-autoscaler".to_string(),
        ]);
    }
    let leading = |l: &serde_json::Value| l["message"] == "leading: the rules act";

    let mut first = Daemon::start(&dirs[0], &strs(&args[0])).await;
    wait_logged(&first, "leadership of the first daemon", WITHIN, leading).await;
    let second = Daemon::start(&dirs[1], &strs(&args[1])).await;
    let first_pid = first.child.id().to_string();
    let standing_by = wait_logged(&second, "the second standing by", WITHIN, |l| {
        l["message"] == "standing by"
    })
    .await;
    let holder = standing_by["holder"].as_str().unwrap_or_default();
    assert!(
        holder.ends_with(&format!(
            "-{first_pid} (it holds the Lease shop/pilothouse-autoscaler)"
        )),
        "{standing_by}"
    );
    assert!(
        !second.logged().iter().any(leading),
        "both lead\n{}",
        second.output()
    );

    // The Lease the first holds is the cluster's, with the first as holder.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let lease: serde_json::Value = client
        .get(format!(
            "{url}/apis/coordination.k8s.io/v1/namespaces/shop/leases/pilothouse-autoscaler"
        ))
        .send()
        .await
        .expect("GET the Lease")
        .json()
        .await
        .expect("the Lease as JSON");
    let lease_holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
    assert!(lease_holder.ends_with(&format!("-{first_pid}")), "{lease}");

    // The first stops and gives the Lease up; the second takes it at its next try.
    let (status, _) = first.terminate();
    assert!(status.success(), "{status}\n{}", first.output());
    wait_logged(
        &second,
        "the second taking over",
        Duration::from_secs(20),
        leading,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_on_a_cluster_without_docker_is_healthy_and_names_the_cluster_as_kubernetes() {
    use pilothouse::sandbox::{self, Sandbox};
    let cluster = Sandbox::start(sandbox::Options {
        objects: sandbox::demo::objects(),
        ..sandbox::Options::default()
    })
    .await
    .expect("the sandbox cluster starts");
    let url = cluster.url();
    let dirs = Dirs::new();
    let kubeconfig = dirs.path("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig("sandbox", None)).expect("a kubeconfig");
    // Every demo rule but the one an HPA already scales: that one holds on purpose and fails
    // its check, which would keep the daemon unready whatever its targets do.
    for (file, text) in sandbox::demo::rules("sandbox") {
        if !file.starts_with("payments-checkout") {
            dirs.write_rule(&file, &text);
        }
    }
    let kubeconfig = kubeconfig.display().to_string();
    let rules = dirs.rules().display().to_string();
    let args = [
        "--rules",
        &rules,
        "--kubeconfig",
        &kubeconfig,
        "--context",
        "sandbox",
        "--prometheus",
        &url,
    ];
    // No `--docker-host` and no `[[docker]]`: the implicit target `local` is tried, on a socket
    // that does not exist, as on a host without Docker.
    let daemon = Daemon::start_with_env(&dirs, &args, &[("DOCKER_HOST", NO_DOCKER)]).await;

    // The cluster is a k8s check; the Docker target no rule names is shown and is not needed.
    let health = wait(
        "k8s:sandbox and shop-web ok on /healthz",
        WITHIN,
        async || match daemon.get("/healthz").await? {
            (200, body)
                if body.contains("k8s:sandbox: ok k8s ")
                    && body.contains("rule:shop-web: ok read every metric") =>
            {
                Ok(body)
            }
            (status, body) => Err(format!("{status}: {body}")),
        },
    )
    .await;
    assert!(!health.contains("docker:sandbox"), "{health}");
    assert!(
        health.contains(&format!(
            "docker:local: not used (no rule names it): cannot reach Docker at {NO_DOCKER}"
        )),
        "{health}"
    );

    // The lock of the cluster is a k8s- file naming the cluster; no Docker engine was locked.
    let locks = dirs.path("state").join("locks");
    let files: Vec<String> = std::fs::read_dir(&locks)
        .expect("the lock directory")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("k8s-http___127_0_0_1_"), "{files:?}");
    let holder = std::fs::read_to_string(locks.join(&files[0])).expect("the lock file");
    assert!(
        holder.contains(&format!("for kubernetes cluster {url}"))
            && holder.contains("(context sandbox)"),
        "{holder}"
    );
}
