//! The header: the product name, every target with its connection state, and the clock; below
//! it, one line per target that cannot be reached, saying why.
//!
//! Not for reconnecting: workers retry by themselves and report here through the store.

use chrono::{DateTime, FixedOffset, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::model::ConnState;
use crate::store::TargetState;
use crate::text;
use crate::theme::Theme;

/// How many rows the header needs: one, plus one per unreachable target.
pub fn height(targets: &[TargetState]) -> u16 {
    1 + targets
        .iter()
        .filter(|t| matches!(t.conn, ConnState::Disconnected { .. }))
        .count() as u16
}

/// Draw the header into `area`.
pub fn render(
    f: &mut Frame,
    area: Rect,
    targets: &[TargetState],
    theme: &Theme,
    now: DateTime<Utc>,
    offset: FixedOffset,
    read_only: bool,
) {
    let clock = now.with_timezone(&offset).format("%H:%M:%S").to_string();
    let mut spans = vec![Span::styled(
        " pilothouse ",
        theme.header.patch(theme.title),
    )];
    if read_only {
        spans.push(Span::styled(" read-only ", theme.header_warn));
    }
    for t in targets {
        spans.push(Span::styled("  ", theme.header));
        spans.extend(target_spans(t, theme));
    }
    let used: usize = spans.iter().map(|s| text::display_width(&s.content)).sum();
    let room = (area.width as usize).saturating_sub(used + clock.len() + 1);
    spans.push(Span::styled(" ".repeat(room), theme.header));
    spans.push(Span::styled(format!("{clock} "), theme.header));

    let mut lines = vec![Line::from(spans)];
    for t in targets {
        if let ConnState::Disconnected {
            error,
            retry_in_secs,
        } = &t.conn
        {
            let msg = format!(" {}: {} — retrying in {retry_in_secs}s", t.name, error);
            lines.push(Line::styled(
                text::fit(&text::sanitize_plain(&msg), area.width as usize),
                theme.error,
            ));
        }
    }
    f.render_widget(Paragraph::new(lines).style(theme.header), area);
}

fn target_spans(t: &TargetState, theme: &Theme) -> Vec<Span<'static>> {
    let name = text::fit(&text::sanitize_plain(&t.name), 20);
    match &t.conn {
        ConnState::Connecting => vec![
            Span::styled(format!("{name} "), theme.header),
            Span::styled(format!("◌ {} connecting", t.platform), theme.header_warn),
        ],
        ConnState::Connected { version, .. } => vec![
            Span::styled(format!("{name} "), theme.header),
            Span::styled("● ", theme.header_ok),
            Span::styled(
                format!(
                    "{} {}",
                    t.platform,
                    text::fit(&text::sanitize_plain(version), 16)
                ),
                theme.header,
            ),
        ],
        ConnState::Disconnected { .. } => vec![
            Span::styled(format!("{name} "), theme.header),
            Span::styled(format!("✗ {} unreachable", t.platform), theme.header_err),
        ],
    }
}
