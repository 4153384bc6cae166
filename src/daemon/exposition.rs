//! The Prometheus text exposition (format 0.0.4) of the autoscaler's status, and the health
//! report the daemon serves on `/healthz`.
//!
//! Both are pure renderings of a snapshot: the daemon builds the [`Health`] checks (one per
//! target, per metric server and per running rule) and passes the latest [`Status`] in. This module does
//! not probe anything, keep counters of its own or speak HTTP (see `http.rs`).
//!
//! The families, in the order they are written (a family with no samples is left out whole):
//!
//! - `pilothouse_rule_current_replicas{rule}`, gauge: the workload's replicas at the last
//!   cycle; absent when unknown.
//! - `pilothouse_rule_desired_replicas{rule}`, gauge: what the last decision asked for; absent
//!   when there was none.
//! - `pilothouse_rule_metric_value{rule,metric}`, gauge: the last reading; absent when it
//!   failed (or was NaN or infinite) and before the first one.
//! - `pilothouse_rule_metric_ok{rule,metric}`, gauge: 1 or 0; absent before the first reading.
//! - `pilothouse_rule_state{rule,state}`, gauge: a state set, one series per state in
//!   [`RULE_STATES`], 1 for the rule's state and 0 for the other three.
//! - `pilothouse_rule_decisions_total`, `pilothouse_rule_metric_errors_total`,
//!   `pilothouse_rule_scales_total`, `pilothouse_rule_scale_errors_total` (all `{rule}`),
//!   counters: the [`RuleStatus`] counters of the same names.
//! - `pilothouse_rule_load_errors`, gauge, no labels: errors in the rule files at the last load.
//! - `pilothouse_check_up{check}`, gauge: 1 or 0 per health check that counts for `/healthz`.
//!
//! A failed reading is never exposed as a number: a dashboard or an alert sees the series
//! vanish and `pilothouse_rule_metric_ok` drop to 0, not a fake zero.

use crate::autoscaler::status::{RuleStatus, Status};
use crate::rules::Reading;

/// The `Content-Type` of [`render_metrics`]'s output, as Prometheus expects it.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every value of the `state` label of `pilothouse_rule_state`, as [`RuleState::word`] spells
/// them.
///
/// [`RuleState::word`]: crate::autoscaler::status::RuleState::word
pub const RULE_STATES: [&str; 4] = ["active", "paused", "standby", "unsupported"];

/// One thing the daemon depends on, and whether it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `docker:local`, `k8s:prod`, `prometheus:http://127.0.0.1:9090`
    /// or `rule:web`.
    pub name: String,
    /// Whether the last probe succeeded.
    pub ok: bool,
    /// Why it failed, or what it found (a version); may be empty.
    pub detail: String,
    /// Whether a failure makes the daemon unready. A check that does not count is shown in
    /// `/healthz` for information only, its detail saying why, and left out of `/metrics`.
    pub counts: bool,
}

/// What `/healthz` reports: one [`Check`] per target, per metric server and per running rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// In the order the daemon probes them; that order is kept in both renderings.
    pub checks: Vec<Check>,
}

impl Health {
    /// Whether every check that counts passes; a daemon with nothing to check is ready.
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|check| check.ok || !check.counts)
    }
}

/// The whole `/metrics` body: every family in the module's table, in that order.
pub fn render_metrics(status: &Status, health: &Health) -> String {
    let families = [
        current_replicas(status),
        desired_replicas(status),
        metric_values(status),
        metric_ok(status),
        rule_state(status),
        rule_counter(
            "pilothouse_rule_decisions_total",
            "Cycles of a rule that ended in a decision, holds and standby cycles included.",
            status,
            |rule| rule.decisions_total,
        ),
        rule_counter(
            "pilothouse_rule_metric_errors_total",
            "Metric readings of a rule that failed, over all of its metrics.",
            status,
            |rule| rule.metric_errors_total,
        ),
        rule_counter(
            "pilothouse_rule_scales_total",
            "Scale actions a rule started.",
            status,
            |rule| rule.scales_total,
        ),
        rule_counter(
            "pilothouse_rule_scale_errors_total",
            "Scale actions of a rule that failed or were refused.",
            status,
            |rule| rule.scale_errors_total,
        ),
        load_errors(status),
        check_up(health),
    ];
    let mut out = String::new();
    for family in &families {
        family.write(&mut out);
    }
    out
}

/// The `/healthz` answer: 200 with `ok` and one line per check when [`Health::ready`], else 503
/// with one line per check.
///
/// Each check's line is `NAME: ok` or `NAME: FAILING`, followed by its detail when it has one;
/// a failing check that does not count is `NAME: DETAIL`, its detail saying why it does not.
/// Line breaks inside a name or detail become spaces, so one check is always one line.
pub fn render_health(health: &Health) -> (u16, String) {
    let ready = health.ready();
    let mut body = String::new();
    if ready {
        body.push_str("ok\n");
    }
    for check in &health.checks {
        body.push_str(&check_line(check));
        body.push('\n');
    }
    (if ready { 200 } else { 503 }, body)
}

/// One check as one line of the health body.
fn check_line(check: &Check) -> String {
    let name = one_line(&check.name);
    let detail = one_line(&check.detail);
    if !check.ok && !check.counts {
        return format!("{name}: {detail}");
    }
    let word = if check.ok { "ok" } else { "FAILING" };
    if detail.is_empty() {
        format!("{name}: {word}")
    } else {
        format!("{name}: {word} {detail}")
    }
}

/// `text` with every line break (and other control character) turned into a space.
fn one_line(text: &str) -> String {
    text.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The two metric types this exposition uses.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// One metric family: its `# HELP` and `# TYPE` lines and its samples.
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    /// Each sample's label set, already rendered (`{rule="web"}` or empty), and its value.
    samples: Vec<(String, String)>,
}

impl Family {
    fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    fn push(&mut self, labels: &[(&str, &str)], value: String) {
        self.samples.push((render_labels(labels), value));
    }

    /// Append the family to `out`; nothing at all when it has no samples.
    fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let kind = match self.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        out.push_str(&format!("# HELP {} {}\n", self.name, self.help));
        out.push_str(&format!("# TYPE {} {kind}\n", self.name));
        for (labels, value) in &self.samples {
            out.push_str(&format!("{}{labels} {value}\n", self.name));
        }
    }
}

fn current_replicas(status: &Status) -> Family {
    let mut family = Family::new(
        "pilothouse_rule_current_replicas",
        Kind::Gauge,
        "Replicas of the rule's workload at the last cycle; absent before the first cycle or \
         when the workload is not found.",
    );
    for rule in &status.rules {
        if let Some(current) = rule.current {
            family.push(&[("rule", &rule.name)], current.to_string());
        }
    }
    family
}

fn desired_replicas(status: &Status) -> Family {
    let mut family = Family::new(
        "pilothouse_rule_desired_replicas",
        Kind::Gauge,
        "Replicas the rule's last decision asked for; absent when no decision was made.",
    );
    for rule in &status.rules {
        if let Some(desired) = rule.desired {
            family.push(&[("rule", &rule.name)], desired.to_string());
        }
    }
    family
}

fn metric_values(status: &Status) -> Family {
    let mut family = Family::new(
        "pilothouse_rule_metric_value",
        Kind::Gauge,
        "The last reading of a rule's metric; absent when that reading failed or none was \
         made yet.",
    );
    for rule in &status.rules {
        for (metric, reading) in metrics_with_readings(rule) {
            if let Some(Ok(value)) = reading.filter(|reading| reading_ok(reading)) {
                family.push(
                    &[("rule", &rule.name), ("metric", metric)],
                    format_value(*value),
                );
            }
        }
    }
    family
}

fn metric_ok(status: &Status) -> Family {
    let mut family = Family::new(
        "pilothouse_rule_metric_ok",
        Kind::Gauge,
        "Whether the last reading of a rule's metric succeeded (1) or failed (0); absent \
         before the first reading.",
    );
    for rule in &status.rules {
        for (metric, reading) in metrics_with_readings(rule) {
            if let Some(reading) = reading {
                let ok = if reading_ok(reading) { "1" } else { "0" };
                family.push(&[("rule", &rule.name), ("metric", metric)], ok.to_string());
            }
        }
    }
    family
}

fn rule_state(status: &Status) -> Family {
    let mut family = Family::new(
        "pilothouse_rule_state",
        Kind::Gauge,
        "Whether a rule is in a state (active, paused, standby, unsupported): 1 for the \
         rule's state, 0 for the others.",
    );
    for rule in &status.rules {
        let word = rule.state.word();
        for state in RULE_STATES {
            let value = if state == word { "1" } else { "0" };
            family.push(&[("rule", &rule.name), ("state", state)], value.to_string());
        }
    }
    family
}

fn rule_counter(
    name: &'static str,
    help: &'static str,
    status: &Status,
    value: impl Fn(&RuleStatus) -> u64,
) -> Family {
    let mut family = Family::new(name, Kind::Counter, help);
    for rule in &status.rules {
        family.push(&[("rule", &rule.name)], value(rule).to_string());
    }
    family
}

fn load_errors(status: &Status) -> Family {
    let mut family = Family::new(
        "pilothouse_rule_load_errors",
        Kind::Gauge,
        "Errors found in the rule files at the last load; the rules those files held before \
         keep running.",
    );
    family.push(&[], status.load_errors.len().to_string());
    family
}

fn check_up(health: &Health) -> Family {
    let mut family = Family::new(
        "pilothouse_check_up",
        Kind::Gauge,
        "Whether a health check (a target, a metric server or a rule) passes (1) or fails (0); \
         a check that does not count for /healthz is left out.",
    );
    for check in health.checks.iter().filter(|check| check.counts) {
        let up = if check.ok { "1" } else { "0" };
        family.push(&[("check", &check.name)], up.to_string());
    }
    family
}

/// Each of the rule's metric names with its last reading; `None` where there is none yet.
fn metrics_with_readings(rule: &RuleStatus) -> impl Iterator<Item = (&str, Option<&Reading>)> {
    rule.rule.metrics.iter().enumerate().map(|(i, metric)| {
        let reading = rule.readings.get(i).and_then(Option::as_ref);
        (metric.name.as_str(), reading)
    })
}

/// Whether a reading is a usable number; a NaN or an infinity counts as failed, as it does
/// in the decision.
fn reading_ok(reading: &Reading) -> bool {
    matches!(reading, Ok(value) if value.is_finite())
}

/// A finite value as Prometheus parses it: Rust's shortest round-trip form, in exponent form
/// when it would otherwise be very long or very small.
fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 || (1e-5..1e16).contains(&magnitude) {
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

/// A label set as `{name="value",...}`, with the values escaped as the text format requires;
/// empty when there are no labels.
fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label_value(value)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// A label value with backslash, double quote and line feed escaped (`\\`, `\"`, `\n`).
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::Arc;

    use super::*;
    use crate::autoscaler::status::RuleState;
    use crate::rules::parse_rules;

    const WEB: &str = "name: web\n\
                       target: { platform: docker, host: local, workload: shop/web }\n\
                       minReplicas: 2\nmaxReplicas: 20\nmetrics:\n\
                       - name: rps\n  \
                       prometheus: { query: up, type: AverageValue, target: 100 }\n\
                       - name: cpu\n  cpu: { utilization: 70 }\n";

    const WORKER: &str = "name: worker\n\
                          target: { platform: docker, host: local, workload: worker }\n\
                          maxReplicas: 4\nmetrics:\n  - name: cpu\n    cpu: { utilization: 70 }\n";

    /// A rule status as the autoscaler starts it: no cycle run yet.
    fn rule_status(text: &str) -> RuleStatus {
        let rule = parse_rules(Path::new("web.yaml"), text).unwrap().remove(0);
        RuleStatus::new(PathBuf::from("web.yaml"), Arc::new(rule), RuleState::Active)
    }

    /// `web` scaled 3 → 5 on rps while cpu failed; `worker` paused, never read.
    fn two_rules() -> Status {
        let mut web = rule_status(WEB);
        web.current = Some(3);
        web.desired = Some(5);
        web.readings = vec![
            Some(Ok(480.5)),
            Some(Err("docker stats: connection refused".into())),
        ];
        web.decisions_total = 12;
        web.metric_errors_total = 4;
        web.scales_total = 2;
        web.scale_errors_total = 1;

        let mut worker = rule_status(WORKER);
        worker.state = RuleState::Paused;
        worker.current = Some(2);

        Status {
            rules: vec![web, worker],
            load_errors: vec!["rules/bad.yaml:3:14: expected a whole number".into()],
            metric_servers: Vec::new(),
        }
    }

    fn two_checks() -> Health {
        Health {
            checks: vec![
                Check {
                    name: "docker local".into(),
                    ok: true,
                    detail: "Docker 24.0.7".into(),
                    counts: true,
                },
                Check {
                    name: "prometheus http://127.0.0.1:9090".into(),
                    ok: false,
                    detail: "connection refused".into(),
                    counts: true,
                },
            ],
        }
    }

    #[test]
    fn two_rules_render_every_family_in_order_and_omit_what_is_unknown() {
        let expected = "\
# HELP pilothouse_rule_current_replicas Replicas of the rule's workload at the last cycle; \
absent before the first cycle or when the workload is not found.
# TYPE pilothouse_rule_current_replicas gauge
pilothouse_rule_current_replicas{rule=\"web\"} 3
pilothouse_rule_current_replicas{rule=\"worker\"} 2
# HELP pilothouse_rule_desired_replicas Replicas the rule's last decision asked for; absent \
when no decision was made.
# TYPE pilothouse_rule_desired_replicas gauge
pilothouse_rule_desired_replicas{rule=\"web\"} 5
# HELP pilothouse_rule_metric_value The last reading of a rule's metric; absent when that \
reading failed or none was made yet.
# TYPE pilothouse_rule_metric_value gauge
pilothouse_rule_metric_value{rule=\"web\",metric=\"rps\"} 480.5
# HELP pilothouse_rule_metric_ok Whether the last reading of a rule's metric succeeded (1) or \
failed (0); absent before the first reading.
# TYPE pilothouse_rule_metric_ok gauge
pilothouse_rule_metric_ok{rule=\"web\",metric=\"rps\"} 1
pilothouse_rule_metric_ok{rule=\"web\",metric=\"cpu\"} 0
# HELP pilothouse_rule_state Whether a rule is in a state (active, paused, standby, \
unsupported): 1 for the rule's state, 0 for the others.
# TYPE pilothouse_rule_state gauge
pilothouse_rule_state{rule=\"web\",state=\"active\"} 1
pilothouse_rule_state{rule=\"web\",state=\"paused\"} 0
pilothouse_rule_state{rule=\"web\",state=\"standby\"} 0
pilothouse_rule_state{rule=\"web\",state=\"unsupported\"} 0
pilothouse_rule_state{rule=\"worker\",state=\"active\"} 0
pilothouse_rule_state{rule=\"worker\",state=\"paused\"} 1
pilothouse_rule_state{rule=\"worker\",state=\"standby\"} 0
pilothouse_rule_state{rule=\"worker\",state=\"unsupported\"} 0
# HELP pilothouse_rule_decisions_total Cycles of a rule that ended in a decision, holds and \
standby cycles included.
# TYPE pilothouse_rule_decisions_total counter
pilothouse_rule_decisions_total{rule=\"web\"} 12
pilothouse_rule_decisions_total{rule=\"worker\"} 0
# HELP pilothouse_rule_metric_errors_total Metric readings of a rule that failed, over all of \
its metrics.
# TYPE pilothouse_rule_metric_errors_total counter
pilothouse_rule_metric_errors_total{rule=\"web\"} 4
pilothouse_rule_metric_errors_total{rule=\"worker\"} 0
# HELP pilothouse_rule_scales_total Scale actions a rule started.
# TYPE pilothouse_rule_scales_total counter
pilothouse_rule_scales_total{rule=\"web\"} 2
pilothouse_rule_scales_total{rule=\"worker\"} 0
# HELP pilothouse_rule_scale_errors_total Scale actions of a rule that failed or were refused.
# TYPE pilothouse_rule_scale_errors_total counter
pilothouse_rule_scale_errors_total{rule=\"web\"} 1
pilothouse_rule_scale_errors_total{rule=\"worker\"} 0
# HELP pilothouse_rule_load_errors Errors found in the rule files at the last load; the rules \
those files held before keep running.
# TYPE pilothouse_rule_load_errors gauge
pilothouse_rule_load_errors 1
# HELP pilothouse_check_up Whether a health check (a target, a metric server or a rule) passes \
(1) or fails (0); a check that does not count for /healthz is left out.
# TYPE pilothouse_check_up gauge
pilothouse_check_up{check=\"docker local\"} 1
pilothouse_check_up{check=\"prometheus http://127.0.0.1:9090\"} 0
";
        let got = render_metrics(&two_rules(), &two_checks());
        assert_eq!(got, expected, "\n{got}");
    }

    #[test]
    fn a_failed_reading_is_never_exposed_as_a_value() {
        let mut status = two_rules();
        status.rules[0].readings = vec![Some(Err("timeout".into())), Some(Ok(f64::NAN))];
        let text = render_metrics(&status, &Health::default());
        assert!(!text.contains("pilothouse_rule_metric_value"), "{text}");
        assert!(text.contains("pilothouse_rule_metric_ok{rule=\"web\",metric=\"rps\"} 0\n"));
        assert!(text.contains("pilothouse_rule_metric_ok{rule=\"web\",metric=\"cpu\"} 0\n"));
    }

    #[test]
    fn a_rule_before_its_first_cycle_has_no_replicas_values_or_metric_state() {
        let status = Status {
            rules: vec![rule_status(WORKER)],
            load_errors: Vec::new(),
            metric_servers: Vec::new(),
        };
        let text = render_metrics(&status, &Health::default());
        for absent in [
            "pilothouse_rule_current_replicas",
            "pilothouse_rule_desired_replicas",
            "pilothouse_rule_metric_value",
            "pilothouse_rule_metric_ok",
            "pilothouse_check_up",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
        assert!(text.contains("pilothouse_rule_state{rule=\"worker\",state=\"active\"} 1\n"));
        assert!(text.contains("pilothouse_rule_decisions_total{rule=\"worker\"} 0\n"));
        assert!(text.contains("pilothouse_rule_load_errors 0\n"));
    }

    #[test]
    fn no_rules_and_no_checks_expose_only_the_load_error_count() {
        let text = render_metrics(&Status::default(), &Health::default());
        assert_eq!(
            text,
            "# HELP pilothouse_rule_load_errors Errors found in the rule files at the last load; \
             the rules those files held before keep running.\n\
             # TYPE pilothouse_rule_load_errors gauge\n\
             pilothouse_rule_load_errors 0\n"
        );
    }

    #[test]
    fn a_hostile_label_value_is_escaped_and_stays_on_one_line() {
        let mut status = two_rules();
        status.rules.truncate(1);
        status.rules[0].name = "we\"b\\x\ny} 1".into();
        let health = Health {
            checks: vec![Check {
                name: "docker \"a\\b\"\nc".into(),
                ok: true,
                detail: String::new(),
                counts: true,
            }],
        };
        let text = render_metrics(&status, &health);
        assert!(
            text.contains("pilothouse_rule_current_replicas{rule=\"we\\\"b\\\\x\\ny} 1\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("pilothouse_check_up{check=\"docker \\\"a\\\\b\\\"\\nc\"} 1\n"));
        for line in text.lines() {
            assert!(
                line.starts_with("# HELP pilothouse_")
                    || line.starts_with("# TYPE pilothouse_")
                    || line.starts_with("pilothouse_"),
                "a line broken out of its sample: {line:?}"
            );
        }
    }

    #[test]
    fn values_use_the_shortest_form_prometheus_parses() {
        assert_eq!(format_value(480.0), "480");
        assert_eq!(format_value(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_value(-2.5), "-2.5");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(1e21), "1e21");
        assert_eq!(format_value(1.5e-7), "1.5e-7");
        for value in [480.0, 0.1 + 0.2, 1e21, 1.5e-7, -3e300, f64::MIN_POSITIVE] {
            assert_eq!(format_value(value).parse::<f64>(), Ok(value));
        }
    }

    #[test]
    fn the_state_set_names_every_rule_state() {
        for state in [
            RuleState::Active,
            RuleState::Paused,
            RuleState::Standby {
                holder: "daemon pid 1".into(),
            },
            RuleState::Unsupported("kubernetes".into()),
        ] {
            assert!(RULE_STATES.contains(&state.word()), "{state:?}");
        }
    }

    #[test]
    fn health_is_200_with_ok_when_every_check_passes() {
        let mut health = two_checks();
        health.checks[1].ok = true;
        health.checks[1].detail = String::new();
        assert!(health.ready());
        assert_eq!(
            render_health(&health),
            (
                200,
                "ok\ndocker local: ok Docker 24.0.7\nprometheus http://127.0.0.1:9090: ok\n"
                    .to_string()
            )
        );
    }

    #[test]
    fn health_with_no_checks_is_ready() {
        assert!(Health::default().ready());
        assert_eq!(render_health(&Health::default()), (200, "ok\n".to_string()));
    }

    #[test]
    fn health_is_503_naming_the_failing_check_when_one_fails() {
        let mut health = two_checks();
        health.checks[1].detail = "connection refused\n(is it running?)".into();
        assert!(!health.ready());
        assert_eq!(
            render_health(&health),
            (
                503,
                "docker local: ok Docker 24.0.7\n\
                 prometheus http://127.0.0.1:9090: FAILING connection refused (is it running?)\n"
                    .to_string()
            )
        );
    }

    #[test]
    fn a_failing_check_that_does_not_count_is_shown_but_neither_fails_health_nor_is_exposed() {
        let mut health = two_checks();
        health.checks[1].counts = false;
        health.checks[1].detail = "not used: connection refused".into();
        assert!(health.ready());
        assert_eq!(
            render_health(&health),
            (
                200,
                "ok\ndocker local: ok Docker 24.0.7\n\
                 prometheus http://127.0.0.1:9090: not used: connection refused\n"
                    .to_string()
            )
        );
        let text = render_metrics(&Status::default(), &health);
        assert!(
            text.contains("pilothouse_check_up{check=\"docker local\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("check=\"prometheus"), "{text}");

        // The same check failing while it counts makes the daemon unready.
        health.checks[1].counts = true;
        assert!(!health.ready());
        assert_eq!(render_health(&health).0, 503);
    }

    #[test]
    fn promtool_accepts_the_exposition() {
        let mut status = two_rules();
        status.rules[1].name = "hostile\"\\\nname".into();
        let text = render_metrics(&status, &two_checks());

        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) if std::env::var("PILOTHOUSE_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!("promtool is required (PILOTHOUSE_REQUIRE_SERVICES=1): {error}")
            }
            Err(error) => {
                eprintln!("skipped: promtool not found ({error}); install Debian's prometheus");
                return;
            }
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "promtool check metrics failed:\n{}{}\n--- input ---\n{text}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
}
