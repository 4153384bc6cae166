//! Snapshot tests of the main screens at 80x24 and 200x50, then targeted checks of colours on
//! given cells, which a text snapshot cannot see.

mod ui_fixture;

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::{Color, Modifier};

use pilothouse::keymap::KeyAction;
use pilothouse::rollout::state::{
    self as rollout_state, Files, Kind, Phase, Reading, ReplicaView, RolloutState, StepRecord,
};
use pilothouse::theme::Theme;
use ui_fixture::{app_with, app_with_theme, draw, log_records, screen_text, small_host};

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(k: KeyCode) -> KeyEvent {
    KeyEvent::new(k, KeyModifiers::NONE)
}

#[test]
fn workloads_screen_80x24() {
    let mut app = app_with(small_host());
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn workloads_screen_200x50() {
    let mut app = app_with(small_host());
    insta::assert_snapshot!(draw(&mut app, 200, 50).backend());
}

#[test]
fn detail_pane_with_risky_replica_200x50() {
    let mut app = app_with(small_host());
    app.table.set_filter("db").unwrap();
    app.on_action(KeyAction::NextPane);
    insta::assert_snapshot!(draw(&mut app, 200, 50).backend());
}

#[test]
fn help_screen_80x24() {
    let mut app = app_with(small_host());
    app.on_key(key('?'));
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn logs_screen_200x50() {
    let mut app = app_with(small_host());
    app.table.set_filter("web").unwrap();
    app.on_action(KeyAction::Logs);
    let view = app.logs.as_mut().expect("the logs view opens");
    let mut lines = log_records(
        "shop-web-1",
        &[
            b"GET /health 200 0.4ms",
            b"\x1b[31merror:\x1b[0m upstream timed out",
            b"title \x1b]0;pwned\x07 and clipboard \x1b]52;c;aGk=\x07 removed",
            b"bell\x07 and a lone\rcarriage return",
            "wide 漢字 and emoji 🚀 stay aligned".as_bytes(),
        ],
    );
    lines.extend(log_records(
        "shop-web-2",
        &[b"POST /cart 201 3.1ms", b"\xff\xfe invalid utf-8"],
    ));
    view.append(lines);
    insta::assert_snapshot!(draw(&mut app, 200, 50).backend());
}

#[test]
fn the_selected_row_uses_the_themes_selected_style() {
    let mut app = app_with(small_host());
    let terminal = draw(&mut app, 120, 30);
    let buffer = terminal.backend().buffer();
    let theme = Theme::dark();
    // Row 0 is the header, row 1 the table border, row 2 the column titles, row 3 the first
    // workload, which is selected at start.
    let cell = &buffer[(3, 3)];
    assert_eq!(cell.bg, theme.row_selected.bg.unwrap_or(Color::Reset));
    assert_eq!(cell.fg, theme.row_selected.fg.unwrap_or(Color::Reset));
}

#[test]
fn no_color_keeps_the_selection_visible_without_any_colour() {
    let replicas = small_host();
    let theme = Theme::resolve(
        "dark",
        &pilothouse::paths::Paths::under(&std::env::temp_dir().join("pilothouse-no-such-dir")),
        true,
    )
    .unwrap();
    let mut app = app_with_theme(replicas, theme);
    let terminal = draw(&mut app, 120, 30);
    let buffer = terminal.backend().buffer();
    for cell in buffer.content() {
        assert_eq!(
            (cell.fg, cell.bg),
            (Color::Reset, Color::Reset),
            "cell {cell:?}"
        );
    }
    assert!(buffer[(3, 3)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn a_label_with_escape_sequences_is_drawn_as_inert_text() {
    let mut app = app_with(small_host());
    let screen = screen_text(&draw(&mut app, 200, 50));
    assert!(!screen.contains('\u{1b}') && !screen.contains('\u{7}'));
    assert!(screen.contains("evil/x "), "{screen}");
    assert!(
        !screen.contains("pwned"),
        "the OSC title sequence is dropped whole: {screen}"
    );
}

#[test]
fn the_filter_narrows_rows_as_it_is_typed_and_escape_clears_it() {
    let mut app = app_with(small_host());
    app.on_key(key('/'));
    for c in "work".chars() {
        app.on_key(key(c));
    }
    let screen = screen_text(&draw(&mut app, 120, 30));
    assert!(
        screen.contains("shop/worker") && !screen.contains("shop/web "),
        "{screen}"
    );
    app.on_key(code(KeyCode::Esc));
    let screen = screen_text(&draw(&mut app, 120, 30));
    assert!(screen.contains("shop/web"), "{screen}");
}

#[test]
fn scaling_down_asks_for_confirmation_before_anything_is_sent() {
    let mut app = app_with(small_host());
    app.table.set_filter("shop/web").unwrap();
    app.on_key(key('s'));
    app.on_key(key('1'));
    app.on_key(code(KeyCode::Enter));
    let screen = screen_text(&draw(&mut app, 120, 30));
    assert!(screen.contains("Scale shop/web from 3 to 1?"), "{screen}");
    app.on_key(key('n'));
    let screen = screen_text(&draw(&mut app, 120, 30));
    assert!(!screen.contains("Scale shop/web from 3 to 1?") && screen.contains("cancelled"));
}

#[test]
fn secrets_in_env_are_masked_until_revealed() {
    let mut app = app_with(small_host());
    app.table.set_filter("shop/web").unwrap();
    let masked = screen_text(&draw(&mut app, 200, 50));
    assert!(
        !masked.contains("hunter2") && masked.contains("LOG_LEVEL=info"),
        "{masked}"
    );
    app.on_key(key('x'));
    let shown = screen_text(&draw(&mut app, 200, 50));
    assert!(shown.contains("DATABASE_PASSWORD=hunter2"), "{shown}");
}

#[test]
fn a_search_hit_stays_highlighted_when_the_line_is_scrolled_sideways() {
    let mut app = app_with(small_host());
    app.table.set_filter("shop/web").unwrap();
    app.on_action(KeyAction::Logs);
    let view = app.logs.as_mut().expect("the logs view opens");
    view.append(log_records(
        "shop-web-1",
        &[b"0123456789 upstream timed out"],
    ));
    app.on_key(key('/'));
    for c in "timed".chars() {
        app.on_key(key(c));
    }
    app.on_key(code(KeyCode::Enter));
    app.on_key(code(KeyCode::Right));
    let terminal = draw(&mut app, 100, 20);
    let screen = screen_text(&terminal);
    let row = screen
        .lines()
        .position(|l| l.contains("upstream timed"))
        .expect("the line is shown");
    let line = screen.lines().nth(row).unwrap();
    assert!(!line.contains("01234567"), "scrolled 8 columns: {line}");
    let col = line
        .find("timed")
        .map(|b| line[..b].chars().count())
        .unwrap() as u16;
    let cell = &terminal.backend().buffer()[(col, row as u16)];
    let hl = Theme::dark().match_highlight;
    assert_eq!(cell.fg, hl.fg.unwrap_or(Color::Reset));
    assert!(cell.modifier.contains(Modifier::REVERSED), "{cell:?}");
}

#[test]
fn a_long_connection_error_and_a_long_status_wrap_instead_of_being_cut() {
    let mut app = app_with(small_host());
    app.on_update(pilothouse::platform::Update::Connection {
        target: "local".to_string(),
        state: pilothouse::model::ConnState::Disconnected {
            error: "cannot reach Docker at unix:///var/run/docker.sock: connection refused \
                    (is the daemon running? set DOCKER_HOST or --docker-host)"
                .to_string(),
            retry_in_secs: 4,
        },
    });
    app.status = Some(pilothouse::ui::app::Status {
        level: pilothouse::ui::app::Level::Error,
        text: "scale shop/web 1 → 2 failed: cannot scale shop/web to 2: it publishes fixed host \
               port 18123, which a second replica would collide with; publish a range or no host \
               port"
            .to_string(),
    });
    let screen = screen_text(&draw(&mut app, 80, 24));
    let flat: String = screen.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("--docker-host) — retrying in 4s"), "{screen}");
    assert!(flat.contains("publish a range or no host port"), "{screen}");
    assert!(
        screen.contains("WORKLOAD"),
        "the table is still drawn:\n{screen}"
    );
}

/// A rollout of `shop/web` from revision 1 to 2 as its state file has it.
fn web_rollout(phase: Phase) -> RolloutState {
    let replica = |name: &str, revision: u32, health: &str, ready: bool| ReplicaView {
        name: name.to_string(),
        revision,
        health: health.to_string(),
        ready,
    };
    let step = |number: u32, created: &str, removed: &str, took_ms: u64| StepRecord {
        number,
        created: vec![created.to_string()],
        removed: vec![removed.to_string()],
        took_ms,
        health_ms: took_ms * 3 / 4,
        drain_ms: 800,
        create_ms: 150,
    };
    let now = ui_fixture::now();
    RolloutState {
        workload: "shop/web".to_string(),
        host: "unix:///var/run/docker.sock".to_string(),
        engine_id: "TEST:ENGINE".to_string(),
        kind: Kind::Rollout,
        phase,
        from_revision: 1,
        to_revision: 2,
        image: "registry.local/shop/web:1.4".to_string(),
        desired: 4,
        max_surge: 1,
        max_unavailable: 0,
        replicas: vec![
            replica("shop-web-1", 1, "healthy", true),
            replica("shop-web-2", 1, "healthy", true),
            replica("shop-web-5", 2, "healthy", true),
            replica("shop-web-6", 2, "starting", false),
        ],
        steps: vec![
            step(1, "shop-web-5", "shop-web-3", 6_400),
            step(2, "shop-web-6", "shop-web-4", 5_900),
        ],
        analysis: vec![Reading {
            at: now - chrono::TimeDelta::seconds(4),
            value: Some(0.0031),
            verdict: "pass".to_string(),
        }],
        message: String::new(),
        started: now - chrono::TimeDelta::seconds(20),
        updated: now - chrono::TimeDelta::seconds(2),
        pid: 4242,
        by: "ana".to_string(),
    }
}

/// The console with `state` recorded for `shop/web` in a state directory under `dir`, and the
/// rollout view opened on it from the workloads table.
fn rollout_view(dir: &std::path::Path, state: &RolloutState) -> pilothouse::ui::app::App {
    let mut app = app_with(small_host());
    let addresses = HashMap::from([("local".to_string(), "unix:///test.sock".to_string())]);
    app.attach_rollouts(dir.to_path_buf(), addresses);
    let files = Files::new(dir, "TEST:ENGINE", "shop/web");
    rollout_state::write_state(&files.state, state).unwrap();
    app.table.set_filter("shop/web").unwrap();
    app.on_key(key('R'));
    app
}

#[test]
fn rollout_view_progressing_120x32() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path(), "TEST:ENGINE", "shop/web");
    let _running = rollout_state::lock(&files, "rollout pid 4242 (ana@box)").unwrap();
    let mut app = rollout_view(dir.path(), &web_rollout(Phase::Progressing));
    insta::assert_snapshot!(draw(&mut app, 120, 32).backend());
}

#[test]
fn rollout_view_rolled_back_with_message_100x24() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = web_rollout(Phase::RolledBack);
    state.replicas.retain(|r| r.revision == 1);
    state.message = "health gate failed: shop-web-6 unhealthy after 30s \u{1b}]0;pwned\u{7}\
                     (exit 1); rolled back to revision 1"
        .to_string();
    let mut app = rollout_view(dir.path(), &state);
    let terminal = draw(&mut app, 100, 24);
    let screen = screen_text(&terminal);
    assert!(
        !screen.contains('\u{1b}') && !screen.contains("pwned"),
        "{screen}"
    );
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn rolling_back_from_the_rollout_view_asks_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = rollout_view(dir.path(), &web_rollout(Phase::Succeeded));
    app.on_key(key('u'));
    let screen = screen_text(&draw(&mut app, 120, 32));
    assert!(
        screen.contains("Roll shop/web back to its previous revision?"),
        "{screen}"
    );
    app.on_key(key('n'));
    let screen = screen_text(&draw(&mut app, 120, 32));
    assert!(screen.contains("cancelled"), "{screen}");
}
