//! The console's state machine: what is on screen, what is selected, what the operator is
//! typing. Keys become [`KeyAction`]s through the keymap; actions and worker updates change
//! the state; rendering (in the panel modules) reads it.
//!
//! Not for I/O: the run loop in `tui.rs` feeds events in; requests to workers leave through
//! channels that never block.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Local, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use regex::Regex;
use tokio::sync::mpsc;

use crate::actuator::{ActionKind, ActionOutcome, ActionRequest, Actuator, Refusal};
use crate::autoscaler::Status as RulesStatus;
use crate::autoscaler::setup::ContextOpener;
use crate::config::Config;
use crate::keymap::{KeyAction, Keymap, Mode};
use crate::logbuf::LogBuffer;
use crate::model::WorkloadId;
use crate::platform::{LogRecord, LogStart, Request, Update};
use crate::store::{Change, Store, Workload};
use crate::theme::Theme;

use super::command::{self, CommandLine};
use super::editor::Editor;
use super::rollouts::{RolloutAct, RolloutLink};
use super::rules_ctl::AutoscalerLink;
use super::workloads::WorkloadTable;

/// Which screen fills the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Workloads,
    Logs,
    /// The rules and their decisions.
    Autoscaler,
    /// The rule editor.
    Editor,
    /// Rollouts: steps, replicas per revision, analysis.
    Rollouts,
}

/// Which pane of the workloads view has the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Workloads,
    Detail,
}

/// A line of input or a question at the bottom of the screen, taking keys before anything else.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    None,
    /// `/` in the workloads table: a regex over the rows.
    Filter(String),
    /// `/` in the logs view: a regex to highlight and jump between.
    Search(String),
    /// `|` in the logs view: show only lines matching a regex.
    LogFilter(String),
    /// `:` command mode.
    Command(CommandLine),
    /// `s`: the new replica count.
    Scale {
        input: String,
        workload: WorkloadId,
        from: u64,
    },
    /// `i` / `n`: the image to roll a workload out to.
    Image {
        input: String,
        workload: WorkloadId,
    },
    /// A destructive action waiting for y/n.
    Confirm {
        question: String,
        request: ActionRequest,
    },
    /// Aborting a rollout or starting a rollback, waiting for y/n.
    ConfirmRollout {
        question: String,
        workload: WorkloadId,
        act: RolloutAct,
    },
}

/// How serious a status message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Success,
    Error,
}

/// A message in the status line until the next key.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub level: Level,
    pub text: String,
}

/// An open logs view: one replica or a whole workload merged.
pub struct LogView {
    pub stream: u64,
    pub title: String,
    pub target: String,
    /// (container id, container name) of every replica followed.
    pub replicas: Vec<(String, String)>,
    pub buffer: LogBuffer,
    pub follow: bool,
    pub wrap: bool,
    pub timestamps: bool,
    /// The sequence number of the top line while not following.
    pub top: u64,
    /// Columns scrolled to the right when not wrapping.
    pub hscroll: usize,
    pub search: Option<Regex>,
    pub filter: Option<Regex>,
    /// Sequence numbers that pass the filter, kept in step with the buffer.
    pub filtered: Vec<u64>,
    /// Each replica's prefix colour.
    pub colors: HashMap<String, Color>,
    /// Replicas whose stream has ended, with the reason.
    pub ended: Vec<(String, String)>,
    /// A fetch of earlier lines in flight.
    pub earlier: Option<EarlierFetch>,
    /// The viewport height at the last draw, for paging.
    pub height: usize,
    /// The viewport width at the last draw, for bringing a search hit into view.
    pub width: usize,
    /// Lines not kept while paused with a full buffer (so the paused lines stay on screen).
    pub skipped: u64,
}

/// What a key in the logs view asks of the app beyond the view itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogEffect {
    None,
    /// Fetch the lines before the oldest held.
    FetchEarlier,
    /// Follow again from the newest lines, dropping what is held.
    Refollow,
}

/// Lines before the oldest one held, being fetched from every replica of a logs view.
pub struct EarlierFetch {
    pub stream: u64,
    /// Replicas whose earlier lines have not all arrived yet.
    pub pending: Vec<String>,
    pub lines: Vec<LogRecord>,
}

/// The whole console state.
pub struct App {
    pub store: Store,
    pub theme: Theme,
    pub keymap: Keymap,
    pub config: Config,
    pub view: View,
    pub pane: Pane,
    pub prompt: Prompt,
    pub help: bool,
    /// Lines scrolled down in the help.
    pub help_scroll: usize,
    pub table: WorkloadTable,
    /// Selected replica in the detail pane.
    pub detail_selected: usize,
    pub logs: Option<LogView>,
    /// Show env values whose names look secret.
    pub reveal: bool,
    pub status: Option<Status>,
    pub now: DateTime<Utc>,
    /// The operator's time zone for the clock, read once at start.
    pub clock_offset: FixedOffset,
    pub actuator: Actuator,
    pub workers: HashMap<String, mpsc::Sender<Request>>,
    /// Show only this target's workloads (`:host NAME`); `None` shows all.
    pub target_filter: Option<String>,
    next_stream: u64,
    pub quit: bool,
    /// The autoscaler's latest status (empty when it is off).
    pub rules: Arc<RulesStatus>,
    /// The selected row of the autoscaler view.
    pub rules_selected: usize,
    /// The rule being edited.
    pub editor: Option<Editor>,
    /// The view the autoscaler view returns to.
    pub(crate) return_to: View,
    /// The view the editor returns to (the workloads or the autoscaler view).
    pub(crate) editor_return: View,
    /// Where rule files live, and the running autoscaler, if any.
    pub(crate) autoscaler: AutoscalerLink,
    /// Where rollouts are recorded, and the rollout view while it is open.
    pub rollouts: RolloutLink,
    /// A line for a newcomer (the demo's), shown above the workloads table's key hints.
    pub hint: Option<String>,
    /// Opens the kubeconfig's other contexts (`:ctx NAME`); `None` opens none.
    contexts: Option<ContextOpener>,
    /// The kubeconfig's contexts, read when command mode opens, for Tab.
    context_names: Vec<String>,
}

impl App {
    /// A console over `store`, acting through `actuator`, asking `workers` for logs.
    pub fn new(
        config: Config,
        theme: Theme,
        keymap: Keymap,
        store: Store,
        actuator: Actuator,
        workers: HashMap<String, mpsc::Sender<Request>>,
    ) -> Self {
        App {
            store,
            theme,
            keymap,
            config,
            view: View::Workloads,
            pane: Pane::Workloads,
            prompt: Prompt::None,
            help: false,
            help_scroll: 0,
            table: WorkloadTable::default(),
            detail_selected: 0,
            logs: None,
            reveal: false,
            status: None,
            now: Utc::now(),
            clock_offset: *Local::now().offset(),
            actuator,
            workers,
            target_filter: None,
            next_stream: 1,
            quit: false,
            rules: Arc::new(RulesStatus::default()),
            rules_selected: 0,
            editor: None,
            return_to: View::Workloads,
            editor_return: View::Workloads,
            autoscaler: AutoscalerLink::default(),
            rollouts: RolloutLink::default(),
            hint: None,
            contexts: None,
            context_names: Vec::new(),
        }
    }

    /// What opens a context of the kubeconfig that is not open yet (`:ctx NAME`).
    pub fn attach_contexts(&mut self, opener: ContextOpener) {
        self.contexts = Some(opener);
    }

    /// Where rule files are edited, and the autoscaler that runs them (`None`: it is off).
    pub fn attach_autoscaler(&mut self, rules_dir: PathBuf, link: Option<super::rules_ctl::Link>) {
        self.autoscaler = AutoscalerLink {
            rules_dir: Some(rules_dir),
            link,
            preview_number: 0,
        };
    }

    /// The keymap mode that applies now.
    pub fn mode(&self) -> Mode {
        if self.help {
            return Mode::Help;
        }
        self.base_mode()
    }

    /// The mode of the view under any help overlay.
    pub fn base_mode(&self) -> Mode {
        match (self.view, self.pane) {
            (View::Logs, _) => Mode::Logs,
            (View::Autoscaler | View::Editor, _) => Mode::Autoscaler,
            (View::Rollouts, _) => Mode::Rollouts,
            (View::Workloads, Pane::Workloads) => Mode::Workloads,
            (View::Workloads, Pane::Detail) => Mode::Detail,
        }
    }

    /// Apply a worker update; returns how soon the screen should redraw.
    pub fn on_update(&mut self, update: Update) -> Change {
        match update {
            Update::Logs { stream, lines } => self.on_log_lines(stream, lines),
            Update::LogsEnded {
                stream,
                replica,
                reason,
            } => self.on_logs_ended(stream, replica, reason),
            Update::LogsPaused {
                stream,
                replica,
                reason,
            } if self.logs.as_ref().is_some_and(|view| view.stream == stream) => {
                self.info(format!("{replica}: {reason}"));
                Change::Structure
            }
            other => {
                let change = self.store.apply(&other);
                if change != Change::None {
                    self.table.mark_stale();
                }
                change
            }
        }
    }

    /// Show the outcome of an action that finished.
    pub fn on_outcome(&mut self, outcome: ActionOutcome) {
        let what = outcome.request.describe();
        self.status = Some(match outcome.result {
            Ok(msg) => Status {
                level: Level::Success,
                text: format!("{what}: {msg}"),
            },
            Err(msg) => Status {
                level: Level::Error,
                text: format!("{what} failed: {msg}"),
            },
        });
    }

    /// Handle one key. Returns whether anything visible changed.
    pub fn on_key(&mut self, key: KeyEvent) -> bool {
        if key.kind == crossterm::event::KeyEventKind::Release {
            return false;
        }
        if self.prompt != Prompt::None {
            self.on_prompt_key(key);
            return true;
        }
        if self.view == View::Editor {
            self.on_editor_key(key);
            return true;
        }
        self.status = None;
        let Some(action) = self.keymap.action(self.mode(), &key) else {
            return false;
        };
        self.on_action(action);
        true
    }

    /// Carry out one keymap action in the current mode.
    pub fn on_action(&mut self, action: KeyAction) {
        if self.help {
            match action {
                KeyAction::Back | KeyAction::Help | KeyAction::Quit => self.help = false,
                KeyAction::Down => self.help_scroll += 1,
                KeyAction::Up => self.help_scroll = self.help_scroll.saturating_sub(1),
                KeyAction::PageDown => self.help_scroll += 10,
                KeyAction::PageUp => self.help_scroll = self.help_scroll.saturating_sub(10),
                KeyAction::Top => self.help_scroll = 0,
                _ => {}
            }
            return;
        }
        match action {
            KeyAction::Help => {
                self.help = true;
                self.help_scroll = 0;
            }
            KeyAction::Command => {
                self.context_names = self
                    .contexts
                    .as_ref()
                    .map_or_else(Vec::new, |c| c.contexts());
                self.prompt = Prompt::Command(CommandLine::default());
            }
            KeyAction::Quit | KeyAction::Back => self.back(action == KeyAction::Quit),
            KeyAction::Autoscaler => self.toggle_autoscaler(),
            KeyAction::Rollouts => self.toggle_rollouts(),
            _ => match self.view {
                View::Workloads => self.on_workloads_action(action),
                View::Logs => self.on_logs_action(action),
                View::Autoscaler => self.on_autoscaler_action(action),
                View::Rollouts => self.on_rollouts_action(action),
                View::Editor => {}
            },
        }
    }

    fn back(&mut self, quit_key: bool) {
        if self.view == View::Autoscaler {
            self.view = self.return_to;
        } else if self.view == View::Rollouts {
            self.close_rollouts();
        } else if self.view == View::Logs {
            self.close_logs();
        } else if self.pane == Pane::Detail {
            self.pane = Pane::Workloads;
        } else if self.table.filter_text().is_some() && !quit_key {
            self.table.clear_filter();
        } else if quit_key {
            self.quit = true;
        }
    }

    fn on_workloads_action(&mut self, action: KeyAction) {
        match action {
            KeyAction::NextPane => {
                self.pane = match self.pane {
                    Pane::Workloads => Pane::Detail,
                    Pane::Detail => Pane::Workloads,
                };
            }
            KeyAction::Open if self.pane == Pane::Workloads => self.pane = Pane::Detail,
            KeyAction::Open => self.open_logs(true),
            KeyAction::Filter => {
                let current = self.table.filter_text().unwrap_or_default().to_string();
                self.prompt = Prompt::Filter(current);
            }
            KeyAction::Logs => self.open_logs(self.pane == Pane::Detail),
            KeyAction::PreviousLogs => self.open_previous_logs(),
            KeyAction::Reveal => self.reveal = !self.reveal,
            KeyAction::SortNext => self.table.sort_next(),
            KeyAction::SortReverse => self.table.reverse_sort(),
            KeyAction::Scale => self.begin_scale(),
            KeyAction::Restart => self.begin_restart(),
            KeyAction::Refresh => self.refresh_selected(),
            KeyAction::EditRule => self.edit_rule_of_selection(),
            KeyAction::PauseRule => self.pause_rule_of_selection(),
            KeyAction::NewRollout => self.begin_new_rollout(),
            KeyAction::Up
            | KeyAction::Down
            | KeyAction::PageUp
            | KeyAction::PageDown
            | KeyAction::Top
            | KeyAction::Bottom => self.move_selection(action),
            _ => {}
        }
    }

    fn move_selection(&mut self, action: KeyAction) {
        if self.pane == Pane::Detail {
            let count = self.selected_workload().map_or(0, |w| w.replicas.len());
            self.detail_selected = step(self.detail_selected, count, action, 5);
            return;
        }
        let rows = self.visible_rows();
        let page = self.table.height.max(1);
        let all = self.store.workloads();
        let current = self.table.selected_index(all, &rows);
        let next = step(current, rows.len(), action, page);
        if let Some(&i) = rows.get(next) {
            self.table.selected = Some(all[i].id.clone());
            self.detail_selected = 0;
        }
    }

    /// Indices into the store's workloads of the rows the table shows, filtered and sorted.
    pub fn visible_rows(&mut self) -> Vec<usize> {
        let all = self.store.workloads();
        self.table.rows(all, self.target_filter.as_deref())
    }

    /// The workload under the cursor.
    pub fn selected_workload(&mut self) -> Option<Workload> {
        let rows = self.visible_rows();
        let all = self.store.workloads();
        let i = self.table.selected_index(all, &rows);
        rows.get(i).map(|&i| all[i].clone())
    }

    fn selected_replica(&mut self) -> Option<(Workload, String)> {
        let w = self.selected_workload()?;
        let i = self.detail_selected.min(w.replicas.len().saturating_sub(1));
        let id = w.replicas.get(i)?.clone();
        Some((w, id))
    }

    fn refresh_selected(&mut self) {
        let Some(w) = self.selected_workload() else {
            return;
        };
        for id in &w.replicas {
            self.send(&w.id.target, Request::Inspect { id: id.clone() });
        }
    }

    fn begin_scale(&mut self) {
        let Some(w) = self.selected_workload() else {
            return;
        };
        if !w.id.kind.scalable() {
            self.error(format!(
                "{} is a standalone container and cannot be scaled; give it a pilothouse.group label",
                w.id.name
            ));
            return;
        }
        self.prompt = Prompt::Scale {
            input: String::new(),
            from: w.desired as u64,
            workload: w.id,
        };
    }

    fn begin_restart(&mut self) {
        let Some((w, id)) = self.selected_replica() else {
            return;
        };
        let name = self
            .store
            .replica(&w.id.target, &id)
            .map_or_else(|| id.clone(), |r| r.name.clone());
        self.submit(ActionRequest {
            workload: w.id,
            kind: ActionKind::Restart {
                replica_id: id,
                replica: name,
            },
            origin: "operator",
            confirmed: false,
            reason: None,
        });
    }

    /// Hand an action to the actuator; a confirmation it asks for becomes a y/n prompt.
    pub fn submit(&mut self, request: ActionRequest) {
        match self.actuator.submit(request.clone()) {
            Ok(()) => self.info(format!("{}…", request.describe())),
            Err(Refusal::NeedsConfirmation(question)) => {
                self.prompt = Prompt::Confirm { question, request };
            }
            Err(refusal) => self.error(refusal.to_string()),
        }
    }

    fn on_prompt_key(&mut self, key: KeyEvent) {
        let prompt = std::mem::replace(&mut self.prompt, Prompt::None);
        self.prompt = match prompt {
            Prompt::Confirm { question, request } => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    self.submit(ActionRequest {
                        confirmed: true,
                        reason: None,
                        ..request
                    });
                    return;
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                    self.info("cancelled".to_string());
                    Prompt::None
                }
                _ => Prompt::Confirm { question, request },
            },
            Prompt::ConfirmRollout {
                question,
                workload,
                act,
            } => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    self.confirmed_rollout(workload, act);
                    return;
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                    self.info("cancelled".to_string());
                    Prompt::None
                }
                _ => Prompt::ConfirmRollout {
                    question,
                    workload,
                    act,
                },
            },
            Prompt::Command(mut line) => match key.code {
                KeyCode::Enter => {
                    self.run_command(&line.input);
                    return;
                }
                KeyCode::Esc => Prompt::None,
                KeyCode::Tab => {
                    let candidates = self.command_candidates();
                    line.complete(&candidates);
                    Prompt::Command(line)
                }
                _ => {
                    edit_input(&mut line.input, key);
                    line.reset_completion();
                    Prompt::Command(line)
                }
            },
            Prompt::Scale {
                mut input,
                workload,
                from,
            } => match key.code {
                KeyCode::Enter => {
                    match input.trim().parse::<u64>() {
                        // The actuator may ask for a confirmation, which becomes the prompt.
                        Ok(to) => self.submit(ActionRequest {
                            workload,
                            kind: ActionKind::Scale { from, to },
                            origin: "operator",
                            confirmed: false,
                            reason: None,
                        }),
                        Err(_) => self.error(format!(
                            "not a replica count: {input:?} (type a whole number, e.g. 3)"
                        )),
                    }
                    return;
                }
                KeyCode::Esc => Prompt::None,
                KeyCode::Char(c) if !c.is_ascii_digit() => Prompt::Scale {
                    input,
                    workload,
                    from,
                },
                _ => {
                    edit_input(&mut input, key);
                    Prompt::Scale {
                        input,
                        workload,
                        from,
                    }
                }
            },
            Prompt::Image { input, workload } => self.on_image_prompt_key(input, workload, key),
            Prompt::Filter(input) => self.regex_prompt(input, key, Prompt::Filter),
            Prompt::Search(input) => self.regex_prompt(input, key, Prompt::Search),
            Prompt::LogFilter(input) => self.regex_prompt(input, key, Prompt::LogFilter),
            Prompt::None => Prompt::None,
        };
    }

    /// Edit a regex prompt; the regex applies as it is typed while it compiles.
    fn regex_prompt(
        &mut self,
        mut input: String,
        key: KeyEvent,
        wrap: fn(String) -> Prompt,
    ) -> Prompt {
        match key.code {
            KeyCode::Enter => {
                self.apply_regex_prompt(&wrap(input), true);
                Prompt::None
            }
            KeyCode::Esc => {
                self.apply_regex_prompt(&wrap(String::new()), true);
                Prompt::None
            }
            _ => {
                edit_input(&mut input, key);
                let prompt = wrap(input);
                self.apply_regex_prompt(&prompt, false);
                prompt
            }
        }
    }

    fn apply_regex_prompt(&mut self, prompt: &Prompt, finished: bool) {
        let (text, which) = match prompt {
            Prompt::Filter(t) => (t, 0),
            Prompt::Search(t) => (t, 1),
            Prompt::LogFilter(t) => (t, 2),
            _ => return,
        };
        if which == 0 {
            if let Err(e) = self.table.set_filter(text) {
                self.status = finished.then(|| Status {
                    level: Level::Error,
                    text: format!("filter not applied: {}", regex_error(&e)),
                });
            }
            return;
        }
        let regex = match compile_optional(text) {
            Ok(r) => r,
            Err(e) => {
                if finished {
                    self.error(format!("not a valid regex: {}", regex_error(&e)));
                }
                return;
            }
        };
        let Some(view) = self.logs.as_mut() else {
            return;
        };
        if which == 1 {
            view.search = regex;
            if finished {
                view.jump_to_match(true);
            }
        } else {
            view.filter = regex;
            view.refilter();
        }
    }

    /// What Tab can complete in command mode: views, then targets, then contexts (the open
    /// ones, then the kubeconfig's).
    pub(crate) fn command_candidates(&self) -> Vec<String> {
        let targets = self.store.targets();
        let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
        let contexts: Vec<String> = targets
            .iter()
            .filter(|t| t.platform == crate::model::PlatformKind::Kubernetes)
            .map(|t| t.name.clone())
            .chain(self.context_names.iter().cloned())
            .collect();
        command::candidates(&names, &contexts)
    }

    fn run_command(&mut self, input: &str) {
        let targets: Vec<String> = self
            .store
            .targets()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        match command::parse(input, &targets) {
            Ok(command::Command::Workloads) => {
                self.close_logs();
                self.pane = Pane::Workloads;
            }
            Ok(command::Command::Host(name)) => {
                self.target_filter = name;
                self.table.mark_stale();
            }
            Ok(command::Command::OpenContext(name)) => self.open_context(&name, &targets),
            Ok(command::Command::Help) => self.help = true,
            Ok(command::Command::Quit) => self.quit = true,
            Ok(command::Command::Logs) => self.open_logs(false),
            Ok(command::Command::Rules) => {
                if self.view != View::Autoscaler {
                    self.toggle_autoscaler();
                }
            }
            Err(e) => self.error(e),
        }
    }

    /// `:ctx NAME` for a context that is not open: start its worker, make it known to the
    /// store, the actuator and the autoscaler, and show it alone. An error changes nothing.
    fn open_context(&mut self, name: &str, open: &[String]) {
        let Some(opener) = &self.contexts else {
            self.error(format!(
                "no target named {name:?}; known targets: {}",
                open.join(", ")
            ));
            return;
        };
        let started = match opener.open(name) {
            Ok(started) => started,
            Err(e) => return self.error(e),
        };
        self.store.add_target(&started.name, started.kind);
        self.workers
            .insert(started.name.clone(), started.worker.clone());
        self.actuator.add_worker(&started.name, started.worker);
        let addresses = &mut self.rollouts.addresses;
        addresses.insert(started.name.clone(), started.endpoint.clone());
        let engine = self.autoscaler.link.as_ref().is_some_and(|link| {
            let add = crate::autoscaler::Command::AddTarget {
                name: started.name.clone(),
                endpoint: started.endpoint,
            };
            link.commands.send(add).is_ok()
        });
        let why = if engine {
            ""
        } else {
            " (the autoscaler is off in this console: no rule acts on it)"
        };
        self.info(format!("opened context {:?}{why}", started.name));
        self.target_filter = Some(started.name);
        self.table.mark_stale();
    }

    pub(crate) fn info(&mut self, text: String) {
        self.status = Some(Status {
            level: Level::Info,
            text,
        });
    }

    pub(crate) fn error(&mut self, text: String) {
        self.status = Some(Status {
            level: Level::Error,
            text,
        });
    }

    fn send(&mut self, target: &str, request: Request) {
        let Some(worker) = self.workers.get(target) else {
            return;
        };
        if worker.try_send(request).is_err() {
            self.error(format!(
                "the worker for {target} is busy or gone; try again"
            ));
        }
    }

    /// Open the logs of the selected replica (`one`) or of the whole selected workload.
    fn open_logs(&mut self, one: bool) {
        let chosen = if one {
            self.selected_replica().map(|(w, id)| (w, vec![id]))
        } else {
            self.selected_workload().map(|w| {
                let ids = w.replicas.clone();
                (w, ids)
            })
        };
        let Some((workload, ids)) = chosen else {
            return;
        };
        let target = workload.id.target.clone();
        let replicas: Vec<(String, String)> = ids
            .iter()
            .filter_map(|id| self.store.replica(&target, id))
            .map(|r| (r.id.clone(), r.name.clone()))
            .collect();
        if replicas.is_empty() {
            self.error(format!(
                "{} has no replicas to show logs of",
                workload.id.name
            ));
            return;
        }
        self.close_logs();
        let stream = self.new_stream();
        let title = if one {
            replicas[0].1.clone()
        } else {
            let n = replicas.len();
            format!("{} ({n} {})", workload.id.name, plural(n, "replica"))
        };
        let colors = replicas
            .iter()
            .enumerate()
            .map(|(i, (_, name))| (name.clone(), self.theme.replica_color(i)))
            .collect();
        self.send(
            &target,
            Request::FollowLogs {
                stream,
                replicas: replicas.clone(),
                start: LogStart::Tail(self.config.logs.tail as u64),
            },
        );
        self.logs = Some(LogView::new(
            stream,
            title,
            target,
            replicas,
            LogBuffer::new(self.config.logs.max_lines, self.config.logs.max_bytes),
            colors,
        ));
        self.view = View::Logs;
    }

    /// `p`: what the selected replica's previous container printed before it ended (a
    /// crash-looping pod's last words); the worker says so when there is none.
    fn open_previous_logs(&mut self) {
        let Some((workload, id)) = self.selected_replica() else {
            return;
        };
        let target = workload.id.target.clone();
        let Some(name) = self.store.replica(&target, &id).map(|r| r.name.clone()) else {
            return;
        };
        self.close_logs();
        let stream = self.new_stream();
        let replica = (id, name.clone());
        self.send(
            &target,
            Request::PreviousLogs {
                stream,
                replica: replica.clone(),
            },
        );
        let colors = [(name.clone(), self.theme.replica_color(0))]
            .into_iter()
            .collect();
        self.logs = Some(LogView::new(
            stream,
            format!("{name} (previous container)"),
            target,
            vec![replica],
            LogBuffer::new(self.config.logs.max_lines, self.config.logs.max_bytes),
            colors,
        ));
        self.view = View::Logs;
    }

    pub(crate) fn close_logs(&mut self) {
        if let Some(view) = self.logs.take() {
            self.send(
                &view.target,
                Request::StopLogs {
                    stream: view.stream,
                },
            );
            if let Some(earlier) = view.earlier {
                self.send(
                    &view.target,
                    Request::StopLogs {
                        stream: earlier.stream,
                    },
                );
            }
        }
        self.view = View::Workloads;
    }

    fn new_stream(&mut self) -> u64 {
        self.next_stream += 1;
        self.next_stream
    }

    fn on_log_lines(&mut self, stream: u64, lines: Vec<LogRecord>) -> Change {
        let Some(view) = self.logs.as_mut() else {
            return Change::None;
        };
        if stream == view.stream {
            view.append(lines);
            return Change::Structure;
        }
        if let Some(earlier) = view.earlier.as_mut().filter(|e| e.stream == stream) {
            earlier.lines.extend(lines);
        }
        Change::None
    }

    fn on_logs_ended(&mut self, stream: u64, replica: String, reason: String) -> Change {
        let Some(view) = self.logs.as_mut() else {
            return Change::None;
        };
        if stream == view.stream {
            view.ended.push((replica, reason));
            return Change::Structure;
        }
        let is_earlier = view.earlier.as_ref().is_some_and(|e| e.stream == stream);
        if is_earlier {
            if let Some(added) = view.finish_earlier_part(&replica) {
                self.info(match added {
                    0 => "no earlier lines".to_string(),
                    n => format!("{n} earlier {}", plural(n, "line")),
                });
            }
            return Change::Structure;
        }
        Change::None
    }

    fn on_logs_action(&mut self, action: KeyAction) {
        let effect = {
            let Some(view) = self.logs.as_mut() else {
                return;
            };
            match action {
                KeyAction::Search => {
                    self.prompt = Prompt::Search(String::new());
                    return;
                }
                KeyAction::Filter => {
                    let current = view.filter.as_ref().map(|r| r.as_str().to_string());
                    self.prompt = Prompt::LogFilter(current.unwrap_or_default());
                    return;
                }
                other => view.on_action(other),
            }
        };
        match effect {
            LogEffect::None => {}
            LogEffect::FetchEarlier => self.fetch_earlier(),
            LogEffect::Refollow => self.refollow(),
        }
    }

    /// Start the open view again from the newest lines: a pause under a flood skipped lines, so
    /// what is held no longer joins up with what arrives.
    fn refollow(&mut self) {
        let stream = self.new_stream();
        let tail = self.config.logs.tail as u64;
        let Some(view) = self.logs.as_mut() else {
            return;
        };
        let old = std::mem::replace(&mut view.stream, stream);
        view.buffer.clear();
        view.filtered.clear();
        view.skipped = 0;
        view.ended.clear();
        let (target, replicas) = (view.target.clone(), view.replicas.clone());
        self.send(&target, Request::StopLogs { stream: old });
        self.send(
            &target,
            Request::FollowLogs {
                stream,
                replicas,
                start: LogStart::Tail(tail),
            },
        );
        self.info("following again from the newest lines".to_string());
    }

    /// Ask for the lines before the oldest one held, when the operator scrolls past the top.
    fn fetch_earlier(&mut self) {
        let stream = self.new_stream();
        let Some(view) = self.logs.as_mut() else {
            return;
        };
        let Some(oldest) = view
            .buffer
            .get(view.buffer.first_seq())
            .and_then(|r| r.timestamp)
        else {
            return;
        };
        if view.earlier.is_some() || view.buffer.dropped() > 0 {
            return;
        }
        view.earlier = Some(EarlierFetch {
            stream,
            pending: view.replicas.iter().map(|(_, name)| name.clone()).collect(),
            lines: Vec::new(),
        });
        let (target, replicas) = (view.target.clone(), view.replicas.clone());
        let count = self.config.logs.tail as u64;
        self.send(
            &target,
            Request::FollowLogs {
                stream,
                replicas,
                start: LogStart::Before(oldest, count),
            },
        );
        self.info("fetching earlier lines…".to_string());
    }
}

impl LogView {
    fn new(
        stream: u64,
        title: String,
        target: String,
        replicas: Vec<(String, String)>,
        buffer: LogBuffer,
        colors: HashMap<String, Color>,
    ) -> Self {
        LogView {
            stream,
            title,
            target,
            replicas,
            buffer,
            follow: true,
            wrap: false,
            timestamps: false,
            top: 0,
            hscroll: 0,
            search: None,
            filter: None,
            filtered: Vec::new(),
            colors,
            ended: Vec::new(),
            earlier: None,
            height: 20,
            width: 80,
            skipped: 0,
        }
    }

    /// Add followed lines; a view that is not following keeps its place.
    pub fn append(&mut self, lines: Vec<LogRecord>) {
        let first = self
            .buffer
            .last_seq()
            .map_or(self.buffer.first_seq(), |s| s + 1);
        if self.follow {
            self.buffer.extend(lines);
        } else {
            self.append_paused(lines);
        }
        if let Some(filter) = &self.filter {
            let last = self.buffer.last_seq().unwrap_or(0);
            for seq in first.max(self.buffer.first_seq())..=last {
                if self
                    .buffer
                    .get(seq)
                    .is_some_and(|r| filter.is_match(&r.line.text))
                {
                    self.filtered.push(seq);
                }
            }
            let floor = self.buffer.first_seq();
            self.filtered.retain(|s| *s >= floor);
        }
        self.top = self.top.max(self.buffer.first_seq());
    }

    /// While paused, keep lines only while they fit without evicting any: the lines on screen
    /// must not scroll away under a flood. The rest are counted, and following again starts
    /// afresh from the newest.
    fn append_paused(&mut self, lines: Vec<LogRecord>) {
        for record in lines {
            let cost = record.line.text.len() + crate::logbuf::RECORD_OVERHEAD;
            let full = self.skipped > 0
                || self.buffer.len() >= self.buffer.max_lines()
                || self.buffer.bytes() + cost > self.buffer.max_bytes();
            if full {
                self.skipped += 1;
            } else {
                self.buffer.push(record);
            }
        }
    }

    /// Rebuild the filtered list after the filter changed.
    pub fn refilter(&mut self) {
        self.filtered = match &self.filter {
            Some(f) => self.buffer.filtered(f),
            None => Vec::new(),
        };
    }

    /// How many lines are shown: all held, or those that pass the filter.
    fn shown_len(&self) -> usize {
        match self.filter {
            Some(_) => self.filtered.len(),
            None => self.buffer.len(),
        }
    }

    /// The sequence number of the `pos`th shown line.
    fn shown_seq(&self, pos: usize) -> Option<u64> {
        match self.filter {
            Some(_) => self.filtered.get(pos).copied(),
            None => (pos < self.buffer.len()).then(|| self.buffer.first_seq() + pos as u64),
        }
    }

    /// The position among shown lines of the first one at or after `seq`.
    fn shown_pos(&self, seq: u64) -> usize {
        match self.filter {
            Some(_) => self.filtered.partition_point(|s| *s < seq),
            None => (seq.saturating_sub(self.buffer.first_seq()) as usize).min(self.buffer.len()),
        }
    }

    /// The lines on screen for a viewport of `height` rows, as sequence numbers.
    pub fn window(&self, height: usize) -> Vec<u64> {
        let len = self.shown_len();
        let start = if self.follow {
            len.saturating_sub(height)
        } else {
            self.shown_pos(self.top)
        };
        (start..len.min(start + height))
            .filter_map(|pos| self.shown_seq(pos))
            .collect()
    }

    /// Apply a key of the logs view; returns what the app must do besides.
    fn on_action(&mut self, action: KeyAction) -> LogEffect {
        let page = self.height.max(1) as i64;
        let earlier = |wanted: bool| {
            if wanted {
                LogEffect::FetchEarlier
            } else {
                LogEffect::None
            }
        };
        match action {
            KeyAction::Follow => {
                self.follow = !self.follow;
                if !self.follow {
                    self.pin_top();
                } else if self.skipped > 0 {
                    return LogEffect::Refollow;
                }
            }
            KeyAction::Wrap => self.wrap = !self.wrap,
            KeyAction::Timestamps => self.timestamps = !self.timestamps,
            KeyAction::Up => return earlier(self.scroll(-1)),
            KeyAction::Down => return self.scroll_down(1),
            KeyAction::PageUp => return earlier(self.scroll(-page)),
            KeyAction::PageDown => return self.scroll_down(page),
            KeyAction::Top => {
                self.follow = false;
                self.top = 0;
                return LogEffect::FetchEarlier;
            }
            KeyAction::Bottom if self.skipped > 0 => {
                self.follow = true;
                return LogEffect::Refollow;
            }
            KeyAction::Bottom => self.follow = true,
            KeyAction::Left => self.hscroll = self.hscroll.saturating_sub(8),
            KeyAction::Right => self.hscroll += 8,
            KeyAction::NextMatch => self.jump_to_match(true),
            KeyAction::PrevMatch => self.jump_to_match(false),
            _ => {}
        }
        LogEffect::None
    }

    /// Scroll down; reaching the end follows again, from the newest lines if some were skipped.
    fn scroll_down(&mut self, by: i64) -> LogEffect {
        self.scroll(by);
        if self.follow && self.skipped > 0 {
            return LogEffect::Refollow;
        }
        LogEffect::None
    }

    /// Stop following and hold the lines currently at the bottom of the screen.
    fn pin_top(&mut self) {
        let start = self.shown_len().saturating_sub(self.height);
        self.top = self.shown_seq(start).unwrap_or(0);
    }

    /// Scroll by `by` lines; scrolling down to the end follows again. Returns whether the
    /// operator tried to go above the first line held (so earlier lines should be fetched).
    fn scroll(&mut self, by: i64) -> bool {
        if self.follow {
            self.pin_top();
            self.follow = false;
        }
        let at = self.shown_pos(self.top) as i64;
        let max = self.shown_len().saturating_sub(self.height) as i64;
        let next = (at + by).clamp(0, max.max(0));
        if next >= max && by > 0 {
            self.follow = true;
        }
        self.top = self.shown_seq(next as usize).unwrap_or(0);
        at + by < 0
    }

    /// Move to the next (or previous) line matching the search, and stop following.
    pub fn jump_to_match(&mut self, forward: bool) {
        let Some(re) = self.search.clone() else {
            return;
        };
        let from = if self.follow {
            self.buffer.last_seq().unwrap_or(0)
        } else {
            self.top
        };
        let found = if forward {
            self.buffer.find_next(&re, from.saturating_add(1))
        } else {
            self.buffer.find_prev(&re, from.saturating_sub(1))
        };
        if let Some(seq) = found.or_else(|| {
            // Wrap around once, as a pager does.
            if forward {
                self.buffer.find_next(&re, self.buffer.first_seq())
            } else {
                self.buffer
                    .find_prev(&re, self.buffer.last_seq().unwrap_or(0))
            }
        }) {
            self.follow = false;
            self.top = seq;
            self.reveal_match(&re, seq);
        }
    }

    /// Scroll sideways so the first hit on line `seq` is on screen (when not wrapping).
    fn reveal_match(&mut self, re: &Regex, seq: u64) {
        let (Some(entry), Some(hit)) = (
            self.buffer.get(seq),
            self.buffer.matches(re, seq).first().cloned(),
        ) else {
            return;
        };
        if self.wrap {
            return;
        }
        let column = crate::text::display_width(&entry.line.text[..hit.start]);
        let visible = self.width.saturating_sub(30).max(10);
        if column < self.hscroll || column >= self.hscroll + visible {
            self.hscroll = column.saturating_sub(10);
        }
    }

    /// One replica's earlier lines have all arrived; once every replica's have, prepend them
    /// in time order and return how many were added.
    fn finish_earlier_part(&mut self, replica: &str) -> Option<usize> {
        let earlier = self.earlier.as_mut()?;
        earlier.pending.retain(|r| r != replica);
        if !earlier.pending.is_empty() {
            return None;
        }
        let EarlierFetch { mut lines, .. } = self.earlier.take()?;
        lines.sort_by_key(|r| r.timestamp);
        let added = self.buffer.prepend(lines);
        if added > 0 {
            self.top = self.buffer.first_seq();
            self.refilter();
        }
        Some(added)
    }
}

/// `word` with an `s` unless `n` is one.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// A regex error in one line: the parser's own message draws a caret diagram over several.
pub fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text);
    last.trim().trim_start_matches("error: ").to_string()
}

fn compile_optional(text: &str) -> Result<Option<Regex>, regex::Error> {
    if text.is_empty() {
        return Ok(None);
    }
    Regex::new(text).map(Some)
}

/// Apply an editing key to a one-line input.
pub(crate) fn edit_input(input: &mut String, key: KeyEvent) {
    match key.code {
        KeyCode::Backspace => {
            input.pop();
        }
        KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => input.clear(),
        KeyCode::Char('w') if key.modifiers.contains(KeyModifiers::CONTROL) => {
            let trimmed = input.trim_end().len();
            let cut = input[..trimmed].rfind(' ').map_or(0, |i| i + 1);
            input.truncate(cut);
        }
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => input.push(c),
        _ => {}
    }
}

/// Move an index within `count` items by one keymap movement.
fn step(current: usize, count: usize, action: KeyAction, page: usize) -> usize {
    if count == 0 {
        return 0;
    }
    let last = count - 1;
    match action {
        KeyAction::Up => current.saturating_sub(1),
        KeyAction::Down => (current + 1).min(last),
        KeyAction::PageUp => current.saturating_sub(page),
        KeyAction::PageDown => (current + page).min(last),
        KeyAction::Top => 0,
        KeyAction::Bottom => last,
        _ => current,
    }
    .min(last)
}

/// Consoles for the ui's tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::actuator::AuditLog;

    /// A console over the one-group store, with no workers, auditing to `dir/audit.jsonl`.
    pub fn app(dir: &std::path::Path, read_only: bool) -> App {
        let (outcomes, _) = mpsc::unbounded_channel();
        let audit = AuditLog::new(dir.join("audit.jsonl"));
        let actuator = Actuator::new(read_only, audit, HashMap::new(), outcomes);
        App::new(
            Config::default(),
            Theme::dark(),
            Keymap::default_bindings(),
            crate::store::tests_support::one_group(),
            actuator,
            HashMap::new(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuator::AuditLog;
    use chrono::TimeZone;

    fn record(replica: &str, text: &str, secs: i64) -> LogRecord {
        LogRecord {
            replica: replica.to_string(),
            stderr: false,
            timestamp: Utc.timestamp_opt(1_700_000_000 + secs, 0).single(),
            line: crate::text::sanitize(text.as_bytes()),
        }
    }

    fn view(replicas: &[&str]) -> LogView {
        let mut v = LogView::new(
            1,
            "test".to_string(),
            "local".to_string(),
            replicas
                .iter()
                .map(|r| (format!("{r}-id"), r.to_string()))
                .collect(),
            LogBuffer::new(1000, 1 << 20),
            HashMap::new(),
        );
        v.height = 10;
        v
    }

    fn lines(v: &mut LogView, from: i64, to: i64) {
        v.append(
            (from..to)
                .map(|i| record("a", &format!("line {i}"), i))
                .collect(),
        );
    }

    fn texts(v: &LogView) -> Vec<String> {
        v.window(v.height)
            .iter()
            .filter_map(|s| v.buffer.get(*s).map(|r| r.line.text.clone()))
            .collect()
    }

    #[test]
    fn a_regex_error_is_said_in_one_line() {
        // Built at run time: a literal bad pattern is refused by the linter.
        let pattern = ["(unclosed", "["].concat();
        let err = Regex::new(&pattern).unwrap_err();
        assert_eq!(regex_error(&err), "unclosed character class");
    }

    #[test]
    fn following_shows_the_newest_lines_and_pausing_keeps_the_place() {
        let mut v = view(&["a"]);
        lines(&mut v, 0, 100);
        assert_eq!(texts(&v).first().map(String::as_str), Some("line 90"));
        v.on_action(KeyAction::Follow);
        lines(&mut v, 100, 150);
        let shown = texts(&v);
        assert_eq!(
            (shown[0].as_str(), shown[9].as_str()),
            ("line 90", "line 99")
        );
    }

    #[test]
    fn a_pause_keeps_its_lines_on_screen_while_a_flood_goes_on() {
        let mut v = view(&["a"]);
        v.buffer = LogBuffer::new(100, 1 << 20);
        lines(&mut v, 0, 100);
        v.on_action(KeyAction::Follow);
        let before = texts(&v);
        lines(&mut v, 100, 10_000);
        assert_eq!(
            texts(&v),
            before,
            "nothing scrolls away under the paused view"
        );
        assert_eq!(v.skipped, 9_900);
        assert_eq!(v.on_action(KeyAction::Follow), LogEffect::Refollow);
    }

    #[test]
    fn a_search_hit_far_to_the_right_is_scrolled_into_view() {
        let mut v = view(&["a"]);
        v.width = 80;
        let long = format!("{}needle", "x".repeat(500));
        v.append(vec![record("a", "short", 0), record("a", &long, 1)]);
        v.search = Regex::new("needle").ok();
        v.jump_to_match(true);
        assert_eq!(v.hscroll, 490);
    }

    #[test]
    fn scrolling_down_to_the_end_follows_again() {
        let mut v = view(&["a"]);
        lines(&mut v, 0, 50);
        v.on_action(KeyAction::PageUp);
        assert!(!v.follow);
        assert_eq!(texts(&v)[0], "line 30");
        v.on_action(KeyAction::PageDown);
        assert!(v.follow);
        lines(&mut v, 50, 60);
        assert_eq!(texts(&v)[9], "line 59");
    }

    #[test]
    fn scrolling_above_the_first_line_asks_for_earlier_lines() {
        let mut v = view(&["a"]);
        lines(&mut v, 0, 30);
        assert_eq!(
            v.on_action(KeyAction::PageUp),
            LogEffect::None,
            "line 10 is above"
        );
        assert_eq!(v.on_action(KeyAction::PageUp), LogEffect::None);
        assert_eq!(
            v.on_action(KeyAction::Up),
            LogEffect::FetchEarlier,
            "above line 0"
        );
        assert_eq!(texts(&v)[0], "line 0");
    }

    #[test]
    fn search_jumps_to_the_next_match_and_wraps_around() {
        let mut v = view(&["a"]);
        lines(&mut v, 0, 40);
        v.search = Regex::new(r"line (5|25)$").ok();
        v.jump_to_match(true);
        assert_eq!(
            texts(&v)[0],
            "line 5",
            "from the end, the search wraps to the first match"
        );
        v.jump_to_match(true);
        assert_eq!(texts(&v)[0], "line 25");
        v.jump_to_match(false);
        assert_eq!(texts(&v)[0], "line 5");
    }

    #[test]
    fn the_filter_shows_only_matching_lines_including_new_ones() {
        let mut v = view(&["a"]);
        lines(&mut v, 0, 30);
        v.filter = Regex::new(r"line \d*7$").ok();
        v.refilter();
        assert_eq!(texts(&v), ["line 7", "line 17", "line 27"]);
        lines(&mut v, 30, 40);
        assert_eq!(texts(&v), ["line 7", "line 17", "line 27", "line 37"]);
    }

    #[test]
    fn earlier_lines_of_every_replica_are_prepended_in_time_order_once_all_arrived() {
        let mut v = view(&["a", "b"]);
        v.append(vec![record("a", "now a", 100), record("b", "now b", 101)]);
        v.earlier = Some(EarlierFetch {
            stream: 9,
            pending: vec!["a".to_string(), "b".to_string()],
            lines: vec![record("a", "old a", 5), record("b", "old b", 3)],
        });
        assert_eq!(v.finish_earlier_part("a"), None, "b has not finished yet");
        assert_eq!(v.buffer.len(), 2);
        assert_eq!(v.finish_earlier_part("b"), Some(2));
        v.follow = false;
        v.top = v.buffer.first_seq();
        assert_eq!(texts(&v), ["old b", "old a", "now a", "now b"]);
        assert!(v.earlier.is_none());
    }

    fn app_with_worker() -> (App, mpsc::Receiver<Request>) {
        let store = crate::store::tests_support::one_group();
        let (tx, rx) = mpsc::channel(16);
        let workers = HashMap::from([("local".to_string(), tx)]);
        let (otx, _) = mpsc::unbounded_channel();
        let audit = AuditLog::new(std::env::temp_dir().join("pilothouse-app-test-audit.jsonl"));
        let actuator = Actuator::new(false, audit, workers.clone(), otx);
        let app = App::new(
            Config::default(),
            Theme::dark(),
            Keymap::default_bindings(),
            store,
            actuator,
            workers,
        );
        (app, rx)
    }

    #[test]
    fn opening_logs_follows_the_tail_and_going_back_stops_the_stream() {
        let (mut app, mut rx) = app_with_worker();
        app.on_action(KeyAction::Logs);
        let stream = match rx.try_recv() {
            Ok(Request::FollowLogs {
                stream,
                replicas,
                start,
            }) => {
                assert_eq!(replicas, vec![("c1".to_string(), "g-1".to_string())]);
                assert_eq!(start, LogStart::Tail(200));
                stream
            }
            other => panic!("expected FollowLogs, got {other:?}"),
        };
        assert_eq!(app.view, View::Logs);
        app.on_action(KeyAction::Back);
        assert!(matches!(rx.try_recv(), Ok(Request::StopLogs { stream: s }) if s == stream));
        assert_eq!(app.view, View::Workloads);
    }

    #[test]
    fn scrolling_past_the_top_fetches_the_lines_before_the_oldest_held() {
        let (mut app, mut rx) = app_with_worker();
        app.on_action(KeyAction::Logs);
        let _ = rx.try_recv();
        let stream = app.logs.as_ref().map(|v| v.stream).unwrap_or_default();
        app.on_update(Update::Logs {
            stream,
            lines: (10..15)
                .map(|i| record("g-1", &format!("line {i}"), i))
                .collect(),
        });
        app.on_action(KeyAction::Top);
        match rx.try_recv() {
            Ok(Request::FollowLogs {
                start: LogStart::Before(t, 200),
                ..
            }) => assert_eq!(Some(t), Utc.timestamp_opt(1_700_000_010, 0).single()),
            other => panic!("expected a fetch of earlier lines, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_scale_prompt_takes_only_digits_and_sends_a_scale_up_without_asking() {
        let (mut app, mut rx) = app_with_worker();
        app.on_action(KeyAction::Scale);
        for c in ['a', '3', 'x'] {
            app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        assert!(
            matches!(&app.prompt, Prompt::Scale { input, .. } if input == "3"),
            "letters are not typed into the count"
        );
        app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        assert_eq!(app.prompt, Prompt::None, "scaling 1 to 3 asks nothing");
        match rx.recv().await {
            Some(Request::Scale {
                workload, replicas, ..
            }) => assert_eq!((workload.name.as_str(), replicas), ("g", 3)),
            other => panic!("expected a scale request, got {other:?}"),
        }
    }
}
