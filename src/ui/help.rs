//! The `?` help: every binding of the current mode and the global ones, generated from the
//! keymap so it cannot drift from what the keys do.
//!
//! Not for changing bindings: that is the keymap file's job.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::keymap::{Keymap, Mode};
use crate::text;
use crate::theme::Theme;

/// Draw the help over `area` for `mode`.
pub fn render(
    f: &mut Frame,
    area: Rect,
    keymap: &Keymap,
    mode: Mode,
    scroll: &mut usize,
    theme: &Theme,
) {
    let popup = centered(area, 72, area.height.saturating_sub(4).max(8));
    let mut lines = Vec::new();
    for (title, m) in [(mode_title(mode), mode), ("everywhere", Mode::Global)] {
        if m == Mode::Global && mode == Mode::Global {
            continue;
        }
        lines.push(Line::styled(format!(" {title}"), theme.title));
        for (keys, _action, description) in keymap.bindings(m) {
            lines.push(Line::from(vec![
                Span::styled(format!("   {} ", text::pad(&keys, 18)), theme.key_hint),
                Span::styled(description.to_string(), theme.text),
            ]));
        }
        lines.push(Line::raw(""));
    }
    let visible = popup.height.saturating_sub(2) as usize;
    *scroll = (*scroll).min(lines.len().saturating_sub(visible));
    let more = if lines.len() > visible + *scroll {
        " ─ j/k scroll"
    } else {
        ""
    };
    let lines: Vec<Line> = lines.into_iter().skip(*scroll).collect();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(
            format!(" help ─ ? or Esc closes{more} "),
            theme.title,
        ))
        .border_style(theme.border_focus);
    f.render_widget(Clear, popup);
    f.render_widget(Paragraph::new(lines).block(block).style(theme.text), popup);
}

fn mode_title(mode: Mode) -> &'static str {
    match mode {
        Mode::Global => "everywhere",
        Mode::Workloads => "workloads table",
        Mode::Detail => "detail pane",
        Mode::Logs => "logs view",
        Mode::Help => "help",
        Mode::Autoscaler => "autoscaler view",
        Mode::Rollouts => "rollout view",
    }
}

/// A rectangle of at most `width` × `height`, centred in `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}
