//! End to end: the real binary in a pseudo-terminal, against the real Docker engine, with the
//! screen read back through a terminal emulator.

mod support;

use std::time::{Duration, Instant};

use support::pty::{Console, KillOnDrop};

#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_a_real_container_its_logs_safely_and_quits_on_q() {
    let Some(docker) = support::docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = support::TestLabel::new();
    let group = format!("e2e-{}", label.short());
    let script = "printf 'hello from the e2e test\\n'; \
                  printf 'title \\033]0;pwned\\007 clip \\033]52;c;aGk=\\007 bell \\007 end\\n'; \
                  trap 'exit 0' TERM; while :; do sleep 1; done";
    let config = support::busybox(
        &label,
        &["sh", "-c", script],
        &[("pilothouse.group", &group)],
    );
    support::run_container(&docker, &format!("{group}-1"), config).await;

    let mut console = Console::start(&[]);
    console.select(&group);
    console.keys("l");
    let screen = console.wait_for("hello from the e2e test", 20);
    let screen_after = console.wait_for(" end", 10);
    assert!(
        screen.contains("● docker"),
        "the header shows the engine connected:\n{screen}"
    );
    assert!(
        screen_after.contains("title  clip  bell ␇ end") && !screen_after.contains("pwned"),
        "escape sequences show as inert text:\n{screen_after}"
    );
    let raw = console.raw();
    let window = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(
        !window(b"\x1b]52;"),
        "no clipboard write reached the terminal"
    );
    assert!(
        !window(b"\x1b]0;pwned"),
        "no title change reached the terminal"
    );
    assert!(
        !window(b"pwned\x07"),
        "no BEL from the container reached the terminal"
    );

    console.keys("q");
    console.wait_for("workloads", 5);
    console.quit_with("q");
    assert!(
        !console.screen().screen().alternate_screen(),
        "the terminal is restored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quitting_while_a_scale_runs_lets_it_finish_and_audits_its_outcome() {
    let Some(docker) = support::docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = support::TestLabel::new();
    let group = format!("settle-{}", label.short());
    let config = support::busybox(
        &label,
        support::SLEEP_FOREVER,
        &[
            ("pilothouse.group", &group),
            ("pilothouse.group.number", "1"),
        ],
    );
    support::run_container(&docker, &format!("{group}-1"), config).await;

    let mut console = Console::start(&[]);
    console.select(&group);
    // Scale 1 → 3 (no question asked for two more), then quit at once.
    console.keys("s3\r");
    console.wait_for("scale ", 10);
    console.quit_with("q");

    assert_eq!(
        label.containers(&docker).await.len(),
        3,
        "the scale finished"
    );
    let audit = std::fs::read_to_string(console.dirs.path().join("state").join("audit.jsonl"))
        .expect("the audit log exists");
    let outcomes: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["action"] == "scale")
        .map(|v| v["outcome"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(outcomes, ["started", "ok"], "{audit}");
}

/// Resident and peak memory of a process, in KiB, from /proc.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_log_keeps_memory_bounded_and_keys_answered() {
    let Some(docker) = support::docker_or_skip().await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let label = support::TestLabel::new();
    let group = format!("flood-{}", label.short());
    // Each line is about 200 bytes; the engine keeps at most 2 x 5 MB of it on disk.
    let script = "i=0; while :; do i=$((i+1)); \
                  echo \"flood $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\
                  xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\
                  xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"; done";
    let mut config = support::busybox(
        &label,
        &["sh", "-c", script],
        &[("pilothouse.group", &group)],
    );
    config.host_config = Some(bollard::models::HostConfig {
        log_config: Some(bollard::models::HostConfigLogConfig {
            typ: Some("json-file".to_string()),
            config: Some(std::collections::HashMap::from([
                ("max-size".to_string(), "5m".to_string()),
                ("max-file".to_string(), "2".to_string()),
            ])),
        }),
        ..Default::default()
    });
    support::run_container(&docker, &format!("{group}-1"), config).await;

    // The default caps: 10,000 lines or 8 MiB, whichever comes first.
    let mut console = Console::start(&[]);
    console.select(&group);
    console.keys("l");
    console.wait_for("flood ", 20);
    std::thread::sleep(Duration::from_secs(3));
    let (early, _) = memory_kib(console.pid());
    std::thread::sleep(Duration::from_secs(5));

    // Keys are still answered during the flood: the help opens and closes.
    console.keys("?");
    console.wait_for("help ─", 10);
    console.keys("?");
    let (late, peak) = memory_kib(console.pid());
    let screen = console.wait_for("older dropped", 20);
    assert!(
        screen.contains("10000 lines"),
        "the buffer holds its line cap:\n{screen}"
    );
    assert!(
        late < early + 40 * 1024,
        "memory grew from {early} KiB to {late} KiB during the flood"
    );
    assert!(peak < 256 * 1024, "peak memory {peak} KiB");

    console.keys("q");
    console.quit_with("q");
}

#[test]
fn an_unreachable_engine_is_reported_on_screen_and_the_console_stays_usable() {
    let (mut console, _dir) = Console::without_engine();
    let screen = console.wait_for("cannot reach Docker", 10);
    assert!(screen.contains("retrying in"), "{screen}");
    console.keys("?");
    console.wait_for("help", 5);
    console.keys("?");
    console.quit_with("q");
}

#[test]
fn a_hangup_ends_the_console_cleanly() {
    let (mut console, _dir) = Console::without_engine();
    console.wait_for("pilothouse", 10);
    let pid = console.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = console.wait_exit(5).expect("SIGHUP ends the console");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        !console.screen().screen().alternate_screen(),
        "the terminal is restored"
    );
}

#[test]
fn a_bad_config_file_is_reported_with_its_line_and_column_before_the_terminal_is_taken() {
    let dirs = tempfile::tempdir().unwrap();
    let config_dir = dirs.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("config.toml"),
        "read_only = false\n[ui]\nframe_rate = 0\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pilothouse"))
        .env("PILOTHOUSE_CONFIG_DIR", &config_dir)
        .env("PILOTHOUSE_DATA_DIR", dirs.path().join("data"))
        .env("PILOTHOUSE_STATE_DIR", dirs.path().join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config.toml:3:"), "{stderr}");
    assert!(stderr.contains("frame_rate"), "{stderr}");
}

/// How often the rule the editor test types is evaluated, in seconds.
const TYPED_RULE_POLL_SECS: u64 = 1;

/// The typed rule's scale-down stabilization window, in seconds.
const TYPED_RULE_WINDOW_SECS: u64 = 10;

/// The rule the editor test types for `group`: one replica per 10 of the peak of
/// `console_load{app="<group>"}`, between 1 and 5 replicas, with a short scale-down window.
fn typed_rule(group: &str) -> String {
    format!(
        "name: {group}\n\
         target: {{ platform: docker, host: local, workload: {group} }}\n\
         minReplicas: 1\n\
         maxReplicas: 5\n\
         pollingInterval: {TYPED_RULE_POLL_SECS}s\n\
         metrics:\n\
         \x20 - name: load\n\
         \x20   prometheus:\n\
         \x20     query: 'max({series})'\n\
         \x20     type: AverageValue\n\
         \x20     target: 10\n\
         behavior:\n\
         \x20 scaleDown: {{ stabilizationWindow: {TYPED_RULE_WINDOW_SECS}s }}\n",
        series = load_series(group),
    )
}

/// The gauge the typed rule reads for `group`.
fn load_series(group: &str) -> String {
    format!("console_load{{app={group:?}}}")
}

/// How a table column lines its cells up under its title.
#[derive(Debug, Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// The cell of `column` in the first line below that column's title that contains `row`: a
/// left-aligned cell runs from the title's first character to the next two spaces, a
/// right-aligned one is the last word that ends under the title's last character.
fn cell(screen: &str, column: &str, align: Align, row: &str) -> Option<String> {
    let lines: Vec<&str> = screen.lines().collect();
    let (header, start) = lines
        .iter()
        .enumerate()
        .find_map(|(i, line)| word_at(line, column).map(|at| (i, at)))?;
    let line: Vec<char> = lines[header + 1..]
        .iter()
        .find(|line| line.contains(row))?
        .chars()
        .collect();
    match align {
        Align::Left => {
            let rest: String = line[start.min(line.len())..].iter().collect();
            Some(rest.split("  ").next().unwrap_or("").trim().to_string())
        }
        Align::Right => {
            let end = (start + column.chars().count()).min(line.len());
            let head: String = line[..end].iter().collect();
            head.split_whitespace().last().map(str::to_string)
        }
    }
}

/// Where `word` stands as a whole word in `line`, in characters.
fn word_at(line: &str, word: &str) -> Option<usize> {
    let chars: Vec<char> = line.chars().collect();
    let word: Vec<char> = word.chars().collect();
    let boundary = |c: Option<&char>| c.is_none_or(|c| !c.is_alphanumeric());
    (0..chars.len()).find(|&i| {
        chars[i..].starts_with(&word)
            && (i == 0 || boundary(chars.get(i - 1)))
            && boundary(chars.get(i + word.len()))
    })
}

/// The running containers of the Pilothouse group `group`, as the engine lists them.
async fn running_replicas(docker: &bollard::Docker, group: &str) -> usize {
    let options = bollard::container::ListContainersOptions::<String> {
        all: false,
        filters: std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!("pilothouse.group={group}")],
        )]),
        ..Default::default()
    };
    docker
        .list_containers(Some(options))
        .await
        .expect("list the group's containers")
        .len()
}

/// Wait at most `secs` seconds until `group` runs `n` containers; panics with the count and
/// the console's screen.
async fn wait_for_replicas(
    docker: &bollard::Docker,
    group: &str,
    n: usize,
    secs: u64,
    console: &Console,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let running = running_replicas(docker, group).await;
        if running == n {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{group} runs {running} containers, not {n}, after {secs}s; the screen was:\n{}",
                console.screen().screen().contents()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One autoscaler decision as the console's log file records it.
#[derive(Debug, Clone, PartialEq)]
struct LoggedDecision {
    at: chrono::DateTime<chrono::Utc>,
    current: u32,
    desired: u32,
    /// The readings as logged, such as `load=30`.
    readings: String,
}

/// The decisions of rule `rule` in the log file `log` that had a workload to decide on.
fn logged_decisions(log: &std::path::Path, rule: &str) -> Vec<LoggedDecision> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let rule_field = format!("rule={rule}");
    text.lines()
        .filter(|line| line.contains(" decision ") && line.contains(&rule_field))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let at = chrono::DateTime::parse_from_rfc3339(words.next()?).ok()?;
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .map(str::to_string)
            };
            Some(LoggedDecision {
                at: at.with_timezone(&chrono::Utc),
                current: field("current=")?.parse().ok()?,
                desired: field("desired=")?.parse().ok()?,
                readings: field("readings=").unwrap_or_default(),
            })
        })
        .collect()
}

/// One autoscaler scale entry of the audit log.
#[derive(Debug, Clone)]
struct AuditedScale {
    outcome: String,
    from: u64,
    to: u64,
    reason: String,
    at: chrono::DateTime<chrono::Utc>,
}

/// The autoscaler's scale entries in the audit log `audit`, in order.
fn audited_autoscaler_scales(audit: &std::path::Path) -> Vec<AuditedScale> {
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|v| v["origin"] == "autoscaler" && v["action"] == "scale")
        .map(|v| {
            let text = |key: &str| v[key].as_str().unwrap_or_default().to_string();
            let number = |key: &str| v[key].as_u64().unwrap_or(u64::MAX);
            let at = chrono::DateTime::parse_from_rfc3339(&text("time"))
                .unwrap_or_else(|e| panic!("audit time in {v}: {e}"));
            AuditedScale {
                outcome: text("outcome"),
                from: number("from"),
                to: number("to"),
                reason: text("reason"),
                at: at.with_timezone(&chrono::Utc),
            }
        })
        .collect()
}

/// One evaluation in the output of `rules simulate`.
#[derive(Debug, Clone, Copy)]
struct SimulatedStep {
    t: u64,
    current: u32,
    /// What the rule's one metric asked for, when it could be read.
    recommendation: Option<u64>,
    desired: u32,
}

/// `rules simulate` of the real binary on `rule_file` over the CSV `series`, from 1 replica.
fn simulate_with_binary(
    rule_file: &std::path::Path,
    series: &std::path::Path,
) -> Vec<SimulatedStep> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pilothouse"))
        .arg("rules")
        .arg("simulate")
        .arg(rule_file)
        .arg("--series")
        .arg(series)
        .args(["--initial-replicas", "1", "--output", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rules simulate failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let count = |v: &serde_json::Value| {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or_else(|| panic!("not a count: {v}"))
    };
    steps
        .iter()
        .map(|s| SimulatedStep {
            t: s["t"].as_u64().unwrap(),
            current: count(&s["current"]),
            recommendation: s["recommendations"][0]["replicas"].as_u64(),
            desired: count(&s["desired"]),
        })
        .collect()
}

/// Seconds from `from` to `to`.
fn secs_between(from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_written_in_the_editor_scales_a_workload_up_and_back_down_as_simulate_predicts() {
    use chrono::Utc;

    // A group of one container, a gauge at 30 and a Prometheus of the test's own scraping it.
    let Some(docker) = support::docker_or_skip().await else {
        return;
    };
    let label = support::TestLabel::new();
    let group = format!("rule-{}", label.short());
    let series = load_series(&group);
    let Some(prometheus) = support::prometheus::prometheus_or_skip(&[(&series, 30.0)]).await else {
        return;
    };
    support::ensure_test_image(&docker).await;
    let config = support::busybox(
        &label,
        support::SLEEP_FOREVER,
        &[
            ("pilothouse.group", &group),
            ("pilothouse.group.number", "1"),
        ],
    );
    support::run_container(&docker, &format!("{group}-1"), config).await;
    let config_toml = format!("[autoscaler]\nprometheus = \"{}\"\n", prometheus.url());
    let mut console = KillOnDrop(Console::start_with_config(&config_toml, &[]));

    // The rule, typed over the template in the editor, previewed, saved and applied.
    console.select(&group);
    console.keys("e");
    console.wait_for("A scaling rule for", 10);
    // Ctrl-K deletes to the end of the line, or the line break at its end: enough of them
    // empty the template, whatever its length.
    console.keys(&"\x0b".repeat(80));
    console.wait_until("empty editor", 10, |s| {
        !s.contains("A scaling rule for") && !s.contains("utilization")
    });
    let rule = typed_rule(&group);
    console.keys(&rule.replace('\n', "\r"));
    console.wait_for("now: 1 → 3", 20);
    console.keys("\x13");
    console.wait_for("the autoscaler now runs", 10);
    let rule_file = console
        .dirs
        .path()
        .join("config/rules")
        .join(format!("{group}.yaml"));
    assert_eq!(
        std::fs::read_to_string(&rule_file).unwrap(),
        rule,
        "the rule file holds exactly the typed rule"
    );
    console.keys("\x1b");
    console.wait_until("workloads table", 10, |s| word_at(s, "READY").is_some());

    // Up: the query asks for ceil(30 / 10) = 3 replicas.
    wait_for_replicas(&docker, &group, 3, 60, &console).await;
    console.wait_until("READY 3/3 and RULE =3", 30, |s| {
        cell(s, "READY", Align::Right, &group).as_deref() == Some("3/3")
            && cell(s, "RULE", Align::Left, &group).is_some_and(|c| c.ends_with("=3"))
    });
    console.keys("a");
    console.wait_until("rule at 3 replicas in the autoscaler view", 20, |s| {
        s.contains("autoscaler ─ 1 rule")
            && cell(s, "STATE", Align::Left, &group).as_deref() == Some("active")
            && cell(s, "REPLICAS", Align::Left, &group).as_deref() == Some("3")
    });
    console.keys("a");
    console.wait_until("workloads table", 10, |s| word_at(s, "READY").is_some());

    // Down: the gauge drops to 5, which asks for 1; the window holds 3 for a while first.
    let dropped_at = Utc::now();
    prometheus.endpoint.set(&series, 5.0);
    let hold = Duration::from_secs(TYPED_RULE_WINDOW_SECS / 2 + 1);
    let held_until = Instant::now() + hold;
    while Instant::now() < held_until {
        let running = running_replicas(&docker, &group).await;
        assert_eq!(
            running, 3,
            "still 3 inside the window ({hold:?} after the drop)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_for_replicas(&docker, &group, 1, 60, &console).await;
    let one_at = Utc::now();
    console.wait_until("READY 1/1 and RULE =1", 30, |s| {
        cell(s, "READY", Align::Right, &group).as_deref() == Some("1/1")
            && cell(s, "RULE", Align::Left, &group).is_some_and(|c| c.ends_with("=1"))
    });
    console.quit_with("q");

    // The audit log: both scales, by the autoscaler, with the numbers behind them.
    let audit = audited_autoscaler_scales(&console.dirs.path().join("state/audit.jsonl"));
    let steps: Vec<(&str, u64, u64)> = audit
        .iter()
        .map(|s| (s.outcome.as_str(), s.from, s.to))
        .collect();
    assert_eq!(
        steps,
        [
            ("started", 1, 3),
            ("ok", 1, 3),
            ("started", 3, 1),
            ("ok", 3, 1)
        ],
        "{audit:?}"
    );
    let rule_prefix = format!("rule {group}: ");
    assert!(
        audit[0].reason.starts_with(&rule_prefix)
            && audit[0].reason.contains("load 30 / 10 per replica x 1 → 3"),
        "{audit:?}"
    );
    assert!(
        audit[2].reason.starts_with(&rule_prefix)
            && audit[2].reason.contains("load 5 / 10 per replica x 3 → 1"),
        "{audit:?}"
    );
    // A scale is audited as it starts, right after its cycle decided; the log line of that
    // cycle comes only once the scale is done.
    let (live_up, live_down) = (audit[0].at, audit[2].at);

    // The live run, from the console's log: every cycle's count and reading, in order.
    let log = console.dirs.path().join("data/pilothouse.log");
    let live = logged_decisions(&log, &group);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let live_changes: Vec<(u32, u32)> = live
        .iter()
        .filter(|d| d.current != d.desired)
        .map(|d| (d.current, d.desired))
        .collect();
    assert_eq!(live_changes, [(1, 3), (3, 1)], "{}", log_text());
    assert_eq!(
        (live[0].current, live[0].desired),
        (1, 3),
        "the first cycle scaled up:\n{}",
        log_text()
    );
    let last_high = live
        .iter()
        .rev()
        .find(|d| d.at < live_down && d.readings == "load=30")
        .expect("a cycle read 30 before the scale-down");
    let first_low = live.iter().find(|d| d.readings == "load=5").unwrap();
    assert!(first_low.at > dropped_at, "{first_low:?} before the drop");
    // Each timestamp is taken a few milliseconds after its cycle read the clock.
    let window = TYPED_RULE_WINDOW_SECS as f64;
    assert!(
        secs_between(last_high.at, live_down) >= window - 0.1,
        "live: scaled down at {live_down}, less than the window after the last cycle that \
         read 30 ({})\n{}",
        last_high.at,
        log_text()
    );

    // What the test applied, as a series from the first cycle (the one that scaled up): 30,
    // then 5 from the drop. The times cannot match the live run exactly: Prometheus sees the
    // drop at its next scrape (up to 1 s later), and live cycles fall a few milliseconds off
    // whole seconds, which can move a window's edge by one cycle.
    let t_drop = secs_between(live_up, dropped_at);
    let t_end = secs_between(live_up, one_at) + 5.0;
    let csv = console.dirs.path().join("applied.csv");
    std::fs::write(&csv, format!("t,load\n0,30\n{t_drop:.3},5\n{t_end:.3},5\n")).unwrap();
    let simulated = simulate_with_binary(&rule_file, &csv);
    let simulated_changes: Vec<(u64, u32, u32)> = simulated
        .iter()
        .filter(|s| s.current != s.desired)
        .map(|s| (s.t, s.current, s.desired))
        .collect();
    let counts: Vec<(u32, u32)> = simulated_changes
        .iter()
        .map(|&(_, from, to)| (from, to))
        .collect();
    assert_eq!(counts, live_changes, "simulated {simulated:?}");
    let (t_up, t_down) = (simulated_changes[0].0, simulated_changes[1].0);
    let sim_last_high = simulated
        .iter()
        .rev()
        .find(|s| s.t < t_down && s.recommendation == Some(3))
        .map(|s| s.t)
        .unwrap();
    assert_eq!(t_up, 0, "the first cycle scales up: {simulated:?}");
    assert_eq!(
        t_down,
        sim_last_high + TYPED_RULE_WINDOW_SECS,
        "simulated: down one window after the last cycle that read 30: {simulated:?}"
    );
    let poll = TYPED_RULE_POLL_SECS as f64;
    assert!(
        t_down as f64 > t_drop + window - poll && t_down as f64 <= t_drop + window + poll,
        "simulated: down at t={t_down}, the drop at t={t_drop:.3}: {simulated:?}"
    );
    println!(
        "load dropped at t={t_drop:.3}s; scale-down live at t={:.3}s, simulated at t={t_down}s",
        secs_between(live_up, live_down)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rollout_view_follows_a_rollout_from_the_command_line_and_pauses_and_resumes_it() {
    let Some(docker) = support::docker_or_skip().await else {
        return;
    };
    support::rollout::build_web_images(&docker).await;
    // Health checked every 3 s: each step waits that long, so the rollout is slow to watch.
    let slow = "pilothouse-test/rollout-web:slow";
    let body = support::rollout::web_image("slow", true).replace("--interval=1s", "--interval=3s");
    support::build_image(&docker, slow, &body).await;
    let label = support::TestLabel::new();
    let group = label.short();
    support::rollout::start_group(&docker, &label, &group, support::rollout::WEB_V1, 3).await;

    let mut console = KillOnDrop(Console::start(&[]));
    console.select(&group);
    // The rollout runs in the background, as a pipeline starts it, sharing the state directory.
    let started = support::rollout::pilothouse(
        console.dirs.path(),
        &[
            "rollout",
            &group,
            "--image",
            slow,
            "--max-surge",
            "1",
            "--max-unavailable",
            "0",
        ],
    );
    assert_eq!(
        started.status.code(),
        Some(0),
        "{}",
        support::rollout::describe(&started)
    );
    console.keys("R");
    console.wait_for("progressing", 20);

    console.keys("p");
    let paused = console.wait_for("paused by an operator", 20);
    assert!(paused.contains(&group), "{paused}");
    // Paused: no step starts for a while.
    let steps_now = |console: &Console| {
        let screen = console.screen().screen().contents();
        screen.lines().find_map(|l| {
            l.split("steps (")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .map(str::to_string)
        })
    };
    let before = steps_now(&console);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(steps_now(&console), before, "no step while paused");

    console.keys("r");
    console.wait_until("the rollout to finish", 60, |screen| {
        screen.contains("succeeded")
    });
    let running = support::rollout::running(&docker, &label, &group).await;
    assert!(
        running.len() == 3 && running.iter().all(|(_, image)| image == slow),
        "{running:?}"
    );
    let audit = std::fs::read_to_string(console.dirs.path().join("state").join("audit.jsonl"))
        .expect("the audit log exists");
    let words: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["action"] == "rolloutcontrol" && v["outcome"] == "ok")
        .map(|v| v["word"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(words, ["pause", "resume"], "{audit}");
    // `q` in a sub-view goes back; the second quits.
    console.keys("q");
    console.wait_for("WORKLOAD", 10);
    console.quit_with("q");
}
