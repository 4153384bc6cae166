//! `pilothouse rules simulate --prometheus`, run as the real binary against a real Prometheus
//! scraping a metrics endpoint the tests serve and change. The tests share one server and keep
//! apart by metric name. Those that need the server are skipped with a printed reason when the
//! `prometheus` binary is missing, and failed under `PILOTHOUSE_REQUIRE_SERVICES=1`; those that
//! need none (an unreachable address, refused flags) always run.

#[path = "support/prometheus.rs"]
mod prometheus_support;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use pilothouse::metrics::PrometheusSource;
use prometheus_support::{TestPrometheus, shared_prometheus_or_skip};

/// How long a test waits for a value it set to show up in a query.
const SEEN_WITHIN: Duration = Duration::from_secs(8);

/// A rule file in a directory of its own: 1 to 10 replicas, evaluated every second, `query`
/// per replica against a target of 10, growing by at most 2 replicas per second.
struct RuleFile {
    dir: tempfile::TempDir,
}

impl RuleFile {
    fn prometheus(query: &str, server_address: Option<&str>) -> RuleFile {
        let server = server_address
            .map(|address| format!("serverAddress: '{address}', "))
            .unwrap_or_default();
        let metric = format!(
            "  - name: rps\n    prometheus: {{ {server}query: '{query}', type: AverageValue, \
             target: 10 }}\n"
        );
        RuleFile::with_metrics(&metric)
    }

    fn cpu() -> RuleFile {
        RuleFile::with_metrics("  - name: cpu\n    cpu: { utilization: 70 }\n")
    }

    fn with_metrics(metrics: &str) -> RuleFile {
        let text = format!(
            "name: web\ntarget: {{ platform: docker, host: local, workload: shop/web }}\n\
             minReplicas: 1\nmaxReplicas: 10\npollingInterval: 1s\nmetrics:\n{metrics}\
             behavior:\n  scaleUp: {{ stabilizationWindow: 0s, selectPolicy: Max, \
             policies: [{{type: Pods, value: 2, period: 1s}}] }}\n"
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("rule.yaml"), text).expect("write the rule");
        RuleFile { dir }
    }

    fn path(&self) -> String {
        self.dir.path().join("rule.yaml").display().to_string()
    }
}

async fn pilothouse(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_pilothouse"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

/// `--from`, `--to` and `--step 1s` for the range from `from` to `to`, as RFC 3339.
fn range_args(from: DateTime<Utc>, to: DateTime<Utc>) -> [String; 6] {
    [
        "--from".into(),
        from.to_rfc3339(),
        "--to".into(),
        to.to_rfc3339(),
        "--step".into(),
        "1s".into(),
    ]
}

async fn simulate(rule: &RuleFile, url: &str, range: &[String]) -> Output {
    let rule = rule.path();
    let mut args = vec!["rules", "simulate", rule.as_str(), "--prometheus", url];
    args.extend(range.iter().map(String::as_str));
    pilothouse(&args).await
}

/// (t, current, rps recommendation, desired) of each CSV row; the recommendation is `None`
/// for an empty cell.
fn timeline(csv: &str) -> Vec<(u64, u32, Option<u32>, u32)> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("t,current,rps,desired,reason"));
    lines
        .map(|line| {
            let cells: Vec<&str> = line.splitn(5, ',').collect();
            let number = |i: usize| cells[i].parse::<u64>().expect("a number");
            let recommendation = (!cells[2].is_empty()).then(|| number(2) as u32);
            (
                number(0),
                number(1) as u32,
                recommendation,
                number(3) as u32,
            )
        })
        .collect()
}

/// An address on loopback where nothing listens: a port that was bound and let go.
fn unreachable_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let address = listener.local_addr().expect("the port's address");
    drop(listener);
    format!("http://{address}")
}

/// The shared server, once a query of `series` gives `value`.
async fn serving(series: &str, value: f64) -> Option<&'static TestPrometheus> {
    let prometheus = shared_prometheus_or_skip().await?;
    prometheus.endpoint.set(series, value);
    let source = PrometheusSource::new(&prometheus.url()).expect("the test server's URL");
    let deadline = Instant::now() + SEEN_WITHIN;
    let mut last = source.query_instant(series).await;
    while !matches!(last, Ok(seen) if seen == value) {
        assert!(
            Instant::now() < deadline,
            "{series} did not give {value} within {SEEN_WITHIN:?}; last answer: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = source.query_instant(series).await;
    }
    Some(prometheus)
}

/// The next whole second after now.
fn next_second() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0) + TimeDelta::seconds(1)
}

async fn sleep_until(time: DateTime<Utc>) {
    if let Ok(wait) = (time - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

#[tokio::test]
async fn the_replica_timeline_scales_up_at_the_step_where_the_served_value_rose() {
    let Some(prometheus) = serving("ph_sim_rising", 10.0).await else {
        return;
    };
    let from = next_second();
    let to = from + TimeDelta::seconds(10);
    sleep_until(from + TimeDelta::seconds(4)).await;
    prometheus.endpoint.set("ph_sim_rising", 60.0);
    // The scrape that carries 60 starts after this, so its sample is at this time or later.
    let rose_at = Utc::now();
    // Let the scrape at or just before `to` land.
    sleep_until(to + TimeDelta::milliseconds(1500)).await;

    let rule = RuleFile::prometheus("ph_sim_rising", None);
    let out = simulate(&rule, &prometheus.url(), &range_args(from, to)).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let rows = timeline(&text(&out.stdout));
    assert_eq!(
        rows.len(),
        11,
        "one row per second from t=0 to t=10: {rows:?}"
    );
    // The first step that reads 60 is the first at or after the change, give or take the
    // second a scrape takes to happen.
    let rise = rows
        .iter()
        .position(|row| row.2 == Some(6))
        .expect("a step reading 60") as u64;
    let earliest = u64::try_from((rose_at - from).num_milliseconds())
        .unwrap()
        .div_ceil(1000);
    assert!(
        (earliest..=earliest + 2).contains(&rise),
        "60 first read at t={rise}, changed at t≈{earliest}: {rows:?}"
    );
    // Worked by hand (AverageValue, target 10 per replica, from 1 replica):
    // - before the rise, 10 → ceil(10 / 10) = 1: hold 1;
    // - at the rise, 60 → 6, but the policy allows 2 pods per 1 s: 1 → 3;
    // - a second later the event before is outside (t − 1, t], so 3 → 5;
    // - then 5 → 6 (60 / 50 = 1.2 is beyond the 0.1 tolerance), and 6 holds (ratio 1).
    let expected: Vec<(u64, u32, Option<u32>, u32)> = (0..=10)
        .map(|t| match t {
            t if t < rise => (t, 1, Some(1), 1),
            t if t == rise => (t, 1, Some(6), 3),
            t if t == rise + 1 => (t, 3, Some(6), 5),
            t if t == rise + 2 => (t, 5, Some(6), 6),
            t => (t, 6, Some(6), 6),
        })
        .collect();
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn a_metrics_own_server_address_wins_over_the_prometheus_flag() {
    let Some(prometheus) = serving("ph_sim_pinned", 30.0).await else {
        return;
    };
    let from = next_second();
    let to = from + TimeDelta::seconds(2);
    sleep_until(to + TimeDelta::milliseconds(500)).await;
    let range = range_args(from, to);
    let nowhere = unreachable_url();

    // The rule names the real server; the flag points nowhere and is not asked.
    let rule = RuleFile::prometheus("ph_sim_pinned", Some(&prometheus.url()));
    let out = simulate(&rule, &nowhere, &range).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // 30 → ceil(30 / 10) = 3, and the policy allows 1 + 2 = 3 at once.
    assert_eq!(
        timeline(&text(&out.stdout)),
        vec![(0, 1, Some(3), 3), (1, 3, Some(3), 3), (2, 3, Some(3), 3)]
    );

    // The rule names nowhere; the real server behind the flag is not asked.
    let rule = RuleFile::prometheus("ph_sim_pinned", Some(&nowhere));
    let out = simulate(&rule, &prometheus.url(), &range).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "metric `rps`: cannot reach Prometheus at {nowhere} "
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn a_metric_with_no_samples_in_the_range_is_a_failed_reading_at_every_step() {
    let Some(prometheus) = shared_prometheus_or_skip().await else {
        return;
    };
    let to = Utc::now().trunc_subsecs(0) - TimeDelta::seconds(1);
    let from = to - TimeDelta::seconds(2);

    let rule = RuleFile::prometheus("ph_sim_never_served", None);
    let out = simulate(&rule, &prometheus.url(), &range_args(from, to)).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    let holding = "\"rps failed: the query failed; no metric read: holding 1\"";
    assert_eq!(
        rows,
        vec![
            format!("0,1,,1,{holding}"),
            format!("1,1,,1,{holding}"),
            format!("2,1,,1,{holding}"),
        ]
    );
    assert_eq!(
        text(&out.stderr),
        format!(
            "warning: metric `rps`: query \"ph_sim_never_served\" on Prometheus at {} returned \
             an empty result: no series matched (check the metric name and labels, and that its \
             target is being scraped); it counts as a failed reading at every step\n",
            prometheus.url()
        )
    );
}

#[tokio::test]
async fn a_query_the_server_rejects_exits_1_with_its_message_and_prints_nothing() {
    let Some(prometheus) = shared_prometheus_or_skip().await else {
        return;
    };
    let rule = RuleFile::prometheus("sum(ph_sim_rps", None);
    let range = ["--from", "-10s", "--to", "now", "--step", "1s"].map(String::from);

    let out = simulate(&rule, &prometheus.url(), &range).await;

    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "metric `rps`: Prometheus at {} rejected query \"sum(ph_sim_rps\": bad_data: ",
            prometheus.url()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn an_unreachable_prometheus_exits_1_with_one_line_naming_its_address() {
    let nowhere = unreachable_url();
    let rule = RuleFile::prometheus("ph_sim_rps", None);
    let range = ["--from", "-1m", "--to", "now", "--step", "1s"].map(String::from);

    let out = simulate(&rule, &nowhere, &range).await;

    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "metric `rps`: cannot reach Prometheus at {nowhere} for query \"ph_sim_rps\": "
        )),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn a_cpu_metric_is_refused_before_any_query() {
    let rule = RuleFile::cpu();
    let range = ["--from", "-1m"].map(String::from);

    let out = simulate(&rule, &unreachable_url(), &range).await;

    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "metric `cpu` of rule `web` is CPU, which comes from Docker stats and not from \
         Prometheus, so --prometheus cannot replay it (record it and use --series)\n"
    );
}

#[tokio::test]
async fn a_start_after_the_end_or_a_time_that_does_not_parse_exits_1_with_one_line() {
    let rule = RuleFile::prometheus("ph_sim_rps", None);
    let cases = [
        (
            [
                "--from",
                "2024-05-01T12:00:00Z",
                "--to",
                "2024-05-01T11:00:00Z",
            ],
            "--from 2024-05-01T12:00:00+00:00 is after --to 2024-05-01T11:00:00+00:00: give a \
             start before the end\n",
        ),
        (
            ["--from", "yesterday", "--to", "now"],
            "--from `yesterday` is not a time: write RFC 3339 (2024-05-01T12:00:00Z), `now`, or \
             a time ago such as -30m, -1h, -2d\n",
        ),
    ];
    for (range, error) in cases {
        let out = simulate(&rule, &unreachable_url(), &range.map(String::from)).await;
        assert_eq!(out.status.code(), Some(1), "{range:?}");
        assert_eq!(text(&out.stdout), "", "{range:?}");
        assert_eq!(text(&out.stderr), error, "{range:?}");
    }
}

#[tokio::test]
async fn series_and_prometheus_together_or_neither_are_usage_errors() {
    let rule = RuleFile::prometheus("ph_sim_rps", None);
    let rule = rule.path();
    let series: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests/rules/series/rise-and-fall.csv",
    ]
    .iter()
    .collect();
    let series = series.display().to_string();
    let nowhere = unreachable_url();

    let both = pilothouse(&[
        "rules",
        "simulate",
        &rule,
        "--series",
        &series,
        "--prometheus",
        &nowhere,
        "--from",
        "-1m",
    ])
    .await;
    let neither = pilothouse(&["rules", "simulate", &rule]).await;
    let without_from = pilothouse(&["rules", "simulate", &rule, "--prometheus", &nowhere]).await;

    for (name, out) in [
        ("both", both),
        ("neither", neither),
        ("without --from", without_from),
    ] {
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "", "{name}");
    }
}
