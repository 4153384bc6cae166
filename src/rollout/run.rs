//! The rolling replace of a Docker workload's replicas: start replicas of the new revision, wait
//! until each passes its gate, add it to the load balancer, then drain and stop old ones, within
//! `maxSurge` and `maxUnavailable`; and when a gate fails, a deadline passes or an operator
//! aborts, the same walk back to the revision it started from.
//!
//! Not for choosing the revision or recording it (see [`super::cli`] and [`super::history`]),
//! nor for the arithmetic of a step ([`super::plan`]). It observes the engine before every step
//! rather than trusting what it did, so a replica that dies mid-rollout is seen.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::InspectContainerOptions;
use bollard::models::ContainerInspectResponse;
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::analysis::{Analysis, Verdict};
use super::plan::{self, Bounds, IntOrPercent, Progress};
use super::probe::{self, Gate, Probe};
use super::revision::{HASH_LABEL, Template};
use super::state::{
    self, Control, Files, Kind, Phase, Reading, ReplicaView, RolloutState, StepRecord,
};
use crate::lb::haproxy::Haproxy;
use crate::platform::docker::scale::{self, Member, Members};

/// How often the replicas are looked at while waiting for health checks.
pub const POLL: Duration = Duration::from_millis(100);
/// What `progressDeadline` is when none is given, as for a Kubernetes Deployment.
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
/// How often a paused rollout looks at its replicas again, for the state file.
const PAUSED_LOOK: Duration = Duration::from_secs(1);
/// Replica numbers tried when names are taken, before the rollout gives up.
const NAME_ATTEMPTS: u64 = 10;
/// Analysis readings the state file keeps, newest last.
const ANALYSIS_KEPT: usize = 50;

/// A workload's backend in a load balancer.
#[derive(Debug, Clone)]
pub struct LbBinding {
    pub haproxy: Haproxy,
    pub backend: String,
    /// The port the replicas serve on, at their own address.
    pub port: u16,
}

/// A revision to roll to: its number and template.
#[derive(Debug, Clone)]
pub struct Goal {
    pub number: u32,
    pub template: Template,
    pub hash: String,
}

impl Goal {
    pub fn new(number: u32, template: Template) -> Goal {
        let hash = template.hash();
        Goal {
            number,
            template,
            hash,
        }
    }
}

/// Everything a rollout needs, decided before it starts.
#[derive(Debug, Clone)]
pub struct Job {
    pub docker: Docker,
    pub workload: String,
    pub members: Members,
    pub files: Files,
    pub host: String,
    pub engine_id: String,
    pub kind: Kind,
    /// The revision running before; a failed rollout returns to it.
    pub from: Goal,
    pub to: Goal,
    pub max_surge: IntOrPercent,
    pub max_unavailable: IntOrPercent,
    pub progress_deadline: Duration,
    /// From the start; passing it is treated as an abort.
    pub timeout: Option<Duration>,
    pub probe: Option<Probe>,
    pub lb: Option<LbBinding>,
    /// A Prometheus condition checked while rolling forward.
    pub analysis: Option<Analysis>,
    /// The count to keep, when it is not the number of replicas found: a rollout that takes on
    /// one cut short keeps the count that one started with.
    pub desired: Option<u32>,
    /// Revision numbers by template hash, for showing the replicas of other revisions.
    pub numbers: HashMap<String, u32>,
    pub by: String,
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// The revision it started from serves again; why it went back, and whether that was a
    /// health gate (rather than an operator's abort or the timeout).
    RolledBack {
        why: String,
        gate: bool,
    },
    /// It stopped where it was; why.
    Failed(String),
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Succeeded => crate::ops::exit::OK,
            Outcome::RolledBack { .. } => crate::ops::exit::ROLLED_BACK,
            Outcome::Failed(_) => crate::ops::exit::FAILED,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::RolledBack { .. } => "rolled-back",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// Why a walk to a revision stopped before it was done.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    /// A health gate failed or a deadline passed: roll back.
    Gate(String),
    /// An operator aborted, or the timeout passed: roll back.
    Aborted(String),
    /// The engine or the load balancer failed: stop where it is.
    Error(String),
}

/// Runs the rollout of `job`, sending the state after every change; the lock must be held by
/// the caller.
pub async fn run(job: &Job, events: &mpsc::UnboundedSender<RolloutState>) -> Outcome {
    let mut runner = match Runner::start(job, events).await {
        Ok(runner) => runner,
        Err(why) => return Outcome::Failed(why),
    };
    let outcome = match runner.walk(&job.to, true).await {
        Ok(()) => Outcome::Succeeded,
        Err(Stop::Error(why)) => Outcome::Failed(why),
        Err(stop @ (Stop::Gate(_) | Stop::Aborted(_))) => {
            let gate = matches!(stop, Stop::Gate(_));
            let (Stop::Gate(why) | Stop::Aborted(why) | Stop::Error(why)) = stop;
            warn!(workload = job.workload, %why, "rolling back");
            runner.state.message = format!("rolling back: {why}");
            runner.set_phase(Phase::RollingBack);
            runner.walk_started = Instant::now();
            match runner.walk(&job.from, false).await {
                Ok(()) => Outcome::RolledBack { why, gate },
                Err(Stop::Gate(back) | Stop::Aborted(back) | Stop::Error(back)) => {
                    Outcome::Failed(format!("{why}; rolling back failed too: {back}"))
                }
            }
        }
    };
    runner.finish(&outcome);
    outcome
}

/// One replica as observed before a step.
struct Seen {
    member: Member,
    inspect: ContainerInspectResponse,
    hash: String,
}

struct Runner<'a> {
    job: &'a Job,
    events: &'a mpsc::UnboundedSender<RolloutState>,
    state: RolloutState,
    bounds: Bounds,
    started: Instant,
    walk_started: Instant,
    /// Ids of replicas of the goal that passed their gate (and were added to the load
    /// balancer) in this walk.
    ready: HashSet<String>,
    /// Probe failures in a row and the time of the last probe, by id.
    probes: HashMap<String, (u32, Instant)>,
    /// The step being timed: its record and when it started.
    open_step: Option<(StepRecord, Instant)>,
    /// Ids of replicas of other revisions known to be in the load balancer.
    synced: HashSet<String>,
    /// The newest replica's configuration as last seen, which new replicas copy.
    source: Option<ContainerInspectResponse>,
    /// The highest replica number used so far.
    highest: u64,
    /// Ids of replicas whose gate failed: never counted ready again.
    failed: HashSet<String>,
    /// Ids of the replicas this rollout created.
    created: HashSet<String>,
    /// Analysis evaluations that passed and that were inconclusive, and when the next is due.
    passes: u32,
    inconclusive: u32,
    next_analysis: Instant,
}

impl<'a> Runner<'a> {
    async fn start(
        job: &'a Job,
        events: &'a mpsc::UnboundedSender<RolloutState>,
    ) -> Result<Runner<'a>, String> {
        let members = scale::list_members(&job.docker, &job.members)
            .await
            .map_err(|e| format!("listing the replicas of {} failed: {e}", job.workload))?;
        let found = u32::try_from(members.len()).unwrap_or(u32::MAX);
        let desired = job.desired.unwrap_or(found);
        if desired == 0 {
            return Err(format!(
                "{} has no replica: there is nothing to roll out, and no configuration to copy",
                job.workload
            ));
        }
        let bounds = plan::bounds(desired, job.max_surge, job.max_unavailable)?;
        let now = Utc::now();
        let state = RolloutState {
            workload: job.workload.clone(),
            host: job.host.clone(),
            engine_id: job.engine_id.clone(),
            kind: job.kind,
            phase: Phase::Progressing,
            from_revision: job.from.number,
            to_revision: job.to.number,
            image: job.to.template.image.clone(),
            desired,
            max_surge: bounds.surge,
            max_unavailable: bounds.unavailable,
            replicas: Vec::new(),
            steps: Vec::new(),
            analysis: Vec::new(),
            message: String::new(),
            started: now,
            updated: now,
            pid: std::process::id(),
            by: job.by.clone(),
        };
        let mut runner = Runner {
            job,
            events,
            state,
            bounds,
            started: Instant::now(),
            walk_started: Instant::now(),
            ready: HashSet::new(),
            probes: HashMap::new(),
            open_step: None,
            synced: HashSet::new(),
            source: None,
            highest: 0,
            failed: HashSet::new(),
            created: HashSet::new(),
            passes: 0,
            inconclusive: 0,
            next_analysis: Instant::now(),
        };
        runner.check_ports(desired + bounds.surge).await?;
        runner.publish();
        Ok(runner)
    }

    /// Refuses a workload whose replicas publish a fixed host port, which a surge replica
    /// would collide with.
    async fn check_ports(&self, most: u32) -> Result<(), String> {
        if most <= 1 {
            return Ok(());
        }
        let members = scale::list_members(&self.job.docker, &self.job.members)
            .await
            .map_err(|e| format!("listing the replicas of {} failed: {e}", self.job.workload))?;
        let Some(newest) = scale::newest(&members) else {
            return Ok(());
        };
        let inspect = self.inspect(&newest.id).await?;
        let host = inspect.host_config.unwrap_or_default();
        match scale::port_collision(&self.job.workload, u64::from(most), &host) {
            Some(refusal) => Err(refusal.replace("cannot scale", "cannot roll out")),
            None => Ok(()),
        }
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInspectResponse, String> {
        self.job
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| format!("inspecting {id} failed: {e}"))
    }

    /// Walks the replicas to `goal`. `abortable` is false on the way back: a rollback is not
    /// itself aborted or timed out.
    async fn walk(&mut self, goal: &Goal, abortable: bool) -> Result<(), Stop> {
        self.ready.clear();
        self.probes.clear();
        let mut last_progress = Instant::now();
        let mut best_ready = 0;
        loop {
            if abortable && self.obey_controls(goal).await? {
                // Paused time does not count against the progress deadline.
                last_progress = Instant::now();
            }
            if let Some(limit) = self.job.timeout.filter(|_| abortable)
                && self.started.elapsed() > limit
            {
                return Err(Stop::Aborted(format!(
                    "the rollout did not finish within --timeout {}",
                    show_duration(limit)
                )));
            }
            let seen = self.observe().await?;
            // With no maxSurge the old replicas may all be gone before a new one starts: the
            // configuration seen last is copied then.
            let newest = seen
                .iter()
                .max_by_key(|s| (s.member.created, s.member.number.unwrap_or(0)));
            if let Some(newest) = newest {
                self.source = Some(newest.inspect.clone());
            }
            let (new, old): (Vec<&Seen>, Vec<&Seen>) =
                seen.iter().partition(|s| self.counts_as_goal(s, goal));
            self.gate_new(&new).await?;
            let old_ready: Vec<&Seen> = old.iter().copied().filter(|s| self.serves(s)).collect();
            self.sync_lb(&old_ready).await?;
            let old_ready = old_ready.len();
            let new_ready = new
                .iter()
                .filter(|s| self.ready.contains(&s.member.id))
                .count();
            self.show(&seen, goal);
            if new_ready > best_ready {
                best_ready = new_ready;
                last_progress = Instant::now();
            }
            let progress = Progress {
                desired: self.state.desired,
                old: count(old.len()),
                old_ready: count(old_ready),
                new: count(new.len()),
                new_ready: count(new_ready),
            };
            if abortable && self.analyse().await? {
                last_progress = Instant::now();
            }
            let step = plan::next_step(&progress, self.bounds);
            let settled = step.done || (old.is_empty() && new_ready >= self.state.desired as usize);
            let analysed = !abortable || self.analysed();
            if settled && analysed {
                let extra: Vec<&Seen> = self.extra_new(&new);
                if !extra.is_empty() {
                    self.begin_step();
                    self.remove(&extra).await?;
                    continue;
                }
                self.close_step();
                return Ok(());
            }
            if settled || (step.create_new == 0 && step.remove_old == 0) {
                if last_progress.elapsed() > self.job.progress_deadline {
                    let what = if settled {
                        "the analysis did not pass"
                    } else {
                        "no replica became ready"
                    };
                    return Err(Stop::Gate(format!(
                        "rolling to revision {}, {what} within the progress deadline of {}",
                        goal.number,
                        show_duration(self.job.progress_deadline)
                    )));
                }
                let waited = Instant::now();
                tokio::time::sleep(POLL).await;
                if let Some((record, _)) = self.open_step.as_mut() {
                    record.health_ms += millis(waited.elapsed());
                }
                continue;
            }
            self.begin_step();
            let victims = victims(&old, &self.ready, &self.failed, step.remove_old as usize);
            self.create(goal, &seen, step.create_new).await?;
            self.remove(&victims).await?;
            last_progress = Instant::now();
        }
    }

    /// Whether a replica counts as one of the goal's: its template, and it runs or this rollout
    /// created it. One of the goal's template that was left stopped (or never started) by
    /// someone else is replaced like an old one.
    fn counts_as_goal(&self, seen: &Seen, goal: &Goal) -> bool {
        let runs = seen.inspect.state.as_ref().and_then(|s| s.running) == Some(true);
        seen.hash == goal.hash && (runs || self.created.contains(&seen.member.id))
    }

    /// Whether a replica of another revision serves: it runs and passes Docker's health check,
    /// and its own gate never failed in this rollout.
    fn serves(&self, seen: &Seen) -> bool {
        !self.failed.contains(&seen.member.id) && probe::gate(&seen.inspect, false) == Gate::Passed
    }

    /// New replicas past the desired count (left by an interrupted rollout): those not ready
    /// first, then the newest.
    fn extra_new<'s>(&self, new: &[&'s Seen]) -> Vec<&'s Seen> {
        let excess = new.len().saturating_sub(self.state.desired as usize);
        victims(new, &self.ready, &self.failed, excess)
    }

    /// Whether the analysis, if any, has passed as often as it must.
    fn analysed(&self) -> bool {
        self.job
            .analysis
            .as_ref()
            .is_none_or(|analysis| self.passes >= analysis.count)
    }

    /// Evaluates the analysis when it is due: a failed reading, or one inconclusive reading
    /// too many, stops the walk. True when it passed.
    async fn analyse(&mut self) -> Result<bool, Stop> {
        let Some(analysis) = self.job.analysis.as_ref() else {
            return Ok(false);
        };
        if Instant::now() < self.next_analysis {
            return Ok(false);
        }
        self.next_analysis = Instant::now() + analysis.interval;
        let (value, verdict) = analysis.evaluate().await;
        self.state.analysis.push(Reading {
            at: Utc::now(),
            value,
            verdict: verdict.as_str().to_string(),
        });
        let keep = self.state.analysis.len().saturating_sub(ANALYSIS_KEPT);
        self.state.analysis.drain(..keep);
        self.publish();
        match verdict {
            Verdict::Pass => {
                self.passes += 1;
                Ok(true)
            }
            Verdict::Fail(why) => Err(Stop::Gate(why)),
            Verdict::Inconclusive(why) => {
                self.inconclusive += 1;
                if self.inconclusive > analysis.inconclusive_limit {
                    Err(Stop::Gate(format!(
                        "analysis {:?} was inconclusive {} times, more than the {} allowed; the \
                         last time: {why}",
                        analysis.condition.query, self.inconclusive, analysis.inconclusive_limit
                    )))
                } else {
                    Ok(false)
                }
            }
        }
    }

    /// Reads the operator's word; waits out a pause. True when it paused.
    async fn obey_controls(&mut self, goal: &Goal) -> Result<bool, Stop> {
        let mut paused = false;
        let mut looked = Instant::now();
        loop {
            match state::read_control(&self.job.files) {
                Some(Control::Abort) => {
                    state::clear_control(&self.job.files);
                    return Err(Stop::Aborted("aborted by an operator".to_string()));
                }
                Some(Control::Pause) => {
                    if !paused {
                        info!(workload = self.job.workload, "rollout paused");
                        paused = true;
                        self.state.message = "paused by an operator".to_string();
                        self.set_phase(Phase::Paused);
                    }
                    // Paused, the replicas' health is still shown as it changes.
                    // The step in progress still finishes: its new replicas join when ready.
                    if looked.elapsed() >= PAUSED_LOOK {
                        looked = Instant::now();
                        if let Ok(seen) = self.observe().await {
                            let new: Vec<&Seen> = seen
                                .iter()
                                .filter(|s| self.counts_as_goal(s, goal))
                                .collect();
                            self.gate_new(&new).await?;
                            self.show(&seen, goal);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Some(Control::Resume) | None => {
                    if paused {
                        info!(workload = self.job.workload, "rollout resumed");
                        state::clear_control(&self.job.files);
                        self.state.message.clear();
                        self.set_phase(Phase::Progressing);
                    }
                    return Ok(paused);
                }
            }
        }
    }

    /// Lists and inspects the workload's replicas; those removed meanwhile are left out.
    async fn observe(&self) -> Result<Vec<Seen>, Stop> {
        let members = scale::list_members(&self.job.docker, &self.job.members)
            .await
            .map_err(|e| {
                Stop::Error(format!(
                    "listing the replicas of {} failed: {e}",
                    self.job.workload
                ))
            })?;
        let docker = &self.job.docker;
        let inspections = futures::stream::iter(members)
            .map(|member| async move {
                let inspect = docker
                    .inspect_container(&member.id, None::<InspectContainerOptions>)
                    .await;
                (member, inspect)
            })
            .buffered(crate::platform::docker::INSPECT_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut seen = Vec::new();
        for (member, inspect) in inspections {
            let Ok(inspect) = inspect else { continue };
            let labelled = inspect
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(HASH_LABEL))
                .cloned();
            let hash = match labelled {
                Some(hash) => hash,
                None => Template::from_container(&inspect)
                    .map(|t| t.hash())
                    .unwrap_or_default(),
            };
            seen.push(Seen {
                member,
                inspect,
                hash,
            });
        }
        Ok(seen)
    }

    /// Checks the replicas of the goal that have not passed yet; those that pass join the
    /// load balancer. A gate that fails stops the walk.
    async fn gate_new(&mut self, new: &[&Seen]) -> Result<(), Stop> {
        let probe = self.job.probe.clone();
        for seen in new {
            let id = &seen.member.id;
            if self.ready.contains(id) {
                // Passed once; a replica that dies after is seen by the next walk or step.
                if let Gate::Failed(why) = probe::gate(&seen.inspect, false) {
                    self.ready.remove(id);
                    self.failed.insert(id.clone());
                    return Err(Stop::Gate(why));
                }
                continue;
            }
            let probed = probe.is_some() && !probe::has_healthcheck(&seen.inspect);
            let mut verdict = probe::gate(&seen.inspect, probed);
            if probed && matches!(verdict, Gate::Waiting(_)) {
                let probing = Instant::now();
                verdict = self.probe_once(seen, probe.as_ref()).await;
                if let Some((record, _)) = self.open_step.as_mut() {
                    record.health_ms += millis(probing.elapsed());
                }
            }
            match verdict {
                Gate::Waiting(_) => {}
                Gate::Failed(why) => {
                    self.failed.insert(id.clone());
                    return Err(Stop::Gate(why));
                }
                Gate::Passed => {
                    self.join_lb(seen).await?;
                    self.ready.insert(id.clone());
                }
            }
        }
        Ok(())
    }

    /// One probe of a replica when one is due; Failed after too many failures in a row.
    async fn probe_once(&mut self, seen: &Seen, probe: Option<&Probe>) -> Gate {
        let Some(probe) = probe else {
            return Gate::Passed;
        };
        let id = seen.member.id.clone();
        let now = Instant::now();
        if let Some((_, last)) = self.probes.get(&id)
            && now.duration_since(*last) < probe::PROBE_EVERY
        {
            return Gate::Waiting(format!("{}: probing", seen.member.name));
        }
        let Some(ip) = probe::replica_ip(&seen.inspect) else {
            return Gate::Waiting(format!("{}: no address yet", seen.member.name));
        };
        match probe.check(ip).await {
            Ok(()) => {
                self.probes.remove(&id);
                Gate::Passed
            }
            Err(why) => {
                let entry = self.probes.entry(id).or_insert((0, now));
                entry.0 += 1;
                entry.1 = now;
                if entry.0 >= probe::PROBE_RETRIES {
                    Gate::Failed(format!(
                        "{} failed its probe {} times in a row: {why}",
                        seen.member.name, entry.0
                    ))
                } else {
                    Gate::Waiting(why)
                }
            }
        }
    }

    /// Makes sure the ready replicas of other revisions are in the load balancer once per
    /// rollout, so a backend that lacks some (a first rollout, a restarted load balancer) serves
    /// every ready replica before any is drained.
    async fn sync_lb(&mut self, ready: &[&Seen]) -> Result<(), Stop> {
        if self.job.lb.is_none() {
            return Ok(());
        }
        for seen in ready {
            if self.synced.insert(seen.member.id.clone()) {
                self.join_lb(seen).await?;
            }
        }
        Ok(())
    }

    /// Adds a ready replica to the load balancer's backend.
    async fn join_lb(&self, seen: &Seen) -> Result<(), Stop> {
        let Some(lb) = &self.job.lb else {
            return Ok(());
        };
        let Some(ip) = probe::replica_ip(&seen.inspect) else {
            return Err(Stop::Error(format!(
                "{} has no address on any network, so {} cannot send it traffic",
                seen.member.name,
                lb.haproxy.address()
            )));
        };
        let address = std::net::SocketAddr::new(ip, lb.port);
        lb.haproxy
            .add_server(&lb.backend, &seen.member.name, address)
            .await
            .map_err(|e| {
                Stop::Error(format!(
                    "adding {} to {}: {e}",
                    seen.member.name, lb.backend
                ))
            })?;
        info!(workload = self.job.workload, replica = %seen.member.name, %address, backend = %lb.backend, "replica added to the load balancer");
        Ok(())
    }

    /// Starts `count` replicas of the goal, copying the newest replica's configuration.
    async fn create(&mut self, goal: &Goal, seen: &[Seen], count: u32) -> Result<(), Stop> {
        if count == 0 {
            return Ok(());
        }
        let began = Instant::now();
        let Some(source) = self.source.clone() else {
            return Err(Stop::Error(format!(
                "{} has no replica to copy the configuration from",
                self.job.workload
            )));
        };
        let in_use = seen
            .iter()
            .filter_map(|s| s.member.number)
            .max()
            .unwrap_or(0)
            .max(seen.len() as u64);
        self.highest = self.highest.max(in_use);
        let mut created = Vec::new();
        for _ in 0..count {
            let (replica, number, id) = self.create_one(goal, &source, &created).await?;
            self.highest = number;
            self.created.insert(id);
            info!(workload = self.job.workload, replica = %replica, revision = goal.number, "replica created");
            created.push(replica);
        }
        if let Some((record, _)) = self.open_step.as_mut() {
            record.created.extend(created);
            record.create_ms += millis(began.elapsed());
        }
        Ok(())
    }

    /// Creates and starts one replica of the goal with the next free number; a name that is
    /// taken meanwhile (a scale running beside the rollout) moves on to the next number.
    async fn create_one(
        &self,
        goal: &Goal,
        source: &ContainerInspectResponse,
        created: &[String],
    ) -> Result<(String, u64, String), Stop> {
        let mut number = self.highest;
        for _ in 0..NAME_ATTEMPTS {
            number += 1;
            let mut replica =
                scale::new_replica(source, &self.job.members, number).map_err(Stop::Error)?;
            goal.template.apply(goal.number, &mut replica.config);
            match scale::create_and_start(&self.job.docker, &replica).await {
                Ok(id) => return Ok((replica.name, number, id)),
                Err(e) if e.contains("409") && e.contains("already in use") => {
                    warn!(workload = self.job.workload, replica = %replica.name, "the name is taken; trying the next number");
                }
                Err(e) => {
                    return Err(Stop::Error(format!("{e} (created before it: {created:?})")));
                }
            }
        }
        Err(Stop::Error(format!(
            "{NAME_ATTEMPTS} replica names after {} were taken; is something else creating \
             replicas of {}?",
            self.job.members.replica_name(self.highest),
            self.job.workload
        )))
    }

    /// Drains (from the load balancer), stops and removes the given replicas, in order.
    async fn remove(&mut self, victims: &[&Seen]) -> Result<(), Stop> {
        let began = Instant::now();
        for victim in victims {
            if let Some(lb) = &self.job.lb {
                // Drained, waited for and taken out of the backend, as a scale-down does.
                let backend = scale::Backend {
                    haproxy: &lb.haproxy,
                    name: lb.backend.clone(),
                    port: lb.port,
                };
                backend.leave(&victim.member).await.map_err(Stop::Error)?;
            }
            scale::stop_and_remove(&self.job.docker, &victim.member)
                .await
                .map_err(Stop::Error)?;
            self.ready.remove(&victim.member.id);
            info!(workload = self.job.workload, replica = %victim.member.name, "replica removed");
            if let Some((record, _)) = self.open_step.as_mut() {
                record.removed.push(victim.member.name.clone());
            }
        }
        if let Some((record, _)) = self.open_step.as_mut() {
            record.drain_ms += millis(began.elapsed());
        }
        Ok(())
    }

    /// Closes the step being timed and opens the next.
    fn begin_step(&mut self) {
        self.close_step();
        let number = self.state.steps.len() as u32 + 1;
        let record = StepRecord {
            number,
            created: Vec::new(),
            removed: Vec::new(),
            took_ms: 0,
            health_ms: 0,
            drain_ms: 0,
            create_ms: 0,
        };
        self.open_step = Some((record, Instant::now()));
    }

    fn close_step(&mut self) {
        if let Some((mut record, began)) = self.open_step.take() {
            record.took_ms = millis(began.elapsed());
            self.state.steps.push(record);
            self.publish();
        }
    }

    /// The replicas as the state file shows them.
    fn show(&mut self, seen: &[Seen], goal: &Goal) {
        let mut replicas: Vec<ReplicaView> = seen
            .iter()
            .map(|s| {
                let revision = if s.hash == goal.hash {
                    goal.number
                } else {
                    self.job.numbers.get(&s.hash).copied().unwrap_or(0)
                };
                let ready = if s.hash == goal.hash {
                    self.ready.contains(&s.member.id)
                } else {
                    self.serves(s)
                };
                ReplicaView {
                    name: s.member.name.clone(),
                    revision,
                    health: health_word(&s.inspect),
                    ready,
                }
            })
            .collect();
        replicas.sort_by(|a, b| a.name.cmp(&b.name));
        if replicas != self.state.replicas {
            self.state.replicas = replicas;
            self.publish();
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        self.state.phase = phase;
        self.publish();
    }

    /// Writes the state file and sends the state on; a state file that cannot be written is
    /// logged, not fatal: the rollout itself goes on.
    fn publish(&mut self) {
        self.state.updated = Utc::now();
        if let Err(e) = state::write_state(&self.job.files.state, &self.state) {
            warn!(error = %e, "the rollout state file was not written");
        }
        let _ = self.events.send(self.state.clone());
    }

    fn finish(&mut self, outcome: &Outcome) {
        self.close_step();
        self.state.message = match outcome {
            Outcome::Succeeded => format!(
                "every replica runs revision {} ({})",
                self.job.to.number, self.job.to.template.image
            ),
            Outcome::RolledBack { why, .. } => {
                format!("rolled back to revision {}: {why}", self.job.from.number)
            }
            Outcome::Failed(why) => why.clone(),
        };
        let phase = match outcome {
            Outcome::Succeeded => Phase::Succeeded,
            Outcome::RolledBack { .. } => Phase::RolledBack,
            Outcome::Failed(_) => Phase::Failed,
        };
        self.set_phase(phase);
    }
}

/// The replicas to remove from `from`: those not ready first, then the newest.
fn victims<'s>(
    from: &[&'s Seen],
    ready: &HashSet<String>,
    failed: &HashSet<String>,
    count: usize,
) -> Vec<&'s Seen> {
    let members: Vec<Member> = from.iter().map(|s| s.member.clone()).collect();
    let order = scale::removal_order(&members);
    let is_ready = |s: &Seen| {
        !failed.contains(&s.member.id)
            && (ready.contains(&s.member.id) || probe::gate(&s.inspect, false) == Gate::Passed)
    };
    let find = |member: &Member| from.iter().copied().find(|s| s.member.id == member.id);
    let mut out: Vec<&Seen> = order
        .iter()
        .filter_map(find)
        .filter(|s| !is_ready(s))
        .collect();
    out.extend(order.iter().filter_map(find).filter(|s| is_ready(s)));
    out.truncate(count);
    out
}

/// One word for a replica's health, as the state file shows it.
fn health_word(inspect: &ContainerInspectResponse) -> String {
    let state = inspect.state.as_ref();
    let running = state.and_then(|s| s.running).unwrap_or(false);
    if !running {
        return state
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".to_string());
    }
    state
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty() && s != "none")
        .unwrap_or_else(|| "running".to_string())
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration as `1h30m`, `10m`, `90s` or `250ms`, as the flags take them.
pub fn show_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_as_the_flags_take_them() {
        assert_eq!(show_duration(Duration::from_secs(600)), "10m");
        assert_eq!(show_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(show_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(show_duration(Duration::from_millis(250)), "250ms");
    }
}
