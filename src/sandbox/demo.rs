//! The demo's cluster and rules: what `pilothouse demo` loads into the sandbox so that a
//! newcomer sees the autoscaler follow rising traffic, a burst, an HPA-managed workload left
//! alone, and a bad rollout roll back, all within a minute.
//!
//! Timing is chosen for the demo's clock: [`SPEED`] simulated seconds per wall second, starting
//! at [`START_SECONDS_OF_DAY`]. At that speed and start, `shop/web`'s first burst begins about
//! six wall seconds in and lasts thirty. Not for tests of the Kubernetes platform: they build
//! the objects they need themselves.

use serde_json::{Value, json};

use super::traffic::ANNOTATION;

/// The demo's default traffic speed: a simulated hour per wall minute.
pub const SPEED: f64 = 60.0;

/// The simulated time of day the demo's clock starts at: 09:00, traffic rising towards the
/// afternoon peak.
pub const START_SECONDS_OF_DAY: f64 = 9.0 * 3600.0;

/// The image a rollout of `shop/web` to never becomes Ready, so it fails and rolls back.
pub const BAD_IMAGE: &str = "sandbox/web:1.5-unhealthy";

/// The image `shop/web` runs at the start.
pub const WEB_IMAGE: &str = "sandbox/web:1.4";

/// `shop/web`'s traffic: 200 requests/s at 09:00 rising towards 300 at 14:00, tripled for
/// 1800 simulated seconds (30 s of wall time at [`SPEED`]) once an hour; seed 19 puts the
/// first burst about 6 wall seconds after the start.
const WEB_TRAFFIC: &str = "base=30,peak=300,peakHour=14,burst=3x/1800s/3600s,seed=19";

/// The namespaces, Deployments, StatefulSet and HPA of the demo, as Kubernetes JSON.
pub fn objects() -> Vec<Value> {
    vec![
        namespace("shop"),
        namespace("payments"),
        namespace("batch"),
        deployment(&App {
            namespace: "shop",
            name: "web",
            image: WEB_IMAGE,
            replicas: 3,
            cpu: "100m",
            traffic: WEB_TRAFFIC,
        }),
        deployment(&App {
            namespace: "shop",
            name: "api",
            image: "sandbox/api:2.1",
            replicas: 2,
            cpu: "200m",
            traffic: "base=40,peak=200,peakHour=13,cost=2",
        }),
        deployment(&App {
            namespace: "payments",
            name: "checkout",
            image: "sandbox/checkout:3.0",
            replicas: 2,
            cpu: "100m",
            traffic: "base=10,peak=60,peakHour=18,burst=2x/600s/2400s,seed=3",
        }),
        hpa("payments", "checkout"),
        statefulset(&App {
            namespace: "batch",
            name: "queue",
            image: "sandbox/queue:0.9",
            replicas: 2,
            cpu: "250m",
            traffic: "base=5,peak=80,peakHour=3,cost=5",
        }),
    ]
}

/// One scaling rule per demo workload, as (file name, YAML text), for the kubeconfig context
/// `context`; the Prometheus server is the default one (the sandbox's own endpoint).
pub fn rules(context: &str) -> Vec<(String, String)> {
    let context = yaml_quoted(context);
    vec![
        rule(
            "shop-web",
            &context,
            "shop",
            "deployment/web",
            (2, 10),
            &rps_metric("shop", "web", 50),
        ),
        rule(
            "shop-api",
            &context,
            "shop",
            "deployment/api",
            (1, 8),
            CPU_METRIC,
        ),
        // An HPA already scales checkout: Pilothouse says so and leaves it alone.
        rule(
            "payments-checkout",
            &context,
            "payments",
            "deployment/checkout",
            (2, 6),
            CPU_METRIC,
        ),
        rule(
            "batch-queue",
            &context,
            "batch",
            "statefulset/queue",
            (1, 6),
            &rps_metric("batch", "queue", 20),
        ),
    ]
}

/// A metric on CPU use, 60 % of each pod's CPU (the demo's limits equal its requests).
const CPU_METRIC: &str = "  - name: cpu\n    cpu: { utilization: 60 }\n";

/// A metric on a workload's request rate over the last 15 s, `per_replica` requests/s each.
fn rps_metric(namespace: &str, workload: &str, per_replica: u32) -> String {
    format!(
        "  - name: rps\n    prometheus:\n      query: 'sum(rate(sandbox_http_requests_total\
         {{namespace=\"{namespace}\",workload=\"{workload}\"}}[15s]))'\n      type: \
         AverageValue\n      target: {per_replica}\n"
    )
}

/// One rule file: polled every 5 s, scaling down after a 30 s window, so it acts quickly.
fn rule(
    name: &str,
    context: &str,
    namespace: &str,
    workload: &str,
    (min, max): (u32, u32),
    metrics: &str,
) -> (String, String) {
    let text = format!(
        "# The demo's rule for {namespace}/{workload}.\n\
         name: {name}\n\
         target: {{ platform: kubernetes, context: {context}, namespace: {namespace}, \
         workload: {workload} }}\n\
         minReplicas: {min}\n\
         maxReplicas: {max}\n\
         pollingInterval: 5s\n\
         metrics:\n\
         {metrics}\
         behavior:\n\
         \x20 scaleDown: {{ stabilizationWindow: 30s }}\n"
    );
    (format!("{name}.yaml"), text)
}

/// `text` as a single-quoted YAML scalar, so any context name (spaces, colons) reads back.
fn yaml_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// What a demo Deployment or StatefulSet differs in.
struct App<'a> {
    namespace: &'a str,
    name: &'a str,
    image: &'a str,
    replicas: u32,
    /// The CPU request and limit of its one container.
    cpu: &'a str,
    /// Its traffic annotation.
    traffic: &'a str,
}

fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": name }
    })
}

fn metadata(app: &App<'_>) -> Value {
    json!({
        "name": app.name,
        "namespace": app.namespace,
        "labels": { "app": app.name },
        "annotations": { ANNOTATION: app.traffic }
    })
}

/// The pod template: one container named after the app, CPU limit equal to its request.
fn template(app: &App<'_>) -> Value {
    json!({
        "metadata": { "labels": { "app": app.name } },
        "spec": {
            "containers": [{
                "name": app.name,
                "image": app.image,
                "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }],
                "resources": {
                    "requests": { "cpu": app.cpu, "memory": "64Mi" },
                    "limits": { "cpu": app.cpu, "memory": "128Mi" }
                },
                "readinessProbe": {
                    "httpGet": { "path": "/healthz", "port": 8080 },
                    "periodSeconds": 2
                }
            }]
        }
    })
}

/// A Deployment that rolls one new pod at a time and never goes below its count; a rollout
/// that makes no progress for 30 s fails.
fn deployment(app: &App<'_>) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(app),
        "spec": {
            "replicas": app.replicas,
            "selector": { "matchLabels": { "app": app.name } },
            "progressDeadlineSeconds": 30,
            "revisionHistoryLimit": 10,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 }
            },
            "template": template(app)
        }
    })
}

fn statefulset(app: &App<'_>) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(app),
        "spec": {
            "replicas": app.replicas,
            "serviceName": app.name,
            "selector": { "matchLabels": { "app": app.name } },
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } },
            "template": template(app)
        }
    })
}

/// An autoscaling/v2 HPA on CPU for a Deployment, so Pilothouse's rule for it stands aside.
fn hpa(namespace: &str, deployment: &str) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": deployment, "namespace": namespace },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": deployment },
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [{
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": { "type": "Utilization", "averageUtilization": 70 }
                }
            }]
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::metrics::PrometheusSource;
    use crate::rules::{MetricSource, RuleTarget, parse_rules};
    use crate::sandbox::traffic::{Clock, Profile};
    use crate::sandbox::{ClusterView, WorkloadView, promql};

    fn find<'a>(
        objects: &'a [Value],
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<&'a Value> {
        objects.iter().find(|o| {
            o["kind"] == kind
                && o["metadata"]["namespace"] == namespace
                && o["metadata"]["name"] == name
        })
    }

    /// The demo's workloads as the cluster would show them once every pod is Ready.
    fn views() -> Vec<WorkloadView> {
        objects()
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
            .map(|o| {
                let name = o["metadata"]["name"].as_str().unwrap().to_string();
                let replicas = o["spec"]["replicas"].as_u64().unwrap();
                WorkloadView {
                    namespace: o["metadata"]["namespace"].as_str().unwrap().to_string(),
                    kind: o["kind"].as_str().unwrap().to_string(),
                    traffic: o["metadata"]["annotations"][ANNOTATION]
                        .as_str()
                        .map(String::from),
                    ready_pods: (0..replicas).map(|i| format!("{name}-{i}")).collect(),
                    name,
                    cpu_request_millicores: 100,
                }
            })
            .collect()
    }

    struct Demo;

    impl ClusterView for Demo {
        fn workloads(&self) -> Vec<WorkloadView> {
            views()
        }
    }

    #[test]
    fn every_demo_rule_passes_the_rule_parser_and_names_a_demo_workload() {
        let objects = objects();
        let rules = rules("sandbox: local 'demo'");
        assert_eq!(rules.len(), 4);
        for (file, text) in &rules {
            let parsed = parse_rules(Path::new(file), text)
                .unwrap_or_else(|errors| panic!("{file}: {errors:?}\n{text}"));
            assert_eq!(parsed.len(), 1, "{file}");
            let rule = &parsed[0];
            assert_eq!(rule.polling_interval.as_secs(), 5, "{file}");
            assert_eq!(
                rule.behavior.scale_down.stabilization_window.as_secs(),
                30,
                "{file}"
            );
            let RuleTarget::Kubernetes {
                context,
                namespace,
                kind,
                name,
            } = &rule.target
            else {
                panic!("{file}: not a kubernetes target");
            };
            assert_eq!(context, "sandbox: local 'demo'");
            let kind = match kind {
                crate::rules::KubeKind::Deployment => "Deployment",
                crate::rules::KubeKind::StatefulSet => "StatefulSet",
            };
            assert!(
                find(&objects, kind, namespace, name).is_some(),
                "{file}: {kind} {namespace}/{name}"
            );
            for metric in &rule.metrics {
                if let MetricSource::Prometheus { server_address, .. } = &metric.source {
                    assert_eq!(server_address, &None, "{file}");
                }
            }
        }
    }

    #[test]
    fn every_demo_workload_has_a_rule_and_a_traffic_profile_that_parses() {
        let rules = rules("sandbox");
        for view in views() {
            let profile = Profile::of(&view);
            assert!(
                profile.is_ok(),
                "{}/{}: {profile:?}",
                view.namespace,
                view.name
            );
            let file = format!("{}-{}.yaml", view.namespace, view.name);
            assert!(
                rules.iter().any(|(name, _)| *name == file),
                "no rule {file}"
            );
        }
    }

    #[test]
    fn web_bursts_within_the_first_twenty_seconds_at_the_demo_speed() {
        let web = find(&objects(), "Deployment", "shop", "web")
            .unwrap()
            .clone();
        let profile =
            Profile::parse(web["metadata"]["annotations"][ANNOTATION].as_str().unwrap()).unwrap();
        let starts =
            profile.burst_starts(START_SECONDS_OF_DAY, START_SECONDS_OF_DAY + 20.0 * SPEED);
        assert_eq!(starts.len(), 1, "{starts:?}");
        let wall = (starts[0] - START_SECONDS_OF_DAY) / SPEED;
        assert!((1.0..20.0).contains(&wall), "{wall}");
        let burst = profile.burst.unwrap();
        let before = profile.rps(starts[0] - 1.0);
        assert!(profile.rps(starts[0] + 1.0) > 2.5 * before);
        // The burst lasts long enough for a few 5 s cycles to see it.
        assert!(burst.duration / SPEED >= 20.0);
    }

    #[test]
    fn web_rolls_one_pod_at_a_time_and_fails_a_stuck_rollout_within_a_minute() {
        let objects = objects();
        let web = find(&objects, "Deployment", "shop", "web").unwrap();
        assert_eq!(web["spec"]["replicas"], 3);
        assert_eq!(
            web["spec"]["template"]["spec"]["containers"][0]["image"],
            WEB_IMAGE
        );
        assert_eq!(
            web["spec"]["strategy"]["rollingUpdate"],
            json!({"maxSurge": 1, "maxUnavailable": 0})
        );
        assert!(web["spec"]["progressDeadlineSeconds"].as_u64().unwrap() <= 30);
        assert!(BAD_IMAGE.contains("unhealthy") && !WEB_IMAGE.contains("unhealthy"));
        for kind in ["Deployment", "StatefulSet"] {
            for o in objects.iter().filter(|o| o["kind"] == kind) {
                let cpu =
                    &o["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"];
                assert!(cpu.is_string(), "{}", o["metadata"]["name"]);
            }
        }
    }

    #[test]
    fn checkout_has_an_hpa_of_its_own() {
        let objects = objects();
        let hpa = find(&objects, "HorizontalPodAutoscaler", "payments", "checkout").unwrap();
        assert_eq!(hpa["apiVersion"], "autoscaling/v2");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
        assert!(
            find(
                &objects,
                "Deployment",
                "payments",
                hpa["spec"]["scaleTargetRef"]["name"].as_str().unwrap()
            )
            .is_some()
        );
        for namespace in ["shop", "payments", "batch"] {
            assert!(
                objects
                    .iter()
                    .any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == namespace)
            );
        }
    }

    #[tokio::test]
    async fn every_demo_query_gives_one_value_from_the_sandbox_endpoint() {
        let clock = Clock::starting_at(START_SECONDS_OF_DAY, SPEED).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(
            async move { axum::serve(listener, promql::router(Arc::new(Demo), clock)).await },
        );
        let source = PrometheusSource::new(&format!("http://{address}")).unwrap();

        let mut queries = 0;
        for (file, text) in rules("sandbox") {
            let rule = parse_rules(Path::new(&file), &text).unwrap().remove(0);
            for metric in rule.metrics {
                if let MetricSource::Prometheus { query, .. } = metric.source {
                    let value = source
                        .query_instant(&query)
                        .await
                        .unwrap_or_else(|e| panic!("{file}: {e}"));
                    assert!(value > 0.0, "{file}: {value}");
                    queries += 1;
                }
            }
        }
        assert_eq!(queries, 2);
    }
}
