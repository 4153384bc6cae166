//! What the autoscaler tells its front ends: one [`RuleStatus`] per rule, published whole on a
//! watch channel after every cycle, so the console draws from a snapshot and the daemon's
//! `/metrics` reads the same numbers.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::model::WorkloadId;
use crate::rules::{Basis, MetricRecommendation, Reading, Rule};

/// Decisions kept per rule for the console's timeline.
pub const HISTORY: usize = 120;

/// The autoscaler as a whole, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// In the order the rules were loaded (file name, then position in the file).
    pub rules: Vec<RuleStatus>,
    /// Rule files that could not be loaded, with every error as `file:line:column: message`;
    /// the rules they held before keep running.
    pub load_errors: Vec<String>,
    /// Each Prometheus server queried so far and whether it answered its last query (an
    /// answer with no usable number still counts as answered), or why not.
    pub metric_servers: Vec<(String, Result<(), String>)>,
}

impl Status {
    /// The status of the rule named `name`.
    pub fn rule(&self, name: &str) -> Option<&RuleStatus> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The rule that manages `workload`, if any.
    pub fn rule_for(&self, workload: &WorkloadId) -> Option<&RuleStatus> {
        self.rules.iter().find(|r| r.rule.target.matches(workload))
    }
}

/// One rule: what it is, what it last decided, and what it did.
#[derive(Debug, Clone)]
pub struct RuleStatus {
    /// The rule's name (unique across the loaded rules).
    pub name: String,
    /// The file the rule came from.
    pub file: PathBuf,
    /// The rule as it runs now.
    pub rule: Arc<Rule>,
    /// Whether it runs, and if not, why.
    pub state: RuleState,
    /// The workload's replica count at the last cycle; `None` before the first or when the
    /// workload is not found.
    pub current: Option<u32>,
    /// What the last decision asked for.
    pub desired: Option<u32>,
    /// The last reading of each metric, in the rule's order; `None` before the first cycle.
    pub readings: Vec<Option<Reading>>,
    /// The last decision first in [`RuleStatus::history`]'s order: newest last.
    /// Shared with earlier snapshots, so publishing a status copies no history.
    pub history: Arc<VecDeque<DecisionRecord>>,
    /// Cycles that ended in a decision (counting holds and standby cycles).
    pub decisions_total: u64,
    /// Metric readings that failed, over all metrics.
    pub metric_errors_total: u64,
    /// Scale actions the rule started.
    pub scales_total: u64,
    /// Scale actions that failed or were refused.
    pub scale_errors_total: u64,
}

impl RuleStatus {
    /// A rule as loaded, before its first cycle.
    pub fn new(file: PathBuf, rule: Arc<Rule>, state: RuleState) -> RuleStatus {
        RuleStatus {
            name: rule.name.clone(),
            file,
            readings: vec![None; rule.metrics.len()],
            rule,
            state,
            current: None,
            desired: None,
            history: Arc::new(VecDeque::new()),
            decisions_total: 0,
            metric_errors_total: 0,
            scales_total: 0,
            scale_errors_total: 0,
        }
    }

    /// The newest decision.
    pub fn last(&self) -> Option<&DecisionRecord> {
        self.history.back()
    }
}

/// Whether a rule acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleState {
    /// Evaluated every pollingInterval and acting on its decisions.
    Active,
    /// Paused by an operator: not evaluated, the workload left alone.
    Paused,
    /// Evaluated but not acting: another autoscaler holds the host's lock.
    Standby {
        /// Who holds it, as that autoscaler wrote it: `daemon pid 812 (root@web-1) since ...`.
        holder: String,
    },
    /// The rule names a platform or target this autoscaler cannot drive.
    Unsupported(String),
}

impl RuleState {
    /// One word for tables: `active`, `paused`, `standby`, `unsupported`.
    pub fn word(&self) -> &'static str {
        match self {
            RuleState::Active => "active",
            RuleState::Paused => "paused",
            RuleState::Standby { .. } => "standby",
            RuleState::Unsupported(_) => "unsupported",
        }
    }
}

/// One cycle of one rule: its inputs, its decision and what came of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub at: DateTime<Utc>,
    /// The replica count the cycle saw; `None` when the workload was not found.
    pub current: Option<u32>,
    /// The count decided; `None` when there was nothing to decide on (no workload).
    pub desired: Option<u32>,
    /// Each metric's reading, in the rule's order.
    pub readings: Vec<Reading>,
    /// Each metric's recommendation, in the rule's order.
    pub recommendations: Vec<MetricRecommendation>,
    /// The decision's reason, in words.
    pub reason: String,
    /// What the decision rested on; `None` when none was made.
    pub basis: Option<Basis>,
    /// What the autoscaler did about it.
    pub action: Act,
}

/// What a cycle did to the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// Nothing to do: the decision equals the current count, or there is no workload.
    Hold,
    /// A scale from one count to another was done.
    Scaled { from: u32, to: u32 },
    /// A scale was tried and failed, or the actuator refused it (read-only mode).
    Failed { from: u32, to: u32, error: String },
    /// A scale was wanted, but another autoscaler holds the host.
    Standby { from: u32, to: u32 },
    /// A scale was wanted, but this autoscaler runs read-only.
    ReadOnly { from: u32, to: u32 },
}

impl Act {
    /// A short phrase: `hold`, `2 → 5`, `2 → 5 failed: ...`, `standby (2 → 5 not done)`.
    pub fn describe(&self) -> String {
        match self {
            Act::Hold => "hold".to_string(),
            Act::Scaled { from, to } => format!("{from} → {to}"),
            Act::Failed { from, to, error } => format!("{from} → {to} failed: {error}"),
            Act::Standby { from, to } => format!("standby ({from} → {to} not done)"),
            Act::ReadOnly { from, to } => format!("read-only ({from} → {to} not done)"),
        }
    }
}
