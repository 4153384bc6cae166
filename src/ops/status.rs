//! `pilothouse status`: the workloads of every target (or the one named) with their replicas,
//! images, revision and rollout, as an aligned table per target or one JSON object. A target
//! that does not answer is shown as such, the others still are, and the exit code says so.
//!
//! Not for watching: it lists once (no inspect, no stats) and exits; the console is for live
//! views.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::cli::Output;
use crate::config::Config;
use crate::model::Replica;
use crate::ops::target::{self, Failure, Target};
use crate::ops::{exit, json_line, print_out, report};
use crate::paths::Paths;
use crate::platform::docker::connect;
use crate::rollout::revision::REVISION_LABEL;
use crate::rollout::state::{self, Phase};
use crate::store::{Store, Workload};
use crate::text::{display_width, pad, sanitize_plain};

/// What `status --output json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub targets: Vec<TargetStatus>,
}

/// One target: connected with its workloads, or not with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetStatus {
    pub name: String,
    pub address: String,
    pub connected: bool,
    /// Why the target could not be listed; `None` when it was.
    pub error: Option<String>,
    pub workloads: Vec<WorkloadStatus>,
}

/// One workload of a target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadStatus {
    pub name: String,
    /// `compose`, `group`, `swarm` or `container`, as the console's KIND column says.
    pub kind: &'static str,
    /// Replicas asked for: a Swarm service's count, otherwise the containers that exist.
    pub replicas: u64,
    /// Replicas running and not unhealthy or still starting.
    pub ready: u64,
    /// The images its replicas run, each once, in replica order.
    pub images: Vec<String>,
    /// The revision most of its replicas carry (the higher on a tie); `None` before any rollout.
    pub revision: Option<u32>,
    /// The rollout in progress, or how the last one ended; `None` when there never was one.
    pub rollout: Option<RolloutSummary>,
}

/// A rollout as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutSummary {
    /// `progressing`, `paused`, `rolling-back`, `succeeded`, `rolled-back`, `failed`,
    /// `interrupted` (its process ended before it did), or `unreadable` (see the message).
    pub phase: String,
    /// The revision it rolls to; `None` while it starts or when its file cannot be read.
    pub to_revision: Option<u32>,
    pub message: String,
}

/// Runs `status`; the exit code.
pub async fn run(
    docker_host: Option<&str>,
    target: Option<&str>,
    output: Output,
    paths: &Paths,
    config: &Config,
) -> u8 {
    match collect(docker_host, target, paths, config).await {
        Ok((report, code)) => {
            print(&report, output);
            code
        }
        Err(usage) => report(&usage),
    }
}

/// Prints the report as `--output` asks.
pub fn print(report: &StatusReport, output: Output) {
    match output {
        Output::Text => print_out(&text(report)),
        Output::Json => print_out(&json_line(report)),
    }
}

/// Lists the Docker targets: the report and its exit code, or the usage error that stops it.
pub async fn collect(
    docker_host: Option<&str>,
    target: Option<&str>,
    paths: &Paths,
    config: &Config,
) -> Result<(StatusReport, u8), Failure> {
    let opened = target::open_all(docker_host, target, config).await;
    if let Some((_, Err(usage))) = opened
        .iter()
        .find(|(_, r)| r.as_ref().is_err_and(|f| f.code == exit::USAGE))
    {
        return Err(usage.clone());
    }
    let mut targets = Vec::with_capacity(opened.len());
    let mut code = exit::OK;
    for (name, result) in opened {
        let listed = match result {
            Ok(target) => list(&target, &paths.state_dir).await,
            Err(failure) => Err((address_of(docker_host, &name, config), failure)),
        };
        let status = match listed {
            Ok(status) => status,
            Err((address, failure)) => {
                code = worse(code, failure.code);
                TargetStatus {
                    name,
                    address,
                    connected: false,
                    error: Some(failure.message),
                    workloads: Vec::new(),
                }
            }
        };
        targets.push(status);
    }
    Ok((StatusReport { targets }, code))
}

/// The exit code of several outcomes: a target not reached wins over another failure.
pub fn worse(code: u8, other: u8) -> u8 {
    match (code, other) {
        (exit::UNREACHABLE, _) | (_, exit::UNREACHABLE) => exit::UNREACHABLE,
        (exit::OK, other) => other,
        (code, _) => code,
    }
}

/// The address a target that could not be connected to would have been reached at.
fn address_of(docker_host: Option<&str>, name: &str, config: &Config) -> String {
    let host = match docker_host {
        Some(host) => Some(host.to_string()),
        None => config
            .docker_targets()
            .into_iter()
            .find(|t| t.name == name)
            .and_then(|t| t.host),
    };
    let env = std::env::var("DOCKER_HOST").ok();
    connect::resolve_endpoint(host.as_deref(), env.as_deref())
        .map_or_else(|_| host.unwrap_or_default(), |e| e.address().to_string())
}

/// One connected target's workloads, or why it could not be listed (with its address).
async fn list(target: &Target, state_dir: &Path) -> Result<TargetStatus, (String, Failure)> {
    let mut store = target
        .snapshot()
        .await
        .map_err(|f| (target.address.clone(), f))?;
    let workloads = store.workloads().to_vec();
    let workloads = workloads
        .iter()
        .map(|w| workload_status(&store, w, target, state_dir))
        .collect();
    Ok(TargetStatus {
        name: target.name.clone(),
        address: target.address.clone(),
        connected: true,
        error: None,
        workloads,
    })
}

fn workload_status(
    store: &Store,
    workload: &Workload,
    target: &Target,
    state_dir: &Path,
) -> WorkloadStatus {
    let replicas: Vec<&Replica> = workload
        .replicas
        .iter()
        .filter_map(|id| store.replica(&target.name, id))
        .collect();
    let files = state::Files::new(state_dir, &target.engine_id, &workload.id.name);
    WorkloadStatus {
        name: workload.id.name.clone(),
        kind: workload.id.kind.label(),
        replicas: workload.desired as u64,
        ready: workload.ready as u64,
        images: images(&replicas, &workload.image),
        revision: revision(&replicas),
        rollout: rollout(&files),
    }
}

/// The images of the replicas, each once, in replica order; the workload's own image (a
/// Swarm service's) when no replica runs here.
fn images(replicas: &[&Replica], fallback: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for replica in replicas {
        if !replica.image.is_empty() && !out.contains(&replica.image) {
            out.push(replica.image.clone());
        }
    }
    if out.is_empty() && !fallback.is_empty() {
        out.push(fallback.to_string());
    }
    out
}

/// The revision most replicas carry in [`REVISION_LABEL`], the higher on a tie.
fn revision(replicas: &[&Replica]) -> Option<u32> {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for replica in replicas {
        if let Some(revision) = replica
            .labels
            .get(REVISION_LABEL)
            .and_then(|v| v.trim().parse::<u32>().ok())
        {
            *counts.entry(revision).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(revision, count)| (*count, *revision))
        .map(|(revision, _)| revision)
}

/// The rollout of these files: the state file's phase, except that one not finished whose lock
/// nobody holds is `interrupted`; a held lock with no state file yet is a rollout starting.
pub fn rollout(files: &state::Files) -> Option<RolloutSummary> {
    let running = state::is_running(files);
    match state::read_state(&files.state) {
        Ok(Some(found)) => {
            let phase = if !found.phase.is_final() && !running {
                Phase::Interrupted
            } else {
                found.phase
            };
            Some(RolloutSummary {
                phase: phase.as_str().to_string(),
                to_revision: Some(found.to_revision),
                message: found.message,
            })
        }
        Ok(None) if running => Some(RolloutSummary {
            phase: Phase::Progressing.as_str().to_string(),
            to_revision: None,
            message: "starting".to_string(),
        }),
        Ok(None) => None,
        Err(error) => Some(RolloutSummary {
            phase: "unreadable".to_string(),
            to_revision: None,
            message: error,
        }),
    }
}

/// The report as people read it: per target a line with its name and address, then its
/// workloads in aligned columns, or what kept it from being listed.
pub fn text(report: &StatusReport) -> String {
    let mut blocks: Vec<String> = Vec::new();
    for target in &report.targets {
        let mut block = format!(
            "{}  {}",
            sanitize_plain(&target.name),
            sanitize_plain(&target.address)
        );
        match &target.error {
            Some(error) => {
                block.push_str(&format!("\n  not reachable: {}", sanitize_plain(error)));
            }
            None if target.workloads.is_empty() => block.push_str("\n  no workloads"),
            None => block.push_str(&table(&target.workloads)),
        }
        blocks.push(block);
    }
    blocks.join("\n\n")
}

/// The workloads as rows under a header, each column as wide as its widest cell.
fn table(workloads: &[WorkloadStatus]) -> String {
    let header = ["WORKLOAD", "KIND", "READY", "IMAGE", "REVISION", "ROLLOUT"].map(String::from);
    let mut rows: Vec<[String; 6]> = vec![header];
    rows.extend(workloads.iter().map(row));
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(display_width(cell));
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| pad(cell, width))
            .collect();
        out.push_str("\n  ");
        out.push_str(cells.join("  ").trim_end());
    }
    out
}

fn row(workload: &WorkloadStatus) -> [String; 6] {
    let images: Vec<String> = workload.images.iter().map(|i| sanitize_plain(i)).collect();
    [
        sanitize_plain(&workload.name),
        workload.kind.to_string(),
        format!("{}/{}", workload.ready, workload.replicas),
        if images.is_empty() {
            "-".to_string()
        } else {
            images.join(",")
        },
        workload
            .revision
            .map_or_else(|| "-".to_string(), |r| r.to_string()),
        workload
            .rollout
            .as_ref()
            .map_or_else(|| "-".to_string(), rollout_cell),
    ]
}

fn rollout_cell(rollout: &RolloutSummary) -> String {
    let mut cell = rollout.phase.clone();
    if let Some(to) = rollout.to_revision {
        cell.push_str(&format!(" to {to}"));
    }
    if !rollout.message.is_empty() {
        cell.push_str(&format!(": {}", sanitize_plain(&rollout.message)));
    }
    cell
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(image: &str, revision: Option<&str>) -> Replica {
        let mut labels = BTreeMap::new();
        if let Some(revision) = revision {
            labels.insert(REVISION_LABEL.to_string(), revision.to_string());
        }
        Replica {
            id: format!("id-{image}-{revision:?}"),
            name: "r".into(),
            image: image.into(),
            state: "running".into(),
            status: String::new(),
            health: None,
            created: None,
            started_at: None,
            restart_count: 0,
            ports: vec![],
            labels,
            details: None,
            cpu_limit: None,
            workload: None,
        }
    }

    #[test]
    fn the_revision_is_the_one_most_replicas_carry_the_higher_on_a_tie() {
        let (a, b, c) = (
            replica("w:1", Some("1")),
            replica("w:2", Some("2")),
            replica("w:2", Some("2")),
        );
        assert_eq!(revision(&[&a, &b, &c]), Some(2));
        assert_eq!(revision(&[&a, &b]), Some(2));
        let (x, y) = (replica("w:1", Some("1")), replica("w:1", Some("x")));
        assert_eq!(revision(&[&x, &a, &y, &b]), Some(1));
        assert_eq!(revision(&[&replica("w", None)]), None);
    }

    #[test]
    fn images_are_listed_once_in_replica_order_with_the_services_as_fallback() {
        let (a, b, c) = (
            replica("w:1", None),
            replica("w:2", None),
            replica("w:1", None),
        );
        assert_eq!(images(&[&a, &b, &c], "x"), ["w:1", "w:2"]);
        assert_eq!(images(&[], "svc:3"), ["svc:3"]);
        assert!(images(&[], "").is_empty());
    }

    #[test]
    fn an_unreachable_target_beats_other_failures_in_the_exit_code() {
        assert_eq!(worse(exit::OK, exit::OK), exit::OK);
        assert_eq!(worse(exit::OK, exit::FAILED), exit::FAILED);
        assert_eq!(worse(exit::FAILED, exit::UNREACHABLE), exit::UNREACHABLE);
        assert_eq!(worse(exit::UNREACHABLE, exit::FAILED), exit::UNREACHABLE);
    }

    fn state(phase: Phase) -> state::RolloutState {
        let now = chrono::Utc::now();
        state::RolloutState {
            workload: "web".into(),
            host: "unix:///var/run/docker.sock".into(),
            engine_id: "E1".into(),
            kind: state::Kind::Rollout,
            phase,
            from_revision: 1,
            to_revision: 2,
            image: "web:2".into(),
            desired: 2,
            max_surge: 1,
            max_unavailable: 0,
            replicas: vec![],
            steps: vec![],
            analysis: vec![],
            message: "step 1 of 2".into(),
            started: now,
            updated: now,
            pid: 1,
            by: "ana".into(),
        }
    }

    #[test]
    fn an_unfinished_rollout_whose_lock_nobody_holds_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let files = state::Files::new(dir.path(), "E1", "web");
        assert_eq!(rollout(&files), None);
        let held = state::lock(&files, "test").unwrap();
        assert_eq!(rollout(&files).unwrap().phase, "progressing");
        assert_eq!(rollout(&files).unwrap().to_revision, None);
        state::write_state(&files.state, &state(Phase::Paused)).unwrap();
        let shown = rollout(&files).unwrap();
        assert_eq!(
            (shown.phase.as_str(), shown.to_revision),
            ("paused", Some(2))
        );
        drop(held);
        assert_eq!(rollout(&files).unwrap().phase, "interrupted");
        state::write_state(&files.state, &state(Phase::Succeeded)).unwrap();
        assert_eq!(rollout(&files).unwrap().phase, "succeeded");
        std::fs::write(&files.state, "{").unwrap();
        let broken = rollout(&files).unwrap();
        assert_eq!(broken.phase, "unreadable");
        assert!(broken.message.contains("web.json"), "{}", broken.message);
    }

    #[test]
    fn the_text_aligns_columns_and_says_what_kept_a_target_away() {
        let report = StatusReport {
            targets: vec![
                TargetStatus {
                    name: "local".into(),
                    address: "unix:///var/run/docker.sock".into(),
                    connected: true,
                    error: None,
                    workloads: vec![
                        WorkloadStatus {
                            name: "shop/web".into(),
                            kind: "compose",
                            replicas: 3,
                            ready: 2,
                            images: vec!["shop/web:1.4".into()],
                            revision: Some(2),
                            rollout: Some(RolloutSummary {
                                phase: "succeeded".into(),
                                to_revision: Some(2),
                                message: String::new(),
                            }),
                        },
                        WorkloadStatus {
                            name: "b\u{7}x".into(),
                            kind: "group",
                            replicas: 1,
                            ready: 1,
                            images: vec!["busybox".into()],
                            revision: None,
                            rollout: None,
                        },
                    ],
                },
                TargetStatus {
                    name: "edge".into(),
                    address: "tcp://127.0.0.1:1".into(),
                    connected: false,
                    error: Some("cannot reach Docker at tcp://127.0.0.1:1: refused".into()),
                    workloads: vec![],
                },
            ],
        };
        let expected = "local  unix:///var/run/docker.sock\n\
            \x20 WORKLOAD  KIND     READY  IMAGE         REVISION  ROLLOUT\n\
            \x20 shop/web  compose  2/3    shop/web:1.4  2         succeeded to 2\n\
            \x20 b␇x       group    1/1    busybox       -         -\n\
            \n\
            edge  tcp://127.0.0.1:1\n\
            \x20 not reachable: cannot reach Docker at tcp://127.0.0.1:1: refused";
        assert_eq!(text(&report), expected);
    }
}
