//! Scaling rules: the validated form of a `rules/*.yaml` file, and the pure decision the
//! autoscaler makes from a rule and its metric readings.
//!
//! This module parses and validates rule files ([`parse_rules`], [`load_rules`]), decides the
//! replica count for one cycle ([`decide()`]), replays a rule over a recorded series or a
//! Prometheus range ([`simulate`]) and runs the `rules check` and `rules simulate` commands
//! ([`run`]). Apart from `rules simulate --prometheus` it does not query Prometheus; it never
//! reads Docker stats, keeps time or changes a workload: the live loop gathers readings, passes
//! the time in, and acts on the [`Decision`] through the actuator.

pub mod check;
pub mod decide;
mod parse;
pub mod simulate;

use std::fmt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::RulesCommand;
use crate::config::ConfigError;
use crate::model::{WorkloadId, WorkloadKind};

pub use decide::{Basis, decide, retain_recent};
pub use decide::{Decision, Inputs, MetricRecommendation, Reading, Recommendation, ScaleEvent};
pub use parse::parse_duration;

/// One scaling rule for one workload, with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique within its file; names the rule in decisions, logs and `/metrics`.
    pub name: String,
    /// Where the workload lives and which one it is.
    pub target: RuleTarget,
    /// The fewest replicas the rule keeps (HPA default 1).
    pub min_replicas: u32,
    /// The most replicas the rule allows; required.
    pub max_replicas: u32,
    /// How often the live loop evaluates the rule (default 15 s).
    pub polling_interval: Duration,
    /// At least one; the highest recommendation wins.
    pub metrics: Vec<Metric>,
    /// Stabilization windows and rate policies per direction.
    pub behavior: Behavior,
    /// How far the usage ratio may stray from 1 before the rule acts.
    pub tolerance: Tolerance,
    /// What to hold when no metric can be read for a while; `None` holds the current count.
    pub fallback: Option<Fallback>,
}

/// The place a rule's workload lives, and the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleTarget {
    /// A workload on a Docker host named in `config.toml`.
    Docker {
        /// The Docker target's name (`local`, or a `[[docker]]` name).
        host: String,
        /// The workload on that host.
        workload: DockerWorkload,
    },
    /// A workload in a Kubernetes context and namespace.
    Kubernetes {
        /// The kubeconfig context.
        context: String,
        /// The namespace of the workload.
        namespace: String,
        /// Which kind of object scales.
        kind: KubeKind,
        /// The object's name.
        name: String,
    },
}

/// A Docker workload as a rule names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerWorkload {
    /// `PROJECT/SERVICE`: a Compose service.
    Compose {
        /// The Compose project.
        project: String,
        /// The service in that project.
        service: String,
    },
    /// `NAME`: a Pilothouse group or a Swarm service, whichever the host has.
    Named(String),
}

/// The Kubernetes objects a rule can scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeKind {
    /// `deployment/NAME`.
    Deployment,
    /// `statefulset/NAME`.
    StatefulSet,
}

impl RuleTarget {
    /// Whether `id` (as the store names workloads) is the workload this rule scales.
    pub fn matches(&self, id: &WorkloadId) -> bool {
        match self {
            RuleTarget::Docker { host, workload } => {
                if id.target != *host {
                    return false;
                }
                match workload {
                    DockerWorkload::Compose { .. } => {
                        id.kind == WorkloadKind::Compose && id.name == workload.to_string()
                    }
                    DockerWorkload::Named(name) => {
                        matches!(id.kind, WorkloadKind::Group | WorkloadKind::SwarmService)
                            && id.name == *name
                    }
                }
            }
            RuleTarget::Kubernetes {
                context,
                namespace,
                kind,
                name,
            } => {
                let kind = match kind {
                    KubeKind::Deployment => WorkloadKind::Deployment,
                    KubeKind::StatefulSet => WorkloadKind::StatefulSet,
                };
                id.target == *context
                    && id.kind == kind
                    && id.name.split_once('/') == Some((namespace.as_str(), name.as_str()))
            }
        }
    }

    /// The target (Docker host or kubeconfig context) the workload lives on, as the store
    /// names targets.
    pub fn target_name(&self) -> &str {
        match self {
            RuleTarget::Docker { host, .. } => host,
            RuleTarget::Kubernetes { context, .. } => context,
        }
    }

    /// The workload as the store names it within its target: `PROJECT/SERVICE` or `NAME` on
    /// Docker, `NAMESPACE/NAME` on Kubernetes.
    pub fn workload_name(&self) -> String {
        match self {
            RuleTarget::Docker { workload, .. } => workload.to_string(),
            RuleTarget::Kubernetes {
                namespace, name, ..
            } => format!("{namespace}/{name}"),
        }
    }
}

impl fmt::Display for DockerWorkload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerWorkload::Compose { project, service } => write!(f, "{project}/{service}"),
            DockerWorkload::Named(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for RuleTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleTarget::Docker { host, workload } => write!(f, "{host}:{workload}"),
            RuleTarget::Kubernetes {
                context,
                namespace,
                kind,
                name,
            } => {
                let kind = match kind {
                    KubeKind::Deployment => "deployment",
                    KubeKind::StatefulSet => "statefulset",
                };
                write!(f, "{context}/{namespace}/{kind}/{name}")
            }
        }
    }
}

/// One metric of a rule: a name and where its value comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Unique within the rule; the column name in `rules simulate` series.
    pub name: String,
    /// The query or resource the value comes from.
    pub source: MetricSource,
}

/// Where a metric's value comes from, and what value the rule aims for.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricSource {
    /// An instant Prometheus query returning one number.
    Prometheus {
        /// `None` means the default server from `config.toml`.
        server_address: Option<String>,
        /// PromQL, never empty.
        query: String,
        /// Whether `target` is for the total or per replica.
        kind: TargetKind,
        /// The value aimed for; greater than 0.
        target: f64,
    },
    /// CPU use as a percent of each replica's limit (or of one core), averaged over replicas.
    Cpu {
        /// The average utilization aimed for, in percent; greater than 0.
        utilization: f64,
    },
}

/// How a Prometheus metric's target is read, as in HPA v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum TargetKind {
    /// The query's value is compared with the target as it is.
    Value,
    /// The query's value is a total; the target is per replica.
    AverageValue,
}

/// Scale-up and scale-down behavior, as `behavior` in HPA v2.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// Rules for growing.
    pub scale_up: ScalingRules,
    /// Rules for shrinking.
    pub scale_down: ScalingRules,
}

/// One direction's stabilization window and rate policies.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingRules {
    /// How far back recorded recommendations are considered.
    pub stabilization_window: Duration,
    /// How several policies combine, or whether this direction is off.
    pub select_policy: SelectPolicy,
    /// Rate limits; never empty after defaults are applied.
    pub policies: Vec<Policy>,
}

/// How the limits of several policies combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum SelectPolicy {
    /// The policy allowing the biggest change wins.
    Max,
    /// The policy allowing the smallest change wins.
    Min,
    /// No change in this direction at all.
    Disabled,
}

/// A limit on how much the replica count may change within a period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Whether `value` counts replicas or percent.
    pub kind: PolicyKind,
    /// Greater than 0.
    pub value: u32,
    /// Greater than 0.
    pub period: Duration,
}

/// The unit of a policy's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum PolicyKind {
    /// Replicas added or removed per period.
    Pods,
    /// Percent of the count at the start of the period.
    Percent,
}

/// The dead band around a usage ratio of 1, per direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// The ratio must exceed `1 + scale_up` to grow.
    pub scale_up: f64,
    /// The ratio must fall below `1 - scale_down` to shrink.
    pub scale_down: f64,
}

/// What to do when no metric of the rule can be read for several cycles in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    /// The rule goes to `replicas` after more than this many failed cycles in a row.
    pub failure_threshold: u32,
    /// Within `minReplicas..=maxReplicas`.
    pub replicas: u32,
}

impl Behavior {
    /// The HPA v2 scale-up defaults: no window; 100 % or 4 replicas per 15 s, the larger.
    pub fn default_scale_up() -> ScalingRules {
        ScalingRules {
            stabilization_window: Duration::ZERO,
            select_policy: SelectPolicy::Max,
            policies: vec![
                Policy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period: Duration::from_secs(15),
                },
                Policy {
                    kind: PolicyKind::Pods,
                    value: 4,
                    period: Duration::from_secs(15),
                },
            ],
        }
    }

    /// The HPA v2 scale-down defaults: a 300 s window; 100 % per 15 s.
    pub fn default_scale_down() -> ScalingRules {
        ScalingRules {
            stabilization_window: Duration::from_secs(300),
            select_policy: SelectPolicy::Max,
            policies: vec![Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period: Duration::from_secs(15),
            }],
        }
    }
}

impl Default for Behavior {
    fn default() -> Behavior {
        Behavior {
            scale_up: Behavior::default_scale_up(),
            scale_down: Behavior::default_scale_down(),
        }
    }
}

impl Default for Tolerance {
    fn default() -> Tolerance {
        Tolerance {
            scale_up: 0.1,
            scale_down: 0.1,
        }
    }
}

/// Parse and validate the rules in `text`, the contents of `path` (one rule or a list).
///
/// Every validation error is returned, each at the line and column of the offending key or
/// value; a YAML syntax or type error stops parsing, so it comes alone.
pub fn parse_rules(path: &Path, text: &str) -> Result<Vec<Rule>, Vec<ConfigError>> {
    parse::parse_rules(path, text)
}

/// Read `path` and parse the rules in it, as [`parse_rules`] does.
pub fn load_rules(path: &Path) -> Result<Vec<Rule>, Vec<ConfigError>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_rules(path, &text),
        Err(source) => Err(vec![ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }]),
    }
}

/// Run a `rules` subcommand, printing to stdout and stderr; the code is the process's exit code.
pub fn run(command: &RulesCommand) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    let code = match command {
        RulesCommand::Check { files } => check::run(files, &mut stdout, &mut stderr),
        RulesCommand::Simulate {
            rule,
            series,
            prometheus,
            from,
            to,
            step,
            initial_replicas,
            output,
        } => {
            let input = match (series, prometheus) {
                (Some(file), _) => simulate::SeriesInput::File(file),
                (None, Some(url)) => simulate::SeriesInput::Prometheus(simulate::RangeArgs {
                    url,
                    from: from.as_deref(),
                    to,
                    step: step.as_deref(),
                }),
                (None, None) => {
                    return usage_error(
                        &mut stderr,
                        "rules simulate needs --series or --prometheus",
                    );
                }
            };
            simulate::run(
                rule,
                input,
                *initial_replicas,
                *output,
                &mut stdout,
                &mut stderr,
            )
        }
    };
    ExitCode::from(code)
}

/// Exit 2, as clap does for a usage error it cannot express itself.
fn usage_error(err: &mut dyn std::io::Write, message: &str) -> ExitCode {
    let _ = writeln!(err, "{message}");
    ExitCode::from(2)
}
