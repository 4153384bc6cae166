//! The decision function: what replica count a rule asks for in one cycle, and why.
//!
//! Pure: the caller passes the readings, the histories and the time, and keeps the
//! recommendation the decision returns for the next cycle. The live loop, `rules simulate` and
//! the tests call [`decide`] alike. Not for reading metrics, keeping time or scaling anything.
//!
//! The semantics are those of the Kubernetes HPA v2 controller: per-metric usage ratios with a
//! tolerance, the highest recommendation winning, stabilization windows over recorded
//! recommendations, rate policies over recent scale events, then the min/max bounds. A metric
//! that cannot be read never lets the workload shrink.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Metric, MetricSource, PolicyKind, Rule, ScalingRules, SelectPolicy, TargetKind};
use super::{Policy, Tolerance};

/// One metric's reading in a cycle: its value, or why it could not be read.
///
/// For `AverageValue` the value is the query's total (the decision divides by the current
/// replicas); for `cpu` it is the utilization percent averaged over the replicas.
pub type Reading = Result<f64, String>;

/// A replica count one cycle asked for before stabilization, kept for later windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    /// When the cycle ran.
    pub at: DateTime<Utc>,
    /// The count the metrics asked for.
    pub replicas: u32,
}

/// A change of the workload's replica count, kept for the rate policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    /// When the count changed.
    pub at: DateTime<Utc>,
    /// The count before.
    pub from: u32,
    /// The count after.
    pub to: u32,
}

/// Everything one decision depends on besides the rule.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The workload's replica count now.
    pub current: u32,
    /// One reading per metric, in the rule's order; a missing one counts as failed.
    pub readings: &'a [Reading],
    /// Recommendations of earlier cycles (older ones than the longest window are ignored).
    pub recommendations: &'a [Recommendation],
    /// Replica changes of the workload (older ones than the longest period are ignored).
    pub scale_events: &'a [ScaleEvent],
    /// Cycles in a row, just before this one, in which no metric could be read.
    pub failed_cycles: u32,
    /// The time of this cycle.
    pub now: DateTime<Utc>,
    /// Since when the caller has recorded recommendations. Before it the history is unknown,
    /// and a scale-down window that reaches back past it counts the current count as
    /// recommended, so a loop that just started waits out one window before it shrinks a
    /// workload. `None` takes the recommendations as the whole history, as the HPA does.
    pub history_since: Option<DateTime<Utc>>,
}

/// What one metric asked for in this cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRecommendation {
    /// The metric's name in the rule.
    pub metric: String,
    /// The replica count it asks for, or why it could not be read.
    pub replicas: Result<u32, String>,
    /// How the count was reached, e.g. `rps 480 / 100 per replica x 2 → 5`.
    pub explanation: String,
}

/// What the decision was based on; the reason says it in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The metrics, through stabilization, rate policies and bounds.
    Metrics,
    /// The workload has 0 replicas while minReplicas is above 0: autoscaling is off.
    ScalingDisabled,
    /// The current count is outside minReplicas..maxReplicas and goes to the nearest bound.
    OutOfBounds,
    /// A metric failed and the rest would not scale up (or all failed): the count holds.
    MetricsFailed,
    /// No metric could be read for more than failureThreshold cycles: the fallback count.
    Fallback,
}

/// The outcome of one cycle of one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The replica count the workload should have now.
    pub desired: u32,
    /// One per metric, in the rule's order.
    pub recommendations: Vec<MetricRecommendation>,
    /// What an operator reads: the numbers and each limit that applied.
    pub reason: String,
    /// What the decision was based on.
    pub basis: Basis,
    /// The recommendation to keep for later cycles; `None` when this cycle made none.
    pub record: Option<Recommendation>,
    /// Cycles in a row, this one included, in which no metric could be read.
    pub failed_cycles: u32,
}

/// Decide the replica count for `rule` in this cycle.
pub fn decide(rule: &Rule, inputs: &Inputs<'_>) -> Decision {
    let recommendations = recommend_all(rule, inputs);
    let all_failed = recommendations.iter().all(|r| r.replicas.is_err());
    let failed_cycles = if all_failed {
        inputs.failed_cycles.saturating_add(1)
    } else {
        0
    };
    let mut decision = Decision {
        desired: inputs.current,
        recommendations,
        reason: String::new(),
        basis: Basis::Metrics,
        record: None,
        failed_cycles,
    };

    if let Some((basis, desired, reason)) = outside_autoscaling(rule, inputs.current) {
        decision.basis = basis;
        decision.desired = desired;
        decision.reason = reason;
        return decision;
    }

    let (proposal, basis, mut reason) = match propose(rule, inputs, &decision) {
        Ok(proposal) => proposal,
        Err(held) => {
            decision.basis = Basis::MetricsFailed;
            decision.reason = held;
            return decision;
        }
    };

    let stabilized = stabilize(rule, inputs, proposal, &mut reason);
    let desired = limit_rate(rule, inputs, stabilized, &mut reason);
    decision.desired = desired;
    decision.basis = basis;
    decision.reason = reason;
    decision.record = Some(Recommendation {
        at: inputs.now,
        replicas: proposal,
    });
    decision
}

/// Drop the entries no window or period of `rule` can reach any more, as of `now`.
pub fn retain_recent(
    rule: &Rule,
    now: DateTime<Utc>,
    recommendations: &mut Vec<Recommendation>,
    scale_events: &mut Vec<ScaleEvent>,
) {
    let behavior = &rule.behavior;
    let longest = [&behavior.scale_up, &behavior.scale_down]
        .iter()
        .flat_map(|rules| {
            let periods = rules.policies.iter().map(|p| p.period);
            periods.chain([rules.stabilization_window])
        })
        .max()
        .unwrap_or_default();
    let cutoff = now - delta(longest);
    recommendations.retain(|r| r.at > cutoff);
    scale_events.retain(|e| e.at > cutoff);
}

/// The cases in which the HPA does not look at metrics at all.
fn outside_autoscaling(rule: &Rule, current: u32) -> Option<(Basis, u32, String)> {
    if current == 0 && rule.min_replicas > 0 {
        let reason = format!(
            "the workload has 0 replicas and minReplicas is {}: autoscaling is off until it has \
             replicas again (scale it by hand to resume)",
            rule.min_replicas
        );
        return Some((Basis::ScalingDisabled, 0, reason));
    }
    if current > rule.max_replicas {
        let reason = format!(
            "{current} replicas is above maxReplicas {max} → {max}",
            max = rule.max_replicas
        );
        return Some((Basis::OutOfBounds, rule.max_replicas, reason));
    }
    if current < rule.min_replicas {
        let reason = format!(
            "{current} replicas is below minReplicas {min} → {min}",
            min = rule.min_replicas
        );
        return Some((Basis::OutOfBounds, rule.min_replicas, reason));
    }
    None
}

/// The count the metrics (or the fallback) ask for, or the reason the count holds.
fn propose(
    rule: &Rule,
    inputs: &Inputs<'_>,
    decision: &Decision,
) -> Result<(u32, Basis, String), String> {
    let current = inputs.current;
    let explained = explain_all(&decision.recommendations);
    let highest = decision
        .recommendations
        .iter()
        .filter_map(|r| r.replicas.as_ref().ok().copied())
        .max();
    let Some(highest) = highest else {
        return fallback_or_hold(rule, current, decision.failed_cycles, explained);
    };
    let any_failed = decision.recommendations.iter().any(|r| r.replicas.is_err());
    if any_failed && highest < current {
        return Err(format!(
            "{explained}; a metric that failed never scales down: holding {current}"
        ));
    }
    let mut reason = explained;
    let succeeded = decision
        .recommendations
        .iter()
        .filter(|r| r.replicas.is_ok())
        .count();
    if succeeded > 1 {
        let _ = write!(reason, "; the highest, {highest}, wins");
    }
    Ok((highest, Basis::Metrics, reason))
}

/// Every metric failed: the fallback count once the threshold is passed, else the current one.
fn fallback_or_hold(
    rule: &Rule,
    current: u32,
    failed_cycles: u32,
    explained: String,
) -> Result<(u32, Basis, String), String> {
    match rule.fallback {
        Some(fallback) if failed_cycles > fallback.failure_threshold => {
            let reason = format!(
                "{explained}; no metric read for {failed_cycles} cycles (more than {}): \
                 fallback {}",
                fallback.failure_threshold, fallback.replicas
            );
            Ok((fallback.replicas, Basis::Fallback, reason))
        }
        Some(fallback) => Err(format!(
            "{explained}; no metric read for {failed_cycles} cycle(s): holding {current} \
             (fallback {} after more than {})",
            fallback.replicas, fallback.failure_threshold
        )),
        None => Err(format!("{explained}; no metric read: holding {current}")),
    }
}

fn explain_all(recommendations: &[MetricRecommendation]) -> String {
    let mut text = String::new();
    for (i, recommendation) in recommendations.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(&recommendation.explanation);
    }
    text
}

fn recommend_all(rule: &Rule, inputs: &Inputs<'_>) -> Vec<MetricRecommendation> {
    rule.metrics
        .iter()
        .enumerate()
        .map(|(i, metric)| {
            let missing = Err("no reading".to_string());
            let reading = inputs.readings.get(i).unwrap_or(&missing);
            recommend(metric, reading, inputs.current, rule.tolerance)
        })
        .collect()
}

/// One metric's recommendation, as the HPA computes it for its metric type.
fn recommend(
    metric: &Metric,
    reading: &Reading,
    current: u32,
    tolerance: Tolerance,
) -> MetricRecommendation {
    let name = &metric.name;
    let value = match reading {
        Ok(value) if value.is_finite() => *value,
        Ok(value) => return failed(name, format!("the value {value} is not a finite number")),
        Err(why) => return failed(name, why.clone()),
    };
    // LIMITATION: the HPA multiplies Value and CPU ratios by the ready pods and treats missing
    // or unready pods specially; the readings here carry no readiness, so all replicas count.
    let replicas = f64::from(current);
    let (count, formula) = match &metric.source {
        MetricSource::Prometheus {
            kind: TargetKind::AverageValue,
            target,
            ..
        } => {
            // As the HPA does for per-replica targets: the ratio decides whether to act, the
            // total divided by the per-replica target decides how many.
            let ratio = value / (target * replicas);
            let count = if current > 0 && within(ratio, tolerance) {
                None
            } else {
                Some(ceil_count(value / target))
            };
            (
                count,
                format!(
                    "{name} {} / {} per replica x {current}",
                    num(value),
                    num(*target)
                ),
            )
        }
        MetricSource::Prometheus {
            kind: TargetKind::Value,
            target,
            ..
        } => {
            let ratio = value / target;
            let formula = format!("{name} {} / {} x {current}", num(value), num(*target));
            (ratio_count(ratio, current, tolerance), formula)
        }
        MetricSource::Cpu { utilization } => {
            let ratio = value / utilization;
            let formula = format!(
                "{name} {}% / {}% x {current}",
                num(value),
                num(*utilization)
            );
            (ratio_count(ratio, current, tolerance), formula)
        }
    };
    let (count, explanation) = match count {
        Some(count) => (count, format!("{formula} → {count}")),
        None => (current, format!("{formula} within tolerance → {current}")),
    };
    MetricRecommendation {
        metric: name.clone(),
        replicas: Ok(count),
        explanation,
    }
}

fn failed(name: &str, why: String) -> MetricRecommendation {
    MetricRecommendation {
        metric: name.to_string(),
        explanation: format!("{name} failed: {why}"),
        replicas: Err(why),
    }
}

/// `ceil(current × ratio)`, or `None` inside the tolerance; from 0 replicas, `ceil(ratio)`.
fn ratio_count(ratio: f64, current: u32, tolerance: Tolerance) -> Option<u32> {
    if current == 0 {
        return Some(ceil_count(ratio));
    }
    if within(ratio, tolerance) {
        return None;
    }
    Some(ceil_count(ratio * f64::from(current)))
}

/// Whether `ratio` is close enough to 1 to change nothing.
fn within(ratio: f64, tolerance: Tolerance) -> bool {
    (1.0 - tolerance.scale_down) <= ratio && ratio <= (1.0 + tolerance.scale_up)
}

/// `x` rounded up to a replica count, saturating at 0 and `u32::MAX`.
fn ceil_count(x: f64) -> u32 {
    let up = x.ceil();
    if up.is_nan() || up <= 0.0 {
        0
    } else if up >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // In range and whole, checked just above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let count = up as u32;
        count
    }
}

/// Apply the stabilization windows: at least the lowest recommendation of the scale-up window,
/// at most the highest of the scale-down window, both counting this cycle's.
fn stabilize(rule: &Rule, inputs: &Inputs<'_>, proposal: u32, reason: &mut String) -> u32 {
    let behavior = &rule.behavior;
    let up_window = behavior.scale_up.stabilization_window;
    let down_window = behavior.scale_down.stabilization_window;
    let up_cutoff = inputs.now - delta(up_window);
    let down_cutoff = inputs.now - delta(down_window);
    let mut lowest = proposal;
    let mut highest = proposal;
    for recommendation in inputs.recommendations {
        if recommendation.at > up_cutoff {
            lowest = lowest.min(recommendation.replicas);
        }
        if recommendation.at > down_cutoff {
            highest = highest.max(recommendation.replicas);
        }
    }
    let unknown_before = inputs.history_since.filter(|since| down_cutoff < *since);
    if unknown_before.is_some() {
        highest = highest.max(inputs.current);
    }
    let stabilized = inputs.current.max(lowest).min(highest);
    if let Some(since) = unknown_before.filter(|_| stabilized > proposal) {
        let _ = write!(
            reason,
            "; scale-down waits: the rule has run {}s of its {}s window, keeps {stabilized}",
            (inputs.now - since).num_seconds().max(0),
            down_window.as_secs()
        );
        return stabilized;
    }
    if stabilized != proposal {
        let (direction, which, window) = if proposal < inputs.current || stabilized > proposal {
            ("scale-down", "highest", down_window)
        } else {
            ("scale-up", "lowest", up_window)
        };
        let _ = write!(
            reason,
            "; {direction} stabilization keeps {stabilized} ({which} recommendation in the \
             last {}s)",
            window.as_secs()
        );
    }
    stabilized
}

/// Apply the rate policies of the direction of change, then minReplicas and maxReplicas.
fn limit_rate(rule: &Rule, inputs: &Inputs<'_>, stabilized: u32, reason: &mut String) -> u32 {
    let current = inputs.current;
    if stabilized > current {
        let limit = rate_limit(&rule.behavior.scale_up, inputs, Direction::Up);
        let allowed = limit.replicas.max(current);
        if allowed < rule.max_replicas && stabilized > allowed {
            let _ = write!(reason, "; {} → {allowed}", limit.describe("scale-up"));
            return allowed;
        }
        if stabilized > rule.max_replicas {
            let _ = write!(reason, "; maxReplicas caps at {0} → {0}", rule.max_replicas);
            return rule.max_replicas;
        }
    } else if stabilized < current {
        let limit = rate_limit(&rule.behavior.scale_down, inputs, Direction::Down);
        let allowed = limit.replicas.min(current);
        if allowed > rule.min_replicas && stabilized < allowed {
            let _ = write!(reason, "; {} → {allowed}", limit.describe("scale-down"));
            return allowed;
        }
        if stabilized < rule.min_replicas {
            let _ = write!(reason, "; minReplicas keeps {0} → {0}", rule.min_replicas);
            return rule.min_replicas;
        }
    }
    stabilized
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// The furthest count the policies of one direction allow, and the policy that set it.
struct RateLimit {
    replicas: u32,
    /// `None` when the direction is disabled.
    policy: Option<Policy>,
}

impl RateLimit {
    fn describe(&self, direction: &str) -> String {
        match self.policy {
            None => format!("{direction} is disabled"),
            Some(policy) => {
                let amount = match policy.kind {
                    PolicyKind::Pods => format!("{} pods", policy.value),
                    PolicyKind::Percent => format!("{}%", policy.value),
                };
                format!(
                    "{direction} policy caps at {amount} per {}s",
                    policy.period.as_secs()
                )
            }
        }
    }
}

/// The HPA's rate limit: each policy's bound from the count at the start of its period, and
/// the policy allowing the biggest (`Max`) or smallest (`Min`) change.
fn rate_limit(rules: &ScalingRules, inputs: &Inputs<'_>, direction: Direction) -> RateLimit {
    let current = i64::from(inputs.current);
    if rules.select_policy == SelectPolicy::Disabled {
        return RateLimit {
            replicas: inputs.current,
            policy: None,
        };
    }
    let mut best: Option<(i64, Policy)> = None;
    for policy in &rules.policies {
        let start = (current - change_within(inputs, policy.period)).max(0);
        let value = i64::from(policy.value);
        let bound = match (direction, policy.kind) {
            (Direction::Up, PolicyKind::Pods) => start + value,
            // Growth rounds up, or a small workload could never grow.
            (Direction::Up, PolicyKind::Percent) => start + (start * value + 99) / 100,
            (Direction::Down, PolicyKind::Pods) => start - value,
            // Shrinking keeps the floor of what is left (truncated toward 0, as the HPA does).
            (Direction::Down, PolicyKind::Percent) => start * (100 - value) / 100,
        };
        let change = |bound: i64| match direction {
            Direction::Up => bound - current,
            Direction::Down => current - bound,
        };
        let better = match best {
            None => true,
            Some((old, _)) if rules.select_policy == SelectPolicy::Max => {
                change(bound) > change(old)
            }
            Some((old, _)) => change(bound) < change(old),
        };
        if better {
            best = Some((bound, *policy));
        }
    }
    match best {
        Some((bound, policy)) => RateLimit {
            replicas: u32::try_from(bound.max(0)).unwrap_or(u32::MAX),
            policy: Some(policy),
        },
        // Validation forbids a direction without policies; treat it like a disabled one.
        None => RateLimit {
            replicas: inputs.current,
            policy: None,
        },
    }
}

/// The net replica change of the scale events in `(now − period, now]`.
fn change_within(inputs: &Inputs<'_>, period: std::time::Duration) -> i64 {
    let cutoff = inputs.now - delta(period);
    inputs
        .scale_events
        .iter()
        .filter(|e| e.at > cutoff && e.at <= inputs.now)
        .map(|e| i64::from(e.to) - i64::from(e.from))
        .sum()
}

/// A std duration as chrono's; rule durations are at most a day, far inside its range.
fn delta(duration: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// A number as an operator reads it: whole numbers bare, others to at most 3 decimals.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        let text = format!("{x:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rules::{
        Behavior, DockerWorkload, Fallback, Metric, MetricSource, Policy, PolicyKind, Rule,
        RuleTarget, SelectPolicy, TargetKind, Tolerance,
    };

    /// The base rule of every row: min 1, max 20, `rps` per replica with target 100, HPA
    /// defaults for behavior and tolerance, no fallback.
    fn rule() -> Rule {
        Rule {
            name: "web".into(),
            target: RuleTarget::Docker {
                host: "local".into(),
                workload: DockerWorkload::Named("web".into()),
            },
            min_replicas: 1,
            max_replicas: 20,
            polling_interval: Duration::from_secs(15),
            metrics: vec![prometheus("rps", TargetKind::AverageValue, 100.0)],
            behavior: Behavior::default(),
            tolerance: Tolerance::default(),
            fallback: None,
        }
    }

    fn prometheus(name: &str, kind: TargetKind, target: f64) -> Metric {
        Metric {
            name: name.into(),
            source: MetricSource::Prometheus {
                server_address: None,
                query: "q".into(),
                kind,
                target,
            },
        }
    }

    fn cpu(utilization: f64) -> Metric {
        Metric {
            name: "cpu".into(),
            source: MetricSource::Cpu { utilization },
        }
    }

    fn policy(kind: PolicyKind, value: u32, period: u64) -> Policy {
        Policy {
            kind,
            value,
            period: Duration::from_secs(period),
        }
    }

    /// `rule()` with a Value metric instead of the per-replica one.
    fn value_rule(target: f64) -> Rule {
        Rule {
            metrics: vec![prometheus("queue", TargetKind::Value, target)],
            ..rule()
        }
    }

    /// `rule()` with `rps` and `cpu` (target 70 %).
    fn two_metrics() -> Rule {
        Rule {
            metrics: vec![
                prometheus("rps", TargetKind::AverageValue, 100.0),
                cpu(70.0),
            ],
            ..rule()
        }
    }

    fn with_up(mut rule: Rule, select: SelectPolicy, window: u64, policies: Vec<Policy>) -> Rule {
        rule.behavior.scale_up.select_policy = select;
        rule.behavior.scale_up.stabilization_window = Duration::from_secs(window);
        rule.behavior.scale_up.policies = policies;
        rule
    }

    fn with_down(mut rule: Rule, select: SelectPolicy, window: u64, policies: Vec<Policy>) -> Rule {
        rule.behavior.scale_down.select_policy = select;
        rule.behavior.scale_down.stabilization_window = Duration::from_secs(window);
        rule.behavior.scale_down.policies = policies;
        rule
    }

    fn with_bounds(mut rule: Rule, min: u32, max: u32) -> Rule {
        rule.min_replicas = min;
        rule.max_replicas = max;
        rule
    }

    fn with_fallback(mut rule: Rule, failure_threshold: u32, replicas: u32) -> Rule {
        rule.fallback = Some(Fallback {
            failure_threshold,
            replicas,
        });
        rule
    }

    /// Seconds after an arbitrary start; rows use `NOW` = 1000.
    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(secs)
    }

    const NOW: i64 = 1000;

    fn fail() -> Reading {
        Err("connection refused".into())
    }

    /// One decision to check: inputs and the desired count worked by hand.
    struct Row {
        says: &'static str,
        rule: Rule,
        current: u32,
        readings: Vec<Reading>,
        /// (seconds before now, replicas)
        recommendations: Vec<(i64, u32)>,
        /// (seconds before now, from, to)
        events: Vec<(i64, u32, u32)>,
        failed_cycles: u32,
        desired: u32,
    }

    impl Row {
        fn new(says: &'static str, rule: Rule, current: u32, readings: Vec<Reading>) -> Row {
            Row {
                says,
                rule,
                current,
                readings,
                recommendations: Vec::new(),
                events: Vec::new(),
                failed_cycles: 0,
                desired: 0,
            }
        }

        fn recs(mut self, recs: &[(i64, u32)]) -> Row {
            self.recommendations = recs.to_vec();
            self
        }

        fn events(mut self, events: &[(i64, u32, u32)]) -> Row {
            self.events = events.to_vec();
            self
        }

        fn failed(mut self, cycles: u32) -> Row {
            self.failed_cycles = cycles;
            self
        }

        fn wants(mut self, desired: u32) -> Row {
            self.desired = desired;
            self
        }

        fn decide(&self) -> Decision {
            let recommendations: Vec<Recommendation> = self
                .recommendations
                .iter()
                .map(|&(ago, replicas)| Recommendation {
                    at: at(NOW - ago),
                    replicas,
                })
                .collect();
            let events: Vec<ScaleEvent> = self
                .events
                .iter()
                .map(|&(ago, from, to)| ScaleEvent {
                    at: at(NOW - ago),
                    from,
                    to,
                })
                .collect();
            decide(
                &self.rule,
                &Inputs {
                    current: self.current,
                    readings: &self.readings,
                    recommendations: &recommendations,
                    scale_events: &events,
                    failed_cycles: self.failed_cycles,
                    now: at(NOW),
                    history_since: None,
                },
            )
        }
    }

    fn check_desired(rows: &[Row]) {
        for row in rows {
            let decision = row.decide();
            assert_eq!(
                decision.desired, row.desired,
                "{}: reason: {}",
                row.says, decision.reason
            );
        }
    }

    /// Rows whose `desired` is the first metric's recommendation.
    fn check_first_recommendation(rows: &[Row]) {
        for row in rows {
            let decision = row.decide();
            assert_eq!(
                decision.recommendations[0].replicas,
                Ok(row.desired),
                "{}: {}",
                row.says,
                decision.reason
            );
        }
    }

    #[test]
    fn each_metric_recommends_what_the_hpa_computes_for_its_type() {
        let per_direction = Rule {
            tolerance: Tolerance {
                scale_up: 0.05,
                scale_down: 0.2,
            },
            ..rule()
        };
        let from_zero = with_bounds(rule(), 0, 20);
        check_first_recommendation(&[
            // 480 / (100 × 2) = 2.4, outside 0.1; ceil(480 / 100) = 5.
            Row::new(
                "a per-replica total above target grows",
                rule(),
                2,
                vec![Ok(480.0)],
            )
            .wants(5),
            // 205 / (100 × 2) = 1.025; |1.025 − 1| ≤ 0.1 → stays 2.
            Row::new(
                "a ratio inside the tolerance keeps the count",
                rule(),
                2,
                vec![Ok(205.0)],
            )
            .wants(2),
            // 110 / 100 = 1.1 = 1 + 0.1: the boundary is inside → 1.
            Row::new(
                "the upper tolerance boundary is inside",
                rule(),
                1,
                vec![Ok(110.0)],
            )
            .wants(1),
            // 111 / 100 = 1.11 > 1.1 → ceil(1.11) = 2.
            Row::new("just past the tolerance grows", rule(), 1, vec![Ok(111.0)]).wants(2),
            // 90 / 100 = 0.9 = 1 − 0.1: inside → 1.
            Row::new(
                "the lower tolerance boundary is inside",
                rule(),
                1,
                vec![Ok(90.0)],
            )
            .wants(1),
            // 0 / (100 × 3) = 0 → ceil(0 / 100) = 0; the bounds come later.
            Row::new("a zero total recommends zero", rule(), 3, vec![Ok(0.0)]).wants(0),
            // Value: 30 / 10 = 3 → ceil(3 × 2) = 6.
            Row::new(
                "a total against a Value target scales by the ratio",
                value_rule(10.0),
                2,
                vec![Ok(30.0)],
            )
            .wants(6),
            // Value: 0.3 / 0.25 = 1.2 → ceil(1.2 × 4) = ceil(4.8) = 5.
            Row::new(
                "a fractional Value ratio rounds up",
                value_rule(0.25),
                4,
                vec![Ok(0.3)],
            )
            .wants(5),
            // CPU: 35 / 70 = 0.5 → ceil(0.5 × 4) = 2.
            Row::new(
                "cpu at half its target halves the count",
                Rule {
                    metrics: vec![cpu(70.0)],
                    ..rule()
                },
                4,
                vec![Ok(35.0)],
            )
            .wants(2),
            // CPU: 90 / 70 = 1.2857 → ceil(1.2857 × 3) = ceil(3.857) = 4.
            Row::new(
                "cpu above its target grows and rounds up",
                Rule {
                    metrics: vec![cpu(70.0)],
                    ..rule()
                },
                3,
                vec![Ok(90.0)],
            )
            .wants(4),
            // Per-direction: 106 / 100 = 1.06 > 1 + 0.05 → ceil(1.06) = 2.
            Row::new(
                "a scale-up tolerance of its own applies to growth",
                per_direction.clone(),
                1,
                vec![Ok(106.0)],
            )
            .wants(2),
            // Per-direction: 170 / (100 × 2) = 0.85 ≥ 1 − 0.2 → stays 2.
            Row::new(
                "a scale-down tolerance of its own applies to shrinking",
                per_direction,
                2,
                vec![Ok(170.0)],
            )
            .wants(2),
            // From 0 replicas (min 0): ceil(250 / 100) = 3.
            Row::new(
                "from zero replicas the total alone decides",
                from_zero,
                0,
                vec![Ok(250.0)],
            )
            .wants(3),
        ]);
    }

    #[test]
    fn a_reading_that_is_not_a_finite_number_is_a_failure() {
        let row = Row::new("NaN", rule(), 3, vec![Ok(f64::NAN)]);
        let decision = row.decide();
        assert!(decision.recommendations[0].replicas.is_err());
        assert_eq!(decision.desired, 3);
        assert_eq!(decision.basis, Basis::MetricsFailed);
    }

    #[test]
    fn the_highest_recommendation_wins_and_a_failed_metric_never_scales_down() {
        check_desired(&[
            // rps: ceil(480 / 100) = 5; cpu: 35 / 70 = 0.5 → ceil(0.5 × 2) = 1; highest 5;
            // scale-up limit from 2: max(2 + 4, 2 + 2) = 6 ≥ 5 → 5.
            Row::new(
                "the highest of two metrics wins",
                two_metrics(),
                2,
                vec![Ok(480.0), Ok(35.0)],
            )
            .wants(5),
            // rps failed; cpu 140 / 70 = 2 → 4; growth is allowed → 4.
            Row::new(
                "a scale-up of the others goes ahead",
                two_metrics(),
                2,
                vec![fail(), Ok(140.0)],
            )
            .wants(4),
            // rps failed; cpu 35 / 70 → 2 < 4: hold 4.
            Row::new(
                "a scale-down with a failed metric holds",
                two_metrics(),
                4,
                vec![fail(), Ok(35.0)],
            )
            .wants(4),
            // rps failed; cpu 70 / 70 = 1 → within → 4 = current: nothing to hold back → 4.
            Row::new(
                "a steady count with a failed metric stays",
                two_metrics(),
                4,
                vec![fail(), Ok(70.0)],
            )
            .wants(4),
            // Both failed, no fallback: hold 6.
            Row::new(
                "all failed without a fallback holds",
                two_metrics(),
                6,
                vec![fail(), fail()],
            )
            .wants(6),
            // A missing reading counts as failed: cpu 35 / 70 → 3 < 6, rps missing: hold 6.
            Row::new(
                "a missing reading counts as failed",
                two_metrics(),
                6,
                vec![Ok(0.0)],
            )
            .wants(6),
        ]);
    }

    #[test]
    fn the_fallback_applies_after_more_than_failure_threshold_failed_cycles() {
        let fallback = with_fallback(rule(), 3, 4);
        check_desired(&[
            // 2 failed before + this = 3, not more than 3: hold 6.
            Row::new("the third failure holds", fallback.clone(), 6, vec![fail()])
                .failed(2)
                .wants(6),
            // 3 before + this = 4 > 3: fallback 4; no earlier recommendation in the 300 s
            // window, so stabilization keeps 4; scale-down limit 6 − 6 = 0, min 1 → 4.
            Row::new(
                "the fourth failure goes to the fallback",
                fallback.clone(),
                6,
                vec![fail()],
            )
            .failed(3)
            .wants(4),
            // As above, but 6 was recommended 60 s ago: the scale-down window keeps 6.
            Row::new(
                "the fallback waits for the scale-down window",
                fallback.clone(),
                6,
                vec![fail()],
            )
            .failed(3)
            .recs(&[(60, 6)])
            .wants(6),
            // At the fallback already, failing on: 4 stays 4.
            Row::new(
                "the fallback holds without flapping",
                fallback.clone(),
                4,
                vec![fail()],
            )
            .failed(10)
            .recs(&[(15, 4), (30, 4)])
            .wants(4),
            // Fallback 8 from 2: scale-up limit max(2 + 4, 2 + 2) = 6 → 6.
            Row::new(
                "a fallback above the count grows within the policies",
                with_fallback(rule(), 3, 8),
                2,
                vec![fail()],
            )
            .failed(5)
            .wants(6),
            // A reading again: ceil(150 / 100) = 2 at 4 → scale-down window holds 4 (recorded).
            Row::new(
                "a good reading ends the fallback",
                fallback,
                4,
                vec![Ok(150.0)],
            )
            .failed(10)
            .recs(&[(15, 4)])
            .wants(4),
        ]);
    }

    #[test]
    fn failed_cycles_are_counted_only_when_no_metric_can_be_read() {
        let row = Row::new("all failed", two_metrics(), 3, vec![fail(), fail()]).failed(2);
        assert_eq!(row.decide().failed_cycles, 3);
        assert_eq!(
            row.decide().record,
            None,
            "a held cycle records no recommendation"
        );
        let row = Row::new("one good", two_metrics(), 3, vec![fail(), Ok(70.0)]).failed(2);
        assert_eq!(row.decide().failed_cycles, 0);
    }

    #[test]
    fn stabilization_windows_filter_the_recorded_recommendations() {
        let up_60 = with_up(
            rule(),
            SelectPolicy::Max,
            60,
            Behavior::default_scale_up().policies,
        );
        check_desired(&[
            // Proposal ceil(300 / 100) = 3 at 10; highest in 300 s: max(3, 8, 5) = 8 → 8.
            Row::new(
                "scale-down keeps the highest in the window",
                rule(),
                10,
                vec![Ok(300.0)],
            )
            .recs(&[(100, 8), (200, 5)])
            .wants(8),
            // The recommendation exactly 300 s old is outside (now − 300, now] → 3; limit
            // 10 − 10 = 0, min 1 → 3.
            Row::new(
                "the window excludes its boundary",
                rule(),
                10,
                vec![Ok(300.0)],
            )
            .recs(&[(300, 9)])
            .wants(3),
            // 299 s old is inside → max(3, 9) = 9.
            Row::new(
                "the window includes just inside its boundary",
                rule(),
                10,
                vec![Ok(300.0)],
            )
            .recs(&[(299, 9)])
            .wants(9),
            // Proposal ceil(800 / 100) = 8 at 2; lowest in 60 s: min(8, 4) = 4 (the one 90 s
            // old is out) → 4; scale-up limit max(6, 4) = 6 ≥ 4 → 4.
            Row::new(
                "scale-up keeps the lowest in its window",
                up_60,
                2,
                vec![Ok(800.0)],
            )
            .recs(&[(30, 4), (90, 2)])
            .wants(4),
            // Default up window 0 s: the lower one 1 s old is ignored; 8 capped by max(2 + 4,
            // 2 + 2) = 6 → 6.
            Row::new(
                "a zero scale-up window ignores the past",
                rule(),
                2,
                vec![Ok(800.0)],
            )
            .recs(&[(1, 2)])
            .wants(6),
            // Proposal 6 at 4 with 9 recorded: max(4, 6) = 6, min(6, 9) = 6 → 6.
            Row::new(
                "a higher past recommendation does not push growth",
                rule(),
                4,
                vec![Ok(600.0)],
            )
            .recs(&[(100, 9)])
            .wants(6),
            // Proposal 3 at 5 with 4 recorded 100 s ago: min(5, max(3, 4)) = 4 → 4.
            Row::new(
                "scale-down goes as far as the window allows",
                rule(),
                5,
                vec![Ok(300.0)],
            )
            .recs(&[(100, 4)])
            .wants(4),
        ]);
    }

    #[test]
    fn rate_policies_limit_the_change_within_each_period() {
        let defaults_up = Behavior::default_scale_up().policies;
        let wide = with_bounds(rule(), 1, 50);
        let min_up = with_up(wide.clone(), SelectPolicy::Min, 0, defaults_up.clone());
        let percent_up = with_up(
            rule(),
            SelectPolicy::Max,
            0,
            vec![policy(PolicyKind::Percent, 10, 60)],
        );
        let percent_down = with_down(
            rule(),
            SelectPolicy::Max,
            0,
            vec![policy(PolicyKind::Percent, 15, 60)],
        );
        let both_down = vec![
            policy(PolicyKind::Pods, 3, 60),
            policy(PolicyKind::Percent, 50, 60),
        ];
        let max_down = with_down(rule(), SelectPolicy::Max, 0, both_down.clone());
        let min_down = with_down(rule(), SelectPolicy::Min, 0, both_down);
        let no_up = with_up(rule(), SelectPolicy::Disabled, 0, defaults_up);
        let no_down = with_down(
            rule(),
            SelectPolicy::Disabled,
            0,
            Behavior::default_scale_down().policies,
        );
        let pods_down = with_down(
            rule(),
            SelectPolicy::Max,
            0,
            vec![policy(PolicyKind::Pods, 2, 60)],
        );
        check_desired(&[
            // From 2: Pods 2 + 4 = 6, Percent 2 + 2 = 4; Max → 6.
            Row::new(
                "Max takes the policy allowing more",
                rule(),
                2,
                vec![Ok(1000.0)],
            )
            .wants(6),
            // From 10 (max 50): Pods 14, Percent 20; Max → 20.
            Row::new(
                "Percent wins for a larger workload",
                wide,
                10,
                vec![Ok(3000.0)],
            )
            .wants(20),
            // From 10: Min → min(14, 20) = 14.
            Row::new(
                "Min takes the policy allowing less",
                min_up,
                10,
                vec![Ok(3000.0)],
            )
            .wants(14),
            // 2 → 6 ten seconds ago: start 6 − 4 = 2; Pods 6, Percent 4 → limit 6 = current.
            Row::new(
                "growth inside the period counts against it",
                rule(),
                6,
                vec![Ok(2000.0)],
            )
            .events(&[(10, 2, 6)])
            .wants(6),
            // The event exactly 15 s old is outside (now − 15, now]: start 6; Pods 10,
            // Percent 12 → 12; proposal 12 → 12.
            Row::new(
                "a period excludes its boundary",
                rule(),
                6,
                vec![Ok(1200.0)],
            )
            .events(&[(15, 2, 6)])
            .wants(12),
            // Percent 10 from 3: 3 + ceil(0.3) = 4.
            Row::new("percent growth rounds up", percent_up, 3, vec![Ok(1000.0)]).wants(4),
            // Percent 15 from 10: floor(10 × 0.85) = floor(8.5) = 8.
            Row::new(
                "percent shrinking keeps the floor",
                percent_down,
                10,
                vec![Ok(100.0)],
            )
            .wants(8),
            // From 10: Pods 10 − 3 = 7, Percent 10 × 0.5 = 5; Max (bigger change) → 5.
            Row::new(
                "Max shrinks by the policy removing more",
                max_down,
                10,
                vec![Ok(100.0)],
            )
            .wants(5),
            // Min (smaller change) → 7.
            Row::new(
                "Min shrinks by the policy removing less",
                min_down,
                10,
                vec![Ok(100.0)],
            )
            .wants(7),
            // Disabled scale-up: 3 stays 3 though 10 is asked.
            Row::new("disabled scale-up never grows", no_up, 3, vec![Ok(1000.0)]).wants(3),
            // Disabled scale-down: 8 stays 8 though 2 is asked.
            Row::new(
                "disabled scale-down never shrinks",
                no_down,
                8,
                vec![Ok(200.0)],
            )
            .wants(8),
            // 10 → 8 thirty seconds ago: start 8 + 2 = 10; Pods 2 → 8 = current → 8.
            Row::new(
                "shrinking inside the period counts against it",
                pods_down,
                8,
                vec![Ok(100.0)],
            )
            .events(&[(30, 10, 8)])
            .wants(8),
            // 3 → 6 → 5 within 15 s: net +2, start 3; Pods 7, Percent 6 → 7; proposal 9 → 7.
            Row::new(
                "ups and downs in a period net out",
                rule(),
                5,
                vec![Ok(900.0)],
            )
            .events(&[(10, 3, 6), (5, 6, 5)])
            .wants(7),
        ]);
    }

    #[test]
    fn bounds_apply_last_and_zero_replicas_turn_autoscaling_off() {
        let min_2 = with_bounds(rule(), 2, 20);
        let min_0 = with_bounds(rule(), 0, 20);
        check_desired(&[
            // Proposal 0 at 3; no window history; limit 3 − 3 = 0; min 2 → 2.
            Row::new("minReplicas is the floor", min_2.clone(), 3, vec![Ok(0.0)]).wants(2),
            // Proposal 40 at 15: limit max(19, 30) = 30 ≥ max 20 → 20.
            Row::new("maxReplicas is the ceiling", rule(), 15, vec![Ok(4000.0)]).wants(20),
            // 0 replicas with min 1: autoscaling is off → 0.
            Row::new(
                "zero replicas with minReplicas above zero stay",
                rule(),
                0,
                vec![Ok(500.0)],
            )
            .wants(0),
            // 25 above max 20 → 20 at once.
            Row::new(
                "a count above maxReplicas goes to it",
                rule(),
                25,
                vec![Ok(100.0)],
            )
            .wants(20),
            // 1 below min 2 → 2 at once.
            Row::new(
                "a count below minReplicas goes to it",
                min_2,
                1,
                vec![Ok(100.0)],
            )
            .wants(2),
            // Min 0, 0 replicas: ceil(250 / 100) = 3; from 0: Pods 4, Percent 0 → 4 ≥ 3 → 3.
            Row::new(
                "with minReplicas 0 a workload grows from zero",
                min_0,
                0,
                vec![Ok(250.0)],
            )
            .wants(3),
        ]);
    }

    #[test]
    fn zero_replicas_with_min_above_zero_say_autoscaling_is_off() {
        let decision = Row::new("off", rule(), 0, vec![Ok(500.0)]).decide();
        assert_eq!(decision.basis, Basis::ScalingDisabled);
        assert!(
            decision.reason.contains("autoscaling is off"),
            "{}",
            decision.reason
        );
        assert_eq!(decision.record, None);
    }

    #[test]
    fn the_reason_shows_the_numbers_and_the_limit_that_applied() {
        let rule = with_up(
            rule(),
            SelectPolicy::Max,
            0,
            vec![policy(PolicyKind::Pods, 2, 15)],
        );
        let decision = Row::new("capped", rule, 2, vec![Ok(480.0)]).decide();
        assert_eq!(
            decision.reason,
            "rps 480 / 100 per replica x 2 → 5; scale-up policy caps at 2 pods per 15s → 4"
        );
        assert_eq!(decision.desired, 4);
    }

    #[test]
    fn the_record_is_the_recommendation_before_stabilization() {
        let decision = Row::new("window", rule(), 10, vec![Ok(300.0)])
            .recs(&[(100, 8)])
            .decide();
        assert_eq!(decision.desired, 8);
        assert_eq!(
            decision.record,
            Some(Recommendation {
                at: at(NOW),
                replicas: 3
            })
        );
        assert!(
            decision.reason.contains("scale-down stabilization keeps 8"),
            "{}",
            decision.reason
        );
    }

    #[test]
    fn old_history_is_dropped_once_no_window_or_period_reaches_it() {
        let mut recommendations = vec![
            Recommendation {
                at: at(NOW - 300),
                replicas: 1,
            },
            Recommendation {
                at: at(NOW - 299),
                replicas: 2,
            },
        ];
        let mut events = vec![ScaleEvent {
            at: at(NOW - 400),
            from: 1,
            to: 2,
        }];
        retain_recent(&rule(), at(NOW), &mut recommendations, &mut events);
        assert_eq!(recommendations.len(), 1);
        assert_eq!(recommendations[0].replicas, 2);
        assert!(events.is_empty());
    }

    #[test]
    fn a_loop_that_just_started_waits_one_scale_down_window_before_it_shrinks() {
        // rps 100 / 100 per replica x 4 → 1 is asked; the loop has run 60 s of a 300 s window.
        let rule = rule();
        let decide_at = |since: i64, history: &[Recommendation]| {
            decide(
                &rule,
                &Inputs {
                    current: 4,
                    readings: &[Ok(100.0)],
                    recommendations: history,
                    scale_events: &[],
                    failed_cycles: 0,
                    now: at(NOW),
                    history_since: Some(at(NOW - since)),
                },
            )
        };
        let young = decide_at(60, &[]);
        assert_eq!(young.desired, 4, "{}", young.reason);
        assert!(
            young
                .reason
                .contains("the rule has run 60s of its 300s window, keeps 4"),
            "{}",
            young.reason
        );
        assert_eq!(
            young.record.map(|r| r.replicas),
            Some(1),
            "the proposal is still kept"
        );

        let old = decide_at(301, &[]);
        assert_eq!(old.desired, 1, "a full window has passed: {}", old.reason);

        // A scale-up is never held back by the unknown history.
        let up = decide(
            &rule,
            &Inputs {
                current: 1,
                readings: &[Ok(400.0)],
                recommendations: &[],
                scale_events: &[],
                failed_cycles: 0,
                now: at(NOW),
                history_since: Some(at(NOW)),
            },
        );
        assert_eq!(up.desired, 4, "{}", up.reason);
    }
}
