//! Revisions of a workload template (placeholder).
