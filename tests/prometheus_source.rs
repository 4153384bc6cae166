//! The Prometheus metric source against a real Prometheus server, scraping a metrics endpoint
//! the tests serve and change. The tests share one server and keep apart by metric name; the
//! one that kills its server starts its own. Skipped with a printed reason when the
//! `prometheus` binary is missing, and failed under `PILOTHOUSE_REQUIRE_SERVICES=1`.

#[path = "support/prometheus.rs"]
mod prometheus_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use pilothouse::metrics::{MetricError, MetricSource, PrometheusSource};
use prometheus_support::{TestPrometheus, prometheus_or_skip, shared_prometheus_or_skip};

/// How long a test waits for a value it set to show up in a query.
const SEEN_WITHIN: Duration = Duration::from_secs(8);

fn source(prometheus: &TestPrometheus) -> PrometheusSource {
    PrometheusSource::new(&prometheus.url()).expect("the test server's URL is valid")
}

/// The shared server, once its latest scrape has `series` (names no other test uses).
async fn serving(series: &[(&str, f64)]) -> Option<&'static TestPrometheus> {
    let prometheus = shared_prometheus_or_skip().await?;
    for (name, value) in series {
        prometheus.endpoint.set(name, *value);
    }
    let source = source(prometheus);
    for (name, value) in series {
        if value.is_finite() {
            wait_for_value(&source, name, *value).await;
        } else {
            wait_for_any_answer(&source, name).await;
        }
    }
    Some(prometheus)
}

/// Polls `query` until it gives `expected`; panics with the last answer when it does not
/// within [`SEEN_WITHIN`].
async fn wait_for_value(source: &PrometheusSource, query: &str, expected: f64) {
    let deadline = Instant::now() + SEEN_WITHIN;
    let mut last = source.query_instant(query).await;
    while Instant::now() < deadline {
        if matches!(last, Ok(value) if value == expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = source.query_instant(query).await;
    }
    panic!("{query} did not give {expected} within {SEEN_WITHIN:?}; last answer: {last:?}");
}

/// Polls `query` until its answer is anything but an empty result.
async fn wait_for_any_answer(source: &PrometheusSource, query: &str) {
    let deadline = Instant::now() + SEEN_WITHIN;
    while Instant::now() < deadline {
        let answer = source.query_instant(query).await;
        if !matches!(answer, Err(MetricError::EmptyResult { .. })) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{query} was not scraped within {SEEN_WITHIN:?}");
}

async fn sleep_until(time: DateTime<Utc>) {
    if let Ok(wait) = (time - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

#[tokio::test]
async fn an_instant_query_returns_the_served_value_and_sees_a_change_after_the_next_scrape() {
    let Some(prometheus) = serving(&[("ph_changing", 42.0)]).await else {
        return;
    };
    let source = source(prometheus);

    assert_eq!(source.query_instant("ph_changing").await.unwrap(), 42.0);

    let scrapes_before = prometheus.endpoint.scrapes();
    prometheus.endpoint.set("ph_changing", 17.5);
    wait_for_value(&source, "ph_changing", 17.5).await;
    assert!(
        prometheus.endpoint.scrapes() > scrapes_before,
        "the new value can only come from a later scrape"
    );
}

#[tokio::test]
async fn sum_over_two_series_gives_their_sum() {
    let series = [
        (r#"ph_summed{pod="a"}"#, 3.0),
        (r#"ph_summed{pod="b"}"#, 4.5),
    ];
    let Some(prometheus) = serving(&series).await else {
        return;
    };

    let value = source(prometheus).query_instant("sum(ph_summed)").await;

    assert_eq!(value.unwrap(), 7.5);
}

#[tokio::test]
async fn a_query_matching_two_series_asked_for_one_value_is_an_error_naming_both() {
    let series = [(r#"ph_twice{pod="a"}"#, 3.0), (r#"ph_twice{pod="b"}"#, 4.5)];
    let Some(prometheus) = serving(&series).await else {
        return;
    };

    let err = source(prometheus)
        .query_instant("ph_twice")
        .await
        .unwrap_err();

    let text = err.to_string();
    assert!(
        matches!(err, MetricError::ManySeries { count: 2, .. }),
        "{text}"
    );
    assert!(text.contains("2 series"), "{text}");
    assert!(text.contains(r#"ph_twice{instance="#), "{text}");
    assert!(text.contains(r#"pod="a""#), "{text}");
    assert!(text.contains(r#"pod="b""#), "{text}");
}

#[tokio::test]
async fn a_query_for_a_metric_that_does_not_exist_is_an_empty_result_error() {
    let Some(prometheus) = shared_prometheus_or_skip().await else {
        return;
    };

    let err = source(prometheus)
        .query_instant("ph_no_such_metric")
        .await
        .unwrap_err();

    assert!(matches!(err, MetricError::EmptyResult { .. }), "{err}");
    assert!(err.to_string().contains("empty result"), "{err}");
}

#[tokio::test]
async fn nan_served_by_the_endpoint_is_an_error_not_a_number() {
    let Some(prometheus) = serving(&[("ph_nan", f64::NAN)]).await else {
        return;
    };

    let err = source(prometheus)
        .query_instant("ph_nan")
        .await
        .unwrap_err();

    assert!(matches!(err, MetricError::NotANumber { .. }), "{err}");
    assert!(err.to_string().contains("NaN"), "{err}");
}

#[tokio::test]
async fn positive_infinity_served_by_the_endpoint_is_an_error_not_a_number() {
    let Some(prometheus) = serving(&[("ph_infinite", f64::INFINITY)]).await else {
        return;
    };

    let err = source(prometheus)
        .query_instant("ph_infinite")
        .await
        .unwrap_err();

    assert!(
        matches!(err, MetricError::Infinite { value, .. } if value == f64::INFINITY),
        "{err}"
    );
    assert!(err.to_string().contains("returned +Inf"), "{err}");
}

#[tokio::test]
async fn bad_promql_is_an_error_with_the_servers_message() {
    let Some(prometheus) = shared_prometheus_or_skip().await else {
        return;
    };

    let err = source(prometheus)
        .query_instant("sum(ph_anything")
        .await
        .unwrap_err();

    let MetricError::QueryRejected { kind, message, .. } = &err else {
        panic!("expected the query to be rejected, got {err}");
    };
    assert_eq!(kind, "bad_data");
    assert!(message.contains("parse error"), "{message}");
    assert!(err.to_string().contains(message.as_str()), "{err}");
}

#[tokio::test]
async fn a_range_selector_in_an_instant_query_is_the_wrong_result_type() {
    let Some(prometheus) = serving(&[("ph_ranged", 1.0)]).await else {
        return;
    };

    let err = source(prometheus)
        .query_instant("ph_ranged[1m]")
        .await
        .unwrap_err();

    assert!(
        matches!(&err, MetricError::UnexpectedResultType { actual, .. } if actual.contains("matrix")),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_path_prefix_is_a_status_error_with_the_servers_text() {
    let Some(prometheus) = shared_prometheus_or_skip().await else {
        return;
    };
    let wrong = PrometheusSource::new(&format!("{}/no-such-prefix", prometheus.url())).unwrap();

    let err = wrong.query_instant("up").await.unwrap_err();

    assert!(
        matches!(&err, MetricError::Status { status: 404, body, .. } if body.contains("not found")),
        "{err}"
    );
}

#[tokio::test]
async fn a_range_query_returns_samples_in_time_order_with_the_step_asked() {
    let Some(prometheus) = serving(&[("ph_over_time", 1.0)]).await else {
        return;
    };
    // Through the trait object, as the engine holds its sources.
    let source: Arc<dyn MetricSource> = Arc::new(source(prometheus));
    let from = DateTime::from_timestamp(Utc::now().timestamp() + 1, 0).unwrap();
    let step = Duration::from_secs(2);
    let to = from + TimeDelta::seconds(6);

    sleep_until(from + TimeDelta::seconds(2)).await;
    prometheus.endpoint.set("ph_over_time", 2.0);
    let changed = Instant::now();
    while source.instant("ph_over_time").await.ok() != Some(2.0) && changed.elapsed() < SEEN_WITHIN
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(Utc::now() < to, "the change must land inside the range");
    sleep_until(to + TimeDelta::milliseconds(200)).await;

    let samples = source.range("ph_over_time", from, to, step).await.unwrap();

    let times: Vec<DateTime<Utc>> = samples.iter().map(|(t, _)| *t).collect();
    let expected: Vec<DateTime<Utc>> = (0..4).map(|n| from + TimeDelta::seconds(2 * n)).collect();
    assert_eq!(times, expected);
    let values: Vec<f64> = samples.iter().map(|(_, v)| *v).collect();
    assert_eq!(values.first(), Some(&1.0), "{values:?}");
    assert_eq!(values.last(), Some(&2.0), "{values:?}");
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
}

#[tokio::test]
async fn a_stopped_prometheus_gives_an_unreachable_error_within_the_timeout() {
    let Some(mut prometheus) = prometheus_or_skip(&[("ph_value", 1.0)]).await else {
        return;
    };
    let source = source(&prometheus);
    assert_eq!(source.query_instant("ph_value").await.unwrap(), 1.0);

    prometheus.stop();
    let started = Instant::now();
    let first = source.query_instant("ph_value").await.unwrap_err();
    let second = source.query_instant("ph_value").await.unwrap_err();
    let took = started.elapsed();

    // The first may fail on the pooled connection the server dropped; a new one is refused.
    assert!(took < source.timeout(), "{took:?}");
    assert!(matches!(first, MetricError::Unreachable { .. }), "{first}");
    assert!(
        matches!(second, MetricError::Unreachable { .. }),
        "{second}"
    );
    let text = second.to_string();
    assert!(text.contains(&prometheus.url()), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_instead_of_hanging() {
    // A loopback listener that accepts connections and never writes a byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let timeout = Duration::from_millis(500);
    let source = PrometheusSource::with_timeout(&format!("http://{address}"), timeout).unwrap();

    let started = Instant::now();
    let err = source.query_instant("ph_value").await.unwrap_err();
    let took = started.elapsed();
    silent.abort();

    assert!(matches!(err, MetricError::Timeout { .. }), "{err}");
    assert!(took >= timeout, "{took:?}");
    assert!(took < timeout * 4, "{took:?}");
}

#[test]
fn a_url_that_is_not_http_or_https_is_refused_at_construction() {
    for address in [
        "ftp://127.0.0.1:9090",
        "unix:///run/prometheus.sock",
        "127.0.0.1:9090",
    ] {
        let err = PrometheusSource::new(address).unwrap_err();
        assert!(
            matches!(err, MetricError::InvalidAddress { .. }),
            "{address}: {err}"
        );
        assert!(err.to_string().contains("http:// or https://"), "{err}");
    }
}
