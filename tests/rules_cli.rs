//! `pilothouse rules check` and `rules simulate`, run as the real binary on the fixtures in
//! `tests/rules/`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn fixture(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "rules", name]
        .iter()
        .collect();
    path.display().to_string()
}

fn pilothouse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pilothouse"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

#[test]
fn check_accepts_valid_files_and_counts_their_rules() {
    let web = fixture("valid/web.yaml");
    let list = fixture("valid/list.yaml");
    let out = pilothouse(&["rules", "check", &web, &list]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("ok {web} (1 rule)\nok {list} (2 rules)\n")
    );
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn check_reports_every_semantic_error_at_its_line_and_column() {
    let file = fixture("invalid/semantic.yaml");
    let out = pilothouse(&["rules", "check", &file]);
    assert_eq!(out.status.code(), Some(1));
    let expected = [
        "2:54: workload `shop/web/extra` does not parse: write PROJECT/SERVICE for a Compose \
         service or NAME for a group or Swarm service",
        "3:16: minReplicas 5 is greater than maxReplicas 3",
        "7:28: query must not be empty",
        "8:13: a metric named `rps` already exists at line 6",
        "12:12: metric `both` has two sources; give it either `prometheus` or `cpu`",
        "13:13: metric `none` has no source; give it `prometheus: { query, type, target }` or \
         `cpu: { utilization }`",
        "15:59: scaleUp policy period must be longer than 0s",
        "16:46: fallback replicas 9 is outside minReplicas..maxReplicas (5..3)",
        "17:9: a rule named `web` already exists at line 1",
        "18:77: workload `daemonset/api` does not parse: write deployment/NAME or \
         statefulset/NAME",
        "19:16: minReplicas must be 0 or more, not -1",
    ];
    let expected: String = expected
        .iter()
        .map(|line| format!("{file}:{line}\n"))
        .collect();
    assert_eq!(text(&out.stderr), expected);
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn check_reports_yaml_errors_with_their_position() {
    let cases = [
        (
            "invalid/unknown-field.yaml",
            "7:5: unknown field `averageUtilization`, expected one of name, prometheus, cpu",
        ),
        ("invalid/wrong-type.yaml", "3:14: expected a whole number"),
        (
            "invalid/bad-duration.yaml",
            "9:57: unknown variant `Fastest`, expected one of Max, Min, Disabled",
        ),
    ];
    for (name, error) in cases {
        let file = fixture(name);
        let out = pilothouse(&["rules", "check", &file]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert_eq!(text(&out.stderr), format!("{file}:{error}\n"), "{name}");
    }
}

#[test]
fn check_goes_on_past_a_bad_file_and_fails_at_the_end() {
    let bad = fixture("invalid/wrong-type.yaml");
    let good = fixture("valid/web.yaml");
    let missing = fixture("valid/missing.yaml");
    let out = pilothouse(&["rules", "check", &bad, &good, &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), format!("ok {good} (1 rule)\n"));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with(&format!("{bad}:3:14: ")), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read {missing}: ")),
        "{stderr}"
    );
}

#[test]
fn check_without_files_is_a_usage_error() {
    let out = pilothouse(&["rules", "check"]);
    assert_eq!(out.status.code(), Some(2));
}

/// (t, current, desired) of each CSV row.
fn timeline(csv: &str) -> Vec<(u64, u32, u32)> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("t,current,rps,desired,reason"));
    lines
        .map(|line| {
            let cells: Vec<&str> = line.splitn(5, ',').collect();
            let number = |i: usize| cells[i].parse::<u64>().expect("a number");
            (number(0), number(1) as u32, number(3) as u32)
        })
        .collect()
}

/// The replica count worked by hand for the rise-and-fall series (min 1, max 10, target 100
/// per replica, HPA default behavior, starting at 1).
fn expected_desired(t: u64) -> u32 {
    match t {
        // 100 at 1 replica: ratio 1.
        0..=15 => 1,
        // 800 → ceil(8) = 8, but from 1 the scale-up policies allow max(1 + 4, 1 + 1) = 5.
        30 => 5,
        // 800 at 5 → 8; the event at 30 s is outside (30, 45], so from 5: max(9, 10) ≥ 8.
        45 => 8,
        // 1000 → 10 (= maxReplicas), allowed from 8: max(12, 16).
        60..=105 => 10,
        // 200 → 2 from t=120, but 10 was recommended until t=105 and the scale-down window
        // is 300 s: (t − 300, t] holds a 10 until t − 300 ≥ 105. The failed query at 210
        // holds 10 as well.
        120..=390 => 10,
        // From 405 only recommendations of 2 remain in the window; 100 % per 15 s allows it.
        // At 700 the total is 100 → 1, but 2 was recommended within the window.
        _ => 2,
    }
}

#[test]
fn simulate_scales_up_at_once_within_the_policies_and_down_after_the_window() {
    let rule = fixture("series/web.yaml");
    let series = fixture("series/rise-and-fall.csv");
    let out = pilothouse(&["rules", "simulate", &rule, "--series", &series]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows = timeline(&text(&out.stdout));
    assert_eq!(rows.len(), 700 / 15 + 1, "one row per 15 s from 0 to 700");
    let mut current = 1;
    for (t, row_current, desired) in rows {
        assert_eq!(row_current, current, "current at t={t}");
        assert_eq!(desired, expected_desired(t), "desired at t={t}");
        current = desired;
    }
}

#[test]
fn simulate_shows_a_failed_query_as_an_empty_cell_and_holds() {
    let rule = fixture("series/web.yaml");
    let series = fixture("series/rise-and-fall.csv");
    let out = pilothouse(&["rules", "simulate", &rule, "--series", &series]);
    let csv = text(&out.stdout);
    let row = csv
        .lines()
        .find(|line| line.starts_with("210,"))
        .expect("a row at 210");
    assert_eq!(
        row,
        "210,10,,10,\"rps failed: the query failed; no metric read: holding 10\""
    );
}

#[test]
fn simulate_writes_json_with_the_same_timeline() {
    let rule = fixture("series/web.yaml");
    let series = fixture("series/rise-and-fall.csv");
    let out = pilothouse(&[
        "rules",
        "simulate",
        &rule,
        "--series",
        &series,
        "--output",
        "json",
        "--initial-replicas",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 47);
    let at_30 = &rows[2];
    assert_eq!(at_30["t"], 30);
    assert_eq!(at_30["current"], 1);
    assert_eq!(at_30["desired"], 5);
    assert_eq!(at_30["recommendations"][0]["metric"], "rps");
    assert_eq!(at_30["recommendations"][0]["replicas"], 8);
    assert_eq!(
        at_30["reason"],
        "rps 800 / 100 per replica x 1 → 8; scale-up policy caps at 4 pods per 15s → 5"
    );
    let at_210 = &rows[14];
    assert_eq!(
        at_210["recommendations"][0]["replicas"],
        serde_json::Value::Null
    );
    assert_eq!(at_210["recommendations"][0]["error"], "the query failed");
}

#[test]
fn simulate_starts_from_the_initial_replicas_given() {
    let rule = fixture("series/web.yaml");
    let series = fixture("series/rise-and-fall.csv");
    let out = pilothouse(&[
        "rules",
        "simulate",
        &rule,
        "--series",
        &series,
        "--initial-replicas",
        "4",
    ]);
    let csv = text(&out.stdout);
    // 100 at 4 replicas: ratio 0.25 → 1, but the replay has no history before t=0, so the
    // scale-down waits out its 300 s window from there, as the live loop does when it starts.
    assert_eq!(
        csv.lines().nth(1),
        Some(
            "0,4,1,4,\"rps 100 / 100 per replica x 4 → 1; scale-down waits: the rule has run \
             0s of its 300s window, keeps 4\""
        )
    );
}

#[test]
fn simulate_rejects_a_bad_series_with_its_line_and_prints_nothing_else() {
    let rule = fixture("series/web.yaml");
    let cases = [
        (
            "series/unknown-column.csv",
            "1: unknown column `qps`: the rule's metrics are rps",
        ),
        (
            "series/not-a-number.csv",
            "3: `lots` is not a number (leave the cell empty for a failed query)",
        ),
        (
            "series/t-not-increasing.csv",
            "4: t 30 does not increase (the row before has 30)",
        ),
    ];
    for (name, error) in cases {
        let series = fixture(name);
        let out = pilothouse(&["rules", "simulate", &rule, "--series", &series]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert_eq!(text(&out.stdout), "", "{name}");
        assert_eq!(text(&out.stderr), format!("{series}:{error}\n"), "{name}");
    }
}

#[test]
fn simulate_rejects_an_invalid_rule_with_its_errors() {
    let rule = fixture("invalid/wrong-type.yaml");
    let series = fixture("series/rise-and-fall.csv");
    let out = pilothouse(&["rules", "simulate", &rule, "--series", &series]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        format!("{rule}:3:14: expected a whole number\n")
    );
}
