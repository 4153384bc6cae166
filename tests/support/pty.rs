//! The real binary in a pseudo-terminal, its screen read back through a terminal emulator.
//!
//! Not for judging what a screen shows: tests read it and decide.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

pub const ROWS: u16 = 40;
pub const COLS: u16 = 160;

/// The console running in a pseudo-terminal, its output collected by a reader thread.
pub struct Console {
    pub child: Box<dyn portable_pty::Child + Send + Sync>,
    pub writer: Box<dyn Write + Send>,
    pub output: Arc<Mutex<Vec<u8>>>,
    pub dirs: tempfile::TempDir,
}

impl Console {
    pub fn start(args: &[&str]) -> Console {
        Console::start_in(tempfile::tempdir().unwrap(), args)
    }

    /// The console with `config_toml` as its config.toml.
    pub fn start_with_config(config_toml: &str, args: &[&str]) -> Console {
        let dirs = tempfile::tempdir().unwrap();
        let config_dir = dirs.path().join("config");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(config_dir.join("config.toml"), config_toml).unwrap();
        Console::start_in(dirs, args)
    }

    /// The console with its config, data and state directories under `dirs`.
    pub fn start_in(dirs: tempfile::TempDir, args: &[&str]) -> Console {
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
    pub fn without_engine() -> (Console, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let socket = format!("unix://{}", dir.path().join("no-engine.sock").display());
        (Console::start(&["--docker-host", &socket]), dir)
    }

    pub fn screen(&self) -> vt100::Parser {
        let mut parser = vt100::Parser::new(ROWS, COLS, 0);
        parser.process(&self.output.lock().unwrap());
        parser
    }

    pub fn raw(&self) -> Vec<u8> {
        self.output.lock().unwrap().clone()
    }

    /// Wait until the screen contains `text`, for at most `secs` seconds.
    pub fn wait_for(&self, text: &str, secs: u64) -> String {
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

    pub fn keys(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Wait for the process to exit by itself within `secs` seconds; kill it otherwise.
    pub fn wait_exit(&mut self, secs: u64) -> Option<portable_pty::ExitStatus> {
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
    pub fn select(&mut self, workload: &str) {
        self.wait_for(workload, 20);
        self.keys("/");
        self.keys(workload);
        self.keys("\r");
    }

    /// Type `keys` and expect the console to exit by itself, successfully: at once, or after
    /// the actions in flight finished (it waits at most 20 s for those).
    pub fn quit_with(&mut self, keys: &str) {
        self.keys(keys);
        let status = self
            .wait_exit(25)
            .expect("the console exits after the quit key");
        assert!(status.success(), "exit status {status:?}");
    }

    pub fn pid(&self) -> u32 {
        self.child.process_id().unwrap()
    }
}

/// Kills the console if the test ends before it quit, so that its autoscaler cannot act on
/// the containers the test's label is removing.
pub struct KillOnDrop(pub Console);

impl std::ops::Deref for KillOnDrop {
    type Target = Console;
    fn deref(&self) -> &Console {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Console {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.child.try_wait() {
            let _ = self.0.child.kill();
            let _ = self.0.child.wait();
        }
    }
}

impl Console {
    /// Wait until `accept` takes the screen, for at most `secs` seconds; panics naming `what`.
    pub fn wait_until(&self, what: &str, secs: u64, accept: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let contents = self.screen().screen().contents();
            if accept(&contents) {
                return contents;
            }
            if Instant::now() > deadline {
                panic!("no {what} within {secs}s; the screen was:\n{contents}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
