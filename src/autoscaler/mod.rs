//! The autoscaler: one task per rule that reads the rule's metrics, calls the pure decision
//! function and scales the workload through the actuator, in the console and in the daemon
//! alike.
//!
//! Not for deciding (see [`crate::rules::decide()`]) or for speaking to a platform (the
//! workers do): this module gathers readings, keeps each rule's history and acts.

pub mod engine;
pub mod lock;
pub mod observe;
pub mod setup;
pub mod status;

pub use engine::{Command, EngineHandle, LoadedRule, Settings, load_dir, start};
pub use status::{Act, DecisionRecord, RuleState, RuleStatus, Status};
