//! The revision history of a workload (placeholder).
