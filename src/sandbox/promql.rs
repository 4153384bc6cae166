//! The sandbox's metrics endpoints: a Prometheus-compatible query API over the simulated
//! traffic, and the `metrics.k8s.io` pod metrics API that metrics-server would serve.
//!
//! Every number is computed from the traffic model at the asked time, never stored: a series'
//! value at an instant is the profile's value at the simulated time that wall time maps to, and
//! a rate over a window is the exact integral of the simulated rate over that window. The query
//! language is a small, honest subset of PromQL (see [`router`]); anything outside it is a
//! `bad_data` error naming what is not supported and where it is in the query, never a guess.
//! Beside its own series it serves the kubelet's cAdvisor names for pod CPU and memory, so that
//! queries written for a real cluster's Prometheus give the same numbers here.
//!
//! Not for storing samples, scraping anything or serving the Kubernetes API itself: the sandbox
//! cluster's server merges this router into its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use regex::Regex;
use serde_json::{Value as JsonValue, json};

use super::traffic::{self, Clock, Counters, Profile};
use super::{ClusterView, WorkloadView};

/// Each pod's request counter, labelled `namespace`, `workload` and `pod`.
pub const REQUESTS_TOTAL: &str = "sandbox_http_requests_total";
/// Each workload's current total request rate, labelled `namespace` and `workload`.
pub const REQUESTS_PER_SECOND: &str = "sandbox_http_requests_per_second";
/// Each Ready pod's CPU use in cores, labelled `namespace`, `workload` and `pod`.
pub const POD_CPU: &str = "sandbox_pod_cpu_usage_cores";
/// Each Ready pod's memory use in bytes, labelled `namespace`, `workload` and `pod`.
pub const POD_MEMORY: &str = "sandbox_pod_memory_bytes";
/// Each Ready pod's CPU counter in seconds, as the kubelet's cAdvisor names it: one series per
/// container, labelled `namespace`, `pod` and `container`, and one for the whole pod with no
/// `container` label, as cAdvisor reports the pod's cgroup beside its containers'.
pub const CONTAINER_CPU_TOTAL: &str = "container_cpu_usage_seconds_total";
/// Each Ready pod's working-set memory in bytes, as cAdvisor names it, in series labelled as
/// [`CONTAINER_CPU_TOTAL`]'s.
pub const CONTAINER_MEMORY: &str = "container_memory_working_set_bytes";
/// Ready pods of each Deployment, labelled `namespace` and `deployment`, as kube-state-metrics.
pub const DEPLOYMENT_READY: &str = "kube_deployment_status_replicas_ready";
/// Ready pods of each StatefulSet, labelled `namespace` and `statefulset`.
pub const STATEFULSET_READY: &str = "kube_statefulset_status_replicas_ready";

/// Every series name the endpoint serves.
const METRICS: [&str; 8] = [
    REQUESTS_TOTAL,
    REQUESTS_PER_SECOND,
    POD_CPU,
    POD_MEMORY,
    CONTAINER_CPU_TOTAL,
    CONTAINER_MEMORY,
    DEPLOYMENT_READY,
    STATEFULSET_READY,
];

/// The series names that are counters, which `rate`, `irate` and `increase` take.
const COUNTERS: [&str; 2] = [REQUESTS_TOTAL, CONTAINER_CPU_TOTAL];

/// The interval a real Prometheus would scrape at; `irate` is the rate over its last one.
const SCRAPE_INTERVAL: f64 = 15.0;

/// The most points one series of a range query may have, as in Prometheus.
const MAX_POINTS: f64 = 11_000.0;

/// The most burst periods one range selector may span in one workload; it bounds the work of
/// one rate.
const MAX_RANGE_BURST_PERIODS: f64 = 100_000.0;

/// What the sandbox's PromQL supports, for error messages.
const SUPPORTED: &str = "the sandbox supports vector selectors with =, !=, =~ and !~, \
                         rate/irate/increase over a [range], sum/avg/max/min/count with by or \
                         without, numbers, and + - * / with a scalar";

/// The query API, the pod metrics API and their discovery documents, over `view`'s workloads
/// with simulated time from `clock`.
///
/// Routes: `/api/v1/query` and `/api/v1/query_range` (GET, or POST with a form body),
/// `/api/v1/status/buildinfo`, `/apis/metrics.k8s.io/v1beta1`,
/// `/apis/metrics.k8s.io/v1beta1/pods` and `/apis/metrics.k8s.io/v1beta1/namespaces/NS/pods`
/// (and `.../pods/NAME`).
pub fn router(view: Arc<dyn ClusterView>, clock: Clock) -> Router {
    let endpoint = Arc::new(Endpoint {
        view,
        clock,
        counters: Mutex::new(Counters::new()),
    });
    Router::new()
        .route("/api/v1/query", get(instant_query).post(instant_query))
        .route("/api/v1/query_range", get(range_query).post(range_query))
        .route("/api/v1/status/buildinfo", get(build_info))
        .route("/apis/metrics.k8s.io/v1beta1", get(metrics_discovery))
        .route("/apis/metrics.k8s.io/v1beta1/pods", get(all_pod_metrics))
        .route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods",
            get(namespace_pod_metrics),
        )
        .route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}",
            get(one_pod_metrics),
        )
        .with_state(endpoint)
}

/// What every handler shares: the cluster, the clock and the pods' request counters.
struct Endpoint {
    view: Arc<dyn ClusterView>,
    clock: Clock,
    counters: Mutex<Counters>,
}

type Shared = Arc<Endpoint>;

/// The workloads as the model sees them at one moment, each with its parsed profile.
struct Observed {
    /// Workloads whose annotation parsed, sorted by namespace, kind and name.
    workloads: Vec<(WorkloadView, Profile)>,
    /// Readiness of every workload, including those with a bad annotation.
    readiness: Vec<WorkloadView>,
    /// One line per workload whose traffic annotation does not parse.
    warnings: Vec<String>,
}

impl Endpoint {
    /// Reads the cluster, parses each workload's profile and brings the counters up to `now`.
    fn observe(&self, now: f64) -> Observed {
        let mut readiness = self.view.workloads();
        readiness.sort_by(|a, b| {
            (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name))
        });

        let mut workloads = Vec::with_capacity(readiness.len());
        let mut warnings = Vec::new();
        for workload in &readiness {
            match Profile::of(workload) {
                Ok(profile) => workloads.push((workload.clone(), profile)),
                Err(err) => warnings.push(format!(
                    "{}/{}/{}: {err} (its traffic series are left out)",
                    workload.namespace, workload.kind, workload.name
                )),
            }
        }

        let pairs: Vec<(&WorkloadView, &Profile)> = workloads.iter().map(|(w, p)| (w, p)).collect();
        self.lock_counters().advance(&self.clock, now, &pairs);
        Observed {
            workloads,
            readiness,
            warnings,
        }
    }

    fn lock_counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic while holding the lock leaves counters that are still whole numbers of
        // requests; carrying on with them is better than failing every later query.
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// ---------------------------------------------------------------------------------------------
// The query API's HTTP layer
// ---------------------------------------------------------------------------------------------

/// An error answered as Prometheus answers one: HTTP 400 and `bad_data`.
#[derive(Debug, Clone, PartialEq)]
struct BadData(String);

impl IntoResponse for BadData {
    fn into_response(self) -> Response {
        let body = json!({"status": "error", "errorType": "bad_data", "error": self.0});
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

async fn instant_query(
    State(endpoint): State<Shared>,
    RawQuery(url_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = traffic::unix_now();
    let answer = form_params(url_query.as_deref(), &headers, &body)
        .and_then(|params| answer_instant(&endpoint, &params, now));
    match answer {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn range_query(
    State(endpoint): State<Shared>,
    RawQuery(url_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = traffic::unix_now();
    let answer = form_params(url_query.as_deref(), &headers, &body)
        .and_then(|params| answer_range(&endpoint, &params, now));
    match answer {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn build_info() -> Json<JsonValue> {
    Json(json!({
        "status": "success",
        "data": {
            "version": "2.53.0",
            "revision": "pilothouse-sandbox",
            "branch": "sandbox",
            "buildUser": "pilothouse",
            "buildDate": "20240101-00:00:00",
            "goVersion": "none (the Pilothouse sandbox)"
        }
    }))
}

/// The parameters of a request: the URL's, then a form body's, which win as in Prometheus.
fn form_params(
    url_query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HashMap<String, String>, BadData> {
    let mut params: HashMap<String, String> = HashMap::new();
    if let Some(query) = url_query {
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            params
                .entry(key.into_owned())
                .or_insert_with(|| value.into_owned());
        }
    }
    if body.is_empty() {
        return Ok(params);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(BadData(format!(
            "the request body has content type {content_type:?}; send the parameters as \
             application/x-www-form-urlencoded"
        )));
    }
    let mut from_body: HashMap<String, String> = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(body) {
        from_body
            .entry(key.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params.extend(from_body);
    Ok(params)
}

/// The answer to an instant query, evaluated at `time` (default `now`).
fn answer_instant(
    endpoint: &Endpoint,
    params: &HashMap<String, String>,
    now: f64,
) -> Result<JsonValue, BadData> {
    let expr = parse_query(params)?;
    let time = match params.get("time") {
        Some(text) => parse_time("time", text)?,
        None => now,
    };

    let observed = endpoint.observe(now);
    let counters = endpoint.lock_counters();
    let model = Model {
        observed: &observed,
        counters: &counters,
        clock: endpoint.clock,
    };
    let data = match model.eval(&expr, time)? {
        Value::Scalar(value) => json!({"resultType": "scalar", "result": sample(time, value)}),
        Value::Vector(series) => {
            let result: Vec<JsonValue> = sorted(series)
                .into_iter()
                .map(|s| json!({"metric": s.labels, "value": sample(time, s.value)}))
                .collect();
            json!({"resultType": "vector", "result": result})
        }
    };
    Ok(success(data, &observed.warnings))
}

/// The answer to a range query: the expression at every step from `start` to `end`.
fn answer_range(
    endpoint: &Endpoint,
    params: &HashMap<String, String>,
    now: f64,
) -> Result<JsonValue, BadData> {
    let expr = parse_query(params)?;
    let start = parse_time("start", required(params, "start")?)?;
    let end = parse_time("end", required(params, "end")?)?;
    let step = parse_step(required(params, "step")?)?;
    if end < start {
        return Err(BadData(
            "invalid parameter \"end\": end timestamp must not be before start time".to_string(),
        ));
    }
    if (end - start) / step >= MAX_POINTS {
        return Err(BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the \
             query resolution (?step=XX)"
                .to_string(),
        ));
    }

    let observed = endpoint.observe(now);
    let counters = endpoint.lock_counters();
    let model = Model {
        observed: &observed,
        counters: &counters,
        clock: endpoint.clock,
    };
    let mut matrix: BTreeMap<Labels, Vec<JsonValue>> = BTreeMap::new();
    let steps = ((end - start) / step).floor() as u64;
    for index in 0..=steps {
        let time = start + index as f64 * step;
        match model.eval(&expr, time)? {
            Value::Scalar(value) => matrix
                .entry(Labels::new())
                .or_default()
                .push(sample(time, value)),
            Value::Vector(series) => {
                for s in series {
                    matrix
                        .entry(s.labels)
                        .or_default()
                        .push(sample(time, s.value));
                }
            }
        }
    }
    let result: Vec<JsonValue> = matrix
        .into_iter()
        .map(|(labels, values)| json!({"metric": labels, "values": values}))
        .collect();
    Ok(success(
        json!({"resultType": "matrix", "result": result}),
        &observed.warnings,
    ))
}

fn success(data: JsonValue, warnings: &[String]) -> JsonValue {
    let mut answer = json!({"status": "success", "data": data});
    if !warnings.is_empty() {
        answer["warnings"] = json!(warnings);
    }
    answer
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, BadData> {
    params.get(name).map(String::as_str).ok_or_else(|| {
        BadData(format!(
            "invalid parameter {name:?}: the parameter is missing"
        ))
    })
}

fn parse_query(params: &HashMap<String, String>) -> Result<Expr, BadData> {
    let text = required(params, "query")?;
    parse(text).map_err(|err| BadData(format!("invalid parameter \"query\": {err}")))
}

/// A time as Prometheus takes one: Unix seconds (fractions allowed) or RFC 3339.
fn parse_time(name: &str, text: &str) -> Result<f64, BadData> {
    if let Ok(seconds) = text.parse::<f64>()
        && seconds.is_finite()
    {
        return Ok(seconds);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp() as f64 + f64::from(time.timestamp_subsec_nanos()) / 1e9)
        .map_err(|_| {
            BadData(format!(
                "invalid parameter {name:?}: cannot parse {text:?} to a valid timestamp"
            ))
        })
}

/// A range query's step: seconds (fractions allowed) or a duration such as `15s`.
fn parse_step(text: &str) -> Result<f64, BadData> {
    let step = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() => seconds,
        _ => parse_duration(text).ok_or_else(|| {
            BadData(format!(
                "invalid parameter \"step\": cannot parse {text:?} to a valid duration"
            ))
        })?,
    };
    if step <= 0.0 {
        return Err(BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive \
             integer"
                .to_string(),
        ));
    }
    Ok(step)
}

/// `[time, "value"]` as the query API writes a sample, times to the millisecond.
fn sample(time: f64, value: f64) -> JsonValue {
    let millis = (time * 1000.0).round() / 1000.0;
    json!([millis, format_value(value)])
}

/// A value as Prometheus prints it: the shortest decimal, `+Inf`, `-Inf` or `NaN`.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        value.to_string()
    }
}

fn sorted(mut series: Vec<Series>) -> Vec<Series> {
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    series
}

// ---------------------------------------------------------------------------------------------
// The query language: lexing and parsing
// ---------------------------------------------------------------------------------------------

/// A query that does not parse or uses something the sandbox does not support.
#[derive(Debug, Clone, PartialEq)]
struct QueryError(String);

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<QueryError> for BadData {
    fn from(err: QueryError) -> BadData {
        BadData(err.0)
    }
}

fn parse_error(offset: usize, what: &str) -> QueryError {
    QueryError(format!("parse error at offset {offset}: {what}"))
}

fn unsupported(offset: usize, what: &str) -> QueryError {
    QueryError(format!(
        "{what} at offset {offset} is not supported by the sandbox's PromQL ({SUPPORTED})"
    ))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Number(f64),
    Duration(f64),
    Str(String),
    LeftBrace,
    RightBrace,
    LeftParen,
    RightParen,
    LeftBracket,
    RightBracket,
    Comma,
    Eq,
    NotEq,
    Matches,
    NotMatches,
    Plus,
    Minus,
    Star,
    Slash,
    /// An operator PromQL has but the sandbox does not (`>`, `%`, `@`, `:` ...).
    Other(String),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(name) => format!("`{name}`"),
            Token::Number(n) => format!("number {n}"),
            Token::Duration(_) => "a duration".to_string(),
            Token::Str(text) => format!("string {text:?}"),
            Token::LeftBrace => "`{`".to_string(),
            Token::RightBrace => "`}`".to_string(),
            Token::LeftParen => "`(`".to_string(),
            Token::RightParen => "`)`".to_string(),
            Token::LeftBracket => "`[`".to_string(),
            Token::RightBracket => "`]`".to_string(),
            Token::Comma => "`,`".to_string(),
            Token::Eq => "`=`".to_string(),
            Token::NotEq => "`!=`".to_string(),
            Token::Matches => "`=~`".to_string(),
            Token::NotMatches => "`!~`".to_string(),
            Token::Plus => "`+`".to_string(),
            Token::Minus => "`-`".to_string(),
            Token::Star => "`*`".to_string(),
            Token::Slash => "`/`".to_string(),
            Token::Other(op) => format!("`{op}`"),
            Token::End => "the end of the query".to_string(),
        }
    }
}

/// The query's tokens, each with its offset in characters.
fn lex(text: &str) -> Result<Vec<(Token, usize)>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        let start = at;
        if c.is_whitespace() {
            at += 1;
            continue;
        }
        if c == '#' {
            while at < chars.len() && chars[at] != '\n' {
                at += 1;
            }
            continue;
        }
        let next = chars.get(at + 1).copied();
        let (token, width) = match (c, next) {
            ('=', Some('~')) => (Token::Matches, 2),
            ('!', Some('~')) => (Token::NotMatches, 2),
            ('!', Some('=')) => (Token::NotEq, 2),
            ('=', Some('=')) => (Token::Other("==".to_string()), 2),
            ('>' | '<', Some('=')) => (Token::Other(format!("{c}=")), 2),
            ('=', _) => (Token::Eq, 1),
            ('{', _) => (Token::LeftBrace, 1),
            ('}', _) => (Token::RightBrace, 1),
            ('(', _) => (Token::LeftParen, 1),
            (')', _) => (Token::RightParen, 1),
            ('[', _) => (Token::LeftBracket, 1),
            (']', _) => (Token::RightBracket, 1),
            (',', _) => (Token::Comma, 1),
            ('+', _) => (Token::Plus, 1),
            ('-', _) => (Token::Minus, 1),
            ('*', _) => (Token::Star, 1),
            ('/', _) => (Token::Slash, 1),
            ('>' | '<' | '%' | '^' | '@' | ':', _) => (Token::Other(c.to_string()), 1),
            ('"' | '\'' | '`', _) => {
                let (text, width) = lex_string(&chars, at)?;
                (Token::Str(text), width)
            }
            (c, _)
                if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) =>
            {
                lex_number(&chars, at)?
            }
            (c, _) if c.is_ascii_alphabetic() || c == '_' => {
                let mut end = at;
                while end < chars.len()
                    && (chars[end].is_ascii_alphanumeric() || matches!(chars[end], '_' | ':'))
                {
                    end += 1;
                }
                let word: String = chars[at..end].iter().collect();
                let token = match word.to_ascii_lowercase().as_str() {
                    "inf" => Token::Number(f64::INFINITY),
                    "nan" => Token::Number(f64::NAN),
                    _ => Token::Ident(word),
                };
                (token, end - at)
            }
            (c, _) => return Err(parse_error(start, &format!("unexpected character {c:?}"))),
        };
        tokens.push((token, start));
        at += width;
    }
    tokens.push((Token::End, chars.len()));
    Ok(tokens)
}

/// A quoted string starting at `at`, with Go's escapes for quotes, backslash and whitespace;
/// a backquoted string is raw.
fn lex_string(chars: &[char], at: usize) -> Result<(String, usize), QueryError> {
    let quote = chars[at];
    let mut text = String::new();
    let mut i = at + 1;
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            return Ok((text, i + 1 - at));
        }
        if c == '\\' && quote != '`' {
            let escaped = match chars.get(i + 1) {
                Some('\\') => '\\',
                Some('"') => '"',
                Some('\'') => '\'',
                Some('n') => '\n',
                Some('t') => '\t',
                Some('r') => '\r',
                Some(other) => {
                    return Err(parse_error(
                        i,
                        &format!("unknown escape sequence \\{other}"),
                    ));
                }
                None => break,
            };
            text.push(escaped);
            i += 2;
            continue;
        }
        if c == '\n' && quote != '`' {
            break;
        }
        text.push(c);
        i += 1;
    }
    Err(parse_error(at, "unterminated quoted string"))
}

/// A number or, when a unit follows its digits, a duration such as `5m` or `1h30m`.
fn lex_number(chars: &[char], at: usize) -> Result<(Token, usize), QueryError> {
    let mut end = at;
    while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '.') {
        // An exponent's sign belongs to the number.
        end += 1;
        if end < chars.len()
            && matches!(chars[end], '+' | '-')
            && matches!(chars[end - 1], 'e' | 'E')
            && !chars[at..end]
                .iter()
                .any(|c| c.is_ascii_alphabetic() && !matches!(c, 'e' | 'E'))
        {
            end += 1;
        }
    }
    let word: String = chars[at..end].iter().collect();
    if let Ok(number) = word.parse::<f64>() {
        return Ok((Token::Number(number), end - at));
    }
    if let Some(hex) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X"))
        && let Ok(number) = u64::from_str_radix(hex, 16)
    {
        return Ok((Token::Number(number as f64), end - at));
    }
    match parse_duration(&word) {
        Some(seconds) => Ok((Token::Duration(seconds), end - at)),
        None => Err(parse_error(at, &format!("bad number or duration {word:?}"))),
    }
}

/// A PromQL duration such as `90s`, `5m`, `1h30m` or `500ms`, in seconds.
fn parse_duration(text: &str) -> Option<f64> {
    const UNITS: [(&str, f64); 7] = [
        ("y", 365.0 * 86_400.0),
        ("w", 7.0 * 86_400.0),
        ("d", 86_400.0),
        ("h", 3600.0),
        ("m", 60.0),
        ("s", 1.0),
        ("ms", 0.001),
    ];
    let mut rest = text;
    let mut total = 0.0;
    let mut last_unit = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        let after = &rest[digits..];
        let unit_len = if after.starts_with("ms") { 2 } else { 1 };
        let unit = after.get(..unit_len)?;
        let index = UNITS.iter().position(|(name, _)| *name == unit)?;
        if last_unit != usize::MAX && index <= last_unit {
            return None;
        }
        last_unit = index;
        total += number * UNITS[index].1;
        rest = &after[unit_len..];
    }
    (!text.is_empty()).then_some(total)
}

/// A parsed query.
#[derive(Debug, Clone)]
enum Expr {
    Number(f64),
    Selector(Selector),
    /// `selector[range]`: only valid as the argument of a range function.
    Range {
        selector: Selector,
        /// Wall seconds.
        range: f64,
        offset: usize,
    },
    Call {
        function: RangeFunction,
        selector: Selector,
        /// Wall seconds.
        range: f64,
        /// Where the range is written, for errors about it.
        range_offset: usize,
    },
    Aggregate {
        op: Aggregation,
        grouping: Grouping,
        expr: Box<Expr>,
    },
    Binary {
        op: Arithmetic,
        left: Box<Expr>,
        right: Box<Expr>,
        offset: usize,
    },
    Negate(Box<Expr>),
}

#[derive(Debug, Clone)]
struct Selector {
    matchers: Vec<Matcher>,
    offset: usize,
}

#[derive(Debug, Clone)]
struct Matcher {
    label: String,
    op: MatchOp,
    value: String,
    /// Compiled, anchored at both ends, for `=~` and `!~`.
    regex: Option<Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MatchOp {
    Equal,
    NotEqual,
    Matches,
    NotMatches,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RangeFunction {
    Rate,
    Irate,
    Increase,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Aggregation {
    Sum,
    Avg,
    Max,
    Min,
    Count,
}

#[derive(Debug, Clone, PartialEq)]
enum Grouping {
    All,
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Arithmetic {
    Add,
    Subtract,
    Multiply,
    Divide,
}

/// Aggregations PromQL has that the sandbox does not.
const OTHER_AGGREGATIONS: [&str; 8] = [
    "topk",
    "bottomk",
    "quantile",
    "stddev",
    "stdvar",
    "count_values",
    "group",
    "limitk",
];

/// Words that modify an expression in PromQL and are not supported here.
const OTHER_KEYWORDS: [&str; 10] = [
    "offset",
    "bool",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "atan2",
];

/// Parses `text` into an expression, or says what does not parse or is not supported, where.
fn parse(text: &str) -> Result<Expr, QueryError> {
    let tokens = lex(text)?;
    let mut parser = Parser { tokens, at: 0 };
    if parser.peek() == &Token::End {
        return Err(parse_error(0, "no expression found in the query"));
    }
    let expr = parser.expression()?;
    let (token, offset) = parser.next();
    match token {
        Token::End => {}
        Token::Ident(word) if OTHER_KEYWORDS.contains(&word.as_str()) => {
            return Err(unsupported(offset, &format!("`{word}`")));
        }
        Token::Other(op) => return Err(unsupported(offset, &format!("the operator `{op}`"))),
        other => {
            return Err(parse_error(
                offset,
                &format!("unexpected {}", other.describe()),
            ));
        }
    }
    no_bare_range(&expr)?;
    Ok(expr)
}

/// Refuses a range selector anywhere but as a range function's argument.
fn no_bare_range(expr: &Expr) -> Result<(), QueryError> {
    match expr {
        Expr::Range { offset, .. } => Err(unsupported(
            *offset,
            "a range vector outside rate(), irate() or increase()",
        )),
        Expr::Aggregate { expr, .. } | Expr::Negate(expr) => no_bare_range(expr),
        Expr::Binary { left, right, .. } => {
            no_bare_range(left)?;
            no_bare_range(right)
        }
        Expr::Number(_) | Expr::Selector(_) | Expr::Call { .. } => Ok(()),
    }
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with `End`, and `next` never moves past it.
        &self.tokens[self.at.min(self.tokens.len() - 1)].0
    }

    fn peek_offset(&self) -> usize {
        self.tokens[self.at.min(self.tokens.len() - 1)].1
    }

    fn next(&mut self) -> (Token, usize) {
        let index = self.at.min(self.tokens.len() - 1);
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        self.tokens[index].clone()
    }

    fn expect(&mut self, wanted: Token, context: &str) -> Result<usize, QueryError> {
        let (token, offset) = self.next();
        if token == wanted {
            return Ok(offset);
        }
        Err(parse_error(
            offset,
            &format!(
                "expected {} {context}, found {}",
                wanted.describe(),
                token.describe()
            ),
        ))
    }

    /// `term (('+' | '-') term)*`
    fn expression(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.term()?;
        loop {
            let op = match self.peek() {
                Token::Plus => Arithmetic::Add,
                Token::Minus => Arithmetic::Subtract,
                _ => return Ok(left),
            };
            let (_, offset) = self.next();
            let right = self.term()?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
                offset,
            };
        }
    }

    /// `unary (('*' | '/') unary)*`
    fn term(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Token::Star => Arithmetic::Multiply,
                Token::Slash => Arithmetic::Divide,
                Token::Other(op) if matches!(op.as_str(), "%" | "^") => {
                    let op = op.clone();
                    return Err(unsupported(
                        self.peek_offset(),
                        &format!("the operator `{op}`"),
                    ));
                }
                _ => return Ok(left),
            };
            let (_, offset) = self.next();
            let right = self.unary()?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
                offset,
            };
        }
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        match self.peek() {
            Token::Minus => {
                self.next();
                Ok(Expr::Negate(Box::new(self.unary()?)))
            }
            Token::Plus => {
                self.next();
                self.unary()
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let (token, offset) = self.next();
        let expr = match token {
            Token::Number(value) => Expr::Number(value),
            Token::LeftParen => {
                let inner = self.expression()?;
                self.expect(Token::RightParen, "to close `(`")?;
                inner
            }
            Token::LeftBrace => Expr::Selector(self.selector(None, offset)?),
            Token::Ident(word) => self.word(word, offset)?,
            Token::Other(op) => {
                return Err(unsupported(offset, &format!("the operator `{op}`")));
            }
            other => {
                return Err(parse_error(
                    offset,
                    &format!(
                        "unexpected {} where an expression should be",
                        other.describe()
                    ),
                ));
            }
        };
        self.range_suffix(expr)
    }

    /// An aggregation, a function call or a selector starting with the word `word`.
    fn word(&mut self, word: String, offset: usize) -> Result<Expr, QueryError> {
        let aggregation = match word.as_str() {
            "sum" => Some(Aggregation::Sum),
            "avg" => Some(Aggregation::Avg),
            "max" => Some(Aggregation::Max),
            "min" => Some(Aggregation::Min),
            "count" => Some(Aggregation::Count),
            _ => None,
        };
        let followed_by_call = matches!(self.peek(), Token::LeftParen);
        let followed_by_grouping =
            matches!(self.peek(), Token::Ident(w) if w == "by" || w == "without");
        if let Some(op) = aggregation
            && (followed_by_call || followed_by_grouping)
        {
            return self.aggregation(op);
        }
        if OTHER_AGGREGATIONS.contains(&word.as_str()) && (followed_by_call || followed_by_grouping)
        {
            return Err(unsupported(offset, &format!("the aggregation {word}()")));
        }
        if followed_by_call {
            return self.call(&word, offset);
        }
        if OTHER_KEYWORDS.contains(&word.as_str()) {
            return Err(unsupported(offset, &format!("`{word}`")));
        }
        if matches!(self.peek(), Token::LeftBrace) {
            let (_, brace) = self.next();
            return Ok(Expr::Selector(self.selector(Some(word), brace)?));
        }
        let matchers = vec![name_matcher(word)];
        Ok(Expr::Selector(Selector { matchers, offset }))
    }

    /// `rate(selector[range])` and its kin; any other function is refused.
    fn call(&mut self, name: &str, offset: usize) -> Result<Expr, QueryError> {
        let function = match name {
            "rate" => RangeFunction::Rate,
            "irate" => RangeFunction::Irate,
            "increase" => RangeFunction::Increase,
            _ => return Err(unsupported(offset, &format!("the function {name}()"))),
        };
        self.expect(Token::LeftParen, &format!("after {name}"))?;
        let argument_offset = self.peek_offset();
        let argument = self.expression()?;
        self.expect(Token::RightParen, &format!("to close {name}("))?;
        match argument {
            Expr::Range {
                selector,
                range,
                offset,
            } => Ok(Expr::Call {
                function,
                selector,
                range,
                range_offset: offset,
            }),
            _ => Err(unsupported(
                argument_offset,
                &format!("an argument to {name}() other than a selector with a [range]"),
            )),
        }
    }

    /// `op [by|without (labels)] (expr) [by|without (labels)]`
    fn aggregation(&mut self, op: Aggregation) -> Result<Expr, QueryError> {
        let mut grouping = self.grouping()?;
        self.expect(Token::LeftParen, "to start the aggregation's argument")?;
        let expr = self.expression()?;
        if matches!(self.peek(), Token::Comma) {
            return Err(unsupported(
                self.peek_offset(),
                "a parameter to an aggregation",
            ));
        }
        self.expect(Token::RightParen, "to close the aggregation")?;
        if grouping == Grouping::All {
            grouping = self.grouping()?;
        }
        Ok(Expr::Aggregate {
            op,
            grouping,
            expr: Box::new(expr),
        })
    }

    fn grouping(&mut self) -> Result<Grouping, QueryError> {
        let by = match self.peek() {
            Token::Ident(word) if word == "by" => true,
            Token::Ident(word) if word == "without" => false,
            _ => return Ok(Grouping::All),
        };
        self.next();
        self.expect(Token::LeftParen, "to start the label list")?;
        let mut labels = Vec::new();
        loop {
            match self.next() {
                (Token::RightParen, _) => break,
                (Token::Ident(label), _) => {
                    labels.push(label);
                    match self.next() {
                        (Token::Comma, _) => {}
                        (Token::RightParen, _) => break,
                        (other, offset) => {
                            return Err(parse_error(
                                offset,
                                &format!(
                                    "expected `,` or `)` in the label list, found {}",
                                    other.describe()
                                ),
                            ));
                        }
                    }
                }
                (other, offset) => {
                    return Err(parse_error(
                        offset,
                        &format!("expected a label name, found {}", other.describe()),
                    ));
                }
            }
        }
        Ok(if by {
            Grouping::By(labels)
        } else {
            Grouping::Without(labels)
        })
    }

    /// The matchers after `{` (already read at `brace`), for a selector named `name` if any.
    fn selector(&mut self, name: Option<String>, brace: usize) -> Result<Selector, QueryError> {
        let offset = brace;
        let mut matchers: Vec<Matcher> = name.into_iter().map(name_matcher).collect();
        loop {
            let (token, at) = self.next();
            let label = match token {
                Token::RightBrace => break,
                Token::Ident(label) => label,
                other => {
                    return Err(parse_error(
                        at,
                        &format!("expected a label name, found {}", other.describe()),
                    ));
                }
            };
            let (token, op_at) = self.next();
            let op = match token {
                Token::Eq => MatchOp::Equal,
                Token::NotEq => MatchOp::NotEqual,
                Token::Matches => MatchOp::Matches,
                Token::NotMatches => MatchOp::NotMatches,
                other => {
                    return Err(parse_error(
                        op_at,
                        &format!(
                            "expected =, !=, =~ or !~ after {label}, found {}",
                            other.describe()
                        ),
                    ));
                }
            };
            let (token, value_at) = self.next();
            let Token::Str(value) = token else {
                return Err(parse_error(
                    value_at,
                    &format!(
                        "expected a quoted string after {label}, found {}",
                        token.describe()
                    ),
                ));
            };
            let regex = match op {
                MatchOp::Matches | MatchOp::NotMatches => {
                    Some(Regex::new(&format!("^(?:{value})$")).map_err(|err| {
                        parse_error(
                            value_at,
                            &format!("bad regular expression {value:?}: {err}"),
                        )
                    })?)
                }
                MatchOp::Equal | MatchOp::NotEqual => None,
            };
            matchers.push(Matcher {
                label,
                op,
                value,
                regex,
            });
            match self.next() {
                (Token::Comma, _) => {}
                (Token::RightBrace, _) => break,
                (other, at) => {
                    return Err(parse_error(
                        at,
                        &format!(
                            "expected `,` or `}}` after a matcher, found {}",
                            other.describe()
                        ),
                    ));
                }
            }
        }
        if !matchers.iter().any(|m| !m.matches("")) {
            return Err(parse_error(
                offset,
                "a vector selector must contain at least one matcher that does not match \
                 the empty string",
            ));
        }
        Ok(Selector { matchers, offset })
    }

    /// `[range]` after a selector; a subquery, `offset` or `@` after it is refused.
    fn range_suffix(&mut self, expr: Expr) -> Result<Expr, QueryError> {
        let expr = match (expr, self.peek()) {
            (Expr::Selector(selector), Token::LeftBracket) => {
                let (_, offset) = self.next();
                let (token, at) = self.next();
                let range = match token {
                    Token::Duration(seconds) if seconds > 0.0 => seconds,
                    Token::Duration(_) => return Err(parse_error(at, "a range must be above 0s")),
                    other => {
                        return Err(parse_error(
                            at,
                            &format!("expected a duration such as 1m, found {}", other.describe()),
                        ));
                    }
                };
                if let Token::Other(colon) = self.peek()
                    && colon == ":"
                {
                    return Err(unsupported(offset, "a subquery"));
                }
                self.expect(Token::RightBracket, "to close the range")?;
                Expr::Range {
                    selector,
                    range,
                    offset,
                }
            }
            (_, Token::LeftBracket) => {
                return Err(unsupported(self.peek_offset(), "a subquery"));
            }
            (expr, _) => expr,
        };
        match self.peek() {
            Token::Ident(word) if word == "offset" => {
                Err(unsupported(self.peek_offset(), "`offset`"))
            }
            Token::Other(at) if at == "@" => {
                Err(unsupported(self.peek_offset(), "the `@` modifier"))
            }
            _ => Ok(expr),
        }
    }
}

fn name_matcher(name: String) -> Matcher {
    Matcher {
        label: "__name__".to_string(),
        op: MatchOp::Equal,
        value: name,
        regex: None,
    }
}

impl Matcher {
    fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Matches, Some(regex)) => regex.is_match(value),
            (MatchOp::NotMatches, Some(regex)) => !regex.is_match(value),
            // The parser compiles a regex for every =~ and !~ matcher.
            (MatchOp::Matches | MatchOp::NotMatches, None) => false,
        }
    }
}

impl Selector {
    fn matches(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(labels.get(&m.label).map(String::as_str).unwrap_or("")))
    }

    /// Whether the selector can match series named `name` at all.
    fn may_match_name(&self, name: &str) -> bool {
        self.matchers
            .iter()
            .filter(|m| m.label == "__name__")
            .all(|m| m.matches(name))
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation over the traffic model
// ---------------------------------------------------------------------------------------------

type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
struct Series {
    labels: Labels,
    value: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Scalar(f64),
    Vector(Vec<Series>),
}

/// The cluster and counters one request evaluates against.
struct Model<'a> {
    observed: &'a Observed,
    counters: &'a Counters,
    clock: Clock,
}

impl Model<'_> {
    /// The value of `expr` at wall time `time` (Unix seconds).
    fn eval(&self, expr: &Expr, time: f64) -> Result<Value, QueryError> {
        match expr {
            Expr::Number(value) => Ok(Value::Scalar(*value)),
            Expr::Selector(selector) => Ok(Value::Vector(self.select(selector, time))),
            Expr::Range { offset, .. } => Err(unsupported(
                *offset,
                "a range vector outside rate(), irate() or increase()",
            )),
            Expr::Call {
                function,
                selector,
                range,
                range_offset,
            } => self.range_function(*function, selector, *range, *range_offset, time),
            Expr::Aggregate { op, grouping, expr } => match self.eval(expr, time)? {
                Value::Vector(series) => Ok(Value::Vector(aggregate(*op, grouping, series))),
                Value::Scalar(_) => Err(QueryError(
                    "an aggregation expects an instant vector, not a scalar".to_string(),
                )),
            },
            Expr::Negate(inner) => match self.eval(inner, time)? {
                Value::Scalar(value) => Ok(Value::Scalar(-value)),
                Value::Vector(series) => Ok(Value::Vector(
                    series
                        .into_iter()
                        .map(|s| Series {
                            labels: without_name(s.labels),
                            value: -s.value,
                        })
                        .collect(),
                )),
            },
            Expr::Binary {
                op,
                left,
                right,
                offset,
            } => {
                let left = self.eval(left, time)?;
                let right = self.eval(right, time)?;
                binary(*op, left, right, *offset)
            }
        }
    }

    /// Every series a selector matches at `time`, with its metric name.
    fn select(&self, selector: &Selector, time: f64) -> Vec<Series> {
        METRICS
            .iter()
            .filter(|name| selector.may_match_name(name))
            .flat_map(|name| self.series(name, time))
            .filter(|series| selector.matches(&series.labels))
            .collect()
    }

    /// Every series named `name` at wall time `time`.
    fn series(&self, name: &str, time: f64) -> Vec<Series> {
        let sim = self.clock.sim_at(time);
        let mut out = Vec::new();
        if name == DEPLOYMENT_READY || name == STATEFULSET_READY {
            // LIMITATION: readiness is the cluster's now, whatever time is asked for.
            for workload in &self.observed.readiness {
                let kind_label = match workload.kind.as_str() {
                    "Deployment" if name == DEPLOYMENT_READY => "deployment",
                    "StatefulSet" if name == STATEFULSET_READY => "statefulset",
                    _ => continue,
                };
                let labels = labels(&[
                    ("__name__", name),
                    ("namespace", &workload.namespace),
                    (kind_label, &workload.name),
                ]);
                out.push(Series {
                    labels,
                    value: workload.ready_pods.len() as f64,
                });
            }
            return out;
        }
        for (workload, profile) in &self.observed.workloads {
            if name == REQUESTS_PER_SECOND {
                let labels = labels(&[
                    ("__name__", name),
                    ("namespace", &workload.namespace),
                    ("workload", &workload.name),
                ]);
                out.push(Series {
                    labels,
                    value: profile.rps(sim),
                });
                continue;
            }
            let Some(load) = profile.pod_load(sim, workload.ready_pods.len()) else {
                continue;
            };
            for pod in &workload.ready_pods {
                let value = match name {
                    POD_CPU => Some(load.cpu_millicores / 1000.0),
                    POD_MEMORY | CONTAINER_MEMORY => Some(load.memory_bytes),
                    REQUESTS_TOTAL => self.counter_at(workload, profile, pod, time),
                    CONTAINER_CPU_TOTAL => self.cpu_seconds_at(workload, profile, pod, time),
                    _ => None,
                };
                let Some(value) = value else {
                    continue;
                };
                if name == CONTAINER_CPU_TOTAL || name == CONTAINER_MEMORY {
                    out.extend(
                        cadvisor_labels(name, workload, pod)
                            .into_iter()
                            .map(|labels| Series { labels, value }),
                    );
                } else {
                    out.push(Series {
                        labels: pod_labels(name, workload, pod),
                        value,
                    });
                }
            }
        }
        out
    }

    /// A pod's request counter at wall time `time`; none before the pod was first seen.
    fn counter_at(
        &self,
        workload: &WorkloadView,
        profile: &Profile,
        pod: &str,
        time: f64,
    ) -> Option<f64> {
        let counter = self.counters.get(&workload.namespace, pod)?;
        if time < counter.since_unix {
            return None;
        }
        let share = workload.ready_pods.len() as f64;
        let since_update = traffic::wall_requests(profile, &self.clock, counter.at_unix, time);
        Some(counter.total + since_update / share)
    }

    /// A pod's CPU counter at wall time `time`, in core-seconds: the integral of its CPU use
    /// since it was first seen, which is the idle use over that time plus the cost of the
    /// requests its request counter holds; none before the pod was first seen.
    fn cpu_seconds_at(
        &self,
        workload: &WorkloadView,
        profile: &Profile,
        pod: &str,
        time: f64,
    ) -> Option<f64> {
        let since = self.counters.get(&workload.namespace, pod)?.since_unix;
        let requests = self.counter_at(workload, profile, pod, time)?;
        let millicore_seconds =
            traffic::IDLE_MILLICORES * (time - since) + profile.cost_millicores * requests;
        Some(millicore_seconds / 1000.0)
    }

    /// Refuses a range whose simulated span holds too many burst periods to integrate.
    fn check_range_work(
        &self,
        range: f64,
        range_offset: usize,
        time: f64,
    ) -> Result<(), QueryError> {
        let (from, to) = (self.clock.sim_at(time - range), self.clock.sim_at(time));
        for (workload, profile) in &self.observed.workloads {
            let periods = profile.burst_periods(from, to);
            if periods > MAX_RANGE_BURST_PERIODS {
                return Err(unsupported(
                    range_offset,
                    &format!(
                        "a range of {range}s ({} s of simulated time at speed {}, {periods} burst \
                         periods of {}/{}; at most {MAX_RANGE_BURST_PERIODS})",
                        to - from,
                        self.clock.speed(),
                        workload.namespace,
                        workload.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `rate`, `irate` or `increase` of the request and CPU counters over `range` wall seconds
    /// before `time`, from the exact integral of the simulated rate.
    fn range_function(
        &self,
        function: RangeFunction,
        selector: &Selector,
        range: f64,
        range_offset: usize,
        time: f64,
    ) -> Result<Value, QueryError> {
        if let Some(gauge) = METRICS
            .iter()
            .find(|name| !COUNTERS.contains(name) && selector.may_match_name(name))
        {
            return Err(unsupported(
                selector.offset,
                &format!(
                    "a range function over the gauge {gauge} (the sandbox computes rates of the \
                     counters {} only; name one in the selector)",
                    COUNTERS.join(" and ")
                ),
            ));
        }
        self.check_range_work(range, range_offset, time)?;

        let window = match function {
            RangeFunction::Irate => range.min(SCRAPE_INTERVAL),
            RangeFunction::Rate | RangeFunction::Increase => range,
        };
        let mut out = Vec::new();
        if !COUNTERS.iter().any(|name| selector.may_match_name(name)) {
            return Ok(Value::Vector(out));
        }
        for (workload, profile) in &self.observed.workloads {
            let ready = workload.ready_pods.len() as f64;
            let requests = traffic::wall_requests(profile, &self.clock, time - window, time);
            let per_second = requests / window / ready;
            // A pod's CPU rises by its idle use plus the cost of each request it serves.
            let cores = (traffic::IDLE_MILLICORES + profile.cost_millicores * per_second) / 1000.0;
            for pod in &workload.ready_pods {
                let seen = self
                    .counters
                    .get(&workload.namespace, pod)
                    .is_some_and(|counter| time >= counter.since_unix);
                if !seen {
                    continue;
                }
                let requests = (pod_labels(REQUESTS_TOTAL, workload, pod), per_second);
                let cpu = cadvisor_labels(CONTAINER_CPU_TOTAL, workload, pod)
                    .into_iter()
                    .map(|labels| (labels, cores));
                for (labels, rate) in std::iter::once(requests).chain(cpu) {
                    if !selector.matches(&labels) {
                        continue;
                    }
                    let value = match function {
                        RangeFunction::Increase => rate * range,
                        RangeFunction::Rate | RangeFunction::Irate => rate,
                    };
                    out.push(Series {
                        labels: without_name(labels),
                        value,
                    });
                }
            }
        }
        Ok(Value::Vector(out))
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn pod_labels(name: &str, workload: &WorkloadView, pod: &str) -> Labels {
    labels(&[
        ("__name__", name),
        ("namespace", &workload.namespace),
        ("workload", &workload.name),
        ("pod", pod),
    ])
}

/// The label sets of a pod's cAdvisor series: its one container's (named after its workload,
/// as the pod metrics API names it) and the whole pod's, which has no `container` label.
fn cadvisor_labels(name: &str, workload: &WorkloadView, pod: &str) -> [Labels; 2] {
    let namespace = workload.namespace.as_str();
    [
        labels(&[
            ("__name__", name),
            ("namespace", namespace),
            ("pod", pod),
            ("container", &workload.name),
        ]),
        labels(&[("__name__", name), ("namespace", namespace), ("pod", pod)]),
    ]
}

fn without_name(mut labels: Labels) -> Labels {
    labels.remove("__name__");
    labels
}

/// One value per group of `series`, groups keyed by the labels `grouping` keeps.
fn aggregate(op: Aggregation, grouping: &Grouping, series: Vec<Series>) -> Vec<Series> {
    let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
    for s in series {
        let key: Labels = match grouping {
            Grouping::All => Labels::new(),
            Grouping::By(keep) => s
                .labels
                .into_iter()
                .filter(|(k, _)| keep.contains(k))
                .collect(),
            Grouping::Without(drop) => s
                .labels
                .into_iter()
                .filter(|(k, _)| k != "__name__" && !drop.contains(k))
                .collect(),
        };
        groups.entry(key).or_default().push(s.value);
    }
    groups
        .into_iter()
        .map(|(labels, values)| {
            let count = values.len() as f64;
            let value = match op {
                Aggregation::Sum => values.iter().sum(),
                Aggregation::Avg => values.iter().sum::<f64>() / count,
                Aggregation::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                Aggregation::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
                Aggregation::Count => count,
            };
            Series { labels, value }
        })
        .collect()
}

/// `left op right` where at most one side is a vector; the metric name is dropped.
fn binary(op: Arithmetic, left: Value, right: Value, offset: usize) -> Result<Value, QueryError> {
    let apply = |a: f64, b: f64| match op {
        Arithmetic::Add => a + b,
        Arithmetic::Subtract => a - b,
        Arithmetic::Multiply => a * b,
        Arithmetic::Divide => a / b,
    };
    let each = |series: Vec<Series>, f: &dyn Fn(f64) -> f64| {
        series
            .into_iter()
            .map(|s| Series {
                labels: without_name(s.labels),
                value: f(s.value),
            })
            .collect()
    };
    match (left, right) {
        (Value::Scalar(a), Value::Scalar(b)) => Ok(Value::Scalar(apply(a, b))),
        (Value::Vector(v), Value::Scalar(b)) => Ok(Value::Vector(each(v, &|a| apply(a, b)))),
        (Value::Scalar(a), Value::Vector(v)) => Ok(Value::Vector(each(v, &|b| apply(a, b)))),
        (Value::Vector(_), Value::Vector(_)) => {
            Err(unsupported(offset, "an operator between two vectors"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The pod metrics API (metrics.k8s.io/v1beta1)
// ---------------------------------------------------------------------------------------------

async fn metrics_discovery() -> Json<JsonValue> {
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "metrics.k8s.io/v1beta1",
        "resources": [{
            "name": "pods",
            "singularName": "",
            "namespaced": true,
            "kind": "PodMetrics",
            "verbs": ["get", "list"]
        }]
    }))
}

async fn all_pod_metrics(State(endpoint): State<Shared>, RawQuery(query): RawQuery) -> Response {
    pod_metrics_list(&endpoint, None, query.as_deref())
}

async fn namespace_pod_metrics(
    State(endpoint): State<Shared>,
    Path(namespace): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    pod_metrics_list(&endpoint, Some(&namespace), query.as_deref())
}

async fn one_pod_metrics(
    State(endpoint): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let items = pod_metrics(&endpoint, Some(&namespace), traffic::unix_now());
    match items
        .into_iter()
        .find(|item| item["metadata"]["name"] == name.as_str())
    {
        Some(mut item) => {
            item["kind"] = json!("PodMetrics");
            item["apiVersion"] = json!("metrics.k8s.io/v1beta1");
            Json(item).into_response()
        }
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("podmetrics.metrics.k8s.io \"{name}\" not found"),
        ),
    }
}

/// The PodMetricsList of one namespace or of all; selectors are refused rather than ignored.
fn pod_metrics_list(endpoint: &Endpoint, namespace: Option<&str>, query: Option<&str>) -> Response {
    // LIMITATION: the cluster view carries no pod labels or fields, so selectors cannot be
    // answered; a wrong (unfiltered) answer would be worse than this error.
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if matches!(key.as_ref(), "labelSelector" | "fieldSelector") && !value.is_empty() {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "the sandbox's metrics API does not support {key} ({value:?}); list all pods and filter them by name"
                ),
            );
        }
    }
    let items = pod_metrics(endpoint, namespace, traffic::unix_now());
    Json(json!({
        "kind": "PodMetricsList",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": items
    }))
    .into_response()
}

/// One PodMetrics item per Ready pod, as metrics-server writes them: CPU in nanocores (`n`),
/// memory in kibibytes (`Ki`).
///
/// LIMITATION: each pod reports one container, named after its workload, because the cluster
/// view does not carry container names.
fn pod_metrics(endpoint: &Endpoint, namespace: Option<&str>, now: f64) -> Vec<JsonValue> {
    let observed = endpoint.observe(now);
    let sim = endpoint.clock.sim_at(now);
    let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut items = Vec::new();
    for (workload, profile) in &observed.workloads {
        if namespace.is_some_and(|ns| ns != workload.namespace) {
            continue;
        }
        let Some(load) = profile.pod_load(sim, workload.ready_pods.len()) else {
            continue;
        };
        let cpu = format!("{}n", (load.cpu_millicores * 1e6).round() as u64);
        let memory = format!("{}Ki", (load.memory_bytes / 1024.0).round() as u64);
        for pod in &workload.ready_pods {
            items.push(json!({
                "metadata": {
                    "name": pod,
                    "namespace": workload.namespace,
                    "creationTimestamp": stamp,
                },
                "timestamp": stamp,
                "window": format!("{SCRAPE_INTERVAL}s"),
                "containers": [{
                    "name": workload.name,
                    "usage": {"cpu": cpu, "memory": memory}
                }]
            }));
        }
    }
    items
}

/// A Kubernetes Status object as the API server sends one with an error.
fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16()
    });
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::metrics::{MetricError, PrometheusSource};

    /// A cluster whose workloads a test sets.
    struct FakeCluster(Mutex<Vec<WorkloadView>>);

    impl ClusterView for FakeCluster {
        fn workloads(&self) -> Vec<WorkloadView> {
            self.0.lock().unwrap().clone()
        }
    }

    fn workload(
        namespace: &str,
        kind: &str,
        name: &str,
        traffic: &str,
        pods: &[&str],
    ) -> WorkloadView {
        WorkloadView {
            namespace: namespace.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            traffic: (!traffic.is_empty()).then(|| traffic.to_string()),
            ready_pods: pods.iter().map(|p| p.to_string()).collect(),
            cpu_request_millicores: 100,
        }
    }

    /// `shop/web` (2 pods, a daily curve with bursts), `shop/api` (3 pods, flat 90 rps) and
    /// `batch/queue` (a StatefulSet with 1 pod and no traffic).
    fn cluster() -> Vec<WorkloadView> {
        vec![
            workload(
                "shop",
                "Deployment",
                "web",
                "base=20,peak=400,peakHour=14,burst=3x/90s/600s,seed=7",
                &["web-a", "web-b"],
            ),
            workload(
                "shop",
                "Deployment",
                "api",
                "base=90,cost=4",
                &["api-a", "api-b", "api-c"],
            ),
            workload("batch", "StatefulSet", "queue", "", &["queue-0"]),
        ]
    }

    /// The wall time the test clock is anchored at: simulated 10:00 of day 0.
    const T0: f64 = 1_700_000_000.0;
    const SPEED: f64 = 10.0;

    fn endpoint(workloads: Vec<WorkloadView>) -> Endpoint {
        Endpoint {
            view: Arc::new(FakeCluster(Mutex::new(workloads))),
            clock: Clock::anchored(T0, 10.0 * 3600.0, SPEED).unwrap(),
            counters: Mutex::new(Counters::new()),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The series of an instant query at `time`, the endpoint's "now" being `now`.
    fn at(
        endpoint: &Endpoint,
        query: &str,
        time: f64,
        now: f64,
    ) -> Result<Vec<(Labels, f64)>, String> {
        let time = time.to_string();
        let answer = answer_instant(endpoint, &params(&[("query", query), ("time", &time)]), now)
            .map_err(|err| err.0)?;
        let data = &answer["data"];
        let value = |sample: &JsonValue| sample[1].as_str().unwrap().parse::<f64>().unwrap();
        match data["resultType"].as_str() {
            Some("scalar") => Ok(vec![(Labels::new(), value(&data["result"]))]),
            Some("vector") => Ok(data["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        serde_json::from_value(s["metric"].clone()).unwrap(),
                        value(&s["value"]),
                    )
                })
                .collect()),
            other => panic!("unexpected result type {other:?}"),
        }
    }

    fn eval(endpoint: &Endpoint, query: &str) -> Result<Vec<(Labels, f64)>, String> {
        at(endpoint, query, T0, T0)
    }

    fn values(endpoint: &Endpoint, query: &str) -> Vec<f64> {
        eval(endpoint, query)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    fn label_values(endpoint: &Endpoint, query: &str, label: &str) -> Vec<String> {
        eval(endpoint, query)
            .unwrap()
            .into_iter()
            .map(|(labels, _)| labels.get(label).cloned().unwrap_or_default())
            .collect()
    }

    fn web() -> Profile {
        Profile::parse("base=20,peak=400,peakHour=14,burst=3x/90s/600s,seed=7").unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn a_selector_gives_each_matching_series_with_its_labels_and_the_models_value() {
        let endpoint = endpoint(cluster());
        let series = eval(
            &endpoint,
            "sandbox_http_requests_per_second{namespace=\"shop\"}",
        )
        .unwrap();
        let names: Vec<&str> = series.iter().map(|(l, _)| l["workload"].as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        assert_eq!(series[0].0["__name__"], REQUESTS_PER_SECOND);
        assert_eq!(series[0].1, 90.0);
        assert!(close(series[1].1, web().rps(10.0 * 3600.0)));
    }

    #[test]
    fn label_matchers_select_by_equality_inequality_and_anchored_regexes() {
        let endpoint = endpoint(cluster());
        let pods = |query: &str| label_values(&endpoint, query, "pod");
        assert_eq!(
            pods("sandbox_pod_cpu_usage_cores{workload=\"web\"}"),
            ["web-a", "web-b"]
        );
        assert_eq!(
            pods("sandbox_pod_cpu_usage_cores{workload!=\"api\"}"),
            ["queue-0", "web-a", "web-b"]
        );
        assert_eq!(
            pods("sandbox_pod_cpu_usage_cores{pod=~\"api-[ab]\"}"),
            ["api-a", "api-b"]
        );
        // Anchored: `api` alone matches no pod name.
        assert_eq!(
            pods("sandbox_pod_cpu_usage_cores{pod=~\"api\"}"),
            Vec::<String>::new()
        );
        assert_eq!(
            pods("sandbox_pod_cpu_usage_cores{pod!~\"(api|web)-.*\"}"),
            ["queue-0"]
        );
        assert_eq!(
            pods("{__name__=~\"sandbox_pod_mem.*\",namespace=\"batch\"}"),
            ["queue-0"]
        );
    }

    #[test]
    fn pod_cpu_and_memory_follow_each_pods_share_of_the_rate() {
        let endpoint = endpoint(cluster());
        let cpu = values(&endpoint, "sandbox_pod_cpu_usage_cores{pod=\"api-a\"}");
        assert_eq!(cpu, [(traffic::IDLE_MILLICORES + 30.0 * 4.0) / 1000.0]);
        let memory = values(&endpoint, "sandbox_pod_memory_bytes{pod=\"queue-0\"}");
        assert_eq!(memory, [traffic::BASE_MEMORY_BYTES]);
    }

    #[test]
    fn readiness_gauges_count_ready_pods_per_deployment_and_statefulset() {
        let endpoint = endpoint(cluster());
        assert_eq!(
            label_values(&endpoint, DEPLOYMENT_READY, "deployment"),
            ["api", "web"]
        );
        assert_eq!(values(&endpoint, DEPLOYMENT_READY), [3.0, 2.0]);
        assert_eq!(
            values(
                &endpoint,
                "kube_statefulset_status_replicas_ready{statefulset=\"queue\"}"
            ),
            [1.0]
        );
    }

    #[test]
    fn rate_of_the_counter_over_a_window_is_the_integral_of_the_simulated_rate() {
        let endpoint = endpoint(cluster());
        let clock = endpoint.clock;
        // The pods are first seen at T0; a minute and two minutes later they are asked about.
        eval(&endpoint, REQUESTS_TOTAL).unwrap();
        let (t1, t2) = (T0 + 60.0, T0 + 120.0);
        let counter = |time| {
            values_at(
                &endpoint,
                "sandbox_http_requests_total{pod=\"web-a\"}",
                time,
                t2,
            )
        };
        let increase_by_counter = counter(t2) - counter(t1);

        let integral = traffic::wall_requests(&web(), &clock, t1, t2) / 2.0;
        assert!(
            close(increase_by_counter, integral),
            "{increase_by_counter} vs {integral}"
        );

        let rate = values_at(
            &endpoint,
            "rate(sandbox_http_requests_total{pod=\"web-a\"}[1m])",
            t2,
            t2,
        );
        assert!(close(rate, integral / 60.0), "{rate}");
        let increase = values_at(
            &endpoint,
            "increase(sandbox_http_requests_total{pod=\"web-a\"}[1m])",
            t2,
            t2,
        );
        assert!(close(increase, integral), "{increase}");
        // irate is the rate over the last scrape interval.
        let irate = values_at(
            &endpoint,
            "irate(sandbox_http_requests_total{pod=\"web-a\"}[1m])",
            t2,
            t2,
        );
        let last = traffic::wall_requests(&web(), &clock, t2 - SCRAPE_INTERVAL, t2) / 2.0;
        assert!(close(irate, last / SCRAPE_INTERVAL), "{irate}");
    }

    #[test]
    fn the_cadvisor_cpu_counter_rises_by_the_integral_of_the_pods_cpu_gauge() {
        let endpoint = endpoint(cluster());
        let clock = endpoint.clock;
        eval(&endpoint, CONTAINER_CPU_TOTAL).unwrap();
        let (t1, t2) = (T0 + 60.0, T0 + 120.0);
        let query = "container_cpu_usage_seconds_total{pod=\"web-a\",container=\"web\"}";
        let increase = values_at(&endpoint, query, t2, t2) - values_at(&endpoint, query, t1, t2);

        // The gauge's integral, summed in steps of 10 ms of wall time (bursts included).
        let step = 0.01;
        let steps = ((t2 - t1) / step).round() as usize;
        let integral: f64 = (0..steps)
            .map(|i| {
                let sim = clock.sim_at(t1 + (i as f64 + 0.5) * step);
                web().pod_load(sim, 2).unwrap().cpu_millicores / 1000.0 * step
            })
            .sum();
        assert!(
            (increase - integral).abs() <= 1e-3 * integral,
            "{increase} vs {integral}"
        );

        let rate = values_at(
            &endpoint,
            "rate(container_cpu_usage_seconds_total{pod=\"web-a\",container!=\"\"}[1m])",
            t2,
            t2,
        );
        assert!(
            close(rate, increase / 60.0),
            "{rate} vs {}",
            increase / 60.0
        );
    }

    #[test]
    fn the_rate_of_the_cpu_counter_is_the_cpu_gauge_while_the_traffic_is_steady() {
        let endpoint = endpoint(cluster());
        eval(&endpoint, CONTAINER_CPU_TOTAL).unwrap();
        let later = T0 + 120.0;
        for pod in ["api-a", "queue-0"] {
            let gauge = values_at(
                &endpoint,
                &format!("{POD_CPU}{{pod=\"{pod}\"}}"),
                later,
                later,
            );
            let query = format!("rate({CONTAINER_CPU_TOTAL}{{pod=\"{pod}\",container!=\"\"}}[1m])");
            let rate = values_at(&endpoint, &query, later, later);
            assert!(close(rate, gauge), "{pod}: {rate} vs {gauge}");
        }
        assert_eq!(
            values_at(
                &endpoint,
                "sandbox_pod_cpu_usage_cores{pod=\"api-a\"}",
                later,
                later
            ),
            (traffic::IDLE_MILLICORES + 30.0 * 4.0) / 1000.0
        );
    }

    #[test]
    fn the_default_pod_queries_give_each_pods_cpu_and_memory_once() {
        let endpoint = endpoint(cluster());
        eval(&endpoint, CONTAINER_CPU_TOTAL).unwrap();
        let later = T0 + 120.0;
        let cpu = at(
            &endpoint,
            crate::config::DEFAULT_POD_CPU_QUERY,
            later,
            later,
        )
        .unwrap();
        let pods: Vec<String> = cpu
            .iter()
            .map(|(l, _)| format!("{}/{}", l["namespace"], l["pod"]))
            .collect();
        assert_eq!(
            pods,
            [
                "batch/queue-0",
                "shop/api-a",
                "shop/api-b",
                "shop/api-c",
                "shop/web-a",
                "shop/web-b"
            ]
        );
        assert_eq!(cpu[0].0.len(), 2, "only namespace and pod: {:?}", cpu[0].0);
        let api = (traffic::IDLE_MILLICORES + 30.0 * 4.0) / 1000.0;
        assert!(close(cpu[1].1, api), "{cpu:?}");

        let memory = at(
            &endpoint,
            crate::config::DEFAULT_POD_MEMORY_QUERY,
            later,
            later,
        )
        .unwrap();
        assert_eq!(memory.len(), 6);
        assert_eq!(memory[0].1, traffic::BASE_MEMORY_BYTES);
        // The pod's own series is there beside its container's, as in cAdvisor: summing both
        // counts the pod twice, which is what the default queries' `container!=""` avoids.
        let both = values(
            &endpoint,
            "sum(container_memory_working_set_bytes{pod=\"queue-0\"})",
        );
        assert_eq!(both, [2.0 * traffic::BASE_MEMORY_BYTES]);

        let err = eval(&endpoint, "rate(container_memory_working_set_bytes[1m])").unwrap_err();
        assert!(
            err.contains("the gauge container_memory_working_set_bytes"),
            "{err}"
        );
    }

    fn values_at(endpoint: &Endpoint, query: &str, time: f64, now: f64) -> f64 {
        let series = at(endpoint, query, time, now).unwrap();
        assert_eq!(series.len(), 1, "{query}: {series:?}");
        series[0].1
    }

    #[test]
    fn the_summed_rate_of_a_workloads_pods_is_its_average_rate_over_the_window() {
        let endpoint = endpoint(cluster());
        let query =
            "sum(rate(sandbox_http_requests_total{namespace=\"shop\",workload=\"web\"}[5m]))";
        let sum = values(&endpoint, query);
        let expected = traffic::wall_requests(&web(), &endpoint.clock, T0 - 300.0, T0) / 300.0;
        assert_eq!(sum.len(), 1);
        assert!(close(sum[0], expected), "{sum:?} vs {expected}");
        assert!(eval(&endpoint, query).unwrap()[0].0.is_empty());
    }

    #[test]
    fn a_counter_has_no_value_before_its_pod_was_first_seen() {
        let endpoint = endpoint(cluster());
        let before = at(&endpoint, "sandbox_http_requests_total", T0 - 1.0, T0).unwrap();
        assert_eq!(before, []);
        let now = at(
            &endpoint,
            "sandbox_http_requests_total{pod=\"api-a\"}",
            T0,
            T0,
        )
        .unwrap();
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].1, 0.0);
        assert_eq!(now[0].0["__name__"], REQUESTS_TOTAL);
    }

    #[test]
    fn aggregations_group_by_and_without_labels() {
        let endpoint = endpoint(cluster());
        let cpu = |pods: f64, rps: f64, cost: f64| {
            (traffic::IDLE_MILLICORES + rps / pods * cost) / 1000.0
        };
        let api = cpu(3.0, 90.0, 4.0);

        let by = eval(
            &endpoint,
            "sum by (workload) (sandbox_pod_cpu_usage_cores{namespace!=\"batch\"})",
        )
        .unwrap();
        assert_eq!(by.len(), 2);
        assert_eq!(by[0].0, labels(&[("workload", "api")]));
        assert!(close(by[0].1, 3.0 * api));

        let trailing = eval(
            &endpoint,
            "count(sandbox_pod_cpu_usage_cores) by (namespace)",
        )
        .unwrap();
        assert_eq!(
            trailing,
            [
                (labels(&[("namespace", "batch")]), 1.0),
                (labels(&[("namespace", "shop")]), 5.0)
            ]
        );

        let without = eval(
            &endpoint,
            "max without (pod) (sandbox_pod_cpu_usage_cores{workload=\"api\"})",
        )
        .unwrap();
        assert_eq!(
            without,
            [(labels(&[("namespace", "shop"), ("workload", "api")]), api)]
        );

        assert_eq!(
            values(
                &endpoint,
                "min(sandbox_pod_memory_bytes{namespace=\"batch\"})"
            ),
            [traffic::BASE_MEMORY_BYTES]
        );
        let avg = values(&endpoint, "avg(kube_deployment_status_replicas_ready)");
        assert_eq!(avg, [2.5]);
        assert_eq!(
            values(
                &endpoint,
                "sum(sandbox_pod_cpu_usage_cores{namespace=\"nowhere\"})"
            ),
            Vec::<f64>::new()
        );
    }

    #[test]
    fn arithmetic_with_scalars_applies_to_each_series_and_drops_the_name() {
        let endpoint = endpoint(cluster());
        assert_eq!(
            eval(&endpoint, "1 + 2 * 3").unwrap(),
            [(Labels::new(), 7.0)]
        );
        assert_eq!(
            eval(&endpoint, "(1 + 2) * -3 / 2").unwrap(),
            [(Labels::new(), -4.5)]
        );
        let scaled = eval(
            &endpoint,
            "sandbox_http_requests_per_second{workload=\"api\"} * 2 - 10",
        )
        .unwrap();
        assert_eq!(
            scaled,
            [(labels(&[("namespace", "shop"), ("workload", "api")]), 170.0)]
        );
        assert_eq!(
            values(
                &endpoint,
                "900 / sandbox_http_requests_per_second{workload=\"api\"}"
            ),
            [10.0]
        );
        assert_eq!(
            values(&endpoint, "sum(kube_deployment_status_replicas_ready) / 0"),
            [f64::INFINITY]
        );
    }

    #[test]
    fn what_the_sandbox_does_not_support_is_refused_with_its_offset() {
        let endpoint = endpoint(cluster());
        for (query, expected) in [
            (
                "histogram_quantile(0.9, x)",
                "the function histogram_quantile() at offset 0 is not supported",
            ),
            (
                "topk(3, sandbox_pod_memory_bytes)",
                "the aggregation topk() at offset 0",
            ),
            (
                "sandbox_pod_memory_bytes > 1",
                "the operator `>` at offset 25",
            ),
            (
                "sandbox_pod_memory_bytes % 2",
                "the operator `%` at offset 25",
            ),
            (
                "sandbox_pod_memory_bytes offset 5m",
                "`offset` at offset 25",
            ),
            (
                "sandbox_pod_memory_bytes[5m]",
                "a range vector outside rate(), irate() or increase() at offset 24",
            ),
            (
                "rate(sandbox_http_requests_total[5m:1m])",
                "a subquery at offset 32",
            ),
            (
                "sum(sandbox_pod_memory_bytes) / sum(sandbox_pod_cpu_usage_cores)",
                "an operator between two vectors at offset 30",
            ),
            (
                "rate(sandbox_pod_cpu_usage_cores[1m])",
                "the gauge sandbox_pod_cpu_usage_cores",
            ),
            (
                "rate(sandbox_http_requests_total)",
                "an argument to rate() other than a selector with a [range]",
            ),
            (
                "rate(sandbox_http_requests_total[1y])",
                "at offset 32 is not supported",
            ),
            ("x and y", "`and` at offset 2"),
        ] {
            let err = eval(&endpoint, query).unwrap_err();
            assert!(err.contains(expected), "{query}: {err}");
        }
    }

    #[test]
    fn malformed_queries_are_parse_errors_at_their_offset() {
        let endpoint = endpoint(cluster());
        for (query, expected) in [
            ("", "no expression found"),
            ("sum(", "parse error at offset 4"),
            ("x{a=\"1\"", "parse error at offset 7"),
            ("x{a=1}", "expected a quoted string after a"),
            ("x{a=~\"(\"}", "bad regular expression"),
            ("x{a=\"\\q\"}", "unknown escape sequence \\q"),
            (
                "{a=\"\"}",
                "at least one matcher that does not match the empty string",
            ),
            ("x y", "parse error at offset 2: unexpected `y`"),
            ("2x", "bad number or duration \"2x\""),
            ("x ? 1", "unexpected character '?'"),
        ] {
            let err = eval(&endpoint, query).unwrap_err();
            assert!(err.contains(expected), "{query:?}: {err}");
        }
    }

    #[test]
    fn a_bad_traffic_annotation_leaves_its_workload_out_with_a_warning() {
        let mut workloads = cluster();
        workloads.push(workload(
            "shop",
            "Deployment",
            "cart",
            "base=lots",
            &["cart-a"],
        ));
        let endpoint = endpoint(workloads);
        let answer =
            answer_instant(&endpoint, &params(&[("query", REQUESTS_PER_SECOND)]), T0).unwrap();
        let warnings = answer["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1);
        let warning = warnings[0].as_str().unwrap();
        assert!(
            warning.starts_with("shop/Deployment/cart: bad sandbox.pilothouse.dev/traffic"),
            "{warning}"
        );
        assert!(warning.contains("base=\"lots\""), "{warning}");
        assert_eq!(answer["data"]["result"].as_array().unwrap().len(), 3);
        // Its readiness is still known.
        assert_eq!(
            values(
                &endpoint,
                "kube_deployment_status_replicas_ready{deployment=\"cart\"}"
            ),
            [1.0]
        );
    }

    #[test]
    fn a_range_query_evaluates_each_step_at_its_own_simulated_time() {
        let endpoint = endpoint(cluster());
        let query = "sandbox_http_requests_per_second{workload=\"web\"}";
        let (start, end) = ((T0 - 600.0).to_string(), T0.to_string());
        let answer = answer_range(
            &endpoint,
            &params(&[
                ("query", query),
                ("start", &start),
                ("end", &end),
                ("step", "5m"),
            ]),
            T0,
        )
        .unwrap();
        assert_eq!(answer["data"]["resultType"], "matrix");
        let series = answer["data"]["result"].as_array().unwrap();
        assert_eq!(series.len(), 1);
        let samples = series[0]["values"].as_array().unwrap();
        assert_eq!(samples.len(), 3);
        for (i, sample) in samples.iter().enumerate() {
            let time = T0 - 600.0 + 300.0 * i as f64;
            assert_eq!(sample[0].as_f64(), Some(time));
            let value: f64 = sample[1].as_str().unwrap().parse().unwrap();
            // A time in the past maps backwards on the simulated clock.
            let sim = 10.0 * 3600.0 - (T0 - time) * SPEED;
            assert!(close(value, web().rps(sim)), "{i}: {value}");
        }
    }

    #[test]
    fn range_query_parameters_are_checked_as_prometheus_checks_them() {
        let endpoint = endpoint(cluster());
        let range = |start: &str, end: &str, step: &str| {
            answer_range(
                &endpoint,
                &params(&[
                    ("query", "1"),
                    ("start", start),
                    ("end", end),
                    ("step", step),
                ]),
                T0,
            )
            .map(|_| ())
            .unwrap_err()
            .0
        };
        assert!(range("10", "0", "1").contains("end timestamp must not be before start time"));
        assert!(range("0", "10", "0").contains("zero or negative query resolution step"));
        assert!(range("0", "100000", "1").contains("maximum resolution of 11,000 points"));
        assert!(
            range("yesterday", "10", "1")
                .contains("invalid parameter \"start\": cannot parse \"yesterday\"")
        );
        assert!(range("0", "10", "soon").contains("invalid parameter \"step\""));
        let missing = answer_range(&endpoint, &params(&[("query", "1")]), T0)
            .unwrap_err()
            .0;
        assert!(
            missing.contains("invalid parameter \"start\": the parameter is missing"),
            "{missing}"
        );
    }

    #[test]
    fn times_are_read_as_unix_seconds_or_rfc_3339_and_steps_as_seconds_or_durations() {
        assert_eq!(parse_time("time", "1700000000.5"), Ok(1_700_000_000.5));
        assert_eq!(
            parse_time("time", "2023-11-14T22:13:20.25Z"),
            Ok(1_700_000_000.25)
        );
        assert_eq!(parse_step("15"), Ok(15.0));
        assert_eq!(parse_step("1m30s"), Ok(90.0));
        assert_eq!(parse_step("250ms"), Ok(0.25));
        assert_eq!(parse_duration("30m1h"), None);
    }

    #[test]
    fn values_are_written_as_prometheus_writes_them() {
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(sample(1.2345678, 2.0), json!([1.235, "2"]));
    }

    // --- Over HTTP on loopback ---------------------------------------------------------------

    /// Serves the router for `workloads` on a free loopback port; the clock is at 14:00 now.
    async fn serve(workloads: Vec<WorkloadView>) -> String {
        let view = Arc::new(FakeCluster(Mutex::new(workloads)));
        let clock = Clock::starting_at(14.0 * 3600.0, 1.0).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(view, clock)).await });
        format!("http://{address}")
    }

    /// Flat traffic, so values do not depend on when the test runs.
    fn flat_cluster() -> Vec<WorkloadView> {
        vec![
            workload(
                "shop",
                "Deployment",
                "web",
                "base=120",
                &["web-a", "web-b", "web-c"],
            ),
            workload("batch", "StatefulSet", "queue", "", &["queue-0"]),
        ]
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    #[tokio::test]
    async fn prometheus_source_reads_an_instant_value_from_the_endpoint() {
        let base = serve(flat_cluster()).await;
        let source = PrometheusSource::new(&base).unwrap();
        let query =
            "sum(rate(sandbox_http_requests_total{namespace=\"shop\",workload=\"web\"}[1m]))";
        let value = source.query_instant(query).await.unwrap();
        assert!((value - 120.0).abs() < 1e-6, "{value}");
        let per_pod = source
            .query_instant("sandbox_http_requests_per_second / 3")
            .await
            .unwrap_err();
        // Two series (web and queue) are not one value.
        assert!(
            matches!(per_pod, MetricError::ManySeries { count: 2, .. }),
            "{per_pod}"
        );
    }

    #[tokio::test]
    async fn prometheus_source_reads_a_range_from_the_endpoint() {
        let base = serve(flat_cluster()).await;
        let source = PrometheusSource::new(&base).unwrap();
        let to = chrono::Utc::now();
        let from = to - chrono::Duration::seconds(60);
        let samples = source
            .query_range(
                "sandbox_http_requests_per_second{workload=\"web\"}",
                from,
                to,
                std::time::Duration::from_secs(15),
            )
            .await
            .unwrap();
        assert_eq!(samples.len(), 5);
        assert!(
            samples.iter().all(|(_, value)| *value == 120.0),
            "{samples:?}"
        );
        assert_eq!(samples[0].0.timestamp(), from.timestamp());
    }

    #[tokio::test]
    async fn prometheus_source_reports_a_refused_query_as_rejected_with_the_reason() {
        let base = serve(flat_cluster()).await;
        let source = PrometheusSource::new(&base).unwrap();
        let err = source
            .query_instant("histogram_quantile(0.9, x)")
            .await
            .unwrap_err();
        match &err {
            MetricError::QueryRejected { kind, message, .. } => {
                assert_eq!(kind, "bad_data");
                assert!(
                    message.contains("histogram_quantile() at offset 0"),
                    "{message}"
                );
            }
            other => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn the_query_api_answers_get_and_form_posts_in_prometheus_json() {
        let base = serve(flat_cluster()).await;
        let http = client();

        let get: JsonValue = http
            .get(format!("{base}/api/v1/query"))
            .query(&[
                (
                    "query",
                    "sandbox_http_requests_per_second{workload=\"web\"}",
                ),
                ("time", "1700000000"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            get,
            json!({"status": "success", "data": {"resultType": "vector", "result": [{
                "metric": {"__name__": REQUESTS_PER_SECOND, "namespace": "shop", "workload": "web"},
                "value": [1_700_000_000.0, "120"]
            }]}})
        );

        let post: JsonValue = http
            .post(format!("{base}/api/v1/query"))
            .form(&[("query", "2 * 21"), ("time", "1700000000.5")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            post,
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1_700_000_000.5, "42"]}})
        );

        let range = http
            .post(format!("{base}/api/v1/query_range"))
            .form(&[
                ("query", "count(sandbox_pod_memory_bytes)"),
                ("start", "100"),
                ("end", "130"),
                ("step", "15"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(range.status(), 200);
        let range: JsonValue = range.json().await.unwrap();
        assert_eq!(
            range["data"],
            json!({"resultType": "matrix", "result": [{"metric": {}, "values": [[100.0, "4"], [115.0, "4"], [130.0, "4"]]}]})
        );
    }

    #[tokio::test]
    async fn a_bad_query_gets_http_400_with_a_bad_data_error() {
        let base = serve(flat_cluster()).await;
        let response = client()
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", "up == 1")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: JsonValue = response.json().await.unwrap();
        assert_eq!(body["status"], "error");
        assert_eq!(body["errorType"], "bad_data");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("the operator `==` at offset 3"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn build_info_answers_as_prometheus_does() {
        let base = serve(flat_cluster()).await;
        let body: JsonValue = client()
            .get(format!("{base}/api/v1/status/buildinfo"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success");
        assert!(body["data"]["version"].is_string());
    }

    #[tokio::test]
    async fn pod_metrics_are_listed_as_metrics_server_lists_them() {
        let base = serve(flat_cluster()).await;
        let http = client();
        let list: JsonValue = http
            .get(format!(
                "{base}/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["kind"], "PodMetricsList");
        assert_eq!(list["apiVersion"], "metrics.k8s.io/v1beta1");
        let items = list["items"].as_array().unwrap();
        let names: Vec<&str> = items
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web-a", "web-b", "web-c"]);
        // 40 requests per second per pod at 2 millicores each, plus the idle floor.
        let usage = &items[0]["containers"][0]["usage"];
        assert_eq!(usage["cpu"], "85000000n");
        let memory_ki =
            (traffic::BASE_MEMORY_BYTES + 40.0 * traffic::MEMORY_BYTES_PER_RPS) / 1024.0;
        assert_eq!(usage["memory"], format!("{memory_ki}Ki"));
        assert_eq!(items[0]["containers"][0]["name"], "web");
        assert_eq!(items[0]["window"], "15s");

        let all: JsonValue = http
            .get(format!("{base}/apis/metrics.k8s.io/v1beta1/pods"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(all["items"].as_array().unwrap().len(), 4);

        let one = http
            .get(format!(
                "{base}/apis/metrics.k8s.io/v1beta1/namespaces/batch/pods/queue-0"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(one.status(), 200);
        let one: JsonValue = one.json().await.unwrap();
        assert_eq!(
            (
                one["kind"].as_str(),
                one["containers"][0]["usage"]["cpu"].as_str()
            ),
            (Some("PodMetrics"), Some("5000000n"))
        );

        let missing = http
            .get(format!(
                "{base}/apis/metrics.k8s.io/v1beta1/namespaces/batch/pods/nope"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let missing: JsonValue = missing.json().await.unwrap();
        assert_eq!(
            (missing["kind"].as_str(), missing["reason"].as_str()),
            (Some("Status"), Some("NotFound"))
        );

        let selected = http
            .get(format!(
                "{base}/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dweb"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(selected.status(), 400);

        let discovery: JsonValue = http
            .get(format!("{base}/apis/metrics.k8s.io/v1beta1"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(discovery["groupVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(discovery["resources"][0]["kind"], "PodMetrics");
    }

    #[tokio::test]
    async fn the_kube_client_lists_pod_metrics_as_the_kubernetes_platform_does() {
        use kube::api::{Api, DynamicObject, ListParams};

        let base = serve(flat_cluster()).await;
        let uri: axum::http::Uri = base.parse().unwrap();
        let client = kube::Client::try_from(kube::Config::new(uri)).unwrap();
        let resource = crate::platform::kubernetes::metrics::pod_metrics_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(client, "batch", &resource);
        let list = api.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), 1);
        let item = &list.items[0];
        assert_eq!(item.metadata.name.as_deref(), Some("queue-0"));
        assert_eq!(item.metadata.namespace.as_deref(), Some("batch"));
        assert_eq!(item.data["containers"][0]["usage"]["cpu"], "5000000n");
    }
}
