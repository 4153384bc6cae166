//! The workloads table: its sort, its regex filter, the selection kept across updates, and
//! its rendering.
//!
//! Not for fetching anything: it reads the workloads the store derived.

use std::cmp::Ordering;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use regex::Regex;

use crate::autoscaler::RuleStatus;
use crate::model::{Health, WorkloadId};
use crate::store::Workload;
use crate::text;
use crate::theme::Theme;

use super::format::{human_age, human_bytes, human_cpu};

/// A column of the table, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Target,
    Workload,
    Kind,
    Ready,
    State,
    Image,
    Cpu,
    Mem,
    Rule,
    Restarts,
    Age,
    Ports,
}

impl Column {
    pub const ALL: [Column; 12] = [
        Column::Target,
        Column::Workload,
        Column::Kind,
        Column::Ready,
        Column::State,
        Column::Image,
        Column::Cpu,
        Column::Mem,
        Column::Rule,
        Column::Restarts,
        Column::Age,
        Column::Ports,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Target => "TARGET",
            Column::Workload => "WORKLOAD",
            Column::Kind => "KIND",
            Column::Ready => "READY",
            Column::State => "STATE",
            Column::Image => "IMAGE",
            Column::Cpu => "CPU",
            Column::Mem => "MEM",
            Column::Rule => "RULE",
            Column::Restarts => "RESTARTS",
            Column::Age => "AGE",
            Column::Ports => "PORTS",
        }
    }

    /// (minimum width, priority): lower priority columns are dropped first on narrow screens.
    fn layout(self) -> (u16, u8) {
        match self {
            Column::Target => (8, 6),
            Column::Workload => (16, 10),
            Column::Kind => (9, 2),
            Column::Ready => (6, 9),
            Column::State => (10, 8),
            Column::Image => (14, 5),
            Column::Cpu => (7, 7),
            Column::Mem => (7, 7),
            Column::Rule => (12, 4),
            Column::Restarts => (8, 1),
            Column::Age => (5, 3),
            Column::Ports => (12, 0),
        }
    }

    /// Columns that flex to fill the spare width.
    fn grows(self) -> bool {
        matches!(self, Column::Workload | Column::Image | Column::Ports)
    }

    fn right_aligned(self) -> bool {
        matches!(
            self,
            Column::Cpu | Column::Mem | Column::Restarts | Column::Ready
        )
    }
}

/// The table's state: sort, filter, selection, scroll.
#[derive(Debug, Clone)]
pub struct WorkloadTable {
    pub sort: Column,
    pub reverse: bool,
    filter: Option<Regex>,
    /// The selected workload, followed across re-sorts and updates.
    pub selected: Option<WorkloadId>,
    /// Where the selection was, for when the selected workload disappears.
    last_index: usize,
    pub offset: usize,
    /// Rows visible at the last draw, for paging.
    pub height: usize,
    rows: Vec<usize>,
    stale: bool,
    /// The rule that manages each workload, for sorting by the RULE column.
    rule_names: HashMap<WorkloadId, String>,
}

impl Default for WorkloadTable {
    fn default() -> Self {
        WorkloadTable {
            sort: Column::Target,
            reverse: false,
            filter: None,
            selected: None,
            last_index: 0,
            offset: 0,
            height: 10,
            rows: Vec::new(),
            stale: true,
            rule_names: HashMap::new(),
        }
    }
}

impl WorkloadTable {
    /// Which rule manages each workload (from the autoscaler's status), for the RULE sort.
    pub fn set_rule_names(&mut self, names: HashMap<WorkloadId, String>) {
        // Every cycle publishes a status; the rows are sorted again only when a name changed.
        if names != self.rule_names {
            self.rule_names = names;
            self.stale = true;
        }
    }

    /// The data changed: rows are re-filtered and re-sorted at the next read.
    pub fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// Set the filter; an empty text clears it. A bad regex keeps the previous filter.
    pub fn set_filter(&mut self, text: &str) -> Result<(), regex::Error> {
        self.filter = if text.is_empty() {
            None
        } else {
            Some(Regex::new(text)?)
        };
        self.stale = true;
        Ok(())
    }

    pub fn clear_filter(&mut self) {
        self.filter = None;
        self.stale = true;
    }

    pub fn filter_text(&self) -> Option<&str> {
        self.filter.as_ref().map(Regex::as_str)
    }

    pub fn sort_next(&mut self) {
        let i = Column::ALL
            .iter()
            .position(|c| *c == self.sort)
            .unwrap_or(0);
        self.sort = Column::ALL[(i + 1) % Column::ALL.len()];
        self.stale = true;
    }

    pub fn reverse_sort(&mut self) {
        self.reverse = !self.reverse;
        self.stale = true;
    }

    /// Indices into `all` of the rows shown, filtered and sorted.
    pub fn rows(&mut self, all: &[Workload], target: Option<&str>) -> Vec<usize> {
        if self.stale || self.rows.iter().any(|i| *i >= all.len()) {
            self.rows = self.compute_rows(all, target);
            self.stale = false;
        }
        self.rows.clone()
    }

    fn compute_rows(&self, all: &[Workload], target: Option<&str>) -> Vec<usize> {
        let mut rows: Vec<usize> = (0..all.len())
            .filter(|i| target.is_none_or(|t| all[*i].id.target == t))
            .filter(|i| {
                self.filter
                    .as_ref()
                    .is_none_or(|re| matches_filter(re, &all[*i]))
            })
            .collect();
        rows.sort_by(|a, b| {
            let ord = match self.sort {
                // Workloads without a rule last.
                Column::Rule => {
                    let rule = |w: &Workload| self.rule_names.get(&w.id).map(String::as_str);
                    let (ra, rb) = (rule(&all[*a]), rule(&all[*b]));
                    rb.is_some().cmp(&ra.is_some()).then_with(|| ra.cmp(&rb))
                }
                column => compare(column, &all[*a], &all[*b]),
            };
            let ord = ord.then_with(|| all[*a].id.cmp(&all[*b].id));
            if self.reverse { ord.reverse() } else { ord }
        });
        rows
    }

    /// The position of the selection in `rows`, keeping its place if it vanished.
    pub fn selected_index(&mut self, all: &[Workload], rows: &[usize]) -> usize {
        let found = self
            .selected
            .as_ref()
            .and_then(|id| rows.iter().position(|i| &all[*i].id == id));
        let index = found
            .unwrap_or(self.last_index)
            .min(rows.len().saturating_sub(1));
        self.last_index = index;
        if found.is_none() {
            self.selected = rows.get(index).map(|i| all[*i].id.clone());
        }
        index
    }
}

fn matches_filter(re: &Regex, w: &Workload) -> bool {
    re.is_match(&w.id.name)
        || re.is_match(&w.image)
        || re.is_match(&w.id.target)
        || re.is_match(&w.state)
        || re.is_match(w.id.kind.label())
}

fn compare(column: Column, a: &Workload, b: &Workload) -> Ordering {
    let cpu = |w: &Workload| w.stats.map_or(-1.0, |s| s.cpu_percent);
    let mem = |w: &Workload| w.stats.map_or(0, |s| s.mem_bytes);
    match column {
        Column::Target => {
            a.id.target
                .cmp(&b.id.target)
                .then_with(|| a.id.name.cmp(&b.id.name))
        }
        Column::Workload => a.id.name.cmp(&b.id.name),
        Column::Kind => a.id.kind.cmp(&b.id.kind),
        Column::Ready => (a.ready, a.desired).cmp(&(b.ready, b.desired)),
        Column::State => state_word(a).cmp(state_word(b)),
        Column::Image => a.image.cmp(&b.image),
        Column::Cpu => cpu(b).total_cmp(&cpu(a)),
        Column::Mem => mem(b).cmp(&mem(a)),
        Column::Restarts => b.restarts.cmp(&a.restarts),
        // Sorted by the table, which knows the rules.
        Column::Rule => Ordering::Equal,
        Column::Age => a.started_at.cmp(&b.started_at),
        Column::Ports => a.ports.cmp(&b.ports),
    }
}

/// The state shown: health wins over `running` when it is not healthy.
pub fn state_word(w: &Workload) -> &str {
    match (w.state.as_str(), w.health) {
        ("running", Some(Health::Unhealthy)) => "unhealthy",
        ("running", Some(Health::Starting)) => "starting",
        (state, _) => state,
    }
}

/// Choose the columns that fit `width` and the width of each.
fn fit_columns(width: u16) -> Vec<(Column, u16)> {
    let mut chosen: Vec<Column> = Column::ALL.to_vec();
    let needed = |cols: &[Column]| -> u16 { cols.iter().map(|c| c.layout().0 + 1).sum::<u16>() };
    while needed(&chosen) > width && chosen.len() > 1 {
        let Some((i, _)) = chosen.iter().enumerate().min_by_key(|(_, c)| c.layout().1) else {
            break;
        };
        chosen.remove(i);
    }
    let spare = width.saturating_sub(needed(&chosen));
    let growers = chosen.iter().filter(|c| c.grows()).count().max(1) as u16;
    chosen
        .iter()
        .map(|c| {
            let extra = if c.grows() { spare / growers } else { 0 };
            (*c, c.layout().0 + extra)
        })
        .collect()
}

/// Whether the table has the keys, and the time its ages are measured from.
#[derive(Debug, Clone, Copy)]
pub struct Focus<'a> {
    pub focused: bool,
    pub now: DateTime<Utc>,
    /// The autoscaler's status, for the RULE column.
    pub rules: &'a crate::autoscaler::Status,
}

/// Draw the table into `area`, with the border title showing the filter and sort.
pub fn render(
    f: &mut Frame,
    area: Rect,
    all: &[Workload],
    rows: &[usize],
    table: &mut WorkloadTable,
    theme: &Theme,
    focus: Focus<'_>,
) {
    let Focus {
        focused,
        now,
        rules,
    } = focus;
    let title = table_title(table, rows.len(), all.len());
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title, theme.title))
        .border_style(if focused {
            theme.border_focus
        } else {
            theme.border
        });
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.height == 0 {
        return;
    }
    let columns = fit_columns(inner.width);
    let body_height = inner.height.saturating_sub(1) as usize;
    table.height = body_height;
    let selected = table.selected_index(all, rows);
    if selected < table.offset {
        table.offset = selected;
    } else if body_height > 0 && selected >= table.offset + body_height {
        table.offset = selected + 1 - body_height;
    }
    table.offset = table
        .offset
        .min(rows.len().saturating_sub(body_height.max(1)));

    let mut lines = Vec::with_capacity(body_height + 1);
    lines.push(header_line(&columns, table, theme));
    for (pos, &i) in rows.iter().enumerate().skip(table.offset).take(body_height) {
        let rule = rules.rule_for(&all[i].id);
        lines.push(row_line(
            &all[i],
            &columns,
            theme,
            pos == selected,
            (now, rule),
        ));
    }
    if rows.is_empty() {
        let msg = if all.is_empty() {
            "no workloads yet"
        } else {
            "no workload matches the filter (Esc clears it)"
        };
        lines.push(Line::styled(format!(" {msg}"), theme.text_dim));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

fn table_title(table: &WorkloadTable, shown: usize, total: usize) -> String {
    let dir = if table.reverse { "↑" } else { "↓" };
    let sort = table.sort.title().to_lowercase();
    match table.filter_text() {
        Some(f) => format!(
            " workloads (/ {}) {shown}/{total}  sort {sort}{dir} ",
            text::fit(&text::sanitize_plain(f), 30)
        ),
        None => format!(" workloads {shown}  sort {sort}{dir} "),
    }
}

fn header_line(columns: &[(Column, u16)], table: &WorkloadTable, theme: &Theme) -> Line<'static> {
    let spans: Vec<Span> = columns
        .iter()
        .map(|(c, w)| {
            let mut title = c.title().to_string();
            if *c == table.sort {
                title.push(if table.reverse { '↑' } else { '↓' });
            }
            Span::styled(cell(&title, *w, c.right_aligned()), theme.table_header)
        })
        .collect();
    Line::from(spans)
}

fn row_line(
    w: &Workload,
    columns: &[(Column, u16)],
    theme: &Theme,
    selected: bool,
    (now, rule): (DateTime<Utc>, Option<&RuleStatus>),
) -> Line<'static> {
    let base = if selected {
        theme.row_selected
    } else {
        theme.row
    };
    let spans: Vec<Span> = columns
        .iter()
        .map(|(c, width)| {
            let (value, style) = match c {
                Column::Rule => rule_value(rule, theme),
                _ => cell_value(w, *c, theme, now),
            };
            let style = if selected { base } else { base.patch(style) };
            Span::styled(cell(&value, *width, c.right_aligned()), style)
        })
        .collect();
    Line::from(spans)
}

/// The RULE cell: the rule's name and where it is taking the workload.
fn rule_value(rule: Option<&RuleStatus>, theme: &Theme) -> (String, ratatui::style::Style) {
    let style = match rule.map(|r| &r.state) {
        None => theme.text_dim,
        Some(crate::autoscaler::RuleState::Active) => theme.row,
        Some(_) => theme.warning,
    };
    (super::autoscaler::rule_cell(rule), style)
}

fn cell_value(
    w: &Workload,
    column: Column,
    theme: &Theme,
    now: DateTime<Utc>,
) -> (String, ratatui::style::Style) {
    let plain = theme.row;
    match column {
        Column::Target => (w.id.target.clone(), theme.text_dim),
        Column::Workload => (text::sanitize_plain(&w.id.name), plain),
        Column::Kind => (w.id.kind.label().to_string(), theme.text_dim),
        Column::Ready => {
            let style = if w.ready < w.desired {
                theme.warning
            } else {
                plain
            };
            (format!("{}/{}", w.ready, w.desired), style)
        }
        Column::State => {
            let word = state_word(w);
            let style = match word {
                "running" => theme.success,
                "unhealthy" | "dead" | "exited" => theme.error,
                _ => theme.warning,
            };
            (word.to_string(), style)
        }
        Column::Image => (text::sanitize_plain(&w.image), plain),
        Column::Cpu => (
            w.stats.map_or("-".into(), |s| human_cpu(s.cpu_percent)),
            plain,
        ),
        Column::Mem => (
            w.stats.map_or("-".into(), |s| human_bytes(s.mem_bytes)),
            plain,
        ),
        Column::Rule => ("-".to_string(), theme.text_dim),
        Column::Restarts => {
            let style = if w.restarts > 0 { theme.warning } else { plain };
            (w.restarts.to_string(), style)
        }
        Column::Age => (
            w.started_at.map_or("-".into(), |t| human_age(now - t)),
            theme.text_dim,
        ),
        Column::Ports => (w.ports.join(","), theme.text_dim),
    }
}

/// A cell of exactly `width` columns plus one space of gutter.
fn cell(value: &str, width: u16, right: bool) -> String {
    let width = width as usize;
    let fitted = text::fit(value, width);
    let pad = width.saturating_sub(text::display_width(&fitted));
    if right {
        format!("{}{fitted} ", " ".repeat(pad))
    } else {
        format!("{fitted}{} ", " ".repeat(pad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StatsSample, WorkloadKind};

    fn workload(name: &str, cpu: f64) -> Workload {
        Workload {
            id: WorkloadId {
                target: "local".to_string(),
                kind: WorkloadKind::Compose,
                name: name.to_string(),
            },
            replicas: vec![format!("{name}-id")],
            ready: 1,
            desired: 1,
            image: "img:1".to_string(),
            state: "running".to_string(),
            health: None,
            started_at: None,
            restarts: 0,
            ports: Vec::new(),
            stats: Some(StatsSample {
                cpu_percent: cpu,
                ..StatsSample::default()
            }),
        }
    }

    fn names(all: &[Workload], rows: &[usize]) -> Vec<String> {
        rows.iter().map(|i| all[*i].id.name.clone()).collect()
    }

    #[test]
    fn sorting_by_cpu_puts_the_busiest_first_and_reverse_flips_it() {
        let all = vec![workload("a", 5.0), workload("b", 50.0), workload("c", 20.0)];
        let mut t = WorkloadTable {
            sort: Column::Cpu,
            ..WorkloadTable::default()
        };
        assert_eq!(names(&all, &t.rows(&all, None)), ["b", "c", "a"]);
        t.reverse_sort();
        assert_eq!(names(&all, &t.rows(&all, None)), ["a", "c", "b"]);
    }

    #[test]
    fn a_bad_filter_regex_is_an_error_and_keeps_the_previous_filter() {
        let all = vec![workload("shop/web", 1.0), workload("shop/db", 1.0)];
        let mut t = WorkloadTable::default();
        t.set_filter("web$").unwrap();
        assert!(t.set_filter("web(").is_err());
        assert_eq!(t.filter_text(), Some("web$"));
        assert_eq!(names(&all, &t.rows(&all, None)), ["shop/web"]);
    }

    #[test]
    fn the_selection_follows_its_workload_when_rows_move() {
        let mut all = vec![workload("a", 1.0), workload("b", 2.0), workload("c", 3.0)];
        let mut t = WorkloadTable::default();
        let rows = t.rows(&all, None);
        t.selected = Some(all[2].id.clone());
        assert_eq!(t.selected_index(&all, &rows), 2);
        all.insert(0, workload("0", 1.0));
        t.mark_stale();
        let rows = t.rows(&all, None);
        assert_eq!(t.selected_index(&all, &rows), 3);
        assert_eq!(t.selected.as_ref().map(|s| s.name.as_str()), Some("c"));
    }

    #[test]
    fn when_the_selected_workload_vanishes_the_cursor_stays_in_place() {
        let mut all = vec![workload("a", 1.0), workload("b", 1.0), workload("c", 1.0)];
        let mut t = WorkloadTable::default();
        let rows = t.rows(&all, None);
        t.selected = Some(all[1].id.clone());
        t.selected_index(&all, &rows);
        all.remove(1);
        t.mark_stale();
        let rows = t.rows(&all, None);
        assert_eq!(t.selected_index(&all, &rows), 1);
        assert_eq!(t.selected.as_ref().map(|s| s.name.as_str()), Some("c"));
    }

    #[test]
    fn narrow_screens_drop_low_priority_columns_and_fill_the_width() {
        let cols = fit_columns(78);
        let kept: Vec<Column> = cols.iter().map(|(c, _)| *c).collect();
        assert!(kept.contains(&Column::Workload) && kept.contains(&Column::Ready));
        assert!(!kept.contains(&Column::Ports));
        let total: u16 = cols.iter().map(|(_, w)| w + 1).sum();
        assert!(
            total <= 78 && total >= 78 - kept.len() as u16,
            "total {total}"
        );
        assert_eq!(fit_columns(198).len(), Column::ALL.len());
    }
}
