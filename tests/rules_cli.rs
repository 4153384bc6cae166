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
        "19:16: minReplicas must be from 1 to 100000, not -1",
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
        (
            "invalid/wrong-type.yaml",
            "3:14: expected an integer, got the string \"many\"",
        ),
        (
            "invalid/quoted-number.yaml",
            "3:14: expected an integer, got the string \"0x10\"",
        ),
        (
            "invalid/duplicate-key.yaml",
            "7:1: maxReplicas appears twice",
        ),
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
fn check_refuses_min_replicas_zero_at_its_line_and_column() {
    let file = fixture("invalid/min-zero.yaml");
    let out = pilothouse(&["rules", "check", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{file}:4:14: minReplicas 0 is not supported: scaling to zero leaves no replica to \
             measure, and a Percent policy cannot grow from 0 (write 1 or more)\n"
        )
    );
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn check_bounds_counts_policies_targets_and_durations() {
    let file = fixture("invalid/out-of-bounds.yaml");
    let out = pilothouse(&["rules", "check", &file]);
    assert_eq!(out.status.code(), Some(1));
    let expected = [
        "4:14: minReplicas `0x2` is not a decimal integer: write it in digits, as 2",
        "5:14: maxReplicas must be from 1 to 100000, not 100001",
        "6:18: pollingInterval `99999999999999999999h` is too long: write at most 24h",
        "9:58: target must be a number of at least 0.001, not 1e-320",
        "11:49: scaleUp policy value must be from 1 to 10000 % for a Percent policy, not \
         4294967295",
    ];
    let expected: String = expected
        .iter()
        .map(|line| format!("{file}:{line}\n"))
        .collect();
    assert_eq!(text(&out.stderr), expected);
}

#[test]
fn check_reads_the_rule_files_of_a_directory_in_order_and_skips_drafts() {
    let dir = fixture("dir-valid");
    let out = pilothouse(&["rules", "check", &dir]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("ok {dir}/api.yml (2 rules)\nok {dir}/web.yaml (1 rule)\n")
    );
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn check_reports_a_rule_name_an_earlier_file_of_the_directory_holds() {
    let dir = fixture("dir-duplicate");
    let out = pilothouse(&["rules", "check", &dir]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        format!("ok {dir}/10-web.yaml (1 rule)\n")
    );
    assert_eq!(
        text(&out.stderr),
        format!(
            "{dir}/20-web.yaml: rule `web` is already defined in {dir}/10-web.yaml; the loader \
             keeps that one and skips this one\n"
        )
    );

    // Named one by one, the files of one directory still meet as the loader would read them.
    let (first, second) = (format!("{dir}/10-web.yaml"), format!("{dir}/20-web.yaml"));
    let out = pilothouse(&["rules", "check", &second, &first]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), format!("ok {first} (1 rule)\n"));
    assert!(
        text(&out.stderr).starts_with(&format!("{second}: rule `web` is already defined in")),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_of_a_directory_without_rule_files_fails() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("web.yaml.draft"), "name: web\n").expect("write a draft");
    let shown = dir.path().display().to_string();
    let out = pilothouse(&["rules", "check", &shown]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("{shown}: no rule files (*.yaml, *.yml) in this directory\n")
    );
    assert_eq!(text(&out.stdout), "");
}

/// Escape sequences, a BEL, a C1 CSI and a bidi override, as they come in hostile files.
const HOSTILE: &str = "evil\u{1b}[31mRED\u{1b}]0;pwned\u{7}\u{1b}]52;c;aGk=\u{7}\u{9b}2J\u{202e}";

/// Fail unless `bytes` is UTF-8 with no character a terminal acts on (ESC, BEL, any other C0
/// control but the line break, DEL, C1) and no bidi override or isolate.
fn assert_inert(bytes: &[u8], what: &str) {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what} is not UTF-8: {e}"));
    for c in text.chars() {
        let reorders = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(
            (c == '\n' || !c.is_control()) && !reorders,
            "{what} holds U+{:04X}: {text:?}",
            u32::from(c)
        );
    }
}

/// Write `file_name` in `dir`: one rule called `name` whose metric `rps` asks `query`, both
/// written with YAML escapes; returns the file's path.
fn write_rule(dir: &std::path::Path, file_name: &str, name: &str, query: &str) -> String {
    let yaml_escaped = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_control() || !c.is_ascii() {
                    format!("\\U{:08x}", u32::from(c))
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
    };
    let text = format!(
        "name: \"{}\"\ntarget: {{ platform: docker, host: local, workload: web }}\n\
         maxReplicas: 4\nmetrics:\n  - name: rps\n    prometheus: {{ query: \"{}\", type: \
         AverageValue, target: 100 }}\n",
        yaml_escaped(name),
        yaml_escaped(query)
    );
    let path = dir.join(file_name);
    std::fs::write(&path, text).expect("write the rule");
    path.display().to_string()
}

#[test]
fn check_prints_hostile_names_queries_and_file_names_inert() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bad_name = write_rule(dir.path(), "name.yaml", HOSTILE, "up");
    let bad_query = write_rule(dir.path(), "query.yaml", "web", &format!("up{HOSTILE}"));
    let bad_file = write_rule(dir.path(), &format!("{HOSTILE}.yaml"), "api", "up");
    let missing = dir.path().join(format!("{HOSTILE}-missing.yaml"));

    let out = pilothouse(&[
        "rules",
        "check",
        &bad_name,
        &bad_query,
        &bad_file,
        &missing.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_inert(&out.stdout, "stdout");
    assert_inert(&out.stderr, "stderr");
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .contains("rule name `evil␛[31mRED␛]0;pwned␇␛]52;c;aGk=␇\u{fffd}2J\u{fffd}` may hold"),
        "{stderr}"
    );
    assert!(
        stderr.contains("query holds the control character U+001B; remove it"),
        "{stderr}"
    );
    assert!(stderr.contains("-missing.yaml: "), "{stderr}");
    assert!(text(&out.stdout).contains(".yaml (1 rule)"));

    // A whole directory, with the hostile file names among its files.
    let shown = dir.path().display().to_string();
    let out = pilothouse(&["rules", "check", &shown]);
    assert_eq!(out.status.code(), Some(1));
    assert_inert(&out.stdout, "stdout of the directory");
    assert_inert(&out.stderr, "stderr of the directory");
}

#[test]
fn check_shows_a_file_name_that_is_not_utf8_inert() {
    use std::os::unix::ffi::OsStrExt;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let name = std::ffi::OsStr::from_bytes(b"raw\x9b2J\x1b[31m.yaml");
    let path = dir.path().join(name);
    std::fs::write(&path, "name: web\n").expect("write the file");
    let out = Command::new(env!("CARGO_BIN_EXE_pilothouse"))
        .args(["rules", "check"])
        .arg(&path)
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(1));
    assert_inert(&out.stderr, "stderr");
    assert!(
        text(&out.stderr).contains("raw\u{fffd}2J␛[31m.yaml:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn simulate_prints_hostile_series_headers_and_file_names_inert() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rule = write_rule(dir.path(), &format!("{HOSTILE}.yaml"), "web", "up");
    let header = dir.path().join("header.csv");
    std::fs::write(&header, format!("t,{HOSTILE}\n0,1\n")).expect("write the series");
    let named = dir.path().join(format!("{HOSTILE}.csv"));
    std::fs::write(&named, "t,rps\n0,1\nlots,2\n").expect("write the series");
    let missing = dir.path().join(format!("{HOSTILE}-missing.csv"));

    for series in [&header, &named, &missing] {
        let series = series.display().to_string();
        let out = pilothouse(&["rules", "simulate", &rule, "--series", &series]);
        assert_eq!(out.status.code(), Some(1), "{series:?}");
        assert_eq!(text(&out.stdout), "");
        assert_inert(&out.stderr, "stderr");
    }

    // The rule file's own name, in an error about the rule, and in the JSON of a good replay.
    let invalid = write_rule(dir.path(), &format!("bad{HOSTILE}.yaml"), HOSTILE, "up");
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "t,rps\n0,100\n30,800\n").expect("write the series");
    let good = good.display().to_string();
    let out = pilothouse(&["rules", "simulate", &invalid, "--series", &good]);
    assert_eq!(out.status.code(), Some(1));
    assert_inert(&out.stderr, "stderr");
    for format in ["csv", "json"] {
        let out = pilothouse(&[
            "rules", "simulate", &rule, "--series", &good, "--output", format,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_inert(&out.stdout, format);
    }

    // Flags quoted in errors: a --prometheus address refused before anything is sent.
    let address = format!("{HOSTILE}http://127.0.0.1:9");
    let out = pilothouse(&[
        "rules",
        "simulate",
        &rule,
        "--prometheus",
        &address,
        "--from",
        HOSTILE,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_inert(&out.stderr, "stderr of a hostile --from");
    let out = pilothouse(&[
        "rules",
        "simulate",
        &rule,
        "--prometheus",
        &address,
        "--from",
        "-1m",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_inert(&out.stderr, "stderr of a hostile --prometheus");
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
        format!("{rule}:3:14: expected an integer, got the string \"many\"\n")
    );
}

#[test]
fn simulate_refuses_a_series_needing_more_than_100000_evaluations_before_it_starts() {
    let rule = fixture("series/web.yaml");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cases = [
        (
            "far.csv",
            "t,rps\n0,100\n99999999999999999999,100\n",
            "3: t 99999999999999999999 is too late: evaluating the rule every 15s from t=0 to \
             there takes 6.67e18 evaluations, more than the 100000 rules simulate makes (shorten \
             the series or lengthen pollingInterval)",
        ),
        (
            "year.csv",
            "t,rps\n0,100\n15768000,200\n31536000,100\n",
            "3: t 15768000 is too late: evaluating the rule every 15s from t=0 to there takes \
             1051201 evaluations, more than the 100000 rules simulate makes (shorten the series \
             or lengthen pollingInterval)",
        ),
    ];
    for (name, csv, error) in cases {
        let series = dir.path().join(name);
        std::fs::write(&series, csv).expect("write the series");
        let series = series.display().to_string();
        let started = std::time::Instant::now();
        let out = pilothouse(&["rules", "simulate", &rule, "--series", &series]);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{name}"
        );
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert_eq!(text(&out.stdout), "", "{name}");
        assert_eq!(text(&out.stderr), format!("{series}:{error}\n"), "{name}");
    }

    // The last evaluation the cap allows: t = 15 × 99999.
    let series = dir.path().join("longest.csv");
    std::fs::write(&series, "t,rps\n0,100\n1499985,100\n").expect("write the series");
    let series = series.display().to_string();
    let out = pilothouse(&["rules", "simulate", &rule, "--series", &series]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1 + 100_000);
}

#[test]
fn simulate_refuses_to_start_from_zero_replicas() {
    let rule = fixture("series/web.yaml");
    let series = fixture("series/rise-and-fall.csv");
    let out = pilothouse(&[
        "rules",
        "simulate",
        &rule,
        "--series",
        &series,
        "--initial-replicas",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "--initial-replicas 0: a workload at 0 replicas has nothing to measure and a Percent \
         policy cannot grow it; give 1 or more\n"
    );
}
