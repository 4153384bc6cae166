//! The Prometheus text exposition of the autoscaler's status, and the health report.
