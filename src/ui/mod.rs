//! The console: the state machine (`app`), one module per panel, and the run loop (`tui`).
//!
//! Not for I/O beyond the terminal: everything else arrives through channels.

pub mod app;
pub mod autoscaler;
pub mod command;
pub mod detail;
pub mod editor;
pub mod footer;
pub mod format;
pub mod header;
pub mod help;
pub mod logs;
pub mod new_rollout;
pub mod rollouts;
pub mod rules_ctl;
pub mod tui;
pub mod workloads;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::widgets::Block;

use app::{App, Pane, Prompt, View};

/// Draw the whole screen from the app's state.
pub fn draw(f: &mut Frame, app: &mut App) {
    let area = f.area();
    f.render_widget(Block::default().style(app.theme.text), area);
    let header_height = header::height(app.store.targets(), area.width).min(area.height / 3 + 1);
    let footer_height = footer::height(app, area.width);
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Min(3),
        Constraint::Length(footer_height),
    ])
    .areas(area);

    header::render(
        f,
        top,
        app.store.targets(),
        &app.theme,
        app.now,
        app.clock_offset,
        app.actuator.read_only(),
    );
    match app.view {
        View::Workloads => draw_workloads(f, body, app),
        View::Logs => {
            let max = app.config.logs.max_line_display;
            if let Some(view) = app.logs.as_mut() {
                logs::render(f, body, view, &app.theme, max);
            }
        }
        View::Autoscaler => {
            autoscaler::render(f, body, &app.rules, app.rules_selected, &app.theme, app.now);
        }
        View::Editor => {
            if let Some(editor) = app.editor.as_mut() {
                editor.render(f, body, &app.theme);
            }
        }
        View::Rollouts => {
            if let Some(view) = app.rollouts.view.as_ref() {
                rollouts::render(f, body, view, &app.theme, app.now);
            }
        }
    }
    let hints: Vec<String> = match &app.prompt {
        Prompt::Command(line) => {
            let candidates = app.command_candidates();
            line.hints(&candidates).into_iter().cloned().collect()
        }
        _ => Vec::new(),
    };
    footer::render(f, bottom, app, &hints);
    if app.help {
        let mode = app.base_mode();
        help::render(f, body, &app.keymap, mode, &mut app.help_scroll, &app.theme);
    }
    if let Prompt::Confirm { question, .. } | Prompt::ConfirmRollout { question, .. } = &app.prompt
    {
        footer::render_confirm(f, body, question, &app.theme);
    }
}

fn draw_workloads(f: &mut Frame, area: ratatui::layout::Rect, app: &mut App) {
    let table_share = if area.height > 30 { 55 } else { 50 };
    let [table_area, detail_area] = Layout::vertical([
        Constraint::Percentage(table_share),
        Constraint::Percentage(100 - table_share),
    ])
    .areas(area);
    let rows = app.visible_rows();
    let all = app.store.workloads();
    workloads::render(
        f,
        table_area,
        all,
        &rows,
        &mut app.table,
        &app.theme,
        workloads::Focus {
            focused: app.pane == Pane::Workloads,
            now: app.now,
            rules: &app.rules,
        },
    );
    // The rows just drawn decide the selection; they are not computed a second time.
    let index = app.table.selected_index(all, &rows);
    let selected = rows.get(index).map(|&i| all[i].clone());
    let props = detail::DetailProps {
        workload: selected.as_ref(),
        selected: app.detail_selected,
        focused: app.pane == Pane::Detail,
        reveal: app.reveal,
        now: app.now,
        offset: app.clock_offset,
    };
    detail::render(f, detail_area, &app.store, &props, &app.theme);
}
