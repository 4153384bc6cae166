//! The analysis gate of a rollout: a Prometheus query with a success condition (`QUERY < 0.01`),
//! evaluated at an interval while the rollout runs. A reading that breaks the condition fails
//! the rollout; no number (an empty result, NaN, a server that does not answer) is
//! inconclusive, and only too many of those fail it.
//!
//! Not for the autoscaler's readings (see [`crate::metrics`], which this reads through) nor for
//! deciding what a failure does: the rollout rolls back.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{MetricError, MetricSource};

/// How a reading is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Less => "<",
            Op::LessOrEqual => "<=",
            Op::Greater => ">",
            Op::GreaterOrEqual => ">=",
            Op::Equal => "==",
            Op::NotEqual => "!=",
        }
    }

    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Less => value < threshold,
            Op::LessOrEqual => value <= threshold,
            Op::Greater => value > threshold,
            Op::GreaterOrEqual => value >= threshold,
            Op::Equal => value == threshold,
            Op::NotEqual => value != threshold,
        }
    }
}

/// A condition as written on the command line: the query, the comparison and the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub query: String,
    pub op: Op,
    pub threshold: f64,
}

impl Condition {
    /// `sum(rate(errors[1m])) < 0.01`: the last comparison in the text, with a number after it
    /// and a query before it.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let shape = "write it as QUERY OP NUMBER, such as \"sum(rate(errors[1m])) < 0.01\" \
                     (OP one of < <= > >= == !=)";
        let text = text.trim();
        let at = text
            .rfind(['<', '>', '=', '!'])
            .ok_or_else(|| format!("analysis {text:?}: no comparison; {shape}"))?;
        let number = text[at + 1..].trim();
        // A two-character operator ends at `at`; its first character is just before.
        let (op, query_end) = match (text[..at].chars().last(), &text[at..=at]) {
            (Some('<'), "=") => (Op::LessOrEqual, at - 1),
            (Some('>'), "=") => (Op::GreaterOrEqual, at - 1),
            (Some('='), "=") => (Op::Equal, at - 1),
            (Some('!'), "=") => (Op::NotEqual, at - 1),
            (_, "<") => (Op::Less, at),
            (_, ">") => (Op::Greater, at),
            _ => {
                return Err(format!(
                    "analysis {text:?}: no comparison at the end; {shape}"
                ));
            }
        };
        let threshold: f64 = number
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())
            .ok_or_else(|| format!("analysis {text:?}: {number:?} is not a number; {shape}"))?;
        let query = text[..query_end].trim();
        if query.is_empty() {
            return Err(format!("analysis {text:?}: the query is empty; {shape}"));
        }
        // `errors =< 1` is no operator of these: the `=` left on the query says so.
        if query.ends_with(['<', '>', '=', '!']) {
            return Err(format!(
                "analysis {text:?}: the comparison is not one of < <= > >= == !=; {shape}"
            ));
        }
        Ok(Condition {
            query: query.to_string(),
            op,
            threshold,
        })
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.query, self.op.as_str(), self.threshold)
    }
}

/// What one evaluation says.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    /// The reading broke the condition; why, in words.
    Fail(String),
    /// No number to judge by; why.
    Inconclusive(String),
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail(_) => "fail",
            Verdict::Inconclusive(_) => "inconclusive",
        }
    }
}

/// An analysis gate: the condition, where it is read, and how often.
#[derive(Clone)]
pub struct Analysis {
    pub condition: Condition,
    pub source: Arc<dyn MetricSource>,
    /// Time between evaluations.
    pub interval: Duration,
    /// Passing evaluations needed before the rollout is done.
    pub count: u32,
    /// Inconclusive evaluations allowed; one more fails the rollout.
    pub inconclusive_limit: u32,
}

impl std::fmt::Debug for Analysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analysis")
            .field("condition", &self.condition)
            .field("interval", &self.interval)
            .field("count", &self.count)
            .field("inconclusive_limit", &self.inconclusive_limit)
            .finish()
    }
}

impl Analysis {
    /// Reads the query once and judges it; the value when there was one.
    pub async fn evaluate(&self) -> (Option<f64>, Verdict) {
        let reading = self.source.instant(&self.condition.query).await;
        judge(&self.condition, reading)
    }
}

/// The verdict on one reading: a query the server refuses (bad PromQL, several series) fails at
/// once, since waiting does not mend it; no number is inconclusive.
pub fn judge(condition: &Condition, reading: Result<f64, MetricError>) -> (Option<f64>, Verdict) {
    match reading {
        Ok(value) if condition.op.holds(value, condition.threshold) => (Some(value), Verdict::Pass),
        Ok(value) => (
            Some(value),
            Verdict::Fail(format!(
                "analysis {:?} read {value}, which is not {} {}",
                condition.query,
                condition.op.as_str(),
                condition.threshold
            )),
        ),
        Err(e @ (MetricError::QueryRejected { .. } | MetricError::ManySeries { .. })) => {
            (None, Verdict::Fail(format!("analysis: {e}")))
        }
        Err(e) => (None, Verdict::Inconclusive(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_with_every_operator() {
        let c = Condition::parse("sum(rate(errors[1m])) < 0.01").unwrap();
        assert_eq!(c.query, "sum(rate(errors[1m]))");
        assert_eq!((c.op, c.threshold), (Op::Less, 0.01));
        for (text, op) in [
            ("q <= 1", Op::LessOrEqual),
            ("q>=1", Op::GreaterOrEqual),
            ("q > 1", Op::Greater),
            ("q == 1", Op::Equal),
            ("q != 1", Op::NotEqual),
            ("x{a=\"b\"} < 1", Op::Less),
            ("a > b < 1e-3", Op::Less),
        ] {
            assert_eq!(Condition::parse(text).unwrap().op, op, "{text}");
        }
        assert_eq!(
            Condition::parse("x{a=\"b\"} < 1").unwrap().query,
            "x{a=\"b\"}"
        );
    }

    #[test]
    fn bad_conditions_say_how_to_write_them() {
        for bad in [
            "errors",
            "< 1",
            "errors < ",
            "errors < abc",
            "errors < inf",
            "errors = 1",
        ] {
            let err = Condition::parse(bad).unwrap_err();
            assert!(err.contains("QUERY OP NUMBER"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_reading_passes_fails_or_is_inconclusive() {
        let c = Condition::parse("errors < 0.5").unwrap();
        assert_eq!(judge(&c, Ok(0.1)), (Some(0.1), Verdict::Pass));
        let (value, verdict) = judge(&c, Ok(2.0));
        assert_eq!(value, Some(2.0));
        let Verdict::Fail(why) = verdict else {
            panic!("2 is not < 0.5");
        };
        assert!(why.contains("read 2, which is not < 0.5"), "{why}");
        let empty = MetricError::EmptyResult {
            server: "http://127.0.0.1:9".into(),
            query: "errors".into(),
        };
        assert!(matches!(
            judge(&c, Err(empty)),
            (None, Verdict::Inconclusive(_))
        ));
    }
}
