//! The autoscaler view.
