//! The Kubernetes platform.

pub mod actions;
pub mod config;
pub mod convert;
pub mod lease;
pub mod rollout;
