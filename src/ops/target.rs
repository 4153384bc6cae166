//! The target a one-shot command works on: which Docker host the flags and `config.toml` name,
//! connected once with the console's own connect code, and the workloads on it as the store
//! derives them from one listing of the engine.
//!
//! Not for staying connected (the console's workers do that) or for acting on a workload: the
//! commands take a [`Target`] and do their own one thing with it.

use std::collections::HashMap;

use bollard::container::ListContainersOptions;
use bollard::errors::Error as BollardError;

use crate::config::{Config, DockerTarget, LOCAL_TARGET};
use crate::model::{PlatformKind, Replica, SwarmService};
use crate::ops::exit;
use crate::platform::Update;
use crate::platform::docker::{connect, convert};
use crate::store::Store;

/// One Docker target, connected.
#[derive(Debug, Clone)]
pub struct Target {
    /// The name the console and the rules know it by: a `[[docker]]` name, or `local`.
    pub name: String,
    /// The address connected to, as messages show it (`unix:///var/run/docker.sock`).
    pub address: String,
    /// The engine's own ID, the same by every address; rollout files are kept under it.
    pub engine_id: String,
    pub docker: bollard::Docker,
}

/// What stops a one-shot command, with its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One of [`crate::ops::exit`].
    pub code: u8,
    /// What failed, on what, and what to do; printed after `pilothouse: `.
    pub message: String,
}

impl Failure {
    /// A wrong flag or name: exit [`exit::USAGE`].
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    /// A target that does not answer: exit [`exit::UNREACHABLE`].
    pub fn unreachable(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::UNREACHABLE,
            message: message.into(),
        }
    }

    /// Anything else that stopped the command: exit [`exit::FAILED`].
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::FAILED,
            message: message.into(),
        }
    }
}

/// The target a one-shot command works on: `--docker-host` if given; else `--target NAME` among
/// config.toml's targets (an unknown name is a usage error that lists the names); else the only
/// target of config.toml (which, with no `[[docker]]` entry, is `local` on `DOCKER_HOST` or the
/// local socket). Several targets and no `--target` is a usage error that lists them.
/// Connecting waits at most [`connect::CONNECT_TIMEOUT`]; a target that does not answer is
/// [`exit::UNREACHABLE`], with its address and why.
pub async fn open(
    docker_host: Option<&str>,
    target: Option<&str>,
    config: &Config,
) -> Result<Target, Failure> {
    let chosen = choose(docker_host, target, config)?;
    connect_to(&chosen).await
}

/// All the targets `status` shows, each connected or with its failure, in config.toml's order:
/// the one that `--docker-host` or `--target` names when given, otherwise every target. They
/// are connected to at once, so one that does not answer delays the others by nothing.
pub async fn open_all(
    docker_host: Option<&str>,
    target: Option<&str>,
    config: &Config,
) -> Vec<(String, Result<Target, Failure>)> {
    if docker_host.is_some() || target.is_some() {
        let name = match (docker_host, target) {
            (None, Some(name)) => name.to_string(),
            _ => LOCAL_TARGET.to_string(),
        };
        let opened = open(docker_host, target, config).await;
        let name = opened.as_ref().map_or(name, |t| t.name.clone());
        return vec![(name, opened)];
    }
    let targets = config.docker_targets();
    let attempts = targets.iter().map(connect_to);
    let opened = futures::future::join_all(attempts).await;
    targets.into_iter().map(|t| t.name).zip(opened).collect()
}

/// Which target the flags and config.toml name, before connecting.
fn choose(
    docker_host: Option<&str>,
    target: Option<&str>,
    config: &Config,
) -> Result<DockerTarget, Failure> {
    let targets = config.docker_targets();
    match (docker_host, target) {
        (Some(_), Some(_)) => Err(Failure::usage(
            "give --docker-host or --target, not both: --docker-host replaces the targets of \
             config.toml",
        )),
        (Some(host), None) => Ok(DockerTarget {
            name: LOCAL_TARGET.to_string(),
            host: Some(host.to_string()),
        }),
        (None, Some(name)) => match targets.iter().find(|t| t.name == name) {
            Some(found) => Ok(found.clone()),
            None => Err(Failure::usage(format!(
                "no target named {} in config.toml; its targets are: {}",
                crate::text::sanitize_plain(name),
                names(&targets)
            ))),
        },
        (None, None) => match targets.as_slice() {
            [only] => Ok(only.clone()),
            _ => Err(Failure::usage(format!(
                "config.toml has {} targets; say which with --target NAME: {}",
                targets.len(),
                names(&targets)
            ))),
        },
    }
}

/// The targets' names, comma separated.
fn names(targets: &[DockerTarget]) -> String {
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    names.join(", ")
}

/// Connects to one target: its address (else `DOCKER_HOST`, else the local socket), the API
/// version negotiated and the engine's ID read.
async fn connect_to(target: &DockerTarget) -> Result<Target, Failure> {
    let docker_host_env = std::env::var("DOCKER_HOST").ok();
    let endpoint = connect::resolve_endpoint(target.host.as_deref(), docker_host_env.as_deref())
        .map_err(Failure::usage)?;
    let connected = connect::open(&endpoint)
        .await
        .map_err(Failure::unreachable)?;
    Ok(Target {
        name: target.name.clone(),
        address: endpoint.address().to_string(),
        engine_id: connected.engine_id,
        docker: connected.docker,
    })
}

impl Target {
    /// Every container (all states) and, on a Swarm manager, every service, in a store of this
    /// target alone: `store.workloads()` groups them as the console does.
    pub async fn snapshot(&self) -> Result<Store, Failure> {
        let (replicas, services) = self.list().await.map_err(|e| self.describe(&e))?;
        let mut store = Store::new(2);
        store.add_target(&self.name, PlatformKind::Docker);
        store.apply(&Update::Snapshot {
            target: self.name.clone(),
            replicas,
            services,
        });
        Ok(store)
    }

    /// One listing of the engine: containers from the list alone (no inspect), services when
    /// the engine manages a swarm.
    async fn list(&self) -> Result<(Vec<Replica>, Vec<SwarmService>), BollardError> {
        let options = ListContainersOptions::<String> {
            all: true,
            filters: HashMap::new(),
            ..Default::default()
        };
        let (info, containers) = tokio::join!(
            self.docker.info(),
            self.docker.list_containers(Some(options))
        );
        let replicas = containers?
            .iter()
            .map(convert::replica_from_summary)
            .collect();
        let manager = info?
            .swarm
            .and_then(|s| s.control_available)
            .unwrap_or(false);
        let services = if manager {
            let listed = self.docker.list_services::<String>(None).await?;
            listed.iter().map(convert::swarm_service).collect()
        } else {
            Vec::new()
        };
        Ok((replicas, services))
    }

    /// A failed request after connecting: the engine's refusal is a failure, anything else
    /// means it can no longer be reached.
    fn describe(&self, err: &BollardError) -> Failure {
        let message = connect::describe_failure(&self.address, err);
        match err {
            BollardError::DockerResponseServerError { .. } => Failure::failed(message),
            _ => Failure::unreachable(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(std::path::Path::new("/cfg/config.toml"), text).unwrap()
    }

    const TWO: &str = "[[docker]]\nname = \"edge\"\nhost = \"unix:///nonexistent/edge.sock\"\n\
                       [[docker]]\nname = \"box\"\nhost = \"unix:///nonexistent/box.sock\"\n";

    #[test]
    fn docker_host_replaces_the_targets_of_config_as_local() {
        let chosen = choose(Some("unix:///tmp/d.sock"), None, &config(TWO)).unwrap();
        assert_eq!(chosen.name, "local");
        assert_eq!(chosen.host.as_deref(), Some("unix:///tmp/d.sock"));
    }

    #[test]
    fn a_target_is_found_by_name_and_an_unknown_one_lists_the_names() {
        let chosen = choose(None, Some("box"), &config(TWO)).unwrap();
        assert_eq!(chosen.host.as_deref(), Some("unix:///nonexistent/box.sock"));
        let err = choose(None, Some("nope"), &config(TWO)).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert_eq!(
            err.message,
            "no target named nope in config.toml; its targets are: edge, box"
        );
    }

    #[test]
    fn several_targets_and_no_choice_is_a_usage_error_listing_them() {
        let err = choose(None, None, &config(TWO)).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("--target") && err.message.contains("edge, box"));
    }

    #[test]
    fn no_docker_entry_means_the_local_target_from_the_environment() {
        let chosen = choose(None, None, &Config::default()).unwrap();
        assert_eq!(chosen.name, "local");
        assert_eq!(chosen.host, None);
    }

    #[test]
    fn both_flags_at_once_are_refused() {
        let err = choose(Some("unix:///x.sock"), Some("box"), &config(TWO)).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
    }

    #[tokio::test]
    async fn a_missing_socket_is_unreachable_and_named() {
        let err = open(
            Some("unix:///nonexistent/ph.sock"),
            None,
            &Config::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, exit::UNREACHABLE);
        assert!(
            err.message.contains("unix:///nonexistent/ph.sock"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn an_address_of_an_unknown_scheme_is_a_usage_error() {
        let err = open(Some("ssh://me@box"), None, &Config::default())
            .await
            .unwrap_err();
        assert_eq!(err.code, exit::USAGE);
    }

    #[tokio::test]
    async fn every_target_is_tried_and_each_failure_kept_under_its_name() {
        let all = open_all(None, None, &config(TWO)).await;
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["edge", "box"]);
        assert!(
            all.iter()
                .all(|(_, r)| r.as_ref().is_err_and(|f| f.code == exit::UNREACHABLE))
        );
    }
}
