//! Changing the replica count of a Docker workload: Compose services and Pilothouse groups by
//! creating or removing containers the way `docker compose up --scale` does, Swarm services by
//! updating their replicated count.
//!
//! Not for deciding the count or asking for confirmation: the actuator does that before it
//! sends the request.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::container::{
    Config, CreateContainerOptions, InspectContainerOptions, ListContainersOptions,
    NetworkingConfig, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::models::{ContainerInspectResponse, ContainerSummary, EndpointSettings, HostConfig};
use bollard::network::ConnectNetworkOptions;
use bollard::service::{Service, ServiceSpec, UpdateServiceOptions};
use futures::StreamExt;
use tracing::{info, warn};

use crate::lb::haproxy::Haproxy;
use crate::model::{WorkloadId, WorkloadKind};

/// The Compose labels that name a service's project, service and replica number.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
pub const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";

/// The labels that make containers a Pilothouse group, and number its replicas.
pub const GROUP_LABEL: &str = "pilothouse.group";
pub const GROUP_NUMBER: &str = "pilothouse.group.number";

/// The seconds Docker waits for a container to stop when its config does not say.
pub const DEFAULT_STOP_TIMEOUT: i64 = 10;

/// How many replicas a scale-down stops at once.
pub const STOP_CONCURRENCY: usize = 8;

/// Which containers form a scalable workload, and how its replicas are named and numbered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Members {
    Compose { project: String, service: String },
    Group { name: String },
}

impl Members {
    /// The members of `workload`, or why it cannot be scaled by creating containers.
    pub fn of(workload: &WorkloadId) -> Result<Members, String> {
        match workload.kind {
            WorkloadKind::Compose => match workload.name.split_once('/') {
                Some((project, service)) if !project.is_empty() && !service.is_empty() => {
                    Ok(Members::Compose {
                        project: project.into(),
                        service: service.into(),
                    })
                }
                _ => Err(format!(
                    "cannot scale {}: a Compose workload is named PROJECT/SERVICE",
                    workload.name
                )),
            },
            WorkloadKind::Group => Ok(Members::Group {
                name: workload.name.clone(),
            }),
            WorkloadKind::Container => Err(
                "a standalone container cannot be scaled; give it a pilothouse.group label"
                    .to_string(),
            ),
            WorkloadKind::SwarmService => Err(format!(
                "cannot scale {}: it is a Swarm service",
                workload.name
            )),
            WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::Pod => {
                Err(format!(
                    "cannot scale {}: it is a Kubernetes {}, not a Docker workload",
                    workload.name,
                    workload.kind.label()
                ))
            }
        }
    }

    /// The label filters that list this workload's containers.
    pub fn filters(&self) -> HashMap<String, Vec<String>> {
        let labels = match self {
            Members::Compose { project, service } => vec![
                format!("{COMPOSE_PROJECT}={project}"),
                format!("{COMPOSE_SERVICE}={service}"),
            ],
            Members::Group { name } => vec![format!("{GROUP_LABEL}={name}")],
        };
        HashMap::from([("label".to_string(), labels)])
    }

    /// The label holding a replica's number.
    pub fn number_label(&self) -> &'static str {
        match self {
            Members::Compose { .. } => COMPOSE_NUMBER,
            Members::Group { .. } => GROUP_NUMBER,
        }
    }

    /// The name `docker compose up --scale` gives replica `n`: `PROJECT-SERVICE-N`, and
    /// `GROUP-N` for a group.
    pub fn replica_name(&self, n: u64) -> String {
        match self {
            Members::Compose { project, service } => format!("{project}-{service}-{n}"),
            Members::Group { name } => format!("{name}-{n}"),
        }
    }

    /// Whether a listed container belongs (Compose one-off `run` containers do not).
    pub fn includes(&self, summary: &ContainerSummary) -> bool {
        let labels = summary.labels.as_ref();
        let oneoff = labels
            .and_then(|l| l.get(COMPOSE_ONEOFF))
            .map(String::as_str);
        !matches!(oneoff, Some("True" | "true"))
    }
}

/// One existing replica of a workload, as far as scaling cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub number: Option<u64>,
    pub created: i64,
}

/// What scaling to a count does: the numbers of the replicas to create, the ids to remove.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub create: Vec<u64>,
    /// Newest first, in the order to remove them (see [`removal_order`]).
    pub remove: Vec<Member>,
}

/// The plan for going from `members` to `target` replicas. New replicas take the numbers after
/// the highest one in use (or after the count, when numbers are missing).
pub fn plan(members: &[Member], target: u64) -> Plan {
    let current = members.len() as u64;
    if target > current {
        let highest = members
            .iter()
            .filter_map(|m| m.number)
            .max()
            .unwrap_or(0)
            .max(current);
        return Plan {
            create: (highest + 1..=highest + (target - current)).collect(),
            remove: vec![],
        };
    }
    let excess = usize::try_from(current - target).unwrap_or(usize::MAX);
    let mut remove = removal_order(members);
    remove.truncate(excess);
    Plan {
        create: vec![],
        remove,
    }
}

/// The members in the order a scale-down removes them: the newest first by creation time, so
/// the replicas that have run longest (and warmed their caches) stay. Equal times, and every
/// time when any is unknown (0), fall back to the highest number first, then the name.
///
/// The list gives creation times to the second. Replicas created within one second are told
/// apart by number, which is right for those one scale-up created: it numbers them in the
/// order it creates them.
pub fn removal_order(members: &[Member]) -> Vec<Member> {
    let times_known = members.iter().all(|m| m.created > 0);
    let mut ordered = members.to_vec();
    ordered.sort_by(|a, b| {
        let key = |m: &Member| {
            let created = if times_known { m.created } else { 0 };
            (created, m.number.unwrap_or(0))
        };
        key(b).cmp(&key(a)).then_with(|| b.name.cmp(&a.name))
    });
    ordered
}

/// The replica whose configuration new ones copy: the newest, by creation then number.
pub fn newest(members: &[Member]) -> Option<&Member> {
    members
        .iter()
        .max_by_key(|m| (m.created, m.number.unwrap_or(0)))
}

/// The lowest fixed host port the configuration publishes: a binding whose HostPort is one
/// non-zero number. Ranges (`8000-8010`) and empty or zero ports let the engine choose.
pub fn fixed_host_port(host: &HostConfig) -> Option<u16> {
    host.port_bindings
        .iter()
        .flat_map(|map| map.values())
        .flatten()
        .flatten()
        .filter_map(|binding| binding.host_port.as_deref())
        .filter_map(|port| port.trim().parse::<u16>().ok())
        .filter(|port| *port != 0)
        .min()
}

/// The refusal for a fixed host port, given before anything is created.
pub fn port_collision(workload: &str, target: u64, host: &HostConfig) -> Option<String> {
    let port = fixed_host_port(host)?;
    (target > 1).then(|| {
        format!(
            "cannot scale {workload} to {target}: it publishes fixed host port {port}, which a \
             second replica would collide with; publish a range or no host port"
        )
    })
}

/// The network a new replica is created on, and those it joins before it starts (API 1.41
/// takes one network at create).
#[derive(Debug, Clone, PartialEq)]
pub struct NewReplica {
    pub name: String,
    pub config: Config<String>,
    pub extra_networks: Vec<(String, EndpointSettings)>,
}

/// Networks without a user-defined scope: they take no aliases and need no endpoint config.
fn is_builtin_network(name: &str) -> bool {
    matches!(name, "bridge" | "host" | "none" | "default")
}

/// The configuration of replica `number`, copied from `source` (the newest replica's inspect):
/// Config and HostConfig as they are, the number label set, its own name and hostname, and the
/// same networks with the same aliases.
pub fn new_replica(
    source: &ContainerInspectResponse,
    members: &Members,
    number: u64,
) -> Result<NewReplica, String> {
    let name = members.replica_name(number);
    let source_id = source.id.clone().unwrap_or_default();
    let source_name = source
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/');
    let Some(container_config) = source.config.clone() else {
        return Err(format!(
            "the engine gave no configuration for {source_name}"
        ));
    };
    let mut config: Config<String> = container_config.into();

    // The engine sets the hostname to the short id unless one was asked for.
    if config
        .hostname
        .as_deref()
        .is_some_and(|h| source_id.starts_with(h) && !h.is_empty())
    {
        config.hostname = None;
    }
    config.mac_address = None;
    let labels = config.labels.get_or_insert_with(HashMap::new);
    labels.insert(members.number_label().to_string(), number.to_string());

    let host = source.host_config.clone().unwrap_or_default();
    let network_mode = host.network_mode.clone().unwrap_or_default();
    config.host_config = Some(host);

    let mut endpoints: Vec<(String, EndpointSettings)> = source
        .network_settings
        .as_ref()
        .and_then(|s| s.networks.as_ref())
        .into_iter()
        .flatten()
        .filter(|(net, _)| !is_builtin_network(net))
        .map(|(net, ep)| {
            (
                net.clone(),
                endpoint_for(ep, &source_id, source_name, &name),
            )
        })
        .collect();
    endpoints.sort_by(|a, b| a.0.cmp(&b.0));
    let isolated =
        matches!(network_mode.as_str(), "host" | "none") || network_mode.starts_with("container:");
    if isolated {
        endpoints.clear();
    }
    // NetworkMode names the network the container was created on, by name or by id.
    let primary_name = source_networks(source)
        .into_iter()
        .find(|(net, id)| !network_mode.is_empty() && (*net == network_mode || *id == network_mode))
        .map(|(net, _)| net);
    let primary = primary_name.and_then(|net| endpoints.iter().position(|(n, _)| *n == net));
    if let Some(index) = primary {
        let (net, ep) = endpoints.remove(index);
        config.networking_config = Some(NetworkingConfig {
            endpoints_config: HashMap::from([(net, ep)]),
        });
    }
    Ok(NewReplica {
        name,
        config,
        extra_networks: endpoints,
    })
}

/// The source's networks as (name, id).
fn source_networks(source: &ContainerInspectResponse) -> Vec<(String, String)> {
    let networks = source
        .network_settings
        .as_ref()
        .and_then(|s| s.networks.as_ref());
    let mut out: Vec<(String, String)> = networks
        .into_iter()
        .flatten()
        .map(|(net, ep)| (net.clone(), ep.network_id.clone().unwrap_or_default()))
        .collect();
    out.sort();
    out
}

/// The endpoint of a new replica on one network: the source's aliases with its own name and id
/// replaced, and nothing that would collide (fixed addresses, MAC).
fn endpoint_for(
    source: &EndpointSettings,
    source_id: &str,
    source_name: &str,
    new_name: &str,
) -> EndpointSettings {
    let mut aliases: Vec<String> = Vec::new();
    for alias in source.aliases.iter().flatten() {
        let is_short_id = alias.len() >= 12 && source_id.starts_with(alias.as_str());
        let alias = if alias == source_name {
            new_name.to_string()
        } else {
            alias.clone()
        };
        if !is_short_id && !aliases.contains(&alias) {
            aliases.push(alias);
        }
    }
    EndpointSettings {
        aliases: (!aliases.is_empty()).then_some(aliases),
        links: source.links.clone(),
        driver_opts: source.driver_opts.clone(),
        ..Default::default()
    }
}

/// The spec that sets a replicated Swarm service to `replicas`, with the version to update.
pub fn scaled_service_spec(service: Service, replicas: u64) -> Result<(ServiceSpec, u64), String> {
    let name = service
        .spec
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_default();
    let version = service.version.and_then(|v| v.index).unwrap_or(0);
    let mut spec = service.spec.unwrap_or_default();
    let count =
        i64::try_from(replicas).map_err(|_| format!("cannot scale {name} to {replicas}"))?;
    match spec.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
        Some(replicated) => replicated.replicas = Some(count),
        None => {
            return Err(format!(
                "cannot scale {name}: it is a global service, which runs one task on every node"
            ));
        }
    }
    Ok((spec, version))
}

/// Scales any workload kind; the reply for the actuator.
pub async fn scale(
    docker: &Docker,
    workload: &WorkloadId,
    replicas: u64,
) -> Result<String, String> {
    scale_with(docker, workload, replicas, None).await
}

/// [`scale`], keeping `lb` in step when the workload's replicas name a backend
/// ([`lb_binding`]): new replicas join it once they are ready, removed ones are drained from it
/// before they stop, and ready replicas it lacks are added.
pub async fn scale_with(
    docker: &Docker,
    workload: &WorkloadId,
    replicas: u64,
    lb: Option<&Haproxy>,
) -> Result<String, String> {
    if workload.kind == WorkloadKind::SwarmService {
        return scale_service(docker, &workload.name, replicas).await;
    }
    let members = Members::of(workload)?;
    let current = list_members(docker, &members).await.map_err(|e| {
        format!(
            "cannot scale {}: listing its replicas failed: {e}",
            workload.name
        )
    })?;
    let from = current.len() as u64;
    let backend = match lb {
        Some(haproxy) => backend_of(docker, haproxy, &current)
            .await
            .map_err(|e| format!("cannot scale {}: {e}", workload.name))?,
        None => None,
    };
    let in_step = |reply: Result<String, String>| async {
        match (&backend, reply) {
            (Some(backend), Ok(reply)) => backend.sync(docker, &members).await.map(|()| reply),
            (_, reply) => reply,
        }
    };
    if from == replicas {
        let reply = Ok(format!("{} already has {replicas} replicas", workload.name));
        return in_step(reply).await;
    }
    let plan = plan(&current, replicas);
    if plan.create.is_empty() {
        let reply = scale_down(
            docker,
            &workload.name,
            from,
            replicas,
            &plan.remove,
            backend.as_ref(),
        )
        .await;
        in_step(reply).await
    } else {
        let source = newest(&current).ok_or_else(|| {
            format!(
                "cannot scale {} to {replicas}: it has no replica to copy the configuration from",
                workload.name
            )
        })?;
        let scale_up = ScaleUp {
            docker,
            workload: &workload.name,
            members: &members,
            replicas,
        };
        let reply = scale_up.run(from, &source.id, &plan.create).await;
        in_step(reply).await
    }
}

/// The label naming the HAProxy backend a workload's replicas serve in.
pub const LB_BACKEND_LABEL: &str = "pilothouse.lb.backend";
/// The label naming the port the replicas serve on, at their own address.
pub const LB_PORT_LABEL: &str = "pilothouse.lb.port";

/// How long a new replica may take to become ready before scaling reports that it was not added
/// to the load balancer.
pub const LB_READY_WAIT: Duration = Duration::from_secs(120);
/// How long a drained replica's sessions may take before it is stopped anyway.
pub const LB_DRAIN_WAIT: Duration = Duration::from_secs(30);

/// The backend and port `labels` name: both labels, or neither. One without the other, or a
/// port that is not one, is an error that says which.
pub fn lb_binding(
    labels: Option<&HashMap<String, String>>,
) -> Result<Option<(String, u16)>, String> {
    let get = |key: &str| {
        labels
            .and_then(|l| l.get(key))
            .map(|v| v.trim().to_string())
    };
    match (get(LB_BACKEND_LABEL), get(LB_PORT_LABEL)) {
        (None, None) => Ok(None),
        (Some(backend), Some(port)) => {
            let port: u16 =
                port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                    format!("label {LB_PORT_LABEL}={port:?} is not a port (1-65535)")
                })?;
            if !crate::lb::haproxy::valid_server_name(&backend) {
                return Err(format!(
                    "label {LB_BACKEND_LABEL}={backend:?} is not a backend name"
                ));
            }
            Ok(Some((backend, port)))
        }
        (Some(_), None) => Err(format!(
            "label {LB_BACKEND_LABEL} is set without {LB_PORT_LABEL}"
        )),
        (None, Some(_)) => Err(format!(
            "label {LB_PORT_LABEL} is set without {LB_BACKEND_LABEL}"
        )),
    }
}

/// A workload's backend in a load balancer.
pub struct Backend<'a> {
    pub haproxy: &'a Haproxy,
    pub name: String,
    pub port: u16,
}

/// The backend the newest replica's labels name, if any.
async fn backend_of<'a>(
    docker: &Docker,
    haproxy: &'a Haproxy,
    members: &[Member],
) -> Result<Option<Backend<'a>>, String> {
    let Some(newest) = newest(members) else {
        return Ok(None);
    };
    let inspect = docker
        .inspect_container(&newest.id, None::<InspectContainerOptions>)
        .await
        .map_err(|e| format!("inspecting {} failed: {e}", newest.name))?;
    let labels = inspect.config.as_ref().and_then(|c| c.labels.as_ref());
    Ok(lb_binding(labels)
        .map_err(|e| format!("{} has {e}", newest.name))?
        .map(|(name, port)| Backend {
            haproxy,
            name,
            port,
        }))
}

impl Backend<'_> {
    /// Adds every replica of the workload to the backend once it is ready (waiting up to
    /// [`LB_READY_WAIT`] for those still starting); the error names those left out.
    pub async fn sync(&self, docker: &Docker, members: &Members) -> Result<(), String> {
        let present: Vec<String> = self
            .haproxy
            .servers(&self.name)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let listed = list_members(docker, members)
            .await
            .map_err(|e| format!("listing the replicas failed: {e}"))?;
        let mut left_out = Vec::new();
        for member in listed.iter().filter(|m| !present.contains(&m.name)) {
            if let Err(why) = self.join_when_ready(docker, member).await {
                left_out.push(why);
            }
        }
        if left_out.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "not added to backend {}: {}",
                self.name,
                left_out.join("; ")
            ))
        }
    }

    async fn join_when_ready(&self, docker: &Docker, member: &Member) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + LB_READY_WAIT;
        loop {
            let inspect = docker
                .inspect_container(&member.id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| format!("inspecting {} failed: {e}", member.name))?;
            match crate::rollout::probe::gate(&inspect, false) {
                crate::rollout::probe::Gate::Passed => {
                    let ip = crate::rollout::probe::replica_ip(&inspect)
                        .ok_or_else(|| format!("{} has no address", member.name))?;
                    let address = std::net::SocketAddr::new(ip, self.port);
                    self.haproxy
                        .add_server(&self.name, &member.name, address)
                        .await
                        .map_err(|e| e.to_string())?;
                    info!(replica = %member.name, backend = %self.name, %address, "replica added to the load balancer");
                    return Ok(());
                }
                crate::rollout::probe::Gate::Failed(why) => return Err(why),
                crate::rollout::probe::Gate::Waiting(why) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(format!("{why} after {} s", LB_READY_WAIT.as_secs()));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Takes a replica out of the backend: drain, wait for its sessions, remove. A replica the
    /// backend does not have is left alone.
    pub async fn leave(&self, member: &Member) -> Result<(), String> {
        let present = self
            .haproxy
            .servers(&self.name)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .any(|s| s.name == member.name);
        if !present {
            return Ok(());
        }
        let lb_error = |e: crate::lb::haproxy::LbError| format!("draining {}: {e}", member.name);
        self.haproxy
            .drain(&self.name, &member.name)
            .await
            .map_err(lb_error)?;
        let idle = self
            .haproxy
            .wait_idle(&self.name, &member.name, LB_DRAIN_WAIT)
            .await
            .map_err(lb_error)?;
        if !idle {
            warn!(replica = %member.name, backend = %self.name, "sessions still open after the drain wait; stopping it anyway");
        }
        self.haproxy
            .remove_server(&self.name, &member.name)
            .await
            .map_err(lb_error)
    }
}

/// The workload's containers, all states, without Compose one-off containers.
pub async fn list_members(
    docker: &Docker,
    members: &Members,
) -> Result<Vec<Member>, bollard::errors::Error> {
    let options = ListContainersOptions {
        all: true,
        filters: members.filters(),
        ..Default::default()
    };
    let summaries = docker.list_containers(Some(options)).await?;
    let label = members.number_label();
    Ok(summaries
        .iter()
        .filter(|s| members.includes(s))
        .map(|s| Member {
            id: s.id.clone().unwrap_or_default(),
            name: super::convert::replica_from_summary(s).name,
            number: s
                .labels
                .as_ref()
                .and_then(|l| l.get(label))
                .and_then(|n| n.parse().ok()),
            created: s.created.unwrap_or(0),
        })
        .collect())
}

/// One scale-up: the names are checked and the port refused before anything is created.
struct ScaleUp<'a> {
    docker: &'a Docker,
    workload: &'a str,
    members: &'a Members,
    replicas: u64,
}

impl ScaleUp<'_> {
    async fn run(&self, from: u64, source_id: &str, numbers: &[u64]) -> Result<String, String> {
        let source = self
            .docker
            .inspect_container(source_id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.fail(&format!("inspecting its newest replica failed: {e}")))?;
        let host = source.host_config.clone().unwrap_or_default();
        if let Some(refusal) = port_collision(self.workload, self.replicas, &host) {
            return Err(refusal);
        }
        let mut created = Vec::new();
        for number in numbers {
            let replica = new_replica(&source, self.members, *number).map_err(|e| self.fail(&e))?;
            self.create_and_start(&replica).await.map_err(|e| {
                self.fail(&format!(
                    "{e} (created before it: {})",
                    list_or_none(&created)
                ))
            })?;
            info!(workload = self.workload, replica = %replica.name, "replica created");
            created.push(replica.name);
        }
        Ok(format!(
            "scaled {} from {from} to {}: created {}",
            self.workload,
            self.replicas,
            created.join(", ")
        ))
    }

    fn fail(&self, why: &str) -> String {
        format!("cannot scale {} to {}: {why}", self.workload, self.replicas)
    }

    async fn create_and_start(&self, replica: &NewReplica) -> Result<String, String> {
        create_and_start(self.docker, replica).await
    }
}

/// Creates, connects and starts one replica, and returns its id; removes it again if any step
/// fails.
pub async fn create_and_start(docker: &Docker, replica: &NewReplica) -> Result<String, String> {
    let options = CreateContainerOptions {
        name: replica.name.clone(),
        platform: None,
    };
    let created = docker
        .create_container(Some(options), replica.config.clone())
        .await
        .map_err(|e| format!("creating {} failed: {e}", replica.name))?;
    if let Err(e) = connect_and_start(docker, &created.id, replica).await {
        let force = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let _ = docker.remove_container(&created.id, Some(force)).await;
        return Err(e);
    }
    Ok(created.id)
}

async fn connect_and_start(docker: &Docker, id: &str, replica: &NewReplica) -> Result<(), String> {
    for (network, endpoint) in &replica.extra_networks {
        let options = ConnectNetworkOptions {
            container: id.to_string(),
            endpoint_config: endpoint.clone(),
        };
        docker
            .connect_network(network, options)
            .await
            .map_err(|e| format!("connecting {} to {network} failed: {e}", replica.name))?;
    }
    docker
        .start_container(id, None::<StartContainerOptions<String>>)
        .await
        .map_err(|e| format!("starting {} failed: {e}", replica.name))
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Stops (each with its own stop timeout) and removes the given replicas, up to
/// [`STOP_CONCURRENCY`] at once, so removing several takes about one stop timeout, not their sum.
async fn scale_down(
    docker: &Docker,
    workload: &str,
    from: u64,
    to: u64,
    remove: &[Member],
    backend: Option<&Backend<'_>>,
) -> Result<String, String> {
    let stops: Vec<_> = remove
        .iter()
        .map(|member| stop_one(docker, workload, member, backend))
        .collect();
    // `buffered` keeps the plan's order (newest first) in the outcomes.
    let outcomes: Vec<(String, Result<(), String>)> = futures::stream::iter(stops)
        .buffered(STOP_CONCURRENCY)
        .collect()
        .await;
    scale_down_reply(workload, from, to, &outcomes)
}

/// Stops and removes one replica of a scale-down; its name with the outcome.
async fn stop_one(
    docker: &Docker,
    workload: &str,
    member: &Member,
    backend: Option<&Backend<'_>>,
) -> (String, Result<(), String>) {
    let outcome = match backend {
        Some(backend) => match backend.leave(member).await {
            Ok(()) => stop_and_remove(docker, member).await,
            Err(why) => Err(why),
        },
        None => stop_and_remove(docker, member).await,
    };
    match &outcome {
        Ok(()) => info!(workload, replica = %member.name, "replica removed"),
        Err(reason) => warn!(workload, replica = %member.name, %reason, "replica not removed"),
    }
    (member.name.clone(), outcome)
}

/// The reply to a scale-down from each replica's outcome, in the plan's order: every failure,
/// with the replicas that were removed all the same.
fn scale_down_reply(
    workload: &str,
    from: u64,
    to: u64,
    outcomes: &[(String, Result<(), String>)],
) -> Result<String, String> {
    let removed: Vec<String> = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(name, _)| name.clone())
        .collect();
    let failures: Vec<&str> = outcomes
        .iter()
        .filter_map(|(_, outcome)| outcome.as_ref().err())
        .map(String::as_str)
        .collect();
    if failures.is_empty() {
        return Ok(format!(
            "scaled {workload} from {from} to {to}: removed {}",
            removed.join(", ")
        ));
    }
    Err(format!(
        "cannot scale {workload} to {to}: {} (removed: {})",
        failures.join("; "),
        list_or_none(&removed)
    ))
}

/// Stops one replica with its own stop timeout, then removes it.
pub async fn stop_and_remove(docker: &Docker, member: &Member) -> Result<(), String> {
    let timeout = stop_timeout(docker, &member.id).await;
    docker
        .stop_container(&member.id, Some(StopContainerOptions { t: timeout }))
        .await
        .or_else(not_modified_is_fine)
        .map_err(|e| format!("stopping {} failed: {e}", member.name))?;
    docker
        .remove_container(&member.id, None::<RemoveContainerOptions>)
        .await
        .map_err(|e| format!("removing {} failed: {e}", member.name))
}

/// The engine answers 304 when the container was already stopped.
fn not_modified_is_fine(err: bollard::errors::Error) -> Result<(), bollard::errors::Error> {
    match err {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        } => Ok(()),
        other => Err(other),
    }
}

/// The container's own stop timeout, or Docker's default of 10 s.
pub async fn stop_timeout(docker: &Docker, id: &str) -> i64 {
    docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|i| i.config.and_then(|c| c.stop_timeout))
        .unwrap_or(DEFAULT_STOP_TIMEOUT)
}

async fn scale_service(docker: &Docker, name: &str, replicas: u64) -> Result<String, String> {
    let service = docker
        .inspect_service(name, None)
        .await
        .map_err(|e| format!("cannot scale {name}: reading the service failed: {e}"))?;
    let (spec, version) = scaled_service_spec(service, replicas)?;
    let options = UpdateServiceOptions {
        version,
        ..Default::default()
    };
    docker
        .update_service(name, spec, options, None)
        .await
        .map_err(|e| format!("cannot scale {name} to {replicas}: the update failed: {e}"))?;
    info!(service = name, replicas, "swarm service scaled");
    Ok(format!("scaled {name} to {replicas}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compose() -> Members {
        Members::Compose {
            project: "shop".into(),
            service: "web".into(),
        }
    }

    fn member(id: &str, number: Option<u64>, created: i64) -> Member {
        Member {
            id: id.into(),
            name: format!("n-{id}"),
            number,
            created,
        }
    }

    fn workload(kind: WorkloadKind, name: &str) -> WorkloadId {
        WorkloadId {
            target: "local".into(),
            kind,
            name: name.into(),
        }
    }

    #[test]
    fn replicas_are_named_as_compose_names_them() {
        assert_eq!(compose().replica_name(3), "shop-web-3");
        assert_eq!(
            Members::Group {
                name: "batch".into()
            }
            .replica_name(2),
            "batch-2"
        );
        assert_eq!(compose().number_label(), COMPOSE_NUMBER);
    }

    #[test]
    fn workloads_map_to_members_or_are_refused() {
        assert_eq!(
            Members::of(&workload(WorkloadKind::Compose, "shop/web")),
            Ok(compose())
        );
        assert!(Members::of(&workload(WorkloadKind::Compose, "shopweb")).is_err());
        assert_eq!(
            Members::of(&workload(WorkloadKind::Container, "db")),
            Err("a standalone container cannot be scaled; give it a pilothouse.group label".into())
        );
    }

    #[test]
    fn scaling_up_numbers_new_replicas_after_the_highest() {
        let members = [member("a", Some(1), 10), member("b", Some(4), 20)];
        assert_eq!(plan(&members, 4).create, vec![5, 6]);
        assert_eq!(plan(&[member("a", None, 1)], 3).create, vec![2, 3]);
        assert_eq!(plan(&[], 2).create, vec![1, 2]);
    }

    fn removed_ids(members: &[Member], target: u64) -> Vec<String> {
        plan(members, target)
            .remove
            .into_iter()
            .map(|m| m.id)
            .collect()
    }

    #[test]
    fn scaling_down_removes_the_newest_replicas_first() {
        // (case, members as (id, number, created), target, ids removed in order)
        type Case = (
            &'static str,
            Vec<(&'static str, Option<u64>, i64)>,
            u64,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "created in number order",
                vec![("a", Some(1), 10), ("c", Some(3), 30), ("b", Some(2), 20)],
                1,
                vec!["c", "b"],
            ),
            (
                "replica 1 recreated after 2 and 3",
                vec![("a", Some(1), 50), ("b", Some(2), 20), ("c", Some(3), 30)],
                2,
                vec!["a"],
            ),
            (
                "replica 1 recreated, two to remove",
                vec![("a", Some(1), 50), ("b", Some(2), 20), ("c", Some(3), 30)],
                1,
                vec!["a", "c"],
            ),
            (
                "one scale-up created 2 and 3 in the same second",
                vec![("a", Some(1), 10), ("b", Some(2), 20), ("c", Some(3), 20)],
                1,
                vec!["c", "b"],
            ),
            (
                "an unknown time makes every replica go by number",
                vec![("a", Some(1), 50), ("b", Some(2), 0), ("c", Some(3), 30)],
                1,
                vec!["c", "b"],
            ),
            (
                "an unnumbered replica goes after the numbered of its second",
                vec![("x", None, 20), ("b", Some(2), 20), ("a", Some(1), 10)],
                1,
                vec!["b", "x"],
            ),
        ];
        for (case, spec, target, want) in cases {
            let members: Vec<Member> = spec
                .iter()
                .map(|(id, number, created)| member(id, *number, *created))
                .collect();
            assert_eq!(removed_ids(&members, target), want, "{case}");
        }
    }

    #[test]
    fn scaling_to_the_current_count_removes_and_creates_nothing() {
        let members = [member("a", Some(1), 10), member("b", Some(2), 20)];
        assert_eq!(plan(&members, 2), Plan::default());
    }

    #[test]
    fn a_scale_down_reply_lists_the_removed_in_the_plans_order() {
        let outcomes = [("web-3".to_string(), Ok(())), ("web-2".to_string(), Ok(()))];
        assert_eq!(
            scale_down_reply("shop/web", 3, 1, &outcomes),
            Ok("scaled shop/web from 3 to 1: removed web-3, web-2".to_string())
        );
    }

    #[test]
    fn a_failed_stop_is_reported_with_the_replicas_removed_all_the_same() {
        let outcomes = [
            ("web-4".to_string(), Ok(())),
            (
                "web-3".to_string(),
                Err("stopping web-3 failed: boom".to_string()),
            ),
            ("web-2".to_string(), Ok(())),
        ];
        assert_eq!(
            scale_down_reply("shop/web", 4, 1, &outcomes),
            Err(
                "cannot scale shop/web to 1: stopping web-3 failed: boom (removed: web-4, web-2)"
                    .to_string()
            )
        );
        let none = [(
            "web-2".to_string(),
            Err("removing web-2 failed: gone".to_string()),
        )];
        assert_eq!(
            scale_down_reply("shop/web", 2, 1, &none),
            Err(
                "cannot scale shop/web to 1: removing web-2 failed: gone (removed: none)"
                    .to_string()
            )
        );
    }

    #[test]
    fn a_backend_is_named_by_both_labels_or_neither() {
        let labels = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(lb_binding(None), Ok(None));
        assert_eq!(lb_binding(Some(&labels(&[("a", "b")]))), Ok(None));
        let both = labels(&[(LB_BACKEND_LABEL, "web"), (LB_PORT_LABEL, "8080")]);
        assert_eq!(lb_binding(Some(&both)), Ok(Some(("web".to_string(), 8080))));
        let alone = labels(&[(LB_BACKEND_LABEL, "web")]);
        assert!(
            lb_binding(Some(&alone))
                .unwrap_err()
                .contains("without pilothouse.lb.port")
        );
        let bad_port = labels(&[(LB_BACKEND_LABEL, "web"), (LB_PORT_LABEL, "http")]);
        assert!(
            lb_binding(Some(&bad_port))
                .unwrap_err()
                .contains("\"http\" is not a port")
        );
        let bad_name = labels(&[(LB_BACKEND_LABEL, "web; del server"), (LB_PORT_LABEL, "80")]);
        assert!(
            lb_binding(Some(&bad_name))
                .unwrap_err()
                .contains("is not a backend name")
        );
    }

    #[test]
    fn the_newest_replica_is_the_latest_created() {
        let members = [member("a", Some(1), 30), member("b", Some(2), 20)];
        assert_eq!(newest(&members).map(|m| m.id.as_str()), Some("a"));
    }

    fn host(bindings: serde_json::Value) -> HostConfig {
        serde_json::from_value(json!({ "PortBindings": bindings })).expect("host config")
    }

    #[test]
    fn a_fixed_host_port_refuses_a_second_replica_with_its_number() {
        let h = host(json!({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}));
        assert_eq!(fixed_host_port(&h), Some(8080));
        assert_eq!(
            port_collision("shop/web", 3, &h).as_deref(),
            Some(
                "cannot scale shop/web to 3: it publishes fixed host port 8080, which a second \
                 replica would collide with; publish a range or no host port"
            )
        );
        assert_eq!(port_collision("shop/web", 1, &h), None);
    }

    #[test]
    fn ranges_zero_and_empty_host_ports_do_not_collide() {
        let h = host(json!({
            "80/tcp": [{"HostIp": "", "HostPort": ""}],
            "81/tcp": [{"HostPort": "0"}],
            "82/tcp": [{"HostPort": "9000-9010"}],
            "83/tcp": null
        }));
        assert_eq!(fixed_host_port(&h), None);
        assert_eq!(fixed_host_port(&HostConfig::default()), None);
    }

    fn source() -> ContainerInspectResponse {
        serde_json::from_value(json!({
            "Id": "0123456789abcdef0123",
            "Name": "/shop-web-1",
            "Config": {
                "Hostname": "0123456789ab",
                "Image": "pilothouse-test/busybox:1",
                "Cmd": ["sleep", "1000"],
                "Labels": {
                    "com.docker.compose.project": "shop",
                    "com.docker.compose.service": "web",
                    "com.docker.compose.container-number": "1"
                },
                "StopTimeout": 2
            },
            "HostConfig": {"NetworkMode": "shop_default", "RestartPolicy": {"Name": "always"}},
            "NetworkSettings": {"Networks": {
                "shop_default": {"Aliases": ["shop-web-1", "web", "0123456789ab"], "IPAddress": "172.18.0.2"},
                "shop_back": {"Aliases": ["web"], "IPAMConfig": {"IPv4Address": "172.19.0.9"}},
                "bridge": {}
            }}
        }))
        .expect("inspect JSON")
    }

    #[test]
    fn a_new_replica_copies_the_newest_with_its_own_number_name_and_aliases() {
        let r = new_replica(&source(), &compose(), 2).expect("new replica");
        assert_eq!(r.name, "shop-web-2");
        assert_eq!(
            r.config.hostname, None,
            "the source's short-id hostname is not copied"
        );
        assert_eq!(r.config.image.as_deref(), Some("pilothouse-test/busybox:1"));
        assert_eq!(
            r.config.cmd,
            Some(vec!["sleep".to_string(), "1000".to_string()])
        );
        assert_eq!(r.config.stop_timeout, Some(2));
        let labels = r.config.labels.as_ref().expect("labels");
        assert_eq!(labels[COMPOSE_NUMBER], "2");
        assert_eq!(labels[COMPOSE_PROJECT], "shop");
        let host = r.config.host_config.as_ref().expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("shop_default"));
        let primary = &r
            .config
            .networking_config
            .as_ref()
            .expect("networking")
            .endpoints_config;
        assert_eq!(
            primary["shop_default"].aliases,
            Some(vec!["shop-web-2".to_string(), "web".to_string()])
        );
        assert_eq!(primary["shop_default"].ip_address, None);
        assert_eq!(
            r.extra_networks.len(),
            1,
            "bridge is not joined by name: {:?}",
            r.extra_networks
        );
        assert_eq!(r.extra_networks[0].0, "shop_back");
        assert_eq!(
            r.extra_networks[0].1.ipam_config, None,
            "a fixed address is not copied"
        );
    }

    #[test]
    fn a_replica_on_the_default_bridge_gets_no_endpoint_config() {
        let mut s = source();
        s.host_config.as_mut().expect("host").network_mode = Some("default".into());
        s.network_settings.as_mut().expect("net").networks = Some(HashMap::from([(
            "bridge".to_string(),
            EndpointSettings::default(),
        )]));
        let r = new_replica(
            &s,
            &Members::Group {
                name: "batch".into(),
            },
            5,
        )
        .expect("replica");
        assert_eq!(r.name, "batch-5");
        assert!(r.config.networking_config.is_none());
        assert!(r.extra_networks.is_empty());
        assert_eq!(r.config.labels.as_ref().expect("labels")[GROUP_NUMBER], "5");
    }

    #[test]
    fn a_replicated_service_spec_gets_the_new_count_and_a_global_one_is_refused() {
        let svc: Service = serde_json::from_value(json!({
            "ID": "s1", "Version": {"Index": 9},
            "Spec": {"Name": "web", "Mode": {"Replicated": {"Replicas": 2}}}
        }))
        .expect("service");
        let (spec, version) = scaled_service_spec(svc, 5).expect("scaled");
        assert_eq!(version, 9);
        assert_eq!(
            spec.mode
                .and_then(|m| m.replicated)
                .and_then(|r| r.replicas),
            Some(5)
        );
        let global: Service = serde_json::from_value(json!({
            "ID": "s2", "Version": {"Index": 1}, "Spec": {"Name": "agent", "Mode": {"Global": {}}}
        }))
        .expect("service");
        let err = scaled_service_spec(global, 3).expect_err("global");
        assert!(err.contains("agent") && err.contains("global"), "{err}");
    }
}
