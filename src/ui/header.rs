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

/// Rows one unreachable target's message may take before it is cut.
const MAX_ERROR_ROWS: usize = 3;

/// How many rows the header needs at `width`: one, plus the wrapped message of each
/// unreachable target.
pub fn height(targets: &[TargetState], width: u16) -> u16 {
    let width = (width as usize).max(1);
    let rows: usize = targets
        .iter()
        .filter_map(disconnect_message)
        .map(|msg| {
            text::display_width(&msg)
                .div_ceil(width)
                .clamp(1, MAX_ERROR_ROWS)
        })
        .sum();
    1 + rows as u16
}

/// The line explaining why a target is unreachable, or `None` when it is not.
fn disconnect_message(t: &TargetState) -> Option<String> {
    match &t.conn {
        ConnState::Disconnected {
            error,
            retry_in_secs,
        } => Some(text::sanitize_plain(&format!(
            " {}: {} — retrying in {retry_in_secs}s",
            t.name, error
        ))),
        _ => None,
    }
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
    // The clock goes only where it fits with a space before it.
    if let Some(room) = (area.width as usize).checked_sub(used + clock.len() + 2) {
        spans.push(Span::styled(" ".repeat(room + 1), theme.header));
        spans.push(Span::styled(format!("{clock} "), theme.header));
    }

    let mut lines = vec![Line::from(spans)];
    let width = (area.width as usize).max(1);
    for msg in targets.iter().filter_map(disconnect_message) {
        let rows = crate::text::SafeLine::plain(&msg).wrap(width);
        let cut = rows.len() > MAX_ERROR_ROWS;
        for (i, row) in rows.into_iter().take(MAX_ERROR_ROWS).enumerate() {
            let mut row = row.text;
            if cut && i + 1 == MAX_ERROR_ROWS {
                row = text::fit(&format!("{row}…"), width);
            }
            lines.push(Line::styled(row, theme.error));
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
