//! `pilothouse scale WORKLOAD N`: set a workload's replica count from a pipeline or a script,
//! as an audited action of origin `cli`, refused in read-only mode and while a rollout of the
//! workload runs, with a warning when a scaling rule may change the count again.
//!
//! Not for choosing the count or creating containers: the count is the caller's, and the
//! Docker platform's scale code does the work, as it does for the console.

use std::path::Path;

use serde::Serialize;

use crate::actuator::{ActionKind, ActionRequest, AuditLog, Refusal};
use crate::cli::{Output, TargetArgs};
use crate::config::Config;
use crate::model::{WorkloadId, WorkloadKind};
use crate::ops::target::{self, Failure, Target};
use crate::ops::{exit, json_line, print_out, report};
use crate::paths::Paths;
use crate::rollout::state;
use crate::store::Workload;
use crate::text::sanitize_plain;

/// The origin of the command line's actions in the audit log.
pub const ORIGIN: &str = "cli";

/// What a scale did, as `--output json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scaled {
    pub workload: String,
    pub target: String,
    /// The replicas it had: containers of a Compose service or group, a Swarm service's count.
    pub from: u64,
    pub to: u64,
    /// The platform's reply, such as `scaled web from 1 to 3: created web-2, web-3`.
    pub message: String,
}

/// Runs `scale`; the exit code. `read_only` is `--read-only` or config.toml's `read_only`.
pub async fn run(
    args: &TargetArgs,
    replicas: u64,
    output: Output,
    paths: &Paths,
    read_only: bool,
    config: &Config,
) -> u8 {
    match scale(args, replicas, paths, read_only, config).await {
        Ok(scaled) => {
            match output {
                Output::Text => print_out(&sanitize_plain(&scaled.message)),
                Output::Json => print_out(&json_line(&scaled)),
            }
            exit::OK
        }
        Err(failure) => report(&failure),
    }
}

/// Connects, finds the workload, checks that it may be scaled now, and scales it.
pub async fn scale(
    args: &TargetArgs,
    replicas: u64,
    paths: &Paths,
    read_only: bool,
    config: &Config,
) -> Result<Scaled, Failure> {
    let target = target::open(args.docker_host.as_deref(), args.target.as_deref(), config).await?;

    let workload = find(&target, &args.workload).await?;

    let from = workload.desired as u64;
    let request = ActionRequest {
        workload: workload.id.clone(),
        kind: ActionKind::Scale { from, to: replicas },
        origin: ORIGIN,
        // Running the command is the operator's yes: a pipeline has nobody to ask.
        confirmed: true,
        reason: None,
    };
    let audit = AuditLog::new(paths.audit_log());
    if let Some(refusal) = refusal(&request, &target, paths, read_only) {
        audit.record(&request, "refused", &refusal);
        return Err(Failure::failed(refusal));
    }

    for warning in rule_warnings(&paths.rules_dir(), &workload.id) {
        eprintln!("pilothouse: warning: {warning}");
    }

    let lb = crate::autoscaler::setup::load_balancer(config).map_err(Failure::usage)?;
    // Held while scaling, so a rollout of the workload started meanwhile is refused.
    let files = state::Files::new(&paths.state_dir, &target.engine_id, &request.workload.name);
    let holder = format!(
        "scale pid {} ({}@{})",
        std::process::id(),
        crate::actuator::current_user(),
        gethostname::gethostname().to_string_lossy()
    );
    let _lock = match state::lock(&files, &holder) {
        Ok(lock) => lock,
        Err(busy) => {
            let refusal = format!("{}: {busy}", sanitize_plain(&request.workload.name));
            audit.record(&request, "refused", &refusal);
            return Err(Failure::failed(refusal));
        }
    };
    let message = act(&audit, &request, &target, replicas, lb.as_ref()).await?;
    Ok(Scaled {
        workload: workload.id.name,
        target: target.name,
        from,
        to: replicas,
        message,
    })
}

/// The workload named `name` on the target; one that cannot be scaled (a standalone container)
/// or that does not exist is a failure that says so, with names close to it.
/// The workload named `name` on `target`, as the console groups containers: a Compose service,
/// a group or a Swarm service; a standalone container, or no match, is an error with the names
/// that come close.
pub async fn find(target: &Target, name: &str) -> Result<Workload, Failure> {
    let mut store = target.snapshot().await?;
    let workloads = store.workloads();
    let matching: Vec<&Workload> = workloads.iter().filter(|w| w.id.name == name).collect();
    // The store orders kinds Compose, group, Swarm service, container: a scalable one first.
    if let Some(found) = matching.iter().find(|w| w.id.kind.scalable()) {
        return Ok((*found).clone());
    }
    let shown = sanitize_plain(name);
    if !matching.is_empty() {
        return Err(Failure::failed(format!(
            "{shown} on {} is a standalone container, which cannot be scaled or rolled out; \
             give it a pilothouse.group label to make it a group",
            target.name
        )));
    }
    let names: Vec<&str> = workloads
        .iter()
        .filter(|w| w.id.kind.scalable())
        .map(|w| w.id.name.as_str())
        .collect();
    let close = close_names(name, &names);
    let hint = if close.is_empty() {
        "; name a Compose service PROJECT/SERVICE, and a group or a Swarm service by its name"
            .to_string()
    } else {
        let close: Vec<String> = close.iter().map(|n| sanitize_plain(n)).collect();
        format!("; did you mean {}?", close.join(", "))
    };
    Err(Failure::failed(format!(
        "no workload named {shown} on {} ({}){hint}",
        target.name, target.address
    )))
}

/// Why the scale may not run now, if it may not: read-only mode, a count of 0 for a workload
/// that would not come back from it, or a rollout of the workload in progress (which owns the
/// replica count until it ends).
fn refusal(
    request: &ActionRequest,
    target: &Target,
    paths: &Paths,
    read_only: bool,
) -> Option<String> {
    if read_only {
        return Some(Refusal::ReadOnly(request.describe()).to_string());
    }
    if let Some(refused) = zero_refusal(request) {
        return Some(refused);
    }
    let files = state::Files::new(&paths.state_dir, &target.engine_id, &request.workload.name);
    state::is_running(&files).then(|| {
        format!(
            "a rollout of {} is in progress; scale it after it ends (see pilothouse rollout \
             status {})",
            sanitize_plain(&request.workload.name),
            sanitize_plain(&request.workload.name)
        )
    })
}

/// The refusal of a scale to 0 of a Compose service or a group: it removes every container,
/// and with them the configuration a later scale-up copies, so nothing could scale it up
/// again. The console asks first; a command line has nobody to ask. A Swarm service keeps its
/// spec at 0 replicas, so it may go to 0.
fn zero_refusal(request: &ActionRequest) -> Option<String> {
    let to_zero = matches!(request.kind, ActionKind::Scale { to: 0, .. });
    let keeps_spec = request.workload.kind == WorkloadKind::SwarmService;
    (to_zero && !keeps_spec).then(|| {
        format!(
            "cannot scale {} to 0 from the command line: that removes every container, and with \
             them the configuration a later scale copies; stop them with docker stop, or scale \
             to 0 in the console, which asks first",
            sanitize_plain(&request.workload.name)
        )
    })
}

/// Scales, with an audit line before (so a scale cut short leaves a trace) and one after,
/// keeping `lb` in step when the workload's replicas name a backend.
async fn act(
    audit: &AuditLog,
    request: &ActionRequest,
    target: &Target,
    replicas: u64,
    lb: Option<&crate::lb::haproxy::Haproxy>,
) -> Result<String, Failure> {
    audit.record(request, "started", "");
    let result =
        crate::platform::docker::scale::scale_with(&target.docker, &request.workload, replicas, lb)
            .await;
    match &result {
        Ok(message) => audit.record(request, "ok", message),
        Err(message) => audit.record(request, "failed", message),
    }
    tracing::info!(action = %request.describe(), ok = result.is_ok(), "scale from the command line");
    result.map_err(|message| Failure::failed(sanitize_plain(&message)))
}

/// A warning for each rule of `rules_dir` that scales `workload`: its autoscaler, wherever it
/// runs, may set another count at its next cycle.
pub fn rule_warnings(rules_dir: &Path, workload: &WorkloadId) -> Vec<String> {
    let (rules, _errors) = crate::autoscaler::load_dir(rules_dir);
    rules
        .iter()
        .filter(|loaded| loaded.rule.target.matches(workload))
        .map(|loaded| {
            format!(
                "rule {} ({}) scales {} on {} between {} and {} replicas; an autoscaler running \
                 it may change the count again at its next cycle",
                sanitize_plain(&loaded.rule.name),
                shown_path(&loaded.file),
                sanitize_plain(&workload.name),
                workload.target,
                loaded.rule.min_replicas,
                loaded.rule.max_replicas
            )
        })
        .collect()
}

fn shown_path(path: &Path) -> String {
    sanitize_plain(&path.display().to_string())
}

/// Up to five of `names` that look like `wanted`: one holds the other, or they differ by at
/// most one edit per four characters (at least one); closest first.
pub fn close_names<'a>(wanted: &str, names: &[&'a str]) -> Vec<&'a str> {
    let wanted_lower = wanted.to_lowercase();
    // One edit per four characters, at least one: `db` is not a near miss of `web`.
    let near = (wanted_lower.chars().count() / 4).max(1);
    let mut scored: Vec<(usize, &str)> = names
        .iter()
        .filter_map(|name| {
            let lower = name.to_lowercase();
            let distance = edit_distance(&wanted_lower, &lower);
            let holds = !wanted_lower.is_empty()
                && (lower.contains(&wanted_lower) || wanted_lower.contains(&lower));
            (distance <= near || holds).then_some((distance, *name))
        })
        .collect();
    scored.sort();
    scored.dedup();
    scored.into_iter().take(5).map(|(_, name)| name).collect()
}

/// Levenshtein distance in chars; names are short, so the quadratic table is small.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            let cost = usize::from(ca != *cb);
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + cost);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_near_misses_and_names_that_hold_each_other() {
        let names = ["shop/web", "shop/worker", "batch", "web-canary", "db"];
        assert_eq!(close_names("shop/wbe", &names), ["shop/web"]);
        assert_eq!(close_names("web", &names), ["shop/web", "web-canary"]);
        assert_eq!(close_names("BATCH", &names), ["batch"]);
        assert!(close_names("zzzzzz", &names).is_empty());
    }

    #[test]
    fn only_a_swarm_service_may_be_scaled_to_zero() {
        let request = |kind, to| ActionRequest {
            workload: WorkloadId {
                target: "local".into(),
                kind,
                name: "web".into(),
            },
            kind: ActionKind::Scale { from: 2, to },
            origin: ORIGIN,
            confirmed: true,
            reason: None,
        };
        for kind in [WorkloadKind::Compose, WorkloadKind::Group] {
            let refused = zero_refusal(&request(kind, 0)).expect("refused");
            assert!(refused.starts_with("cannot scale web to 0"), "{refused}");
            assert_eq!(zero_refusal(&request(kind, 1)), None);
        }
        assert_eq!(zero_refusal(&request(WorkloadKind::SwarmService, 0)), None);
    }

    #[test]
    fn edit_distance_counts_inserts_deletes_and_changes() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("web", "web"), 0);
        assert_eq!(edit_distance("wbe", "web"), 2);
    }

    #[test]
    fn a_rule_for_the_workload_gives_a_warning_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let rule = "name: web\ntarget: { platform: docker, host: local, workload: shop/web }\n\
                    minReplicas: 2\nmaxReplicas: 6\nmetrics:\n  - name: cpu\n    cpu: { \
                    utilization: 70 }\n";
        std::fs::write(dir.path().join("web.yaml"), rule).unwrap();
        let id = |target: &str, name: &str| WorkloadId {
            target: target.into(),
            kind: WorkloadKind::Compose,
            name: name.into(),
        };
        let warnings = rule_warnings(dir.path(), &id("local", "shop/web"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("rule web (") && warnings[0].contains("between 2 and 6"),
            "{}",
            warnings[0]
        );
        assert!(rule_warnings(dir.path(), &id("edge", "shop/web")).is_empty());
        assert!(rule_warnings(dir.path(), &id("local", "shop/api")).is_empty());
    }
}
