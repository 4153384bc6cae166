//! The bottom line: the prompt being typed, a status message, or the key hints of the mode;
//! and the confirmation dialog for destructive actions.
//!
//! Not for handling keys: the app does that.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use unicode_segmentation::UnicodeSegmentation;

use crate::keymap::{KeyAction, Keymap, Mode};
use crate::text;
use crate::theme::Theme;

use super::app::{App, Level, Prompt, View};
use super::help::centered;

/// The actions whose keys the hint line shows, per mode, in order.
fn hinted(mode: Mode) -> &'static [KeyAction] {
    match mode {
        // The first ones fit 80 columns; the rest show on wider screens.
        Mode::Workloads => &[
            KeyAction::Logs,
            KeyAction::Scale,
            KeyAction::Restart,
            KeyAction::EditRule,
            KeyAction::Autoscaler,
            KeyAction::Filter,
            KeyAction::Help,
            KeyAction::Quit,
            KeyAction::Open,
            KeyAction::SortNext,
            KeyAction::Command,
            KeyAction::Rollouts,
        ],
        Mode::Detail => &[
            KeyAction::Logs,
            KeyAction::Restart,
            KeyAction::Reveal,
            KeyAction::NextPane,
            KeyAction::Help,
            KeyAction::Back,
        ],
        Mode::Logs => &[
            KeyAction::Follow,
            KeyAction::Wrap,
            KeyAction::Timestamps,
            KeyAction::Search,
            KeyAction::Filter,
            KeyAction::NextMatch,
            KeyAction::Top,
            KeyAction::Bottom,
            KeyAction::Back,
        ],
        Mode::Autoscaler => &[
            KeyAction::EditRule,
            KeyAction::PauseRule,
            KeyAction::Up,
            KeyAction::Down,
            KeyAction::Help,
            KeyAction::Back,
        ],
        Mode::Rollouts => &[
            KeyAction::PauseRollout,
            KeyAction::ResumeRollout,
            KeyAction::AbortRollout,
            KeyAction::Rollback,
            KeyAction::Up,
            KeyAction::Down,
            KeyAction::Help,
            KeyAction::Back,
        ],
        Mode::Help | Mode::Global => &[KeyAction::Back],
    }
}

/// Rows a status message may take before it is cut.
const MAX_STATUS_ROWS: usize = 3;

/// Rows the bottom line needs at `width`: a long status message wraps onto up to three.
pub fn height(app: &App, width: u16) -> u16 {
    let rows = |s: &str| {
        (text::display_width(s) + 1)
            .div_ceil((width as usize).max(1))
            .clamp(1, MAX_STATUS_ROWS) as u16
    };
    match (&app.prompt, &app.status, &app.hint) {
        (Prompt::None, Some(status), _) => rows(&status.text),
        (Prompt::None, None, Some(hint)) if app.view == View::Workloads => rows(hint) + 1,
        _ => 1,
    }
}

/// Draw the bottom line for the app's current prompt, status and mode.
pub fn render(f: &mut Frame, area: Rect, app: &App, hints: &[String]) {
    let (prompt, status, keymap, mode, theme) = (
        &app.prompt,
        app.status.as_ref(),
        &app.keymap,
        app.mode(),
        &app.theme,
    );
    let width = usize::from(area.width);
    let line = match prompt {
        Prompt::Filter(input) => regex_line(
            "/",
            input,
            "regex over the rows; Enter keeps, Esc clears",
            theme,
            width,
        ),
        Prompt::Search(input) => regex_line("/", input, "search; n next, N previous", theme, width),
        Prompt::LogFilter(input) => {
            regex_line("|", input, "show only matching lines", theme, width)
        }
        Prompt::Command(line) => {
            let hint = if hints.is_empty() {
                "Tab completes".to_string()
            } else {
                hints.join("  ")
            };
            input_line(":", &line.input, &hint, theme, width)
        }
        Prompt::Scale {
            input,
            workload,
            from,
        } => input_line(
            &format!(
                "scale {} from {from} to: ",
                text::sanitize_plain(&workload.name)
            ),
            input,
            "Enter applies, Esc cancels",
            theme,
            width,
        ),
        Prompt::Image { input, workload } => input_line(
            &format!(
                "roll {} out to image: ",
                text::sanitize_plain(&workload.name)
            ),
            input,
            "Enter rolls out, Esc cancels",
            theme,
            width,
        ),
        Prompt::Confirm { .. } | Prompt::ConfirmRollout { .. } => {
            Line::styled(" y confirms, n cancels", theme.warning)
        }
        Prompt::None => match status {
            Some(s) => {
                let style = match s.level {
                    Level::Info => theme.text,
                    Level::Success => theme.success,
                    Level::Error => theme.error,
                };
                Line::styled(format!(" {}", text::sanitize_plain(&s.text)), style)
            }
            // The editor draws its own key line; the keymap's keys do not reach it.
            None if app.view == View::Editor => Line::raw(""),
            None => hint_line(keymap, mode, theme),
        },
    };
    let lines = match (prompt, status, &app.hint) {
        (Prompt::None, None, Some(hint)) if app.view == View::Workloads => vec![
            Line::styled(format!(" {}", text::sanitize_plain(hint)), theme.warning),
            line,
        ],
        _ => vec![line],
    };
    f.render_widget(
        Paragraph::new(lines)
            .style(theme.status_bar)
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// An input line for a regex: while what is typed does not compile, it says so in the error
/// style, and the last good regex stays applied.
fn regex_line(lead: &str, input: &str, hint: &str, theme: &Theme, width: usize) -> Line<'static> {
    match regex::Regex::new(input) {
        Ok(_) => input_line(lead, input, hint, theme, width),
        Err(e) => {
            let why = format!("not a valid regex yet: {}", super::app::regex_error(&e));
            let mut line = input_line(lead, input, &why, theme, width);
            if let Some(last) = line.spans.last_mut() {
                last.style = theme.error;
            }
            line
        }
    }
}

/// The most of a `width`-column line a prompt's lead may take, so what is typed keeps room.
const MAX_LEAD_SHARE: usize = 2;

/// A prompt: its lead, what is typed and the cursor at its end, then the hint. Input wider than
/// the line scrolls sideways: its end (where the cursor is) stays in sight, and `…` shows that
/// its start is cut off. The hint shows only in the room left.
fn input_line(lead: &str, input: &str, hint: &str, theme: &Theme, width: usize) -> Line<'static> {
    let lead = text::fit(&format!(" {lead}"), (width / MAX_LEAD_SHARE).max(1));
    let room = width.saturating_sub(text::display_width(&lead) + 1);
    let typed = tail(&text::sanitize_plain(input), room);
    let used = text::display_width(&lead) + text::display_width(&typed) + 1;
    let hint = text::fit(&format!("   {hint}"), width.saturating_sub(used));
    Line::from(vec![
        Span::styled(lead, theme.command_line),
        Span::styled(typed, theme.command_line),
        Span::styled("█", theme.command_line),
        Span::styled(hint, theme.text_dim),
    ])
}

/// The end of `s` in at most `width` columns, behind `…` when its start is cut off.
fn tail(s: &str, width: usize) -> String {
    if text::display_width(s) <= width {
        return s.to_string();
    }
    let budget = width.saturating_sub(1);
    let mut used = 0;
    let mut start = s.len();
    for (at, grapheme) in s.grapheme_indices(true).rev() {
        let w = text::display_width(grapheme);
        if used + w > budget {
            break;
        }
        used += w;
        start = at;
    }
    if width == 0 {
        String::new()
    } else {
        format!("…{}", &s[start..])
    }
}

fn hint_line(keymap: &Keymap, mode: Mode, theme: &Theme) -> Line<'static> {
    let bindings: Vec<(String, KeyAction, &'static str)> = keymap
        .bindings(mode)
        .into_iter()
        .chain(keymap.bindings(Mode::Global))
        .collect();
    let mut spans = Vec::new();
    for action in hinted(mode) {
        let Some((keys, _, _)) = bindings.iter().find(|(_, a, _)| a == action) else {
            continue;
        };
        let key = keys.split(", ").next().unwrap_or(keys.as_str()).to_string();
        let word = hint_word(*action);
        spans.push(Span::styled(format!(" {key}"), theme.key_hint));
        spans.push(Span::styled(format!(" {word} "), theme.text_dim));
    }
    Line::from(spans)
}

/// The one word the hint line shows for an action.
fn hint_word(action: KeyAction) -> &'static str {
    match action {
        KeyAction::Logs => "logs",
        KeyAction::Scale => "scale",
        KeyAction::Restart => "restart",
        KeyAction::Open => "open",
        KeyAction::Filter => "filter",
        KeyAction::SortNext => "sort",
        KeyAction::Help => "help",
        KeyAction::Command => "command",
        KeyAction::Quit => "quit",
        KeyAction::Reveal => "secrets",
        KeyAction::NextPane => "pane",
        KeyAction::Back => "back",
        KeyAction::Follow => "follow",
        KeyAction::Wrap => "wrap",
        KeyAction::Timestamps => "time",
        KeyAction::Search => "search",
        KeyAction::NextMatch => "next",
        KeyAction::Top => "top",
        KeyAction::Bottom => "bottom",
        KeyAction::EditRule => "rule",
        KeyAction::Autoscaler => "autoscaler",
        KeyAction::PauseRule => "pause",
        KeyAction::Up => "up",
        KeyAction::Down => "down",
        KeyAction::Rollouts => "rollouts",
        KeyAction::PauseRollout => "pause",
        KeyAction::ResumeRollout => "resume",
        KeyAction::AbortRollout => "abort",
        KeyAction::Rollback => "rollback",
        _ => "",
    }
}

/// Draw the confirmation dialog of a destructive action.
pub fn render_confirm(f: &mut Frame, area: Rect, question: &str, theme: &Theme) {
    let popup = centered(area, 60, 7);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(" confirm ", theme.warning))
        .border_style(theme.warning);
    let body = vec![
        Line::styled(text::sanitize_plain(question), theme.text),
        Line::raw(""),
        Line::from(vec![
            Span::styled(" y ", theme.key_hint),
            Span::styled("yes   ", theme.text),
            Span::styled(" n ", theme.key_hint),
            Span::styled("no", theme.text),
        ]),
    ];
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(body).block(block).wrap(Wrap { trim: true }),
        popup,
    );
}
