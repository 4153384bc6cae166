//! The data model every platform produces and every front end reads: targets, workloads,
//! replicas, their stats and events.
//!
//! Not for talking to anything: these are plain values. Platforms build them, the store keeps
//! them, the TUI renders them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Which kind of code speaks to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    Docker,
    Kubernetes,
    Sandbox,
}

impl fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlatformKind::Docker => "docker",
            PlatformKind::Kubernetes => "k8s",
            PlatformKind::Sandbox => "sandbox",
        })
    }
}

/// The connection state of one target, as its worker last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    /// `version` is the engine's own version string, e.g. `20.10.24`.
    Connected {
        version: String,
        api_version: String,
        /// The engine's ID, the same by every address it is reached at.
        engine_id: String,
    },
    /// The last attempt failed; the worker retries after `retry_in_secs`.
    Disconnected {
        error: String,
        retry_in_secs: u64,
    },
}

/// How the replicas of a workload were grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// `com.docker.compose.project` + `.service` labels; name is `PROJECT/SERVICE`.
    Compose,
    /// A `pilothouse.group` label; name is the group.
    Group,
    /// A Swarm service; name is the service name.
    SwarmService,
    /// A container with none of the above; name is the container name.
    Container,
    /// A Kubernetes Deployment; name is `NAMESPACE/NAME`.
    Deployment,
    /// A Kubernetes StatefulSet; name is `NAMESPACE/NAME`.
    StatefulSet,
    /// A Kubernetes pod that no Deployment or StatefulSet owns; name is `NAMESPACE/NAME`.
    Pod,
}

impl WorkloadKind {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            WorkloadKind::Compose => "compose",
            WorkloadKind::Group => "group",
            WorkloadKind::SwarmService => "swarm",
            WorkloadKind::Container => "container",
            WorkloadKind::Deployment => "deploy",
            WorkloadKind::StatefulSet => "sts",
            WorkloadKind::Pod => "pod",
        }
    }

    /// Whether Pilothouse can change the replica count of this kind.
    pub fn scalable(self) -> bool {
        !matches!(self, WorkloadKind::Container | WorkloadKind::Pod)
    }
}

/// Identifies a workload across all targets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct WorkloadId {
    pub target: String,
    pub kind: WorkloadKind,
    pub name: String,
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.target, self.name)
    }
}

/// Health as reported by a Docker HEALTHCHECK (or a probe, later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn label(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// One published port: `host_ip:host_port -> container_port/protocol`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMapping {
    pub container_port: u16,
    pub protocol: String,
    /// `None` when the port is exposed but not published.
    pub host_port: Option<u16>,
    pub host_ip: Option<String>,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_port {
            Some(hp) => write!(f, "{hp}->{}/{}", self.container_port, self.protocol),
            None => write!(f, "{}/{}", self.container_port, self.protocol),
        }
    }
}

/// The security settings of a replica that an operator should see at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Security {
    pub privileged: bool,
    /// Empty means the image default (often root).
    pub user: String,
    /// `None` when the engine did not say; `Some("unconfined")` is risky.
    pub seccomp: Option<String>,
    pub apparmor: Option<String>,
    pub cap_add: Vec<String>,
    pub read_only_rootfs: bool,
    pub network_mode: Option<String>,
    pub pid_mode: Option<String>,
}

/// Capabilities whose addition gives a container power over its host.
const RISKY_CAPS: &[&str] = &[
    "ALL",
    "SYS_ADMIN",
    "NET_ADMIN",
    "SYS_PTRACE",
    "SYS_MODULE",
    "SYS_RAWIO",
    "DAC_READ_SEARCH",
    "BPF",
    "PERFMON",
];

impl Security {
    /// The reasons this replica's settings are risky, one short phrase each; empty if none.
    pub fn risks(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.privileged {
            out.push("privileged".to_string());
        }
        if self.user.is_empty()
            || self.user == "root"
            || self.user == "0"
            || self.user.starts_with("0:")
        {
            out.push("runs as root".to_string());
        }
        if self.seccomp.as_deref() == Some("unconfined") {
            out.push("seccomp unconfined".to_string());
        }
        if self.apparmor.as_deref() == Some("unconfined") {
            out.push("apparmor unconfined".to_string());
        }
        for cap in &self.cap_add {
            let bare = cap.trim_start_matches("CAP_");
            if RISKY_CAPS.contains(&bare) {
                out.push(format!("cap {bare}"));
            }
        }
        if self.network_mode.as_deref() == Some("host") {
            out.push("host network".to_string());
        }
        if self.pid_mode.as_deref() == Some("host") {
            out.push("host pid".to_string());
        }
        out
    }
}

/// Words in an env variable's name that mark its value as a secret.
const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "PASS",
    "TOKEN",
    "SECRET",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "CERT",
    "DSN",
    "SESSION",
    "COOKIE",
];

/// Whether an env variable's value should be masked, judged by its name alone.
pub fn env_name_looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| SECRET_WORDS.contains(&word))
        || SECRET_WORDS
            .iter()
            .filter(|w| w.len() >= 5)
            .any(|w| upper.contains(w))
}

/// The value shown for a masked env variable.
pub const MASK: &str = "••••••";

/// One pod or container of a workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replica {
    /// The engine's id (full container id).
    pub id: String,
    /// Container name without the leading `/`.
    pub name: String,
    pub image: String,
    /// Engine state: `running`, `exited`, `created`, `paused`, `restarting`, `dead`.
    pub state: String,
    /// The engine's one-line status, e.g. `Up 3 hours (healthy)`.
    pub status: String,
    pub health: Option<Health>,
    pub created: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub restart_count: u64,
    pub ports: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    /// `None` until the replica has been inspected.
    pub details: Option<ReplicaDetails>,
    /// The CPU the replica may use; `None` until an inspect has told it.
    pub cpu_limit: Option<CpuLimit>,
    /// The workload, where the platform tells it (a pod's owning Deployment or StatefulSet);
    /// `None` on Docker, whose workloads are read from labels by [`crate::store::workload_of`].
    pub workload: Option<(WorkloadKind, String)>,
}

/// How much CPU a replica may use, as its engine enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuLimit {
    /// A quota in cores (`--cpus 0.5` is 0.5); always above zero.
    Cores(f64),
    /// No quota: the replica may use every core of its host.
    Unlimited,
}

impl CpuLimit {
    /// The cores that count as 100% utilization: the quota, or one core when there is none
    /// (so an unlimited replica's utilization reads as `docker stats` shows it).
    pub fn cores(self) -> f64 {
        match self {
            CpuLimit::Cores(cores) => cores,
            CpuLimit::Unlimited => 1.0,
        }
    }
}

/// What only an inspect tells: env, security, command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaDetails {
    pub env: Vec<(String, String)>,
    pub security: Security,
    pub command: Vec<String>,
}

impl Replica {
    /// Running and not known to be unhealthy or still starting.
    pub fn is_ready(&self) -> bool {
        self.state == "running" && matches!(self.health, None | Some(Health::Healthy))
    }
}

/// A point of live stats for one replica.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct StatsSample {
    /// Percent of one core, as `docker stats` shows (200% = two cores busy).
    pub cpu_percent: f64,
    pub mem_bytes: u64,
    /// 0 when the engine reports no limit.
    pub mem_limit: u64,
    pub net_rx: u64,
    pub net_tx: u64,
}

/// Something that happened on a target, for the detail pane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineEvent {
    pub time: DateTime<Utc>,
    /// The container or service name the event is about.
    pub subject: String,
    /// The engine's action word: `start`, `die`, `health_status: healthy`, ...
    pub action: String,
}

/// A Kubernetes Deployment or StatefulSet as its API server describes it: what the pods alone
/// do not tell (the count asked for, the revision, the rollout's progress, who else scales it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Controller {
    pub kind: WorkloadKind,
    /// `NAMESPACE/NAME`.
    pub name: String,
    /// `spec.replicas`.
    pub desired: u64,
    /// The image of the first container of the pod template.
    pub image: String,
    /// The Deployment's `deployment.kubernetes.io/revision`; a StatefulSet's is `None`.
    pub revision: Option<u64>,
    /// `spec.paused` (Deployments only).
    pub paused: bool,
    /// The rollout as the status conditions tell it, e.g. `progressing` or
    /// `failed: ProgressDeadlineExceeded`; `None` when the workload is at rest.
    pub rollout: Option<String>,
    /// Another autoscaler that scales this workload, e.g. `HorizontalPodAutoscaler payments/checkout`.
    pub scaled_by: Option<String>,
    /// A Deployment's revisions, oldest first, from its ReplicaSets (none for a StatefulSet):
    /// what a rollback's confirmation names.
    pub revisions: Vec<RevisionMark>,
}

/// One revision of a Deployment as its ReplicaSet tells it, in the few words a rollback's
/// confirmation needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionMark {
    /// `deployment.kubernetes.io/revision`.
    pub number: u64,
    /// The image of the template's first container.
    pub image: String,
    /// Why Pilothouse rolled back from it (`pilothouse.dev/rolled-back`), if it did.
    pub rolled_back: Option<String>,
}

impl Controller {
    /// The key a target's controllers are kept under: kind and name.
    pub fn key(&self) -> (WorkloadKind, String) {
        (self.kind, self.name.clone())
    }
}

/// A Swarm service as the manager describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwarmService {
    pub id: String,
    pub name: String,
    pub image: String,
    /// `None` for global services.
    pub desired: Option<u64>,
    pub version: u64,
}
