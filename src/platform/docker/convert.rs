//! Pure conversions from the engine's JSON (as bollard types) to the model: a container summary
//! to a [`Replica`], an inspect to its details and CPU limit, a status line to a [`Health`], a
//! Swarm service to a [`SwarmService`].
//!
//! Not for talking to the engine: every function here takes values and returns values, so the
//! unit tests below can feed them hand-made JSON.

use std::collections::BTreeMap;

use bollard::models::{
    ContainerInspectResponse, ContainerSummary, HealthStatusEnum, HostConfig, PortTypeEnum, Service,
};
use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::model::{
    CpuLimit, Health, PortMapping, Replica, ReplicaDetails, Security, SwarmService,
};

/// A replica as the container list describes it: everything but what only an inspect tells.
pub fn replica_from_summary(summary: &ContainerSummary) -> Replica {
    let status = summary.status.clone().unwrap_or_default();
    Replica {
        id: summary.id.clone().unwrap_or_default(),
        name: summary_name(summary),
        image: summary.image.clone().unwrap_or_default(),
        state: summary.state.clone().unwrap_or_default(),
        health: health_from_status(&status),
        status,
        created: summary
            .created
            .and_then(|secs| Utc.timestamp_opt(secs, 0).single()),
        started_at: None,
        restart_count: 0,
        ports: ports_from_summary(summary),
        labels: summary
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        details: None,
        cpu_limit: None,
        workload: None,
    }
}

/// The container's primary name without the leading `/`; the list may give several (links).
fn summary_name(summary: &ContainerSummary) -> String {
    let names = summary.names.as_deref().unwrap_or_default();
    // Link aliases look like `/other/alias`; the real name has a single leading slash.
    let name = names
        .iter()
        .find(|n| n.matches('/').count() == 1)
        .or_else(|| names.first())
        .map(String::as_str)
        .unwrap_or_default();
    name.trim_start_matches('/').to_string()
}

/// Published and exposed ports, one per (port, protocol, host port): the list repeats a binding
/// once per address family (`0.0.0.0` and `::`), which the operator does not need twice.
fn ports_from_summary(summary: &ContainerSummary) -> Vec<PortMapping> {
    let mut out: Vec<PortMapping> = Vec::new();
    for port in summary.ports.iter().flatten() {
        let protocol = match port.typ {
            Some(PortTypeEnum::UDP) => "udp",
            Some(PortTypeEnum::SCTP) => "sctp",
            _ => "tcp",
        };
        let mapping = PortMapping {
            container_port: port.private_port,
            protocol: protocol.to_string(),
            host_port: port.public_port.filter(|p| *p != 0),
            host_ip: port.ip.clone().filter(|ip| !ip.is_empty()),
        };
        let seen = out.iter().any(|m| {
            m.container_port == mapping.container_port
                && m.protocol == mapping.protocol
                && m.host_port == mapping.host_port
        });
        if !seen {
            out.push(mapping);
        }
    }
    out.sort_by(|a, b| (a.container_port, &a.protocol).cmp(&(b.container_port, &b.protocol)));
    out
}

/// Health from the list's status line: `Up 3 hours (healthy)`, `Up 2 seconds (health:
/// starting)`, `Up 1 minute (unhealthy)`; `None` when the container has no health check.
pub fn health_from_status(status: &str) -> Option<Health> {
    if status.contains("(healthy)") {
        Some(Health::Healthy)
    } else if status.contains("(unhealthy)") {
        Some(Health::Unhealthy)
    } else if status.contains("(health: starting)") {
        Some(Health::Starting)
    } else {
        None
    }
}

/// Health from an inspect's `State.Health.Status`.
pub fn health_from_inspect(inspect: &ContainerInspectResponse) -> Option<Health> {
    let status = inspect.state.as_ref()?.health.as_ref()?.status?;
    match status {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
    }
}

/// An engine timestamp (RFC 3339); the engine writes `0001-01-01T00:00:00Z` for "never".
pub fn parse_engine_time(text: &str) -> Option<DateTime<Utc>> {
    let time = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (time.year() > 1970).then_some(time)
}

/// Completes a listed replica with what its inspect tells: start time, restarts, health, and
/// the details (env, security, command) and the CPU limit.
pub fn merge_inspect(mut replica: Replica, inspect: &ContainerInspectResponse) -> Replica {
    let state = inspect.state.as_ref();
    // The inspect is the fresher of the two reads: the list is served from a copy the engine
    // updates after it reports an event, so right after `die` it may still say running.
    if let Some(status) = state.and_then(|s| s.status).map(|s| s.to_string())
        && !status.is_empty()
    {
        replica.state = status;
    }
    replica.started_at = state
        .and_then(|s| s.started_at.as_deref())
        .and_then(parse_engine_time);
    replica.restart_count = inspect.restart_count.unwrap_or(0).max(0).unsigned_abs();
    if let Some(health) = health_from_inspect(inspect) {
        replica.health = Some(health);
    }
    if replica.created.is_none() {
        replica.created = inspect.created.as_deref().and_then(parse_engine_time);
    }
    replica.details = Some(details_from_inspect(inspect));
    replica.cpu_limit = Some(cpu_limit_from_inspect(inspect));
    replica
}

/// The CFS period the kernel uses when a container sets a quota without one: 100 ms.
const DEFAULT_CPU_PERIOD_MICROS: i64 = 100_000;

/// The CPU quota from HostConfig: `NanoCpus` (`--cpus`, 1e9 per core), else `CpuQuota` over
/// `CpuPeriod` (`--cpu-quota`, `--cpu-period`); the engine refuses to set both. A quota of 0
/// or -1 means none.
///
/// `CpusetCpus` (`--cpuset-cpus`) is ignored: it pins the replica to some cores but sets no
/// quota, so a replica pinned to two cores without `--cpus` counts as unlimited and its
/// utilization is a percent of one core.
pub fn cpu_limit_from_inspect(inspect: &ContainerInspectResponse) -> CpuLimit {
    // The engine always sends HostConfig; a missing one has no limits in it.
    let Some(host) = inspect.host_config.as_ref() else {
        return CpuLimit::Unlimited;
    };
    if let Some(nano) = host.nano_cpus.filter(|n| *n > 0) {
        return CpuLimit::Cores(nano as f64 / 1e9);
    }
    if let Some(quota) = host.cpu_quota.filter(|q| *q > 0) {
        let period = host
            .cpu_period
            .filter(|p| *p > 0)
            .unwrap_or(DEFAULT_CPU_PERIOD_MICROS);
        return CpuLimit::Cores(quota as f64 / period as f64);
    }
    CpuLimit::Unlimited
}

/// Env, security settings and the command a container runs.
pub fn details_from_inspect(inspect: &ContainerInspectResponse) -> ReplicaDetails {
    let config = inspect.config.as_ref();
    let env = config
        .and_then(|c| c.env.as_ref())
        .into_iter()
        .flatten()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (pair.clone(), String::new()),
        })
        .collect();
    let mut command: Vec<String> = inspect
        .path
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect();
    command.extend(inspect.args.iter().flatten().cloned());
    ReplicaDetails {
        env,
        security: security_from_inspect(inspect),
        command,
    }
}

/// The security settings an operator should see, from HostConfig, Config.User and the
/// AppArmor profile the engine applied.
pub fn security_from_inspect(inspect: &ContainerInspectResponse) -> Security {
    let default_host = HostConfig::default();
    let host = inspect.host_config.as_ref().unwrap_or(&default_host);
    let opts = host.security_opt.as_deref().unwrap_or_default();
    let applied_apparmor = inspect.app_armor_profile.clone().filter(|p| !p.is_empty());
    Security {
        privileged: host.privileged.unwrap_or(false),
        user: inspect
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default(),
        seccomp: security_opt(opts, "seccomp").map(|v| seccomp_label(&v)),
        apparmor: security_opt(opts, "apparmor").or(applied_apparmor),
        cap_add: host.cap_add.clone().unwrap_or_default(),
        read_only_rootfs: host.readonly_rootfs.unwrap_or(false),
        network_mode: host.network_mode.clone().filter(|m| !m.is_empty()),
        pid_mode: host.pid_mode.clone().filter(|m| !m.is_empty()),
    }
}

/// The value of `KEY=value` (or the older `KEY:value`) in HostConfig.SecurityOpt.
fn security_opt(opts: &[String], key: &str) -> Option<String> {
    opts.iter().find_map(|opt| {
        let rest = opt.strip_prefix(key)?;
        let value = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':'))?;
        Some(value.to_string())
    })
}

/// A seccomp option holds a profile name or, when set from a file, the whole JSON profile.
fn seccomp_label(value: &str) -> String {
    if value.trim_start().starts_with('{') {
        "custom".to_string()
    } else {
        value.to_string()
    }
}

/// A Swarm service as the manager lists it.
pub fn swarm_service(service: &Service) -> SwarmService {
    let spec = service.spec.as_ref();
    let image = spec
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.as_deref())
        .unwrap_or_default();
    // The manager pins images by digest (`web:1.4@sha256:...`); the tag is what people read.
    let image = image
        .split_once('@')
        .map_or(image, |(name, _)| name)
        .to_string();
    let desired = spec
        .and_then(|s| s.mode.as_ref())
        .and_then(|m| m.replicated.as_ref())
        .map(|r| r.replicas.unwrap_or(1).max(0).unsigned_abs());
    SwarmService {
        id: service.id.clone().unwrap_or_default(),
        name: spec.and_then(|s| s.name.clone()).unwrap_or_default(),
        image,
        desired,
        version: service.version.as_ref().and_then(|v| v.index).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary(value: serde_json::Value) -> ContainerSummary {
        serde_json::from_value(value).expect("summary JSON")
    }

    fn inspect(value: serde_json::Value) -> ContainerInspectResponse {
        serde_json::from_value(value).expect("inspect JSON")
    }

    #[test]
    fn a_listed_container_becomes_a_replica_with_its_name_ports_and_labels() {
        let s = summary(json!({
            "Id": "abc123",
            "Names": ["/shop-web-1"],
            "Image": "shop/web:1.4",
            "Created": 1_700_000_000,
            "State": "running",
            "Status": "Up 3 hours (healthy)",
            "Ports": [
                {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                {"PrivatePort": 53, "Type": "udp"}
            ],
            "Labels": {"com.docker.compose.project": "shop", "com.docker.compose.service": "web"}
        }));
        let r = replica_from_summary(&s);
        assert_eq!(r.id, "abc123");
        assert_eq!(r.name, "shop-web-1");
        assert_eq!(r.image, "shop/web:1.4");
        assert_eq!(r.state, "running");
        assert_eq!(r.health, Some(Health::Healthy));
        assert_eq!(r.created, Utc.timestamp_opt(1_700_000_000, 0).single());
        assert_eq!(
            r.ports.len(),
            2,
            "the IPv6 twin of 8080 is folded: {:?}",
            r.ports
        );
        assert_eq!(r.ports[0].to_string(), "53/udp");
        assert_eq!(r.ports[1].to_string(), "8080->80/tcp");
        assert_eq!(r.labels["com.docker.compose.project"], "shop");
        assert!(r.details.is_none());
    }

    #[test]
    fn the_real_name_wins_over_link_aliases() {
        let s = summary(json!({"Id": "x", "Names": ["/app/db", "/db"]}));
        assert_eq!(replica_from_summary(&s).name, "db");
    }

    #[test]
    fn health_is_read_from_every_status_form() {
        assert_eq!(
            health_from_status("Up 3 hours (healthy)"),
            Some(Health::Healthy)
        );
        assert_eq!(
            health_from_status("Up 1 second (health: starting)"),
            Some(Health::Starting)
        );
        assert_eq!(
            health_from_status("Up 5 minutes (unhealthy)"),
            Some(Health::Unhealthy)
        );
        assert_eq!(health_from_status("Up 5 minutes"), None);
        assert_eq!(health_from_status("Exited (0) 2 hours ago"), None);
    }

    #[test]
    fn the_inspect_state_wins_over_a_list_entry_that_still_says_running() {
        let listed = summary(json!({"Id": "abc", "State": "running", "Status": "Up 2 seconds"}));
        let i = inspect(json!({
            "Id": "abc",
            "State": {"Status": "exited", "ExitCode": 3, "StartedAt": "2024-05-01T10:00:01Z"}
        }));
        let r = merge_inspect(replica_from_summary(&listed), &i);
        assert_eq!(r.state, "exited");
        assert!(!r.is_ready());
    }

    #[test]
    fn an_inspect_gives_start_time_restarts_health_and_details() {
        let i = inspect(json!({
            "Id": "abc123",
            "Created": "2024-05-01T10:00:00.5Z",
            "Path": "/bin/sh",
            "Args": ["-c", "sleep 1000"],
            "State": {
                "Status": "running",
                "StartedAt": "2024-05-01T10:00:01.25Z",
                "Health": {"Status": "unhealthy", "FailingStreak": 3}
            },
            "RestartCount": 4,
            "AppArmorProfile": "docker-default",
            "Config": {"User": "1000:1000", "Env": ["PATH=/bin", "DB_PASSWORD=hunter2", "EMPTY"]},
            "HostConfig": {
                "Privileged": true,
                "SecurityOpt": ["seccomp=unconfined", "label=disable"],
                "CapAdd": ["NET_ADMIN"],
                "ReadonlyRootfs": true,
                "NetworkMode": "host",
                "PidMode": ""
            }
        }));
        let base = replica_from_summary(&summary(json!({"Id": "abc123", "Status": "Up"})));
        let r = merge_inspect(base, &i);
        assert_eq!(
            r.started_at.map(|t| t.to_rfc3339()),
            Some("2024-05-01T10:00:01.250+00:00".into())
        );
        assert_eq!(r.restart_count, 4);
        assert_eq!(r.health, Some(Health::Unhealthy));
        assert_eq!(r.created.map(|t| t.timestamp()), Some(1_714_557_600));
        let d = r.details.expect("details after inspect");
        assert_eq!(d.command, vec!["/bin/sh", "-c", "sleep 1000"]);
        assert_eq!(
            d.env,
            vec![
                ("PATH".to_string(), "/bin".to_string()),
                ("DB_PASSWORD".to_string(), "hunter2".to_string()),
                ("EMPTY".to_string(), String::new()),
            ]
        );
        let s = d.security;
        assert!(s.privileged);
        assert_eq!(s.user, "1000:1000");
        assert_eq!(s.seccomp.as_deref(), Some("unconfined"));
        assert_eq!(s.apparmor.as_deref(), Some("docker-default"));
        assert_eq!(s.cap_add, vec!["NET_ADMIN"]);
        assert!(s.read_only_rootfs);
        assert_eq!(s.network_mode.as_deref(), Some("host"));
        assert_eq!(s.pid_mode, None);
    }

    #[test]
    fn an_apparmor_security_opt_wins_over_the_applied_profile_and_json_seccomp_is_custom() {
        let i = inspect(json!({
            "AppArmorProfile": "docker-default",
            "HostConfig": {"SecurityOpt": ["apparmor:unconfined", "seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"]}
        }));
        let s = security_from_inspect(&i);
        assert_eq!(s.apparmor.as_deref(), Some("unconfined"));
        assert_eq!(s.seccomp.as_deref(), Some("custom"));
        assert!(!s.privileged);
        assert_eq!(s.user, "");
    }

    #[test]
    fn the_cpu_limit_comes_from_nano_cpus_else_quota_over_period_else_there_is_none() {
        let cases = [
            // --cpus 0.5: 500_000_000 / 1e9 = 0.5 core
            (json!({"NanoCpus": 500_000_000_i64}), CpuLimit::Cores(0.5)),
            // --cpus 2: 2e9 / 1e9 = 2 cores
            (json!({"NanoCpus": 2_000_000_000_i64}), CpuLimit::Cores(2.0)),
            // --cpu-quota 25000 --cpu-period 50000: 25_000 / 50_000 = 0.5 core
            (
                json!({"CpuQuota": 25_000, "CpuPeriod": 50_000}),
                CpuLimit::Cores(0.5),
            ),
            // --cpu-quota 150000 alone: 150_000 / the kernel's 100_000 = 1.5 cores
            (
                json!({"CpuQuota": 150_000, "CpuPeriod": 0}),
                CpuLimit::Cores(1.5),
            ),
            // what the engine reports for `docker run` without CPU flags
            (
                json!({"NanoCpus": 0, "CpuQuota": 0, "CpuPeriod": 0, "CpusetCpus": ""}),
                CpuLimit::Unlimited,
            ),
            // a quota of -1 is the kernel's "no quota"
            (
                json!({"CpuQuota": -1, "CpuPeriod": 100_000}),
                CpuLimit::Unlimited,
            ),
            // pinned to two cores, but no quota: counted as unlimited
            (json!({"CpusetCpus": "0,1"}), CpuLimit::Unlimited),
        ];
        for (host, want) in cases {
            let i = inspect(json!({"Id": "abc", "HostConfig": host.clone()}));
            assert_eq!(cpu_limit_from_inspect(&i), want, "HostConfig {host}");
        }
    }

    #[test]
    fn a_listed_replica_has_no_cpu_limit_until_its_inspect_gives_one() {
        let listed = replica_from_summary(&summary(json!({"Id": "abc", "State": "running"})));
        assert_eq!(listed.cpu_limit, None);
        let i = inspect(json!({"Id": "abc", "HostConfig": {"NanoCpus": 250_000_000_i64}}));
        assert_eq!(
            merge_inspect(listed, &i).cpu_limit,
            Some(CpuLimit::Cores(0.25))
        );
    }

    #[test]
    fn a_never_started_container_has_no_start_time() {
        assert_eq!(parse_engine_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_engine_time("not a time"), None);
        assert!(parse_engine_time("2024-01-01T00:00:00.000000001Z").is_some());
    }

    #[test]
    fn a_replicated_swarm_service_keeps_its_count_version_and_tag() {
        let svc: Service = serde_json::from_value(json!({
            "ID": "svc1",
            "Version": {"Index": 42},
            "Spec": {
                "Name": "web",
                "TaskTemplate": {"ContainerSpec": {"Image": "shop/web:1.4@sha256:0123abcd"}},
                "Mode": {"Replicated": {"Replicas": 3}}
            }
        }))
        .expect("service JSON");
        let s = swarm_service(&svc);
        assert_eq!(
            s,
            SwarmService {
                id: "svc1".into(),
                name: "web".into(),
                image: "shop/web:1.4".into(),
                desired: Some(3),
                version: 42,
            }
        );
    }

    #[test]
    fn a_global_swarm_service_has_no_desired_count() {
        let svc: Service = serde_json::from_value(json!({
            "ID": "svc2",
            "Version": {"Index": 7},
            "Spec": {"Name": "agent", "Mode": {"Global": {}}}
        }))
        .expect("service JSON");
        assert_eq!(swarm_service(&svc).desired, None);
    }
}
