//! The one-shot commands on a Kubernetes context: `rollout`, `rollout status|pause|resume|abort`,
//! `rollback`, `history`, `scale` and `status`, when `--context` or `--kubeconfig` chooses a
//! context. A workload is `deployment/NAME`, `statefulset/NAME` (also `deploy/`, `sts/`) or a
//! plain `NAME` (a Deployment), in `--namespace`, else the context's namespace, else `default`.
//!
//! They print what the Docker commands print where it applies, exit with the same codes, write
//! the same audit lines and rollout state files, and file a context's rollouts under the engine
//! ID its console worker reports, so the console shows them. Not for the rolling itself: the
//! Deployment's controller rolls, [`crate::platform::kubernetes::rollout`] follows it and
//! [`crate::platform::kubernetes::actions`] changes it.

use std::io::Write;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, ListParams};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::cli::shell_word;
use super::state::{self, Control, Files, Phase};
use crate::actuator::{ActionKind, ActionRequest, AuditLog, Refusal, current_user};
use crate::cli::{Command, Output, RolloutCommand, RunArgs, TargetArgs};
use crate::config::Config;
use crate::model::{WorkloadId, WorkloadKind};
use crate::ops::status::{RolloutSummary, StatusReport, TargetStatus, WorkloadStatus};
use crate::ops::target::Failure;
use crate::ops::{exit, json_line, print_out};
use crate::paths::Paths;
use crate::platform::kubernetes::actions::{
    self, ActionError, Candidate, Op, Previous, REVISION_ANNOTATION, Revision, RolloutStatus,
};
use crate::platform::kubernetes::rollout::{self as kube_rollout, Outcome, Progress};
use crate::platform::kubernetes::watch::client_cause;
use crate::platform::kubernetes::{self, Selection, config as kube_config, convert};
use crate::text::{display_width, one_line, pad, sanitize_plain};

/// The origin of the command line's actions in the audit log.
const ORIGIN: &str = "cli";
/// How long connecting to the API server may take before the command exits 3.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between two looks at a workload while waiting on it.
const POLL: Duration = Duration::from_millis(500);

/// Whether the command line chose a Kubernetes context for the one-shot commands.
pub fn chosen(selection: &Selection) -> bool {
    selection.kubeconfig.is_some() || selection.context.is_some()
}

/// Runs a one-shot command on the chosen Kubernetes context; the exit code.
pub async fn run(command: Command, paths: &Paths, config: &Config, selection: &Selection) -> u8 {
    let result = match command {
        Command::Status {
            docker_host,
            target,
            output,
        } => {
            return status(
                docker_host.as_deref(),
                target.as_deref(),
                output,
                paths,
                config,
                selection,
            )
            .await;
        }
        other => one_workload(other, paths, config, selection).await,
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("pilothouse: {}", sanitize_plain(&failure.message));
            failure.code
        }
    }
}

/// The commands that act on one workload.
async fn one_workload(
    command: Command,
    paths: &Paths,
    config: &Config,
    selection: &Selection,
) -> Result<u8, Failure> {
    let (args, action) = match command {
        Command::Rollout {
            command: Some(sub), ..
        } => match sub {
            RolloutCommand::Status {
                target,
                wait,
                output,
            } => (target, Action::Status { wait, output }),
            RolloutCommand::Pause { target } => (target, Action::Control(Control::Pause)),
            RolloutCommand::Resume { target } => (target, Action::Control(Control::Resume)),
            RolloutCommand::Abort { target } => (target, Action::Control(Control::Abort)),
        },
        Command::Rollout {
            command: None,
            start,
        } => match (start.target, start.image) {
            (Some(_), Some(image)) if image.trim().is_empty() => {
                return Err(Failure::usage(
                    "--image is empty: name the image of the new revision",
                ));
            }
            (Some(target), Some(image)) => (target, Action::Rollout(image, start.run)),
            _ => return Err(Failure::usage("rollout needs a WORKLOAD and --image IMAGE")),
        },
        Command::Rollback {
            target,
            to_revision,
            run,
        } => (target, Action::Rollback(to_revision, run)),
        Command::History { target, output } => (target, Action::History(output)),
        Command::Scale {
            target,
            replicas,
            output,
        } => (target, Action::Scale(replicas, output)),
        other => {
            return Err(Failure::usage(format!(
                "{other:?} does not act on a Kubernetes workload"
            )));
        }
    };
    refuse_docker_flags(&args)?;
    let context = Context::open(selection, config)?;
    let workload = parse_workload(&args.workload, &context)?;
    let at = At {
        context: &context,
        workload: &workload,
        written: args.workload.trim(),
        paths,
        config,
    };
    match action {
        Action::Rollout(image, run) => at.rollout(&image, &run).await,
        Action::Status { wait, output } => at.rollout_status(wait, output).await,
        Action::Control(word) => at.control(word).await,
        Action::Rollback(to, run) => at.rollback(to, &run).await,
        Action::History(output) => at.history(output).await,
        Action::Scale(replicas, output) => at.scale(replicas, output).await,
    }
}

/// What is asked of one workload.
enum Action {
    Rollout(String, RunArgs),
    Status { wait: bool, output: Output },
    Control(Control),
    Rollback(Option<u32>, RunArgs),
    History(Output),
    Scale(u64, Output),
}

/// `--docker-host` and `--target` name a Docker target, which a Kubernetes context is not.
fn refuse_docker_flags(args: &TargetArgs) -> Result<(), Failure> {
    if args.docker_host.is_some() || args.target.is_some() {
        return Err(Failure::usage(
            "--docker-host and --target name a Docker target; with --context or --kubeconfig \
             the command acts on the Kubernetes context (give one or the other)",
        ));
    }
    Ok(())
}

/// The flags of a Docker rollout that a Deployment's own strategy and probes replace.
/// `--timeout`, read as a duration.
fn run_timeout(run: &RunArgs) -> Result<Option<Duration>, Failure> {
    run.timeout
        .as_deref()
        .map(|text| {
            crate::rules::parse_duration(text)
                .map_err(|why| Failure::usage(format!("--timeout {text:?} {why}")))
        })
        .transpose()
}

fn refuse_docker_run_flags(run: &RunArgs) -> Result<(), Failure> {
    let given = [
        ("--max-surge", run.max_surge.is_some()),
        ("--max-unavailable", run.max_unavailable.is_some()),
        ("--progress-deadline", run.progress_deadline.is_some()),
        ("--probe", run.probe.is_some()),
        ("--backend", run.backend.is_some()),
        ("--haproxy-socket", run.haproxy_socket.is_some()),
        ("--analysis", run.analysis.is_some()),
    ];
    let named: Vec<&str> = given
        .iter()
        .filter(|(_, on)| *on)
        .map(|(f, _)| *f)
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "{} applies to Docker targets only: on Kubernetes the Deployment's strategy, \
         progressDeadlineSeconds and readiness probes decide how it rolls",
        named.join(", ")
    )))
}

/// One Kubernetes context, ready to be talked to.
pub struct Context {
    /// The context's name: the target's name in the audit log, rules and the console.
    pub name: String,
    /// The API server's address, as messages show it.
    pub address: String,
    /// The namespace a workload is looked for in.
    pub namespace: String,
    /// Whether a namespace was chosen (by `--namespace` or the context); `status` lists every
    /// namespace otherwise.
    pub namespace_chosen: bool,
    /// What the context's rollouts are filed under, as its console worker reports it.
    pub engine_id: String,
    pub client: kube::Client,
    /// The start of a command line that reaches this context and namespace again
    /// (`pilothouse --kubeconfig F --context C -n NS`), for the hints printed.
    pub again: String,
}

impl Context {
    /// Reads the kubeconfig as kubectl does (`[kubernetes]` in config.toml fills in what the
    /// command line leaves out); a file or context that is wrong exits 2.
    pub fn open(selection: &Selection, config: &Config) -> Result<Context, Failure> {
        let selection = Selection {
            kubeconfig: selection
                .kubeconfig
                .clone()
                .or_else(|| config.kubernetes.kubeconfig.clone()),
            context: selection.context.clone(),
            namespace: selection
                .namespace
                .clone()
                .or_else(|| config.kubernetes.namespace.clone()),
        };
        let mut target = kube_config::resolve(&selection)
            .map_err(|e| Failure::usage(one_line(&e.to_string())))?;
        let mut again = String::from("pilothouse");
        if let Some(file) = &selection.kubeconfig {
            again.push_str(&format!(
                " --kubeconfig {}",
                shell_word(&file.to_string_lossy())
            ));
        }
        again.push_str(&format!(" --context {}", shell_word(&target.name)));
        if let Some(namespace) = &selection.namespace {
            again.push_str(&format!(" -n {}", shell_word(namespace)));
        }
        target.config.connect_timeout = Some(CONNECT_TIMEOUT);
        let address = target.config.cluster_url.to_string();
        let engine_id = kubernetes::engine_id(&address, &target.name);
        let client = kube::Client::try_from(target.config.clone()).map_err(|e| {
            Failure::usage(format!(
                "cannot make a client for context {} ({address}): {e}",
                target.name
            ))
        })?;
        Ok(Context {
            name: target.name.clone(),
            address,
            namespace_chosen: target.namespace.is_some(),
            namespace: target.namespace.unwrap_or_else(|| "default".to_string()),
            engine_id,
            client,
            again,
        })
    }
}

/// The workload `text` names in the context's namespace: `deployment/NAME` (`deployments/`,
/// `deploy/`), `statefulset/NAME` (`statefulsets/`, `sts/`) or `NAME` for a Deployment.
pub fn parse_workload(text: &str, context: &Context) -> Result<WorkloadId, Failure> {
    let (kind, name) = parse_kind_and_name(text)?;
    Ok(WorkloadId {
        target: context.name.clone(),
        kind,
        name: format!("{}/{name}", context.namespace),
    })
}

fn parse_kind_and_name(text: &str) -> Result<(WorkloadKind, &str), Failure> {
    let text = text.trim();
    let (kind, name) = match text.split_once('/') {
        None => (WorkloadKind::Deployment, text),
        Some((kind, name)) => match kind.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" => (WorkloadKind::Deployment, name),
            "statefulset" | "statefulsets" | "sts" => (WorkloadKind::StatefulSet, name),
            _ => {
                return Err(Failure::usage(format!(
                    "{:?}: a Kubernetes workload is deployment/NAME, statefulset/NAME (or \
                     deploy/NAME, sts/NAME) or NAME for a Deployment; its namespace comes from \
                     --namespace, else the context's",
                    sanitize_plain(text)
                )));
            }
        },
    };
    let valid = convert::is_object_name(name);
    if !valid {
        return Err(Failure::usage(format!(
            "{:?} is not a Kubernetes object name (lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit)",
            sanitize_plain(name)
        )));
    }
    Ok((kind, name))
}

impl Context {
    /// An action's error as the command's failure: an API server that does not answer exits 3,
    /// naming its address and why (connection refused, timed out, a TLS error); anything else
    /// exits 1.
    fn failure(&self, error: ActionError) -> Failure {
        match error {
            ActionError::Unreachable {
                verb,
                resource,
                name,
                source,
            } => {
                let what = if name.is_empty() {
                    format!("{verb} {resource}")
                } else {
                    format!("{verb} {resource} {name:?}")
                };
                Failure::unreachable(format!(
                    "cannot reach the Kubernetes API server at {} (context {}) to {what}: {}",
                    self.address,
                    self.name,
                    client_cause(&source)
                ))
            }
            e => Failure::failed(e.to_string()),
        }
    }
}

/// A revision number as the state file and audit log hold it.
fn small(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One workload of one context, and where the command keeps its files.
struct At<'a> {
    context: &'a Context,
    workload: &'a WorkloadId,
    /// The workload as the command line wrote it, for the hints printed.
    written: &'a str,
    paths: &'a Paths,
    config: &'a Config,
}

impl At<'_> {
    /// The command that shows this workload's rollout, with what reaches its context.
    fn status_command(&self) -> String {
        format!(
            "{} rollout status {}",
            self.context.again,
            shell_word(self.written)
        )
    }

    fn files(&self) -> Files {
        Files::new(
            &self.paths.state_dir,
            &self.context.engine_id,
            &self.workload.name,
        )
    }

    fn audit(&self) -> AuditLog {
        AuditLog::new(self.paths.audit_log())
    }

    fn request(&self, kind: ActionKind, reason: Option<String>) -> ActionRequest {
        ActionRequest {
            workload: self.workload.clone(),
            kind,
            origin: ORIGIN,
            // Running the command is the operator's yes: a pipeline has nobody to ask.
            confirmed: true,
            reason,
        }
    }

    /// Refuses `request` in read-only mode, with an audit line.
    fn refuse_read_only(&self, request: &ActionRequest) -> Result<(), Failure> {
        if !self.config.read_only {
            return Ok(());
        }
        let why = Refusal::ReadOnly(request.describe()).to_string();
        self.audit().record(request, "refused", &why);
        Err(Failure::failed(why))
    }

    /// Takes the workload's rollout lock (refused while a rollout of it runs), with an audit
    /// line when refused.
    fn lock(&self, request: &ActionRequest, verb: &str) -> Result<state::RunLock, Failure> {
        let holder = format!(
            "{verb} pid {} ({}@{})",
            std::process::id(),
            current_user(),
            gethostname::gethostname().to_string_lossy()
        );
        state::lock(&self.files(), &holder).map_err(|busy| {
            let why = format!("{}: {busy}", self.workload.name);
            self.audit().record(request, "refused", &why);
            Failure::failed(why)
        })
    }

    /// The Deployment's revisions, oldest first (none for a StatefulSet).
    async fn revisions(&self) -> Result<Vec<Revision>, Failure> {
        if self.workload.kind != WorkloadKind::Deployment {
            return Ok(Vec::new());
        }
        actions::revisions(&self.context.client, self.workload)
            .await
            .map_err(|e| self.context.failure(e))
    }

    /// `rollout WORKLOAD --image IMAGE`: in this process with `--wait`, else in a process of
    /// its own that this one waits for only until it has started.
    async fn rollout(&self, image: &str, run: &RunArgs) -> Result<u8, Failure> {
        refuse_docker_run_flags(run)?;
        let timeout = run_timeout(run)?;
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(Failure::usage("--timeout must be at least 1s"));
        }
        if self.workload.kind != WorkloadKind::Deployment {
            return Err(Failure::failed(format!(
                "{} is a StatefulSet: rollouts that roll back by themselves are for Deployments \
                 (set its image with kubectl set image and follow it with `{}`)",
                self.workload.name,
                self.status_command()
            )));
        }
        // The workload and the permission to read it are checked before anything changes.
        let revisions = self.revisions().await?;
        let from = revisions.iter().find(|r| r.current).map_or(0, |r| r.number);
        let to = revisions.iter().map(|r| r.number).max().unwrap_or(0) + 1;
        let user = current_user();
        let cause = run
            .cause
            .clone()
            .unwrap_or_else(|| format!("rollout to {image} by {user}"));
        let request = self.request(
            ActionKind::Rollout {
                from_revision: small(from),
                to_revision: small(to),
                image: image.to_string(),
            },
            Some(cause),
        );
        self.refuse_read_only(&request)?;
        if !run.wait && std::env::var_os(super::cli::BACKGROUND_VAR).is_none() {
            let status = self.status_command();
            return super::cli::run_in_background(&self.files(), self.written, &status).await;
        }
        let job = kube_rollout::Job {
            client: self.context.client.clone(),
            workload: self.workload.clone(),
            image: image.to_string(),
            options: kube_rollout::Options {
                timeout,
                ..kube_rollout::Options::default()
            },
            record: Some(kube_rollout::Record {
                state_dir: self.paths.state_dir.clone(),
                engine_id: self.context.engine_id.clone(),
                host: self.context.address.clone(),
                by: user,
            }),
        };
        let audit = self.audit();
        audit.record(&request, "started", &request.describe());
        let mut printer = Printer::new(run.output, &self.workload.name, image, from, self.files());
        let outcome = drive(&job, &mut printer).await;
        printer.done(&outcome);
        let message = match &outcome {
            Outcome::Complete { revision } => {
                format!("{} succeeded: revision {revision}", request.describe())
            }
            Outcome::Unchanged => format!("{}: it runs {image} already", request.describe()),
            Outcome::RolledBack { to, reason, .. } => format!(
                "{} failed and was rolled back to revision {to}: {reason}",
                request.describe()
            ),
            Outcome::Failed { reason } => format!("{} failed: {reason}", request.describe()),
        };
        audit.record(&request, outcome.as_str(), &message);
        Ok(outcome.exit_code())
    }

    /// `rollout status WORKLOAD`: the Pilothouse rollout its state file records, else the
    /// workload's own rollout as `kubectl rollout status` judges it.
    async fn rollout_status(&self, wait: bool, output: Output) -> Result<u8, Failure> {
        let files = self.files();
        let recorded = state::read_state(&files.state).map_err(Failure::failed)?;
        let running = state::is_running(&files);
        let superseded = match &recorded {
            Some(record) if !running => self.superseded(record).await?,
            _ => None,
        };
        if let Some(note) = &superseded {
            eprintln!("pilothouse: {note}");
        }
        if superseded.is_none() && (recorded.is_some() || running) {
            return super::cli::follow_state(
                &files,
                &self.workload.name,
                &self.context.address,
                wait,
                output,
            )
            .await;
        }
        let mut shown: Option<RolloutStatus> = None;
        loop {
            let status = actions::status(&self.context.client, self.workload)
                .await
                .map_err(|e| self.context.failure(e))?;
            if shown.as_ref() != Some(&status) {
                self.print_own_status(&status, output);
                shown = Some(status.clone());
            }
            match status {
                RolloutStatus::Complete { .. } => return Ok(exit::OK),
                RolloutStatus::Failed { .. } => return Ok(exit::FAILED),
                RolloutStatus::Waiting { .. } | RolloutStatus::Paused { .. } if !wait => {
                    return Ok(exit::OK);
                }
                RolloutStatus::Waiting { .. } | RolloutStatus::Paused { .. } => {}
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Why the recorded Pilothouse rollout, which has ended, no longer tells the workload's
    /// state: the Deployment's template is no longer the revision that rollout left it on (a
    /// rollback or `kubectl set image` came after; scaling changes no template). `None` while
    /// it still is, and for a rollout that failed (what it left is not known).
    async fn superseded(&self, record: &state::RolloutState) -> Result<Option<String>, Failure> {
        let left = match record.phase {
            Phase::Succeeded => record.to_revision,
            // Rolling back renumbers the revision returned to as the one after the new
            // revision, as `kubectl rollout undo` does.
            Phase::RolledBack => record
                .replicas
                .iter()
                .map(|r| r.revision)
                .chain([record.to_revision.saturating_add(1)])
                .max()
                .unwrap_or(0),
            _ => return Ok(None),
        };
        let revisions = self.revisions().await?;
        let Some(current) = revisions.iter().find(|r| r.current) else {
            return Ok(None);
        };
        if current.number == u64::from(left) {
            return Ok(None);
        }
        Ok(Some(format!(
            "the last Pilothouse rollout of {} ({}, on revision {left}) was followed by \
             revision {} ({}); showing the Deployment's own rollout status",
            sanitize_plain(&self.workload.name),
            record.phase.as_str(),
            current.number,
            sanitize_plain(&current.image),
        )))
    }

    fn print_own_status(&self, status: &RolloutStatus, output: Output) {
        match output {
            Output::Text => print_out(&format!(
                "{}: {}",
                sanitize_plain(&self.workload.name),
                sanitize_plain(status.message())
            )),
            Output::Json => print_out(&json_line(&json!({
                "workload": self.workload.name,
                "kind": self.workload.kind.label(),
                "phase": own_phase(status),
                "running": false,
                "message": status.message(),
            }))),
        }
    }

    /// `rollout pause|resume|abort WORKLOAD`: to the Pilothouse rollout in progress through its
    /// control file; without one, pause and resume set the Deployment's `paused` as `kubectl
    /// rollout pause` does.
    async fn control(&self, word: Control) -> Result<u8, Failure> {
        let files = self.files();
        let request = self.request(
            ActionKind::RolloutControl {
                word: word.as_str().to_string(),
            },
            None,
        );
        if state::is_running(&files) || word == Control::Abort {
            super::cli::send_control(&files, &request, word, self.paths, self.config)?;
            print_out(&format!(
                "{}: {} sent to the rollout in progress",
                sanitize_plain(self.written),
                word.as_str()
            ));
            return Ok(exit::OK);
        }
        self.refuse_read_only(&request)?;
        let audit = self.audit();
        audit.record(&request, "started", "");
        let paused = word == Control::Pause;
        match actions::set_paused(&self.context.client, self.workload, paused).await {
            Ok(message) => {
                audit.record(&request, "ok", &message);
                print_out(&sanitize_plain(&message));
                Ok(exit::OK)
            }
            Err(e) => {
                audit.record(&request, "failed", &e.to_string());
                Err(self.context.failure(e))
            }
        }
    }

    /// `rollback WORKLOAD [--to-revision N]`, as `kubectl rollout undo` does; with `--wait`,
    /// until the controller has rolled it out.
    async fn rollback(&self, to_revision: Option<u32>, run: &RunArgs) -> Result<u8, Failure> {
        refuse_docker_run_flags(run)?;
        let timeout = run_timeout(run)?;
        let revisions = self.revisions().await?;
        let from = revisions.iter().find(|r| r.current).map_or(0, |r| r.number);
        let chosen = match to_revision {
            Some(n) => revisions.iter().find(|r| r.number == u64::from(n)),
            None => {
                let candidates: Vec<Candidate> = revisions.iter().map(Candidate::from).collect();
                match actions::previous(&candidates, from) {
                    Previous::To(n) => revisions.iter().find(|r| r.number == n),
                    Previous::Nothing | Previous::AllRolledBack(_) => None,
                }
            }
        };
        let to = chosen.map_or(to_revision.map_or(0, u64::from), |r| r.number);
        let image = chosen.map(|r| r.image.clone()).unwrap_or_default();
        let cause = run
            .cause
            .clone()
            .unwrap_or_else(|| format!("rollback to revision {to} by {}", current_user()));
        let request = self.request(
            ActionKind::Rollback {
                from_revision: small(from),
                to_revision: small(to),
                image,
            },
            Some(cause),
        );
        self.refuse_read_only(&request)?;
        let _lock = self.lock(&request, "rollback")?;
        let audit = self.audit();
        audit.record(&request, "started", &request.describe());
        let started = Instant::now();
        let to_number = to_revision.map(u64::from);
        let undone = match actions::undo(&self.context.client, self.workload, to_number).await {
            Ok(undone) => undone,
            Err(e) => {
                let outcome = if matches!(e, ActionError::Refused(_)) {
                    "refused"
                } else {
                    "failed"
                };
                audit.record(&request, outcome, &e.to_string());
                return Err(self.context.failure(e));
            }
        };
        let warning = undone.warning();
        if let Some(warning) = &warning {
            eprintln!("pilothouse: warning: {}", sanitize_plain(warning));
        }
        let skipped = !undone.changed;
        let message = undone.message.clone();
        let mut code = exit::OK;
        let mut reason = None;
        if run.wait
            && !skipped
            && let Err(why) = self.wait_rolled_out(timeout).await
        {
            code = why.code;
            reason = Some(why.message);
        }
        let outcome = match (&reason, skipped) {
            (Some(_), _) => "failed",
            (None, true) => "unchanged",
            (None, false) => "succeeded",
        };
        let said = match &reason {
            Some(why) => format!("{message}; {why}"),
            None => message.clone(),
        };
        let audited = match &warning {
            Some(warning) => format!("{said}; warning: {warning}"),
            None => said.clone(),
        };
        audit.record(
            &request,
            if code == exit::OK { "ok" } else { "failed" },
            &audited,
        );
        match run.output {
            Output::Text => print_out(&sanitize_plain(&said)),
            Output::Json => print_out(&json_line(&json!({
                "event": "done",
                "workload": self.workload.name,
                "outcome": outcome,
                "exit": code,
                "from_revision": from,
                "to_revision": undone.revision,
                "image": undone.image,
                "revision": (code == exit::OK).then_some(if skipped { from } else { undone.revision }),
                "reason": reason.as_deref().or(skipped.then_some(message.as_str())),
                "warning": warning,
                "steps": 0,
                "took_ms": started.elapsed().as_millis() as u64,
            }))),
        }
        Ok(code)
    }

    /// Follows the workload until its controller says it is rolled out; a failed rollout, or
    /// `timeout` passing, is the error.
    async fn wait_rolled_out(&self, timeout: Option<Duration>) -> Result<(), Failure> {
        let started = Instant::now();
        loop {
            match actions::status(&self.context.client, self.workload).await {
                Ok(RolloutStatus::Complete { .. }) => return Ok(()),
                Ok(RolloutStatus::Failed { message }) => return Err(Failure::failed(message)),
                Ok(_) => {}
                Err(e @ ActionError::Unreachable { .. }) => {
                    let failure = self.context.failure(e);
                    eprintln!("pilothouse: warning: {}; trying again", failure.message);
                }
                Err(e) => return Err(self.context.failure(e)),
            }
            if let Some(limit) = timeout
                && started.elapsed() >= limit
            {
                return Err(Failure::failed(format!(
                    "it was not rolled out within {}",
                    super::run::show_duration(limit)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `history WORKLOAD`: the Deployment's revisions from its ReplicaSets, oldest first.
    async fn history(&self, output: Output) -> Result<u8, Failure> {
        if self.workload.kind != WorkloadKind::Deployment {
            return Err(Failure::failed(format!(
                "{} is a StatefulSet: its revisions are ControllerRevisions, which Pilothouse \
                 does not read (kubectl rollout history shows them)",
                self.workload.name
            )));
        }
        let revisions = self.revisions().await?;
        match output {
            Output::Text => print!("{}", history_table(&self.workload.name, &revisions)),
            Output::Json => print_out(&json_line(&history_json(&self.workload.name, &revisions))),
        }
        Ok(exit::OK)
    }

    /// `scale WORKLOAD N` through the scale subresource, audited, refused in read-only mode
    /// and while a rollout of the workload runs.
    async fn scale(&self, replicas: u64, output: Output) -> Result<u8, Failure> {
        let from = self.replicas_now().await?;
        let request = self.request(ActionKind::Scale { from, to: replicas }, None);
        self.refuse_read_only(&request)?;
        let _lock = self.lock(&request, "scale")?;
        for warning in crate::ops::scale::rule_warnings(&self.paths.rules_dir(), self.workload) {
            eprintln!("pilothouse: warning: {warning}");
        }
        let audit = self.audit();
        audit.record(&request, "started", "");
        let message = match actions::scale(&self.context.client, self.workload, replicas).await {
            Ok(message) => {
                audit.record(&request, "ok", &message);
                message
            }
            Err(e) => {
                audit.record(&request, "failed", &e.to_string());
                return Err(self.context.failure(e));
            }
        };
        let scaled = crate::ops::scale::Scaled {
            workload: self.workload.name.clone(),
            target: self.context.name.clone(),
            from,
            to: replicas,
            message,
        };
        match output {
            Output::Text => print_out(&sanitize_plain(&scaled.message)),
            Output::Json => print_out(&json_line(&scaled)),
        }
        Ok(exit::OK)
    }

    /// The replica count the workload's scale subresource holds now.
    async fn replicas_now(&self) -> Result<u64, Failure> {
        let (namespace, name) =
            actions::split_name(self.workload).map_err(|e| self.context.failure(e))?;
        let client = self.context.client.clone();
        let (resource, scale) = match self.workload.kind {
            WorkloadKind::StatefulSet => (
                "statefulsets/scale",
                Api::<StatefulSet>::namespaced(client, namespace)
                    .get_scale(name)
                    .await,
            ),
            _ => (
                "deployments/scale",
                Api::<Deployment>::namespaced(client, namespace)
                    .get_scale(name)
                    .await,
            ),
        };
        let op = Op {
            verb: "get",
            resource,
            namespace,
            name,
        };
        let scale = scale.map_err(|e| self.context.failure(op.fail(e)))?;
        let count = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// Runs the rollout, printing its progress; Ctrl-C (or SIGTERM) once aborts it and so rolls
/// back, twice leaves the Deployment as it is.
async fn drive(job: &kube_rollout::Job, printer: &mut Printer) -> Outcome {
    let (progress_tx, mut progress) = mpsc::unbounded_channel();
    let (abort_tx, abort) = watch::channel(false);
    let rollout = kube_rollout::run(job, &progress_tx, abort);
    tokio::pin!(rollout);
    let mut interrupts = 0u32;
    let mut signals = super::cli::Interruptions::new();
    loop {
        tokio::select! {
            outcome = &mut rollout => {
                while let Ok(now) = progress.try_recv() {
                    printer.show(&now);
                }
                return outcome;
            }
            Some(now) = progress.recv() => printer.show(&now),
            () = signals.next() => interrupts += 1,
        }
        if interrupts == 1 {
            interrupts += 1;
            eprintln!(
                "pilothouse: aborting the rollout of {}: rolling back (interrupt again to leave \
                 it as it is)",
                job.workload.name
            );
            abort_tx.send_replace(true);
        } else if interrupts > 2 {
            eprintln!(
                "pilothouse: left {} as it is; `pilothouse rollback` or `pilothouse rollout` \
                 takes it on from there",
                job.workload.name
            );
            return Outcome::Failed {
                reason: "interrupted".to_string(),
            };
        }
    }
}

/// Prints a Kubernetes rollout's progress as the Docker rollout prints its own: a `started`
/// line, a line per change of the revisions' counts (`progress`), a line per phase change, and
/// the `done` line.
struct Printer {
    output: Output,
    workload: String,
    image: String,
    from: u64,
    files: Files,
    started: Instant,
    announced: bool,
    phase: Phase,
    changes: usize,
}

impl Printer {
    fn new(output: Output, workload: &str, image: &str, from: u64, files: Files) -> Printer {
        Printer {
            output,
            workload: workload.to_string(),
            image: image.to_string(),
            from,
            files,
            started: Instant::now(),
            announced: false,
            phase: Phase::Progressing,
            changes: 0,
        }
    }

    fn line(&self, json: serde_json::Value, text: String) {
        match self.output {
            Output::Json => print_out(&json_line(&json)),
            Output::Text => print_out(&sanitize_plain(&text)),
        }
    }

    fn show(&mut self, now: &Progress) {
        if !self.announced {
            self.announced = true;
            self.announce(now);
        }
        if now.phase != self.phase && !now.phase.is_final() {
            self.phase = now.phase;
            self.line(
                json!({"event": "phase", "phase": now.phase.as_str(), "message": now.message}),
                format!(
                    "{}: {} ({})",
                    self.workload,
                    now.phase.as_str(),
                    now.message
                ),
            );
            return;
        }
        self.changes += 1;
        let revisions: Vec<serde_json::Value> = now
            .revisions
            .iter()
            .map(|r| {
                json!({"revision": r.revision, "image": r.image, "replicas": r.desired,
                       "ready": r.ready})
            })
            .collect();
        self.line(
            json!({
                "event": "progress",
                "phase": now.phase.as_str(),
                "revisions": revisions,
                "message": now.message,
                "took_ms": self.started.elapsed().as_millis() as u64,
            }),
            format!("{} | {}", per_revision(now), now.message),
        );
    }

    /// The `started` line, with the bounds the Deployment's strategy resolves to (from the
    /// state file the rollout wrote before changing anything).
    fn announce(&self, now: &Progress) {
        let recorded = state::read_state(&self.files.state).ok().flatten();
        let desired = recorded.as_ref().map_or(0, |s| s.desired);
        let surge = recorded.as_ref().map_or(0, |s| s.max_surge);
        let unavailable = recorded.as_ref().map_or(0, |s| s.max_unavailable);
        let to = now.to.unwrap_or(now.from + 1);
        self.line(
            json!({
                "event": "started",
                "workload": self.workload,
                "kind": "rollout",
                "from_revision": now.from,
                "to_revision": to,
                "image": self.image,
                "desired": desired,
                "max_surge": surge,
                "max_unavailable": unavailable,
            }),
            format!(
                "{}: revision {} → {to} ({}), {desired} replicas, max surge {surge}, max \
                 unavailable {unavailable}",
                self.workload, now.from, self.image
            ),
        );
    }

    fn done(&self, outcome: &Outcome) {
        let took = self.started.elapsed();
        let (from, to, revision, reason) = match outcome {
            Outcome::Complete { revision } => (self.from, *revision, Some(*revision), None),
            Outcome::Unchanged => (self.from, self.from, Some(self.from), None),
            Outcome::RolledBack { from, to, reason } => (*to, *from, Some(*to), Some(reason)),
            Outcome::Failed { reason } => (self.from, self.from + 1, None, Some(reason)),
        };
        let text = match outcome {
            Outcome::Complete { revision } => format!(
                "{}: rolled out to revision {revision} ({}) in {:.1}s",
                self.workload,
                self.image,
                took.as_secs_f64()
            ),
            Outcome::Unchanged => format!(
                "{} already runs {} (revision {}); nothing to do",
                self.workload, self.image, self.from
            ),
            Outcome::RolledBack { to, reason, .. } => format!(
                "{}: rolled back to revision {to} after {:.1}s: {reason}",
                self.workload,
                took.as_secs_f64()
            ),
            Outcome::Failed { reason } => format!(
                "{}: failed after {:.1}s: {reason}",
                self.workload,
                took.as_secs_f64()
            ),
        };
        self.line(
            json!({
                "event": "done",
                "workload": self.workload,
                "outcome": outcome.as_str(),
                "exit": outcome.exit_code(),
                "from_revision": from,
                "to_revision": to,
                "image": self.image,
                "revision": revision,
                "reason": reason,
                "steps": self.changes,
                "took_ms": took.as_millis() as u64,
            }),
            text,
        );
        let _ = std::io::stdout().flush();
    }
}

/// `rev 1: 3 (3 ready), rev 2: 1 (0 ready)`, as the Docker rollout counts its revisions.
fn per_revision(now: &Progress) -> String {
    let parts: Vec<String> = now
        .revisions
        .iter()
        .map(|r| format!("rev {}: {} ({} ready)", r.revision, r.desired, r.ready))
        .collect();
    if parts.is_empty() {
        "no replicas".to_string()
    } else {
        parts.join(", ")
    }
}

/// The phase word of a workload's own rollout, in the words of Pilothouse's rollouts.
fn own_phase(status: &RolloutStatus) -> &'static str {
    match status {
        RolloutStatus::Complete { .. } => Phase::Succeeded.as_str(),
        RolloutStatus::Waiting { .. } => Phase::Progressing.as_str(),
        RolloutStatus::Paused { .. } => Phase::Paused.as_str(),
        RolloutStatus::Failed { .. } => Phase::Failed.as_str(),
    }
}

/// The revisions as `history` prints them: the current one marked `*`, and why Pilothouse
/// rolled back from a revision, where it did.
fn history_table(workload: &str, revisions: &[Revision]) -> String {
    if revisions.is_empty() {
        return format!("no revisions recorded for {}\n", sanitize_plain(workload));
    }
    let header = [
        "REVISION",
        "REPLICASET",
        "READY",
        "IMAGE",
        "CAUSE",
        "ROLLED BACK",
    ]
    .map(String::from);
    let rows: Vec<[String; 6]> = revisions
        .iter()
        .map(|r| {
            [
                format!("{}{}", r.number, if r.current { "*" } else { "" }),
                sanitize_plain(&r.replica_set),
                format!("{}/{}", r.ready, r.desired),
                sanitize_plain(&r.image),
                r.change_cause
                    .as_deref()
                    .map_or_else(|| "-".to_string(), sanitize_plain),
                r.rolled_back
                    .as_deref()
                    .map_or_else(|| "-".to_string(), sanitize_plain),
            ]
        })
        .collect();
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(display_width(cell));
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| pad(cell, width))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The revisions as `history --output json` prints them, in the Docker history's shape: a
/// Deployment's revision has no Pilothouse hash or recorded time (`null`), `rolled_back` is its
/// ReplicaSet's mark, and it adds its ReplicaSet and counts.
fn history_json(workload: &str, revisions: &[Revision]) -> serde_json::Value {
    let listed: Vec<serde_json::Value> = revisions
        .iter()
        .map(|r| {
            json!({
                "revision": r.number,
                "hash": null,
                "image": r.image,
                "cause": r.change_cause,
                "created": null,
                "rolled_back": r.rolled_back,
                "replica_set": r.replica_set,
                "replicas": r.desired,
                "ready": r.ready,
            })
        })
        .collect();
    json!({
        "workload": workload,
        "current": revisions.iter().find(|r| r.current).map(|r| r.number),
        "revisions": listed,
    })
}

/// `status` with a Kubernetes context chosen: its workloads, after the Docker targets unless
/// `--context` names the context (then it alone).
async fn status(
    docker_host: Option<&str>,
    docker_target: Option<&str>,
    output: Output,
    paths: &Paths,
    config: &Config,
    selection: &Selection,
) -> u8 {
    let (mut report, mut code) = if selection.context.is_some() {
        (
            StatusReport {
                targets: Vec::new(),
            },
            exit::OK,
        )
    } else {
        match crate::ops::status::collect(docker_host, docker_target, paths, config).await {
            Ok(found) => found,
            Err(usage) => return crate::ops::report(&usage),
        }
    };
    let context = match Context::open(selection, config) {
        Ok(context) => context,
        Err(failure) => return crate::ops::report(&failure),
    };
    let listed = match kube_status(&context, &paths.state_dir).await {
        Ok(listed) => listed,
        Err(failure) => {
            code = crate::ops::status::worse(code, failure.code);
            TargetStatus {
                name: context.name.clone(),
                address: context.address.clone(),
                connected: false,
                error: Some(failure.message),
                workloads: Vec::new(),
            }
        }
    };
    report.targets.push(listed);
    crate::ops::status::print(&report, output);
    code
}

/// The context's Deployments and StatefulSets (in its namespace, or every one), Deployments
/// first, each by name.
async fn kube_status(
    context: &Context,
    state_dir: &std::path::Path,
) -> Result<TargetStatus, Failure> {
    let namespace = context.namespace.as_str();
    let op = |resource| Op {
        verb: "list",
        resource,
        namespace: if context.namespace_chosen {
            namespace
        } else {
            ""
        },
        name: "",
    };
    let (deployments, sets) = if context.namespace_chosen {
        (
            Api::<Deployment>::namespaced(context.client.clone(), namespace),
            Api::<StatefulSet>::namespaced(context.client.clone(), namespace),
        )
    } else {
        (
            Api::<Deployment>::all(context.client.clone()),
            Api::<StatefulSet>::all(context.client.clone()),
        )
    };
    let params = ListParams::default();
    let deployments = deployments
        .list(&params)
        .await
        .map_err(|e| context.failure(op("deployments").fail(e)))?;
    let sets = sets
        .list(&params)
        .await
        .map_err(|e| context.failure(op("statefulsets").fail(e)))?;
    let mut workloads: Vec<WorkloadStatus> = Vec::new();
    for deployment in &deployments.items {
        let name = qualified(&deployment.metadata);
        let spec = deployment.spec.clone().unwrap_or_default();
        let status = deployment.status.clone().unwrap_or_default();
        let files = Files::new(state_dir, &context.engine_id, &name);
        let revision = deployment
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION))
            .and_then(|v| v.trim().parse::<u32>().ok());
        let own = actions::deployment_status(deployment);
        workloads.push(WorkloadStatus {
            name: name.clone(),
            kind: WorkloadKind::Deployment.label(),
            replicas: count(spec.replicas.or(Some(1))),
            ready: count(status.ready_replicas),
            images: images(&spec.template),
            revision,
            rollout: crate::ops::status::rollout(&files).or_else(|| Some(summary(&own, revision))),
        });
    }
    for set in &sets.items {
        let spec = set.spec.clone().unwrap_or_default();
        let status = set.status.clone().unwrap_or_default();
        let own = actions::statefulset_status(set);
        workloads.push(WorkloadStatus {
            name: qualified(&set.metadata),
            kind: WorkloadKind::StatefulSet.label(),
            replicas: count(spec.replicas.or(Some(1))),
            ready: count(status.ready_replicas),
            images: images(&spec.template),
            revision: None,
            rollout: Some(summary(&own, None)),
        });
    }
    workloads.sort_by(|a, b| (a.kind != "deploy", &a.name).cmp(&(b.kind != "deploy", &b.name)));
    Ok(TargetStatus {
        name: context.name.clone(),
        address: context.address.clone(),
        connected: true,
        error: None,
        workloads,
    })
}

fn qualified(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("")
    )
}

fn count(n: Option<i32>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// The images of a pod template's containers, each once.
fn images(template: &PodTemplateSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for container in template.spec.iter().flat_map(|s| &s.containers) {
        if let Some(image) = &container.image
            && !out.contains(image)
        {
            out.push(image.clone());
        }
    }
    out
}

/// A workload's own rollout (no Pilothouse rollout recorded) as `status` shows a rollout.
fn summary(own: &RolloutStatus, revision: Option<u32>) -> RolloutSummary {
    RolloutSummary {
        phase: own_phase(own).to_string(),
        to_revision: revision,
        message: own.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_word_is_quoted_only_when_a_shell_would_read_it_otherwise() {
        assert_eq!(shell_word("shop/web"), "shop/web");
        assert_eq!(shell_word("/tmp/k.yaml"), "/tmp/k.yaml");
        assert_eq!(shell_word("prod eu"), "'prod eu'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("$(x)"), "'$(x)'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn workload_names_take_the_kinds_kubectl_takes_and_a_plain_name_is_a_deployment() {
        let parsed = |text| parse_kind_and_name(text).map_err(|f| f.code);
        assert_eq!(parsed("web"), Ok((WorkloadKind::Deployment, "web")));
        assert_eq!(parsed("deploy/web"), Ok((WorkloadKind::Deployment, "web")));
        assert_eq!(
            parsed("deployment/web-1"),
            Ok((WorkloadKind::Deployment, "web-1"))
        );
        assert_eq!(
            parsed("sts/queue"),
            Ok((WorkloadKind::StatefulSet, "queue"))
        );
        assert_eq!(
            parsed("statefulsets/queue"),
            Ok((WorkloadKind::StatefulSet, "queue"))
        );
        for bad in [
            "shop/web",
            "pod/web",
            "deploy/",
            "Web",
            "deploy/web/x",
            "-web",
            "",
        ] {
            assert_eq!(parsed(bad), Err(exit::USAGE), "{bad:?}");
        }
    }
}
