//! Benchmarks of the autoscaler's decision function: one decision, and one cycle of 1,000
//! rules against recorded readings with histories as long as the default windows keep.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{Criterion, black_box, criterion_group, criterion_main};

use pilothouse::rules::{
    Behavior, DockerWorkload, Inputs, Metric, MetricSource, Reading, Recommendation, Rule,
    RuleTarget, ScaleEvent, TargetKind, Tolerance, decide,
};

/// A rule like the design document's: a per-replica Prometheus metric and CPU.
fn rule(index: usize) -> Rule {
    Rule {
        name: format!("rule-{index}"),
        target: RuleTarget::Docker {
            host: "local".into(),
            workload: DockerWorkload::Named(format!("web-{index}")),
        },
        min_replicas: 2,
        max_replicas: 20,
        polling_interval: Duration::from_secs(15),
        metrics: vec![
            Metric {
                name: "rps".into(),
                source: MetricSource::Prometheus {
                    server_address: None,
                    query: "sum(rate(http_requests_total[1m]))".into(),
                    kind: TargetKind::AverageValue,
                    target: 100.0,
                },
            },
            Metric {
                name: "cpu".into(),
                source: MetricSource::Cpu { utilization: 70.0 },
            },
        ],
        behavior: Behavior::default(),
        tolerance: Tolerance::default(),
        fallback: None,
    }
}

/// What one rule brings to a cycle: readings and histories.
struct Recorded {
    current: u32,
    readings: Vec<Reading>,
    recommendations: Vec<Recommendation>,
    scale_events: Vec<ScaleEvent>,
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(secs)
}

const NOW: i64 = 10_000;

/// 20 recommendations (300 s at 15 s) and 3 scale events, varied per rule.
fn recorded(index: usize) -> Recorded {
    let spread = u32::try_from(index % 17).unwrap_or(0);
    let current = 2 + spread;
    let recommendations = (1..=20)
        .map(|i| Recommendation {
            at: at(NOW - 15 * i),
            replicas: 2 + (spread + u32::try_from(i).unwrap_or(0)) % 18,
        })
        .collect();
    let scale_events = (1..=3)
        .map(|i| ScaleEvent {
            at: at(NOW - 10 * i),
            from: current.saturating_sub(1),
            to: current,
        })
        .collect();
    let load = 50.0 + f64::from(spread) * 97.0;
    let readings = if index.is_multiple_of(50) {
        vec![Err("connection refused".into()), Ok(40.0)]
    } else {
        vec![Ok(load), Ok(30.0 + f64::from(spread) * 4.0)]
    };
    Recorded {
        current,
        readings,
        recommendations,
        scale_events,
    }
}

fn inputs(recorded: &Recorded) -> Inputs<'_> {
    Inputs {
        current: recorded.current,
        readings: &recorded.readings,
        recommendations: &recorded.recommendations,
        scale_events: &recorded.scale_events,
        failed_cycles: 0,
        now: at(NOW),
        history_since: None,
    }
}

fn one_decision(c: &mut Criterion) {
    let rule = rule(7);
    let recorded = recorded(7);
    c.bench_function("decide/one", |b| {
        b.iter(|| decide(black_box(&rule), black_box(&inputs(&recorded))))
    });
}

fn cycle_of_1000_rules(c: &mut Criterion) {
    let rules: Vec<Rule> = (0..1000).map(rule).collect();
    let recorded: Vec<Recorded> = (0..1000).map(recorded).collect();
    c.bench_function("decide/cycle_1000_rules", |b| {
        b.iter(|| {
            let mut scaled = 0;
            for (rule, recorded) in rules.iter().zip(&recorded) {
                let decision = decide(rule, &inputs(recorded));
                if decision.desired != recorded.current {
                    scaled += 1;
                }
            }
            black_box(scaled)
        })
    });
}

criterion_group!(benches, one_decision, cycle_of_1000_rules);
criterion_main!(benches);
