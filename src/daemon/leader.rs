//! Leader election for daemons in a cluster: several daemons take part in one
//! coordination.k8s.io Lease, and only the one holding it lets its rules act; the others stand
//! by and say who leads.
//!
//! Not for deciding who holds the Lease (see [`crate::platform::kubernetes::lease`]).

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::platform::kubernetes::config::Target;
use crate::platform::kubernetes::lease::{Elector, Leadership};

/// How long a Lease holds without renewal, how long a leader keeps acting without renewing,
/// and how often each candidate tries: client-go's defaults.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// A Lease named `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseName {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for LeaseName {
    type Err = String;

    fn from_str(text: &str) -> Result<LeaseName, String> {
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 63
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
                && !part.starts_with(['-', '.'])
                && !part.ends_with(['-', '.'])
        };
        match text.split_once('/') {
            Some((namespace, name)) if valid(namespace) && valid(name) => Ok(LeaseName {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            _ => Err(format!(
                "{text:?} is not NAMESPACE/NAME of a Lease (lowercase letters, digits, `-` and `.`)"
            )),
        }
    }
}

impl std::fmt::Display for LeaseName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A running election: the engine reads `standing`; `stop` releases the Lease if held.
pub struct Election {
    /// `None` while this daemon leads; otherwise who does, or why no one does.
    pub standing: watch::Receiver<Option<String>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// This daemon's name in the Lease: the pod's name where Kubernetes gives it (`POD_NAME`), else
/// the host's, with the process id.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
    format!("{host}-{}", std::process::id())
}

/// Start taking part in the election of `lease` on `target`'s cluster.
pub fn start(target: &Target, lease: &LeaseName, identity: String) -> Result<Election, String> {
    let client = kube::Client::try_from(target.config.clone())
        .map_err(|e| format!("leader election on {}: {e}", target.name))?;
    let mut elector = Elector::new(
        client,
        &lease.namespace,
        &lease.name,
        &identity,
        LEASE_DURATION,
        RENEW_DEADLINE,
        RETRY_PERIOD,
    )
    .map_err(|e| e.to_string())?;
    let (standing_tx, standing) = watch::channel(Some(format!(
        "no one yet: the Lease {lease} has not been read"
    )));
    let (stop, mut stopped) = watch::channel(false);
    let lease = lease.clone();
    let task = tokio::spawn(async move {
        loop {
            let now = match elector.try_acquire_or_renew().await {
                Ok(Leadership::Leader) => None,
                Ok(Leadership::Follower { holder, .. }) if holder.is_empty() => {
                    Some(format!("no one: the Lease {lease} is free"))
                }
                Ok(Leadership::Follower { holder, .. }) => {
                    Some(format!("{holder} (it holds the Lease {lease})"))
                }
                // A leader that cannot renew keeps acting until its renew deadline passes.
                Err(_) if elector.is_leader(Utc::now()) => None,
                Err(e) => Some(format!("no one: the Lease {lease} cannot be read ({e})")),
            };
            let changed = *standing_tx.borrow() != now;
            if changed {
                match &now {
                    None => tracing::info!(lease = %lease, "leading: the rules act"),
                    Some(holder) => tracing::info!(lease = %lease, %holder, "standing by"),
                }
                standing_tx.send_replace(now);
            }
            tokio::select! {
                _ = tokio::time::sleep(elector.retry_period()) => {}
                _ = stopped.changed() => break,
            }
        }
        standing_tx.send_replace(Some("no one: this daemon is stopping".to_string()));
        elector.release().await;
    });
    Ok(Election {
        standing,
        stop,
        task,
    })
}

impl Election {
    /// Stop taking part, giving the Lease up if held, within `grace`.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace, self.task).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_named_namespace_slash_name() {
        let lease: LeaseName = "pilothouse/autoscaler".parse().unwrap();
        assert_eq!(lease.to_string(), "pilothouse/autoscaler");
        for bad in [
            "",
            "autoscaler",
            "/x",
            "x/",
            "a/b/c",
            "Pilothouse/x",
            "-a/b",
            "a b/c",
        ] {
            let err = bad.parse::<LeaseName>().unwrap_err();
            assert!(err.contains("NAMESPACE/NAME"), "{bad}: {err}");
        }
    }
}
