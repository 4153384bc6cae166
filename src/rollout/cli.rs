//! `pilothouse rollout`, `rollback` and `history`: the commands a pipeline deploys through.
//!
//! A rollout runs in the process that started it: with `--wait` in the foreground, printing its
//! progress; without, in a child process of its own that outlives the command, writing to a log
//! in the state directory. Either way its state file tells `rollout status`, the console and
//! other commands what it is doing.
//!
//! Not for the steps themselves ([`super::run`]) or the revision arithmetic
//! ([`super::history`], [`super::revision`]).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use bollard::container::InspectContainerOptions;
use chrono::Utc;
use serde_json::json;
use tokio::sync::mpsc;

use super::analysis::{Analysis, Condition};
use super::history::{self, History};
use super::plan::{DEFAULT_MAX_SURGE, DEFAULT_MAX_UNAVAILABLE, IntOrPercent};
use super::probe::Probe;
use super::revision::{self, HASH_LABEL, ImageDefaults, Template};
use super::run::{self, Goal, Job, LbBinding, Outcome};
use super::state::{self, Control, Files, Kind, Phase, RolloutState};
use crate::actuator::{ActionKind, ActionRequest, AuditLog, current_user};
use crate::cli::{Command, Output, RolloutCommand, RunArgs, TargetArgs};
use crate::config::Config;
use crate::lb::haproxy::Haproxy;
use crate::metrics::PrometheusSource;
use crate::model::{WorkloadId, WorkloadKind};
use crate::ops::exit;
use crate::ops::target::{self, Failure, Target};
use crate::paths::Paths;
use crate::platform::docker::scale::{self, Members};
use crate::platform::kubernetes::Selection;
use crate::text::sanitize_plain;

/// The variable a rollout started in the background is marked with, so it does not start
/// another.
pub(crate) const BACKGROUND_VAR: &str = "PILOTHOUSE_ROLLOUT_BACKGROUND";
/// Time between analysis readings when --analysis-interval is not given.
const DEFAULT_ANALYSIS_INTERVAL: Duration = Duration::from_secs(10);
/// How long starting a rollout in the background waits for it to report.
const BACKGROUND_START: Duration = Duration::from_secs(30);

/// Runs `rollout`, `rollback` or `history`; the exit code. A Kubernetes context chosen in
/// `kube` (`--context` or `--kubeconfig`) runs them there instead (see [`super::kube_cli`]).
pub async fn run(command: Command, paths: &Paths, config: &Config, kube: &Selection) -> u8 {
    if super::kube_cli::chosen(kube) {
        return super::kube_cli::run(command, paths, config, kube).await;
    }
    let result = match command {
        Command::Rollout {
            command: Some(sub), ..
        } => match sub {
            RolloutCommand::Status {
                target,
                wait,
                output,
            } => status(&target, wait, output, paths, config).await,
            RolloutCommand::Pause { target } => {
                control(&target, Control::Pause, paths, config).await
            }
            RolloutCommand::Resume { target } => {
                control(&target, Control::Resume, paths, config).await
            }
            RolloutCommand::Abort { target } => {
                control(&target, Control::Abort, paths, config).await
            }
        },
        Command::Rollout {
            command: None,
            start,
        } => match (start.target, start.image) {
            (Some(_), Some(image)) if image.trim().is_empty() => Err(usage(
                "--image is empty: name the image of the new revision",
            )),
            (Some(target), Some(image)) => {
                let goal = Wanted::Image(image);
                start_rollout(&target, goal, &start.run, paths, config).await
            }
            _ => Err(usage("rollout needs a WORKLOAD and --image IMAGE")),
        },
        Command::Rollback {
            target,
            to_revision,
            run,
        } => start_rollout(&target, Wanted::Revision(to_revision), &run, paths, config).await,
        Command::History { target, output } => show_history(&target, output, paths, config).await,
        other => Err(usage(&format!("{other:?} is not a rollout command"))),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("pilothouse: {}", sanitize_plain(&failure.message));
            failure.code
        }
    }
}

fn usage(message: &str) -> Failure {
    Failure {
        code: exit::USAGE,
        message: message.to_string(),
    }
}

fn failed(message: impl Into<String>) -> Failure {
    Failure {
        code: exit::FAILED,
        message: message.into(),
    }
}

/// What a rollout goes to: a new image, or a recorded revision (the one before the current
/// when no number is given).
enum Wanted {
    Image(String),
    Revision(Option<u32>),
}

/// A workload found on its target, with its history and the revision it runs now.
struct Found {
    target: Target,
    workload: WorkloadId,
    members: Members,
    files: Files,
    history_path: std::path::PathBuf,
    history: History,
    /// The template most of its replicas run (the newest replica's among equals), and its hash.
    current: Template,
    current_hash: String,
    /// Every template its replicas run, with how many run it, the most first.
    running: Vec<(String, Template, usize)>,
    /// Whether every replica is running (none created and never started, none exited).
    all_running: bool,
}

impl Found {
    /// The number of the revision running now (recorded when the history was empty).
    fn current_number(&self) -> u32 {
        self.history
            .by_hash(&self.current_hash)
            .map(|r| r.number)
            .unwrap_or(0)
    }
}

/// Connects, finds the workload and reads its history; an empty history gets the workload's
/// template as revision 1 (written only by `record_first`).
async fn find(args: &TargetArgs, paths: &Paths, config: &Config) -> Result<Found, Failure> {
    let target = target::open(args.docker_host.as_deref(), args.target.as_deref(), config).await?;
    let name = args.workload.trim();
    if name.is_empty() {
        return Err(usage("the workload name is empty"));
    }
    let workload = crate::ops::scale::find(&target, name).await?.id;
    if workload.kind == WorkloadKind::SwarmService {
        return Err(failed(format!(
            "{} on {} is a Swarm service: roll it out with `docker service update --image`",
            sanitize_plain(name),
            target.name
        )));
    }
    let members = Members::of(&workload).map_err(failed)?;
    let listed = scale::list_members(&target.docker, &members)
        .await
        .map_err(|e| Failure {
            code: exit::UNREACHABLE,
            message: format!("listing the containers on {} failed: {e}", target.address),
        })?;
    if listed.is_empty() {
        return Err(failed(format!(
            "{} on {} has no replica left: there is nothing to roll out, and no configuration \
             to copy",
            sanitize_plain(name),
            target.name
        )));
    }
    let Inspected {
        running,
        all_running,
        labelled,
    } = templates_running(&target, &listed).await?;
    let (current_hash, current, _) = running[0].clone();
    let files = Files::new(&paths.state_dir, &target.engine_id, name);
    let history_path = History::path(&paths.state_dir, &target.engine_id, name);
    let mut history = History::load(&history_path, name).map_err(failed)?;
    if history.revisions.is_empty() {
        history = recover_history(name, &labelled);
    }
    // Templates no revision records (before a first rollout, or changed by hand) are recorded,
    // the one most replicas run last, so it is the newest.
    for (hash, template, _) in running.iter().rev() {
        if history.by_hash(hash).is_none() && history.by_hash(&template.hash()).is_none() {
            let cause = if history.revisions.is_empty() {
                "the workload as it was before its first rollout"
            } else {
                "found running; not started by a rollout"
            };
            history.record(template.clone(), cause, Utc::now(), history::DEFAULT_KEEP);
        }
    }
    let known = |hash: &str, template: &Template| match history.by_hash(hash) {
        Some(_) => hash.to_string(),
        None => template.hash(),
    };
    let running: Vec<(String, Template, usize)> = running
        .iter()
        .map(|(hash, template, count)| (known(hash, template), template.clone(), *count))
        .collect();
    let current_hash = known(&current_hash, &current);
    Ok(Found {
        target,
        workload,
        members,
        files,
        history_path,
        history,
        current,
        current_hash,
        running,
        all_running,
    })
}

/// What one look at a workload's replicas tells.
struct Inspected {
    /// Each template run, with its hash and how many run it (see [`templates_running`]).
    running: Vec<(String, Template, usize)>,
    /// Whether every replica is running.
    all_running: bool,
    /// Each replica's template with the revision number its label gives, for rebuilding a lost
    /// history.
    labelled: Vec<(Template, Option<u32>)>,
}

/// The templates a workload's replicas run, each with its hash (the replica's label, or the
/// template's own) and how many run it: the most first, the newest replica's first among
/// equals.
async fn templates_running(
    target: &Target,
    listed: &[scale::Member],
) -> Result<Inspected, Failure> {
    let mut newest_first = listed.to_vec();
    newest_first.sort_by_key(|m| std::cmp::Reverse((m.created, m.number.unwrap_or(0))));
    let mut running: Vec<(String, Template, usize)> = Vec::new();
    let mut all_running = true;
    let mut labelled = Vec::new();
    for member in &newest_first {
        let inspect = target
            .docker
            .inspect_container(&member.id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| failed(format!("inspecting {} failed: {e}", member.name)))?;
        all_running &= inspect.state.as_ref().and_then(|s| s.running) == Some(true);
        let template = Template::from_container(&inspect).map_err(failed)?;
        let labels = inspect.config.as_ref().and_then(|c| c.labels.as_ref());
        labelled.push((template.clone(), labels.and_then(revision::revision_number)));
        let hash = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(HASH_LABEL))
            .cloned()
            .unwrap_or_else(|| template.hash());
        match running.iter_mut().find(|(h, _, _)| *h == hash) {
            Some((_, _, count)) => *count += 1,
            None => running.push((hash, template, 1)),
        }
    }
    // A stable sort keeps the newest first among equal counts.
    running.sort_by_key(|(_, _, count)| std::cmp::Reverse(*count));
    Ok(Inspected {
        running,
        all_running,
        labelled,
    })
}

/// The history a workload's containers still tell when its file is gone (empty when they carry
/// no revision labels, as before a first rollout).
fn recover_history(name: &str, replicas: &[(Template, Option<u32>)]) -> History {
    if replicas.iter().all(|(_, number)| number.is_none()) {
        return History::new(name);
    }
    History::recover(name, replicas, Utc::now())
}

/// `rollout WORKLOAD --image IMAGE` and `rollback WORKLOAD [--to-revision N]`.
async fn start_rollout(
    args: &TargetArgs,
    wanted: Wanted,
    run_args: &RunArgs,
    paths: &Paths,
    config: &Config,
) -> Result<u8, Failure> {
    let settings = Settings::from_args(run_args, config)?;
    if config.read_only {
        return Err(failed(
            "read-only mode (--read-only, or read_only in config.toml): a rollout is an action, \
             and is refused",
        ));
    }
    if !run_args.wait && std::env::var_os(BACKGROUND_VAR).is_none() {
        return start_in_background(args, paths, config).await;
    }
    let mut found = find(args, paths, config).await?;
    let holder = format!(
        "{} pid {} ({}@{})",
        if matches!(wanted, Wanted::Image(_)) {
            "rollout"
        } else {
            "rollback"
        },
        std::process::id(),
        current_user(),
        gethostname::gethostname().to_string_lossy()
    );
    let _lock = state::lock(&found.files, &holder).map_err(failed)?;
    // A state file that does not read is kept for whoever looks into it, never overwritten.
    let previous = state::read_state(&found.files.state).map_err(|e| {
        failed(format!(
            "{e}; move the file away (or delete it) to roll {} out again",
            found.workload.name
        ))
    })?;
    state::clear_control(&found.files);

    let user = current_user();
    let (kind, template, cause) = match wanted {
        Wanted::Image(image) => {
            let template = new_template(&found, &image).await?;
            let cause = run_args
                .cause
                .clone()
                .unwrap_or_else(|| format!("rollout to {image} by {user}"));
            (Kind::Rollout, template, cause)
        }
        Wanted::Revision(number) => {
            let revision = match number {
                Some(n) => found.history.by_number(n).ok_or_else(|| {
                    let known: Vec<String> = found
                        .history
                        .revisions
                        .iter()
                        .map(|r| r.number.to_string())
                        .collect();
                    failed(format!(
                        "{} has no revision {n}; its revisions are {}",
                        found.workload.name,
                        known.join(", ")
                    ))
                })?,
                None => found.history.before(&found.current_hash).ok_or_else(|| {
                    failed(format!(
                        "{} runs revision {}, and no other revision that was not rolled back \
                         is recorded; see `pilothouse history {}`",
                        found.workload.name,
                        found.current_number(),
                        found.workload.name
                    ))
                })?,
            };
            let cause = run_args
                .cause
                .clone()
                .unwrap_or_else(|| format!("rollback to revision {} by {user}", revision.number));
            (Kind::Rollback, revision.template.clone(), cause)
        }
    };
    let goal_hash = template.hash();
    if found.all_running && found.running.iter().all(|(hash, _, _)| *hash == goal_hash) {
        let message = format!(
            "{} already runs revision {} ({}) on every replica; nothing to do",
            sanitize_plain(&found.workload.name),
            found.current_number(),
            sanitize_plain(&template.image)
        );
        print_outcome_nothing(run_args.output, &found, &message);
        return Ok(exit::OK);
    }
    // What a failure returns to: the template most replicas run, or, when most already run the
    // goal (a rollout cut short and taken on again), the most run of the others.
    let (from_hash, from_template) = found
        .running
        .iter()
        .find(|(hash, _, _)| *hash != goal_hash)
        .map(|(hash, template, _)| (hash.clone(), template.clone()))
        .unwrap_or_else(|| (found.current_hash.clone(), found.current.clone()));
    if settings.probe.is_some() && !probe_missing(&template, None) {
        eprintln!(
            "pilothouse: warning: {} has a HEALTHCHECK of its own, which decides readiness; \
             --probe is used only for images without one",
            sanitize_plain(&template.image)
        );
    }
    if probe_missing(&template, settings.probe.as_ref()) {
        eprintln!(
            "pilothouse: warning: {} has no HEALTHCHECK and no --probe was given: a new replica \
             counts as ready as soon as it runs",
            sanitize_plain(&template.image)
        );
    }
    // The load balancer answers before anything is recorded or changed.
    let lb = match settings.lb.clone() {
        Some(lb) => {
            let labels: HashMap<String, String> =
                found.current.labels.clone().into_iter().collect();
            if matches!(scale::lb_binding(Some(&labels)), Ok(None)) {
                eprintln!(
                    "pilothouse: warning: --backend {} holds for this rollout only: scaling {} \
                     later leaves the backend as it is unless its replicas carry the labels \
                     {}={} and {}={}",
                    lb.backend,
                    sanitize_plain(&found.workload.name),
                    scale::LB_BACKEND_LABEL,
                    lb.backend,
                    scale::LB_PORT_LABEL,
                    lb.port
                );
            }
            Some(lb)
        }
        None => lb_from_labels(&found.current, run_args, config)?,
    };
    if let Some(lb) = &lb {
        reach_backend(lb).await?;
    }
    let to_number =
        found
            .history
            .record(template.clone(), &cause, Utc::now(), history::DEFAULT_KEEP);
    found.history.save(&found.history_path).map_err(failed)?;
    let numbers: HashMap<String, u32> = found
        .history
        .revisions
        .iter()
        .map(|r| (r.hash.clone(), r.number))
        .collect();
    let from = Goal {
        number: numbers.get(&from_hash).copied().unwrap_or(0),
        hash: from_hash,
        template: from_template,
    };
    // Taking on a rollout that was cut short keeps the count it started with.
    let desired = previous
        .filter(|p| !p.phase.is_final() || matches!(p.phase, Phase::Failed | Phase::Interrupted))
        .map(|p| p.desired);
    let job = Job {
        docker: found.target.docker.clone(),
        workload: found.workload.name.clone(),
        members: found.members.clone(),
        files: found.files.clone(),
        host: found.target.address.clone(),
        engine_id: found.target.engine_id.clone(),
        kind,
        from,
        to: Goal::new(to_number, template),
        max_surge: settings.max_surge,
        max_unavailable: settings.max_unavailable,
        progress_deadline: settings.progress_deadline,
        timeout: settings.timeout,
        probe: settings.probe.clone(),
        lb,
        analysis: settings.analysis.clone(),
        desired,
        numbers,
        by: user,
    };
    let audit = AuditLog::new(paths.audit_log());
    let request = ActionRequest {
        workload: found.workload.clone(),
        kind: match kind {
            Kind::Rollout => ActionKind::Rollout {
                from_revision: job.from.number,
                to_revision: job.to.number,
                image: job.to.template.image.clone(),
            },
            Kind::Rollback => ActionKind::Rollback {
                from_revision: job.from.number,
                to_revision: job.to.number,
                image: job.to.template.image.clone(),
            },
        },
        origin: "cli",
        confirmed: true,
        reason: Some(cause),
    };
    audit.record(&request, "started", &request.describe());
    let outcome = drive(&job, run_args.output).await;
    if let Outcome::RolledBack { why, .. } = &outcome {
        found.history.mark_rolled_back(job.to.number, why);
        if let Err(e) = found.history.save(&found.history_path) {
            eprintln!("pilothouse: warning: {e}");
        }
    }
    let message = match &outcome {
        Outcome::Succeeded => format!("{} succeeded", request.describe()),
        Outcome::RolledBack { why, .. } => format!(
            "{} failed and was rolled back to revision {}: {why}",
            request.describe(),
            job.from.number
        ),
        Outcome::Failed(why) => format!("{} failed: {why}", request.describe()),
    };
    audit.record(&request, outcome.as_str(), &message);
    Ok(outcome.exit_code())
}

/// Whether a template leaves its replicas without any readiness check: no HEALTHCHECK of its
/// own (or one turned off) and no probe.
fn probe_missing(template: &Template, probe: Option<&Probe>) -> bool {
    let checked = template
        .healthcheck
        .as_ref()
        .is_some_and(|h| !h.is_disabled() && !h.test.is_empty());
    probe.is_none() && !checked
}

/// Asks the load balancer for the backend before anything changes: a socket that does not
/// answer exits 3, a backend it does not have 1.
async fn reach_backend(lb: &LbBinding) -> Result<(), Failure> {
    match lb.haproxy.servers(&lb.backend).await {
        Ok(_) => Ok(()),
        Err(e @ crate::lb::haproxy::LbError::Unreachable(_)) => Err(Failure {
            code: exit::UNREACHABLE,
            message: e.to_string(),
        }),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// The backend the workload's own labels name (`pilothouse.lb.backend` and `pilothouse.lb.port`),
/// when no --backend is given; without a runtime API socket to reach it, a warning.
fn lb_from_labels(
    current: &Template,
    args: &RunArgs,
    config: &Config,
) -> Result<Option<LbBinding>, Failure> {
    let labels: HashMap<String, String> = current.labels.clone().into_iter().collect();
    let Some((backend, port)) = scale::lb_binding(Some(&labels)).map_err(failed)? else {
        return Ok(None);
    };
    let socket = args
        .haproxy_socket
        .clone()
        .or_else(|| config.loadbalancer.haproxy_socket.clone());
    let Some(socket) = socket else {
        eprintln!(
            "pilothouse: warning: the replicas name backend {backend}, but no HAProxy socket is \
             set (--haproxy-socket, or haproxy_socket under [loadbalancer]); it is not kept in \
             step"
        );
        return Ok(None);
    };
    let haproxy = Haproxy::new(&socket).map_err(|e| usage(&format!("--haproxy-socket: {e}")))?;
    Ok(Some(LbBinding {
        haproxy,
        backend,
        port,
    }))
}

/// The template a rollout to `image` makes from the current one.
async fn new_template(found: &Found, image: &str) -> Result<Template, Failure> {
    let docker = &found.target.docker;
    let new_image = docker.inspect_image(image).await.map_err(|e| {
        failed(format!(
            "the image {image} is not on {} ({e}); build or pull it there first",
            found.target.address
        ))
    })?;
    let old_image = docker
        .inspect_image(&found.current.image)
        .await
        .map_err(|e| {
            failed(format!(
                "the image {} that {} runs now is not on {} ({e}), so which of its settings came \
                 from the image cannot be told",
                found.current.image, found.workload.name, found.target.address
            ))
        })?;
    Ok(found.current.with_image(
        image,
        &ImageDefaults::from_image(&old_image),
        &ImageDefaults::from_image(&new_image),
    ))
}

/// The flags of a rollout, checked before anything is touched.
struct Settings {
    max_surge: IntOrPercent,
    max_unavailable: IntOrPercent,
    progress_deadline: Duration,
    timeout: Option<Duration>,
    probe: Option<Probe>,
    lb: Option<LbBinding>,
    analysis: Option<Analysis>,
}

impl Settings {
    fn from_args(args: &RunArgs, config: &Config) -> Result<Settings, Failure> {
        let bound = |flag: &str, value: &Option<String>, default: IntOrPercent| match value {
            Some(text) => IntOrPercent::parse(text).map_err(|e| usage(&format!("{flag}: {e}"))),
            None => Ok(default),
        };
        let duration = |flag: &str, value: &Option<String>| -> Result<Option<Duration>, Failure> {
            value
                .as_deref()
                .map(|text| {
                    crate::rules::parse_duration(text)
                        .map_err(|why| usage(&format!("{flag} {text:?} {why}")))
                })
                .transpose()
        };
        let probe = args
            .probe
            .as_deref()
            .map(Probe::parse)
            .transpose()
            .map_err(|e| usage(&format!("--probe: {e}")))?;
        let lb = match &args.backend {
            None => None,
            Some(spec) => {
                let (backend, port) = spec.rsplit_once(':').ok_or_else(|| {
                    usage(&format!(
                        "--backend {spec:?}: write it as BACKEND:PORT, PORT being the replicas' \
                         port"
                    ))
                })?;
                let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                    usage(&format!(
                        "--backend {spec:?}: {port:?} is not a port (1-65535)"
                    ))
                })?;
                if backend.is_empty() {
                    return Err(usage(&format!(
                        "--backend {spec:?}: the backend name is empty"
                    )));
                }
                let socket = args
                    .haproxy_socket
                    .clone()
                    .or_else(|| config.loadbalancer.haproxy_socket.clone())
                    .ok_or_else(|| {
                        usage(
                            "--backend needs HAProxy's runtime API socket: give \
                             --haproxy-socket or set haproxy_socket under [loadbalancer] in \
                             config.toml",
                        )
                    })?;
                let haproxy =
                    Haproxy::new(&socket).map_err(|e| usage(&format!("--haproxy-socket: {e}")))?;
                Some(LbBinding {
                    haproxy,
                    backend: backend.to_string(),
                    port,
                })
            }
        };
        let analysis = match &args.analysis {
            None => None,
            Some(text) => Some(analysis_of(args, text, config)?),
        };
        let max_surge = bound("--max-surge", &args.max_surge, DEFAULT_MAX_SURGE)?;
        let max_unavailable = bound(
            "--max-unavailable",
            &args.max_unavailable,
            DEFAULT_MAX_UNAVAILABLE,
        )?;
        // The counts alone decide whether both are zero; percentages resolve per count.
        super::plan::bounds(1, max_surge, max_unavailable).map_err(|e| usage(&e))?;
        let progress_deadline = duration("--progress-deadline", &args.progress_deadline)?
            .unwrap_or(run::DEFAULT_PROGRESS_DEADLINE);
        if progress_deadline.is_zero() {
            return Err(usage("--progress-deadline must be at least 1s"));
        }
        let timeout = duration("--timeout", &args.timeout)?;
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(usage("--timeout must be at least 1s"));
        }
        Ok(Settings {
            max_surge,
            max_unavailable,
            progress_deadline,
            timeout,
            probe,
            lb,
            analysis,
        })
    }
}

/// The analysis gate the flags describe, read from the configured Prometheus.
fn analysis_of(args: &RunArgs, text: &str, config: &Config) -> Result<Analysis, Failure> {
    let condition = Condition::parse(text).map_err(|e| usage(&format!("--analysis: {e}")))?;
    let server = config.autoscaler.prometheus.as_deref().ok_or_else(|| {
        usage(
            "--analysis needs a Prometheus server: give --prometheus URL or set prometheus under \
             [autoscaler] in config.toml",
        )
    })?;
    let source = PrometheusSource::new(server).map_err(|e| usage(&format!("--prometheus: {e}")))?;
    let interval = match &args.analysis_interval {
        Some(text) => crate::rules::parse_duration(text)
            .map_err(|why| usage(&format!("--analysis-interval {text:?} {why}")))?,
        None => DEFAULT_ANALYSIS_INTERVAL,
    };
    if interval.is_zero() {
        return Err(usage("--analysis-interval must be at least 1s"));
    }
    Ok(Analysis {
        condition,
        source: std::sync::Arc::new(source),
        interval,
        count: args.analysis_count.unwrap_or(3),
        inconclusive_limit: args.analysis_inconclusive.unwrap_or(3),
    })
}

/// Runs the rollout, printing its progress as asked; Ctrl-C (or SIGTERM) once aborts it, and
/// so rolls back; twice leaves it where it is.
async fn drive(job: &Job, output: Output) -> Outcome {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut printer = Printer::new(output);
    let rollout = run::run(job, &events_tx);
    tokio::pin!(rollout);
    let mut interrupts = 0;
    let mut signals = Interruptions::new();
    loop {
        tokio::select! {
            outcome = &mut rollout => {
                while let Ok(state) = events.try_recv() {
                    printer.show(&state);
                }
                printer.done(job, &outcome);
                return outcome;
            }
            Some(state) = events.recv() => printer.show(&state),
            () = signals.next() => interrupts += 1,
        }
        if interrupts > 0 {
            printer.clear_live();
        }
        if interrupts == 1 {
            interrupts += 1;
            eprintln!(
                "pilothouse: aborting the rollout of {}: rolling back (interrupt again to leave \
                 it as it is)",
                job.workload
            );
            let _ = std::fs::write(&job.files.control, "abort\n");
        } else if interrupts > 2 {
            eprintln!(
                "pilothouse: left {} as it is; `pilothouse rollout {} --image ...` or `pilothouse \
                 rollback {}` takes it on from there",
                job.workload, job.workload, job.workload
            );
            let mut state = state::read_state(&job.files.state).ok().flatten();
            if let Some(state) = state.as_mut() {
                state.phase = Phase::Interrupted;
                state.message = "interrupted by an operator".to_string();
                let _ = state::write_state(&job.files.state, state);
            }
            return Outcome::Failed("interrupted".to_string());
        }
    }
}

/// Prints a rollout's progress: a line per step (and per phase change) in a pipe or as JSON,
/// with a live status line on a terminal.
struct Printer {
    output: Output,
    live: bool,
    steps_shown: usize,
    phase: Option<Phase>,
    started: Instant,
}

impl Printer {
    fn new(output: Output) -> Printer {
        Printer {
            output,
            live: output == Output::Text && std::io::stdout().is_terminal(),
            steps_shown: 0,
            phase: None,
            started: Instant::now(),
        }
    }

    fn show(&mut self, state: &RolloutState) {
        // Names, images and messages are data: never terminal control in the text lines.
        let safe_state;
        let state = if self.output == Output::Text {
            safe_state = printable(state);
            &safe_state
        } else {
            state
        };
        let mut lines = Vec::new();
        // A final phase is told by `done`.
        if self.phase != Some(state.phase) && !state.phase.is_final() {
            if self.phase.is_some() || state.phase != Phase::Progressing {
                lines.push(match self.output {
                    Output::Json => json!({
                        "event": "phase",
                        "phase": state.phase.as_str(),
                        "message": state.message,
                    })
                    .to_string(),
                    Output::Text => {
                        let mut line = format!("{}: {}", state.workload, state.phase.as_str());
                        if !state.message.is_empty() {
                            line.push_str(&format!(" ({})", state.message));
                        }
                        line
                    }
                });
            } else {
                lines.push(match self.output {
                    Output::Json => json!({
                        "event": "started",
                        "workload": state.workload,
                        "kind": state.kind,
                        "from_revision": state.from_revision,
                        "to_revision": state.to_revision,
                        "image": state.image,
                        "desired": state.desired,
                        "max_surge": state.max_surge,
                        "max_unavailable": state.max_unavailable,
                    })
                    .to_string(),
                    Output::Text => format!(
                        "{}: revision {} → {} ({}), {} replicas, max surge {}, max unavailable {}",
                        state.workload,
                        state.from_revision,
                        state.to_revision,
                        state.image,
                        state.desired,
                        state.max_surge,
                        state.max_unavailable
                    ),
                });
            }
            self.phase = Some(state.phase);
        }
        for step in state.steps.iter().skip(self.steps_shown) {
            lines.push(match self.output {
                Output::Json => json!({
                    "event": "step",
                    "step": step.number,
                    "created": step.created,
                    "removed": step.removed,
                    "took_ms": step.took_ms,
                    "health_ms": step.health_ms,
                    "drain_ms": step.drain_ms,
                    "create_ms": step.create_ms,
                    "own_ms": step.own_ms(),
                    "revisions": revisions_json(state),
                })
                .to_string(),
                Output::Text => format!(
                    "step {}: {} | {} | {:.1}s (health checks {:.1}s, draining {:.1}s)",
                    step.number,
                    changes(&step.created, &step.removed),
                    per_revision(state),
                    step.took_ms as f64 / 1000.0,
                    step.health_ms as f64 / 1000.0,
                    step.drain_ms as f64 / 1000.0,
                ),
            });
        }
        self.steps_shown = state.steps.len();
        let mut out = std::io::stdout().lock();
        if self.live {
            let _ = write!(out, "\r\x1b[K");
        }
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        if self.live && !state.phase.is_final() {
            let _ = write!(
                out,
                "  {} | {:.0}s",
                per_revision(state),
                self.started.elapsed().as_secs_f64()
            );
        }
        let _ = out.flush();
    }

    /// Takes the live status line off the terminal, so a message can be printed in its place.
    fn clear_live(&self) {
        if self.live {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[K");
            let _ = out.flush();
        }
    }

    fn done(&mut self, job: &Job, outcome: &Outcome) {
        let safe_job;
        let safe_outcome;
        let (job, outcome) = if self.output == Output::Text {
            safe_job = Job {
                workload: sanitize_plain(&job.workload),
                ..job.clone()
            };
            safe_outcome = match outcome {
                Outcome::Succeeded => Outcome::Succeeded,
                Outcome::RolledBack { why, gate } => Outcome::RolledBack {
                    why: sanitize_plain(why),
                    gate: *gate,
                },
                Outcome::Failed(why) => Outcome::Failed(sanitize_plain(why)),
            };
            (&safe_job, &safe_outcome)
        } else {
            (job, outcome)
        };
        let state = state::read_state(&job.files.state).ok().flatten();
        let took = self.started.elapsed().as_secs_f64();
        let mut out = std::io::stdout().lock();
        if self.live {
            let _ = write!(out, "\r\x1b[K");
        }
        let why = match outcome {
            Outcome::Succeeded => None,
            Outcome::RolledBack { why, .. } | Outcome::Failed(why) => Some(why.as_str()),
        };
        let _ = match self.output {
            Output::Json => writeln!(
                out,
                "{}",
                json!({
                    "event": "done",
                    "workload": job.workload,
                    "outcome": outcome.as_str(),
                    "exit": outcome.exit_code(),
                    "from_revision": job.from.number,
                    "to_revision": job.to.number,
                    "image": job.to.template.image,
                    "revision": match outcome {
                        Outcome::Succeeded => Some(job.to.number),
                        Outcome::RolledBack { .. } => Some(job.from.number),
                        Outcome::Failed(_) => None,
                    },
                    "reason": why,
                    "steps": state.as_ref().map(|s| s.steps.len()).unwrap_or(0),
                    "took_ms": (took * 1000.0) as u64,
                })
            ),
            Output::Text => match outcome {
                Outcome::Succeeded => writeln!(
                    out,
                    "{}: rolled out to revision {} ({}) in {took:.1}s",
                    job.workload, job.to.number, job.to.template.image
                ),
                Outcome::RolledBack { why, .. } => writeln!(
                    out,
                    "{}: rolled back to revision {} ({}) after {took:.1}s: {why}",
                    job.workload, job.from.number, job.from.template.image
                ),
                Outcome::Failed(why) => {
                    writeln!(out, "{}: failed after {took:.1}s: {why}", job.workload)
                }
            },
        };
        let _ = out.flush();
    }
}

/// `state` with its names, image and message made safe to print on a terminal.
fn printable(state: &RolloutState) -> RolloutState {
    let mut safe = state.clone();
    safe.workload = sanitize_plain(&state.workload);
    safe.image = sanitize_plain(&state.image);
    safe.message = sanitize_plain(&state.message);
    for replica in &mut safe.replicas {
        replica.name = sanitize_plain(&replica.name);
    }
    for step in &mut safe.steps {
        step.created = step.created.iter().map(|n| sanitize_plain(n)).collect();
        step.removed = step.removed.iter().map(|n| sanitize_plain(n)).collect();
    }
    safe
}

fn changes(created: &[String], removed: &[String]) -> String {
    let mut parts: Vec<String> = created.iter().map(|n| format!("+{n}")).collect();
    parts.extend(removed.iter().map(|n| format!("-{n}")));
    if parts.is_empty() {
        "no change".to_string()
    } else {
        parts.join(" ")
    }
}

/// `rev 1: 2 (2 ready), rev 2: 2 (1 ready)`.
fn per_revision(state: &RolloutState) -> String {
    let parts: Vec<String> = state
        .per_revision()
        .iter()
        .map(|(rev, total, ready)| {
            let rev = if *rev == 0 {
                "unrecorded".to_string()
            } else {
                format!("rev {rev}")
            };
            format!("{rev}: {total} ({ready} ready)")
        })
        .collect();
    if parts.is_empty() {
        "no replicas".to_string()
    } else {
        parts.join(", ")
    }
}

fn revisions_json(state: &RolloutState) -> serde_json::Value {
    state
        .per_revision()
        .iter()
        .map(|(rev, total, ready)| json!({"revision": rev, "replicas": total, "ready": ready}))
        .collect()
}

fn print_outcome_nothing(output: Output, found: &Found, message: &str) {
    match output {
        Output::Text => println!("{message}"),
        Output::Json => println!(
            "{}",
            json!({
                "event": "done",
                "workload": found.workload.name,
                "outcome": "unchanged",
                "exit": exit::OK,
                "from_revision": found.current_number(),
                "to_revision": found.current_number(),
                "image": found.current.image,
                "revision": found.current_number(),
                "reason": message,
                "steps": 0,
                "took_ms": 0,
            })
        ),
    }
}

/// Starts the same command again with `--wait` as a process of its own, its output in the
/// state directory's log, and returns once it has reported its start (or its end).
async fn start_in_background(
    args: &TargetArgs,
    paths: &Paths,
    config: &Config,
) -> Result<u8, Failure> {
    let target = target::open(args.docker_host.as_deref(), args.target.as_deref(), config).await?;
    // A name that matches nothing is told here, before a log file is made for it.
    crate::ops::scale::find(&target, args.workload.trim()).await?;
    let files = Files::new(&paths.state_dir, &target.engine_id, args.workload.trim());
    let mut status = format!(
        "pilothouse rollout status {}",
        shell_word(args.workload.trim())
    );
    for (flag, value) in [
        ("--docker-host", &args.docker_host),
        ("--target", &args.target),
    ] {
        if let Some(value) = value {
            status.push_str(&format!(" {flag} {}", shell_word(value)));
        }
    }
    run_in_background(&files, args.workload.trim(), &status).await
}

/// Ctrl-C and SIGTERM, as what interrupts a rollout run in the foreground.
pub(crate) struct Interruptions {
    /// `None` when SIGTERM could not be listened for; Ctrl-C still counts.
    sigterm: Option<tokio::signal::unix::Signal>,
}

impl Interruptions {
    pub(crate) fn new() -> Interruptions {
        let terminate = tokio::signal::unix::SignalKind::terminate();
        Interruptions {
            sigterm: tokio::signal::unix::signal(terminate).ok(),
        }
    }

    /// Waits for the next Ctrl-C or SIGTERM.
    pub(crate) async fn next(&mut self) {
        let terminated = async {
            match self.sigterm.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminated => {}
        }
    }
}

/// `word` as one word of a shell command line: as it is when it holds nothing a shell reads
/// specially, else in single quotes.
pub(crate) fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Starts this command again with `--wait` as a process of its own writing `files`' log, and
/// returns once its state file shows it started (or it ended); `workload` as the user wrote it.
/// `status` is the command that shows this workload's rollout, as the hints name it.
pub(crate) async fn run_in_background(
    files: &Files,
    workload: &str,
    status: &str,
) -> Result<u8, Failure> {
    use std::os::unix::process::CommandExt;
    if state::is_running(files) {
        return Err(failed(format!(
            "a rollout of {workload} is running already; see `{status}`"
        )));
    }
    let exe =
        std::env::current_exe().map_err(|e| failed(format!("cannot find this program: {e}")))?;
    if let Some(dir) = files.log.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let log = std::fs::File::create(&files.log)
        .map_err(|e| failed(format!("cannot create {}: {e}", files.log.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|e| failed(format!("cannot open {}: {e}", files.log.display())))?;
    let before = state::read_state(&files.state)
        .ok()
        .flatten()
        .map(|s| s.started);
    let mut command = std::process::Command::new(exe);
    command
        .args(std::env::args_os().skip(1))
        .arg("--wait")
        .env(BACKGROUND_VAR, "1")
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|e| failed(format!("cannot start the rollout in the background: {e}")))?;
    let pid = child.id();
    let deadline = Instant::now() + BACKGROUND_START;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(&files.log).unwrap_or_default();
            print!("{text}");
            return Ok(status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(exit::FAILED));
        }
        let started = state::read_state(&files.state).ok().flatten();
        if let Some(state) = started
            && state.pid == pid
            && Some(state.started) != before
        {
            println!(
                "{workload}: rollout to revision {} ({}) started in the background (pid {pid}); \
                 follow it with `{status} --wait`; its log is {}",
                state.to_revision,
                state.image,
                files.log.display()
            );
            return Ok(exit::OK);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{workload}: a rollout was started in the background (pid {pid}) but has not reported \
         within {} s; see its log {} and `{status}`",
        BACKGROUND_START.as_secs(),
        files.log.display(),
    );
    Ok(exit::OK)
}

/// `rollout status WORKLOAD [--wait]`.
async fn status(
    args: &TargetArgs,
    wait: bool,
    output: Output,
    paths: &Paths,
    config: &Config,
) -> Result<u8, Failure> {
    let target = target::open(args.docker_host.as_deref(), args.target.as_deref(), config).await?;
    let files = Files::new(&paths.state_dir, &target.engine_id, args.workload.trim());
    follow_state(&files, args.workload.trim(), &target.address, wait, output).await
}

/// Shows the rollout `files` record (of `workload` on the target at `address`), following it
/// to its end with `wait`; the exit code its outcome gives.
pub(crate) async fn follow_state(
    files: &Files,
    workload: &str,
    address: &str,
    wait: bool,
    output: Output,
) -> Result<u8, Failure> {
    let mut shown: Option<RolloutState> = None;
    loop {
        let mut state = state::read_state(&files.state)
            .map_err(failed)?
            .ok_or_else(|| failed(format!("no rollout of {workload} is recorded on {address}")))?;
        let running = state::is_running(files);
        if !running && !state.phase.is_final() {
            state.phase = Phase::Interrupted;
            state.message = format!(
                "the process that ran it (pid {}) ended before it finished",
                state.pid
            );
        }
        if shown.as_ref() != Some(&state) {
            print_status(&state, running, output);
            shown = Some(state.clone());
        }
        if !wait || state.phase.is_final() {
            return Ok(match state.phase {
                Phase::Succeeded => exit::OK,
                Phase::RolledBack => exit::ROLLED_BACK,
                Phase::Failed | Phase::Interrupted => exit::FAILED,
                Phase::Progressing | Phase::Paused | Phase::RollingBack => exit::OK,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_status(state: &RolloutState, running: bool, output: Output) {
    let safe = printable(state);
    match output {
        Output::Json => println!(
            "{}",
            json!({
                "workload": state.workload,
                "kind": state.kind,
                "phase": state.phase.as_str(),
                "running": running,
                "from_revision": state.from_revision,
                "to_revision": state.to_revision,
                "image": state.image,
                "desired": state.desired,
                "revisions": revisions_json(state),
                "replicas": state.replicas,
                "steps": state.steps.len(),
                "message": state.message,
                "started": state.started,
                "updated": state.updated,
                "pid": state.pid,
                "by": state.by,
            })
        ),
        Output::Text => {
            let revisions = match safe.phase {
                Phase::RollingBack | Phase::RolledBack => format!(
                    "to revision {} from {} ({})",
                    safe.from_revision, safe.to_revision, safe.image
                ),
                _ => format!(
                    "revision {} → {} ({})",
                    safe.from_revision, safe.to_revision, safe.image
                ),
            };
            println!(
                "{}: {} {revisions}, {}; {} steps",
                safe.workload,
                safe.phase.as_str(),
                per_revision(&safe),
                safe.steps.len()
            );
            if !safe.message.is_empty() {
                println!("  {}", &safe.message);
            }
        }
    }
}

/// `rollout pause|resume|abort WORKLOAD`.
async fn control(
    args: &TargetArgs,
    word: Control,
    paths: &Paths,
    config: &Config,
) -> Result<u8, Failure> {
    let target = target::open(args.docker_host.as_deref(), args.target.as_deref(), config).await?;
    let name = args.workload.trim();
    let files = Files::new(&paths.state_dir, &target.engine_id, name);
    let request = ActionRequest {
        workload: WorkloadId {
            target: target.name.clone(),
            kind: if name.contains('/') {
                WorkloadKind::Compose
            } else {
                WorkloadKind::Group
            },
            name: name.to_string(),
        },
        kind: ActionKind::RolloutControl {
            word: word.as_str().to_string(),
        },
        origin: "cli",
        confirmed: true,
        reason: None,
    };
    send_control(&files, &request, word, paths, config)?;
    println!(
        "{}: {} sent to the rollout in progress",
        args.workload,
        word.as_str()
    );
    Ok(exit::OK)
}

/// Leaves `word` for the rollout `files` record, as the audited action `request`; refused in
/// read-only mode and when no rollout runs.
pub(crate) fn send_control(
    files: &Files,
    request: &ActionRequest,
    word: Control,
    paths: &Paths,
    config: &Config,
) -> Result<(), Failure> {
    let audit = AuditLog::new(paths.audit_log());
    let name = &request.workload.name;
    if config.read_only {
        let why = format!(
            "read-only mode (--read-only, or read_only in config.toml): {} is refused",
            request.describe()
        );
        audit.record(request, "refused", &why);
        return Err(failed(why));
    }
    if let Err(e) = state::send_control(files, word) {
        let why = format!("{name}: {e}");
        audit.record(request, "refused", &why);
        return Err(failed(why));
    }
    audit.record(request, "ok", &request.describe());
    Ok(())
}

/// `history WORKLOAD`.
async fn show_history(
    args: &TargetArgs,
    output: Output,
    paths: &Paths,
    config: &Config,
) -> Result<u8, Failure> {
    let found = find(args, paths, config).await?;
    let current = Some(found.current_hash.as_str());
    match output {
        Output::Text => print!("{}", history::render_table(&found.history, current)),
        Output::Json => println!("{}", history::to_json(&found.history, current)),
    }
    Ok(exit::OK)
}
