//! The sandbox cluster: a Kubernetes API server of Pilothouse's own, on a loopback port.
//!
//! It speaks real Kubernetes JSON over plain HTTP, so the `kube` crate works against it
//! unchanged, and runs controllers that turn Deployments, StatefulSets and ReplicaSets into
//! pods. The Kubernetes platform's tests and `pilothouse demo` run on it. It is not a cluster:
//! nothing runs in its pods, and it keeps everything in memory.

pub mod traffic;

/// What the load simulation and the metrics endpoints read of the cluster.
pub trait ClusterView: Send + Sync {
    /// Every Deployment and StatefulSet, with its ready pods.
    fn workloads(&self) -> Vec<WorkloadView>;
}

/// One workload as the load simulation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadView {
    pub namespace: String,
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    pub name: String,
    /// The workload's `sandbox.pilothouse.dev/traffic` annotation, if any (the traffic
    /// module parses it).
    pub traffic: Option<String>,
    /// Names of its pods that are Ready, sorted.
    pub ready_pods: Vec<String>,
    /// The CPU request of one pod's containers, in millicores (0 when none is set).
    pub cpu_request_millicores: u64,
}

pub mod patch;
pub mod resources;
pub mod selector;
pub mod status;
pub mod store;
