//! The console's side of the autoscaler: the autoscaler view's keys, pausing and resuming a
//! rule (an action, so through the actuator), the rule editor's life (open, save, apply to the
//! running loop, close) and the previews it asks for.
//!
//! Not for drawing (see [`super::autoscaler`] and [`super::editor`]) or for running rules (the
//! engine does, behind [`Link`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crossterm::event::KeyEvent;
use tokio::sync::{mpsc, oneshot};

use crate::actuator::{ActionKind, ActionRequest};
use crate::autoscaler::{Command, DecisionRecord, RuleState, RuleStatus, Status};
use crate::model::{WorkloadId, WorkloadKind};
use crate::rules::Rule;
use crate::store::{Change, Workload};

use super::app::{App, View};
use super::editor::{Editor, EditorEffect};

/// The running autoscaler, as the console speaks to it.
#[derive(Debug, Clone)]
pub struct Link {
    /// Commands to the engine.
    pub commands: mpsc::UnboundedSender<Command>,
    /// Where previews come back, with the number they were asked under.
    pub previews: mpsc::UnboundedSender<(u64, Vec<DecisionRecord>)>,
}

/// Where rules live and the autoscaler behind them.
#[derive(Debug, Clone, Default)]
pub struct AutoscalerLink {
    /// `None` until the console knows its paths (tests of other views).
    pub rules_dir: Option<PathBuf>,
    /// `None` when the autoscaler is off (`[autoscaler] enabled = false`).
    pub link: Option<Link>,
    /// The number of the newest preview asked for; older answers are dropped.
    pub preview_number: u64,
}

impl App {
    /// Take the autoscaler's newest status.
    pub fn on_rules(&mut self, status: Arc<Status>) -> Change {
        // One pass over the rules and one over the workloads: rules by the name they give
        // their workload, each confirmed with the rule's own match.
        let by_name: HashMap<(&str, String), &RuleStatus> = status
            .rules
            .iter()
            .map(|r| {
                let target = &r.rule.target;
                ((target.target_name(), target.workload_name()), r)
            })
            .collect();
        let names = self
            .store
            .workloads()
            .iter()
            .filter_map(|w| {
                let rule = by_name.get(&(w.id.target.as_str(), w.id.name.clone()))?;
                rule.rule
                    .target
                    .matches(&w.id)
                    .then(|| (w.id.clone(), rule.name.clone()))
            })
            .collect();
        self.table.set_rule_names(names);
        self.rules = status;
        self.rules_selected = self
            .rules_selected
            .min(self.rules.rules.len().saturating_sub(1));
        Change::Structure
    }

    /// A preview the editor asked for came back; one that a newer edit overtook is dropped.
    pub fn on_preview(&mut self, number: u64, records: &[DecisionRecord]) {
        if number != self.autoscaler.preview_number {
            return;
        }
        if let Some(editor) = self.editor.as_mut() {
            editor.set_preview(preview_lines(records));
        }
    }

    /// `a`: open the autoscaler view, or go back from it.
    pub(crate) fn toggle_autoscaler(&mut self) {
        match self.view {
            View::Autoscaler => self.view = self.return_to,
            View::Editor => {}
            View::Logs => {
                self.close_logs();
                self.return_to = View::Workloads;
                self.view = View::Autoscaler;
            }
            View::Workloads | View::Rollouts => {
                self.return_to = View::Workloads;
                self.view = View::Autoscaler;
            }
        }
        if self.autoscaler.link.is_none() && self.view == View::Autoscaler {
            self.info(
                "the autoscaler is off in this console ([autoscaler] enabled = false in \
                 config.toml); rules can still be edited"
                    .to_string(),
            );
        }
    }

    pub(crate) fn on_autoscaler_action(&mut self, action: crate::keymap::KeyAction) {
        use crate::keymap::KeyAction as A;
        let count = self.rules.rules.len();
        let last = count.saturating_sub(1);
        self.rules_selected = match action {
            A::Up => self.rules_selected.saturating_sub(1),
            A::Down => (self.rules_selected + 1).min(last),
            A::PageUp => self.rules_selected.saturating_sub(10),
            A::PageDown => (self.rules_selected + 10).min(last),
            A::Top => 0,
            A::Bottom => last,
            _ => self.rules_selected,
        };
        let selected = self.rules.rules.get(self.rules_selected).cloned();
        match action {
            A::EditRule | A::Open => match selected {
                Some(rule) => self.open_editor(rule.file.clone(), None),
                None => self.info("no rule selected: press e on a workload to write one".into()),
            },
            A::PauseRule => match selected {
                Some(rule) => self.toggle_pause(&rule.name, &rule.rule, &rule.state),
                None => self.info("no rule selected".to_string()),
            },
            _ => {}
        }
    }

    /// `e` on a workload: edit the rule that scales it, or start a new one for it.
    pub(crate) fn edit_rule_of_selection(&mut self) {
        let Some(workload) = self.selected_workload() else {
            self.info("no workload selected".to_string());
            return;
        };
        if let Some(rule) = self.rules.rule_for(&workload.id) {
            let file = rule.file.clone();
            self.open_editor(file, None);
            return;
        }
        let Some(dir) = self.autoscaler.rules_dir.clone() else {
            self.error("no rules directory is known to this console".to_string());
            return;
        };
        match new_rule(&workload) {
            Ok((stem, text)) => self.open_editor(dir.join(format!("{stem}.yaml")), Some(text)),
            Err(why) => self.error(why),
        }
    }

    /// `P` on a workload: pause or resume the rule that scales it.
    pub(crate) fn pause_rule_of_selection(&mut self) {
        let Some(workload) = self.selected_workload() else {
            self.info("no workload selected".to_string());
            return;
        };
        match self.rules.rule_for(&workload.id).cloned() {
            Some(rule) => self.toggle_pause(&rule.name, &rule.rule, &rule.state),
            None => self.info(format!(
                "no rule scales {}; press e to write one",
                workload.id.name
            )),
        }
    }

    /// Pause or resume: an action (read-only mode refuses it, the audit log records it), then
    /// the engine is told.
    fn toggle_pause(&mut self, name: &str, rule: &Rule, state: &RuleState) {
        let Some(link) = self.autoscaler.link.clone() else {
            self.error("the autoscaler is off in this console".to_string());
            return;
        };
        let pausing = *state != RuleState::Paused;
        let kind = if pausing {
            ActionKind::PauseRule {
                rule: name.to_string(),
            }
        } else {
            ActionKind::ResumeRule {
                rule: name.to_string(),
            }
        };
        let request = ActionRequest {
            workload: rule_workload(rule),
            kind,
            origin: "operator",
            confirmed: true,
            reason: None,
        };
        if let Err(refusal) = self.actuator.record_rule_action(&request) {
            self.error(refusal.to_string());
            return;
        }
        let command = if pausing {
            Command::Pause(name.to_string())
        } else {
            Command::Resume(name.to_string())
        };
        if link.commands.send(command).is_err() {
            self.error("the autoscaler has stopped".to_string());
            return;
        }
        let word = if pausing { "paused" } else { "resumed" };
        match state {
            RuleState::Standby { holder } => self.info(format!(
                "rule {name} {word} in this console only: {holder} holds the host and runs its \
                 own rules (pause it there)"
            )),
            _ => self.info(format!("rule {name} {word}")),
        }
    }

    fn open_editor(&mut self, path: PathBuf, template: Option<String>) {
        let fallback = template.unwrap_or_default();
        match Editor::open_file(path, move || fallback) {
            Ok(mut editor) => {
                if self.view != View::Editor {
                    self.editor_return = if self.view == View::Autoscaler {
                        View::Autoscaler
                    } else {
                        View::Workloads
                    };
                }
                if self.actuator.read_only() {
                    editor.set_read_only(
                        "read-only mode: rules can be read and checked here, not saved",
                    );
                }
                self.editor = Some(editor);
                self.view = View::Editor;
                self.ask_preview();
            }
            Err(why) => self.error(why),
        }
    }

    /// Every key while the editor is open goes to it; what it did is acted on here.
    pub(crate) fn on_editor_key(&mut self, key: KeyEvent) {
        let Some(editor) = self.editor.as_mut() else {
            self.view = View::Workloads;
            return;
        };
        let effect = editor.on_key(key);
        let closed = editor.is_closed() || effect == EditorEffect::Closed;
        match effect {
            EditorEffect::Saved { path, rules } => self.apply_saved(path, rules),
            EditorEffect::DraftSaved { path } => self.info(format!(
                "draft saved to {}; the running rule is unchanged until the rule is valid",
                path.display()
            )),
            EditorEffect::None | EditorEffect::Changed | EditorEffect::Closed => {}
        }
        if closed {
            self.editor = None;
            self.view = self.editor_return;
            return;
        }
        self.ask_preview();
    }

    fn apply_saved(&mut self, path: PathBuf, rules: Vec<Rule>) {
        let count = rules.len();
        let names: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
        let audit = ActionRequest {
            workload: rules.first().map_or_else(
                || WorkloadId {
                    target: String::new(),
                    kind: WorkloadKind::Group,
                    name: String::new(),
                },
                rule_workload,
            ),
            kind: ActionKind::SaveRules {
                file: path.display().to_string(),
                rules: names.clone(),
            },
            origin: "operator",
            confirmed: true,
            reason: None,
        };
        // The file is written already (the editor refuses to save in read-only mode).
        let _ = self.actuator.record_rule_action(&audit);
        if let Some(clash) = self.clash_elsewhere(&path, &rules) {
            let text = format!("saved {}, but {clash}", path.display());
            if let Some(editor) = self.editor.as_mut() {
                editor.set_message(text.clone(), true);
            }
            self.error(text);
        }
        let text = match &self.autoscaler.link {
            Some(link) => {
                let command = Command::ReplaceFile {
                    file: path.clone(),
                    rules,
                };
                if link.commands.send(command).is_ok() {
                    format!(
                        "saved {}; the autoscaler now runs {} ({count} rule(s))",
                        path.display(),
                        names.join(", ")
                    )
                } else {
                    format!("saved {}; the autoscaler has stopped", path.display())
                }
            }
            None => format!(
                "saved {}; the autoscaler is off in this console, so it runs where a daemon \
                 reads this directory",
                path.display()
            ),
        };
        tracing::info!(file = %path.display(), rules = %names.join(","), "rule file saved");
        if let Some(editor) = self.editor.as_mut() {
            editor.set_message(text.clone(), false);
        }
        self.info(text);
    }

    /// What keeps one of `rules` (saved to `path`) from running: a name or a workload that a
    /// rule of another file already has.
    fn clash_elsewhere(&self, path: &std::path::Path, rules: &[Rule]) -> Option<String> {
        let others: Vec<_> = self.rules.rules.iter().filter(|r| r.file != path).collect();
        for rule in rules {
            for other in &others {
                if other.name == rule.name {
                    return Some(format!(
                        "rule {} is already defined in {}, so this one does not run",
                        rule.name,
                        other.file.display()
                    ));
                }
                if other.rule.target == rule.target {
                    return Some(format!(
                        "rule {} in {} already scales {}, so rule {} does not run",
                        other.name,
                        other.file.display(),
                        rule.target,
                        rule.name
                    ));
                }
            }
        }
        None
    }

    /// Ask the engine what the editor's rules would decide now, if the editor wants that.
    fn ask_preview(&mut self) {
        let Some(rules) = self.editor.as_mut().and_then(Editor::wants_preview) else {
            return;
        };
        let Some(link) = self.autoscaler.link.clone() else {
            if let Some(editor) = self.editor.as_mut() {
                editor.set_preview(vec!["no preview: the autoscaler is off".to_string()]);
            }
            return;
        };
        self.autoscaler.preview_number += 1;
        let number = self.autoscaler.preview_number;
        let (reply, answer) = oneshot::channel();
        if link
            .commands
            .send(Command::Preview { rules, reply })
            .is_err()
        {
            return;
        }
        tokio::spawn(async move {
            if let Ok(records) = answer.await {
                let _ = link.previews.send((number, records));
            }
        });
    }
}

/// The workload a rule names, as the audit log records it.
fn rule_workload(rule: &Rule) -> WorkloadId {
    match &rule.target {
        crate::rules::RuleTarget::Docker { host, workload } => WorkloadId {
            target: host.clone(),
            kind: match workload {
                crate::rules::DockerWorkload::Compose { .. } => WorkloadKind::Compose,
                crate::rules::DockerWorkload::Named(_) => WorkloadKind::Group,
            },
            name: workload.to_string(),
        },
        other => WorkloadId {
            target: String::new(),
            kind: WorkloadKind::Group,
            name: other.to_string(),
        },
    }
}

/// A starting rule for `workload`: the file stem and the text. A lone container has no name a
/// rule can scale by, so it gets an error saying how to give it one.
pub fn new_rule(workload: &Workload) -> Result<(String, String), String> {
    if workload.id.kind == WorkloadKind::Container {
        return Err(format!(
            "{} is a lone container: a rule scales a Compose service, a Swarm service or a \
             group (start its containers with the label pilothouse.group=NAME)",
            workload.id.name
        ));
    }
    let stem: String = workload
        .id
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let current = workload.desired.max(1);
    let text = format!(
        "# A scaling rule for {name} on {target}. Ctrl-S saves and applies it; Esc leaves.\n\
         name: {stem}\n\
         target: {{ platform: docker, host: {target}, workload: {name} }}\n\
         minReplicas: 1\n\
         maxReplicas: {max}\n\
         pollingInterval: 15s\n\
         metrics:\n\
         \x20 - name: cpu\n\
         \x20   cpu: {{ utilization: 70 }}\n\
         # A Prometheus metric instead (or as well):\n\
         # - name: rps\n\
         #   prometheus:\n\
         #     query: sum(rate(http_requests_total[1m]))\n\
         #     type: AverageValue\n\
         #     target: 100\n",
        name = workload.id.name,
        target = workload.id.target,
        max = (current * 4).max(4),
    );
    Ok((stem, text))
}

/// What a preview says, a few lines per rule.
pub fn preview_lines(records: &[DecisionRecord]) -> Vec<String> {
    let mut lines = Vec::new();
    for record in records {
        let head = match (record.current, record.desired) {
            (Some(current), Some(desired)) if current == desired => {
                format!("now: hold at {current}")
            }
            (Some(current), Some(desired)) => format!("now: {current} → {desired}"),
            _ => "now: nothing to decide".to_string(),
        };
        lines.push(head);
        // The reason usually quotes each metric's explanation; one it does not is shown too.
        for recommendation in &record.recommendations {
            if !record.reason.contains(&recommendation.explanation) {
                lines.push(format!("  {}", recommendation.explanation));
            }
        }
        if !record.reason.is_empty() {
            lines.push(format!("  {}", record.reason));
        }
    }
    lines
}

#[cfg(test)]
mod tests {

    use crossterm::event::{KeyCode, KeyModifiers};

    use super::*;
    use crate::autoscaler::RuleStatus;

    const RULE: &str = "name: g\n\
                        target: { platform: docker, host: local, workload: g }\n\
                        maxReplicas: 3\n\
                        metrics:\n\
                        \x20 - name: cpu\n\
                        \x20   cpu: { utilization: 50 }\n";

    /// A console over one group `g`, read-only or not, with the rules directory `dir` and the
    /// audit log in it; `commands` sees what the console tells the autoscaler.
    fn app(dir: &std::path::Path, read_only: bool) -> (App, mpsc::UnboundedReceiver<Command>) {
        let mut app = crate::ui::app::tests_support::app(dir, read_only);
        let (commands, seen) = mpsc::unbounded_channel();
        let (previews, _) = mpsc::unbounded_channel();
        app.attach_autoscaler(dir.to_path_buf(), Some(Link { commands, previews }));
        (app, seen)
    }

    fn with_rule(app: &mut App, dir: &std::path::Path, state: RuleState) {
        let file = dir.join("g.yaml");
        std::fs::write(&file, RULE).unwrap();
        let rule = crate::rules::parse_rules(&file, RULE).unwrap().remove(0);
        let status = Status {
            rules: vec![RuleStatus::new(file, Arc::new(rule), state)],
            load_errors: Vec::new(),
            metric_servers: Vec::new(),
        };
        app.on_rules(Arc::new(status));
    }

    fn press(app: &mut App, code: KeyCode) {
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
    }

    #[tokio::test]
    async fn leaving_the_editor_opened_from_the_autoscaler_view_goes_back_there_and_then_out() {
        let dir = tempfile::tempdir().unwrap();
        let (mut app, _commands) = app(dir.path(), false);
        with_rule(&mut app, dir.path(), RuleState::Active);

        press(&mut app, KeyCode::Char('a'));
        assert_eq!(app.view, View::Autoscaler);
        press(&mut app, KeyCode::Char('e'));
        assert_eq!(app.view, View::Editor);
        press(&mut app, KeyCode::Esc);
        assert_eq!(
            app.view,
            View::Autoscaler,
            "the editor returns where it was opened"
        );
        press(&mut app, KeyCode::Esc);
        assert_eq!(
            app.view,
            View::Workloads,
            "and the autoscaler view back to the table"
        );
    }

    #[tokio::test]
    async fn pausing_a_rule_on_standby_says_the_holder_still_runs_its_rules() {
        let dir = tempfile::tempdir().unwrap();
        let (mut app, mut commands) = app(dir.path(), false);
        let holder = "daemon pid 9 (root@box) since now".to_string();
        with_rule(&mut app, dir.path(), RuleState::Standby { holder });

        press(&mut app, KeyCode::Char('P'));

        assert!(matches!(commands.try_recv(), Ok(Command::Pause(name)) if name == "g"));
        let said = app
            .status
            .as_ref()
            .map(|s| s.text.clone())
            .unwrap_or_default();
        assert!(
            said.contains("in this console only: daemon pid 9"),
            "{said}"
        );
    }

    #[tokio::test]
    async fn a_read_only_console_edits_but_never_saves_a_rule() {
        let dir = tempfile::tempdir().unwrap();
        let (mut app, mut commands) = app(dir.path(), true);
        with_rule(&mut app, dir.path(), RuleState::Active);
        press(&mut app, KeyCode::Char('e'));
        press(&mut app, KeyCode::Char('#'));

        app.on_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL));

        assert_eq!(
            std::fs::read_to_string(dir.path().join("g.yaml")).unwrap(),
            RULE
        );
        assert!(!dir.path().join("g.yaml.draft").exists());
        assert!(
            !matches!(commands.try_recv(), Ok(Command::ReplaceFile { .. })),
            "nothing is applied"
        );
    }

    #[tokio::test]
    async fn a_saved_rule_is_audited_and_applied() {
        let dir = tempfile::tempdir().unwrap();
        let (mut app, mut commands) = app(dir.path(), false);
        with_rule(&mut app, dir.path(), RuleState::Active);
        press(&mut app, KeyCode::Char('e'));
        // A comment at the end of the first line: still the same, valid rule.
        press(&mut app, KeyCode::End);
        for c in " # ok".chars() {
            press(&mut app, KeyCode::Char(c));
        }

        app.on_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL));

        let mut applied = false;
        while let Ok(command) = commands.try_recv() {
            applied |= matches!(command, Command::ReplaceFile { .. });
        }
        assert!(applied, "the saved file is applied");
        let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert!(audit.contains(r#""action":"saverules""#), "{audit}");
        assert!(audit.contains(r#""rules":["g"]"#), "{audit}");
    }
}
