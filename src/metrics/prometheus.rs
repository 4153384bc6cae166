//! The Prometheus metric source: instant and range queries against one Prometheus server's
//! HTTP API, with every failure turned into a [`MetricError`] that names the server and query.
//!
//! Requests go through prometheus-http-query's client (URL building, query parameters, its
//! response types). The answer is read here rather than by the crate's `get()`, because that
//! drops the body of a non-JSON error (a proxy's 502 page) and fails on result types it does not
//! model, and an operator needs both to be told what happened.
//!
//! Not for choosing a server: the address always comes from the caller (a rule's
//! `serverAddress` or the default in config.toml); this module has no default of its own.
//! Not for retrying: one call is one request, bounded by the timeout.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use prometheus_http_query::response::{Data, PromqlResult, RangeVector, Sample};
use serde::Deserialize;

use super::{DEFAULT_TIMEOUT, MetricError, MetricSource, Samples, describe_series, shorten};

/// How many characters of a server's error text a message keeps.
const BODY_CHARS: usize = 200;

/// The series of an instant vector: each one's labels and value.
pub type Vector = Vec<(HashMap<String, String>, f64)>;

/// A Prometheus server, queried over its HTTP API.
#[derive(Clone)]
pub struct PrometheusSource {
    client: prometheus_http_query::Client,
    server: String,
    timeout: Duration,
}

impl std::fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("server", &self.server)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PrometheusSource {
    /// A source for the server at `server_address` (http or https), with [`DEFAULT_TIMEOUT`].
    pub fn new(server_address: &str) -> Result<Self, MetricError> {
        Self::with_timeout(server_address, DEFAULT_TIMEOUT)
    }

    /// As [`PrometheusSource::new`], waiting at most `timeout` for each answer.
    pub fn with_timeout(server_address: &str, timeout: Duration) -> Result<Self, MetricError> {
        let base = parse_address(server_address)?;
        let server = format!("Prometheus at {}", display_address(&base));

        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Only ever the address given: no proxy from the environment in between.
            .no_proxy()
            .build()
            .map_err(|source| MetricError::ClientSetup {
                server: server.clone(),
                source,
            })?;

        let client = prometheus_http_query::Client::from(http, base.as_str()).map_err(|e| {
            MetricError::InvalidAddress {
                address: server_address.to_string(),
                reason: e.to_string(),
                source: None,
            }
        })?;

        Ok(PrometheusSource {
            client,
            server,
            timeout,
        })
    }

    /// The server as named in error messages: `Prometheus at URL`, any password masked.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The longest this source waits for one answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One value now: the query must give exactly one finite number.
    pub async fn query_instant(&self, query: &str) -> Result<f64, MetricError> {
        self.instant(query, one_value).await
    }

    /// Every series of an instant vector now, with its labels; none is not an error here, as
    /// a vector query may rightly match nothing. Values are as the server sent them, NaN and
    /// infinities included, for the caller to judge one series at a time.
    pub async fn query_vector(&self, query: &str) -> Result<Vector, MetricError> {
        self.instant(query, every_series).await
    }

    /// An instant query, its answer's data read by `read`.
    async fn instant<T>(
        &self,
        query: &str,
        read: fn(&Asked<'_>, Data) -> Result<T, MetricError>,
    ) -> Result<T, MetricError> {
        let asked = Asked::new(self, query);
        let request = self.client.query(query).timeout(self.timeout_millis());
        let result = match request.get_raw().await {
            Ok(response) => read_answer(&asked, response).await,
            Err(err) => Err(asked.send_failed(err)),
        };
        let value = result.and_then(|result| read(&asked, result.into_inner().0));
        log_failure(&asked, &value);
        value
    }

    /// The values of one series from `from` to `to`, one every `step`, oldest first.
    ///
    /// LIMITATION: `from` and `to` are sent in whole seconds (the client takes Unix seconds), so
    /// sub-second parts are dropped.
    pub async fn query_range(
        &self,
        query: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: Duration,
    ) -> Result<Samples, MetricError> {
        let asked = Asked::new(self, query);
        let request = self
            .client
            .query_range(query, from.timestamp(), to.timestamp(), step.as_secs_f64())
            .timeout(self.timeout_millis());
        let result = match request.get_raw().await {
            Ok(response) => read_answer(&asked, response).await,
            Err(err) => Err(asked.send_failed(err)),
        };
        let samples = result.and_then(|result| one_series(&asked, result.into_inner().0));
        log_failure(&asked, &samples);
        samples
    }

    /// The timeout as the server's own evaluation limit, so it gives up when we do.
    fn timeout_millis(&self) -> i64 {
        i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX)
    }
}

impl MetricSource for PrometheusSource {
    fn instant<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, MetricError>> {
        Box::pin(self.query_instant(query))
    }

    fn range<'a>(
        &'a self,
        query: &'a str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: Duration,
    ) -> BoxFuture<'a, Result<Samples, MetricError>> {
        Box::pin(self.query_range(query, from, to, step))
    }
}

/// Whether `address` can be a server's address (http or https, a host, no query string), as
/// [`PrometheusSource::new`] would judge it; for checking a setting before anything starts.
pub fn check_address(address: &str) -> Result<(), MetricError> {
    parse_address(address).map(drop)
}

/// Checks that `address` is a usable http(s) base URL and drops a trailing slash from its path,
/// so that the API paths are appended cleanly.
fn parse_address(address: &str) -> Result<url::Url, MetricError> {
    let invalid = |reason: &str, source: Option<url::ParseError>| MetricError::InvalidAddress {
        address: address.to_string(),
        reason: reason.to_string(),
        source,
    };
    if address.trim().is_empty() {
        return Err(invalid("the address is empty", None));
    }
    if address.trim() != address {
        return Err(invalid("it has spaces around it", None));
    }
    if !address.contains("://") {
        return Err(invalid("it does not start with http:// or https://", None));
    }
    let mut url = url::Url::parse(address).map_err(|e| invalid(&e.to_string(), Some(e)))?;
    if !matches!(url.scheme(), "http" | "https") {
        let reason = format!("its scheme is {:?}, not http or https", url.scheme());
        return Err(invalid(&reason, None));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it names no host", None));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "it has a query string or fragment; give only the server's base URL",
            None,
        ));
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

/// The base URL for messages and logs: any password masked, no lone trailing slash.
fn display_address(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Setting a password fails only for URLs that cannot have one; this one already does.
        let _ = shown.set_password(Some("***"));
    }
    let text = shown.to_string();
    match text.strip_suffix('/') {
        Some(trimmed) if shown.path() == "/" => trimmed.to_string(),
        _ => text,
    }
}

/// The server and query one request is about; it builds the errors that name them.
struct Asked<'a> {
    server: &'a str,
    query: &'a str,
    timeout: Duration,
}

impl<'a> Asked<'a> {
    fn new(source: &'a PrometheusSource, query: &'a str) -> Self {
        Asked {
            server: &source.server,
            query,
            timeout: source.timeout,
        }
    }

    /// An error for a request that got no HTTP answer.
    fn send_failed(&self, err: prometheus_http_query::Error) -> MetricError {
        let http = match &err {
            prometheus_http_query::Error::Client(client) => client.inner(),
            _ => None,
        };
        match http {
            Some(http) if http.is_timeout() => self.timed_out(),
            Some(http) => MetricError::Unreachable {
                server: self.server.to_string(),
                query: self.query.to_string(),
                cause: innermost_cause(http),
                source: Box::new(err),
            },
            None => self.bad_response(err.to_string(), Some(Box::new(err))),
        }
    }

    fn timed_out(&self) -> MetricError {
        MetricError::Timeout {
            server: self.server.to_string(),
            query: self.query.to_string(),
            timeout: self.timeout,
        }
    }

    fn bad_response(
        &self,
        cause: String,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> MetricError {
        MetricError::BadResponse {
            server: self.server.to_string(),
            query: self.query.to_string(),
            cause,
            source,
        }
    }

    fn status(&self, status: u16, body: &str) -> MetricError {
        let text = body.split_whitespace().collect::<Vec<_>>().join(" ");
        let body = if text.is_empty() {
            "(no error text)".to_string()
        } else {
            shorten(&text, BODY_CHARS)
        };
        MetricError::Status {
            server: self.server.to_string(),
            query: self.query.to_string(),
            status,
            body,
        }
    }

    fn empty(&self) -> MetricError {
        MetricError::EmptyResult {
            server: self.server.to_string(),
            query: self.query.to_string(),
        }
    }

    fn many(&self, label_sets: Vec<&HashMap<String, String>>) -> MetricError {
        MetricError::ManySeries {
            server: self.server.to_string(),
            query: self.query.to_string(),
            count: label_sets.len(),
            labels: describe_series(label_sets),
        }
    }

    fn unexpected(&self, expected: &'static str, actual: &str) -> MetricError {
        MetricError::UnexpectedResultType {
            server: self.server.to_string(),
            query: self.query.to_string(),
            expected,
            actual: actual.to_string(),
        }
    }

    /// `value` when it is a finite number; `at` says where it came from, for range samples.
    fn finite(&self, value: f64, at: &str) -> Result<f64, MetricError> {
        if value.is_nan() {
            return Err(MetricError::NotANumber {
                server: self.server.to_string(),
                query: self.query.to_string(),
                at: at.to_string(),
            });
        }
        if value.is_infinite() {
            return Err(MetricError::Infinite {
                server: self.server.to_string(),
                query: self.query.to_string(),
                value,
                at: at.to_string(),
            });
        }
        Ok(value)
    }
}

/// The message of the deepest error in `err`'s chain, e.g. "Connection refused (os error 111)".
fn innermost_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = err;
    // Error chains are short; the bound only guards against a chain that loops.
    for _ in 0..32 {
        match deepest.source() {
            Some(next) => deepest = next,
            None => break,
        }
    }
    deepest.to_string()
}

/// Reads the body of an HTTP answer and turns it into a query result or an error.
async fn read_answer(
    asked: &Asked<'_>,
    response: reqwest::Response,
) -> Result<PromqlResult, MetricError> {
    let status = response.status();
    let body = response.text().await.map_err(|err| {
        if err.is_timeout() {
            asked.timed_out()
        } else {
            asked.bad_response(
                format!("reading the answer failed: {}", innermost_cause(&err)),
                Some(Box::new(err)),
            )
        }
    })?;
    interpret_answer(asked, status.as_u16(), &body)
}

/// The shape every Prometheus API answer has, success or error.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    data: Option<serde_json::Value>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

/// A query result from an HTTP status and body, or the error they describe.
fn interpret_answer(
    asked: &Asked<'_>,
    status: u16,
    body: &str,
) -> Result<PromqlResult, MetricError> {
    let success = (200..300).contains(&status);
    let envelope = match serde_json::from_str::<Envelope>(body) {
        Ok(envelope) => envelope,
        Err(_) if !success => return Err(asked.status(status, body)),
        Err(err) => return Err(asked.bad_response(err.to_string(), Some(Box::new(err)))),
    };

    if envelope.status == "error" {
        return Err(api_error(asked, status, envelope));
    }
    if !success {
        return Err(asked.status(status, body));
    }
    let Some(data) = envelope.data else {
        return Err(asked.bad_response("the answer has no data".to_string(), None));
    };
    result_of(asked, data)
}

/// The error an API answer with `"status": "error"` stands for.
fn api_error(asked: &Asked<'_>, status: u16, envelope: Envelope) -> MetricError {
    let kind = envelope.error_type.unwrap_or_default();
    let message = envelope.error.unwrap_or_default();
    match kind.as_str() {
        "bad_data" | "execution" => MetricError::QueryRejected {
            server: asked.server.to_string(),
            query: asked.query.to_string(),
            kind,
            message,
        },
        "timeout" => asked.timed_out(),
        _ => asked.status(status, &format!("{kind}: {message}")),
    }
}

/// The typed result inside an answer's `data`, when its type is one the API documents for
/// queries (string results are reported as an unexpected type by the caller).
fn result_of(asked: &Asked<'_>, data: serde_json::Value) -> Result<PromqlResult, MetricError> {
    let result_type = data
        .get("resultType")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string();
    if !matches!(result_type.as_str(), "vector" | "scalar" | "matrix") {
        let actual = if result_type.is_empty() {
            "result with no type"
        } else {
            &result_type
        };
        return Err(asked.unexpected("an instant vector, a scalar or a range vector", actual));
    }
    serde_json::from_value(data)
        .map_err(|err| asked.bad_response(err.to_string(), Some(Box::new(err))))
}

/// The single finite value of an instant query's result.
fn one_value(asked: &Asked<'_>, data: Data) -> Result<f64, MetricError> {
    let sample = match data {
        Data::Scalar(sample) => sample,
        Data::Vector(series) => match series.as_slice() {
            [] => return Err(asked.empty()),
            [one] => *one.sample(),
            many => return Err(asked.many(many.iter().map(|s| s.metric()).collect())),
        },
        Data::Matrix(_) => {
            return Err(asked.unexpected("an instant vector or a scalar", "range vector (matrix)"));
        }
    };
    asked.finite(sample.value(), "")
}

/// Every series of an instant query's result; a scalar or a range vector is refused, as it
/// names no series.
fn every_series(asked: &Asked<'_>, data: Data) -> Result<Vector, MetricError> {
    match data {
        Data::Vector(series) => Ok(series
            .into_iter()
            .map(|one| {
                let (labels, sample) = one.into_inner();
                (labels, sample.value())
            })
            .collect()),
        Data::Scalar(_) => Err(asked.unexpected("an instant vector", "scalar")),
        Data::Matrix(_) => Err(asked.unexpected("an instant vector", "range vector (matrix)")),
    }
}

/// The samples of the single series of a range query's result, oldest first.
fn one_series(asked: &Asked<'_>, data: Data) -> Result<Samples, MetricError> {
    let series: RangeVector = match data {
        Data::Matrix(series) => match <[RangeVector; 1]>::try_from(series) {
            Ok([one]) => one,
            Err(series) if series.is_empty() => return Err(asked.empty()),
            Err(series) => return Err(asked.many(series.iter().map(|s| s.metric()).collect())),
        },
        Data::Vector(_) => return Err(asked.unexpected("a range vector", "instant vector")),
        Data::Scalar(_) => return Err(asked.unexpected("a range vector", "scalar")),
    };

    let mut samples = series
        .samples()
        .iter()
        .map(|sample| timed_value(asked, sample))
        .collect::<Result<Samples, MetricError>>()?;
    samples.sort_by_key(|(time, _)| *time);
    Ok(samples)
}

/// One range sample as a time and a finite value.
fn timed_value(asked: &Asked<'_>, sample: &Sample) -> Result<(DateTime<Utc>, f64), MetricError> {
    let millis = (sample.timestamp() * 1000.0).round();
    // The cast saturates; an out-of-range time is then refused by chrono below.
    let time = DateTime::from_timestamp_millis(millis as i64).ok_or_else(|| {
        asked.bad_response(
            format!("sample time {} is out of range", sample.timestamp()),
            None,
        )
    })?;
    let at = format!(" at {}", time.to_rfc3339());
    let value = asked.finite(sample.value(), &at)?;
    Ok((time, value))
}

/// Logs a failed reading at debug; the caller decides whether an operator sees it.
fn log_failure<T>(asked: &Asked<'_>, result: &Result<T, MetricError>) {
    if let Err(err) = result {
        tracing::debug!(server = asked.server, query = asked.query, error = %err, "metric query failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked() -> Asked<'static> {
        Asked {
            server: "Prometheus at http://127.0.0.1:9",
            query: "q",
            timeout: Duration::from_secs(5),
        }
    }

    fn instant(status: u16, body: &str) -> Result<f64, MetricError> {
        let asked = asked();
        interpret_answer(&asked, status, body).and_then(|r| one_value(&asked, r.into_inner().0))
    }

    fn range(status: u16, body: &str) -> Result<Samples, MetricError> {
        let asked = asked();
        interpret_answer(&asked, status, body).and_then(|r| one_series(&asked, r.into_inner().0))
    }

    fn vector(values: &[(&str, &str)]) -> String {
        let series: Vec<String> = values
            .iter()
            .map(|(job, value)| {
                format!(r#"{{"metric":{{"job":"{job}"}},"value":[1700000000.5,"{value}"]}}"#)
            })
            .collect();
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            series.join(",")
        )
    }

    fn every(status: u16, body: &str) -> Result<Vector, MetricError> {
        let asked = asked();
        interpret_answer(&asked, status, body).and_then(|r| every_series(&asked, r.into_inner().0))
    }

    #[test]
    fn a_vector_query_gives_every_series_with_its_labels_nan_included() {
        let mut series = every(200, &vector(&[("a", "1.5"), ("b", "NaN")])).unwrap();
        series.sort_by(|x, y| x.0["job"].cmp(&y.0["job"]));
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].0["job"], "a");
        assert_eq!(series[0].1, 1.5);
        assert_eq!(series[1].0["job"], "b");
        assert!(series[1].1.is_nan());
    }

    #[test]
    fn a_vector_query_matching_nothing_is_an_empty_vector() {
        assert_eq!(every(200, &vector(&[])).unwrap(), Vector::new());
    }

    #[test]
    fn a_vector_query_answered_with_a_scalar_is_an_unexpected_type() {
        let body = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#;
        let err = every(200, body).unwrap_err();
        assert!(
            matches!(&err, MetricError::UnexpectedResultType { actual, .. } if actual == "scalar"),
            "{err}"
        );
    }

    #[test]
    fn a_rejected_vector_query_keeps_the_servers_error_text() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        let err = every(400, body).unwrap_err();
        assert!(
            matches!(&err, MetricError::QueryRejected { kind, message, .. }
                if kind == "bad_data" && message == "parse error at char 4"),
            "{err}"
        );
    }

    #[test]
    fn a_single_series_gives_its_value() {
        assert_eq!(instant(200, &vector(&[("a", "42.5")])).ok(), Some(42.5));
    }

    #[test]
    fn a_scalar_gives_its_value() {
        let body = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#;
        assert_eq!(instant(200, body).ok(), Some(3.0));
    }

    #[test]
    fn negative_infinity_is_an_error() {
        let err = instant(200, &vector(&[("a", "-Inf")])).unwrap_err();
        assert!(matches!(err, MetricError::Infinite { value, .. } if value == f64::NEG_INFINITY));
    }

    #[test]
    fn a_string_result_is_an_unexpected_type() {
        let body = r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#;
        let err = instant(200, body).unwrap_err();
        assert!(
            matches!(&err, MetricError::UnexpectedResultType { actual, .. } if actual == "string"),
            "{err}"
        );
    }

    #[test]
    fn a_proxy_error_page_keeps_its_status_and_text() {
        let err = instant(502, "<html>\n  Bad   Gateway\n</html>").unwrap_err();
        assert!(
            matches!(&err, MetricError::Status { status: 502, body, .. } if body == "<html> Bad Gateway </html>"),
            "{err}"
        );
    }

    #[test]
    fn a_success_status_with_a_body_that_is_not_json_is_a_bad_response() {
        let err = instant(200, "hello").unwrap_err();
        assert!(matches!(err, MetricError::BadResponse { .. }), "{err}");
    }

    #[test]
    fn an_unavailable_server_is_a_status_error_with_its_message() {
        let body = r#"{"status":"error","errorType":"unavailable","error":"starting up"}"#;
        let err = instant(503, body).unwrap_err();
        assert!(
            matches!(&err, MetricError::Status { status: 503, body, .. } if body == "unavailable: starting up"),
            "{err}"
        );
    }

    #[test]
    fn a_server_side_timeout_is_a_timeout() {
        let body = r#"{"status":"error","errorType":"timeout","error":"query timed out"}"#;
        assert!(matches!(
            instant(503, body),
            Err(MetricError::Timeout { .. })
        ));
    }

    #[test]
    fn range_samples_come_back_oldest_first_with_millisecond_times() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{},"values":[[20.25,"2"],[10,"1"]]}]}}"#;
        let samples = range(200, body).unwrap();
        let times: Vec<i64> = samples.iter().map(|(t, _)| t.timestamp_millis()).collect();
        let values: Vec<f64> = samples.iter().map(|(_, v)| *v).collect();
        assert_eq!(times, vec![10_000, 20_250]);
        assert_eq!(values, vec![1.0, 2.0]);
    }

    #[test]
    fn a_nan_inside_a_range_names_its_time() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{},"values":[[10,"1"],[20,"NaN"]]}]}}"#;
        let err = range(200, body).unwrap_err();
        assert!(
            matches!(&err, MetricError::NotANumber { at, .. } if at == " at 1970-01-01T00:00:20+00:00"),
            "{err}"
        );
    }

    #[test]
    fn a_range_query_answered_with_a_vector_is_an_unexpected_type() {
        let err = range(200, &vector(&[("a", "1")])).unwrap_err();
        assert!(
            matches!(err, MetricError::UnexpectedResultType { .. }),
            "{err}"
        );
    }

    #[test]
    fn addresses_other_than_http_or_https_are_refused_with_the_reason() {
        for (address, reason) in [
            ("", "the address is empty"),
            (" http://a:9090", "spaces"),
            ("ftp://a:9090", r#"scheme is "ftp""#),
            ("127.0.0.1:9090", "does not start with http://"),
            ("localhost:9090", "does not start with http://"),
            ("http://[::1", "invalid IPv6 address"),
            ("http://a:9090/?x=1", "query string"),
        ] {
            let err = PrometheusSource::new(address).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, MetricError::InvalidAddress { .. }),
                "{address}: {text}"
            );
            assert!(text.contains(reason), "{address}: {text}");
        }
    }

    #[test]
    fn a_password_in_the_address_is_masked_in_the_server_name() {
        let source = PrometheusSource::new("https://ops:secret@127.0.0.1:9090/prom/").unwrap();
        assert_eq!(
            source.server(),
            "Prometheus at https://ops:***@127.0.0.1:9090/prom"
        );
    }

    #[test]
    fn a_bare_address_is_named_without_a_trailing_slash() {
        let source = PrometheusSource::new("http://127.0.0.1:9090").unwrap();
        assert_eq!(source.server(), "Prometheus at http://127.0.0.1:9090");
    }
}
