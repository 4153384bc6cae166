//! The detail pane of the selected workload: its replicas (state, health, uptime, stats, risky
//! security settings), sparklines of CPU and memory, the selected replica's security and env
//! (secrets masked unless revealed), and recent engine events.
//!
//! Not for logs: those have their own view.

use chrono::{DateTime, FixedOffset, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline};

use crate::model::{MASK, Replica, env_name_looks_secret};
use crate::store::{Store, Workload};
use crate::text;
use crate::theme::Theme;

use super::format::{human_age, human_bytes, human_cpu};

/// What the pane needs besides the store.
pub struct DetailProps<'a> {
    pub workload: Option<&'a Workload>,
    pub selected: usize,
    pub focused: bool,
    pub reveal: bool,
    pub now: DateTime<Utc>,
    /// The operator's time zone, for event times.
    pub offset: FixedOffset,
}

/// Draw the pane: replicas on the left, stats, security, env and events on the right.
pub fn render(f: &mut Frame, area: Rect, store: &Store, props: &DetailProps, theme: &Theme) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let Some(w) = props.workload else {
        let block = pane_block(" detail ", theme, props.focused);
        f.render_widget(
            Paragraph::new(Line::styled(" select a workload", theme.text_dim)).block(block),
            area,
        );
        return;
    };
    let replicas: Vec<&Replica> = w
        .replicas
        .iter()
        .filter_map(|id| store.replica(&w.id.target, id))
        .collect();
    let selected = props.selected.min(replicas.len().saturating_sub(1));
    render_replicas(f, left, w, &replicas, selected, props, store, theme);
    render_side(
        f,
        right,
        store,
        w,
        replicas.get(selected).copied(),
        props,
        theme,
    );
}

fn pane_block(title: &str, theme: &Theme, focused: bool) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title.to_string(), theme.title))
        .border_style(if focused {
            theme.border_focus
        } else {
            theme.border
        })
}

#[allow(clippy::too_many_arguments)] // one panel's inputs; grouping them would only rename them
fn render_replicas(
    f: &mut Frame,
    area: Rect,
    w: &Workload,
    replicas: &[&Replica],
    selected: usize,
    props: &DetailProps,
    store: &Store,
    theme: &Theme,
) {
    let title = format!(
        " {} ─ {} ─ replicas {}/{} ",
        text::fit(&text::sanitize_plain(&w.id.name), 40),
        w.id.kind.label(),
        w.ready,
        w.desired
    );
    let block = pane_block(&title, theme, props.focused);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let width = inner.width as usize;
    let height = inner.height as usize;
    let offset = selected.saturating_sub(height.saturating_sub(1));
    let lines: Vec<Line> = replicas
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(i, r)| {
            replica_line(
                r,
                store,
                &w.id.target,
                theme,
                width,
                props.now,
                i == selected,
            )
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

fn replica_line(
    r: &Replica,
    store: &Store,
    target: &str,
    theme: &Theme,
    width: usize,
    now: DateTime<Utc>,
    selected: bool,
) -> Line<'static> {
    let health = r.health.map_or("-", |h| h.label());
    let up = match (r.state.as_str(), r.started_at) {
        ("running", Some(t)) => format!("up {}", human_age(now - t)),
        _ => String::new(),
    };
    let stats = store
        .replica_stats(target, &r.id)
        .and_then(|s| s.back())
        .filter(|_| r.state == "running")
        .map_or(String::new(), |s| {
            format!("{} {}", human_cpu(s.cpu_percent), human_bytes(s.mem_bytes))
        });
    let risks = r
        .details
        .as_ref()
        .map_or(Vec::new(), |d| d.security.risks());
    let base = format!(
        " {} {} {} {} {} ↻{}",
        text::pad(&text::sanitize_plain(&r.name), 22),
        text::pad(&r.state, 8),
        text::pad(health, 9),
        text::pad(&up, 8),
        text::pad(&stats, 12),
        r.restart_count,
    );
    let mut spans = vec![Span::styled(base, theme.row)];
    if !risks.is_empty() {
        spans.push(Span::styled(format!(" ⚠ {}", risks.join(", ")), theme.risk));
    }
    let line = fit_line(spans, width);
    if selected {
        line.style(theme.row_selected)
    } else {
        line
    }
}

/// Cut a line of spans to `width` columns.
fn fit_line(spans: Vec<Span<'static>>, width: usize) -> Line<'static> {
    let mut out = Vec::new();
    let mut used = 0;
    for s in spans {
        let w = text::display_width(&s.content);
        if used + w <= width {
            used += w;
            out.push(s);
        } else {
            let room = width.saturating_sub(used);
            if room > 0 {
                out.push(Span::styled(text::fit(&s.content, room), s.style));
            }
            break;
        }
    }
    Line::from(out)
}

fn render_side(
    f: &mut Frame,
    area: Rect,
    store: &Store,
    w: &Workload,
    replica: Option<&Replica>,
    props: &DetailProps,
    theme: &Theme,
) {
    let block = pane_block(" stats ─ security ─ events ", theme, false);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.height < 3 {
        return;
    }
    let [cpu_row, mem_row, rest] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    let series = store.workload_series(w);
    let latest = series.last().copied().unwrap_or_default();
    let cpu: Vec<u64> = series
        .iter()
        .map(|s| (s.cpu_percent * 10.0) as u64)
        .collect();
    let mem: Vec<u64> = series.iter().map(|s| s.mem_bytes).collect();
    // A sum of limits over replicas means little (each may be the host's memory): show the
    // limit for a workload of one replica only.
    let limit = if latest.mem_limit > 0 && w.replicas.len() == 1 {
        format!("/{}", human_bytes(latest.mem_limit))
    } else {
        String::new()
    };
    sparkline_row(
        f,
        cpu_row,
        &format!("cpu {:>6} ", human_cpu(latest.cpu_percent)),
        &cpu,
        theme.sparkline_cpu,
        theme,
    );
    sparkline_row(
        f,
        mem_row,
        &format!("mem {:>6}{limit} ", human_bytes(latest.mem_bytes)),
        &mem,
        theme.sparkline_mem,
        theme,
    );
    let mut lines = Vec::new();
    if latest.net_rx > 0 || latest.net_tx > 0 {
        lines.push(Line::styled(
            format!(
                "net rx {}  tx {}",
                human_bytes(latest.net_rx),
                human_bytes(latest.net_tx)
            ),
            theme.text_dim,
        ));
    }
    if let Some(r) = replica {
        lines.extend(security_lines(r, theme));
        lines.extend(env_lines(r, props.reveal, theme));
    }
    lines.extend(event_lines(store, w, props.offset, theme));
    let width = rest.width as usize;
    let lines: Vec<Line> = lines
        .into_iter()
        .map(|l| fit_line(l.spans, width))
        .collect();
    f.render_widget(Paragraph::new(lines), rest);
}

fn sparkline_row(
    f: &mut Frame,
    area: Rect,
    label: &str,
    data: &[u64],
    style: Style,
    theme: &Theme,
) {
    let label_width = (text::display_width(label) as u16).min(area.width);
    let [label_area, chart] =
        Layout::horizontal([Constraint::Length(label_width), Constraint::Min(0)]).areas(area);
    f.render_widget(
        Paragraph::new(Span::styled(label.to_string(), theme.text)),
        label_area,
    );
    let start = data.len().saturating_sub(chart.width as usize);
    f.render_widget(
        Sparkline::default().data(&data[start..]).style(style),
        chart,
    );
}

fn security_lines(r: &Replica, theme: &Theme) -> Vec<Line<'static>> {
    let Some(d) = &r.details else {
        return vec![Line::styled("security: inspecting…", theme.text_dim)];
    };
    let s = &d.security;
    let user = if s.user.is_empty() {
        "(image default)"
    } else {
        s.user.as_str()
    };
    let mut lines = vec![Line::from(vec![
        Span::styled("security ", theme.title),
        Span::styled(
            text::sanitize_plain(&format!(
                "user {user}  seccomp {}  apparmor {}  rootfs {}",
                s.seccomp.as_deref().unwrap_or("default"),
                s.apparmor.as_deref().unwrap_or("default"),
                if s.read_only_rootfs {
                    "read-only"
                } else {
                    "writable"
                },
            )),
            theme.text,
        ),
    ])];
    if s.privileged || !s.cap_add.is_empty() {
        lines.push(Line::styled(
            text::sanitize_plain(&format!(
                "  privileged {}  cap_add {}",
                s.privileged,
                if s.cap_add.is_empty() {
                    "-".to_string()
                } else {
                    s.cap_add.join(",")
                }
            )),
            theme.text,
        ));
    }
    let risks = s.risks();
    if !risks.is_empty() {
        lines.push(Line::styled(
            format!("  ⚠ {}", risks.join(", ")),
            theme.risk,
        ));
    }
    lines
}

fn env_lines(r: &Replica, reveal: bool, theme: &Theme) -> Vec<Line<'static>> {
    let Some(d) = &r.details else {
        return Vec::new();
    };
    if d.env.is_empty() {
        return Vec::new();
    }
    let hint = if reveal {
        " (x hides secrets)"
    } else {
        " (x reveals secrets)"
    };
    let mut lines = vec![Line::from(vec![
        Span::styled("env", theme.title),
        Span::styled(hint, theme.text_dim),
    ])];
    for (name, value) in &d.env {
        let masked = env_name_looks_secret(name) && !reveal;
        let shown = if masked {
            MASK.to_string()
        } else {
            text::sanitize_plain(value)
        };
        lines.push(Line::from(vec![
            Span::styled(format!("  {}=", text::sanitize_plain(name)), theme.text_dim),
            Span::styled(shown, if masked { theme.masked } else { theme.text }),
        ]));
    }
    lines
}

fn event_lines(
    store: &Store,
    w: &Workload,
    offset: FixedOffset,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let Some(target) = store.target(&w.id.target) else {
        return Vec::new();
    };
    let names: Vec<&str> = w
        .replicas
        .iter()
        .filter_map(|id| target.replicas.get(id))
        .map(|r| r.name.as_str())
        .collect();
    let mut lines: Vec<Line> = target
        .events
        .iter()
        .rev()
        .filter(|e| names.contains(&e.subject.as_str()) || e.subject == w.id.name)
        .take(8)
        .map(|e| {
            Line::from(vec![
                Span::styled(
                    format!("{} ", e.time.with_timezone(&offset).format("%H:%M:%S")),
                    theme.text_dim,
                ),
                Span::styled(
                    text::sanitize_plain(&format!("{} {}", e.subject, e.action)),
                    theme.text,
                ),
            ])
        })
        .collect();
    if !lines.is_empty() {
        lines.insert(0, Line::styled("events", theme.title));
    }
    lines
}
