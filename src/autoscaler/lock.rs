//! The lock that keeps two autoscalers off one Docker host: a file per host endpoint in a
//! directory the console and the daemon share, held with an advisory lock (`flock`) for as long
//! as the process runs. The holder writes who it is into the file, so the one that does not hold
//! it can say who does. The operating system lets go of the lock when the holder exits, however
//! it exits, so a crashed holder never leaves a stale lock behind.
//!
//! Not for Kubernetes, where a Lease object plays this part.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};

/// The host locks one autoscaler holds or tries to take.
#[derive(Debug)]
pub struct HostLocks {
    dir: PathBuf,
    /// Who this autoscaler is, as others will read it: `console pid 12 (ana@box)`.
    holder: String,
    /// Held locks by endpoint; the open file keeps the lock.
    held: HashMap<String, File>,
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

    /// Take the lock of the Docker host at `endpoint`, or keep it if held already. When another
    /// process holds it, the error says who (as that process wrote it); when the lock file
    /// cannot be used at all, the error says why and where.
    pub fn acquire(&mut self, endpoint: &str) -> Result<(), String> {
        if self.held.contains_key(endpoint) {
            return Ok(());
        }
        let path = self.path_for(endpoint);
        let mut file = open(&path)?;
        match file.try_lock() {
            Ok(()) => {
                let since = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
                let text = format!("{} since {since} for {endpoint}\n", self.holder);
                write_holder(&mut file, &text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                tracing::info!(endpoint, path = %path.display(), "took the autoscaler lock");
                self.held.insert(endpoint.to_string(), file);
                Ok(())
            }
            Err(TryLockError::WouldBlock) => Err(read_holder(&mut file)),
            Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }

    /// Whether this autoscaler holds the lock of `endpoint`.
    pub fn holds(&self, endpoint: &str) -> bool {
        self.held.contains_key(endpoint)
    }

    fn path_for(&self, endpoint: &str) -> PathBuf {
        self.dir
            .join(format!("docker-{}.lock", file_stem(endpoint)))
    }
}

/// The endpoint as a file name: letters and digits kept, everything else `_`, so that
/// `unix:///var/run/docker.sock` and `tcp://10.0.0.5:2376` each get a file of their own.
fn file_stem(endpoint: &str) -> String {
    endpoint
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn open(path: &Path) -> Result<File, String> {
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
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_string());
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{role} pid {} ({user}@{host})", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_autoscaler_is_told_who_holds_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = HostLocks::new(dir.path().to_path_buf(), "daemon pid 1".to_string());
        let mut console = HostLocks::new(dir.path().to_path_buf(), "console pid 2".to_string());

        daemon.acquire("unix:///var/run/docker.sock").unwrap();
        let err = console.acquire("unix:///var/run/docker.sock").unwrap_err();

        assert!(err.starts_with("daemon pid 1 since "), "{err}");
        assert!(err.ends_with("for unix:///var/run/docker.sock"), "{err}");
        assert!(daemon.holds("unix:///var/run/docker.sock"));
        assert!(!console.holds("unix:///var/run/docker.sock"));
    }

    #[test]
    fn the_lock_passes_on_when_its_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = HostLocks::new(dir.path().to_path_buf(), "first".to_string());
        let mut second = HostLocks::new(dir.path().to_path_buf(), "second".to_string());
        first.acquire("tcp://127.0.0.1:2375").unwrap();
        assert!(second.acquire("tcp://127.0.0.1:2375").is_err());

        drop(first);

        second.acquire("tcp://127.0.0.1:2375").unwrap();
        assert!(second.holds("tcp://127.0.0.1:2375"));
    }

    #[test]
    fn each_host_has_a_lock_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = HostLocks::new(dir.path().to_path_buf(), "a".to_string());
        let mut b = HostLocks::new(dir.path().to_path_buf(), "b".to_string());
        a.acquire("unix:///var/run/docker.sock").unwrap();
        b.acquire("tcp://127.0.0.1:2375").unwrap();
        assert!(
            a.acquire("unix:///var/run/docker.sock").is_ok(),
            "held again is fine"
        );
    }

    #[test]
    fn a_lock_directory_that_cannot_be_made_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let mut locks = HostLocks::new(blocker.join("locks"), "x".to_string());
        let err = locks.acquire("unix:///x").unwrap_err();
        assert!(err.contains("cannot create the lock directory"), "{err}");
        assert!(err.contains("locks"), "{err}");
    }
}
