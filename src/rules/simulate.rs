//! What-if: replay a rule over a recorded metric series with the live loop's decision function.
//!
//! [`parse_series`] reads the CSV, [`simulate`] evaluates the rule every pollingInterval as the
//! live loop would (replicas follow each decision at once), and [`run`] is the `rules simulate`
//! command. Not for querying Prometheus: the series comes from a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::Rule;
use super::decide::{Decision, Inputs, Reading, Recommendation, ScaleEvent, decide, retain_recent};
use crate::cli::RulesOutput;

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
        if let Some(last) = samples.last() {
            if sample.t <= last.t {
                let message = format!(
                    "t {} does not increase (the row before has {})",
                    sample.t, last.t
                );
                return Err(invalid(number, message));
            }
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

/// Evaluate `rule` every pollingInterval from t=0 to the last sample, starting at `initial`.
pub fn simulate(rule: &Rule, series: &Series, initial: u32) -> Vec<Step> {
    let start = DateTime::<Utc>::UNIX_EPOCH;
    let interval = rule.polling_interval.as_secs().max(1);
    let end = series.samples.last().map_or(0.0, |s| s.t);
    let mut current = initial;
    let mut recommendations: Vec<Recommendation> = Vec::new();
    let mut scale_events: Vec<ScaleEvent> = Vec::new();
    let mut failed_cycles = 0;
    let mut steps = Vec::new();
    let mut t: u64 = 0;
    // Precision loss only past 2^53 seconds, far beyond any recorded series.
    #[allow(clippy::cast_precision_loss)]
    while t as f64 <= end {
        let now = start + TimeDelta::seconds(i64::try_from(t).unwrap_or(i64::MAX));
        let readings = readings_at(series, rule, t);
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

/// The readings of the latest sample at or before `t`; all failed before the first sample.
fn readings_at(series: &Series, rule: &Rule, t: u64) -> Vec<Reading> {
    // Precision loss only past 2^53 seconds.
    #[allow(clippy::cast_precision_loss)]
    let t = t as f64;
    let latest = series.samples.iter().take_while(|s| s.t <= t).last();
    match latest {
        Some(sample) => sample
            .values
            .iter()
            .map(|value| value.ok_or_else(|| "the query failed".to_string()))
            .collect(),
        None => vec![Err("no sample yet".to_string()); rule.metrics.len()],
    }
}

/// The `rules simulate` command; returns the exit code.
pub fn run(
    rule_file: &Path,
    series_file: &Path,
    initial: Option<u32>,
    output: RulesOutput,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    match render(rule_file, series_file, initial, output) {
        Ok(text) => {
            let _ = out.write_all(text.as_bytes());
            0
        }
        Err(messages) => {
            for message in messages {
                let _ = writeln!(err, "{message}");
            }
            1
        }
    }
}

/// The whole output, or every error; nothing is printed until all of it is ready.
fn render(
    rule_file: &Path,
    series_file: &Path,
    initial: Option<u32>,
    output: RulesOutput,
) -> Result<String, Vec<String>> {
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
    let rule = rules.remove(0);
    let text = std::fs::read_to_string(series_file).map_err(|source| {
        vec![
            SeriesError::Read {
                path: series_file.to_path_buf(),
                source,
            }
            .to_string(),
        ]
    })?;
    let series = parse_series(series_file, &text, &rule).map_err(|e| vec![e.to_string()])?;
    let steps = simulate(&rule, &series, initial.unwrap_or(rule.min_replicas));
    match output {
        RulesOutput::Csv => Ok(to_csv(&rule, &steps)),
        RulesOutput::Json => to_json(&steps).map_err(|e| vec![format!("cannot write JSON: {e}")]),
    }
}

/// One header and one row per step: t, current, each metric's recommendation, desired, reason.
pub fn to_csv(rule: &Rule, steps: &[Step]) -> String {
    let mut text = String::from("t,current");
    for metric in &rule.metrics {
        text.push(',');
        text.push_str(&metric.name);
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
            csv_quote(&step.decision.reason)
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

/// A JSON array with one object per step.
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
    let mut text = serde_json::to_string_pretty(&rows)?;
    text.push('\n');
    Ok(text)
}
