//! Load balancers kept in step with a workload's replicas: servers added when a replica is
//! healthy, drained before it stops, removed after.

pub mod haproxy;

pub use haproxy::{Admin, Haproxy, LbError, RuntimeAddress, ServerState, valid_server_name};
