//! The daemon: the autoscaler with no terminal, for a host. Structured log lines on stdout,
//! `/metrics` and `/healthz` over HTTP, SIGHUP to reload the rules, SIGTERM to stop.

pub mod exposition;
pub mod http;
pub mod leader;
pub mod service;
