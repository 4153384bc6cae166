//! Pilothouse: the engine behind the console, the daemon and the command line.
//!
//! Platforms and metric sources feed the store; the UI and (later) the autoscaler read it;
//! actions flow back through the actuator to the platforms.

pub mod model;
pub mod platform;
pub mod text;
