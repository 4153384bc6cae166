//! What the sandbox's one node does with pods: schedules them, starts their containers,
//! makes them Ready after the start-up time, or not (an `unhealthy` tag), or crashes and
//! restarts them with back-off (a `crash` tag), and writes their status and events.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::events::Severity;
use crate::sandbox::Cluster;
use crate::sandbox::logs::{Behaviour, Instance};
use crate::sandbox::resources::PODS;
use crate::sandbox::store::{self, Key};

/// The node every pod runs on.
pub const NODE: &str = "sandbox-node";
/// The longest back-off between two restarts of a crashing container.
const MAX_BACK_OFF: Duration = Duration::from_secs(300);

/// A container's runs so far, as its logs need them.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRuns {
    pub image: String,
    pub behaviour: Behaviour,
    pub instances: Vec<Instance>,
}

#[derive(Debug)]
struct ContainerSim {
    name: String,
    image: String,
    behaviour: Behaviour,
    instances: Vec<Instance>,
    /// When the running instance started, on the monotonic clock.
    running_since: Option<Instant>,
    restarts: u32,
    back_off_until: Option<Instant>,
    last_unhealthy: Option<Instant>,
}

#[derive(Debug)]
struct PodSim {
    uid: String,
    created: Instant,
    scheduled_at: Option<DateTime<Utc>>,
    containers: Vec<ContainerSim>,
    /// The summary of the status last written, to write only changes.
    written: Option<u64>,
}

/// The simulated state of every pod, by namespace and name.
#[derive(Default)]
pub struct PodSims {
    pods: Mutex<HashMap<Key, PodSim>>,
    /// The store's pod membership when the simulations were last matched to the pods.
    matched: Mutex<Option<u64>>,
}

/// How pods behave over time.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From creation to Ready for a healthy pod.
    pub pod_start: Duration,
}

impl Timing {
    fn container_start(&self) -> Duration {
        self.pod_start / 2
    }

    fn crash_after(&self) -> Duration {
        (self.pod_start * 3 / 2).max(Duration::from_millis(500))
    }

    fn back_off(&self, restarts: u32) -> Duration {
        let base = (self.pod_start * 5).max(Duration::from_secs(1));
        let factor = 1u32 << restarts.saturating_sub(1).min(8);
        (base * factor).min(MAX_BACK_OFF)
    }

    fn unhealthy_every(&self) -> Duration {
        self.pod_start.max(Duration::from_secs(1))
    }
}

impl PodSims {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, PodSim>> {
        // The map stays consistent even if a holder panicked.
        self.pods
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A container's runs, for its logs.
    pub fn container(&self, pod: &Key, container: &str) -> Option<ContainerRuns> {
        let pods = self.lock();
        let sim = pods
            .get(pod)?
            .containers
            .iter()
            .find(|c| c.name == container)?;
        Some(ContainerRuns {
            image: sim.image.clone(),
            behaviour: sim.behaviour,
            instances: sim.instances.clone(),
        })
    }
}

/// One pass of the node over every pod.
pub fn tick(cluster: &Cluster, timing: Timing) {
    let now = Instant::now();
    let membership = cluster.store.read(|inner| inner.membership(&PODS));
    let mut matched = cluster
        .pods
        .matched
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if *matched != Some(membership) {
        let present = discover(cluster, now);
        cluster.pods.lock().retain(|key, _| present.contains(key));
        *matched = Some(membership);
    }
    drop(matched);
    let mut writes = Vec::new();
    {
        let mut pods = cluster.pods.lock();
        for (key, sim) in pods.iter_mut() {
            let happened = advance(sim, timing, now);
            let summary = summary(sim, timing, now);
            if Some(summary) != sim.written || !happened.is_empty() {
                sim.written = Some(summary);
                writes.push((key.clone(), status(sim, timing, now), happened));
            }
        }
    }
    for ((namespace, name), status, happened) in writes {
        write_status(cluster, &namespace, &name, status, &happened);
    }
}

/// Adds a simulation for each new pod; returns the keys of every pod.
fn discover(cluster: &Cluster, now: Instant) -> HashSet<Key> {
    let mut fresh = Vec::new();
    let present = cluster.store.read(|inner| {
        let pods = cluster.pods.lock();
        let mut present = HashSet::new();
        for pod in inner.objects(&PODS) {
            let key = (
                store::namespace_of(pod).to_string(),
                store::name_of(pod).to_string(),
            );
            let known = pods
                .get(&key)
                .is_some_and(|sim| sim.uid == store::uid_of(pod));
            if !known {
                fresh.push((key.clone(), new_sim(pod, now)));
            }
            present.insert(key);
        }
        present
    });
    let mut pods = cluster.pods.lock();
    for (key, sim) in fresh {
        pods.insert(key, sim);
    }
    present
}

fn new_sim(pod: &Value, now: Instant) -> PodSim {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let image = c
                .get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            ContainerSim {
                name: c
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                behaviour: Behaviour::of_image(&image),
                image,
                instances: Vec::new(),
                running_since: None,
                restarts: 0,
                back_off_until: None,
                last_unhealthy: None,
            }
        })
        .collect();
    PodSim {
        uid: store::uid_of(pod).to_string(),
        created: now,
        scheduled_at: None,
        containers,
        written: None,
    }
}

/// Something the node did to a pod, for its events.
#[derive(Debug, Clone, PartialEq)]
enum Happening {
    Scheduled,
    Started(String, String),
    Crashed(String),
    Unhealthy(String),
}

/// Moves a pod's containers along its timeline.
fn advance(sim: &mut PodSim, timing: Timing, now: Instant) -> Vec<Happening> {
    let mut happened = Vec::new();
    if sim.scheduled_at.is_none() {
        sim.scheduled_at = Some(Utc::now());
        happened.push(Happening::Scheduled);
    }
    let may_start = now.duration_since(sim.created) >= timing.container_start();
    for container in &mut sim.containers {
        let waiting_done = container.back_off_until.is_none_or(|until| now >= until);
        if container.running_since.is_none() && may_start && waiting_done {
            container.running_since = Some(now);
            container.back_off_until = None;
            container.instances.push(Instance {
                started: Utc::now(),
                finished: None,
            });
            happened.push(Happening::Started(
                container.name.clone(),
                container.image.clone(),
            ));
            continue;
        }
        let Some(since) = container.running_since else {
            continue;
        };
        match container.behaviour {
            Behaviour::Crash if now.duration_since(since) >= timing.crash_after() => {
                container.running_since = None;
                container.restarts += 1;
                container.back_off_until = Some(now + timing.back_off(container.restarts));
                if let Some(instance) = container.instances.last_mut() {
                    instance.finished = Some((Utc::now(), 1));
                }
                happened.push(Happening::Crashed(container.name.clone()));
            }
            Behaviour::Unhealthy if now.duration_since(since) >= timing.container_start() => {
                let due = container
                    .last_unhealthy
                    .is_none_or(|last| now.duration_since(last) >= timing.unhealthy_every());
                if due {
                    container.last_unhealthy = Some(now);
                    happened.push(Happening::Unhealthy(container.name.clone()));
                }
            }
            _ => {}
        }
    }
    happened
}

fn is_ready(container: &ContainerSim, timing: Timing, now: Instant) -> bool {
    container.behaviour == Behaviour::Healthy
        && container.running_since.is_some_and(|since| {
            now.duration_since(since) >= timing.pod_start - timing.container_start()
        })
}

/// A number that changes whenever the status would.
fn summary(sim: &PodSim, timing: Timing, now: Instant) -> u64 {
    sim.containers
        .iter()
        .fold(sim.containers.len() as u64, |hash, c| {
            let state = match (c.running_since, c.back_off_until) {
                (Some(_), _) => 1,
                (None, Some(_)) => 2,
                (None, None) => 3,
            };
            let ready = u64::from(is_ready(c, timing, now));
            let parts = [
                state,
                ready,
                u64::from(c.restarts),
                c.instances.len() as u64,
            ];
            parts
                .iter()
                .fold(hash, |h, p| h.wrapping_mul(0x100_0000_01b3) ^ p)
        })
}

fn status(sim: &PodSim, timing: Timing, now: Instant) -> Value {
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let started = sim.containers.iter().any(|c| !c.instances.is_empty());
    let ready_flags: Vec<bool> = sim
        .containers
        .iter()
        .map(|c| is_ready(c, timing, now))
        .collect();
    let all_ready = !ready_flags.is_empty() && ready_flags.iter().all(|r| *r);
    let scheduled = sim.scheduled_at.map(stamp).unwrap_or_default();
    let statuses: Vec<Value> = sim
        .containers
        .iter()
        .zip(&ready_flags)
        .enumerate()
        .map(|(i, (c, ready))| container_status(sim, i, c, *ready))
        .collect();
    let condition = |kind: &str, ok: bool| {
        json!({"type": kind, "status": if ok { "True" } else { "False" },
               "lastProbeTime": null, "lastTransitionTime": scheduled})
    };
    let mut status = json!({
        "phase": if started { "Running" } else { "Pending" },
        "conditions": [
            condition("PodReadyToStartContainers", started),
            condition("Initialized", true),
            condition("Ready", all_ready),
            condition("ContainersReady", all_ready),
            condition("PodScheduled", true),
        ],
        "hostIP": "10.0.0.1",
        "hostIPs": [{"ip": "10.0.0.1"}],
        "startTime": scheduled,
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    });
    if started {
        let ip = pod_ip(&sim.uid);
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if !all_ready {
        for i in [2, 3] {
            status["conditions"][i]["reason"] = json!("ContainersNotReady");
        }
    }
    status
}

fn container_status(sim: &PodSim, index: usize, c: &ContainerSim, ready: bool) -> Value {
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let state = match (c.running_since, c.instances.last()) {
        (Some(_), Some(instance)) => json!({"running": {"startedAt": stamp(instance.started)}}),
        (None, Some(_)) => json!({"waiting": {
            "reason": "CrashLoopBackOff",
            "message": format!("back-off restarting failed container={} pod={}", c.name, sim.uid),
        }}),
        _ => json!({"waiting": {"reason": "ContainerCreating"}}),
    };
    let finished = c.instances.iter().rev().find(|i| i.finished.is_some());
    let last_state = match finished.and_then(|i| i.finished.map(|f| (i.started, f))) {
        Some((started, (at, code))) => json!({"terminated": {
            "exitCode": code,
            "reason": "Error",
            "startedAt": stamp(started),
            "finishedAt": stamp(at),
            "containerID": format!("sandbox://{}-{index}-{}", sim.uid, c.instances.len() - 1),
        }}),
        None => json!({}),
    };
    json!({
        "name": c.name,
        "image": c.image,
        "imageID": format!("sandbox://{}", c.image),
        "containerID": format!("sandbox://{}-{index}-{}", sim.uid, c.instances.len()),
        "ready": ready,
        "started": c.running_since.is_some(),
        "restartCount": c.restarts,
        "state": state,
        "lastState": last_state,
    })
}

fn pod_ip(uid: &str) -> String {
    let hash = uid
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    format!("10.1.{}.{}", (hash >> 8) % 250 + 1, hash % 250 + 2)
}

fn write_status(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    status: Value,
    happened: &[Happening],
) {
    let written = cluster
        .store
        .update(&PODS, namespace, name, "kubelet", |pod| {
            pod["spec"]["nodeName"] = json!(NODE);
            pod["status"] = status;
        });
    let Ok(pod) = written else { return };
    for happening in happened {
        record(cluster, &pod, happening);
    }
}

fn record(cluster: &Cluster, pod: &Value, happening: &Happening) {
    let (namespace, name) = (store::namespace_of(pod), store::name_of(pod));
    let (severity, reason, message, component) = match happening {
        Happening::Scheduled => (
            Severity::Normal,
            "Scheduled",
            format!("Successfully assigned {namespace}/{name} to {NODE}"),
            "default-scheduler",
        ),
        Happening::Started(container, image) => {
            cluster.events.record(
                &cluster.store,
                pod,
                Severity::Normal,
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
                "kubelet",
            );
            cluster.events.record(
                &cluster.store,
                pod,
                Severity::Normal,
                "Created",
                &format!("Created container: {container}"),
                "kubelet",
            );
            (
                Severity::Normal,
                "Started",
                format!("Started container {container}"),
                "kubelet",
            )
        }
        Happening::Crashed(container) => (
            Severity::Warning,
            "BackOff",
            format!("Back-off restarting failed container {container} in pod {name}_{namespace}"),
            "kubelet",
        ),
        Happening::Unhealthy(_) => (
            Severity::Warning,
            "Unhealthy",
            "Readiness probe failed: HTTP probe failed with statuscode: 503".to_string(),
            "kubelet",
        ),
    };
    cluster
        .events
        .record(&cluster.store, pod, severity, reason, &message, component);
}

/// Whether a stored pod says it is Ready.
pub fn is_pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_five_start_times_up_to_five_minutes() {
        let timing = Timing {
            pod_start: Duration::from_secs(2),
        };
        assert_eq!(timing.back_off(1), Duration::from_secs(10));
        assert_eq!(timing.back_off(2), Duration::from_secs(20));
        assert_eq!(timing.back_off(3), Duration::from_secs(40));
        assert_eq!(timing.back_off(20), MAX_BACK_OFF);
    }
}
