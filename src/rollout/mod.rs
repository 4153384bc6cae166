//! Rollouts: replacing a workload's replicas of one revision by replicas of another without
//! dropping below a floor of ready replicas.
//!
//! For now this holds only the arithmetic of a rolling update ([`plan`]); it is not yet where
//! replicas are started, probed, added to a load balancer or stopped.

pub mod plan;

pub use plan::{Bounds, IntOrPercent, Progress, Step, bounds, next_step, simulate};
