//! Metric sources: where the autoscaler and `rules simulate` read the numbers a rule scales on.
//!
//! A source answers two questions: one value now (an instant query) and the values over a time
//! range (a range query). Every way a reading can go wrong is a [`MetricError`] with a message
//! an operator can act on; a source never turns a failure, an empty answer, NaN or an infinity
//! into a number, because a zero read by mistake would scale a workload down.
//!
//! Not for deciding anything: sources only read. What a reading means for the replica count is
//! the decision function's business, and retrying with backoff is the caller's.

pub mod prometheus;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

pub use prometheus::PrometheusSource;

/// How long a source waits for one answer before it reports [`MetricError::Timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Samples of one series, oldest first.
pub type Samples = Vec<(DateTime<Utc>, f64)>;

/// A place the autoscaler reads metrics from.
///
/// The methods return boxed futures rather than being `async fn` so that the engine can hold
/// sources of different kinds behind `Arc<dyn MetricSource>`.
pub trait MetricSource: Send + Sync {
    /// One value now; exactly one series must match, and its value must be finite.
    fn instant<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, MetricError>>;

    /// The values of exactly one series from `from` to `to`, one every `step`, oldest first.
    fn range<'a>(
        &'a self,
        query: &'a str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: Duration,
    ) -> BoxFuture<'a, Result<Samples, MetricError>>;
}

impl MetricError {
    /// Whether the server answered: a query it rejected or an answer with no usable number
    /// (empty, NaN, several series) is the query's fault, not the server's.
    pub fn server_answered(&self) -> bool {
        matches!(
            self,
            MetricError::QueryRejected { .. }
                | MetricError::EmptyResult { .. }
                | MetricError::NotANumber { .. }
                | MetricError::Infinite { .. }
                | MetricError::ManySeries { .. }
                | MetricError::UnexpectedResultType { .. }
        )
    }
}

/// Why a metric could not be read: what failed, on which server and query, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    /// The server address given in a rule or in config.toml is not usable.
    #[error(
        "invalid metric server address {address:?}: {reason} \
         (give an http:// or https:// URL, such as http://HOST:9090)"
    )]
    InvalidAddress {
        address: String,
        reason: String,
        #[source]
        source: Option<url::ParseError>,
    },

    /// The HTTP client for a server could not be built (its TLS setup failed).
    #[error("cannot set up an HTTP client for {server}: {source}")]
    ClientSetup {
        server: String,
        #[source]
        source: reqwest::Error,
    },

    /// No connection could be made (refused, no route, DNS failure).
    #[error(
        "cannot reach {server} for query {query:?}: {cause} \
         (is the server running and listening at that address? check serverAddress)"
    )]
    Unreachable {
        server: String,
        query: String,
        cause: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The server did not answer in time.
    #[error(
        "{server} did not answer query {query:?} within {timeout:?} \
         (is the server overloaded, or the query too expensive?)"
    )]
    Timeout {
        server: String,
        query: String,
        timeout: Duration,
    },

    /// The server answered with a status other than 2xx and no query error in its body.
    #[error(
        "{server} answered query {query:?} with HTTP {status}: {body} \
         (check that serverAddress points at the server's API, including any path prefix)"
    )]
    Status {
        server: String,
        query: String,
        status: u16,
        body: String,
    },

    /// The server refused or failed to run the query (bad PromQL, evaluation error).
    #[error("{server} rejected query {query:?}: {kind}: {message} (fix the query in the rule)")]
    QueryRejected {
        server: String,
        query: String,
        kind: String,
        message: String,
    },

    /// The answer could not be understood (not JSON, or not the API's shape).
    #[error(
        "{server} sent an answer to query {query:?} that is not a Prometheus API response: \
         {cause} (is serverAddress a Prometheus server, and not a proxy's error page?)"
    )]
    BadResponse {
        server: String,
        query: String,
        cause: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The query matched no series at all.
    #[error(
        "query {query:?} on {server} returned an empty result: no series matched \
         (check the metric name and labels, and that its target is being scraped)"
    )]
    EmptyResult { server: String, query: String },

    /// The value is NaN, often a division by zero in the query.
    #[error(
        "query {query:?} on {server} returned NaN{at} \
         (often a division by zero: guard the query, e.g. with `> 0` or `or vector(0)`)"
    )]
    NotANumber {
        server: String,
        query: String,
        at: String,
    },

    /// The value is +Inf or -Inf.
    #[error(
        "query {query:?} on {server} returned {}{at} \
         (often a division by zero: guard the query's divisor)",
        infinity_text(*.value)
    )]
    Infinite {
        server: String,
        query: String,
        value: f64,
        at: String,
    },

    /// The query matched several series where one was expected.
    #[error(
        "query {query:?} on {server} returned {count} series where one was expected: {labels} \
         (aggregate them, e.g. with sum(...) or max(...), or narrow the label matchers)"
    )]
    ManySeries {
        server: String,
        query: String,
        count: usize,
        labels: String,
    },

    /// The result is of a type this kind of query cannot use.
    #[error(
        "query {query:?} on {server} returned a {actual} where {expected} was expected \
         (an instant query needs an instant vector or a scalar; a range query needs an \
         expression without a [range] selector)"
    )]
    UnexpectedResultType {
        server: String,
        query: String,
        expected: &'static str,
        actual: String,
    },
}

/// An infinity spelled as Prometheus spells it.
fn infinity_text(value: f64) -> &'static str {
    if value > 0.0 { "+Inf" } else { "-Inf" }
}

/// How many label sets a [`MetricError::ManySeries`] message lists before "and N more".
const LISTED_SERIES: usize = 3;

/// How many characters of one label set a message shows.
const LABEL_SET_CHARS: usize = 80;

/// Label sets in PromQL notation (`name{key="value", ...}`), sorted, each cut to a readable
/// length, at most [`LISTED_SERIES`] of them; for error messages.
pub fn describe_series<'a, I>(label_sets: I) -> String
where
    I: IntoIterator<Item = &'a std::collections::HashMap<String, String>>,
{
    let mut described: Vec<String> = label_sets.into_iter().map(describe_labels).collect();
    described.sort();
    let total = described.len();
    let mut listed: Vec<String> = described
        .into_iter()
        .take(LISTED_SERIES)
        .map(|text| shorten(&text, LABEL_SET_CHARS))
        .collect();
    if total > LISTED_SERIES {
        listed.push(format!("and {} more", total - LISTED_SERIES));
    }
    listed.join(", ")
}

/// One label set as `name{key="value", ...}` with the keys sorted.
fn describe_labels(labels: &std::collections::HashMap<String, String>) -> String {
    let name = labels.get("__name__").map(String::as_str).unwrap_or("");
    let mut pairs: Vec<(&String, &String)> = labels
        .iter()
        .filter(|(key, _)| *key != "__name__")
        .collect();
    pairs.sort();
    let inner: Vec<String> = pairs
        .into_iter()
        .map(|(key, value)| format!("{key}={value:?}"))
        .collect();
    format!("{name}{{{}}}", inner.join(", "))
}

/// `text` cut to at most `max` characters, ending in `…` when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_label_set_reads_as_promql_with_sorted_keys() {
        let set = labels(&[("job", "web"), ("__name__", "up"), ("instance", "a:80")]);
        assert_eq!(describe_series([&set]), r#"up{instance="a:80", job="web"}"#);
    }

    #[test]
    fn more_than_three_series_are_listed_as_three_and_a_count() {
        let sets: Vec<_> = (0..5).map(|n| labels(&[("n", &n.to_string())])).collect();
        assert_eq!(
            describe_series(&sets),
            r#"{n="0"}, {n="1"}, {n="2"}, and 2 more"#
        );
    }

    #[test]
    fn a_long_label_set_is_cut_with_an_ellipsis() {
        let long = "x".repeat(200);
        let set = labels(&[("k", &long)]);
        let described = describe_series([&set]);
        assert_eq!(described.chars().count(), LABEL_SET_CHARS);
        assert!(described.ends_with('…'));
        assert!(described.starts_with(r#"{k="xxx"#));
    }

    #[test]
    fn a_many_series_error_names_the_count_the_series_and_the_fix() {
        let err = MetricError::ManySeries {
            server: "Prometheus at http://127.0.0.1:9090".into(),
            query: "up".into(),
            count: 2,
            labels: r#"up{job="a"}, up{job="b"}"#.into(),
        };
        let text = err.to_string();
        assert!(text.contains("returned 2 series"), "{text}");
        assert!(text.contains(r#"up{job="a"}, up{job="b"}"#), "{text}");
        assert!(text.contains("sum(...)"), "{text}");
    }
}
