//! Benchmarks of the autoscaler's decision function.

fn main() {}
