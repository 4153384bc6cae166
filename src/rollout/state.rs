//! What a rollout in progress shares with everything else on the machine: a state file that the
//! rollout rewrites after every step (read by `pilothouse rollout status`, the console's rollout
//! view and the autoscaler), a control file through which `pause`, `resume` and `abort` reach it,
//! and a lock file that it holds for as long as it runs, so a second rollout of the same workload
//! is refused and a crashed one is seen as interrupted rather than running.
//!
//! All three live in `STATE/rollouts/<engine ID>/`, one set per workload.
//!
//! Not for deciding steps (see [`super::plan`]) or acting on a platform.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fsutil;

/// Where one engine's rollout files are kept.
pub fn engine_dir(state_dir: &Path, engine_id: &str) -> PathBuf {
    state_dir.join("rollouts").join(engine_stem(engine_id))
}

/// An engine ID as a directory name: letters and digits kept, everything else `_`.
pub fn engine_stem(engine_id: &str) -> String {
    let stem: String = engine_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if stem.is_empty() {
        "unknown-engine".to_string()
    } else {
        stem
    }
}

/// A workload name as a file name that maps back to one name only: ASCII letters, digits, `-`,
/// `_` and `.` kept (a leading `.` escaped), every other byte as `%XX` (`shop/web` becomes
/// `shop%2Fweb`).
pub fn workload_stem(workload: &str) -> String {
    let mut out = String::with_capacity(workload.len());
    for (i, byte) in workload.bytes().enumerate() {
        let keep =
            byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_') || (byte == b'.' && i > 0);
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The files of one workload's rollouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub state: PathBuf,
    pub control: PathBuf,
    pub lock: PathBuf,
    /// Where a rollout started in the background writes its progress lines.
    pub log: PathBuf,
}

impl Files {
    pub fn new(state_dir: &Path, engine_id: &str, workload: &str) -> Files {
        let dir = engine_dir(state_dir, engine_id);
        let stem = workload_stem(workload);
        Files {
            state: dir.join(format!("{stem}.json")),
            control: dir.join(format!("{stem}.control")),
            lock: dir.join(format!("{stem}.lock")),
            log: dir.join(format!("{stem}.log")),
        }
    }
}

/// What a rollout is doing, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Replacing replicas step by step.
    Progressing,
    /// Paused by an operator between steps.
    Paused,
    /// Every replica runs the new revision.
    Succeeded,
    /// A health gate failed and the previous revision is being brought back.
    RollingBack,
    /// The previous revision serves again after a failure or an abort.
    RolledBack,
    /// It stopped and could not bring the previous revision back either; see the message.
    Failed,
    /// The process running it ended before it finished (found by `status` from a stale file).
    Interrupted,
}

impl Phase {
    /// Whether the rollout has ended, one way or another.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Phase::Succeeded | Phase::RolledBack | Phase::Failed | Phase::Interrupted
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Succeeded => "succeeded",
            Phase::RollingBack => "rolling-back",
            Phase::RolledBack => "rolled-back",
            Phase::Failed => "failed",
            Phase::Interrupted => "interrupted",
        }
    }
}

/// Why a rollout was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Rollout,
    Rollback,
}

/// One replica as the rollout last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    pub name: String,
    pub revision: u32,
    /// `healthy`, `starting`, `unhealthy`, `running`, `exited`, ...
    pub health: String,
    pub ready: bool,
}

/// One analysis reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub at: DateTime<Utc>,
    /// None when the query gave no number (empty, NaN): inconclusive.
    pub value: Option<f64>,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
}

/// One finished step and where its time went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub number: u32,
    pub created: Vec<String>,
    pub removed: Vec<String>,
    /// The whole step, from its start to the next observation.
    pub took_ms: u64,
    /// Waiting for new replicas to become healthy.
    pub health_ms: u64,
    /// Waiting for removed replicas to drain from the load balancer and stop.
    pub drain_ms: u64,
    /// The engine creating and starting the new replicas.
    #[serde(default)]
    pub create_ms: u64,
}

impl StepRecord {
    /// The part of the step spent neither in health checks, nor in draining, nor in the
    /// engine's creating and starting: Pilothouse's own work (observing the replicas, deciding,
    /// adding servers to the load balancer, writing its state).
    pub fn own_ms(&self) -> u64 {
        self.took_ms
            .saturating_sub(self.health_ms)
            .saturating_sub(self.drain_ms)
            .saturating_sub(self.create_ms)
    }
}

/// The state file of one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub workload: String,
    /// The Docker host's address as given.
    pub host: String,
    pub engine_id: String,
    pub kind: Kind,
    pub phase: Phase,
    pub from_revision: u32,
    pub to_revision: u32,
    pub image: String,
    pub desired: u32,
    pub max_surge: u32,
    pub max_unavailable: u32,
    pub replicas: Vec<ReplicaView>,
    pub steps: Vec<StepRecord>,
    pub analysis: Vec<Reading>,
    pub message: String,
    pub started: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// The process that runs it, for `status` to say who.
    pub pid: u32,
    pub by: String,
}

impl RolloutState {
    /// Replicas per revision, in revision order: `[(1, 3), (2, 1)]`.
    pub fn per_revision(&self) -> Vec<(u32, usize, usize)> {
        let mut out: Vec<(u32, usize, usize)> = Vec::new();
        for replica in &self.replicas {
            match out.iter_mut().find(|(rev, _, _)| *rev == replica.revision) {
                Some((_, total, ready)) => {
                    *total += 1;
                    *ready += usize::from(replica.ready);
                }
                None => out.push((replica.revision, 1, usize::from(replica.ready))),
            }
        }
        out.sort_by_key(|(rev, _, _)| *rev);
        out
    }
}

/// Reads a state file; None when there is none. A file that does not parse is an error that
/// names it (never an empty state).
pub fn read_state(path: &Path) -> Result<Option<RolloutState>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))
}

/// Replaces the state file as a whole.
pub fn write_state(path: &Path, state: &RolloutState) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
    text.push('\n');
    fsutil::write_atomic(path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// An operator's word to a running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Abort,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Abort => "abort",
        }
    }

    fn parse(text: &str) -> Option<Control> {
        match text.trim() {
            "pause" => Some(Control::Pause),
            "resume" => Some(Control::Resume),
            "abort" => Some(Control::Abort),
            _ => None,
        }
    }
}

/// Leaves `control` for the rollout of these files; refused when no rollout is running.
pub fn send_control(files: &Files, control: Control) -> Result<(), String> {
    if !is_running(files) {
        return Err("no rollout of this workload is running".to_string());
    }
    fsutil::write_atomic(&files.control, format!("{}\n", control.as_str()).as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", files.control.display()))
}

/// The operator's last word, if any; an unreadable or unknown word is none.
pub fn read_control(files: &Files) -> Option<Control> {
    std::fs::read_to_string(&files.control)
        .ok()
        .and_then(|text| Control::parse(&text))
}

/// Forgets any word left for an earlier rollout.
pub fn clear_control(files: &Files) {
    let _ = std::fs::remove_file(&files.control);
}

/// The lock a running rollout holds; dropping it lets go.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Takes the rollout lock of a workload, or says who holds it.
///
/// [`is_running`] probes the lock by taking it for a moment, so a lock that is busy is tried
/// again a few times over a tenth of a second before it counts as held.
pub fn lock(files: &Files, holder: &str) -> Result<RunLock, String> {
    let mut file = crate::autoscaler::lock::open(&files.lock)?;
    let mut attempt = file.try_lock();
    for _ in 0..10 {
        if !matches!(attempt, Err(TryLockError::WouldBlock)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        attempt = file.try_lock();
    }
    match attempt {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = file.seek(SeekFrom::Start(0));
            let _ = file.write_all(format!("{holder}\n").as_bytes());
            Ok(RunLock { _file: file })
        }
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.take(512).read_to_string(&mut text);
            let who = text.lines().next().unwrap_or("").trim().to_string();
            Err(if who.is_empty() {
                "a rollout or scale of this workload is running".to_string()
            } else {
                format!("a rollout or scale of this workload is running ({who})")
            })
        }
        Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", files.lock.display())),
    }
}

/// Whether some process holds the rollout lock of these files now.
pub fn is_running(files: &Files) -> bool {
    let Ok(file) = OpenOptions::new().read(true).write(true).open(&files.lock) else {
        return false;
    };
    matches!(file.try_lock(), Err(TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_names_map_to_file_names_one_to_one() {
        assert_eq!(workload_stem("shop/web"), "shop%2Fweb");
        assert_eq!(workload_stem("web-1.a_b"), "web-1.a_b");
        assert_eq!(workload_stem(".."), "%2E.");
        assert_eq!(workload_stem("a%2Fb"), "a%252Fb");
        assert_ne!(workload_stem("a/b"), workload_stem("a%2Fb"));
        assert_eq!(engine_stem("AB:CD"), "AB_CD");
        assert_eq!(engine_stem(""), "unknown-engine");
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holder_and_let_go_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path(), "E1", "shop/web");
        assert!(!is_running(&files));
        let held = lock(&files, "rollout pid 1 (ana@box)").unwrap();
        assert!(is_running(&files));
        let err = lock(&files, "other").unwrap_err();
        assert!(err.contains("rollout pid 1 (ana@box)"), "{err}");
        send_control(&files, Control::Pause).unwrap();
        assert_eq!(read_control(&files), Some(Control::Pause));
        drop(held);
        assert!(!is_running(&files));
        assert!(send_control(&files, Control::Abort).is_err());
        clear_control(&files);
        assert_eq!(read_control(&files), None);
    }

    #[test]
    fn a_state_file_round_trips_and_a_broken_one_names_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path(), "E1", "web");
        assert_eq!(read_state(&files.state).unwrap(), None);
        let now = Utc::now();
        let state = RolloutState {
            workload: "web".into(),
            host: "unix:///var/run/docker.sock".into(),
            engine_id: "E1".into(),
            kind: Kind::Rollout,
            phase: Phase::Progressing,
            from_revision: 1,
            to_revision: 2,
            image: "web:2".into(),
            desired: 3,
            max_surge: 1,
            max_unavailable: 0,
            replicas: vec![
                ReplicaView {
                    name: "web-1".into(),
                    revision: 1,
                    health: "healthy".into(),
                    ready: true,
                },
                ReplicaView {
                    name: "web-4".into(),
                    revision: 2,
                    health: "starting".into(),
                    ready: false,
                },
                ReplicaView {
                    name: "web-2".into(),
                    revision: 1,
                    health: "healthy".into(),
                    ready: true,
                },
            ],
            steps: vec![],
            analysis: vec![],
            message: String::new(),
            started: now,
            updated: now,
            pid: 1,
            by: "ana".into(),
        };
        write_state(&files.state, &state).unwrap();
        assert_eq!(read_state(&files.state).unwrap(), Some(state.clone()));
        assert_eq!(state.per_revision(), vec![(1, 2, 2), (2, 1, 0)]);
        std::fs::write(&files.state, "{\n  \"workload\": 3\n}").unwrap();
        let err = read_state(&files.state).unwrap_err();
        assert!(err.contains("web.json:2:"), "{err}");
    }

    #[test]
    fn own_time_is_what_health_checks_and_draining_leave() {
        let step = StepRecord {
            number: 1,
            created: vec![],
            removed: vec![],
            took_ms: 1000,
            health_ms: 700,
            drain_ms: 200,
            create_ms: 60,
        };
        assert_eq!(step.own_ms(), 40);
    }
}
