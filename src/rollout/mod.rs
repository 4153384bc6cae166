//! Rollouts: replacing a workload's replicas of one revision by replicas of another without
//! dropping below a floor of ready replicas, and rolling back when a health gate fails.

pub mod analysis;
pub mod cli;
pub mod history;
pub mod kube_cli;
pub mod plan;
pub mod probe;
pub mod revision;
pub mod run;
pub mod state;

pub use plan::{Bounds, IntOrPercent, Progress, Step, bounds, next_step, simulate};
