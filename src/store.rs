//! The store: what the platform workers have reported, kept per target, with the workloads
//! derived from it, short stats series for sparklines, and the CPU utilization of a workload
//! that a `cpu` scaling metric reads.
//!
//! Not for talking to any platform, and not for rendering: workers feed it [`Update`]s, the UI
//! and the autoscaler read it. It holds no locks; its owner applies updates in one place.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};

use crate::model::{
    ConnState, Controller, EngineEvent, Health, PlatformKind, Replica, StatsSample, SwarmService,
    WorkloadId, WorkloadKind,
};
use crate::platform::Update;

/// How many engine events each target keeps for the detail pane.
const EVENTS_KEPT: usize = 200;

/// Label names that group containers into workloads.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
pub const GROUP_LABEL: &str = "pilothouse.group";
pub const SWARM_SERVICE_NAME: &str = "com.docker.swarm.service.name";

/// Everything known about one target.
#[derive(Debug, Clone)]
pub struct TargetState {
    pub name: String,
    pub platform: PlatformKind,
    pub conn: ConnState,
    pub replicas: HashMap<String, Replica>,
    pub services: HashMap<String, SwarmService>,
    /// Kubernetes Deployments and StatefulSets, by kind and name.
    pub controllers: HashMap<(WorkloadKind, String), Controller>,
    /// Newest last.
    pub events: VecDeque<EngineEvent>,
    /// The ids of the replicas of each workload, kept in step with `replicas`, so one changed
    /// replica re-summarizes its workload alone instead of regrouping the whole target.
    members: HashMap<(WorkloadKind, String), HashSet<String>>,
}

/// A workload as the tables show it: its replicas and their aggregate state.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub id: WorkloadId,
    /// Replica ids, in replica-number order (then name).
    pub replicas: Vec<String>,
    pub ready: usize,
    /// Replicas asked for: a Swarm service's count, otherwise the containers that exist.
    pub desired: usize,
    /// The image of the newest replica (or the service's image).
    pub image: String,
    /// A one-word summary: `running`, `partial`, `exited`, `created`, `restarting`...
    pub state: String,
    /// The worst health among replicas that report one.
    pub health: Option<Health>,
    /// The earliest start among running replicas.
    pub started_at: Option<DateTime<Utc>>,
    pub restarts: u64,
    /// Published ports of all replicas, deduplicated, as `host->container/proto`.
    pub ports: Vec<String>,
    /// Sum over replicas of their latest stats; `None` when no replica has reported yet.
    pub stats: Option<StatsSample>,
}

/// The state every front end reads.
#[derive(Debug, Default)]
pub struct Store {
    targets: Vec<TargetState>,
    stats: HashMap<(String, String), VecDeque<StatsSample>>,
    stats_history: usize,
    workloads: Vec<Workload>,
    /// Everything is derived again at the next read (a snapshot, a new list of services or
    /// controllers).
    workloads_stale: bool,
    /// Workloads, by target index, whose replicas, stats or controller changed since the last
    /// read; only these are summarized again (a watch reports pods one at a time).
    changed: HashSet<(usize, (WorkloadKind, String))>,
}

/// What an update changed, so the UI knows how soon to redraw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    None,
    /// Numbers only (stats): a redraw can wait for the next tick.
    Numbers,
    /// Rows, states or connections: redraw at the next frame.
    Structure,
}

impl Store {
    /// A store keeping `stats_history` points per replica.
    pub fn new(stats_history: usize) -> Self {
        Store {
            stats_history: stats_history.max(2),
            ..Store::default()
        }
    }

    /// Register a target before its worker reports, so the header can show it connecting.
    pub fn add_target(&mut self, name: &str, platform: PlatformKind) {
        if self.target(name).is_none() {
            self.targets.push(TargetState {
                name: name.to_string(),
                platform,
                conn: ConnState::Connecting,
                replicas: HashMap::new(),
                services: HashMap::new(),
                controllers: HashMap::new(),
                events: VecDeque::new(),
                members: HashMap::new(),
            });
        }
    }

    pub fn targets(&self) -> &[TargetState] {
        &self.targets
    }

    pub fn target(&self, name: &str) -> Option<&TargetState> {
        self.targets.iter().find(|t| t.name == name)
    }

    fn target_mut(&mut self, name: &str) -> &mut TargetState {
        let i = self.target_index(name);
        &mut self.targets[i]
    }

    /// The index of the target in `targets`, added (as Docker) when it is new. Targets are
    /// never removed, so an index stays valid.
    fn target_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.targets.iter().position(|t| t.name == name) {
            return i;
        }
        self.add_target(name, PlatformKind::Docker);
        self.targets.len() - 1
    }

    /// Apply one update from a worker. Log updates are not the store's and change nothing.
    pub fn apply(&mut self, update: &Update) -> Change {
        match update {
            Update::Connection { target, state } => {
                self.target_mut(target).conn = state.clone();
                Change::Structure
            }
            Update::Snapshot {
                target,
                replicas,
                services,
            } => {
                let t = self.target_mut(target);
                let before = std::mem::take(&mut t.replicas);
                t.replicas = replicas
                    .iter()
                    .map(|r| {
                        (
                            r.id.clone(),
                            with_known_cpu_limit(r.clone(), before.get(&r.id)),
                        )
                    })
                    .collect();
                t.services = services.iter().map(|s| (s.id.clone(), s.clone())).collect();
                t.members = members_of(&t.replicas);
                // Stats of replicas the snapshot no longer has go with them.
                let live: HashSet<&str> = replicas.iter().map(|r| r.id.as_str()).collect();
                self.stats
                    .retain(|(t, id), _| t != target || live.contains(id.as_str()));
                self.workloads_stale = true;
                Change::Structure
            }
            Update::Replica { target, replica } => {
                self.put_replica(target, replica);
                Change::Structure
            }
            Update::ReplicaRemoved { target, id } => {
                self.remove_replica(target, id);
                self.stats.remove(&(target.clone(), id.clone()));
                Change::Structure
            }
            Update::Service { target, service } => {
                let t = self.target_mut(target);
                t.services.insert(service.id.clone(), service.clone());
                self.workloads_stale = true;
                Change::Structure
            }
            Update::ServiceRemoved { target, id } => {
                self.target_mut(target).services.remove(id);
                self.workloads_stale = true;
                Change::Structure
            }
            Update::Controllers {
                target,
                controllers,
            } => {
                self.target_mut(target).controllers =
                    controllers.iter().map(|c| (c.key(), c.clone())).collect();
                self.workloads_stale = true;
                Change::Structure
            }
            Update::Controller { target, controller } => {
                let i = self.target_index(target);
                self.targets[i]
                    .controllers
                    .insert(controller.key(), controller.clone());
                self.changed.insert((i, controller.key()));
                Change::Structure
            }
            Update::ControllerRemoved { target, kind, name } => {
                let i = self.target_index(target);
                let key = (*kind, name.clone());
                self.targets[i].controllers.remove(&key);
                self.changed.insert((i, key));
                Change::Structure
            }
            Update::Stats { target, id, sample } => self.record_stats(target, id, *sample),
            Update::Event { target, event } => {
                let events = &mut self.target_mut(target).events;
                if events.len() == EVENTS_KEPT {
                    events.pop_front();
                }
                events.push_back(event.clone());
                Change::Structure
            }
            Update::Logs { .. } | Update::LogsEnded { .. } | Update::LogsPaused { .. } => {
                Change::None
            }
        }
    }

    /// A replica appeared or changed: it joins the workload it names now, leaving the one it
    /// named before if that differs, and both are summarized again at the next read.
    fn put_replica(&mut self, target: &str, replica: &Replica) {
        let i = self.target_index(target);
        let t = &mut self.targets[i];
        let key = workload_of(replica);
        let replica = with_known_cpu_limit(replica.clone(), t.replicas.get(&replica.id));
        let id = replica.id.clone();
        if let Some(old) = t.replicas.insert(id.clone(), replica) {
            let old_key = workload_of(&old);
            if old_key != key {
                leave(&mut t.members, &old_key, &id);
                self.changed.insert((i, old_key));
            }
        }
        t.members.entry(key.clone()).or_default().insert(id);
        self.changed.insert((i, key));
    }

    fn remove_replica(&mut self, target: &str, id: &str) {
        let i = self.target_index(target);
        let t = &mut self.targets[i];
        if let Some(old) = t.replicas.remove(id) {
            let key = workload_of(&old);
            leave(&mut t.members, &key, id);
            self.changed.insert((i, key));
        }
    }

    fn record_stats(&mut self, target: &str, id: &str, sample: StatsSample) -> Change {
        let Some(i) = self.targets.iter().position(|t| t.name == target) else {
            return Change::None;
        };
        let Some(replica) = self.targets[i].replicas.get(id) else {
            return Change::None;
        };
        self.changed.insert((i, workload_of(replica)));
        let series = self
            .stats
            .entry((target.to_string(), id.to_string()))
            .or_default();
        if series.len() == self.stats_history {
            series.pop_front();
        }
        series.push_back(sample);
        Change::Numbers
    }

    /// The stats series of one replica, oldest first.
    pub fn replica_stats(&self, target: &str, id: &str) -> Option<&VecDeque<StatsSample>> {
        self.stats.get(&(target.to_string(), id.to_string()))
    }

    /// The summed stats series of a workload's replicas, aligned on their newest points.
    pub fn workload_series(&self, workload: &Workload) -> Vec<StatsSample> {
        let mut out: Vec<StatsSample> = Vec::new();
        for id in &workload.replicas {
            let Some(series) = self.replica_stats(&workload.id.target, id) else {
                continue;
            };
            if series.len() > out.len() {
                let missing = series.len() - out.len();
                out.splice(0..0, std::iter::repeat_n(StatsSample::default(), missing));
            }
            let offset = out.len() - series.len();
            for (slot, s) in out[offset..].iter_mut().zip(series) {
                add_sample(slot, s);
            }
        }
        out
    }

    /// The average CPU utilization of the workload's running replicas, each the latest
    /// `cpu_percent` of its stats as a percent of its CPU limit (of one core where it has
    /// none): 35% of one core under `--cpus 0.5` is 70.
    ///
    /// An error, never a zero, when there is no running replica or a running one has not
    /// reported stats or its limit yet; it names every such replica and what it lacks.
    pub fn cpu_utilization(&self, workload: &Workload) -> Result<f64, String> {
        let target = &workload.id.target;
        let running: Vec<&Replica> = workload
            .replicas
            .iter()
            .filter_map(|id| self.replica(target, id))
            .filter(|r| r.state == "running")
            .collect();
        if running.is_empty() {
            return Err(format!("{} has no running replica", workload.id.name));
        }
        let mut total = 0.0;
        let mut unknown = Vec::new();
        for replica in &running {
            match self.replica_cpu_utilization(target, replica) {
                Ok(utilization) => total += utilization,
                Err(why) => unknown.push(why),
            }
        }
        if !unknown.is_empty() {
            return Err(unknown.join("; "));
        }
        Ok(total / running.len() as f64)
    }

    /// One replica's latest CPU use as a percent of its limit, or what is missing to tell it.
    fn replica_cpu_utilization(&self, target: &str, replica: &Replica) -> Result<f64, String> {
        let sample = self
            .replica_stats(target, &replica.id)
            .and_then(|series| series.back())
            .ok_or_else(|| format!("{} has reported no CPU stats yet", replica.name))?;
        let limit = replica.cpu_limit.ok_or_else(|| {
            format!(
                "the CPU limit of {} is not known yet (it has not been inspected)",
                replica.name
            )
        })?;
        let cores = limit.cores();
        if !(cores.is_finite() && cores > 0.0) {
            return Err(format!("{} has a CPU limit of {cores} cores", replica.name));
        }
        Ok(sample.cpu_percent / cores)
    }

    /// The replica with this id on this target.
    pub fn replica(&self, target: &str, id: &str) -> Option<&Replica> {
        self.target(target)?.replicas.get(id)
    }

    /// The workloads of every target, ordered by target, then kind, then name. After a
    /// snapshot everything is derived again; after single replicas, stats or controllers
    /// changed only their workloads are, so calling it once per frame is cheap.
    pub fn workloads(&mut self) -> &[Workload] {
        if self.workloads_stale {
            self.workloads = self.derive_workloads();
            self.workloads_stale = false;
            self.changed.clear();
        } else if !self.changed.is_empty() {
            self.refresh_changed();
        }
        &self.workloads
    }

    fn derive_workloads(&self) -> Vec<Workload> {
        let mut out = Vec::new();
        for t in &self.targets {
            let mut keys: BTreeSet<(WorkloadKind, String)> = t.members.keys().cloned().collect();
            keys.extend(
                t.services
                    .values()
                    .map(|s| (WorkloadKind::SwarmService, s.name.clone())),
            );
            keys.extend(t.controllers.keys().cloned());
            out.extend(keys.iter().filter_map(|key| self.summarize_key(t, key)));
        }
        out
    }

    /// Summarize again the workloads in `changed`, in place; the few that appeared or went
    /// away are merged into the ordered list in one pass.
    fn refresh_changed(&mut self) {
        let changed = std::mem::take(&mut self.changed);
        let fresh: Vec<(usize, (WorkloadKind, String), Option<Workload>)> = changed
            .into_iter()
            .map(|(i, key)| {
                let w = self
                    .targets
                    .get(i)
                    .and_then(|t| self.summarize_key(t, &key));
                (i, key, w)
            })
            .collect();
        let mut added = Vec::new();
        let mut gone = HashSet::new();
        for (i, (kind, name), w) in fresh {
            let at = self
                .workloads
                .binary_search_by(|x| order_key(&self.targets, x).cmp(&(i, kind, name.as_str())));
            match (at, w) {
                (Ok(at), Some(w)) => self.workloads[at] = w,
                (Ok(at), None) => {
                    gone.insert(at);
                }
                (Err(_), Some(w)) => added.push(w),
                (Err(_), None) => {}
            }
        }
        if gone.is_empty() && added.is_empty() {
            return;
        }
        let mut at = 0;
        self.workloads.retain(|_| {
            at += 1;
            !gone.contains(&(at - 1))
        });
        self.workloads.extend(added);
        let targets = &self.targets;
        self.workloads
            .sort_by(|a, b| order_key(targets, a).cmp(&order_key(targets, b)));
    }

    /// The workload `key` of target `t`, or `None` when it has no replica, service or
    /// controller left.
    fn summarize_key(&self, t: &TargetState, key: &(WorkloadKind, String)) -> Option<Workload> {
        let (kind, name) = key;
        let replicas: Vec<&Replica> = t
            .members
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| t.replicas.get(id))
            .collect();
        let service = if *kind == WorkloadKind::SwarmService {
            t.services.values().find(|s| s.name == *name)
        } else {
            None
        };
        let controller = t.controllers.get(key);
        if replicas.is_empty() && service.is_none() && controller.is_none() {
            return None;
        }
        let id = WorkloadId {
            target: t.name.clone(),
            kind: *kind,
            name: name.clone(),
        };
        Some(self.summarize(id, replicas, service, controller))
    }

    fn summarize(
        &self,
        id: WorkloadId,
        replicas: Vec<&Replica>,
        service: Option<&SwarmService>,
        controller: Option<&Controller>,
    ) -> Workload {
        // Each replica's number is read from its labels once, not at every comparison.
        let mut numbered: Vec<(u64, &Replica)> = replicas
            .into_iter()
            .map(|r| (replica_number(r), r))
            .collect();
        numbered.sort_by(|(na, a), (nb, b)| na.cmp(nb).then_with(|| a.name.cmp(&b.name)));
        let replicas: Vec<&Replica> = numbered.into_iter().map(|(_, r)| r).collect();
        let ready = replicas.iter().filter(|r| r.is_ready()).count();
        let desired = match service
            .and_then(|s| s.desired)
            .or(controller.map(|c| c.desired))
        {
            Some(n) => n as usize,
            None => replicas.len(),
        };
        let newest = replicas.iter().max_by_key(|r| r.created);
        let image = service
            .map(|s| s.image.clone())
            .or_else(|| controller.map(|c| c.image.clone()))
            .or_else(|| newest.map(|r| r.image.clone()))
            .unwrap_or_default();
        let mut ports: Vec<String> = replicas
            .iter()
            .flat_map(|r| r.ports.iter().filter(|p| p.host_port.is_some()))
            .map(|p| p.to_string())
            .collect();
        ports.sort();
        ports.dedup();
        let stats = self.latest_sum(&id.target, &replicas);
        Workload {
            state: summarize_state(&replicas),
            health: worst_health(&replicas),
            started_at: replicas
                .iter()
                .filter(|r| r.state == "running")
                .filter_map(|r| r.started_at)
                .min(),
            restarts: replicas.iter().map(|r| r.restart_count).sum(),
            replicas: replicas.iter().map(|r| r.id.clone()).collect(),
            ready,
            desired,
            image,
            ports,
            stats,
            id,
        }
    }

    fn latest_sum(&self, target: &str, replicas: &[&Replica]) -> Option<StatsSample> {
        let mut sum: Option<StatsSample> = None;
        for r in replicas {
            if r.state != "running" {
                continue;
            }
            if let Some(s) = self.replica_stats(target, &r.id).and_then(|s| s.back()) {
                add_sample(sum.get_or_insert_with(StatsSample::default), s);
            }
        }
        sum
    }
}

/// A replica from the container list knows no CPU limit (only an inspect tells it), so the one
/// an earlier inspect of the same container gave is kept. It cannot go stale unseen: changing
/// a container's limit (`docker update`) emits an event after which it is inspected again, and
/// a new snapshot is followed by an inspect of every container.
fn with_known_cpu_limit(mut replica: Replica, before: Option<&Replica>) -> Replica {
    if replica.cpu_limit.is_none() {
        replica.cpu_limit = before.and_then(|b| b.cpu_limit);
    }
    replica
}

/// Where a workload sits in the store's list: its target's place, then kind and name.
fn order_key<'a>(targets: &[TargetState], w: &'a Workload) -> (usize, WorkloadKind, &'a str) {
    let target = targets
        .iter()
        .position(|t| t.name == w.id.target)
        .unwrap_or(usize::MAX);
    (target, w.id.kind, w.id.name.as_str())
}

/// The replica ids of each workload among `replicas`.
fn members_of(
    replicas: &HashMap<String, Replica>,
) -> HashMap<(WorkloadKind, String), HashSet<String>> {
    let mut members: HashMap<(WorkloadKind, String), HashSet<String>> = HashMap::new();
    for (id, r) in replicas {
        members
            .entry(workload_of(r))
            .or_default()
            .insert(id.clone());
    }
    members
}

/// Take replica `id` out of workload `key`, forgetting the workload once it has none.
fn leave(
    members: &mut HashMap<(WorkloadKind, String), HashSet<String>>,
    key: &(WorkloadKind, String),
    id: &str,
) {
    if let Some(ids) = members.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            members.remove(key);
        }
    }
}

fn add_sample(into: &mut StatsSample, s: &StatsSample) {
    into.cpu_percent += s.cpu_percent;
    into.mem_bytes += s.mem_bytes;
    into.mem_limit += s.mem_limit;
    into.net_rx += s.net_rx;
    into.net_tx += s.net_tx;
}

/// The workload a replica belongs to: the one its platform named, else (a container) its Swarm
/// service, Compose service, group, or itself.
pub fn workload_of(r: &Replica) -> (WorkloadKind, String) {
    if let Some(workload) = &r.workload {
        return workload.clone();
    }
    let label = |k: &str| r.labels.get(k).filter(|v| !v.is_empty());
    if let Some(service) = label(SWARM_SERVICE_NAME) {
        return (WorkloadKind::SwarmService, service.clone());
    }
    if let (Some(project), Some(service)) = (label(COMPOSE_PROJECT), label(COMPOSE_SERVICE)) {
        return (WorkloadKind::Compose, format!("{project}/{service}"));
    }
    if let Some(group) = label(GROUP_LABEL) {
        return (WorkloadKind::Group, group.clone());
    }
    (WorkloadKind::Container, r.name.clone())
}

/// The replica's number within its workload (Compose or group label), if it has one.
pub fn replica_number(r: &Replica) -> u64 {
    [
        "com.docker.compose.container-number",
        "pilothouse.group.number",
    ]
    .iter()
    .find_map(|k| r.labels.get(*k).and_then(|v| v.parse().ok()))
    .unwrap_or(u64::MAX)
}

fn summarize_state(replicas: &[&Replica]) -> String {
    let Some(first) = replicas.first() else {
        return "pending".to_string();
    };
    if replicas.iter().all(|r| r.state == first.state) {
        return first.state.clone();
    }
    if replicas.iter().any(|r| r.state == "running") {
        return "partial".to_string();
    }
    "mixed".to_string()
}

fn worst_health(replicas: &[&Replica]) -> Option<Health> {
    let rank = |h: Health| match h {
        Health::Healthy => 0,
        Health::Starting => 1,
        Health::Unhealthy => 2,
    };
    replicas
        .iter()
        .filter_map(|r| r.health)
        .max_by_key(|h| rank(*h))
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A running replica with these labels, for tests across modules.
    pub(crate) fn replica(id: &str, name: &str, labels: &[(&str, &str)]) -> Replica {
        Replica {
            id: id.to_string(),
            name: name.to_string(),
            image: "img:1".to_string(),
            state: "running".to_string(),
            status: "Up".to_string(),
            health: None,
            created: None,
            started_at: None,
            restart_count: 0,
            ports: Vec::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            details: None,
            cpu_limit: None,
            workload: None,
        }
    }

    /// A store with target `local` connected and one running replica `g-1` of group `g`.
    pub(crate) fn one_group() -> Store {
        let mut store = Store::new(10);
        store.add_target("local", PlatformKind::Docker);
        store.apply(&Update::Connection {
            target: "local".to_string(),
            state: ConnState::Connected {
                version: "20.10".to_string(),
                api_version: "1.41".to_string(),
                engine_id: "TEST:ENGINE".to_string(),
            },
        });
        store.apply(&Update::Snapshot {
            target: "local".to_string(),
            replicas: vec![replica("c1", "g-1", &[(GROUP_LABEL, "g")])],
            services: Vec::new(),
        });
        store
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::replica;
    use super::*;
    use crate::model::CpuLimit;

    fn snapshot(replicas: Vec<Replica>) -> Update {
        Update::Snapshot {
            target: "local".to_string(),
            replicas,
            services: Vec::new(),
        }
    }

    #[test]
    fn containers_group_by_compose_labels_then_group_label_then_alone() {
        let mut store = Store::new(10);
        store.apply(&snapshot(vec![
            replica(
                "a",
                "shop-web-1",
                &[(COMPOSE_PROJECT, "shop"), (COMPOSE_SERVICE, "web")],
            ),
            replica(
                "b",
                "shop-web-2",
                &[(COMPOSE_PROJECT, "shop"), (COMPOSE_SERVICE, "web")],
            ),
            replica("c", "batch-1", &[(GROUP_LABEL, "batch")]),
            replica("d", "lonely", &[]),
        ]));
        let names: Vec<(WorkloadKind, String, usize)> = store
            .workloads()
            .iter()
            .map(|w| (w.id.kind, w.id.name.clone(), w.replicas.len()))
            .collect();
        assert_eq!(
            names,
            vec![
                (WorkloadKind::Compose, "shop/web".to_string(), 2),
                (WorkloadKind::Group, "batch".to_string(), 1),
                (WorkloadKind::Container, "lonely".to_string(), 1),
            ]
        );
    }

    fn deployment(name: &str, desired: u64) -> Controller {
        Controller {
            kind: WorkloadKind::Deployment,
            name: name.to_string(),
            desired,
            image: "web:2".to_string(),
            revision: Some(2),
            paused: false,
            rollout: None,
            scaled_by: None,
            revisions: Vec::new(),
        }
    }

    #[test]
    fn pods_group_by_the_workload_their_platform_names_and_count_against_its_spec() {
        let mut store = Store::new(10);
        store.add_target("prod", PlatformKind::Kubernetes);
        let mut pod = replica("uid-1", "web-7d9-abc", &[(GROUP_LABEL, "ignored")]);
        pod.workload = Some((WorkloadKind::Deployment, "shop/web".to_string()));
        store.apply(&Update::Snapshot {
            target: "prod".to_string(),
            replicas: vec![pod],
            services: Vec::new(),
        });
        store.apply(&Update::Controllers {
            target: "prod".to_string(),
            controllers: vec![deployment("shop/web", 3), deployment("shop/idle", 0)],
        });
        let seen: Vec<(WorkloadKind, String, usize, usize, String)> = store
            .workloads()
            .iter()
            .map(|w| {
                let id = &w.id;
                (
                    id.kind,
                    id.name.clone(),
                    w.replicas.len(),
                    w.desired,
                    w.image.clone(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    WorkloadKind::Deployment,
                    "shop/idle".into(),
                    0,
                    0,
                    "web:2".into()
                ),
                (
                    WorkloadKind::Deployment,
                    "shop/web".into(),
                    1,
                    3,
                    "web:2".into()
                ),
            ]
        );
        store.apply(&Update::ControllerRemoved {
            target: "prod".to_string(),
            kind: WorkloadKind::Deployment,
            name: "shop/idle".to_string(),
        });
        let names: Vec<&str> = store
            .workloads()
            .iter()
            .map(|w| w.id.name.as_str())
            .collect();
        assert_eq!(names, vec!["shop/web"]);
    }

    #[test]
    fn workloads_kept_up_one_change_at_a_time_equal_those_derived_from_scratch() {
        let pod = |id: &str, kind: WorkloadKind, workload: &str| {
            let mut p = replica(id, id, &[]);
            p.workload = Some((kind, workload.to_string()));
            p
        };
        let prod = |update: fn(String) -> Update| update("prod".to_string());
        // Targets keep the order they were added in: prod first, then local.
        let mut store = Store::new(5);
        store.add_target("prod", PlatformKind::Kubernetes);
        store.apply(&snapshot(vec![replica("x", "g-1", &[(GROUP_LABEL, "g")])]));
        store.apply(&Update::Snapshot {
            target: "prod".to_string(),
            replicas: vec![
                pod("a", WorkloadKind::Deployment, "shop/web"),
                pod("b", WorkloadKind::Deployment, "shop/web"),
                pod("c", WorkloadKind::Pod, "shop/c"),
            ],
            services: Vec::new(),
        });
        store.workloads();
        let mut exited = pod("a", WorkloadKind::Deployment, "shop/web");
        exited.state = "exited".to_string();
        let changes = vec![
            Update::Replica {
                target: "prod".to_string(),
                replica: pod("b", WorkloadKind::Deployment, "shop/api"),
            },
            Update::Replica {
                target: "prod".to_string(),
                replica: pod("d", WorkloadKind::Pod, "shop/d"),
            },
            prod(|target| Update::ReplicaRemoved {
                target,
                id: "c".to_string(),
            }),
            prod(|target| Update::Stats {
                target,
                id: "a".to_string(),
                sample: StatsSample {
                    cpu_percent: 12.0,
                    ..StatsSample::default()
                },
            }),
            Update::Replica {
                target: "prod".to_string(),
                replica: exited,
            },
            prod(|target| Update::Controller {
                target,
                controller: deployment("shop/idle", 0),
            }),
            prod(|target| Update::Controller {
                target,
                controller: deployment("shop/web", 3),
            }),
            prod(|target| Update::ControllerRemoved {
                target,
                kind: WorkloadKind::Deployment,
                name: "shop/idle".to_string(),
            }),
            Update::Replica {
                target: "local".to_string(),
                replica: replica("y", "g-2", &[(GROUP_LABEL, "g")]),
            },
        ];
        for (n, change) in changes.iter().enumerate() {
            store.apply(change);
            let kept = store.workloads().to_vec();
            assert_eq!(
                kept,
                store.derive_workloads(),
                "after change {n}: {change:?}"
            );
        }
        let seen: Vec<(&str, &str, usize, usize, &str)> = store
            .workloads()
            .iter()
            .map(|w| {
                let id = &w.id;
                (
                    id.target.as_str(),
                    id.name.as_str(),
                    w.replicas.len(),
                    w.desired,
                    w.state.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("prod", "shop/api", 1, 1, "running"),
                ("prod", "shop/web", 1, 3, "exited"),
                ("prod", "shop/d", 1, 1, "running"),
                ("local", "g", 2, 2, "running"),
            ]
        );
    }

    #[test]
    fn ready_counts_only_running_replicas_that_are_not_unhealthy() {
        let labels = [(GROUP_LABEL, "g")];
        let mut sick = replica("b", "g-2", &labels);
        sick.health = Some(Health::Unhealthy);
        let mut stopped = replica("c", "g-3", &labels);
        stopped.state = "exited".to_string();
        let mut store = Store::new(10);
        store.apply(&snapshot(vec![replica("a", "g-1", &labels), sick, stopped]));
        let w = &store.workloads()[0];
        assert_eq!((w.ready, w.desired), (1, 3));
        assert_eq!(w.state, "partial");
        assert_eq!(w.health, Some(Health::Unhealthy));
    }

    #[test]
    fn workload_stats_sum_the_latest_point_of_each_running_replica() {
        let labels = [(GROUP_LABEL, "g")];
        let mut store = Store::new(10);
        store.apply(&snapshot(vec![
            replica("a", "g-1", &labels),
            replica("b", "g-2", &labels),
        ]));
        for (id, cpu) in [("a", 10.0), ("a", 30.0), ("b", 5.0)] {
            let change = store.apply(&Update::Stats {
                target: "local".to_string(),
                id: id.to_string(),
                sample: StatsSample {
                    cpu_percent: cpu,
                    mem_bytes: 100,
                    ..StatsSample::default()
                },
            });
            assert_eq!(change, Change::Numbers);
        }
        let w = store.workloads()[0].clone();
        let stats = w.stats.unwrap_or_default();
        assert_eq!((stats.cpu_percent, stats.mem_bytes), (35.0, 200));
        let series: Vec<f64> = store
            .workload_series(&w)
            .iter()
            .map(|s| s.cpu_percent)
            .collect();
        assert_eq!(series, vec![10.0, 35.0]);
    }

    #[test]
    fn stats_for_an_unknown_replica_are_ignored_and_history_is_capped() {
        let mut store = Store::new(3);
        store.apply(&snapshot(vec![replica("a", "x", &[])]));
        let stats = |id: &str| Update::Stats {
            target: "local".to_string(),
            id: id.to_string(),
            sample: StatsSample::default(),
        };
        assert_eq!(store.apply(&stats("ghost")), Change::None);
        for _ in 0..10 {
            store.apply(&stats("a"));
        }
        assert_eq!(store.replica_stats("local", "a").map(|s| s.len()), Some(3));
    }

    #[test]
    fn removing_a_replica_drops_it_from_its_workload_and_its_stats() {
        let labels = [(GROUP_LABEL, "g")];
        let mut store = Store::new(5);
        store.apply(&snapshot(vec![
            replica("a", "g-1", &labels),
            replica("b", "g-2", &labels),
        ]));
        store.apply(&Update::Stats {
            target: "local".to_string(),
            id: "b".to_string(),
            sample: StatsSample::default(),
        });
        store.apply(&Update::ReplicaRemoved {
            target: "local".to_string(),
            id: "b".to_string(),
        });
        assert_eq!(store.workloads()[0].replicas, vec!["a".to_string()]);
        assert!(store.replica_stats("local", "b").is_none());
    }

    #[test]
    fn replicas_are_ordered_by_their_number_label() {
        let mk = |id: &str, n: &str| {
            replica(
                id,
                id,
                &[(GROUP_LABEL, "g"), ("pilothouse.group.number", n)],
            )
        };
        let mut store = Store::new(5);
        store.apply(&snapshot(vec![mk("c", "10"), mk("a", "2"), mk("b", "1")]));
        assert_eq!(store.workloads()[0].replicas, vec!["b", "a", "c"]);
    }

    /// One replica of group `g` for a CPU case: its number, state, limit and CPU samples.
    struct CpuReplica {
        number: u32,
        state: &'static str,
        limit: Option<CpuLimit>,
        samples: &'static [f64],
    }

    fn running(number: u32, limit: Option<CpuLimit>, samples: &'static [f64]) -> CpuReplica {
        CpuReplica {
            number,
            state: "running",
            limit,
            samples,
        }
    }

    /// The CPU utilization of group `g` in a store holding these replicas and samples.
    fn utilization_of(replicas: &[CpuReplica]) -> Result<f64, String> {
        let mut store = Store::new(10);
        let built = replicas
            .iter()
            .map(|c| {
                let n = c.number.to_string();
                let name = format!("g-{n}");
                let labels = [(GROUP_LABEL, "g"), ("pilothouse.group.number", n.as_str())];
                let mut r = replica(&name, &name, &labels);
                r.state = c.state.to_string();
                r.cpu_limit = c.limit;
                r
            })
            .collect();
        store.apply(&snapshot(built));
        for c in replicas {
            for cpu in c.samples {
                store.apply(&Update::Stats {
                    target: "local".to_string(),
                    id: format!("g-{}", c.number),
                    sample: StatsSample {
                        cpu_percent: *cpu,
                        ..StatsSample::default()
                    },
                });
            }
        }
        let workload = store.workloads()[0].clone();
        store.cpu_utilization(&workload)
    }

    #[test]
    fn cpu_utilization_is_the_average_percent_of_each_running_replicas_limit() {
        let half = Some(CpuLimit::Cores(0.5));
        let none = Some(CpuLimit::Unlimited);
        let two = Some(CpuLimit::Cores(2.0));
        let cases: Vec<(&str, Vec<CpuReplica>, f64)> = vec![
            // 35% of one core / 0.5 core = 70% of the limit
            ("half a core", vec![running(1, half, &[35.0])], 70.0),
            // no limit: 35% of one core is 35%
            ("no limit", vec![running(1, none, &[35.0])], 35.0),
            // 150% of one core (1.5 cores busy) with no limit reads as docker stats shows it
            ("no limit, busy", vec![running(1, none, &[150.0])], 150.0),
            // (35 / 0.5 = 70) + (50 / 1 = 50) + (180 / 2 = 90) = 210; 210 / 3 = 70
            (
                "mixed limits",
                vec![
                    running(1, half, &[35.0]),
                    running(2, none, &[50.0]),
                    running(3, two, &[180.0]),
                ],
                70.0,
            ),
            // only the newest sample counts: 35 / 0.5 = 70, not (10 + 35) / 2 / 0.5
            ("latest sample", vec![running(1, half, &[10.0, 35.0])], 70.0),
            // a stopped replica with neither stats nor a limit is left out: 35 / 0.5 = 70
            (
                "stopped left out",
                vec![
                    running(1, half, &[35.0]),
                    CpuReplica {
                        number: 2,
                        state: "exited",
                        limit: None,
                        samples: &[],
                    },
                ],
                70.0,
            ),
            // an idle replica is a measured zero, not a missing value
            ("idle", vec![running(1, half, &[0.0])], 0.0),
        ];
        for (case, replicas, want) in cases {
            let got = utilization_of(&replicas);
            assert!(
                got.as_ref().is_ok_and(|u| (u - want).abs() < 1e-9),
                "{case}: want {want}, got {got:?}"
            );
        }
    }

    #[test]
    fn cpu_utilization_is_an_error_naming_each_replica_it_cannot_measure() {
        let half = Some(CpuLimit::Cores(0.5));
        let stopped = |number| CpuReplica {
            number,
            state: "exited",
            limit: half,
            samples: &[20.0],
        };
        let cases: Vec<(&str, Vec<CpuReplica>, &str)> = vec![
            (
                "nothing running",
                vec![stopped(1), stopped(2)],
                "g has no running replica",
            ),
            (
                "no stats yet",
                vec![running(1, half, &[35.0]), running(2, half, &[])],
                "g-2 has reported no CPU stats yet",
            ),
            (
                "limit unknown",
                vec![running(1, None, &[35.0])],
                "the CPU limit of g-1 is not known yet (it has not been inspected)",
            ),
            (
                "both, in replica order",
                vec![running(1, half, &[]), running(2, None, &[35.0])],
                "g-1 has reported no CPU stats yet; \
                 the CPU limit of g-2 is not known yet (it has not been inspected)",
            ),
            (
                "a zero quota",
                vec![running(1, Some(CpuLimit::Cores(0.0)), &[35.0])],
                "g-1 has a CPU limit of 0 cores",
            ),
        ];
        for (case, replicas, want) in cases {
            assert_eq!(utilization_of(&replicas), Err(want.to_string()), "{case}");
        }
    }

    #[test]
    fn a_snapshot_or_listed_replica_keeps_the_cpu_limit_an_inspect_gave() {
        let labels = [(GROUP_LABEL, "g")];
        let listed = replica("a", "g-1", &labels);
        let mut inspected = listed.clone();
        inspected.cpu_limit = Some(CpuLimit::Cores(0.5));
        let mut store = Store::new(5);
        store.apply(&snapshot(vec![listed.clone()]));
        store.apply(&Update::Replica {
            target: "local".to_string(),
            replica: inspected.clone(),
        });

        store.apply(&snapshot(vec![listed.clone()]));
        let limit = |store: &Store| store.replica("local", "a").and_then(|r| r.cpu_limit);
        assert_eq!(
            limit(&store),
            Some(CpuLimit::Cores(0.5)),
            "after a snapshot"
        );
        store.apply(&Update::Replica {
            target: "local".to_string(),
            replica: listed,
        });
        assert_eq!(
            limit(&store),
            Some(CpuLimit::Cores(0.5)),
            "after a listed update"
        );

        // `docker update --cpus 2` is seen through a fresh inspect, which replaces the limit.
        inspected.cpu_limit = Some(CpuLimit::Cores(2.0));
        store.apply(&Update::Replica {
            target: "local".to_string(),
            replica: inspected,
        });
        assert_eq!(
            limit(&store),
            Some(CpuLimit::Cores(2.0)),
            "after a new inspect"
        );

        // A container removed and recreated has a new id, so nothing carries over to it.
        store.apply(&snapshot(vec![replica("b", "g-1", &labels)]));
        assert_eq!(store.replica("local", "b").and_then(|r| r.cpu_limit), None);
    }

    #[test]
    fn a_swarm_service_is_one_workload_with_the_services_desired_count() {
        let mut store = Store::new(5);
        store.apply(&Update::Snapshot {
            target: "local".to_string(),
            replicas: vec![replica("a", "api.1.xyz", &[(SWARM_SERVICE_NAME, "api")])],
            services: vec![SwarmService {
                id: "s1".to_string(),
                name: "api".to_string(),
                image: "api:2".to_string(),
                desired: Some(3),
                version: 7,
            }],
        });
        let w = &store.workloads()[0];
        assert_eq!(w.id.kind, WorkloadKind::SwarmService);
        assert_eq!((w.ready, w.desired, w.image.as_str()), (1, 3, "api:2"));
    }
}
