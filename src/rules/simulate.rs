//! What-if: replay a rule over a recorded metric series with the live loop's decision function.
//!
//! [`parse_series`] reads the CSV, or [`fetch_series`] builds the same [`Series`] from range
//! queries of a Prometheus; [`simulate`] evaluates the rule every pollingInterval as the live
//! loop would (replicas follow each decision at once), and [`run`] is the `rules simulate`
//! command. Not for acting on anything: no workload is touched and nothing is recorded.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::check::inert;
use super::decide::{Decision, Inputs, Reading, Recommendation, ScaleEvent, decide, retain_recent};
use super::{MetricSource, Rule};
use crate::cli::RulesOutput;
use crate::metrics::{MetricError, PrometheusSource, Samples};

/// A problem with a series file.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A header, row or cell is not what the rule needs.
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        /// The file that failed.
        path: PathBuf,
        /// 1-based line of the offending row.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// A recorded series: per sample time, one reading per metric in the rule's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Samples in increasing time order.
    pub samples: Vec<Sample>,
}

/// The values the metrics' queries returned at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds from the start of the series.
    pub t: f64,
    /// One per metric of the rule; `None` means the query failed.
    pub values: Vec<Option<f64>>,
}

/// One evaluation of the rule during a simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Seconds from the start.
    pub t: u64,
    /// Replicas before the decision.
    pub current: u32,
    /// The decision, as the live loop would have made it.
    pub decision: Decision,
}

/// Read a series CSV for `rule`: a header `t,<metric name>...` and one row per sample.
pub fn parse_series(path: &Path, text: &str, rule: &Rule) -> Result<Series, SeriesError> {
    let invalid = |line: usize, message: String| SeriesError::Invalid {
        path: path.to_path_buf(),
        line,
        message,
    };
    // LIMITATION: cells are split on commas without CSV quoting; the series holds only
    // numbers, so no cell needs quotes.
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty());
    let Some((header_line, header)) = lines.next() else {
        return Err(invalid(
            1,
            "the series is empty; it needs a header `t,<metric>...`".into(),
        ));
    };
    let columns = parse_header(header, rule).map_err(|message| invalid(header_line, message))?;
    let mut samples: Vec<Sample> = Vec::new();
    for (number, line) in lines {
        let sample =
            parse_row(line, &columns, rule.metrics.len()).map_err(|m| invalid(number, m))?;
        let needed = evaluations(rule, sample.t);
        if needed > MAX_EVALUATIONS as f64 {
            let message = format!(
                "t {} is too late: evaluating the rule every {}s from t=0 to there takes {} \
                 evaluations, more than the {MAX_EVALUATIONS} rules simulate makes (shorten the \
                 series or lengthen pollingInterval)",
                line.split(',').next().unwrap_or_default().trim(),
                interval_secs(rule),
                count_text(needed)
            );
            return Err(invalid(number, message));
        }
        if let Some(last) = samples.last()
            && sample.t <= last.t
        {
            let message = format!(
                "t {} does not increase (the row before has {})",
                sample.t, last.t
            );
            return Err(invalid(number, message));
        }
        samples.push(sample);
    }
    if samples.is_empty() {
        return Err(invalid(
            header_line,
            "the series has a header but no samples".into(),
        ));
    }
    Ok(Series { samples })
}

/// For each column after `t`, the index of the rule's metric it holds.
fn parse_header(header: &str, rule: &Rule) -> Result<Vec<usize>, String> {
    let mut cells = header.split(',').map(str::trim);
    if cells.next() != Some("t") {
        return Err("the header must start with `t` (seconds from the start)".into());
    }
    let names: Vec<&str> = rule.metrics.iter().map(|m| m.name.as_str()).collect();
    let mut columns = Vec::new();
    for cell in cells {
        let Some(index) = names.iter().position(|name| *name == cell) else {
            return Err(format!(
                "unknown column `{cell}`: the rule's metrics are {}",
                names.join(", ")
            ));
        };
        if columns.contains(&index) {
            return Err(format!("column `{cell}` appears twice"));
        }
        columns.push(index);
    }
    if let Some(missing) = (0..names.len()).find(|i| !columns.contains(i)) {
        return Err(format!(
            "no column for the rule's metric `{}`",
            names[missing]
        ));
    }
    Ok(columns)
}

fn parse_row(line: &str, columns: &[usize], metrics: usize) -> Result<Sample, String> {
    let cells: Vec<&str> = line.split(',').map(str::trim).collect();
    if cells.len() != columns.len() + 1 {
        return Err(format!(
            "{} cells, but the header has {}",
            cells.len(),
            columns.len() + 1
        ));
    }
    let t: f64 = cells[0]
        .parse()
        .ok()
        .filter(|t: &f64| t.is_finite() && *t >= 0.0)
        .ok_or_else(|| format!("t `{}` is not a number of seconds (0 or more)", cells[0]))?;
    let mut values = vec![None; metrics];
    for (cell, &index) in cells[1..].iter().zip(columns) {
        if cell.is_empty() {
            continue;
        }
        let value: f64 = cell
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| {
                format!("`{cell}` is not a number (leave the cell empty for a failed query)")
            })?;
        values[index] = Some(value);
    }
    Ok(Sample { t, values })
}

/// The most evaluations one `rules simulate` makes: a day at one a second, or 17 days at the
/// default 15 s; about 7 MB of CSV or 25 MB of JSON, made in under a second.
pub const MAX_EVALUATIONS: u64 = 100_000;

/// The rule's pollingInterval in whole seconds, at least one, as the replay steps.
fn interval_secs(rule: &Rule) -> u64 {
    rule.polling_interval.as_secs().max(1)
}

/// How many evaluations [`simulate`] makes for a series whose last sample is at `end` seconds.
///
/// A float, because `end` may be far beyond what any count could hold.
pub fn evaluations(rule: &Rule, end: f64) -> f64 {
    // Precision loss only past 2^53 seconds, where the count is refused anyway.
    #[allow(clippy::cast_precision_loss)]
    let interval = interval_secs(rule) as f64;
    (end / interval).floor() + 1.0
}

/// Evaluate `rule` every pollingInterval from t=0 to the last sample, starting at `initial`.
///
/// At most [`MAX_EVALUATIONS`] steps: [`parse_series`] and `rules simulate` refuse a longer
/// series before it starts, so a caller that checks [`evaluations`] never sees the cut.
pub fn simulate(rule: &Rule, series: &Series, initial: u32) -> Vec<Step> {
    let start = DateTime::<Utc>::UNIX_EPOCH;
    let interval = interval_secs(rule);
    let end = series.samples.last().map_or(0.0, |s| s.t);
    let mut current = initial;
    let mut recommendations: Vec<Recommendation> = Vec::new();
    let mut scale_events: Vec<ScaleEvent> = Vec::new();
    let mut failed_cycles = 0;
    let mut steps = Vec::new();
    // How many samples are at or before `t`; time only grows, so each is looked at once.
    let mut seen = 0;
    let mut t: u64 = 0;
    // Precision loss only past 2^53 seconds, far beyond any recorded series.
    #[allow(clippy::cast_precision_loss)]
    while t as f64 <= end && (steps.len() as u64) < MAX_EVALUATIONS {
        let now = start + TimeDelta::seconds(i64::try_from(t).unwrap_or(i64::MAX));
        #[allow(clippy::cast_precision_loss)]
        while series.samples.get(seen).is_some_and(|s| s.t <= t as f64) {
            seen += 1;
        }
        let readings = readings_of(seen.checked_sub(1).map(|i| &series.samples[i]), rule);
        retain_recent(rule, now, &mut recommendations, &mut scale_events);
        let decision = decide(
            rule,
            &Inputs {
                current,
                readings: &readings,
                recommendations: &recommendations,
                scale_events: &scale_events,
                failed_cycles,
                now,
                // As in the live loop: the replay starts with no history.
                history_since: Some(start),
            },
        );
        recommendations.extend(decision.record);
        failed_cycles = decision.failed_cycles;
        if decision.desired != current {
            scale_events.push(ScaleEvent {
                at: now,
                from: current,
                to: decision.desired,
            });
        }
        let next = decision.desired;
        steps.push(Step {
            t,
            current,
            decision,
        });
        current = next;
        t += interval;
    }
    steps
}

/// The readings of `latest`, the latest sample so far; all failed before the first sample.
fn readings_of(latest: Option<&Sample>, rule: &Rule) -> Vec<Reading> {
    match latest {
        Some(sample) => sample
            .values
            .iter()
            .map(|value| value.ok_or_else(|| "the query failed".to_string()))
            .collect(),
        None => vec![Err("no sample yet".to_string()); rule.metrics.len()],
    }
}

/// Where `rules simulate` takes its series from.
#[derive(Debug, Clone, Copy)]
pub enum SeriesInput<'a> {
    /// A CSV file, as [`parse_series`] reads it.
    File(&'a Path),
    /// Range queries of a Prometheus, as [`fetch_series`] makes them.
    Prometheus(RangeArgs<'a>),
}

/// The `--prometheus` flags as given on the command line, before any of them is checked.
#[derive(Debug, Clone, Copy)]
pub struct RangeArgs<'a> {
    /// The server for metrics without a `serverAddress` of their own.
    pub url: &'a str,
    /// `--from`: RFC 3339, `now` or a time ago such as `-1h`.
    pub from: Option<&'a str>,
    /// `--to`, written as `--from` is.
    pub to: &'a str,
    /// `--step`; `None` means the rule's pollingInterval.
    pub step: Option<&'a str>,
}

/// The `rules simulate` command; returns the exit code.
pub fn run(
    rule_file: &Path,
    input: SeriesInput<'_>,
    initial: Option<u32>,
    output: RulesOutput,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    match render(rule_file, input, initial, output) {
        Ok(Rendered { text, warnings }) => {
            for warning in warnings {
                let _ = writeln!(err, "warning: {}", inert(&warning));
            }
            let _ = out.write_all(text.as_bytes());
            0
        }
        Err(messages) => {
            for message in messages {
                let _ = writeln!(err, "{}", inert(&message));
            }
            1
        }
    }
}

/// A finished simulation: the whole output, and what the operator should know about its input.
struct Rendered {
    text: String,
    warnings: Vec<String>,
}

/// The whole output, or every error; nothing is printed until all of it is ready.
fn render(
    rule_file: &Path,
    input: SeriesInput<'_>,
    initial: Option<u32>,
    output: RulesOutput,
) -> Result<Rendered, Vec<String>> {
    let rule = load_one_rule(rule_file)?;
    if initial == Some(0) {
        return Err(vec![
            "--initial-replicas 0: a workload at 0 replicas has nothing to measure and a Percent \
             policy cannot grow it; give 1 or more"
                .into(),
        ]);
    }

    let fetched = match input {
        SeriesInput::File(path) => Fetched {
            series: read_series_file(path, &rule)?,
            warnings: Vec::new(),
        },
        SeriesInput::Prometheus(args) => {
            replay_from_prometheus(&rule, &args).map_err(|e| vec![e])?
        }
    };

    let steps = simulate(&rule, &fetched.series, initial.unwrap_or(rule.min_replicas));

    let text = match output {
        RulesOutput::Csv => to_csv(&rule, &steps),
        RulesOutput::Json => {
            to_json(&steps).map_err(|e| vec![format!("cannot write JSON: {e}")])?
        }
    };
    Ok(Rendered {
        text,
        warnings: fetched.warnings,
    })
}

/// The single rule in `rule_file`, or its errors.
fn load_one_rule(rule_file: &Path) -> Result<Rule, Vec<String>> {
    let to_strings = |errors: Vec<crate::config::ConfigError>| {
        errors.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    let mut rules = super::load_rules(rule_file).map_err(to_strings)?;
    if rules.len() != 1 {
        return Err(vec![format!(
            "{} holds {} rules; simulate takes a file with one rule",
            rule_file.display(),
            rules.len()
        )]);
    }
    Ok(rules.remove(0))
}

/// Read and parse a series CSV for `rule`.
fn read_series_file(series_file: &Path, rule: &Rule) -> Result<Series, Vec<String>> {
    let text = std::fs::read_to_string(series_file).map_err(|source| {
        vec![
            SeriesError::Read {
                path: series_file.to_path_buf(),
                source,
            }
            .to_string(),
        ]
    })?;
    parse_series(series_file, &text, rule).map_err(|e| vec![e.to_string()])
}

/// Check the range flags against the clock once, then fetch the series on a runtime of its own.
fn replay_from_prometheus(rule: &Rule, args: &RangeArgs<'_>) -> Result<Fetched, String> {
    let window = window(args, rule, Utc::now())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(fetch_series(rule, args.url, &window))
}

/// The most samples one range query may return; Prometheus refuses more than 11,000 per series.
const MAX_STEPS: i64 = 11_000;

/// The time range of a Prometheus replay, in whole seconds (the source sends whole seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The first sample's time; t=0 of the series.
    pub from: DateTime<Utc>,
    /// No sample is later than this.
    pub to: DateTime<Utc>,
    /// Time between samples; at least one second.
    pub step: Duration,
}

/// The window `args` describe, with relative times counted back from `now`.
fn window(args: &RangeArgs<'_>, rule: &Rule, now: DateTime<Utc>) -> Result<Window, String> {
    use chrono::SubsecRound;

    let from_text = args
        .from
        .ok_or("--prometheus needs --from: the start of the range to replay")?;
    let from = parse_time(from_text, now).map_err(|why| format!("--from `{from_text}` {why}"))?;
    let to = parse_time(args.to, now).map_err(|why| format!("--to `{}` {why}", args.to))?;
    if from > to {
        return Err(format!(
            "--from {} is after --to {}: give a start before the end",
            from.to_rfc3339(),
            to.to_rfc3339()
        ));
    }
    let step = match args.step {
        Some(text) => {
            super::parse::parse_duration(text).map_err(|why| format!("--step `{text}` {why}"))?
        }
        None => rule.polling_interval,
    };
    if step.is_zero() {
        return Err("--step must be longer than 0s".into());
    }
    let window = Window {
        from: from.trunc_subsecs(0),
        to: to.trunc_subsecs(0),
        step,
    };
    if step_count(&window) > MAX_STEPS {
        return Err(format!(
            "--from {} to --to {} every {}s is more than {MAX_STEPS} samples, more than \
             Prometheus returns: give a larger --step or a shorter range",
            window.from.to_rfc3339(),
            window.to.to_rfc3339(),
            step.as_secs()
        ));
    }
    // Precision loss only past 2^53 seconds, far beyond the calendar.
    #[allow(clippy::cast_precision_loss)]
    let needed = evaluations(rule, (window.to - window.from).num_seconds() as f64);
    if needed > MAX_EVALUATIONS as f64 {
        return Err(format!(
            "--from {} to --to {} with the rule evaluated every {}s (its pollingInterval) is \
             {} evaluations, more than the {MAX_EVALUATIONS} rules simulate makes: give \
             a shorter range",
            window.from.to_rfc3339(),
            window.to.to_rfc3339(),
            interval_secs(rule),
            count_text(needed)
        ));
    }
    Ok(window)
}

/// A count of evaluations as an operator reads it: exact while that is short, else `6.67e18`.
fn count_text(count: f64) -> String {
    if count < 1e15 {
        format!("{count:.0}")
    } else {
        format!("{count:.2e}")
    }
}

/// How many steps after `from` the window holds (so one sample more than this).
fn step_count(window: &Window) -> i64 {
    let step = i64::try_from(window.step.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    (window.to - window.from).num_milliseconds() / step
}

const TIME_FORMAT: &str = "is not a time: write RFC 3339 (2024-05-01T12:00:00Z), `now`, or a \
                           time ago such as -30m, -1h, -2d";

/// `now`, `-<N><s|m|h|d>` (that long before `now`) or an RFC 3339 time.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, &'static str> {
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let seconds = parse_ago(ago).ok_or(TIME_FORMAT)?;
        return now
            .checked_sub_signed(TimeDelta::seconds(seconds))
            .ok_or("is further back than the calendar goes");
    }
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| TIME_FORMAT)
}

/// Seconds in `30m`, `1h`, `2d`: one whole number and one unit.
fn parse_ago(text: &str) -> Option<i64> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(unit_at);
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    digits.parse::<i64>().ok()?.checked_mul(seconds_per_unit)
}

/// A series read from Prometheus, and the metrics whose readings all count as failed.
#[derive(Debug)]
pub struct Fetched {
    /// One sample per step of the window, t in seconds from its start.
    pub series: Series,
    /// One line per metric that gave no usable sample at all, with the reason.
    pub warnings: Vec<String>,
}

/// One range query per metric of `rule` over `window`, assembled into a [`Series`].
///
/// Metrics without a `serverAddress` are read from `default_server`; a metric's own address wins.
/// A query that matches nothing, several series, NaN or an infinity makes every step a failed
/// reading of that metric (the live loop would fail the same way); anything else (unreachable
/// server, rejected query, a rule with a CPU metric) is an error.
pub async fn fetch_series(
    rule: &Rule,
    default_server: &str,
    window: &Window,
) -> Result<Fetched, String> {
    let queries = prometheus_queries(rule)?;
    let default =
        PrometheusSource::new(default_server).map_err(|e| format!("--prometheus: {e}"))?;

    let mut ranges = Vec::with_capacity(queries.len());
    let mut warnings = Vec::new();
    for RangeQuery {
        name,
        server_address,
        query,
    } in queries
    {
        let own;
        let source = match server_address {
            Some(address) => {
                own =
                    PrometheusSource::new(address).map_err(|e| format!("metric `{name}`: {e}"))?;
                &own
            }
            None => &default,
        };
        match source
            .query_range(query, window.from, window.to, window.step)
            .await
        {
            Ok(samples) => ranges.push(samples),
            Err(err) if is_failed_reading(&err) => {
                warnings.push(format!(
                    "metric `{name}`: {err}; it counts as a failed reading at every step"
                ));
                ranges.push(Vec::new());
            }
            Err(err) => return Err(format!("metric `{name}`: {err}")),
        }
    }

    Ok(Fetched {
        series: series_from_ranges(window, &ranges),
        warnings,
    })
}

/// One metric's range query: which metric, on which server, asking what.
struct RangeQuery<'a> {
    name: &'a str,
    server_address: Option<&'a str>,
    query: &'a str,
}

/// The range query of each metric, or why the rule cannot be replayed.
fn prometheus_queries(rule: &Rule) -> Result<Vec<RangeQuery<'_>>, String> {
    rule.metrics
        .iter()
        .map(|metric| match &metric.source {
            MetricSource::Prometheus {
                server_address,
                query,
                ..
            } => Ok(RangeQuery {
                name: &metric.name,
                server_address: server_address.as_deref(),
                query,
            }),
            MetricSource::Cpu { .. } => Err(format!(
                "metric `{}` of rule `{}` is CPU, which comes from Docker stats and not from \
                 Prometheus, so --prometheus cannot replay it (record it and use --series)",
                metric.name, rule.name
            )),
        })
        .collect()
}

/// Whether `err` is a reading the live loop would also have failed at, rather than a problem
/// with the server or the query that makes the replay meaningless.
///
/// LIMITATION: the source refuses a whole range when one sample is NaN or infinite, so such a
/// metric fails at every step rather than only at the steps where the value was not a number.
fn is_failed_reading(err: &MetricError) -> bool {
    matches!(
        err,
        MetricError::EmptyResult { .. }
            | MetricError::ManySeries { .. }
            | MetricError::NotANumber { .. }
            | MetricError::Infinite { .. }
    )
}

/// One sample per step of `window`, each metric's value the one its range has at that time;
/// a metric with no sample at a step is a failed reading there.
pub fn series_from_ranges(window: &Window, ranges: &[Samples]) -> Series {
    let by_time: Vec<HashMap<i64, f64>> = ranges
        .iter()
        .map(|samples| {
            samples
                .iter()
                .map(|(time, value)| (time.timestamp_millis(), *value))
                .collect()
        })
        .collect();
    let step = i64::try_from(window.step.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let start = window.from.timestamp_millis();
    let samples = (0..=step_count(window))
        .map(|k| {
            let offset = k * step;
            Sample {
                // Precision loss only past 2^53 ms; the window holds at most MAX_STEPS steps.
                #[allow(clippy::cast_precision_loss)]
                t: offset as f64 / 1000.0,
                values: by_time
                    .iter()
                    .map(|values| values.get(&(start + offset)).copied())
                    .collect(),
            }
        })
        .collect();
    Series { samples }
}

/// One header and one row per step: t, current, each metric's recommendation, desired, reason.
pub fn to_csv(rule: &Rule, steps: &[Step]) -> String {
    let mut text = String::from("t,current");
    for metric in &rule.metrics {
        text.push(',');
        text.push_str(&inert(&metric.name));
    }
    text.push_str(",desired,reason\n");
    for step in steps {
        text.push_str(&format!("{},{}", step.t, step.current));
        for recommendation in &step.decision.recommendations {
            text.push(',');
            if let Ok(replicas) = recommendation.replicas {
                text.push_str(&replicas.to_string());
            }
        }
        text.push_str(&format!(
            ",{},{}\n",
            step.decision.desired,
            csv_quote(&inert(&step.decision.reason))
        ));
    }
    text
}

fn csv_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

#[derive(Serialize)]
struct JsonStep<'a> {
    t: u64,
    current: u32,
    recommendations: Vec<JsonRecommendation<'a>>,
    desired: u32,
    reason: &'a str,
}

#[derive(Serialize)]
struct JsonRecommendation<'a> {
    metric: &'a str,
    replicas: Option<u32>,
    error: Option<&'a str>,
}

/// A JSON array with one object per step; no character in it is one a terminal acts on.
pub fn to_json(steps: &[Step]) -> Result<String, serde_json::Error> {
    let rows: Vec<JsonStep<'_>> = steps
        .iter()
        .map(|step| JsonStep {
            t: step.t,
            current: step.current,
            recommendations: step
                .decision
                .recommendations
                .iter()
                .map(|r| JsonRecommendation {
                    metric: &r.metric,
                    replicas: r.replicas.as_ref().ok().copied(),
                    error: r.replicas.as_ref().err().map(String::as_str),
                })
                .collect(),
            desired: step.decision.desired,
            reason: &step.decision.reason,
        })
        .collect();
    let mut text = escape_for_terminal(&serde_json::to_string_pretty(&rows)?);
    text.push('\n');
    Ok(text)
}

/// `json` with DEL, the C1 controls and the bidi overrides and isolates written as `\uXXXX`;
/// serde_json escapes the C0 controls itself but writes these as they are. They can only
/// stand inside strings, where the escape means the same character.
fn escape_for_terminal(json: &str) -> String {
    let mut text = String::with_capacity(json.len());
    for c in json.chars() {
        if matches!(c, '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            text.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            text.push(c);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn rule() -> Rule {
        let text = "name: web\ntarget: { platform: docker, host: local, workload: shop/web }\n\
                    maxReplicas: 10\npollingInterval: 15s\nmetrics:\n  - name: rps\n    \
                    prometheus: { query: q, type: AverageValue, target: 100 }\n";
        super::super::parse_rules(Path::new("r.yaml"), text)
            .unwrap()
            .remove(0)
    }

    fn args<'a>(from: &'a str, to: &'a str, step: Option<&'a str>) -> RangeArgs<'a> {
        RangeArgs {
            url: "http://127.0.0.1:9",
            from: Some(from),
            to,
            step,
        }
    }

    #[test]
    fn times_are_now_a_time_ago_or_rfc_3339() {
        let now = at("2024-05-01T12:00:00Z");
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("-90s", now), Ok(at("2024-05-01T11:58:30Z")));
        assert_eq!(parse_time("-30m", now), Ok(at("2024-05-01T11:30:00Z")));
        assert_eq!(parse_time("-1h", now), Ok(at("2024-05-01T11:00:00Z")));
        assert_eq!(parse_time("-2d", now), Ok(at("2024-04-29T12:00:00Z")));
        assert_eq!(
            parse_time("2024-05-01T14:00:00+02:00", now),
            Ok(at("2024-05-01T12:00:00Z"))
        );
        for bad in [
            "",
            "-",
            "-1",
            "-h",
            "-1w",
            "-1h30m",
            "+1h",
            "yesterday",
            "2024-05-01",
        ] {
            assert_eq!(parse_time(bad, now), Err(TIME_FORMAT), "{bad}");
        }
    }

    #[test]
    fn the_step_defaults_to_the_polling_interval_and_times_drop_their_fractions() {
        let now = at("2024-05-01T12:00:00.750Z");
        let window = window(&args("-1m", "now", None), &rule(), now).unwrap();
        assert_eq!(
            window,
            Window {
                from: at("2024-05-01T11:59:00Z"),
                to: at("2024-05-01T12:00:00Z"),
                step: Duration::from_secs(15),
            }
        );
    }

    #[test]
    fn a_start_after_the_end_is_refused_with_both_times() {
        let now = at("2024-05-01T12:00:00Z");
        let err = window(&args("now", "-1h", Some("1s")), &rule(), now).unwrap_err();
        assert_eq!(
            err,
            "--from 2024-05-01T12:00:00+00:00 is after --to 2024-05-01T11:00:00+00:00: give a \
             start before the end"
        );
    }

    #[test]
    fn a_zero_step_a_bad_step_and_too_many_steps_are_refused() {
        let now = at("2024-05-01T12:00:00Z");
        let refused =
            |from, step| window(&args(from, "now", Some(step)), &rule(), now).unwrap_err();
        assert_eq!(refused("-1h", "0s"), "--step must be longer than 0s");
        assert!(refused("-1h", "1.5s").starts_with("--step `1.5s` is not a duration"));
        assert!(refused("-1d", "1s").contains("more than 11000 samples"));
        assert!(window(&args("-3h", "now", Some("1s")), &rule(), now).is_ok());
    }

    #[test]
    fn a_step_with_no_sample_is_a_failed_reading_in_the_assembled_series() {
        let from = at("2024-05-01T12:00:00Z");
        let window = Window {
            from,
            to: from + TimeDelta::seconds(4),
            step: Duration::from_secs(2),
        };
        let first = vec![(from, 1.0), (from + TimeDelta::seconds(4), 3.0)];
        let second = vec![(from + TimeDelta::seconds(2), 7.0)];

        let series = series_from_ranges(&window, &[first, second, Vec::new()]);

        assert_eq!(
            series.samples,
            vec![
                Sample {
                    t: 0.0,
                    values: vec![Some(1.0), None, None],
                },
                Sample {
                    t: 2.0,
                    values: vec![None, Some(7.0), None],
                },
                Sample {
                    t: 4.0,
                    values: vec![Some(3.0), None, None],
                },
            ]
        );
    }

    #[test]
    fn a_series_needing_more_evaluations_than_the_cap_is_refused_at_its_row() {
        let rule = rule();
        let path = Path::new("s.csv");
        // Every 15 s from 0: t=1499985 is evaluation 100000, t=1500000 would be 100001.
        let longest = parse_series(path, "t,rps\n0,1\n1499985,2\n", &rule).unwrap();
        assert_eq!(simulate(&rule, &longest, 1).len(), 100_000);
        let err = parse_series(path, "t,rps\n0,1\n1500000,2\n", &rule).unwrap_err();
        assert_eq!(
            err.to_string(),
            "s.csv:3: t 1500000 is too late: evaluating the rule every 15s from t=0 to there \
             takes 100001 evaluations, more than the 100000 rules simulate makes (shorten the \
             series or lengthen pollingInterval)"
        );
        let err = parse_series(path, "t,rps\n0,1\n99999999999999999999,2\n", &rule).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("s.csv:3: t 99999999999999999999 is too late"),
            "{err}"
        );
        assert!(
            err.to_string().contains("takes 6.67e18 evaluations"),
            "{err}"
        );
    }

    #[test]
    fn a_prometheus_range_needing_more_evaluations_than_the_cap_is_refused() {
        let now = at("2024-05-01T12:00:00Z");
        // 30 days in 720 samples of an hour is within what Prometheus returns, but the rule
        // is evaluated every 15 s.
        let err = window(&args("-30d", "now", Some("1h")), &rule(), now).unwrap_err();
        assert_eq!(
            err,
            "--from 2024-04-01T12:00:00+00:00 to --to 2024-05-01T12:00:00+00:00 with the rule \
             evaluated every 15s (its pollingInterval) is 172801 evaluations, more than the \
             100000 rules simulate makes: give a shorter range"
        );
        assert!(window(&args("-17d", "now", Some("1h")), &rule(), now).is_ok());
    }

    #[test]
    fn the_largest_policies_the_rules_allow_cannot_overflow_from_the_largest_count() {
        let text = "name: web\ntarget: { platform: docker, host: local, workload: web }\n\
                    maxReplicas: 100000\nmetrics:\n  - name: rps\n    prometheus: { query: q, \
                    type: AverageValue, target: 0.001 }\nbehavior:\n  scaleUp: { policies: \
                    [{ type: Percent, value: 10000, period: 15s }, { type: Pods, value: 100000, \
                    period: 15s }] }\n  scaleDown: { stabilizationWindow: 0s, policies: [{ type: \
                    Percent, value: 10000, period: 15s }] }\n";
        let rule = super::super::parse_rules(Path::new("r.yaml"), text)
            .unwrap()
            .remove(0);
        let series = parse_series(Path::new("s.csv"), "t,rps\n0,1e300\n30,0\n", &rule).unwrap();
        // Debug builds panic on overflow, so this runs every policy's arithmetic for real.
        let desired: Vec<u32> = simulate(&rule, &series, u32::MAX)
            .iter()
            .map(|step| step.decision.desired)
            .collect();
        assert_eq!(desired, vec![100_000, 100_000, 1]);
    }

    #[test]
    fn json_output_escapes_what_serde_json_leaves_raw() {
        let json = serde_json::to_string("a\u{1b}b\u{9b}c\u{202e}d\u{7f}").unwrap();
        let escaped = escape_for_terminal(&json);
        assert_eq!(escaped, r#""a\u001bb\u009bc\u202ed\u007f""#);
        let back: String = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, "a\u{1b}b\u{9b}c\u{202e}d\u{7f}");
    }

    #[test]
    fn a_cpu_metric_cannot_be_replayed_from_prometheus() {
        let mut rule = rule();
        rule.metrics[0].source = MetricSource::Cpu { utilization: 70.0 };
        let err = prometheus_queries(&rule).err().unwrap();
        assert!(
            err.starts_with("metric `rps` of rule `web` is CPU"),
            "{err}"
        );
    }
}
