//! The autoscaler view: a table of the loaded rules (state, metrics against their targets,
//! replicas, the last decision) with any rule file errors above it, and below it a timeline of
//! the selected rule's recent decisions; plus the short RULE cell of the workloads table.
//!
//! Not for deciding, acting or keeping a selection: it draws the [`Status`] the autoscaler
//! published, and the caller owns the selected row (bounded by [`row_count`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Padding, Paragraph, Sparkline, Wrap};

use crate::autoscaler::{Act, DecisionRecord, RuleState, RuleStatus, Status};
use crate::rules::{Metric, MetricSource, Reading};
use crate::text;
use crate::theme::Theme;

use super::format::{human_age, human_cpu};

/// The most columns [`rule_cell`] returns.
const RULE_CELL_WIDTH: usize = 12;

/// Rule file errors listed above the table before the rest are only counted.
const MAX_LOAD_ERRORS: usize = 3;

/// Below this many columns for the reason, the timeline gives each decision a second line.
const MIN_INLINE_REASON: usize = 40;

/// What the view says when no rule is loaded; the caller knows no path, so it names the ways.
const NO_RULES: &str = "no rules: put rule files in the rules directory (pilothouse --version \
                        shows it) or press e on a workload";

/// The rows the view's table has, for the caller's selection bounds: one per loaded rule.
pub fn row_count(status: &Status) -> usize {
    status.rules.len()
}

/// The workloads table's RULE cell, at most 12 columns: `-` without a rule, else the rule's
/// name (cut with `…`) and its last decision: `web ▲5` (growing to 5), `web ▼2`, `web =3`,
/// `web ⏸` (paused), `web ⌛` (standby), `web ✗` (unsupported), `web` before any decision.
pub fn rule_cell(status: Option<&RuleStatus>) -> String {
    let Some(rule) = status else {
        return "-".to_string();
    };
    let marker = match (&rule.state, rule.current, rule.desired) {
        (RuleState::Paused, _, _) => "⏸".to_string(),
        (RuleState::Standby { .. }, _, _) => "⌛".to_string(),
        (RuleState::Unsupported(_), _, _) => "✗".to_string(),
        (RuleState::Active, Some(current), Some(desired)) if desired > current => {
            format!("▲{desired}")
        }
        (RuleState::Active, Some(current), Some(desired)) if desired < current => {
            format!("▼{desired}")
        }
        (RuleState::Active, Some(_), Some(desired)) => format!("={desired}"),
        (RuleState::Active, _, _) => String::new(),
    };
    let name = text::sanitize_plain(&rule.name);
    if marker.is_empty() {
        return text::fit(&name, RULE_CELL_WIDTH);
    }
    let room = RULE_CELL_WIDTH.saturating_sub(text::display_width(&marker) + 1);
    format!("{} {marker}", text::fit(&name, room))
}

/// Draw the view into `area`: load errors, the rule table with row `selected` highlighted (an
/// index past the end selects the last rule), and the selected rule's decisions. Times are UTC,
/// as `now` is.
pub fn render(
    f: &mut Frame,
    area: Rect,
    status: &Status,
    selected: usize,
    theme: &Theme,
    now: DateTime<Utc>,
) {
    if area.width == 0 || area.height == 0 {
        return;
    }
    let errors = load_error_lines(&status.load_errors, area, theme);
    let [errors_area, rest] =
        Layout::vertical([Constraint::Length(errors.len() as u16), Constraint::Min(0)]).areas(area);
    f.render_widget(Paragraph::new(errors), errors_area);

    let Some(last) = status.rules.len().checked_sub(1) else {
        render_empty(f, rest, theme);
        return;
    };
    let selected = selected.min(last);
    let [table_area, timeline_area] = Layout::vertical([
        Constraint::Length(table_height(status.rules.len(), rest.height)),
        Constraint::Min(0),
    ])
    .areas(rest);
    render_table(f, table_area, status, selected, theme, now);
    render_timeline(f, timeline_area, &status.rules[selected], theme);
}

/// The lines naming rule file errors: a count, the first few, and how many more there are;
/// at most a third of `area`'s rows.
fn load_error_lines(errors: &[String], area: Rect, theme: &Theme) -> Vec<Line<'static>> {
    let budget = usize::from(area.height / 3);
    if errors.is_empty() || budget == 0 {
        return Vec::new();
    }
    let width = usize::from(area.width);
    let noun = if errors.len() == 1 { "error" } else { "errors" };
    let heading = format!(
        " ✗ {} {noun} in rule files (the rules loaded before keep running):",
        errors.len()
    );
    let mut lines = vec![Line::styled(text::fit(&heading, width), theme.error)];
    let room = budget - 1;
    let shown = if errors.len() <= room.min(MAX_LOAD_ERRORS) {
        errors.len()
    } else if room <= 1 {
        room
    } else {
        // One row goes to the count of the rest.
        room.min(MAX_LOAD_ERRORS + 1) - 1
    };
    for error in &errors[..shown] {
        let line = format!("   {}", text::sanitize_plain(error));
        lines.push(Line::styled(text::fit(&line, width), theme.error));
    }
    if shown < errors.len() && room > shown {
        let more = format!("   … {} more", errors.len() - shown);
        lines.push(Line::styled(text::fit(&more, width), theme.error));
    }
    lines
}

/// Rows for the table: borders, titles and every rule, but at most half the view once there
/// is room for a timeline below it.
fn table_height(rules: usize, height: u16) -> u16 {
    let wanted = u16::try_from(rules.saturating_add(3)).unwrap_or(u16::MAX);
    let cap = if height < 10 { height } else { height / 2 };
    wanted.min(cap)
}

fn render_empty(f: &mut Frame, area: Rect, theme: &Theme) {
    let block = pane_block(" autoscaler ─ 0 rules ".to_string(), theme, true)
        .padding(Padding::horizontal(1));
    let hint = Line::styled(NO_RULES, theme.text_dim);
    f.render_widget(
        Paragraph::new(hint).block(block).wrap(Wrap { trim: false }),
        area,
    );
}

fn pane_block(title: String, theme: &Theme, focused: bool) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title, theme.title))
        .border_style(if focused {
            theme.border_focus
        } else {
            theme.border
        })
}

/// A column of the rule table, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Rule,
    Target,
    State,
    Metrics,
    Replicas,
    MinMax,
    Last,
    Reason,
}

impl Column {
    const ALL: [Column; 8] = [
        Column::Rule,
        Column::Target,
        Column::State,
        Column::Metrics,
        Column::Replicas,
        Column::MinMax,
        Column::Last,
        Column::Reason,
    ];

    fn title(self) -> &'static str {
        match self {
            Column::Rule => "RULE",
            Column::Target => "TARGET",
            Column::State => "STATE",
            Column::Metrics => "METRICS",
            Column::Replicas => "REPLICAS",
            Column::MinMax => "MIN-MAX",
            Column::Last => "LAST",
            Column::Reason => "REASON",
        }
    }

    /// (least width, most width, priority): lower priorities are dropped first when narrow.
    fn layout(self) -> (usize, usize, u8) {
        match self {
            Column::Rule => (6, 24, 10),
            Column::Target => (10, 36, 6),
            Column::State => (7, 11, 8),
            Column::Metrics => (12, 48, 7),
            Column::Replicas => (8, 9, 9),
            Column::MinMax => (7, 9, 3),
            Column::Last => (4, 5, 5),
            Column::Reason => (16, 16, 2),
        }
    }
}

/// One table cell: styled pieces, cut and padded to the column's width when drawn.
type Cell = Vec<Span<'static>>;

fn render_table(
    f: &mut Frame,
    area: Rect,
    status: &Status,
    selected: usize,
    theme: &Theme,
    now: DateTime<Utc>,
) {
    let count = status.rules.len();
    let noun = if count == 1 { "rule" } else { "rules" };
    let block = pane_block(format!(" autoscaler ─ {count} {noun} "), theme, true);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let rows: Vec<Vec<Cell>> = status
        .rules
        .iter()
        .map(|r| row_cells(r, theme, now))
        .collect();
    let columns = fit_columns(&rows, usize::from(inner.width));
    let body = usize::from(inner.height - 1);
    let offset = (selected + 1).saturating_sub(body);

    let mut lines = vec![header_line(&columns, theme)];
    for (i, cells) in rows.iter().enumerate().skip(offset).take(body) {
        lines.push(row_line(cells, &columns, theme, i == selected));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

fn row_cells(rule: &RuleStatus, theme: &Theme, now: DateTime<Utc>) -> Vec<Cell> {
    Column::ALL
        .iter()
        .map(|column| match column {
            Column::Rule => plain(&rule.name, theme.row),
            Column::Target => plain(&rule.rule.target.to_string(), theme.text_dim),
            Column::State => vec![Span::styled(
                rule.state.word(),
                state_style(&rule.state, theme),
            )],
            Column::Metrics => metric_cells(rule, theme),
            Column::Replicas => plain(&replicas(rule.current, rule.desired), theme.row),
            Column::MinMax => plain(
                &format!("{}-{}", rule.rule.min_replicas, rule.rule.max_replicas),
                theme.text_dim,
            ),
            Column::Last => plain(
                &rule
                    .last()
                    .map_or("-".to_string(), |d| human_age(now - d.at)),
                theme.text_dim,
            ),
            Column::Reason => plain(rule.last().map_or("", |d| d.reason.as_str()), theme.row),
        })
        .collect()
}

/// A cell of one style from text that may come from a file or a server.
fn plain(value: &str, style: Style) -> Cell {
    vec![Span::styled(text::sanitize_plain(value), style)]
}

fn state_style(state: &RuleState, theme: &Theme) -> Style {
    match state {
        RuleState::Active => theme.success,
        RuleState::Paused | RuleState::Standby { .. } => theme.warning,
        RuleState::Unsupported(_) => theme.error,
    }
}

/// `2 → 5`, `3` when they agree, `-` when neither is known.
fn replicas(current: Option<u32>, desired: Option<u32>) -> String {
    match (current, desired) {
        (Some(c), Some(d)) if c == d => c.to_string(),
        (Some(c), Some(d)) => format!("{c} → {d}"),
        (Some(c), None) => c.to_string(),
        (None, Some(d)) => format!("- → {d}"),
        (None, None) => "-".to_string(),
    }
}

/// Each metric as `name value/target`; a failed reading as `name ?` in the error style, one
/// not read yet as `name -/target`.
fn metric_cells(rule: &RuleStatus, theme: &Theme) -> Cell {
    let mut spans = Vec::new();
    for (i, metric) in rule.rule.metrics.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(", ", theme.text_dim));
        }
        let name = text::sanitize_plain(&metric.name);
        let target = metric_target(metric);
        match rule.readings.get(i).and_then(Option::as_ref) {
            Some(Ok(value)) => spans.push(Span::styled(
                format!("{name} {}/{target}", metric_value(metric, *value)),
                theme.row,
            )),
            Some(Err(_)) => spans.push(Span::styled(format!("{name} ?"), theme.error)),
            None => spans.push(Span::styled(format!("{name} -/{target}"), theme.text_dim)),
        }
    }
    spans
}

/// A reading as tables show it: CPU in percent, a Prometheus value short (`480`, `1.9k`).
fn metric_value(metric: &Metric, value: f64) -> String {
    match metric.source {
        MetricSource::Cpu { .. } => human_cpu(value),
        MetricSource::Prometheus { .. } => short_number(value),
    }
}

fn metric_target(metric: &Metric) -> String {
    match metric.source {
        MetricSource::Cpu { utilization } => human_cpu(utilization),
        MetricSource::Prometheus { target, .. } => short_number(target),
    }
}

/// A number in at most about four columns: `0.25`, `12.5`, `480`, `1.9k`, `12k`, `3.4M`.
fn short_number(value: f64) -> String {
    let abs = value.abs();
    let (scaled, unit) = if abs >= 1e9 {
        (value / 1e9, "G")
    } else if abs >= 1e6 {
        (value / 1e6, "M")
    } else if abs >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let digits = match scaled.abs() {
        a if a < 10.0 && unit.is_empty() => 2,
        a if a < 100.0 && unit.is_empty() => 1,
        a if a < 10.0 => 1,
        _ => 0,
    };
    let text = format!("{scaled:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{unit}")
}

/// Choose the columns that fit `width` and the width of each: each as wide as its widest cell
/// within its bounds; when too wide, the reason is narrowed and then dropped, then the target,
/// metrics and rule are narrowed, then low priorities dropped. The reason takes what is left.
fn fit_columns(rows: &[Vec<Cell>], width: usize) -> Vec<(Column, usize)> {
    let mut columns: Vec<(Column, usize)> = Column::ALL
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let (least, most, _) = c.layout();
            let widest = rows.iter().map(|r| spans_width(&r[i])).max().unwrap_or(0);
            let title = c.title().len();
            (
                c,
                widest.max(title).clamp(least.max(title), most.max(title)),
            )
        })
        .collect();
    let total = columns_width;

    // The reason goes first: the timeline below shows it in full, and a few columns of it
    // are worth less than a whole target or metric.
    shrink(&mut columns, Column::Reason, width);
    if total(&columns) > width {
        columns.retain(|(c, _)| *c != Column::Reason);
    }
    for column in [Column::Target, Column::Metrics, Column::Rule] {
        shrink(&mut columns, column, width);
    }
    while total(&columns) > width && columns.len() > 1 {
        let Some((i, _)) = columns
            .iter()
            .enumerate()
            .min_by_key(|(_, (c, _))| c.layout().2)
        else {
            break;
        };
        columns.remove(i);
    }
    let spare = width.saturating_sub(total(&columns));
    let excess = total(&columns).saturating_sub(width);
    let grower = columns
        .iter()
        .position(|(c, _)| *c == Column::Reason)
        .unwrap_or(columns.len().saturating_sub(1));
    if let Some((_, w)) = columns.get_mut(grower) {
        *w = (*w + spare).saturating_sub(excess);
    }
    columns
}

/// Columns a row takes: each width plus a gutter.
fn columns_width(columns: &[(Column, usize)]) -> usize {
    columns.iter().map(|(_, w)| w + 1).sum()
}

/// Narrow `column` towards its least width until the row fits `width`.
fn shrink(columns: &mut [(Column, usize)], column: Column, width: usize) {
    let excess = columns_width(columns).saturating_sub(width);
    if let Some((c, w)) = columns.iter_mut().find(|(c, _)| *c == column) {
        *w -= excess.min(w.saturating_sub(c.layout().0));
    }
}

fn spans_width(spans: &[Span<'_>]) -> usize {
    spans.iter().map(|s| text::display_width(&s.content)).sum()
}

fn header_line(columns: &[(Column, usize)], theme: &Theme) -> Line<'static> {
    let spans: Vec<Span> = columns
        .iter()
        .flat_map(|(c, w)| cell(vec![Span::raw(c.title())], *w, c == &Column::Last))
        .map(|s| s.style(theme.table_header))
        .collect();
    Line::from(spans)
}

fn row_line(
    cells: &[Cell],
    columns: &[(Column, usize)],
    theme: &Theme,
    selected: bool,
) -> Line<'static> {
    let spans: Vec<Span> = columns
        .iter()
        .flat_map(|(c, w)| {
            let index = Column::ALL.iter().position(|a| a == c).unwrap_or(0);
            let content = cells.get(index).cloned().unwrap_or_default();
            cell(content, *w, *c == Column::Last)
        })
        .map(|s| {
            if selected {
                s.style(theme.row_selected)
            } else {
                let style = theme.row.patch(s.style);
                s.style(style)
            }
        })
        .collect();
    Line::from(spans)
}

/// `spans` cut to `width` columns (the cut piece ending in `…`), padded to exactly `width`,
/// plus one space of gutter.
fn cell(spans: Cell, width: usize, right: bool) -> Cell {
    let mut out = fit_spans(spans, width);
    let pad = " ".repeat(width.saturating_sub(spans_width(&out)));
    if right {
        out.insert(0, Span::raw(pad));
        out.push(Span::raw(" "));
    } else {
        out.push(Span::raw(format!("{pad} ")));
    }
    out
}

fn fit_spans(spans: Cell, width: usize) -> Cell {
    let mut out = Vec::with_capacity(spans.len());
    let mut used = 0;
    let total = spans_width(&spans);
    for s in spans {
        let w = text::display_width(&s.content);
        if total <= width || used + w < width {
            used += w;
            out.push(s);
            continue;
        }
        let room = width.saturating_sub(used);
        if room > 0 {
            out.push(Span::styled(
                text::fit(&format!("{}…", s.content), room),
                s.style,
            ));
        }
        break;
    }
    out
}

/// Draw the selected rule's details and its decisions, newest first.
fn render_timeline(f: &mut Frame, area: Rect, rule: &RuleStatus, theme: &Theme) {
    let name = text::fit(&text::sanitize_plain(&rule.name), 40);
    let block = pane_block(
        format!(" {name} ─ decisions, newest first (UTC) "),
        theme,
        false,
    );
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let width = usize::from(inner.width);
    let mut summary = summary_lines(rule, theme, width);
    summary.extend(state_line(&rule.state, theme, width));
    let spark = u16::from(!rule.history.is_empty() && inner.height > summary.len() as u16 + 2);
    let [summary_area, spark_area, rest] = Layout::vertical([
        Constraint::Length(summary.len() as u16),
        Constraint::Length(spark),
        Constraint::Min(0),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(summary), summary_area);
    if spark > 0 {
        render_desired_sparkline(f, spark_area, rule, theme);
    }
    let lines = decision_lines(rule, theme, width, usize::from(rest.height));
    f.render_widget(Paragraph::new(lines), rest);
}

/// The rule's workload, bounds, interval, counters and file, flowed onto at most two lines.
fn summary_lines(rule: &RuleStatus, theme: &Theme, width: usize) -> Vec<Line<'static>> {
    let r = &rule.rule;
    let dim = |text: String| vec![Span::styled(text, theme.text_dim)];
    let mut scales = dim(format!("scales {}", rule.scales_total));
    if rule.scale_errors_total > 0 {
        let failed = format!(" ({} failed)", rule.scale_errors_total);
        scales.push(Span::styled(failed, theme.error));
    }
    let groups = vec![
        plain(&r.target.to_string(), theme.text),
        dim(format!("replicas {}-{}", r.min_replicas, r.max_replicas)),
        dim(format!("every {}", interval(r.polling_interval))),
        dim(format!("decisions {}", rule.decisions_total)),
        dim(format!("metric errors {}", rule.metric_errors_total)),
        scales,
        plain(&rule.file.display().to_string(), theme.text_dim),
    ];
    flow(groups, width, 2)
}

/// `groups` laid out left to right two spaces apart, starting a new line when one does not
/// fit, on at most `max_lines` lines; what does not fit on the last is cut.
fn flow(groups: Vec<Cell>, width: usize, max_lines: usize) -> Vec<Line<'static>> {
    let mut lines: Vec<Cell> = Vec::new();
    let mut used = 0;
    for group in groups {
        let w = spans_width(&group);
        let joins = used + 2 + w <= width || lines.len() >= max_lines;
        match lines.last_mut() {
            Some(line) if joins => {
                line.push(Span::raw("  "));
                line.extend(group);
                used += 2 + w;
            }
            _ => {
                lines.push(group);
                used = w;
            }
        }
    }
    lines
        .into_iter()
        .map(|spans| Line::from(fit_spans(spans, width)))
        .collect()
}

/// `text` broken at spaces into at most `max_lines` rows of `width` columns, the last ending
/// in `…` when some is left over; a word longer than a row is cut.
fn wrap_words(text: &str, width: usize, max_lines: usize) -> Vec<String> {
    if max_lines == 0 {
        return Vec::new();
    }
    let mut rows: Vec<String> = Vec::new();
    let mut row = String::new();
    let mut words = text.split(' ').filter(|w| !w.is_empty()).peekable();
    while let Some(word) = words.next() {
        let needed = text::display_width(&row) + usize::from(!row.is_empty());
        if !row.is_empty() && needed + text::display_width(word) > width {
            if rows.len() + 1 == max_lines {
                let rest: Vec<&str> = std::iter::once(word).chain(words).collect();
                row = text::fit(&format!("{row} {}", rest.join(" ")), width);
                break;
            }
            rows.push(std::mem::take(&mut row));
        }
        if !row.is_empty() {
            row.push(' ');
        }
        row.push_str(word);
    }
    if !row.is_empty() {
        rows.push(text::fit(&row, width));
    }
    rows
}

/// Why a rule that is not active does not act, and for standby who holds the lock.
fn state_line(state: &RuleState, theme: &Theme, width: usize) -> Option<Line<'static>> {
    let (message, style) = match state {
        RuleState::Active => return None,
        RuleState::Paused => (
            "paused: not evaluated, the workload is left alone (P resumes)".to_string(),
            theme.warning,
        ),
        RuleState::Standby { holder } => (
            format!("standby: decided here but not acted on; the lock is held by {holder}"),
            theme.warning,
        ),
        RuleState::Unsupported(why) => (format!("unsupported: {why}"), theme.error),
    };
    let message = text::fit(&text::sanitize_plain(&message), width);
    Some(Line::styled(message, style))
}

/// `15s`, `1m30s`, `2h`: a polling interval exactly, in its units.
fn interval(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    if out.is_empty() {
        format!("{}ms", d.as_millis())
    } else {
        out
    }
}

/// The desired count of each decision in the history, oldest left, from 0 to the highest.
fn render_desired_sparkline(f: &mut Frame, area: Rect, rule: &RuleStatus, theme: &Theme) {
    let data: Vec<u64> = rule
        .history
        .iter()
        .map(|d| u64::from(d.desired.or(d.current).unwrap_or(0)))
        .collect();
    let max = data.iter().copied().max().unwrap_or(0).max(1);
    let label = format!("desired (max {max}) ");
    let label_width = (text::display_width(&label) as u16).min(area.width);
    let [label_area, chart] =
        Layout::horizontal([Constraint::Length(label_width), Constraint::Min(0)]).areas(area);
    f.render_widget(
        Paragraph::new(Span::styled(label, theme.text_dim)),
        label_area,
    );
    let start = data.len().saturating_sub(usize::from(chart.width));
    f.render_widget(
        Sparkline::default()
            .data(&data[start..])
            .max(max)
            .style(theme.sparkline_cpu),
        chart,
    );
}

/// The timeline's widths: time, replicas, action, readings; the reason takes the rest, inline
/// when it has room enough, else on a line of its own under each decision.
struct TimelineColumns {
    replicas: usize,
    action: usize,
    readings: usize,
    reason: Option<usize>,
}

const TIME_WIDTH: usize = 8;

/// Rows a reason may take on its own under a decision when it is not inline.
const REASON_ROWS: usize = 2;

fn decision_lines(
    rule: &RuleStatus,
    theme: &Theme,
    width: usize,
    height: usize,
) -> Vec<Line<'static>> {
    if height == 0 {
        return Vec::new();
    }
    if rule.history.is_empty() {
        let every = interval(rule.rule.polling_interval);
        let message = match rule.state {
            RuleState::Paused => "no decisions: the rule is paused".to_string(),
            RuleState::Unsupported(_) => "no decisions: the rule cannot run here".to_string(),
            _ => format!("no decisions yet: the rule is evaluated every {every}"),
        };
        return vec![Line::styled(text::fit(&message, width), theme.text_dim)];
    }
    let shown: Vec<&DecisionRecord> = rule.history.iter().rev().take(height).collect();
    let entries: Vec<[Cell; 4]> = shown
        .iter()
        .map(|d| decision_cells(d, &rule.rule.metrics, theme))
        .collect();
    let columns = timeline_columns(&entries, width);

    let mut lines = vec![timeline_header(&columns, width, theme)];
    for (d, cells) in shown.iter().zip(entries) {
        if lines.len() >= height {
            break;
        }
        let [time, replicas, action, readings] = cells;
        let mut spans = cell(time, TIME_WIDTH, false);
        spans.extend(cell(replicas, columns.replicas, false));
        spans.extend(cell(action, columns.action, false));
        spans.extend(cell(readings, columns.readings, false));
        let reason = text::sanitize_plain(&d.reason);
        match columns.reason {
            Some(room) => {
                spans.push(Span::styled(text::fit(&reason, room), theme.text));
                lines.push(Line::from(fit_spans(spans, width)));
            }
            None => {
                lines.push(Line::from(fit_spans(spans, width)));
                let indent = " ".repeat(TIME_WIDTH + 1);
                let room = width.saturating_sub(indent.len());
                let rows = height.saturating_sub(lines.len()).min(REASON_ROWS);
                for row in wrap_words(&reason, room, rows) {
                    lines.push(Line::styled(format!("{indent}{row}"), theme.text_dim));
                }
            }
        }
    }
    lines
}

/// Time, `current → desired` or `hold N`, the action, and the readings of one decision.
fn decision_cells(d: &DecisionRecord, metrics: &[Metric], theme: &Theme) -> [Cell; 4] {
    let time = vec![Span::styled(
        d.at.format("%H:%M:%S").to_string(),
        theme.text_dim,
    )];
    let change = match (d.current, d.desired) {
        (Some(c), Some(to)) if c != to => format!("{c} → {to}"),
        (Some(c), _) => format!("hold {c}"),
        (None, Some(to)) => format!("- → {to}"),
        (None, None) => "-".to_string(),
    };
    let action_style = match d.action {
        Act::Hold => theme.text_dim,
        Act::Scaled { .. } => theme.success,
        Act::Failed { .. } => theme.error,
        Act::Standby { .. } | Act::ReadOnly { .. } => theme.warning,
    };
    let action = vec![Span::styled(
        text::sanitize_plain(&d.action.describe()),
        action_style,
    )];
    [
        time,
        vec![Span::styled(change, theme.text)],
        action,
        reading_cells(&d.readings, metrics, theme),
    ]
}

/// Each reading as `name value`, a failed one as `name ?` in the error style.
fn reading_cells(readings: &[Reading], metrics: &[Metric], theme: &Theme) -> Cell {
    let mut spans = Vec::new();
    for (i, (metric, reading)) in metrics.iter().zip(readings).enumerate() {
        if i > 0 {
            spans.push(Span::styled(", ", theme.text_dim));
        }
        let name = text::sanitize_plain(&metric.name);
        spans.push(match reading {
            Ok(value) => Span::styled(
                format!("{name} {}", metric_value(metric, *value)),
                theme.text,
            ),
            Err(_) => Span::styled(format!("{name} ?"), theme.error),
        });
    }
    spans
}

fn timeline_columns(entries: &[[Cell; 4]], width: usize) -> TimelineColumns {
    let widest = |i: usize, title: &str, most: usize| {
        let w = entries
            .iter()
            .map(|e| spans_width(&e[i]))
            .max()
            .unwrap_or(0);
        w.max(title.len()).min(most.max(title.len()))
    };
    let replicas = widest(1, "REPLICAS", 9);
    let action = widest(2, "ACTION", 32);
    let readings = widest(3, "READINGS", 36);
    let used = TIME_WIDTH + replicas + action + readings + 4;
    let room = width.saturating_sub(used);
    TimelineColumns {
        replicas,
        action,
        readings,
        reason: (room >= MIN_INLINE_REASON).then_some(room),
    }
}

fn timeline_header(columns: &TimelineColumns, width: usize, theme: &Theme) -> Line<'static> {
    let mut title = format!(
        "{} {} {} {}",
        text::pad("TIME", TIME_WIDTH),
        text::pad("REPLICAS", columns.replicas),
        text::pad("ACTION", columns.action),
        text::pad("READINGS", columns.readings),
    );
    title.push_str(if columns.reason.is_some() {
        " REASON"
    } else {
        " (reason below)"
    });
    Line::styled(text::fit(&title, width), theme.table_header)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use chrono::{TimeDelta, TimeZone};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::rules::{Basis, Rule, parse_rules};

    const RULES: &str = "\
- name: web
  target: { platform: docker, host: local, workload: shop/web }
  minReplicas: 2
  maxReplicas: 20
  metrics:
    - name: rps
      prometheus:
        query: sum(rate(haproxy_backend_http_requests_total{proxy=\"web\"}[1m]))
        type: AverageValue
        target: 100
    - name: cpu
      cpu: { utilization: 70 }
- name: worker
  target: { platform: kubernetes, context: prod, namespace: shop, workload: deployment/worker }
  maxReplicas: 10
  pollingInterval: 30s
  metrics:
    - name: queue
      prometheus: { query: sum(queue_depth), type: Value, target: 50 }
";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 4, 31).unwrap()
    }

    fn rules() -> Vec<Arc<Rule>> {
        parse_rules(Path::new("web.yaml"), RULES)
            .unwrap()
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    fn record(
        secs_ago: i64,
        (current, desired): (u32, u32),
        readings: Vec<Reading>,
        action: Act,
        reason: &str,
    ) -> DecisionRecord {
        DecisionRecord {
            at: now() - TimeDelta::seconds(secs_ago),
            current: Some(current),
            desired: Some(desired),
            readings,
            recommendations: Vec::new(),
            reason: reason.to_string(),
            basis: Some(Basis::Metrics),
            action,
        }
    }

    fn rule_status(rule: Arc<Rule>, state: RuleState) -> RuleStatus {
        RuleStatus::new(
            PathBuf::from("/home/op/.config/pilothouse/rules/web.yaml"),
            rule,
            state,
        )
    }

    /// `web`, active and growing from 2 to 5 after a hold and a refused scale; `worker`, in
    /// standby behind a daemon, whose last reading failed.
    fn two_rules() -> Status {
        let rules = rules();
        let mut web = rule_status(rules[0].clone(), RuleState::Active);
        web.current = Some(2);
        web.desired = Some(5);
        web.readings = vec![Some(Ok(480.0)), Some(Ok(35.0))];
        web.history = Arc::new(VecDeque::from([
            record(
                60,
                (2, 2),
                vec![Ok(190.0), Ok(30.0)],
                Act::Hold,
                "rps 190 / 100 per replica x 2, cpu 30 / 70 x 2 → 1; the highest, 2, wins",
            ),
            record(
                45,
                (2, 4),
                vec![Ok(390.0), Ok(33.0)],
                Act::Failed {
                    from: 2,
                    to: 4,
                    error: "read-only mode".to_string(),
                },
                "rps 390 / 100 per replica x 2 → 4, cpu 33 / 70 x 2 → 1; the highest, 4, wins",
            ),
            record(
                4,
                (2, 5),
                vec![Ok(480.0), Ok(35.0)],
                Act::Scaled { from: 2, to: 5 },
                "rps 480 / 100 per replica x 2 → 5, cpu 35 / 70 x 2 → 1; the highest, 5, wins",
            ),
        ]));
        web.decisions_total = 3;
        web.scales_total = 2;
        web.scale_errors_total = 1;

        let holder = "daemon pid 812 (root@web-1) since 2025-03-01T11:00:00Z".to_string();
        let mut worker = rule_status(rules[1].clone(), RuleState::Standby { holder });
        worker.current = Some(3);
        worker.desired = Some(3);
        worker.readings = vec![Some(Err("connection refused".to_string()))];
        worker.history = Arc::new(VecDeque::from([
            record(
                40,
                (3, 7),
                vec![Ok(320.0)],
                Act::Standby { from: 3, to: 7 },
                "queue 320 / 50 x 3 → 7",
            ),
            record(
                10,
                (3, 3),
                vec![Err("connection refused".to_string())],
                Act::Hold,
                "queue: connection refused; no metric read: holding 3",
            ),
        ]));
        worker.decisions_total = 2;
        worker.metric_errors_total = 1;
        Status {
            rules: vec![web, worker],
            load_errors: Vec::new(),
            metric_servers: Vec::new(),
        }
    }

    fn draw(status: &Status, selected: usize, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let theme = Theme::dark();
        terminal
            .draw(|f| render(f, f.area(), status, selected, &theme, now()))
            .unwrap();
        terminal
    }

    /// The text of row `y` of the screen.
    fn row_text(terminal: &Terminal<TestBackend>, y: u16) -> String {
        let buffer = terminal.backend().buffer();
        (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect()
    }

    /// The first cell whose row contains `needle`, at the needle's first column.
    fn find(terminal: &Terminal<TestBackend>, needle: &str) -> (u16, u16) {
        let buffer = terminal.backend().buffer();
        for y in 0..buffer.area.height {
            let symbols: Vec<&str> = (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect();
            let first = needle.chars().next().unwrap().to_string();
            for x in 0..symbols.len() {
                let rest: String = symbols[x..].concat();
                if symbols[x] == first && rest.starts_with(needle) {
                    return (x as u16, y);
                }
            }
        }
        panic!("{needle:?} is not on the screen");
    }

    #[test]
    fn two_rules_at_80x24() {
        insta::assert_snapshot!(draw(&two_rules(), 0, 80, 24).backend());
    }

    #[test]
    fn two_rules_at_120x30_with_the_standby_rule_selected() {
        insta::assert_snapshot!(draw(&two_rules(), 1, 120, 30).backend());
    }

    #[test]
    fn two_rules_at_200x50() {
        insta::assert_snapshot!(draw(&two_rules(), 0, 200, 50).backend());
    }

    #[test]
    fn no_rules_at_80x24() {
        insta::assert_snapshot!(draw(&Status::default(), 0, 80, 24).backend());
    }

    #[test]
    fn load_errors_above_two_rules_at_120x30() {
        let mut status = two_rules();
        status.load_errors = (1..=5)
            .map(|i| format!("rules/bad{i}.yaml:3:14: minReplicas 5 is greater than maxReplicas 4"))
            .collect();
        insta::assert_snapshot!(draw(&status, 0, 120, 30).backend());
    }

    #[test]
    fn load_errors_show_even_with_no_rules_loaded() {
        let status = Status {
            rules: Vec::new(),
            load_errors: vec!["rules/web.yaml:3:14: expected a whole number".to_string()],
            metric_servers: Vec::new(),
        };
        let terminal = draw(&status, 0, 80, 24);
        assert!(row_text(&terminal, 0).contains("1 error in rule files"));
        assert!(row_text(&terminal, 1).contains("rules/web.yaml:3:14: expected a whole number"));
        assert!(row_text(&terminal, 3).contains("no rules: put rule files in the rules"));
    }

    #[test]
    fn a_failed_reading_is_a_question_mark_in_the_error_style() {
        let terminal = draw(&two_rules(), 0, 120, 30);
        let theme = Theme::dark();
        let (x, y) = find(&terminal, "queue ?");
        let cell = &terminal.backend().buffer()[(x, y)];
        assert_eq!(cell.fg, theme.error.fg.unwrap());
        assert!(row_text(&terminal, y).contains("worker"));
    }

    #[test]
    fn the_selected_rule_is_drawn_in_the_selected_style() {
        let terminal = draw(&two_rules(), 1, 120, 30);
        let theme = Theme::dark();
        let (x, y) = find(&terminal, "worker ");
        let cell = &terminal.backend().buffer()[(x, y)];
        assert_eq!(cell.modifier, theme.row_selected.add_modifier);
        assert_eq!(cell.bg, theme.row_selected.bg.unwrap_or(cell.bg));
        let (x, y) = find(&terminal, "web ");
        assert_ne!(
            terminal.backend().buffer()[(x, y)].modifier,
            theme.row_selected.add_modifier
        );
    }

    #[test]
    fn a_selection_past_the_end_shows_the_last_rule() {
        let terminal = draw(&two_rules(), 7, 120, 30);
        let (_, y) = find(&terminal, "worker ─ decisions");
        assert!(y > 4);
        assert!(find(&terminal, "standby: decided here").1 > y);
    }

    #[test]
    fn the_timeline_lists_decisions_newest_first_with_their_actions() {
        let terminal = draw(&two_rules(), 0, 200, 50);
        let scaled = find(&terminal, "12:04:27").1;
        let failed = find(&terminal, "12:03:46").1;
        let held = find(&terminal, "12:03:31").1;
        assert!(scaled < failed && failed < held);
        assert!(row_text(&terminal, scaled).contains("2 → 5"));
        assert!(row_text(&terminal, failed).contains("2 → 4 failed: read-only mode"));
        assert!(row_text(&terminal, held).contains("hold 2"));
    }

    #[test]
    fn the_table_shows_each_metric_against_its_target_and_the_age_of_the_last_decision() {
        let terminal = draw(&two_rules(), 1, 200, 50);
        let y = find(&terminal, "local:shop/web").1;
        let row = row_text(&terminal, y);
        for part in [
            "rps 480/100, cpu 35%/70%",
            "2 → 5",
            "2-20",
            " 4s",
            "the highest, 5",
        ] {
            assert!(row.contains(part), "{part:?} in {row:?}");
        }
        let row = row_text(&terminal, find(&terminal, "prod/shop/deployment/worker").1);
        assert!(row.contains("standby") && row.contains(" 3 ") && row.contains("10s"));
    }

    #[test]
    fn tiny_areas_draw_without_panicking() {
        let mut with_errors = two_rules();
        with_errors.load_errors = vec!["rules/x.yaml:1:1: bad".to_string(); 4];
        for status in [two_rules(), Status::default(), with_errors] {
            for width in 0..=5 {
                for height in 0..=8 {
                    draw(&status, 0, width, height);
                }
            }
            for height in 0..=12 {
                draw(&status, 1, 80, height);
            }
        }
    }

    #[test]
    fn a_long_list_scrolls_to_keep_the_selected_rule_in_view() {
        let web = two_rules().rules.remove(0);
        let rules = (0..30)
            .map(|i| RuleStatus {
                name: format!("rule{i:02}"),
                ..web.clone()
            })
            .collect();
        let status = Status {
            rules,
            load_errors: Vec::new(),
            metric_servers: Vec::new(),
        };
        let terminal = draw(&status, 25, 80, 24);
        let theme = Theme::dark();
        let (x, y) = find(&terminal, "rule25");
        assert!(y < 12, "the table keeps to half the view, row {y}");
        let cell = &terminal.backend().buffer()[(x, y)];
        assert_eq!(cell.modifier, theme.row_selected.add_modifier);
        assert!(find(&terminal, "rule25 ─ decisions").1 > y);
    }

    #[test]
    fn an_unsupported_rule_says_why_in_the_error_style() {
        let why = "platform kubernetes: no such context prod".to_string();
        let status = Status {
            rules: vec![rule_status(rules()[1].clone(), RuleState::Unsupported(why))],
            load_errors: Vec::new(),
            metric_servers: Vec::new(),
        };
        let terminal = draw(&status, 0, 120, 30);
        let (x, y) = find(&terminal, "unsupported: platform kubernetes");
        let cell = &terminal.backend().buffer()[(x, y)];
        assert_eq!(cell.fg, Theme::dark().error.fg.unwrap());
        assert!(row_text(&terminal, y + 1).contains("no decisions: the rule cannot run here"));
        let row = row_text(&terminal, find(&terminal, "worker ").1);
        assert!(row.contains("unsupported") && row.contains("queue -/50") && row.contains(" - "));
    }

    #[test]
    fn the_row_count_is_one_per_rule() {
        assert_eq!(row_count(&two_rules()), 2);
        assert_eq!(row_count(&Status::default()), 0);
    }

    fn cell_for(state: RuleState, current: Option<u32>, desired: Option<u32>) -> String {
        let mut status = rule_status(rules()[0].clone(), state);
        status.current = current;
        status.desired = desired;
        rule_cell(Some(&status))
    }

    #[test]
    fn the_rule_cell_shows_which_way_an_active_rule_is_going() {
        assert_eq!(rule_cell(None), "-");
        assert_eq!(cell_for(RuleState::Active, Some(2), Some(5)), "web ▲5");
        assert_eq!(cell_for(RuleState::Active, Some(5), Some(2)), "web ▼2");
        assert_eq!(cell_for(RuleState::Active, Some(3), Some(3)), "web =3");
        assert_eq!(cell_for(RuleState::Active, None, None), "web");
    }

    #[test]
    fn the_rule_cell_marks_a_rule_that_does_not_act() {
        let standby = RuleState::Standby {
            holder: "daemon pid 812".to_string(),
        };
        assert_eq!(cell_for(RuleState::Paused, Some(2), Some(5)), "web ⏸");
        assert_eq!(cell_for(standby, Some(2), Some(5)), "web ⌛");
        let unsupported = RuleState::Unsupported("no such target".to_string());
        assert_eq!(cell_for(unsupported, None, None), "web ✗");
    }

    #[test]
    fn the_rule_cell_cuts_a_long_name_to_fit_twelve_columns() {
        let mut status = rule_status(rules()[0].clone(), RuleState::Active);
        status.name = "checkout-frontend".to_string();
        status.current = Some(2);
        status.desired = Some(12);
        let cell = rule_cell(Some(&status));
        assert_eq!(cell, "checkou… ▲12");
        assert!(text::display_width(&cell) <= RULE_CELL_WIDTH);
        status.state = RuleState::Standby {
            holder: String::new(),
        };
        let cell = rule_cell(Some(&status));
        assert_eq!(cell, "checkout… ⌛");
        assert_eq!(text::display_width(&cell), RULE_CELL_WIDTH);
    }

    #[test]
    fn numbers_are_short_and_lose_trailing_zeros() {
        assert_eq!(short_number(480.0), "480");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(12.5), "12.5");
        assert_eq!(short_number(1900.0), "1.9k");
        assert_eq!(short_number(2000.0), "2k");
        assert_eq!(short_number(12_345.0), "12k");
        assert_eq!(short_number(3_400_000.0), "3.4M");
    }

    #[test]
    fn words_wrap_at_spaces_and_the_last_row_says_when_some_is_left() {
        let text = "rps 480 / 100 per replica x 2 → 5";
        assert_eq!(
            wrap_words(text, 12, 5),
            ["rps 480 /", "100 per", "replica x 2", "→ 5"]
        );
        assert_eq!(wrap_words(text, 12, 2), ["rps 480 /", "100 per rep…"]);
        assert_eq!(wrap_words("unbreakable-word", 6, 2), ["unbre…"]);
        assert!(wrap_words(text, 12, 0).is_empty());
    }

    #[test]
    fn intervals_are_exact() {
        assert_eq!(interval(Duration::from_secs(15)), "15s");
        assert_eq!(interval(Duration::from_secs(90)), "1m30s");
        assert_eq!(interval(Duration::from_secs(7200)), "2h");
    }
}
