//! The rollout view and the console's side of rollouts.
//!
//! The view shows the rollouts that `pilothouse rollout` and `pilothouse rollback` processes
//! run, read from their state files: for the selected workload when opened from the workloads
//! table, or every rollout recorded for the connected targets when opened from anywhere else
//! (or with nothing selected). A table lists them; below it the selected one shows its phase,
//! revisions and image, replicas per revision and each replica, its steps with their timings,
//! its analysis readings and its message. While the view is open the run loop calls
//! [`App::poll_rollouts`] every [`POLL_EVERY`]; nothing is read while it is closed.
//!
//! Its keys pause, resume and abort the selected rollout (a word left in its control file; an
//! action, so refused in read-only mode and written to the audit log) and roll the workload back
//! (a `pilothouse rollback` process of its own, started after a confirmation).
//!
//! Not for running rollouts: the rollout processes do (see [`crate::rollout`]); this only reads
//! what they write and leaves words for them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Padding, Paragraph, Wrap};

use crate::actuator::{ActionError, ActionKind, ActionRequest, Refusal};
use crate::keymap::KeyAction;
use crate::model::{ConnState, PlatformKind, RevisionMark, WorkloadId, WorkloadKind};
use crate::platform::kubernetes::actions::{
    Candidate, Previous, previous, statefulset_rollback_refusal,
};
use crate::rollout::state::{self, Control, Files, Kind, Phase, RolloutState};
use crate::store::Store;
use crate::text;
use crate::theme::Theme;

use super::app::{App, Prompt, View};
use super::format::human_age;

/// How often the open view reads the state files again.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// State files read per poll when listing every rollout: the rest are counted, not read.
const MAX_LISTED: usize = 50;

/// Which rollouts the view shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The rollout of one workload, recorded or not.
    Workload(WorkloadId),
    /// Every rollout recorded for the connected targets.
    All,
}

/// One workload's rollout as the view last read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The console's name of the target.
    pub target: String,
    /// The workload's name (from the state file when listing all: data, sanitized when drawn).
    pub workload: String,
    /// Its files; `None` while the target's engine ID is unknown (not connected).
    pub files: Option<Files>,
    /// The state file; `None` when no rollout of the workload is recorded.
    pub state: Option<RolloutState>,
    /// Whether a live process holds the rollout's lock.
    pub running: bool,
    /// Why the state could not be read, if it could not.
    pub problem: Option<String>,
    /// Where a Kubernetes Deployment stands now, as its worker last reported it: a rollback
    /// after the recorded rollout shows here, the state file knows nothing of it.
    pub now: Option<String>,
}

impl Entry {
    /// The phase to show: a rollout that has not ended and whose lock no process holds was cut
    /// short, whatever its file says.
    pub fn phase(&self) -> Option<Phase> {
        let state = self.state.as_ref()?;
        if !self.running && !state.phase.is_final() {
            return Some(Phase::Interrupted);
        }
        Some(state.phase)
    }
}

/// An open rollout view.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutsView {
    pub scope: Scope,
    pub entries: Vec<Entry>,
    /// The selected row of the table.
    pub selected: usize,
    /// State files there were, beyond the [`MAX_LISTED`] read.
    pub unread: usize,
}

/// What the operator asked of a rollout, waiting for y/n.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAct {
    /// Stop the rollout in progress; it rolls back by itself.
    Abort,
    /// Start `pilothouse rollback WORKLOAD`; on Kubernetes, to this revision (0: the previous
    /// one, as the platform decides it).
    Rollback { to_revision: u32 },
}

/// What the console knows about rollouts.
#[derive(Debug, Clone, Default)]
pub struct RolloutLink {
    /// Where state files live (`STATE/rollouts/...`); `None` until the console knows its paths.
    pub state_dir: Option<PathBuf>,
    /// Each target's Docker address, by target name, passed to `rollback --docker-host`.
    pub addresses: HashMap<String, String>,
    /// The program that runs `rollback`; `None` is this one.
    pub program: Option<PathBuf>,
    /// The view, while it is open.
    pub view: Option<RolloutsView>,
    /// The view to go back to.
    pub return_to: Option<View>,
}

/// Reads the entries of `scope` from the state files under `state_dir`.
pub fn read_entries(scope: &Scope, store: &Store, state_dir: &Path) -> (Vec<Entry>, usize) {
    let (mut entries, unread) = match scope {
        Scope::Workload(id) => {
            let files =
                engine_id(store, &id.target).map(|engine| Files::new(state_dir, &engine, &id.name));
            (vec![read_entry(&id.target, &id.name, files)], 0)
        }
        Scope::All => read_all(store, state_dir),
    };
    for entry in &mut entries {
        entry.now = deployment_now(store, &entry.target, &entry.workload);
    }
    (entries, unread)
}

/// `now: revision 4 (web:1.4)` for a Kubernetes Deployment the store knows.
fn deployment_now(store: &Store, target: &str, workload: &str) -> Option<String> {
    let controller = store
        .target(target)?
        .controllers
        .get(&(WorkloadKind::Deployment, workload.to_string()))?;
    Some(format!(
        "now: revision {} ({})",
        controller.revision?,
        text::sanitize_plain(&controller.image)
    ))
}

/// The engine ID of a connected target.
fn engine_id(store: &Store, target: &str) -> Option<String> {
    match &store.target(target)?.conn {
        ConnState::Connected { engine_id, .. } => Some(engine_id.clone()),
        _ => None,
    }
}

fn read_entry(target: &str, workload: &str, files: Option<Files>) -> Entry {
    let mut entry = Entry {
        target: target.to_string(),
        workload: workload.to_string(),
        files: None,
        state: None,
        running: false,
        problem: None,
        now: None,
    };
    let Some(files) = files else {
        entry.problem = Some(format!(
            "{target} is not connected: its engine ID, and so its rollouts, are not known yet"
        ));
        return entry;
    };
    match state::read_state(&files.state) {
        Ok(found) => entry.state = found,
        Err(why) => entry.problem = Some(why),
    }
    entry.running = state::is_running(&files);
    entry.files = Some(files);
    entry
}

/// Every state file of every connected engine (once per engine, under its first target's
/// name), in name order, at most [`MAX_LISTED`] read.
fn read_all(store: &Store, state_dir: &Path) -> (Vec<Entry>, usize) {
    let mut seen: Vec<String> = Vec::new();
    let mut found: Vec<(String, String, PathBuf)> = Vec::new();
    for target in store.targets() {
        let ConnState::Connected { engine_id, .. } = &target.conn else {
            continue;
        };
        if seen.contains(engine_id) {
            continue;
        }
        seen.push(engine_id.clone());
        for path in state_files(&state::engine_dir(state_dir, engine_id)) {
            found.push((target.name.clone(), engine_id.clone(), path));
        }
    }
    let unread = found.len().saturating_sub(MAX_LISTED);
    let mut entries: Vec<Entry> = found
        .into_iter()
        .take(MAX_LISTED)
        .map(|(target, engine, path)| entry_of_file(&target, &engine, &path, state_dir))
        .collect();
    entries.sort_by(|a, b| (&a.target, &a.workload).cmp(&(&b.target, &b.workload)));
    (entries, unread)
}

/// The `*.json` files of one engine's rollout directory, in name order; none when it does not
/// exist.
fn state_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = listing
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
}

/// The entry of one state file found by listing: the workload is the one the file names, and a
/// file that does not parse is shown by its file name with the reason.
fn entry_of_file(target: &str, engine: &str, path: &Path, state_dir: &Path) -> Entry {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match state::read_state(path) {
        Ok(Some(found)) => {
            let files = Files::new(state_dir, engine, &found.workload);
            if files.state != path {
                let mut entry = read_entry(target, &stem, None);
                entry.problem = Some(format!(
                    "{} names workload {:?}, whose state file is another",
                    path.display(),
                    found.workload
                ));
                return entry;
            }
            read_entry(target, &found.workload, Some(files))
        }
        Ok(None) | Err(_) => {
            let files = Files {
                state: path.to_path_buf(),
                control: path.with_extension("control"),
                lock: path.with_extension("lock"),
                log: path.with_extension("log"),
            };
            read_entry(target, &stem, Some(files))
        }
    }
}

/// The selected entry's view model, as plain text in rows and cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    /// Lines above the replicas and steps: the phase line, replicas per revision, who and when.
    pub summary: Vec<String>,
    /// The rollout's message (sanitized), or why its state could not be read.
    pub message: Option<String>,
    /// NAME, REV, HEALTH, READY.
    pub replicas: Vec<[String; 4]>,
    /// STEP, CHANGES, TOOK, HEALTH, DRAIN, REPLICAS.
    pub steps: Vec<[String; 6]>,
    /// TIME, VALUE, VERDICT.
    pub readings: Vec<[String; 3]>,
}

/// The view model of one entry.
pub fn detail(entry: &Entry) -> Detail {
    let mut out = Detail {
        summary: Vec::new(),
        message: entry.problem.as_deref().map(text::sanitize_plain),
        replicas: Vec::new(),
        steps: Vec::new(),
        readings: Vec::new(),
    };
    let Some(state) = entry.state.as_ref() else {
        if entry.problem.is_none() {
            out.summary.push(format!(
                "no rollout of {} is recorded on {}",
                text::sanitize_plain(&entry.workload),
                entry.target
            ));
        }
        return out;
    };
    let phase = entry.phase().unwrap_or(state.phase);
    out.summary.push(format!(
        "{}  revision {} → {}  {}",
        phase.as_str(),
        state.from_revision,
        state.to_revision,
        text::sanitize_plain(&state.image),
    ));
    out.summary.push(format!(
        "desired {}  max surge {}  max unavailable {}",
        state.desired, state.max_surge, state.max_unavailable
    ));
    out.summary.push(per_revision(state));
    out.summary.push(who_and_when(state, entry.running));
    if let Some(now) = &entry.now {
        out.summary.push(now.clone());
    }
    out.message = match (phase, state.phase) {
        (Phase::Interrupted, was) if was != Phase::Interrupted => Some(format!(
            "the process that ran it (pid {}) ended before it finished",
            state.pid
        )),
        _ if state.message.is_empty() => None,
        _ => Some(text::sanitize_plain(&state.message)),
    };
    out.replicas = state
        .replicas
        .iter()
        .map(|r| {
            [
                text::sanitize_plain(&r.name),
                r.revision.to_string(),
                text::sanitize_plain(&r.health),
                if r.ready { "ready" } else { "-" }.to_string(),
            ]
        })
        .collect();
    out.steps = state.steps.iter().map(step_cells).collect();
    out.readings = state
        .analysis
        .iter()
        .map(|r| {
            [
                clock(r.at),
                r.value
                    .map_or_else(|| "inconclusive".to_string(), short_value),
                text::sanitize_plain(&r.verdict),
            ]
        })
        .collect();
    out
}

/// Replicas per revision: `rev 1: 2 (2 ready)  rev 2: 2 (1 ready)`.
pub fn per_revision(state: &RolloutState) -> String {
    let parts: Vec<String> = state
        .per_revision()
        .iter()
        .map(|(rev, total, ready)| format!("rev {rev}: {total} ({ready} ready)"))
        .collect();
    if parts.is_empty() {
        "no replicas".to_string()
    } else {
        parts.join("  ")
    }
}

fn who_and_when(state: &RolloutState, running: bool) -> String {
    let kind = match state.kind {
        Kind::Rollout => "rollout",
        Kind::Rollback => "rollback",
    };
    let alive = if running { "running" } else { "not running" };
    format!(
        "{kind} by {} (pid {}, {alive})  started {}  updated {} UTC",
        text::sanitize_plain(&state.by),
        state.pid,
        clock(state.started),
        clock(state.updated)
    )
}

fn step_cells(step: &state::StepRecord) -> [String; 6] {
    let names: Vec<String> = step
        .created
        .iter()
        .map(|n| format!("+{}", text::sanitize_plain(n)))
        .chain(
            step.removed
                .iter()
                .map(|n| format!("−{}", text::sanitize_plain(n))),
        )
        .collect();
    [
        step.number.to_string(),
        format!("+{} −{}", step.created.len(), step.removed.len()),
        millis(step.took_ms),
        millis(step.health_ms),
        millis(step.drain_ms),
        names.join(" "),
    ]
}

/// A duration in milliseconds, short: `850ms`, `1.2s`, `2m05s`.
pub fn millis(ms: u64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms}ms"),
        ms if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        ms => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// An analysis value in a few columns: `0.0042`, `12.5`, `1300`.
fn short_value(value: f64) -> String {
    if value.is_finite() && value.abs() < 1000.0 && value.fract() != 0.0 {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{value}")
    }
}

fn clock(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S").to_string()
}

/// Draw the view into `area`.
pub fn render(f: &mut Frame, area: Rect, view: &RolloutsView, theme: &Theme, now: DateTime<Utc>) {
    if area.width == 0 || area.height == 0 {
        return;
    }
    let Some(last) = view.entries.len().checked_sub(1) else {
        render_empty(f, area, view, theme);
        return;
    };
    let selected = view.selected.min(last);
    let wanted = u16::try_from(view.entries.len() + 3).unwrap_or(u16::MAX);
    let [table_area, detail_area] = Layout::vertical([
        Constraint::Length(wanted.min(area.height / 3).max(4)),
        Constraint::Min(0),
    ])
    .areas(area);
    render_table(f, table_area, view, selected, theme, now);
    render_detail(f, detail_area, &view.entries[selected], theme);
}

fn render_empty(f: &mut Frame, area: Rect, view: &RolloutsView, theme: &Theme) {
    let block =
        pane_block(" rollouts ─ none ".to_string(), theme, true).padding(Padding::horizontal(1));
    let hint = match &view.scope {
        Scope::All => "no rollout is recorded for the connected targets: start one with \
                       `pilothouse rollout WORKLOAD --image IMAGE`"
            .to_string(),
        Scope::Workload(id) => format!("no rollout of {} is recorded", id.name),
    };
    f.render_widget(
        Paragraph::new(Line::styled(hint, theme.text_dim))
            .block(block)
            .wrap(Wrap { trim: false }),
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

/// The style of a phase: ended well, needs a look, or went wrong.
fn phase_style(phase: Option<Phase>, theme: &Theme) -> Style {
    match phase {
        Some(Phase::Succeeded) => theme.success,
        Some(Phase::Paused | Phase::RollingBack | Phase::RolledBack) => theme.warning,
        Some(Phase::Failed | Phase::Interrupted) => theme.error,
        Some(Phase::Progressing) | None => theme.row,
    }
}

/// The table's rows as cells: TARGET, WORKLOAD, PHASE, REVISION, READY, STEPS, UPDATED, IMAGE.
fn table_cells(entry: &Entry, now: DateTime<Utc>) -> [String; 8] {
    let workload = text::sanitize_plain(&entry.workload);
    let Some(state) = entry.state.as_ref() else {
        let phase = if entry.problem.is_some() {
            "unreadable"
        } else {
            "none"
        };
        let dash = || "-".to_string();
        return [
            entry.target.clone(),
            workload,
            phase.to_string(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
        ];
    };
    let ready = state.replicas.iter().filter(|r| r.ready).count();
    [
        entry.target.clone(),
        workload,
        entry.phase().map_or("", |p| p.as_str()).to_string(),
        format!("{} → {}", state.from_revision, state.to_revision),
        format!("{ready}/{}", state.desired),
        state.steps.len().to_string(),
        human_age(now - state.updated),
        text::sanitize_plain(&state.image),
    ]
}

const TABLE_TITLES: [&str; 8] = [
    "TARGET", "WORKLOAD", "PHASE", "REVISION", "READY", "STEPS", "UPDATED", "IMAGE",
];

fn render_table(
    f: &mut Frame,
    area: Rect,
    view: &RolloutsView,
    selected: usize,
    theme: &Theme,
    now: DateTime<Utc>,
) {
    let count = view.entries.len();
    let scope = match &view.scope {
        Scope::All => "all connected targets".to_string(),
        Scope::Workload(id) => format!("{}:{}", id.target, text::sanitize_plain(&id.name)),
    };
    let unread = if view.unread > 0 {
        format!(" ─ {} more not read", view.unread)
    } else {
        String::new()
    };
    let noun = if count == 1 { "rollout" } else { "rollouts" };
    let block = pane_block(
        format!(" rollouts ─ {scope} ─ {count} {noun}{unread} "),
        theme,
        true,
    );
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let rows: Vec<[String; 8]> = view.entries.iter().map(|e| table_cells(e, now)).collect();
    let widths = column_widths(
        &TABLE_TITLES,
        &rows,
        usize::from(inner.width),
        [16, 30, 12, 9, 7, 5, 7, 0],
    );
    let body = usize::from(inner.height - 1);
    let offset = (selected + 1).saturating_sub(body);
    let titles = TABLE_TITLES.map(str::to_string);
    let mut lines = vec![cells_line(&titles, &widths, |_| theme.table_header)];
    for (i, (cells, entry)) in rows
        .iter()
        .zip(&view.entries)
        .enumerate()
        .skip(offset)
        .take(body)
    {
        let phase = phase_style(entry.phase(), theme);
        let line = if i == selected {
            cells_line(cells, &widths, |_| theme.row_selected)
        } else {
            cells_line(
                cells,
                &widths,
                |column| if column == 2 { phase } else { theme.row },
            )
        };
        lines.push(line);
    }
    f.render_widget(Paragraph::new(lines), inner);
}

/// Each column as wide as its widest cell (at most its cap; a cap of 0 takes what is left),
/// with a space between; the last column gets whatever remains of `width`.
fn column_widths<const N: usize>(
    titles: &[&str; N],
    rows: &[[String; N]],
    width: usize,
    caps: [usize; N],
) -> [usize; N] {
    let mut widths = [0usize; N];
    for (i, w) in widths.iter_mut().enumerate() {
        let widest = rows
            .iter()
            .map(|r| text::display_width(&r[i]))
            .max()
            .unwrap_or(0)
            .max(titles[i].len());
        *w = if caps[i] == 0 {
            widest
        } else {
            widest.min(caps[i].max(titles[i].len()))
        };
    }
    let fixed: usize = widths[..N - 1].iter().map(|w| w + 1).sum();
    widths[N - 1] = width.saturating_sub(fixed);
    widths
}

/// One row of cells, each cut and padded to its width, styled by column.
fn cells_line<const N: usize>(
    cells: &[String; N],
    widths: &[usize; N],
    style: impl Fn(usize) -> Style,
) -> Line<'static> {
    let mut spans = Vec::with_capacity(N * 2);
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if *width == 0 {
            continue;
        }
        spans.push(Span::styled(
            text::pad(&text::fit(cell, *width), *width),
            style(i),
        ));
        if i + 1 < N {
            spans.push(Span::styled(" ", style(i)));
        }
    }
    Line::from(spans)
}

fn render_detail(f: &mut Frame, area: Rect, entry: &Entry, theme: &Theme) {
    let model = detail(entry);
    let title = format!(
        " {} ─ {} ",
        text::sanitize_plain(&entry.workload),
        entry.phase().map_or("no rollout", |p| p.as_str())
    );
    let block = pane_block(title, theme, false);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let mut top: Vec<Line> = model
        .summary
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let style = if i == 0 {
                phase_style(entry.phase(), theme)
            } else {
                theme.text
            };
            Line::styled(line.clone(), style)
        })
        .collect();
    if let Some(message) = &model.message {
        let style = match entry.phase() {
            Some(Phase::Succeeded | Phase::Progressing | Phase::Paused) => theme.text,
            _ if entry.problem.is_some() => theme.error,
            other => phase_style(other, theme),
        };
        top.push(Line::styled(message.clone(), style));
    }
    let width = usize::from(inner.width.max(1));
    let rows: usize = top.iter().map(|l| l.width().div_ceil(width).max(1)).sum();
    let [summary_area, rest] = Layout::vertical([
        Constraint::Length(u16::try_from(rows + 1).unwrap_or(u16::MAX)),
        Constraint::Min(0),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(top).wrap(Wrap { trim: false }), summary_area);
    if entry.state.is_none() || rest.height == 0 {
        return;
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(rest);
    render_replicas(f, left, &model, theme);
    render_steps(f, right, &model, theme);
}

fn render_replicas(f: &mut Frame, area: Rect, model: &Detail, theme: &Theme) {
    let titles = ["NAME", "REV", "HEALTH", "READY"];
    let widths = column_widths(
        &titles,
        &model.replicas,
        usize::from(area.width),
        [0, 3, 10, 5],
    );
    let widths = [widths[0].min(30), widths[1], widths[2], widths[3]];
    let mut lines = vec![
        Line::styled(format!("replicas ({})", model.replicas.len()), theme.title),
        cells_line(&titles.map(str::to_string), &widths, |_| theme.table_header),
    ];
    for cells in &model.replicas {
        let health = match cells[2].as_str() {
            "healthy" => theme.success,
            "unhealthy" | "exited" | "dead" => theme.error,
            "starting" => theme.warning,
            _ => theme.row,
        };
        lines.push(cells_line(cells, &widths, |c| {
            if c == 2 { health } else { theme.row }
        }));
    }
    f.render_widget(Paragraph::new(lines), area);
}

fn render_steps(f: &mut Frame, area: Rect, model: &Detail, theme: &Theme) {
    let titles = ["STEP", "CHANGES", "TOOK", "HEALTH", "DRAIN", "REPLICAS"];
    let widths = column_widths(
        &titles,
        &model.steps,
        usize::from(area.width),
        [4, 9, 7, 7, 7, 0],
    );
    let readings = if model.readings.is_empty() {
        0
    } else {
        model
            .readings
            .len()
            .min(usize::from(area.height / 3).max(1))
            + 2
    };
    let room = usize::from(area.height)
        .saturating_sub(2)
        .saturating_sub(readings);
    let mut lines = vec![
        Line::styled(format!("steps ({})", model.steps.len()), theme.title),
        cells_line(&titles.map(str::to_string), &widths, |_| theme.table_header),
    ];
    // The newest steps are the ones worth seeing while a rollout runs.
    let skip = model.steps.len().saturating_sub(room);
    for cells in model.steps.iter().skip(skip) {
        lines.push(cells_line(cells, &widths, |_| theme.row));
    }
    if readings > 0 {
        let titles = ["TIME", "VALUE", "VERDICT"];
        let widths = column_widths(
            &titles,
            &model.readings,
            usize::from(area.width),
            [8, 14, 0],
        );
        lines.push(Line::styled(
            format!(
                "analysis ({} {}, newest last)",
                model.readings.len(),
                super::app::plural(model.readings.len(), "reading")
            ),
            theme.title,
        ));
        lines.push(cells_line(&titles.map(str::to_string), &widths, |_| {
            theme.table_header
        }));
        let shown = readings - 2;
        for cells in model.readings.iter().skip(model.readings.len() - shown) {
            let verdict = match cells[2].as_str() {
                "pass" => theme.success,
                "fail" => theme.error,
                _ => theme.warning,
            };
            lines.push(cells_line(cells, &widths, |c| {
                if c == 2 { verdict } else { theme.row }
            }));
        }
    }
    f.render_widget(Paragraph::new(lines), area);
}

impl App {
    /// Where rollouts keep their state files, and each target's Docker address for a rollback.
    pub fn attach_rollouts(&mut self, state_dir: PathBuf, addresses: HashMap<String, String>) {
        self.rollouts.state_dir = Some(state_dir);
        self.rollouts.addresses = addresses;
    }

    /// `R`: open the rollout view (the selected workload's from the workloads view, every
    /// rollout from elsewhere), or go back from it.
    pub(crate) fn toggle_rollouts(&mut self) {
        let scope = match self.view {
            View::Rollouts => {
                self.close_rollouts();
                return;
            }
            View::Editor => return,
            View::Workloads => self
                .selected_workload()
                .map_or(Scope::All, |w| Scope::Workload(w.id)),
            View::Logs => {
                self.close_logs();
                Scope::All
            }
            View::Autoscaler => Scope::All,
        };
        if self.rollouts.state_dir.is_none() {
            self.error("no state directory is known to this console".to_string());
            return;
        }
        self.rollouts.return_to = Some(self.view);
        self.rollouts.view = Some(RolloutsView {
            scope,
            entries: Vec::new(),
            selected: 0,
            unread: 0,
        });
        self.view = View::Rollouts;
        self.poll_rollouts();
    }

    /// Leave the rollout view for the view it was opened from.
    pub(crate) fn close_rollouts(&mut self) {
        self.rollouts.view = None;
        self.view = self.rollouts.return_to.take().unwrap_or(View::Workloads);
    }

    /// Read the open view's state files again; returns whether anything it shows changed.
    pub fn poll_rollouts(&mut self) -> bool {
        let Some(state_dir) = self.rollouts.state_dir.clone() else {
            return false;
        };
        let Some(view) = self.rollouts.view.as_ref() else {
            return false;
        };
        let (entries, unread) = read_entries(&view.scope, &self.store, &state_dir);
        let Some(view) = self.rollouts.view.as_mut() else {
            return false;
        };
        if view.entries == entries && view.unread == unread {
            return false;
        }
        // The selection follows its workload when rows come and go.
        let selected = view
            .entries
            .get(view.selected)
            .map(|e| (e.target.clone(), e.workload.clone()));
        view.selected = selected
            .and_then(|(t, w)| {
                entries
                    .iter()
                    .position(|e| e.target == t && e.workload == w)
            })
            .unwrap_or(view.selected)
            .min(entries.len().saturating_sub(1));
        view.entries = entries;
        view.unread = unread;
        true
    }

    pub(crate) fn on_rollouts_action(&mut self, action: KeyAction) {
        match action {
            KeyAction::Up
            | KeyAction::Down
            | KeyAction::PageUp
            | KeyAction::PageDown
            | KeyAction::Top
            | KeyAction::Bottom => {
                if let Some(view) = self.rollouts.view.as_mut() {
                    let last = view.entries.len().saturating_sub(1);
                    view.selected = match action {
                        KeyAction::Up => view.selected.saturating_sub(1),
                        KeyAction::Down => (view.selected + 1).min(last),
                        KeyAction::PageUp => view.selected.saturating_sub(10),
                        KeyAction::PageDown => (view.selected + 10).min(last),
                        KeyAction::Top => 0,
                        _ => last,
                    };
                }
            }
            KeyAction::Refresh => {
                self.poll_rollouts();
            }
            KeyAction::PauseRollout => self.send_rollout_word(Control::Pause),
            KeyAction::ResumeRollout => self.send_rollout_word(Control::Resume),
            KeyAction::AbortRollout => self.ask_rollout(RolloutAct::Abort),
            KeyAction::NewRollout => self.begin_new_rollout(),
            KeyAction::Rollback => self.ask_rollout(RolloutAct::Rollback { to_revision: 0 }),
            _ => {}
        }
    }

    fn selected_entry(&self) -> Option<&Entry> {
        let view = self.rollouts.view.as_ref()?;
        view.entries
            .get(view.selected.min(view.entries.len().saturating_sub(1)))
    }

    /// The workload of an entry as the store knows it (for its kind), else as the rollout
    /// commands name workloads: `PROJECT/SERVICE` for Compose, a group otherwise.
    fn entry_workload(&mut self, entry: &Entry) -> WorkloadId {
        let known = self
            .store
            .workloads()
            .iter()
            .find(|w| w.id.target == entry.target && w.id.name == entry.workload)
            .map(|w| w.id.clone());
        known.unwrap_or_else(|| WorkloadId {
            target: entry.target.clone(),
            kind: if entry.workload.contains('/') {
                WorkloadKind::Compose
            } else {
                WorkloadKind::Group
            },
            name: entry.workload.clone(),
        })
    }

    /// The selected entry if a rollout of it is running; otherwise says why not.
    fn running_entry(&mut self, word: &str) -> Option<(Entry, Files)> {
        let Some(entry) = self.selected_entry().cloned() else {
            self.info("no rollout selected".to_string());
            return None;
        };
        let name = text::sanitize_plain(&entry.workload);
        let Some(files) = entry.files.clone() else {
            self.error(format!(
                "cannot {word} the rollout of {name}: {} is not connected",
                entry.target
            ));
            return None;
        };
        if !state::is_running(&files) {
            let last = entry.phase().map_or(String::new(), |p| {
                format!(" (the last one is {})", p.as_str())
            });
            self.error(format!(
                "no rollout of {name} is running{last}: there is nothing to {word}"
            ));
            return None;
        }
        Some((entry, files))
    }

    /// `p`, `r`, and `X` once confirmed: leave the word for the running rollout, through the
    /// actuator (refused in read-only mode, audited).
    fn send_rollout_word(&mut self, control: Control) {
        let word = control.as_str();
        let Some((entry, files)) = self.running_entry(word) else {
            return;
        };
        let request = ActionRequest {
            workload: self.entry_workload(&entry),
            kind: ActionKind::RolloutControl {
                word: word.to_string(),
            },
            origin: "operator",
            confirmed: true,
            reason: None,
        };
        let result = self.actuator.run_here(&request, || {
            state::send_control(&files, control).map(|()| format!("{word} sent"))
        });
        let name = text::sanitize_plain(&entry.workload);
        match result {
            Ok(_) => self.info(match control {
                Control::Pause => format!("{name}: pause sent; the rollout pauses after its step"),
                Control::Resume => format!("{name}: resume sent"),
                Control::Abort => format!("{name}: abort sent; the rollout rolls back"),
            }),
            Err(ActionError::Refused(refusal)) => self.error(refusal.to_string()),
            Err(ActionError::Failed(why)) => self.error(format!("{name}: {why}")),
        }
    }

    /// `X` and `u`: ask first, unless the answer cannot change a refusal.
    fn ask_rollout(&mut self, act: RolloutAct) {
        let Some(entry) = self.selected_entry().cloned() else {
            self.info("no rollout selected".to_string());
            return;
        };
        if let Some(why) = self.refused_whatever_the_answer(&entry, act) {
            self.error(why);
            return;
        }
        let name = text::sanitize_plain(&entry.workload);
        let mut act = act;
        let question = match act {
            RolloutAct::Abort => {
                if self.running_entry("abort").is_none() {
                    return;
                }
                let back_to = entry.state.as_ref().map_or(String::new(), |s| {
                    format!(" to revision {}", s.from_revision)
                });
                format!(
                    "Abort the rollout of {name}? It stops after its current step and rolls \
                     back{back_to}."
                )
            }
            RolloutAct::Rollback { .. } => {
                if entry.files.as_ref().is_some_and(state::is_running) {
                    self.error(format!(
                        "a rollout of {name} is running: abort it (it rolls back by itself) \
                         instead of starting a rollback"
                    ));
                    return;
                }
                match self.kube_rollback_to(&entry) {
                    Some(Ok(mark)) => {
                        act = RolloutAct::Rollback {
                            to_revision: u32::try_from(mark.number).unwrap_or(0),
                        };
                        format!(
                            "Roll {name} back to revision {} ({})? Its replicas are replaced one \
                             by one, as in a rollout.",
                            mark.number,
                            text::sanitize_plain(&mark.image)
                        )
                    }
                    Some(Err(why)) => {
                        self.error(why);
                        return;
                    }
                    None => format!(
                        "Roll {name} back to its previous revision? Its replicas are replaced \
                         one by one, as in a rollout."
                    ),
                }
            }
        };
        self.prompt = Prompt::ConfirmRollout {
            question,
            workload: self.entry_workload(&entry),
            act,
        };
    }

    /// Why `act` on `entry` would be refused after a yes, so it is not asked: read-only mode
    /// (in the actuator's words; nothing was requested, so nothing is audited), or a rollback
    /// of a Kubernetes StatefulSet (in its worker's words).
    fn refused_whatever_the_answer(&mut self, entry: &Entry, act: RolloutAct) -> Option<String> {
        let name = text::sanitize_plain(&entry.workload);
        if self.actuator.read_only() {
            let what = match act {
                RolloutAct::Abort => format!("abort the rollout of {name}"),
                RolloutAct::Rollback { .. } => format!("roll {name} back"),
            };
            return Some(Refusal::ReadOnly(what).to_string());
        }
        let workload = self.entry_workload(entry);
        let on_kubernetes = self
            .store
            .target(&workload.target)
            .is_some_and(|t| t.platform == PlatformKind::Kubernetes);
        let stateful_set_rollback = matches!(act, RolloutAct::Rollback { .. })
            && workload.kind == WorkloadKind::StatefulSet
            && on_kubernetes;
        stateful_set_rollback.then(|| statefulset_rollback_refusal(&name))
    }

    /// The operator said yes to `act` on `workload`.
    pub(crate) fn confirmed_rollout(&mut self, workload: WorkloadId, act: RolloutAct) {
        match act {
            RolloutAct::Abort => {
                let selected = self
                    .selected_entry()
                    .is_some_and(|e| e.target == workload.target && e.workload == workload.name);
                if selected {
                    self.send_rollout_word(Control::Abort);
                } else {
                    self.error(format!(
                        "{} is no longer selected; nothing sent",
                        workload.name
                    ));
                }
            }
            RolloutAct::Rollback { to_revision } => self.start_rollback(workload, to_revision),
        }
    }

    /// Where a rollback of a Kubernetes Deployment goes, from the revisions its worker reports:
    /// the previous revision Pilothouse did not roll back from, or why there is none. `None`
    /// when the workload is not a Deployment whose revisions are known.
    fn kube_rollback_to(&mut self, entry: &Entry) -> Option<Result<RevisionMark, String>> {
        let workload = self.entry_workload(entry);
        if workload.kind != WorkloadKind::Deployment {
            return None;
        }
        let target = self.store.target(&workload.target)?;
        let controller = target
            .controllers
            .get(&(WorkloadKind::Deployment, workload.name.clone()))?;
        let current = controller.revision?;
        if controller.revisions.is_empty() {
            return None;
        }
        let candidates: Vec<Candidate> = controller
            .revisions
            .iter()
            .map(|r| Candidate {
                number: r.number,
                current: r.number == current,
                rolled_back: r.rolled_back.is_some(),
            })
            .collect();
        let name = text::sanitize_plain(&workload.name);
        let found = |n: u64| controller.revisions.iter().find(|r| r.number == n);
        match previous(&candidates, current) {
            Previous::To(n) => found(n).cloned().map(Ok),
            Previous::Nothing => Some(Err(format!(
                "{name} has no revision before {current} to roll back to"
            ))),
            Previous::AllRolledBack(marked) => {
                let listed: Vec<String> = marked
                    .iter()
                    .filter_map(|n| found(*n))
                    .map(|r| {
                        format!(
                            "revision {} ({}): {}",
                            r.number,
                            text::sanitize_plain(&r.image),
                            text::sanitize_plain(r.rolled_back.as_deref().unwrap_or(""))
                        )
                    })
                    .collect();
                Some(Err(format!(
                    "{name}: no revision before {current} that Pilothouse did not roll back from; \
                     rolled back from: {} (`pilothouse rollback --to-revision N` goes to one \
                     anyway)",
                    listed.join("; ")
                )))
            }
        }
    }

    /// The program that runs `rollout` and `rollback` commands: this one unless a test set one.
    pub(crate) fn rollouts_program(&self) -> Result<PathBuf, String> {
        match self.rollouts.program.clone() {
            Some(program) => Ok(program),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find this program to run a rollout command: {e}")),
        }
    }

    /// The workload of the rollout view's selected entry, as the store shows it.
    pub(crate) fn rollout_view_workload(&mut self) -> Option<crate::store::Workload> {
        let entry = self.selected_entry().cloned()?;
        let id = self.entry_workload(&entry);
        self.store.workloads().iter().find(|w| w.id == id).cloned()
    }

    /// Start `pilothouse rollback WORKLOAD --docker-host ADDRESS` as a process of its own
    /// (which itself runs the rollback in the background and audits it), through the actuator.
    fn start_rollback(&mut self, workload: WorkloadId, to_revision: u32) {
        let target = self.store.target(&workload.target);
        if target.map(|t| t.platform) == Some(PlatformKind::Kubernetes) {
            // What `kubectl rollout undo` does, by the workload's worker: to the revision the
            // operator confirmed, else the previous one as the worker finds it.
            let controller = target.and_then(|t| {
                t.controllers
                    .get(&(WorkloadKind::Deployment, workload.name.clone()))
            });
            let from = controller.and_then(|c| c.revision).unwrap_or(0);
            let image = controller
                .and_then(|c| {
                    c.revisions
                        .iter()
                        .find(|r| r.number == u64::from(to_revision))
                })
                .map(|r| r.image.clone())
                .unwrap_or_default();
            self.submit(ActionRequest {
                workload,
                kind: ActionKind::Rollback {
                    from_revision: u32::try_from(from).unwrap_or(0),
                    to_revision,
                    image,
                },
                origin: "operator",
                confirmed: true,
                reason: None,
            });
            return;
        }
        let args = ["rollback", workload.name.as_str()];
        let kind = ActionKind::RolloutControl {
            word: "rollback".to_string(),
        };
        self.spawn_rollout_command(&workload, kind, "roll back", &args);
        self.poll_rollouts();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::state::{Reading, ReplicaView, StepRecord};
    use chrono::TimeZone;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).single().unwrap()
    }

    fn replica(name: &str, revision: u32, health: &str, ready: bool) -> ReplicaView {
        ReplicaView {
            name: name.to_string(),
            revision,
            health: health.to_string(),
            ready,
        }
    }

    fn progressing(workload: &str) -> RolloutState {
        RolloutState {
            workload: workload.to_string(),
            host: "unix:///var/run/docker.sock".to_string(),
            engine_id: "TEST:ENGINE".to_string(),
            kind: Kind::Rollout,
            phase: Phase::Progressing,
            from_revision: 1,
            to_revision: 2,
            image: "web:2".to_string(),
            desired: 4,
            max_surge: 1,
            max_unavailable: 0,
            replicas: vec![
                replica("web-1", 1, "healthy", true),
                replica("web-2", 1, "healthy", true),
                replica("web-5", 2, "healthy", true),
                replica("web-6", 2, "starting", false),
            ],
            steps: vec![StepRecord {
                number: 1,
                created: vec!["web-5".to_string()],
                removed: vec!["web-3".to_string()],
                took_ms: 4_250,
                health_ms: 3_000,
                drain_ms: 900,
                create_ms: 200,
            }],
            analysis: vec![
                Reading {
                    at: at(30),
                    value: Some(0.0042),
                    verdict: "pass".to_string(),
                },
                Reading {
                    at: at(40),
                    value: None,
                    verdict: "inconclusive".to_string(),
                },
            ],
            message: String::new(),
            started: at(0),
            updated: at(45),
            pid: 4242,
            by: "ana".to_string(),
        }
    }

    fn entry(state: Option<RolloutState>, running: bool) -> Entry {
        Entry {
            target: "local".to_string(),
            workload: "g".to_string(),
            files: None,
            state,
            running,
            problem: None,
            now: None,
        }
    }

    #[test]
    fn a_progressing_rollout_shows_revisions_replicas_steps_and_readings() {
        let model = detail(&entry(Some(progressing("g")), true));
        assert_eq!(model.summary[0], "progressing  revision 1 → 2  web:2");
        assert_eq!(
            model.summary[1],
            "desired 4  max surge 1  max unavailable 0"
        );
        assert_eq!(model.summary[2], "rev 1: 2 (2 ready)  rev 2: 2 (1 ready)");
        assert!(
            model.summary[3].starts_with("rollout by ana (pid 4242, running)"),
            "{}",
            model.summary[3]
        );
        assert_eq!(model.message, None);
        assert_eq!(
            model.replicas[3],
            ["web-6", "2", "starting", "-"].map(String::from)
        );
        assert_eq!(
            model.steps,
            vec![["1", "+1 −1", "4.2s", "3.0s", "900ms", "+web-5 −web-3"].map(String::from)]
        );
        assert_eq!(
            model.readings,
            vec![
                ["22:13:50", "0.0042", "pass"].map(String::from),
                ["22:14:00", "inconclusive", "inconclusive"].map(String::from),
            ]
        );
    }

    #[test]
    fn an_unfinished_rollout_whose_lock_nobody_holds_shows_as_interrupted() {
        let cut_short = entry(Some(progressing("g")), false);
        assert_eq!(cut_short.phase(), Some(Phase::Interrupted));
        let model = detail(&cut_short);
        assert!(model.summary[0].starts_with("interrupted  "), "{model:?}");
        assert_eq!(
            model.message.as_deref(),
            Some("the process that ran it (pid 4242) ended before it finished")
        );
        let mut done = progressing("g");
        done.phase = Phase::RolledBack;
        assert_eq!(entry(Some(done), false).phase(), Some(Phase::RolledBack));
    }

    #[test]
    fn a_message_from_the_state_file_is_drawn_without_its_control_sequences() {
        let mut state = progressing("g");
        state.phase = Phase::RolledBack;
        state.message = "health gate failed \u{1b}]0;pwned\u{7}on web-6\u{1b}[2J".to_string();
        let message = detail(&entry(Some(state), false)).message.unwrap();
        assert!(
            !message.contains('\u{1b}') && !message.contains('\u{7}'),
            "{message:?}"
        );
        assert!(
            message.starts_with("health gate failed on web-6"),
            "{message:?}"
        );
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(millis(850), "850ms");
        assert_eq!(millis(1_250), "1.2s");
        assert_eq!(millis(125_000), "2m05s");
    }

    /// A console on target `local` (engine `TEST:ENGINE`, workload group `g`) with its state
    /// directory and audit log in `dir`.
    fn app(dir: &Path, read_only: bool) -> App {
        let mut app = crate::ui::app::tests_support::app(dir, read_only);
        let addresses = HashMap::from([("local".to_string(), "unix:///test.sock".to_string())]);
        app.attach_rollouts(dir.join("state"), addresses);
        app
    }

    fn files(dir: &Path, workload: &str) -> Files {
        Files::new(&dir.join("state"), "TEST:ENGINE", workload)
    }

    fn press(app: &mut App, c: char) {
        app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }

    fn audit(dir: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn status(app: &App) -> String {
        app.status
            .as_ref()
            .map(|s| s.text.clone())
            .unwrap_or_default()
    }

    #[test]
    fn r_on_a_workload_opens_its_rollout_and_r_again_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = app(dir.path(), false);
        state::write_state(&files(dir.path(), "g").state, &progressing("g")).unwrap();
        press(&mut app, 'R');
        assert_eq!(app.view, View::Rollouts);
        let view = app.rollouts.view.clone().unwrap();
        assert!(matches!(&view.scope, Scope::Workload(id) if id.name == "g"));
        assert_eq!(view.entries.len(), 1);
        assert_eq!(view.entries[0].phase(), Some(Phase::Interrupted));
        assert!(!app.poll_rollouts(), "nothing changed on disk");
        let mut done = progressing("g");
        done.phase = Phase::Succeeded;
        state::write_state(&files(dir.path(), "g").state, &done).unwrap();
        assert!(app.poll_rollouts(), "a rewritten state file is seen");
        press(&mut app, 'R');
        assert_eq!(app.view, View::Workloads);
        assert!(app.rollouts.view.is_none());
    }

    #[test]
    fn opened_from_elsewhere_the_view_lists_every_recorded_rollout() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = app(dir.path(), false);
        for name in ["shop/web", "batch"] {
            state::write_state(&files(dir.path(), name).state, &progressing(name)).unwrap();
        }
        std::fs::write(
            dir.path().join("state/rollouts/TEST_ENGINE/broken.json"),
            "{",
        )
        .unwrap();
        press(&mut app, 'a');
        press(&mut app, 'R');
        let view = app.rollouts.view.clone().unwrap();
        assert_eq!(view.scope, Scope::All);
        let names: Vec<&str> = view.entries.iter().map(|e| e.workload.as_str()).collect();
        assert_eq!(names, ["batch", "broken", "shop/web"]);
        assert!(view.entries[1].problem.is_some());
        press(&mut app, 'R');
        assert_eq!(app.view, View::Autoscaler, "back to where it was opened");
    }

    #[test]
    fn pause_writes_the_control_word_for_a_running_rollout_and_audits_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = app(dir.path(), false);
        let files = files(dir.path(), "g");
        state::write_state(&files.state, &progressing("g")).unwrap();
        let _held = state::lock(&files, "rollout pid 1 (test)").unwrap();
        press(&mut app, 'R');
        press(&mut app, 'p');
        assert_eq!(state::read_control(&files), Some(Control::Pause));
        assert!(status(&app).contains("pause sent"), "{}", status(&app));
        let lines = audit(dir.path());
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["action"], "rolloutcontrol");
        assert_eq!(lines[0]["word"], "pause");
        assert_eq!(lines[0]["workload"], "g");
        assert_eq!(lines[0]["outcome"], "ok");
        press(&mut app, 'r');
        assert_eq!(state::read_control(&files), Some(Control::Resume));
    }

    #[test]
    fn pause_is_refused_when_no_rollout_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = app(dir.path(), false);
        let files = files(dir.path(), "g");
        let mut done = progressing("g");
        done.phase = Phase::Succeeded;
        state::write_state(&files.state, &done).unwrap();
        press(&mut app, 'R');
        press(&mut app, 'p');
        assert_eq!(state::read_control(&files), None);
        assert_eq!(
            status(&app),
            "no rollout of g is running (the last one is succeeded): there is nothing to pause"
        );
        assert!(audit(dir.path()).is_empty());
    }

    #[test]
    fn read_only_mode_refuses_pause_and_audits_it_and_refuses_abort_and_rollback_before_asking() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = app(dir.path(), true);
        let files = files(dir.path(), "g");
        state::write_state(&files.state, &progressing("g")).unwrap();
        let held = state::lock(&files, "rollout pid 1 (test)").unwrap();
        press(&mut app, 'R');
        press(&mut app, 'p');
        assert_eq!(state::read_control(&files), None);
        assert!(
            status(&app).starts_with("read-only mode"),
            "{}",
            status(&app)
        );
        press(&mut app, 'X');
        assert!(matches!(app.prompt, Prompt::None), "{:?}", app.prompt);
        assert_eq!(
            status(&app),
            "read-only mode: abort the rollout of g refused (start without --read-only to act)"
        );
        drop(held);
        app.rollouts.program = Some(PathBuf::from("/nonexistent/never-run"));
        press(&mut app, 'u');
        assert!(matches!(app.prompt, Prompt::None), "{:?}", app.prompt);
        assert_eq!(
            status(&app),
            "read-only mode: roll g back refused (start without --read-only to act)"
        );
        // `X` and `u` are refused before anything is asked or requested: only `p` reached the
        // actuator.
        let outcomes: Vec<String> = audit(dir.path())
            .iter()
            .map(|l| {
                format!(
                    "{} {}",
                    l["word"].as_str().unwrap(),
                    l["outcome"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(outcomes, ["pause refused"]);
    }

    #[test]
    fn abort_asks_first_and_a_no_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = app(dir.path(), false);
        let files = files(dir.path(), "g");
        state::write_state(&files.state, &progressing("g")).unwrap();
        let _held = state::lock(&files, "rollout pid 1 (test)").unwrap();
        press(&mut app, 'R');
        press(&mut app, 'X');
        assert!(
            matches!(&app.prompt, Prompt::ConfirmRollout { question, .. }
                if question.contains("rolls back to revision 1")),
            "{:?}",
            app.prompt
        );
        press(&mut app, 'n');
        assert_eq!(state::read_control(&files), None);
        press(&mut app, 'X');
        press(&mut app, 'y');
        assert_eq!(state::read_control(&files), Some(Control::Abort));
    }

    /// [`app`] with a Kubernetes target `sandbox` whose Deployment `shop/web` runs revision 3
    /// of `revisions`, its rollout view open on it.
    fn kube_app(dir: &Path, revisions: Vec<crate::model::RevisionMark>) -> App {
        use crate::model::Controller;
        use crate::platform::Update;
        let mut app = app(dir, false);
        app.store.add_target("sandbox", PlatformKind::Kubernetes);
        app.store.apply(&Update::Connection {
            target: "sandbox".to_string(),
            state: ConnState::Connected {
                version: "v1.31".to_string(),
                api_version: "v1".to_string(),
                engine_id: "KUBE:ENGINE".to_string(),
            },
        });
        app.store.apply(&Update::Controllers {
            target: "sandbox".to_string(),
            controllers: vec![Controller {
                kind: WorkloadKind::Deployment,
                name: "shop/web".to_string(),
                desired: 3,
                image: "sandbox/web:1.4".to_string(),
                revision: Some(3),
                paused: false,
                rollout: None,
                scaled_by: None,
                revisions,
            }],
        });
        let id = WorkloadId {
            target: "sandbox".to_string(),
            kind: WorkloadKind::Deployment,
            name: "shop/web".to_string(),
        };
        let (entries, unread) =
            read_entries(&Scope::Workload(id.clone()), &app.store, &dir.join("state"));
        app.rollouts.view = Some(RolloutsView {
            scope: Scope::Workload(id),
            entries,
            selected: 0,
            unread,
        });
        app
    }

    fn mark(number: u64, image: &str, rolled_back: Option<&str>) -> crate::model::RevisionMark {
        crate::model::RevisionMark {
            number,
            image: image.to_string(),
            rolled_back: rolled_back.map(str::to_string),
        }
    }

    #[test]
    fn a_kubernetes_rollback_asks_naming_the_revision_and_image_passing_over_a_failed_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = kube_app(
            dir.path(),
            vec![
                mark(1, "sandbox/web:1.3", None),
                mark(2, "sandbox/web:1.5-unhealthy", Some("it crash-loops")),
                mark(3, "sandbox/web:1.4", None),
            ],
        );
        assert_eq!(
            app.rollouts.view.as_ref().unwrap().entries[0]
                .now
                .as_deref(),
            Some("now: revision 3 (sandbox/web:1.4)")
        );

        app.ask_rollout(RolloutAct::Rollback { to_revision: 0 });

        let Prompt::ConfirmRollout { question, act, .. } = &app.prompt else {
            panic!("expected a confirmation, got {:?}", app.prompt);
        };
        assert!(
            question.starts_with("Roll shop/web back to revision 1 (sandbox/web:1.3)? "),
            "{question}"
        );
        assert_eq!(*act, RolloutAct::Rollback { to_revision: 1 });
    }

    #[test]
    fn a_kubernetes_rollback_with_only_failed_revisions_before_says_so_and_asks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = kube_app(
            dir.path(),
            vec![
                mark(
                    2,
                    "sandbox/web:1.5-unhealthy",
                    Some("exceeded its progress deadline"),
                ),
                mark(3, "sandbox/web:1.4", None),
            ],
        );

        app.ask_rollout(RolloutAct::Rollback { to_revision: 0 });

        assert!(matches!(app.prompt, Prompt::None), "{:?}", app.prompt);
        assert_eq!(
            status(&app),
            "shop/web: no revision before 3 that Pilothouse did not roll back from; rolled back \
             from: revision 2 (sandbox/web:1.5-unhealthy): exceeded its progress deadline \
             (`pilothouse rollback --to-revision N` goes to one anyway)"
        );
    }

    #[test]
    fn a_kubernetes_statefulset_rollback_is_refused_before_asking_in_the_workers_words() {
        use crate::model::Controller;
        use crate::platform::Update;
        let dir = tempfile::tempdir().unwrap();
        let mut app = kube_app(dir.path(), Vec::new());
        app.store.apply(&Update::Controllers {
            target: "sandbox".to_string(),
            controllers: vec![Controller {
                kind: WorkloadKind::StatefulSet,
                name: "batch/queue".to_string(),
                desired: 2,
                image: "sandbox/queue:2".to_string(),
                revision: None,
                paused: false,
                rollout: None,
                scaled_by: None,
                revisions: Vec::new(),
            }],
        });
        let id = WorkloadId {
            target: "sandbox".to_string(),
            kind: WorkloadKind::StatefulSet,
            name: "batch/queue".to_string(),
        };
        let (entries, unread) = read_entries(
            &Scope::Workload(id.clone()),
            &app.store,
            &dir.path().join("state"),
        );
        app.rollouts.view = Some(RolloutsView {
            scope: Scope::Workload(id),
            entries,
            selected: 0,
            unread,
        });
        app.view = View::Rollouts;

        press(&mut app, 'u');

        assert!(matches!(app.prompt, Prompt::None), "{:?}", app.prompt);
        assert_eq!(status(&app), statefulset_rollback_refusal("batch/queue"));
        assert!(
            status(&app).contains("ControllerRevisions"),
            "{}",
            status(&app)
        );
        assert!(audit(dir.path()).is_empty());
    }

    #[test]
    fn a_confirmed_rollback_starts_the_rollback_command_for_the_targets_address() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut app = app(dir.path(), false);
        let args = dir.path().join("args");
        let script = dir.path().join("fake-pilothouse");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" > {}.tmp && mv {0}.tmp {0}\n",
                args.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        app.rollouts.program = Some(script);
        press(&mut app, 'R');
        press(&mut app, 'u');
        assert!(matches!(
            app.prompt,
            Prompt::ConfirmRollout {
                act: RolloutAct::Rollback { to_revision: 0 },
                ..
            }
        ));
        press(&mut app, 'y');
        assert!(
            status(&app).contains("started `pilothouse rollback`"),
            "{}",
            status(&app)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !args.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            std::fs::read_to_string(&args).unwrap().trim(),
            "rollback g --docker-host unix:///test.sock"
        );
        assert_eq!(audit(dir.path())[0]["word"], "rollback");
    }
}
