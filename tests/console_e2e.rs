//! End to end: the real binary in a pseudo-terminal, against the real Docker engine, with the
//! screen read back through a terminal emulator.

mod support;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

const ROWS: u16 = 40;
const COLS: u16 = 160;

/// The console running in a pseudo-terminal, its output collected by a reader thread.
struct Console {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    output: Arc<Mutex<Vec<u8>>>,
    dirs: tempfile::TempDir,
}

impl Console {
    fn start(args: &[&str]) -> Console {
        let dirs = tempfile::tempdir().unwrap();
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_pilothouse"));
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        for name in ["CONFIG", "DATA", "STATE"] {
            cmd.env(
                format!("PILOTHOUSE_{name}_DIR"),
                dirs.path().join(name.to_lowercase()),
            );
        }
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().unwrap();
        let writer = pty.master.take_writer().unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        // Dropping the master would hang up the child's terminal; it lives until the test ends.
        std::mem::forget(pty.master);
        Console {
            child,
            writer,
            output,
            dirs,
        }
    }

    /// The console pointed at a socket path that nothing listens on.
    fn without_engine() -> (Console, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let socket = format!("unix://{}", dir.path().join("no-engine.sock").display());
        (Console::start(&["--docker-host", &socket]), dir)
    }

    fn screen(&self) -> vt100::Parser {
        let mut parser = vt100::Parser::new(ROWS, COLS, 0);
        parser.process(&self.output.lock().unwrap());
        parser
    }

    fn raw(&self) -> Vec<u8> {
        self.output.lock().unwrap().clone()
    }

    /// Wait until the screen contains `text`, for at most `secs` seconds.
    fn wait_for(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let contents = self.screen().screen().contents();
            if contents.contains(text) {
                return contents;
            }
            if Instant::now() > deadline {
                panic!("{text:?} did not appear within {secs}s; the screen was:\n{contents}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Wait for the process to exit by itself within `secs` seconds; kill it otherwise.
    fn wait_exit(&mut self, secs: u64) -> Option<portable_pty::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }

    /// Wait for a workload to show, then filter the table down to it so it is selected.
    fn select(&mut self, workload: &str) {
        self.wait_for(workload, 20);
        self.keys("/");
        self.keys(workload);
        self.keys("\r");
    }

    /// Type `keys` and expect the console to exit by itself, successfully: at once, or after
    /// the actions in flight finished (it waits at most 20 s for those).
    fn quit_with(&mut self, keys: &str) {
        self.keys(keys);
        let status = self
            .wait_exit(25)
            .expect("the console exits after the quit key");
        assert!(status.success(), "exit status {status:?}");
    }

    fn pid(&self) -> u32 {
        self.child.process_id().unwrap()
    }
}

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
