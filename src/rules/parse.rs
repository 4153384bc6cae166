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

/// What a file holds: one rule, or a list of them.
struct RawFile(Vec<Spanned<RawRule>>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    name: Spanned<String>,
    target: Spanned<RawTarget>,
    #[serde(default)]
    min_replicas: Option<Spanned<i64>>,
    max_replicas: Spanned<i64>,
    #[serde(default)]
    polling_interval: Option<Spanned<String>>,
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
    target: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCpu {
    utilization: Spanned<f64>,
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
    stabilization_window: Option<Spanned<String>>,
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
    value: Spanned<i64>,
    period: Spanned<String>,
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
    scale_up: Option<f64>,
    #[serde(default)]
    scale_down: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFallback {
    failure_threshold: Spanned<i64>,
    replicas: Spanned<i64>,
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

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTolerance, A::Error> {
        RawToleranceEach::deserialize(de::value::MapAccessDeserializer::new(map))
            .map(RawTolerance::Each)
    }
}

/// The errors found in one file, each placed at a line and column.
struct Errors<'a> {
    path: &'a Path,
    found: Vec<ConfigError>,
}

impl Errors<'_> {
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
    let raw: RawFile = serde_saphyr::from_str(text).map_err(|err| vec![yaml_error(path, &err)])?;
    let mut errors = Errors {
        path,
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
    message = match message.as_str() {
        "unexpected end of input" => "the file holds no rules (write one rule or a list)".into(),
        "invalid i64" | "invalid u64" => "expected a whole number".into(),
        "invalid floating point" => "expected a number".into(),
        _ => message,
    };
    ConfigError::Invalid {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
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
    min: Option<&Spanned<i64>>,
    max: &Spanned<i64>,
    errors: &mut Errors<'_>,
) -> (u32, u32) {
    let min_value = match min {
        None => 1,
        Some(min) => match u32::try_from(min.value) {
            Ok(value) => value,
            Err(_) => {
                errors.at(
                    &min.referenced,
                    format!("minReplicas must be 0 or more, not {}", min.value),
                );
                1
            }
        },
    };
    let max_value = match u32::try_from(max.value) {
        Ok(value) if value >= 1 => value,
        _ => {
            errors.at(
                &max.referenced,
                format!("maxReplicas must be 1 or more, not {}", max.value),
            );
            return (min_value, min_value.max(1));
        }
    };
    if min_value > max_value {
        let location = min.map_or(&max.referenced, |min| &min.referenced);
        errors.at(
            location,
            format!("minReplicas {min_value} is greater than maxReplicas {max_value}"),
        );
    }
    (min_value, max_value)
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
    }
    if prometheus.query.value.trim().is_empty() {
        errors.at(&prometheus.query.referenced, "query must not be empty");
    }
    positive_number(&prometheus.target, "target", errors);
    if errors.found.len() > before {
        return None;
    }
    Some(MetricSource::Prometheus {
        server_address: prometheus.server_address.as_ref().map(|a| a.value.clone()),
        query: prometheus.query.value.clone(),
        kind: prometheus.kind.value,
        target: prometheus.target.value,
    })
}

fn validate_cpu(raw: &Spanned<RawCpu>, errors: &mut Errors<'_>) -> Option<MetricSource> {
    let utilization = &raw.value.utilization;
    positive_number(utilization, "utilization", errors).then_some(MetricSource::Cpu {
        utilization: utilization.value,
    })
}

/// Whether `value` is a finite number above 0; records an error when it is not.
fn positive_number(value: &Spanned<f64>, key: &str, errors: &mut Errors<'_>) -> bool {
    let good = value.value.is_finite() && value.value > 0.0;
    if !good {
        errors.at(
            &value.referenced,
            format!("{key} must be a number greater than 0, not {}", value.value),
        );
    }
    good
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
    let value = match u32::try_from(policy.value.value) {
        Ok(value) if value > 0 => Some(value),
        _ => {
            errors.at(
                &policy.value.referenced,
                format!(
                    "{direction} policy value must be greater than 0, not {}",
                    policy.value.value
                ),
            );
            None
        }
    };
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
    let tolerance = match &raw.value {
        RawTolerance::One(value) => Tolerance {
            scale_up: *value,
            scale_down: *value,
        },
        RawTolerance::Each(each) => Tolerance {
            scale_up: each.scale_up.unwrap_or(defaults.scale_up),
            scale_down: each.scale_down.unwrap_or(defaults.scale_down),
        },
    };
    let good = |v: f64| v.is_finite() && v >= 0.0;
    if good(tolerance.scale_up) && good(tolerance.scale_down) {
        Some(tolerance)
    } else {
        errors.at(&raw.referenced, "tolerance must be 0 or more (0.1 is 10 %)");
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
    let failure_threshold = u32::try_from(threshold.value).ok();
    if failure_threshold.is_none() {
        errors.at(
            &threshold.referenced,
            format!(
                "failureThreshold must be 0 or more, not {}",
                threshold.value
            ),
        );
    }
    let replicas = &fallback.replicas;
    let in_range = u32::try_from(replicas.value)
        .ok()
        .filter(|r| (min..=max).contains(r));
    if in_range.is_none() {
        errors.at(
            &replicas.referenced,
            format!(
                "fallback replicas {} is outside minReplicas..maxReplicas ({min}..{max})",
                replicas.value
            ),
        );
    }
    Some(Fallback {
        failure_threshold: failure_threshold?,
        replicas: in_range?,
    })
}

/// A duration above zero.
fn positive_duration(
    text: &Spanned<String>,
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
fn duration(text: &Spanned<String>, key: &str, errors: &mut Errors<'_>) -> Option<Duration> {
    match parse_duration(&text.value) {
        Ok(value) => Some(value),
        Err(why) => {
            errors.at(&text.referenced, format!("{key} `{}` {why}", text.value));
            None
        }
    }
}

/// Parse `1h30m`, `300s`, `0s`: whole numbers with `h`, `m`, `s`, largest unit first.
pub(super) fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    const FORMAT: &str = "is not a duration: write whole hours, minutes and seconds like 15s, 5m, \
                          1h30m";
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(FORMAT);
    }
    let mut total: u64 = 0;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or(FORMAT)?;
        let number: u64 = rest[..digits].parse().map_err(|_| FORMAT)?;
        let unit = match rest[digits..].chars().next() {
            Some('h') => 3600,
            Some('m') => 60,
            Some('s') => 1,
            _ => return Err(FORMAT),
        };
        if unit >= last_unit {
            return Err(FORMAT);
        }
        last_unit = unit;
        total = number
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or("is longer than 24h")?;
        rest = &rest[digits + 1..];
    }
    let value = Duration::from_secs(total);
    if value > MAX_DURATION {
        return Err("is longer than 24h");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for bad in ["15", "", "s", "1m1h", "5m5m", "1.5s", "-5s", "25h", "10ms"] {
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
    fn semantic_errors_point_at_the_offending_value() {
        let text = "name: web\ntarget: { platform: docker, host: local, workload: web }\n\
                    minReplicas: 5\nmaxReplicas: 4\nmetrics:\n  - name: cpu\n    cpu: { utilization: 0 }\n";
        assert_eq!(
            parse(text).unwrap_err(),
            vec![
                "r.yaml:3:14: minReplicas 5 is greater than maxReplicas 4".to_string(),
                "r.yaml:7:25: utilization must be a number greater than 0, not 0".to_string(),
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
            vec!["r.yaml:3:14: expected a whole number"]
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
