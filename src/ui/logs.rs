//! The logs view: one replica or a whole workload merged, each line prefixed by its replica
//! in its own colour, with follow, wrap, timestamps, search highlight and filter.
//!
//! Not for fetching: the app asks the worker; this only draws what the buffer holds.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::logbuf::LogEntry;
use crate::text;
use crate::theme::Theme;

use super::app::LogView;

/// Draw the view; `max_line_display` caps the columns shown of one very long line.
pub fn render(
    f: &mut Frame,
    area: Rect,
    view: &mut LogView,
    theme: &Theme,
    max_line_display: usize,
) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title(view), theme.title))
        .border_style(theme.border_focus);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let height = inner.height as usize;
    view.height = height;
    let width = inner.width as usize;
    view.width = width;
    let multi = view.replicas.len() > 1;
    let mut lines: Vec<Line> = Vec::with_capacity(height);
    for seq in view.window(height) {
        let Some(record) = view.buffer.get(seq) else {
            continue;
        };
        let prefix = prefix_spans(view, &record, multi, theme);
        let prefix_width: usize = prefix.iter().map(|s| text::display_width(&s.content)).sum();
        let room = width.saturating_sub(prefix_width).max(1);
        let matches = view
            .search
            .as_ref()
            .map_or(Vec::new(), |re| view.buffer.matches(re, seq));
        // Matches are found on the whole line, then cut with it, so a hit stays highlighted
        // when the line is scrolled sideways or wrapped.
        let marked;
        let line = if matches.is_empty() {
            record.line
        } else {
            marked = record.line.highlighted(&matches, search_style(theme));
            &marked
        };
        if view.wrap {
            let mut shown = line.display_cut(0, max_line_display);
            if line.width() > max_line_display {
                // The rest stays in the buffer for search and copy; say that it is there.
                shown.text.push_str(" …");
            }
            for (i, part) in shown.wrap(room).into_iter().enumerate() {
                let mut spans = if i == 0 {
                    prefix.clone()
                } else {
                    vec![Span::raw(" ".repeat(prefix_width))]
                };
                spans.extend(part.to_line(theme.text).spans);
                lines.push(Line::from(spans));
            }
        } else {
            let mut spans = prefix;
            spans.extend(
                line.display_cut(view.hscroll, room)
                    .to_line(theme.text)
                    .spans,
            );
            lines.push(Line::from(spans));
        }
    }
    if lines.len() > height {
        let cut = if view.follow { lines.len() - height } else { 0 };
        lines.drain(..cut);
        lines.truncate(height);
    }
    if lines.is_empty() {
        lines.push(Line::styled(" waiting for output…", theme.text_dim));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

fn title(view: &LogView) -> String {
    let on = |b: bool| if b { "on" } else { "off" };
    let mut t = format!(
        " logs ─ {} ─ follow {}  wrap {}  time {}  {} lines",
        text::fit(&text::sanitize_plain(&view.title), 40),
        on(view.follow),
        on(view.wrap),
        on(view.timestamps),
        view.buffer.len()
    );
    if view.skipped > 0 {
        t.push_str(&format!(
            "  paused: {} newer lines not kept (f resumes)",
            view.skipped
        ));
    }
    if view.buffer.dropped() > 0 {
        t.push_str(&format!(" ({} older dropped)", view.buffer.dropped()));
    }
    if let Some(re) = &view.search {
        t.push_str(&format!(
            "  search /{}",
            text::fit(&text::sanitize_plain(re.as_str()), 20)
        ));
    }
    if let Some(re) = &view.filter {
        t.push_str(&format!(
            "  filter |{} ({})",
            text::fit(&text::sanitize_plain(re.as_str()), 20),
            view.filtered.len()
        ));
    }
    if !view.ended.is_empty() {
        t.push_str(&format!("  {} ended", view.ended.len()));
    }
    t.push(' ');
    t
}

fn prefix_spans(view: &LogView, r: &LogEntry, multi: bool, theme: &Theme) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    if view.timestamps {
        let ts = r
            .timestamp
            .map_or_else(|| " ".repeat(12), |t| t.format("%H:%M:%S%.3f").to_string());
        spans.push(Span::styled(format!("{ts} "), theme.text_dim));
    }
    if multi {
        let color = view.colors.get(r.replica).copied();
        let style = color.map_or(theme.text_dim, |c| Style::default().fg(c));
        spans.push(Span::styled(
            format!("{} ", text::fit(&text::sanitize_plain(r.replica), 24)),
            style,
        ));
    }
    if r.stderr {
        spans.push(Span::styled("▌", theme.stderr));
    } else {
        spans.push(Span::raw(" "));
    }
    spans
}

/// The style of a search hit: the theme's, or reverse video when the theme sets none.
fn search_style(theme: &Theme) -> Style {
    if theme.match_highlight == Style::default() {
        Style::default().add_modifier(Modifier::REVERSED)
    } else {
        theme.match_highlight
    }
}
