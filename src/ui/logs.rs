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
    let ends = end_lines(view, theme);
    if lines.is_empty() && ends.is_empty() {
        lines.push(Line::styled(" waiting for output…", theme.text_dim));
    }
    // Where the followed lines stop, why each ended part did: after the last line when there
    // are lines, else the whole body, so a stream that ended empty says why.
    lines.extend(ends);
    if lines.len() > height {
        let cut = if view.follow { lines.len() - height } else { 0 };
        lines.drain(..cut);
        lines.truncate(height);
    }
    f.render_widget(Paragraph::new(lines), inner);
}

/// One dim line for each replica whose stream ended: its name and why.
fn end_lines(view: &LogView, theme: &Theme) -> Vec<Line<'static>> {
    view.ended
        .iter()
        .map(|(replica, reason)| {
            Line::styled(
                format!(
                    " {}: {}",
                    text::fit(&text::sanitize_plain(replica), 40),
                    end_reason(reason)
                ),
                theme.text_dim,
            )
        })
        .collect()
}

/// Why a stream ended, in one safe line; the API's refusal of a previous container that does
/// not exist is said in the operator's terms.
fn end_reason(reason: &str) -> String {
    let reason = text::sanitize_plain(&text::one_line(reason));
    // Kubernetes answers `p` on a pod that never restarted with a 400:
    // previous terminated container "web" in pod "web-5d9c-ft8gb" not found
    if reason.starts_with("previous terminated container ") && reason.ends_with(" not found") {
        return "no previous container (the pod has not restarted)".to_string();
    }
    reason
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

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use crate::keymap::KeyAction;
    use crate::platform::{LogRecord, Update};
    use crate::ui::app::App;
    use crate::ui::app::tests_support::app;

    const WIDTH: u16 = 100;
    const HEIGHT: u16 = 24;

    /// The whole screen drawn, row by row.
    fn screen(app: &mut App) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).unwrap();
        terminal.draw(|f| crate::ui::draw(f, app)).unwrap();
        terminal
    }

    fn rows(terminal: &Terminal<TestBackend>) -> Vec<String> {
        let buffer = terminal.backend().buffer();
        (0..HEIGHT)
            .map(|y| (0..WIDTH).map(|x| buffer[(x, y)].symbol()).collect())
            .collect()
    }

    /// The row that holds `needle`, and the column it starts at.
    fn find(terminal: &Terminal<TestBackend>, needle: &str) -> Option<(u16, u16)> {
        rows(terminal).iter().enumerate().find_map(|(y, row)| {
            let at = row.find(needle)?;
            let x = crate::text::display_width(&row[..at]);
            Some((u16::try_from(x).ok()?, u16::try_from(y).ok()?))
        })
    }

    /// The console with the previous container's logs of replica `g-1` open.
    fn previous_logs(dir: &std::path::Path) -> App {
        let mut app = app(dir, false);
        app.on_action(KeyAction::PreviousLogs);
        assert!(app.logs.is_some(), "p opened no logs view");
        app
    }

    fn stream(app: &App) -> u64 {
        app.logs.as_ref().map(|v| v.stream).unwrap_or_default()
    }

    fn ended(app: &mut App, reason: &str) {
        let stream = stream(app);
        app.on_update(Update::LogsEnded {
            stream,
            replica: "g-1".to_string(),
            reason: reason.to_string(),
        });
    }

    #[test]
    fn a_previous_log_refused_for_a_pod_that_never_restarted_says_so_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = previous_logs(dir.path());
        assert!(find(&screen(&mut app), "waiting for output…").is_some());

        ended(
            &mut app,
            "previous terminated container \"web\" in pod \"g-1\" not found",
        );

        let terminal = screen(&mut app);
        assert!(
            find(
                &terminal,
                " g-1: no previous container (the pod has not restarted)"
            )
            .is_some(),
            "{:#?}",
            rows(&terminal)
        );
        assert!(find(&terminal, "waiting for output").is_none());
        assert!(
            find(&terminal, "1 ended").is_some(),
            "the title still counts it"
        );
    }

    #[test]
    fn any_other_end_reason_is_shown_as_given_without_its_control_sequences() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = previous_logs(dir.path());

        ended(&mut app, "the pod \x1b[31mwas deleted\x1b[0m\nat once");

        let terminal = screen(&mut app);
        assert!(
            find(&terminal, " g-1: the pod was deleted at once").is_some(),
            "{:#?}",
            rows(&terminal)
        );
        assert!(rows(&terminal).iter().all(|row| !row.contains('\x1b')));
    }

    #[test]
    fn with_lines_the_reason_follows_the_last_line_dimmed() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = previous_logs(dir.path());
        let stream = stream(&app);
        let lines = (0..3)
            .map(|i| LogRecord {
                replica: "g-1".to_string(),
                stderr: false,
                timestamp: None,
                line: crate::text::sanitize(format!("line {i}").as_bytes()),
            })
            .collect();
        app.on_update(Update::Logs { stream, lines });

        ended(&mut app, "previous instance's lines loaded");

        let terminal = screen(&mut app);
        let (_, last) = find(&terminal, "line 2").unwrap();
        let (x, y) = find(&terminal, "g-1: previous instance's lines loaded").unwrap();
        assert_eq!(y, last + 1, "{:#?}", rows(&terminal));
        let cell = &terminal.backend().buffer()[(x, y)];
        assert_eq!(Some(cell.fg), app.theme.text_dim.fg);
        assert!(find(&terminal, "waiting for output").is_none());
    }
}
