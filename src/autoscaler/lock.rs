//! The lock that keeps two autoscalers off one Docker host or Kubernetes cluster: a file per
//! engine (by the ID the engine reports, so two addresses of one engine share it) or per cluster
//! (by its API server's address), named after its platform (`docker-ID.lock`, `k8s-URL.lock`), in
//! a directory the console and the daemon share, held with an advisory lock (`flock`) for as long
//! as the process runs. The holder writes who it is into the file, so the one that does not hold
//! it can say who does. The operating system lets go of the lock when the holder exits, however
//! it exits, so a crashed holder never leaves a stale lock behind.
//!
//! Not for daemons that take part in a Kubernetes Lease's election (see `crate::daemon::leader`):
//! the Lease decides which of them may act, and this lock is what a console and a daemon agree
//! through.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};

use crate::model::PlatformKind;

/// Why a lock was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Another autoscaler holds it; the text is who, as it wrote it.
    #[error("{0}")]
    Held(String),
    /// The lock file cannot be used at all (the directory cannot be made, no permission).
    #[error("{0}")]
    Unusable(String),
}

/// The host locks one autoscaler holds or tries to take.
#[derive(Debug)]
pub struct HostLocks {
    dir: PathBuf,
    /// Who this autoscaler is, as others will read it: `console pid 12 (ana@box)`.
    holder: String,
    /// Held locks by file; the open file keeps the lock.
    held: HashMap<PathBuf, File>,
}

impl HostLocks {
    /// Locks kept in `dir`, taken in the name of `holder`.
    pub fn new(dir: PathBuf, holder: String) -> HostLocks {
        HostLocks {
            dir,
            holder,
            held: HashMap::new(),
        }
    }

    /// Who this autoscaler says it is.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Take the lock of `platform` named `key` (a Docker engine's ID, a cluster's API server
    /// address), or keep it if held already; `about` says what it is for in the holder's line
    /// (`docker engine ID at ADDRESS`). When another process holds it, the error says who (as
    /// that process wrote it); when the lock file cannot be used at all, the error says why and
    /// where.
    pub fn acquire(
        &mut self,
        platform: PlatformKind,
        key: &str,
        about: &str,
    ) -> Result<(), LockError> {
        let path = self.path_for(platform, key);
        if self.held.contains_key(&path) {
            return Ok(());
        }
        let mut file = open(&path).map_err(LockError::Unusable)?;
        match file.try_lock() {
            Ok(()) => {
                let since = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
                let text = format!("{} since {since} for {about}\n", self.holder);
                write_holder(&mut file, &text).map_err(|e| {
                    LockError::Unusable(format!("cannot write {}: {e}", path.display()))
                })?;
                tracing::info!(key, about, path = %path.display(), "took the autoscaler lock");
                self.held.insert(path, file);
                Ok(())
            }
            Err(TryLockError::WouldBlock) => Err(LockError::Held(read_holder(&mut file))),
            Err(TryLockError::Error(e)) => Err(LockError::Unusable(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }

    /// Whether this autoscaler holds the lock of `platform` named `key`.
    pub fn holds(&self, platform: PlatformKind, key: &str) -> bool {
        self.held.contains_key(&self.path_for(platform, key))
    }

    /// The lock's file: the platform's short name (`docker`, `k8s`), then the key. A Docker
    /// engine's file keeps the name it always had, so running autoscalers of an earlier version
    /// and this one still exclude each other.
    fn path_for(&self, platform: PlatformKind, key: &str) -> PathBuf {
        self.dir.join(format!("{platform}-{}.lock", file_stem(key)))
    }
}

/// The key as a file name: letters and digits kept, everything else `_` (an engine ID such as
/// `ABCD:EFGH:...` becomes `ABCD_EFGH_...`).
fn file_stem(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Opens (creating it and its directory) a lock file without truncating what its holder wrote.
pub(crate) fn open(path: &Path) -> Result<File, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the lock directory {}: {e}", dir.display()))?;
    }
    // Never truncated on open: the holder's words must stay readable to the one that waits.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))
}

fn write_holder(file: &mut File, text: &str) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// What the holder wrote, on one line; a holder that has not written yet is still a holder.
fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.take(1024).read_to_string(&mut text);
    let text = text.lines().next().unwrap_or("").trim().to_string();
    if text.is_empty() {
        "another autoscaler (it has not said who it is yet)".to_string()
    } else {
        text
    }
}

/// Who this process is, for the lock file: `console pid 4242 (ana@box)`.
pub fn describe_holder(role: &str) -> String {
    let user = crate::actuator::current_user();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{role} pid {} ({user}@{host})", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER: PlatformKind = PlatformKind::Docker;

    fn held_by(result: Result<(), LockError>) -> String {
        match result {
            Err(LockError::Held(holder)) => holder,
            other => panic!("expected the lock to be held by another, got {other:?}"),
        }
    }

    #[test]
    fn a_second_autoscaler_is_told_who_holds_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = HostLocks::new(dir.path().to_path_buf(), "daemon pid 1".to_string());
        let mut console = HostLocks::new(dir.path().to_path_buf(), "console pid 2".to_string());

        daemon
            .acquire(DOCKER, "ENGINE:1", "docker engine ENGINE:1")
            .unwrap();
        let holder = held_by(console.acquire(DOCKER, "ENGINE:1", "docker engine ENGINE:1"));

        assert!(holder.starts_with("daemon pid 1 since "), "{holder}");
        assert!(holder.ends_with("for docker engine ENGINE:1"), "{holder}");
        assert!(daemon.holds(DOCKER, "ENGINE:1"));
        assert!(!console.holds(DOCKER, "ENGINE:1"));
    }

    #[test]
    fn the_lock_passes_on_when_its_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = HostLocks::new(dir.path().to_path_buf(), "first".to_string());
        let mut second = HostLocks::new(dir.path().to_path_buf(), "second".to_string());
        first.acquire(DOCKER, "E2", "e2").unwrap();
        held_by(second.acquire(DOCKER, "E2", "e2"));

        drop(first);

        second.acquire(DOCKER, "E2", "e2").unwrap();
        assert!(second.holds(DOCKER, "E2"));
    }

    #[test]
    fn each_engine_has_a_lock_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = HostLocks::new(dir.path().to_path_buf(), "a".to_string());
        let mut b = HostLocks::new(dir.path().to_path_buf(), "b".to_string());
        a.acquire(DOCKER, "E1", "e1").unwrap();
        b.acquire(DOCKER, "E2", "e2").unwrap();
        assert!(a.acquire(DOCKER, "E1", "e1").is_ok(), "held again is fine");
    }

    #[test]
    fn a_docker_engine_keeps_its_file_name_and_a_cluster_is_named_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut locks = HostLocks::new(dir.path().to_path_buf(), "daemon pid 1".to_string());
        locks
            .acquire(DOCKER, "ABCD:EFGH", "docker engine ABCD:EFGH")
            .unwrap();
        locks
            .acquire(
                PlatformKind::Kubernetes,
                "https://10.0.0.1:6443",
                "kubernetes cluster https://10.0.0.1:6443",
            )
            .unwrap();

        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            ["docker-ABCD_EFGH.lock", "k8s-https___10_0_0_1_6443.lock"]
        );
        assert!(locks.holds(PlatformKind::Kubernetes, "https://10.0.0.1:6443"));
        assert!(!locks.holds(DOCKER, "https://10.0.0.1:6443"));
    }

    #[test]
    fn an_engine_and_a_cluster_with_one_key_do_not_share_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = HostLocks::new(dir.path().to_path_buf(), "a".to_string());
        let mut b = HostLocks::new(dir.path().to_path_buf(), "b".to_string());
        a.acquire(DOCKER, "X", "docker engine X").unwrap();
        b.acquire(PlatformKind::Kubernetes, "X", "kubernetes cluster X")
            .unwrap();
    }

    #[test]
    fn a_lock_directory_that_cannot_be_made_is_unusable_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let mut locks = HostLocks::new(blocker.join("locks"), "x".to_string());
        match locks.acquire(DOCKER, "E", "e") {
            Err(LockError::Unusable(why)) => {
                assert!(why.contains("cannot create the lock directory"), "{why}");
                assert!(why.contains("locks"), "{why}");
            }
            other => panic!("expected unusable, got {other:?}"),
        }
    }
}
