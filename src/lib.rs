//! Pilothouse: the engine behind the console, the daemon and the command line.
//!
//! Platforms and metric sources feed the store; the UI and (later) the autoscaler read it;
//! actions flow back through the actuator to the platforms.

pub mod actuator;
pub mod autoscaler;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod fsutil;
pub mod keymap;
pub mod lb;
pub mod logbuf;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod paths;
pub mod platform;
pub mod rollout;
pub mod rules;
pub mod sandbox;
pub mod store;
pub mod text;
pub mod theme;
pub mod ui;
