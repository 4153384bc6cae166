//! Reading rule files: YAML into raw, position-carrying structs, then validation into [`Rule`]s.
//!
//! Every raw value keeps its line and column (`Spanned`), so a semantic error (min > max, a
//! duplicate name, a workload that does not parse) points at the offending key's value, and all
//! of them are reported together. Not for deciding anything: see `decide.rs`.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::{
    Behavior, DockerWorkload, Fallback, KubeKind, Metric, MetricSource, Policy, PolicyKind, Rule,
    RuleTarget, ScalingRules, SelectPolicy, TargetKind, Tolerance,
};
use crate::config::{ConfigError, is_plain_name};

/// The longest duration a rule may name; longer ones are almost certainly a typo.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The most replicas a rule may allow: far above any real workload, and small enough that the
/// rate policies' arithmetic cannot overflow.
const MAX_REPLICAS: i64 = 100_000;

/// The largest value of a Pods policy: as many replicas as a rule may have.
const MAX_POLICY_PODS: i64 = MAX_REPLICAS;

/// The largest value of a Percent policy: a hundredfold per period.
const MAX_POLICY_PERCENT: i64 = 10_000;

/// The smallest target or utilization; decisions show numbers to 3 decimals, so a smaller one
/// would read as a division by 0.
const MIN_TARGET: f64 = 0.001;

/// The most failed cycles a fallback may wait for.
const MAX_FAILURE_THRESHOLD: i64 = 100_000;

/// Why `minReplicas: 0` is refused.
const NO_SCALE_TO_ZERO: &str = "minReplicas 0 is not supported: scaling to zero leaves no \
                                replica to measure, and a Percent policy cannot grow from 0 \
                                (write 1 or more)";

/// What a file holds: one rule, or a list of them.
struct RawFile(Vec<Spanned<RawRule>>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    name: Spanned<String>,
    target: Spanned<RawTarget>,
    #[serde(default)]
    min_replicas: Option<Spanned<Integer>>,
    max_replicas: Spanned<Integer>,
    #[serde(default)]
    polling_interval: Option<Spanned<DurationText>>,
    metrics: Spanned<Vec<Spanned<RawMetric>>>,
    #[serde(default)]
    behavior: Option<Spanned<RawBehavior>>,
    #[serde(default)]
    tolerance: Option<Spanned<RawTolerance>>,
    #[serde(default)]
    fallback: Option<Spanned<RawFallback>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    platform: Spanned<String>,
    #[serde(default)]
    host: Option<Spanned<String>>,
    #[serde(default)]
    context: Option<Spanned<String>>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
    #[serde(default)]
    workload: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    name: Spanned<String>,
    #[serde(default)]
    prometheus: Option<Spanned<RawPrometheus>>,
    #[serde(default)]
    cpu: Option<Spanned<RawCpu>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPrometheus {
    #[serde(default)]
    server_address: Option<Spanned<String>>,
    query: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<TargetKind>,
    target: Spanned<Number>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCpu {
    utilization: Spanned<Number>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBehavior {
    #[serde(default)]
    scale_up: Option<Spanned<RawScaling>>,
    #[serde(default)]
    scale_down: Option<Spanned<RawScaling>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawScaling {
    #[serde(default)]
    stabilization_window: Option<Spanned<DurationText>>,
    #[serde(default)]
    select_policy: Option<Spanned<SelectPolicy>>,
    #[serde(default)]
    policies: Option<Vec<Spanned<RawPolicy>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(rename = "type")]
    kind: Spanned<PolicyKind>,
    value: Spanned<Integer>,
    period: Spanned<DurationText>,
}

/// `tolerance: 0.1` or `tolerance: { scaleUp: 0.05, scaleDown: 0.2 }`.
enum RawTolerance {
    One(f64),
    Each(RawToleranceEach),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawToleranceEach {
    #[serde(default)]
    scale_up: Option<Spanned<Number>>,
    #[serde(default)]
    scale_down: Option<Spanned<Number>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFallback {
    failure_threshold: Spanned<Integer>,
    replicas: Spanned<Integer>,
}

/// An integer as the file writes it; a quoted string, a fraction or a boolean is an error.
///
/// Hex, octal and `_` separators, which YAML reads as integers too, are refused by
/// [`Errors::integer`], which sees the text as written.
struct Integer(i64);

/// A number (whole or not) as the file writes it; a quoted string or a boolean is an error.
/// NaN and the infinities come through, for validation to refuse with the key's name.
struct Number(f64);

/// The text of a duration; a bare number is kept as its text, so that validation can say
/// that it lacks a unit rather than that it is not a string.
struct DurationText(String);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Integer, D::Error> {
        deserializer.deserialize_any(IntegerVisitor)
    }
}

struct IntegerVisitor;

impl<'de> Visitor<'de> for IntegerVisitor {
    type Value = Integer;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Integer, E> {
        Ok(Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Integer, E> {
        i64::try_from(v)
            .map(Integer)
            .map_err(|_| E::custom(format!("expected an integer, got {v}, which is too large")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Integer, E> {
        let message = if v.is_finite() && v.fract() == 0.0 && v.abs() >= 9.2e18 {
            // YAML reads an integer past the range of i64 as a float.
            format!("expected an integer, got {v:e}, which is too large")
        } else if v.fract() == 0.0 {
            format!("expected an integer, got {v} written as a float")
        } else {
            format!("expected an integer, got {v}")
        };
        Err(E::custom(message))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Integer, E> {
        Err(E::custom(format!("expected an integer, got {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Integer, E> {
        Err(E::custom(format!(
            "expected an integer, got the string {v:?}"
        )))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Integer, E> {
        Err(E::custom("expected an integer, got nothing"))
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Number, D::Error> {
        deserializer.deserialize_any(NumberVisitor)
    }
}

struct NumberVisitor;

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
        Ok(Number(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
        // Precision loss only above 2^53, far beyond any target.
        #[allow(clippy::cast_precision_loss)]
        Ok(Number(v as f64))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
        // Precision loss only beyond ±2^53, far beyond any target.
        #[allow(clippy::cast_precision_loss)]
        Ok(Number(v as f64))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Number, E> {
        Err(E::custom(format!("expected a number, got {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
        Err(E::custom(format!(
            "expected a number, got the string {v:?}"
        )))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Number, E> {
        Err(E::custom("expected a number, got nothing"))
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DurationText, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = DurationText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 15s, 5m or 1h30m")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
        Ok(DurationText(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationText, E> {
        Ok(DurationText(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationText, E> {
        Ok(DurationText(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationText, E> {
        Ok(DurationText(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for RawFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawFile, D::Error> {
        deserializer.deserialize_any(RawFileVisitor)
    }
}

struct RawFileVisitor;

impl<'de> Visitor<'de> for RawFileVisitor {
    type Value = RawFile;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a rule (a mapping) or a list of rules")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawFile, A::Error> {
        let mut rules = Vec::new();
        while let Some(rule) = seq.next_element()? {
            rules.push(rule);
        }
        Ok(RawFile(rules))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawFile, A::Error> {
        // A lone rule has no position of its own here; its keys carry theirs.
        let rule = RawRule::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(RawFile(vec![Spanned::new(
            rule,
            Location::UNKNOWN,
            Location::UNKNOWN,
        )]))
    }
}

impl<'de> Deserialize<'de> for RawTolerance {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawTolerance, D::Error> {
        deserializer.deserialize_any(ToleranceVisitor)
    }
}

struct ToleranceVisitor;

impl<'de> Visitor<'de> for ToleranceVisitor {
    type Value = RawTolerance;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, or { scaleUp: NUMBER, scaleDown: NUMBER }")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawTolerance, E> {
        Ok(RawTolerance::One(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawTolerance, E> {
        // Precision loss only above 2^53, far beyond any tolerance.
        #[allow(clippy::cast_precision_loss)]
        Ok(RawTolerance::One(v as f64))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawTolerance, E> {
        // Precision loss only beyond ±2^53, far beyond any tolerance.
        #[allow(clippy::cast_precision_loss)]
        Ok(RawTolerance::One(v as f64))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTolerance, E> {
        Err(E::custom(format!(
            "expected a number, got the string {v:?}"
        )))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawTolerance, E> {
        Err(E::custom(format!("expected a number, got {v}")))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTolerance, A::Error> {
        RawToleranceEach::deserialize(de::value::MapAccessDeserializer::new(map))
            .map(RawTolerance::Each)
    }
}

/// The errors found in one file, each placed at a line and column.
struct Errors<'a> {
    path: &'a Path,
    /// The file's text, to see how a number was written.
    text: &'a str,
    found: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    /// Record `message` at `location` (the start of the file when the location is unknown).
    fn at(&mut self, location: &Location, message: impl Into<String>) {
        let (line, column) = position(location);
        self.found.push(ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }

    /// The scalar at `location` as the file writes it, when the parser knew where it was.
    fn written(&self, location: &Location) -> Option<&'a str> {
        let span = location.span();
        let start = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len()?).ok()?;
        self.text.get(start..start.checked_add(len)?)
    }

    /// `value` as written (at its anchor when it is an alias), or as the parser read it.
    fn shown<T>(&self, value: &Spanned<T>, read: impl fmt::Display) -> String {
        self.written(&value.defined)
            .map_or_else(|| read.to_string(), str::to_string)
    }

    /// The integer, unless the file writes it in hex, octal or with `_`, which YAML reads as
    /// integers too but which a count should not be; records an error then.
    fn integer(&mut self, value: &Spanned<Integer>, key: &str) -> Option<i64> {
        match self.written(&value.defined) {
            Some(text) if !is_decimal_integer(text) => {
                let message = format!(
                    "{key} `{text}` is not a decimal integer: write it in digits, as {}",
                    value.value.0
                );
                self.at(&value.referenced, message);
                None
            }
            _ => Some(value.value.0),
        }
    }

    /// The number, unless the file writes it in hex, octal or with `_`; records an error then.
    fn number(&mut self, value: &Spanned<Number>, key: &str) -> Option<f64> {
        match self.written(&value.defined) {
            Some(text) if !is_decimal_number(text) && value.value.0.is_finite() => {
                let message = format!(
                    "{key} `{text}` is not a decimal number: write it in digits, as {}",
                    value.value.0
                );
                self.at(&value.referenced, message);
                None
            }
            _ => Some(value.value.0),
        }
    }
}

/// `-12`, `+3`, `40`: decimal digits with an optional sign.
fn is_decimal_integer(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `0.25`, `-1.5e3`, `100`: decimal digits, a point and an exponent, nothing else.
fn is_decimal_number(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
}

/// The 1-based line and column of `location`, or 1:1 when the parser did not know it.
fn position(location: &Location) -> (usize, usize) {
    let line = usize::try_from(location.line()).unwrap_or(usize::MAX);
    let column = usize::try_from(location.column()).unwrap_or(usize::MAX);
    if line == 0 {
        (1, 1)
    } else {
        (line, column.max(1))
    }
}

/// See [`super::parse_rules`].
pub(super) fn parse_rules(path: &Path, text: &str) -> Result<Vec<Rule>, Vec<ConfigError>> {
    let options = serde_saphyr::options! {
        // `name: 123` and `host: true` are errors, not the strings "123" and "true".
        no_schema: true,
        // Only `true` and `false` are booleans, so `host: on` stays a name.
        strict_booleans: true,
        // `.inf` and `.nan` reach validation, which names the key that must be finite.
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
    };
    let raw: RawFile = serde_saphyr::from_str_with_options(text, options)
        .map_err(|err| vec![yaml_error(path, &err)])?;
    let mut errors = Errors {
        path,
        text,
        found: Vec::new(),
    };
    if raw.0.is_empty() {
        errors.at(
            &Location::UNKNOWN,
            "the file holds no rules (write one rule or a list)",
        );
    }
    check_unique_rule_names(&raw.0, &mut errors);
    let rules: Vec<Option<Rule>> = raw
        .0
        .into_iter()
        .map(|rule| validate_rule(rule.value, &mut errors))
        .collect();
    if errors.found.is_empty() {
        Ok(rules.into_iter().flatten().collect())
    } else {
        errors.found.sort_by_key(|error| match error {
            ConfigError::Invalid { line, column, .. } => (*line, *column),
            _ => (0, 0),
        });
        Err(errors.found)
    }
}

/// A YAML syntax or type error, as `file:line:column: message`.
// LIMITATION: serde stops at the first syntax or type error, so such an error comes alone;
// the semantic checks after it (all reported together) run only on a file that deserializes.
fn yaml_error(path: &Path, err: &serde_saphyr::Error) -> ConfigError {
    let (line, column) = err
        .location()
        .map_or((1, 1), |location| position(&location));
    let rendered = err.render_with_options(serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off
    });
    let mut message = rendered.trim().to_string();
    let suffix = format!(" at line {line}, column {column}");
    if let Some(stripped) = message.strip_suffix(&suffix) {
        message = stripped.to_string();
    }
    let prefix = format!("error: line {line} column {column}: ");
    if let Some(stripped) = message.strip_prefix(&prefix) {
        message = stripped.to_string();
    }
    message = match (root_error(err), message.as_str()) {
        // The parser's own wording names an option of the library, not what to do.
        (serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. }, _) => {
            format!("{key} appears twice")
        }
        (serde_saphyr::Error::DuplicateMappingKey { key: None, .. }, _) => {
            "a key appears twice in this mapping".into()
        }
        (serde_saphyr::Error::QuotingRequired { value, .. }, _) => {
            format!("expected text, got {value}: write \"{value}\" if it is meant as text")
        }
        (_, "unexpected end of input") => {
            "the file holds no rules (write one rule or a list)".into()
        }
        _ => message,
    };
    ConfigError::Invalid {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// The error under the parser's wrappers (a source snippet, the alias it came through).
fn root_error(err: &serde_saphyr::Error) -> &serde_saphyr::Error {
    let mut err = err;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = err
    {
        err = error;
    }
    err
}

fn check_unique_rule_names(rules: &[Spanned<RawRule>], errors: &mut Errors<'_>) {
    let mut seen: HashMap<&str, &Location> = HashMap::new();
    for rule in rules {
        let name = &rule.value.name;
        if let Some(first) = seen.get(name.value.as_str()) {
            let (line, _) = position(first);
            errors.at(
                &name.referenced,
                format!(
                    "a rule named `{}` already exists at line {line}",
                    name.value
                ),
            );
        } else {
            seen.insert(&name.value, &name.referenced);
        }
    }
}

/// Validate one raw rule; `None` when an error was recorded.
fn validate_rule(raw: RawRule, errors: &mut Errors<'_>) -> Option<Rule> {
    let before = errors.found.len();

    if !is_plain_name(&raw.name.value) {
        errors.at(
            &raw.name.referenced,
            format!(
                "rule name `{}` may hold only letters, digits, `.`, `_` and `-`",
                raw.name.value
            ),
        );
    }
    let target = validate_target(&raw.target, errors);
    let (min_replicas, max_replicas) =
        validate_bounds(raw.min_replicas.as_ref(), &raw.max_replicas, errors);
    let polling_interval = match &raw.polling_interval {
        Some(text) => positive_duration(text, "pollingInterval", errors),
        None => Some(Duration::from_secs(15)),
    };
    let metrics = validate_metrics(&raw.metrics, errors);
    let behavior = validate_behavior(raw.behavior.as_ref(), errors);
    let tolerance = validate_tolerance(raw.tolerance.as_ref(), errors);
    let fallback = raw
        .fallback
        .as_ref()
        .and_then(|f| validate_fallback(f, min_replicas, max_replicas, errors));

    if errors.found.len() > before {
        return None;
    }
    Some(Rule {
        name: raw.name.value,
        target: target?,
        min_replicas,
        max_replicas,
        polling_interval: polling_interval?,
        metrics,
        behavior: behavior?,
        tolerance: tolerance?,
        fallback,
    })
}

/// `minReplicas` and `maxReplicas`; defaults stand in for bad values so later checks go on.
fn validate_bounds(
    min: Option<&Spanned<Integer>>,
    max: &Spanned<Integer>,
    errors: &mut Errors<'_>,
) -> (u32, u32) {
    let min_value = match min {
        None => Some(1),
        Some(min) => errors
            .integer(min, "minReplicas")
            .and_then(|value| replica_count(min, value, "minReplicas", errors)),
    };
    let max_value = errors
        .integer(max, "maxReplicas")
        .and_then(|value| replica_count(max, value, "maxReplicas", errors));
    if let (Some(min_value), Some(max_value)) = (min_value, max_value)
        && min_value > max_value
    {
        let location = min.map_or(&max.referenced, |min| &min.referenced);
        errors.at(
            location,
            format!("minReplicas {min_value} is greater than maxReplicas {max_value}"),
        );
    }
    let min_value = min_value.unwrap_or(1);
    (min_value, max_value.unwrap_or(min_value))
}

/// `value` as a replica count from 1 to [`MAX_REPLICAS`]; records an error when it is not.
fn replica_count(
    raw: &Spanned<Integer>,
    value: i64,
    key: &str,
    errors: &mut Errors<'_>,
) -> Option<u32> {
    if value == 0 && key == "minReplicas" {
        errors.at(&raw.referenced, NO_SCALE_TO_ZERO);
        return None;
    }
    let count = u32::try_from(value)
        .ok()
        .filter(|_| (1..=MAX_REPLICAS).contains(&value));
    if count.is_none() {
        errors.at(
            &raw.referenced,
            format!("{key} must be from 1 to {MAX_REPLICAS}, not {value}"),
        );
    }
    count
}

fn validate_target(raw: &Spanned<RawTarget>, errors: &mut Errors<'_>) -> Option<RuleTarget> {
    let target = &raw.value;
    match target.platform.value.as_str() {
        "docker" => validate_docker_target(raw, errors),
        "kubernetes" => validate_kubernetes_target(raw, errors),
        other => {
            errors.at(
                &target.platform.referenced,
                format!("unknown platform `{other}`: write `docker` or `kubernetes`"),
            );
            None
        }
    }
}

fn validate_docker_target(raw: &Spanned<RawTarget>, errors: &mut Errors<'_>) -> Option<RuleTarget> {
    let target = &raw.value;
    for (key, value) in [
        ("context", &target.context),
        ("namespace", &target.namespace),
    ] {
        if let Some(value) = value {
            errors.at(
                &value.referenced,
                format!("`{key}` is for kubernetes targets; a docker target has host and workload"),
            );
        }
    }
    let host = required(
        &target.host,
        "host",
        "a docker target",
        &raw.referenced,
        errors,
    )?;
    if !is_plain_name(&host.value) {
        errors.at(
            &host.referenced,
            format!(
                "host `{}` is not a target name (letters, digits, `.`, `_`, `-`, as in \
                 config.toml)",
                host.value
            ),
        );
    }
    let workload = required(
        &target.workload,
        "workload",
        "a docker target",
        &raw.referenced,
        errors,
    )?;
    let parsed = parse_docker_workload(&workload.value);
    if parsed.is_none() {
        errors.at(
            &workload.referenced,
            format!(
                "workload `{}` does not parse: write PROJECT/SERVICE for a Compose service or \
                 NAME for a group or Swarm service",
                workload.value
            ),
        );
    }
    Some(RuleTarget::Docker {
        host: host.value.clone(),
        workload: parsed?,
    })
}

fn validate_kubernetes_target(
    raw: &Spanned<RawTarget>,
    errors: &mut Errors<'_>,
) -> Option<RuleTarget> {
    let target = &raw.value;
    if let Some(host) = &target.host {
        errors.at(
            &host.referenced,
            "`host` is for docker targets; a kubernetes target has context, namespace and workload",
        );
    }
    let what = "a kubernetes target";
    let context = required(&target.context, "context", what, &raw.referenced, errors);
    if let Some(context) = context
        && context.value.trim().is_empty()
    {
        errors.at(&context.referenced, "context must not be empty");
    }
    if let Some(context) = context {
        no_control_chars(context, "context", errors);
    }
    let namespace = required(
        &target.namespace,
        "namespace",
        what,
        &raw.referenced,
        errors,
    );
    if let Some(namespace) = namespace
        && !is_dns_label(&namespace.value)
    {
        errors.at(
            &namespace.referenced,
            format!(
                "namespace `{}` is not a Kubernetes name (lowercase letters, digits and `-`, \
                     at most 63)",
                namespace.value
            ),
        );
    }
    let workload = required(&target.workload, "workload", what, &raw.referenced, errors)?;
    let parsed = parse_kube_workload(&workload.value);
    if parsed.is_none() {
        errors.at(
            &workload.referenced,
            format!(
                "workload `{}` does not parse: write deployment/NAME or statefulset/NAME",
                workload.value
            ),
        );
    }
    let (kind, name) = parsed?;
    Some(RuleTarget::Kubernetes {
        context: context?.value.clone(),
        namespace: namespace?.value.clone(),
        kind,
        name,
    })
}

/// Record an error when `value` holds a control character other than a line break or a tab
/// (which a multi-line query may hold): such text is a terminal's command, never PromQL or a
/// name, and would act on whoever reads it in a decision or a log.
fn no_control_chars(value: &Spanned<String>, key: &str, errors: &mut Errors<'_>) {
    if let Some(c) = value
        .value
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        errors.at(
            &value.referenced,
            format!(
                "{key} holds the control character U+{:04X}; remove it",
                u32::from(c)
            ),
        );
    }
}

/// `value`, or an error at `parent` saying `key` is missing from `what`.
fn required<'v>(
    value: &'v Option<Spanned<String>>,
    key: &str,
    what: &str,
    parent: &Location,
    errors: &mut Errors<'_>,
) -> Option<&'v Spanned<String>> {
    if value.is_none() {
        errors.at(parent, format!("{what} needs `{key}`"));
    }
    value.as_ref()
}

/// `PROJECT/SERVICE` or `NAME`, each part a Docker name.
pub(super) fn parse_docker_workload(text: &str) -> Option<DockerWorkload> {
    let is_docker_name = |part: &str| {
        part.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    match text.split_once('/') {
        Some((project, service)) => {
            (is_docker_name(project) && is_docker_name(service)).then(|| DockerWorkload::Compose {
                project: project.to_string(),
                service: service.to_string(),
            })
        }
        None => is_docker_name(text).then(|| DockerWorkload::Named(text.to_string())),
    }
}

/// `deployment/NAME` or `statefulset/NAME`, NAME a DNS-1123 subdomain.
pub(super) fn parse_kube_workload(text: &str) -> Option<(KubeKind, String)> {
    let (kind, name) = text.split_once('/')?;
    let kind = match kind {
        "deployment" | "deployments" | "deploy" => KubeKind::Deployment,
        "statefulset" | "statefulsets" | "sts" => KubeKind::StatefulSet,
        _ => return None,
    };
    let valid = !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label);
    valid.then(|| (kind, name.to_string()))
}

/// A DNS-1123 label: lowercase letters, digits and `-`, starting and ending alphanumeric.
fn is_dns_label(text: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !text.is_empty()
        && text.len() <= 63
        && text.chars().all(|c| alnum(c) || c == '-')
        && text.chars().next().is_some_and(alnum)
        && text.chars().last().is_some_and(alnum)
}

fn validate_metrics(
    raw: &Spanned<Vec<Spanned<RawMetric>>>,
    errors: &mut Errors<'_>,
) -> Vec<Metric> {
    if raw.value.is_empty() {
        errors.at(&raw.referenced, "a rule needs at least one metric");
    }
    let mut seen: HashMap<&str, &Location> = HashMap::new();
    let mut metrics = Vec::new();
    for metric in &raw.value {
        let name = &metric.value.name;
        if let Some(first) = seen.get(name.value.as_str()) {
            let (line, _) = position(first);
            errors.at(
                &name.referenced,
                format!(
                    "a metric named `{}` already exists at line {line}",
                    name.value
                ),
            );
        } else {
            seen.insert(&name.value, &name.referenced);
        }
        if let Some(metric) = validate_metric(metric, errors) {
            metrics.push(metric);
        }
    }
    metrics
}

fn validate_metric(raw: &Spanned<RawMetric>, errors: &mut Errors<'_>) -> Option<Metric> {
    let metric = &raw.value;
    let name = &metric.name;
    if !is_plain_name(&name.value) {
        errors.at(
            &name.referenced,
            format!(
                "metric name `{}` may hold only letters, digits, `.`, `_` and `-`",
                name.value
            ),
        );
    }
    let source = match (&metric.prometheus, &metric.cpu) {
        (Some(prometheus), None) => validate_prometheus(prometheus, errors),
        (None, Some(cpu)) => validate_cpu(cpu, errors),
        (Some(_), Some(cpu)) => {
            errors.at(
                &cpu.referenced,
                format!(
                    "metric `{}` has two sources; give it either `prometheus` or `cpu`",
                    name.value
                ),
            );
            None
        }
        (None, None) => {
            errors.at(
                &name.referenced,
                format!(
                    "metric `{}` has no source; give it `prometheus: {{ query, type, target }}` \
                     or `cpu: {{ utilization }}`",
                    name.value
                ),
            );
            None
        }
    }?;
    Some(Metric {
        name: name.value.clone(),
        source,
    })
}

fn validate_prometheus(
    raw: &Spanned<RawPrometheus>,
    errors: &mut Errors<'_>,
) -> Option<MetricSource> {
    let prometheus = &raw.value;
    let before = errors.found.len();
    if let Some(address) = &prometheus.server_address {
        let text = address.value.as_str();
        let has_host = ["http://", "https://"].iter().any(|scheme| {
            text.strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty())
        });
        if !has_host {
            errors.at(
                &address.referenced,
                format!("serverAddress `{text}` must be an http:// or https:// URL"),
            );
        }
        no_control_chars(address, "serverAddress", errors);
    }
    if prometheus.query.value.trim().is_empty() {
        errors.at(&prometheus.query.referenced, "query must not be empty");
    }
    no_control_chars(&prometheus.query, "query", errors);
    let target = target_number(&prometheus.target, "target", errors);
    if errors.found.len() > before {
        return None;
    }
    Some(MetricSource::Prometheus {
        server_address: prometheus.server_address.as_ref().map(|a| a.value.clone()),
        query: prometheus.query.value.clone(),
        kind: prometheus.kind.value,
        target: target?,
    })
}

fn validate_cpu(raw: &Spanned<RawCpu>, errors: &mut Errors<'_>) -> Option<MetricSource> {
    let utilization = target_number(&raw.value.utilization, "utilization", errors)?;
    Some(MetricSource::Cpu { utilization })
}

/// A target: a finite number of at least [`MIN_TARGET`]; records an error when it is not.
fn target_number(value: &Spanned<Number>, key: &str, errors: &mut Errors<'_>) -> Option<f64> {
    let number = errors.number(value, key)?;
    let good = number.is_finite() && number >= MIN_TARGET;
    if !good {
        let shown = errors.shown(value, number);
        errors.at(
            &value.referenced,
            format!("{key} must be a number of at least {MIN_TARGET}, not {shown}"),
        );
    }
    good.then_some(number)
}

fn validate_behavior(
    raw: Option<&Spanned<RawBehavior>>,
    errors: &mut Errors<'_>,
) -> Option<Behavior> {
    let (up, down) = match raw {
        Some(raw) => (raw.value.scale_up.as_ref(), raw.value.scale_down.as_ref()),
        None => (None, None),
    };
    let scale_up = validate_scaling(up, Behavior::default_scale_up(), "scaleUp", errors);
    let scale_down = validate_scaling(down, Behavior::default_scale_down(), "scaleDown", errors);
    Some(Behavior {
        scale_up: scale_up?,
        scale_down: scale_down?,
    })
}

/// One direction's rules; each field left out takes its HPA default from `defaults`.
fn validate_scaling(
    raw: Option<&Spanned<RawScaling>>,
    defaults: ScalingRules,
    direction: &str,
    errors: &mut Errors<'_>,
) -> Option<ScalingRules> {
    let Some(raw) = raw else {
        return Some(defaults);
    };
    let raw = &raw.value;
    let before = errors.found.len();
    let stabilization_window = match &raw.stabilization_window {
        Some(text) => duration(text, &format!("{direction}.stabilizationWindow"), errors),
        None => Some(defaults.stabilization_window),
    };
    let select_policy = raw
        .select_policy
        .as_ref()
        .map_or(defaults.select_policy, |p| p.value);
    let policies = match &raw.policies {
        // As in HPA v2, an empty list means the default policies.
        Some(policies) if !policies.is_empty() => policies
            .iter()
            .filter_map(|policy| validate_policy(policy, direction, errors))
            .collect(),
        _ => defaults.policies,
    };
    if errors.found.len() > before {
        return None;
    }
    Some(ScalingRules {
        stabilization_window: stabilization_window?,
        select_policy,
        policies,
    })
}

fn validate_policy(
    raw: &Spanned<RawPolicy>,
    direction: &str,
    errors: &mut Errors<'_>,
) -> Option<Policy> {
    let policy = &raw.value;
    let (limit, unit) = match policy.kind.value {
        PolicyKind::Pods => (MAX_POLICY_PODS, "replicas"),
        PolicyKind::Percent => (MAX_POLICY_PERCENT, "%"),
    };
    let key = format!("{direction} policy value");
    let value = errors.integer(&policy.value, &key).and_then(|value| {
        let good = u32::try_from(value)
            .ok()
            .filter(|_| (1..=limit).contains(&value));
        if good.is_none() {
            errors.at(
                &policy.value.referenced,
                format!(
                    "{key} must be from 1 to {limit} {unit} for a {:?} policy, not {value}",
                    policy.kind.value
                ),
            );
        }
        good
    });
    let period = positive_duration(
        &policy.period,
        &format!("{direction} policy period"),
        errors,
    );
    Some(Policy {
        kind: policy.kind.value,
        value: value?,
        period: period?,
    })
}

fn validate_tolerance(
    raw: Option<&Spanned<RawTolerance>>,
    errors: &mut Errors<'_>,
) -> Option<Tolerance> {
    let Some(raw) = raw else {
        return Some(Tolerance::default());
    };
    let defaults = Tolerance::default();
    let mut each = |value: Option<&Spanned<Number>>, default: f64, key: &str| match value {
        None => Some(default),
        Some(value) => errors.number(value, key),
    };
    let tolerance = match &raw.value {
        RawTolerance::One(value) => {
            // A lone number: the whole value is the scalar, so its span is the number's.
            let number = Spanned::new(Number(*value), raw.referenced, raw.defined);
            let value = errors.number(&number, "tolerance")?;
            Tolerance {
                scale_up: value,
                scale_down: value,
            }
        }
        RawTolerance::Each(values) => {
            let scale_up = each(values.scale_up.as_ref(), defaults.scale_up, "scaleUp");
            let scale_down = each(values.scale_down.as_ref(), defaults.scale_down, "scaleDown");
            Tolerance {
                scale_up: scale_up?,
                scale_down: scale_down?,
            }
        }
    };
    let good = |v: f64| v.is_finite() && v >= 0.0;
    if good(tolerance.scale_up) && good(tolerance.scale_down) {
        Some(tolerance)
    } else {
        errors.at(
            &raw.referenced,
            "tolerance must be a finite number, 0 or more (0.1 is 10 %)",
        );
        None
    }
}

fn validate_fallback(
    raw: &Spanned<RawFallback>,
    min: u32,
    max: u32,
    errors: &mut Errors<'_>,
) -> Option<Fallback> {
    let fallback = &raw.value;
    let threshold = &fallback.failure_threshold;
    let failure_threshold = errors
        .integer(threshold, "failureThreshold")
        .and_then(|value| {
            let good = u32::try_from(value)
                .ok()
                .filter(|_| value <= MAX_FAILURE_THRESHOLD);
            if good.is_none() {
                errors.at(
                    &threshold.referenced,
                    format!(
                        "failureThreshold must be from 0 to {MAX_FAILURE_THRESHOLD}, not {value}"
                    ),
                );
            }
            good
        });
    let replicas = &fallback.replicas;
    let in_range = errors
        .integer(replicas, "fallback replicas")
        .and_then(|value| {
            let good = u32::try_from(value)
                .ok()
                .filter(|r| (min..=max).contains(r));
            if good.is_none() {
                errors.at(
                &replicas.referenced,
                format!(
                    "fallback replicas {value} is outside minReplicas..maxReplicas ({min}..{max})"
                ),
            );
            }
            good
        });
    Some(Fallback {
        failure_threshold: failure_threshold?,
        replicas: in_range?,
    })
}

/// A duration above zero.
fn positive_duration(
    text: &Spanned<DurationText>,
    key: &str,
    errors: &mut Errors<'_>,
) -> Option<Duration> {
    let value = duration(text, key, errors)?;
    if value.is_zero() {
        errors.at(&text.referenced, format!("{key} must be longer than 0s"));
        return None;
    }
    Some(value)
}

/// A duration like `15s`, `5m` or `1h30m`; records an error at its position when it is not.
fn duration(text: &Spanned<DurationText>, key: &str, errors: &mut Errors<'_>) -> Option<Duration> {
    match parse_duration(&text.value.0) {
        Ok(value) => Some(value),
        Err(why) => {
            errors.at(&text.referenced, format!("{key} `{}` {why}", text.value.0));
            None
        }
    }
}

/// Parse `1h30m`, `300s`, `0s`: whole numbers with `h`, `m`, `s`, largest unit first, at most
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    const FORMAT: &str = "is not a duration: write whole hours, minutes and seconds like 15s, 5m, \
                          1h30m";
    const TOO_LONG: &str = "is too long: write at most 24h";
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(FORMAT);
    }
    let mut total: u64 = 0;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or(FORMAT)?;
        let unit = match rest[digits..].chars().next() {
            Some('h') => 3600,
            Some('m') => 60,
            Some('s') => 1,
            _ => return Err(FORMAT),
        };
        if digits == 0 || unit >= last_unit {
            return Err(FORMAT);
        }
        last_unit = unit;
        // Nothing but digits, so a number that does not parse is too large for a u64.
        let number: u64 = rest[..digits].parse().map_err(|_| TOO_LONG)?;
        total = number
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or(TOO_LONG)?;
        rest = &rest[digits + 1..];
    }
    let value = Duration::from_secs(total);
    if value > MAX_DURATION {
        return Err(TOO_LONG);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{WorkloadId, WorkloadKind};

    fn parse(text: &str) -> Result<Vec<Rule>, Vec<String>> {
        parse_rules(Path::new("r.yaml"), text)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    const MINIMAL: &str = "name: web\ntarget: { platform: docker, host: local, workload: web }\n\
                           maxReplicas: 4\nmetrics:\n  - name: cpu\n    cpu: { utilization: 70 }\n";

    #[test]
    fn a_rule_left_to_defaults_gets_the_hpa_v2_defaults() {
        let rules = parse(MINIMAL).unwrap();
        let rule = &rules[0];
        assert_eq!(rule.min_replicas, 1);
        assert_eq!(rule.polling_interval, Duration::from_secs(15));
        assert_eq!(rule.behavior, Behavior::default());
        assert_eq!(
            rule.behavior.scale_down.stabilization_window,
            Duration::from_secs(300)
        );
        assert_eq!(rule.behavior.scale_up.policies.len(), 2);
        assert_eq!(
            rule.tolerance,
            Tolerance {
                scale_up: 0.1,
                scale_down: 0.1
            }
        );
        assert_eq!(rule.fallback, None);
    }

    #[test]
    fn a_direction_given_in_part_keeps_the_defaults_of_the_rest() {
        let text = format!("{MINIMAL}behavior:\n  scaleDown: {{ stabilizationWindow: 1m }}\n");
        let rule = &parse(&text).unwrap()[0];
        assert_eq!(
            rule.behavior.scale_down.stabilization_window,
            Duration::from_secs(60)
        );
        assert_eq!(
            rule.behavior.scale_down.policies,
            Behavior::default_scale_down().policies
        );
        assert_eq!(rule.behavior.scale_down.select_policy, SelectPolicy::Max);
    }

    #[test]
    fn durations_take_hours_minutes_and_seconds_largest_first() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "15", "", "s", "1m1h", "5m5m", "1.5s", "-5s", "25h", "10ms", "h5s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn workloads_parse_per_platform() {
        assert_eq!(
            parse_docker_workload("shop/web"),
            Some(DockerWorkload::Compose {
                project: "shop".into(),
                service: "web".into()
            })
        );
        assert_eq!(
            parse_docker_workload("web"),
            Some(DockerWorkload::Named("web".into()))
        );
        for bad in ["", "/web", "shop/", "a/b/c", "we b", "-web"] {
            assert_eq!(parse_docker_workload(bad), None, "{bad}");
        }
        assert_eq!(
            parse_kube_workload("deployment/api"),
            Some((KubeKind::Deployment, "api".into()))
        );
        for bad in [
            "api",
            "daemonset/api",
            "deployment/",
            "deployment/API",
            "deployment/a_b",
        ] {
            assert_eq!(parse_kube_workload(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_kubernetes_target_matches_its_workload_by_context_namespace_kind_and_name() {
        let target = RuleTarget::Kubernetes {
            context: "prod eu".into(),
            namespace: "shop".into(),
            kind: KubeKind::Deployment,
            name: "web".into(),
        };
        let id = |target: &str, kind, name: &str| WorkloadId {
            target: target.into(),
            kind,
            name: name.into(),
        };
        assert!(target.matches(&id("prod eu", WorkloadKind::Deployment, "shop/web")));
        assert!(!target.matches(&id("prod", WorkloadKind::Deployment, "shop/web")));
        assert!(!target.matches(&id("prod eu", WorkloadKind::StatefulSet, "shop/web")));
        assert!(!target.matches(&id("prod eu", WorkloadKind::Deployment, "pay/web")));
        assert!(!target.matches(&id("prod eu", WorkloadKind::Deployment, "shop/web2")));
        assert_eq!(target.target_name(), "prod eu");
        assert_eq!(target.workload_name(), "shop/web");
    }

    #[test]
    fn semantic_errors_point_at_the_offending_value() {
        let text = "name: web\ntarget: { platform: docker, host: local, workload: web }\n\
                    minReplicas: 5\nmaxReplicas: 4\nmetrics:\n  - name: cpu\n    cpu: { utilization: 0 }\n";
        assert_eq!(
            parse(text).unwrap_err(),
            vec![
                "r.yaml:3:14: minReplicas 5 is greater than maxReplicas 4".to_string(),
                "r.yaml:7:25: utilization must be a number of at least 0.001, not 0".to_string(),
            ]
        );
    }

    #[test]
    fn a_target_rejects_the_keys_of_the_other_platform() {
        let text = MINIMAL.replace("host: local", "host: local, namespace: shop");
        assert_eq!(
            parse(&text).unwrap_err(),
            vec![
                "r.yaml:2:53: `namespace` is for kubernetes targets; a docker target has host \
                 and workload"
                    .to_string()
            ]
        );
    }

    #[test]
    fn a_type_error_names_its_line_and_column_without_the_parser_wrapping() {
        let text = MINIMAL.replace("maxReplicas: 4", "maxReplicas: four");
        assert_eq!(
            parse(&text).unwrap_err(),
            vec!["r.yaml:3:14: expected an integer, got the string \"four\""]
        );
    }

    /// The one error `MINIMAL` with `from` replaced by `to` gives.
    fn only_error(from: &str, to: &str) -> String {
        assert!(MINIMAL.contains(from), "{from}");
        let mut errors = parse(&MINIMAL.replace(from, to)).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0)
    }

    #[test]
    fn a_quoted_number_is_a_string_and_not_a_count() {
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: \"0x10\""),
            "r.yaml:3:14: expected an integer, got the string \"0x10\""
        );
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: 4\nminReplicas: '2'"),
            "r.yaml:4:14: expected an integer, got the string \"2\""
        );
        assert_eq!(
            only_error("utilization: 70", "utilization: \"70\""),
            "r.yaml:6:25: expected a number, got the string \"70\""
        );
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: 2.5"),
            "r.yaml:3:14: expected an integer, got 2.5"
        );
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: 1e3"),
            "r.yaml:3:14: expected an integer, got 1000 written as a float"
        );
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: true"),
            "r.yaml:3:14: expected an integer, got true"
        );
    }

    #[test]
    fn hex_octal_and_underscores_are_not_read_as_numbers() {
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: 0x10"),
            "r.yaml:3:14: maxReplicas `0x10` is not a decimal integer: write it in digits, as 16"
        );
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: 4\nminReplicas: 0o2"),
            "r.yaml:4:14: minReplicas `0o2` is not a decimal integer: write it in digits, as 2"
        );
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: 1_000"),
            "r.yaml:3:14: maxReplicas `1_000` is not a decimal integer: write it in digits, as \
             1000"
        );
        assert_eq!(
            only_error("utilization: 70", "utilization: 0x46"),
            "r.yaml:6:25: utilization `0x46` is not a decimal number: write it in digits, as 70"
        );
    }

    #[test]
    fn a_decimal_number_reached_through_an_alias_is_read() {
        let text = MINIMAL.replace("maxReplicas: 4", "minReplicas: &n 3\nmaxReplicas: *n");
        let rule = &parse(&text).unwrap()[0];
        assert_eq!((rule.min_replicas, rule.max_replicas), (3, 3));
        let text = format!("{MINIMAL}tolerance: 0.25\n");
        assert_eq!(parse(&text).unwrap()[0].tolerance.scale_up, 0.25);
        let text = format!("{MINIMAL}tolerance: '0.25'\n");
        assert_eq!(
            parse(&text).unwrap_err(),
            vec!["r.yaml:7:12: expected a number, got the string \"0.25\""]
        );
    }

    #[test]
    fn a_name_that_yaml_reads_as_a_number_or_boolean_must_be_quoted() {
        assert_eq!(
            only_error("name: web", "name: 123"),
            "r.yaml:1:7: expected text, got 123: write \"123\" if it is meant as text"
        );
        assert_eq!(
            only_error("name: web", "name: true"),
            "r.yaml:1:7: expected text, got true: write \"true\" if it is meant as text"
        );
        assert_eq!(
            parse(&MINIMAL.replace("name: web", "name: \"123\"")).unwrap()[0].name,
            "123"
        );
    }

    #[test]
    fn min_replicas_zero_is_refused_at_its_position() {
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: 4\nminReplicas: 0"),
            format!("r.yaml:4:14: {NO_SCALE_TO_ZERO}")
        );
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: 4\nminReplicas: -1"),
            "r.yaml:4:14: minReplicas must be from 1 to 100000, not -1"
        );
    }

    #[test]
    fn counts_policies_and_targets_are_bounded() {
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: 100001"),
            "r.yaml:3:14: maxReplicas must be from 1 to 100000, not 100001"
        );
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: 99999999999999999999"),
            "r.yaml:3:14: expected an integer, got 1e20, which is too large"
        );
        assert!(parse(&MINIMAL.replace("maxReplicas: 4", "maxReplicas: 100000")).is_ok());
        let policy = |kind: &str, value: &str| {
            let text = format!(
                "{MINIMAL}behavior:\n  scaleUp: {{ policies: [{{ type: {kind}, value: {value}, \
                 period: 15s }}] }}\n"
            );
            parse(&text)
        };
        assert!(policy("Percent", "10000").is_ok());
        assert!(policy("Pods", "100000").is_ok());
        assert_eq!(
            policy("Percent", "4294967295").unwrap_err(),
            vec![
                "r.yaml:8:49: scaleUp policy value must be from 1 to 10000 % for a Percent \
                 policy, not 4294967295"
            ]
        );
        assert_eq!(
            policy("Pods", "100001").unwrap_err(),
            vec![
                "r.yaml:8:46: scaleUp policy value must be from 1 to 100000 replicas for a Pods \
                 policy, not 100001"
            ]
        );
        assert_eq!(
            only_error("utilization: 70", "utilization: 1e-320"),
            "r.yaml:6:25: utilization must be a number of at least 0.001, not 1e-320"
        );
        assert_eq!(
            only_error("utilization: 70", "utilization: .inf"),
            "r.yaml:6:25: utilization must be a number of at least 0.001, not .inf"
        );
        assert_eq!(
            only_error("utilization: 70", "utilization: .nan"),
            "r.yaml:6:25: utilization must be a number of at least 0.001, not .nan"
        );
    }

    #[test]
    fn a_duration_too_large_to_count_is_too_long_and_a_bare_number_lacks_a_unit() {
        assert_eq!(
            parse_duration("99999999999999999999h"),
            Err("is too long: write at most 24h")
        );
        assert_eq!(parse_duration("25h"), Err("is too long: write at most 24h"));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(
            only_error(
                "maxReplicas: 4",
                "maxReplicas: 4\npollingInterval: 99999999999999999999h"
            ),
            "r.yaml:4:18: pollingInterval `99999999999999999999h` is too long: write at most 24h"
        );
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: 4\npollingInterval: 15"),
            "r.yaml:4:18: pollingInterval `15` is not a duration: write whole hours, minutes and \
             seconds like 15s, 5m, 1h30m"
        );
    }

    #[test]
    fn a_query_with_a_control_character_is_refused_without_quoting_it() {
        let text = "name: web\ntarget: { platform: docker, host: local, workload: web }\n\
                    maxReplicas: 4\nmetrics:\n  - name: rps\n    prometheus: { query: \
                    \"up\\e]52;c;aGk=\\a\", type: Value, target: 1 }\n";
        assert_eq!(
            parse(text).unwrap_err(),
            vec!["r.yaml:6:26: query holds the control character U+001B; remove it"]
        );
        let multi_line = "name: web\ntarget: { platform: docker, host: local, workload: web }\n\
                          maxReplicas: 4\nmetrics:\n  - name: rps\n    prometheus:\n      \
                          query: |\n        sum(\n          up)\n      type: Value\n      \
                          target: 1\n";
        assert!(parse(multi_line).is_ok());
    }

    #[test]
    fn a_key_given_twice_says_so_at_the_second() {
        assert_eq!(
            only_error("maxReplicas: 4", "maxReplicas: 4\nmaxReplicas: 5"),
            "r.yaml:4:1: maxReplicas appears twice"
        );
    }

    #[test]
    fn an_empty_file_holds_no_rules() {
        assert_eq!(
            parse("# nothing\n").unwrap_err(),
            vec!["r.yaml:2:1: the file holds no rules (write one rule or a list)"]
        );
        assert_eq!(
            parse("[]\n").unwrap_err(),
            vec!["r.yaml:1:1: the file holds no rules (write one rule or a list)"]
        );
    }
}
