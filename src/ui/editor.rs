//! The rule editor: one `rules/*.yaml` file in a text area, checked as it is typed, saved
//! atomically, with a preview of the decision the rule would make now.
//!
//! [`Editor`] is a state machine the app hosts: it takes keys ([`Editor::on_key`]) and tells the
//! app what happened ([`EditorEffect`]); it draws itself ([`Editor::render`]). A text that
//! validates is saved to the rule file and handed back as rules for the app to apply to the
//! running loop; a text that does not is saved only as a draft (`<file>.draft`, which the loader
//! never reads), so an invalid rule never replaces the running one. Leaving with unsaved changes
//! asks first.
//!
//! Not for applying rules, reading metrics or computing the preview: the app asks the engine
//! ([`Editor::wants_preview`]) and hands the lines back ([`Editor::set_preview`]). Not a YAML
//! parser either: the colouring is a one-line scanner (keys, values, comments, punctuation) that
//! only styles text; what the text means is decided by [`crate::rules::parse_rules`] alone.
//!
//! The text is drawn by this module, not by tui-textarea's widget, which has no syntax
//! colouring: the text area keeps the lines, the cursor, the selection and the undo history, and
//! this module draws the visible lines from them, keeping its own scroll position.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use tui_textarea::{CursorMove, TextArea};

use crate::config::ConfigError;
use crate::fsutil;
use crate::rules::{self, Rule};
use crate::text::{self, SafeLine};
use crate::theme::Theme;

/// Texts longer than this (in bytes) are not validated, so they can be saved only as a draft.
pub const MAX_VALIDATED_BYTES: usize = 256 * 1024;

/// Files longer than this (in bytes) are not opened at all: no rule file is anywhere near it.
pub const MAX_OPEN_BYTES: u64 = 4 * 1024 * 1024;

/// What Tab inserts: YAML forbids tabs in indentation.
const INDENT: &str = "  ";

/// Preview lines kept; the app's are cut here so a runaway preview cannot grow without bound.
const MAX_PREVIEW_LINES: usize = 100;

/// Undo steps kept by the text area.
const MAX_UNDO: usize = 1000;

/// The question asked when leaving with unsaved changes.
const LEAVE_QUESTION: &str = "unsaved changes: s save, d discard, Esc keep editing";

/// Width from which the check panel sits beside the text instead of below it.
const SIDE_PANEL_MIN_WIDTH: u16 = 120;

/// One problem in the text, where the rule file check found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditorError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, without the position.
    pub message: String,
}

/// What a key did, for the app to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum EditorEffect {
    /// Nothing the app needs to know (a cursor move, a question asked or answered).
    None,
    /// The text changed and was validated again; [`Editor::wants_preview`] may have rules.
    Changed,
    /// The text was valid and was written atomically to `path`, and any draft was removed:
    /// apply `rules` to the running loop. When [`Editor::is_closed`] is true the user also left.
    Saved {
        /// The rule file written.
        path: PathBuf,
        /// The rules the file now holds.
        rules: Vec<Rule>,
    },
    /// The text was invalid and was written to the draft `path`; the rule file and the running
    /// rule are untouched. When [`Editor::is_closed`] is true the user also left.
    DraftSaved {
        /// The draft written (`<rule file>.draft`).
        path: PathBuf,
    },
    /// The user left the editor: it was clean, or they chose to discard the unsaved changes.
    Closed,
}

/// Where the text the editor compares against (to know whether it is dirty) lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Baseline {
    /// The rule file.
    File,
    /// The draft next to it: the rule file holds something else.
    Draft,
    /// Nowhere yet: the file does not exist.
    New,
}

/// How a status message is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Info,
    Success,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    text: String,
    tone: Tone,
}

/// The rule editor for one file; see the module docs.
#[derive(Debug)]
pub struct Editor {
    path: PathBuf,
    textarea: TextArea<'static>,
    /// `\r\n` when the file was opened with CRLF line ends, so saving keeps them.
    line_ending: &'static str,
    /// The text as it would be saved.
    text: String,
    /// The text last read or written, and where.
    baseline: String,
    baseline_at: Baseline,
    errors: Vec<EditorError>,
    rules: Option<Vec<Rule>>,
    preview: Vec<String>,
    preview_wanted: bool,
    message: Option<Message>,
    confirm_leave: bool,
    closed: bool,
    /// First line shown, and first column (in screen columns) shown of every line.
    top: usize,
    left: usize,
    /// Lines the text showed at the last draw, for PageUp and PageDown.
    page: usize,
    /// Why saving is refused (the console runs read-only), if it is.
    read_only: Option<String>,
}

impl Editor {
    /// An editor on `text`, which is taken as what `path` holds (not dirty until it changes).
    pub fn open(path: PathBuf, text: String) -> Editor {
        let line_ending = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let lines: Vec<String> = text
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line).to_owned())
            .collect();
        let mut textarea = TextArea::new(lines);
        textarea.set_max_histories(MAX_UNDO);
        let mut editor = Editor {
            path,
            textarea,
            line_ending,
            text: String::new(),
            baseline: String::new(),
            baseline_at: Baseline::File,
            errors: Vec::new(),
            rules: None,
            preview: Vec::new(),
            preview_wanted: false,
            message: None,
            confirm_leave: false,
            closed: false,
            top: 0,
            left: 0,
            page: 10,
            read_only: None,
        };
        editor.refresh();
        // Mixed line ends are made uniform here, so the baseline is the text as it would be saved.
        editor.baseline = editor.text.clone();
        editor
    }

    /// An editor on the file at `path`, on `template()` when it does not exist, or on its draft
    /// when `<path>.draft` is newer than the file (which the status line then says).
    ///
    /// The error names the file and says why it cannot be read.
    pub fn open_file(path: PathBuf, template: impl FnOnce() -> String) -> Result<Editor, String> {
        let draft_path = draft_path(&path);
        let file = read_if_exists(&path)?;
        let draft = read_if_exists(&draft_path)?;
        let draft_is_newer = draft.as_ref().is_some_and(|draft| match &file {
            None => true,
            Some(file) => matches!((draft.modified, file.modified), (Some(d), Some(f)) if d > f),
        });

        let editor = match (file, draft) {
            (_, Some(draft)) if draft_is_newer => open_draft(path, &draft_path, draft.text),
            (Some(file), draft) => {
                let mut editor = Editor::open(path, file.text);
                if draft.is_some() {
                    editor.say(
                        Tone::Info,
                        format!(
                            "an older draft {} exists; it was not opened",
                            file_name(&draft_path)
                        ),
                    );
                }
                editor
            }
            (None, _) => {
                let mut editor = Editor::open(path, template());
                editor.baseline_at = Baseline::New;
                editor
            }
        };
        Ok(editor)
    }

    /// Handle one key: Ctrl-S saves, Esc leaves (asking first when there are unsaved changes),
    /// Tab inserts two spaces, Ctrl-Z / Ctrl-Y undo and redo, the rest edits the text.
    pub fn on_key(&mut self, key: KeyEvent) -> EditorEffect {
        if key.kind == KeyEventKind::Release || self.closed {
            return EditorEffect::None;
        }
        if self.confirm_leave {
            return self.answer_leave(key);
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let shift = key.modifiers.contains(KeyModifiers::SHIFT);
        match key.code {
            KeyCode::Char('s' | 'S') if ctrl => self.save(),
            KeyCode::Esc => self.leave(),
            KeyCode::Char('z' | 'Z') if ctrl => {
                let modified = self.textarea.undo();
                self.after_edit(modified)
            }
            KeyCode::Char('y' | 'Y') if ctrl => {
                let modified = self.textarea.redo();
                self.after_edit(modified)
            }
            KeyCode::Tab if key.modifiers.is_empty() => {
                let modified = self.textarea.insert_str(INDENT);
                self.after_edit(modified)
            }
            KeyCode::PageDown => {
                self.move_page(CursorMove::Down, shift);
                EditorEffect::None
            }
            KeyCode::PageUp => {
                self.move_page(CursorMove::Up, shift);
                EditorEffect::None
            }
            _ => {
                let modified = self.textarea.input(key);
                self.after_edit(modified)
            }
        }
    }

    /// The problems in the current text, in line order; empty when it is valid.
    pub fn errors(&self) -> &[EditorError] {
        &self.errors
    }

    /// The rules the current text holds, when it is valid.
    pub fn rules(&self) -> Option<&[Rule]> {
        self.rules.as_deref()
    }

    /// The current text, as Ctrl-S would write it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The lines describing the decision the current rules would make now, from the app.
    ///
    /// Lines are shown only while the text is valid, and are cleared by the next change.
    pub fn set_preview(&mut self, lines: Vec<String>) {
        self.preview = lines;
        self.preview.truncate(MAX_PREVIEW_LINES);
    }

    /// The rules to compute a preview for: once after opening or after each change that left
    /// the text valid, then `None` until the next such change.
    pub fn wants_preview(&mut self) -> Option<Vec<Rule>> {
        if !self.preview_wanted {
            return None;
        }
        self.preview_wanted = false;
        self.rules.clone()
    }

    /// Refuse to save, saying `why` (the console runs read-only): the text can still be read,
    /// changed and checked, but neither the file nor a draft is written.
    pub fn set_read_only(&mut self, why: impl Into<String>) {
        let why = why.into();
        self.say(Tone::Warning, why.clone());
        self.read_only = Some(why);
    }

    /// Show `text` in the status line (in the error style when `is_error`) until the next edit.
    pub fn set_message(&mut self, text: impl Into<String>, is_error: bool) {
        let tone = if is_error { Tone::Error } else { Tone::Info };
        self.say(tone, text.into());
    }

    /// Whether the text differs from what was last read or written (the file or the draft).
    pub fn is_dirty(&self) -> bool {
        self.text != self.baseline
    }

    /// Whether the user left: after [`EditorEffect::Closed`], or after a save chosen when
    /// asked about unsaved changes ([`EditorEffect::Saved`] or [`EditorEffect::DraftSaved`]).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The rule file (never the draft, even when the draft was opened).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Draw the editor: the text with line numbers and marked errors, the check panel (errors
    /// or the preview), the status line and the key hints.
    pub fn render(&mut self, f: &mut Frame, area: Rect, theme: &Theme) {
        let [body, status, hints] = Layout::vertical([
            Constraint::Min(3),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);

        let (text_area, panel_area, panel) = self.split(body, theme);
        self.render_text(f, text_area, theme);
        render_panel(f, panel_area, panel, theme);
        self.render_status(f, status, theme);
        self.render_hints(f, hints, theme);
    }
}

/// The draft kept next to a rule file: `rules/web.yaml` → `rules/web.yaml.draft`.
pub fn draft_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".draft");
    PathBuf::from(name)
}

/// A file's text and when it was last changed.
struct FileText {
    text: String,
    modified: Option<SystemTime>,
}

/// The text of `path`, or `None` when it does not exist.
fn read_if_exists(path: &Path) -> Result<Option<FileText>, String> {
    let cannot = |err: io::Error| {
        let why = if err.kind() == io::ErrorKind::InvalidData {
            "it is not UTF-8 text".to_string()
        } else {
            err.to_string()
        };
        format!("cannot read {}: {why}", path.display())
    };
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(cannot(err)),
    };
    let meta = file.metadata().map_err(cannot)?;
    if meta.len() > MAX_OPEN_BYTES {
        return Err(too_big_to_open(path, meta.len()));
    }
    let mut text = String::new();
    // The file may grow between the size check and the read; the read stops past the limit.
    let read = file
        .take(MAX_OPEN_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if read as u64 > MAX_OPEN_BYTES {
        return Err(too_big_to_open(path, read as u64));
    }
    Ok(Some(FileText {
        text,
        modified: meta.modified().ok(),
    }))
}

fn too_big_to_open(path: &Path, len: u64) -> String {
    format!(
        "cannot open {}: it is {} KiB, more than the {} KiB the rule editor opens",
        path.display(),
        len / 1024,
        MAX_OPEN_BYTES / 1024
    )
}

/// An editor on a draft of the rule file `path`, saying so.
fn open_draft(path: PathBuf, draft_path: &Path, text: String) -> Editor {
    let mut editor = Editor::open(path, text);
    editor.baseline_at = Baseline::Draft;
    let message = format!(
        "opened the draft {}, newer than {}; the running rule is unchanged until Ctrl-S saves \
         valid text",
        file_name(draft_path),
        file_name(&editor.path)
    );
    editor.say(Tone::Warning, message);
    editor
}

/// The last component of `path`, for messages.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// `rules/web.yaml` rather than the whole path: the parent directory and the file name.
fn short_path(path: &Path) -> String {
    let name = file_name(path);
    match path.parent().and_then(Path::file_name) {
        Some(parent) => format!("{}/{name}", parent.to_string_lossy()),
        None => name,
    }
}

/// "1 rule", "2 rules".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

// Editing: keys, validation, saving and leaving.
impl Editor {
    fn after_edit(&mut self, modified: bool) -> EditorEffect {
        if !modified {
            return EditorEffect::None;
        }
        self.refresh();
        self.message = None;
        self.preview.clear();
        EditorEffect::Changed
    }

    /// Rebuild the text from the lines and validate it.
    fn refresh(&mut self) {
        self.text = self.textarea.lines().join(self.line_ending);
        self.validate();
        self.preview_wanted = self.rules.is_some();
    }

    fn validate(&mut self) {
        if self.text.len() > MAX_VALIDATED_BYTES {
            self.rules = None;
            self.errors = vec![EditorError {
                line: 1,
                column: 1,
                message: format!(
                    "the text is {} KiB, more than the {} KiB the editor checks; it can be saved \
                     only as a draft",
                    self.text.len() / 1024,
                    MAX_VALIDATED_BYTES / 1024
                ),
            }];
            return;
        }
        match rules::parse_rules(&self.path, &self.text) {
            Ok(rules) => {
                self.rules = Some(rules);
                self.errors.clear();
            }
            Err(errors) => {
                self.rules = None;
                self.errors = errors.into_iter().map(editor_error).collect();
            }
        }
    }

    fn move_page(&mut self, direction: CursorMove, shift: bool) {
        if shift && !self.textarea.is_selecting() {
            self.textarea.start_selection();
        } else if !shift {
            self.textarea.cancel_selection();
        }
        for _ in 0..self.page.max(1) {
            self.textarea.move_cursor(direction);
        }
    }

    fn save(&mut self) -> EditorEffect {
        if let Some(why) = self.read_only.clone() {
            self.say(Tone::Error, why);
            return EditorEffect::None;
        }
        match self.rules.clone() {
            Some(rules) => self.save_rule(rules),
            None => self.save_draft(),
        }
    }

    /// Write the valid text to the rule file, then remove the draft it supersedes.
    fn save_rule(&mut self, rules: Vec<Rule>) -> EditorEffect {
        if let Err(err) = fsutil::write_atomic(&self.path, self.text.as_bytes()) {
            let message = format!(
                "cannot save {}: {err}; the running rule is unchanged",
                self.path.display()
            );
            self.say(Tone::Error, message);
            return EditorEffect::None;
        }
        self.baseline = self.text.clone();
        self.baseline_at = Baseline::File;

        let saved = format!(
            "saved {} ({})",
            short_path(&self.path),
            count(rules.len(), "rule")
        );
        let draft = draft_path(&self.path);
        match fs::remove_file(&draft) {
            Ok(()) => self.say(Tone::Success, format!("{saved}; removed the draft")),
            Err(err) if err.kind() == io::ErrorKind::NotFound => self.say(Tone::Success, saved),
            Err(err) => self.say(
                Tone::Warning,
                format!(
                    "{saved}, but cannot remove the draft {}: {err}",
                    draft.display()
                ),
            ),
        }
        EditorEffect::Saved {
            path: self.path.clone(),
            rules,
        }
    }

    /// Write the invalid text to the draft, leaving the rule file alone.
    fn save_draft(&mut self) -> EditorEffect {
        let draft = draft_path(&self.path);
        if let Err(err) = fsutil::write_atomic(&draft, self.text.as_bytes()) {
            let message = format!(
                "cannot save the draft {}: {err}; nothing was written",
                draft.display()
            );
            self.say(Tone::Error, message);
            return EditorEffect::None;
        }
        self.baseline = self.text.clone();
        self.baseline_at = Baseline::Draft;
        let message = format!(
            "saved as the draft {}; the running rule is unchanged because {}",
            file_name(&draft),
            self.why_invalid()
        );
        self.say(Tone::Warning, message);
        EditorEffect::DraftSaved { path: draft }
    }

    /// The first error with its position, and how many more there are.
    fn why_invalid(&self) -> String {
        let Some(first) = self.errors.first() else {
            return "the text is not valid".to_string();
        };
        let more = match self.errors.len() - 1 {
            0 => String::new(),
            n => format!(" (and {} more)", count(n, "error")),
        };
        format!("{}:{}: {}{more}", first.line, first.column, first.message)
    }

    fn leave(&mut self) -> EditorEffect {
        if self.is_dirty() {
            self.confirm_leave = true;
            return EditorEffect::None;
        }
        self.closed = true;
        EditorEffect::Closed
    }

    fn answer_leave(&mut self, key: KeyEvent) -> EditorEffect {
        match key.code {
            KeyCode::Char('s' | 'S') => {
                self.confirm_leave = false;
                let effect = self.save();
                let saved = matches!(
                    effect,
                    EditorEffect::Saved { .. } | EditorEffect::DraftSaved { .. }
                );
                self.closed = saved;
                effect
            }
            KeyCode::Char('d' | 'D') => {
                self.confirm_leave = false;
                self.closed = true;
                EditorEffect::Closed
            }
            KeyCode::Esc => {
                self.confirm_leave = false;
                EditorEffect::None
            }
            _ => EditorEffect::None,
        }
    }

    fn say(&mut self, tone: Tone, text: String) {
        self.message = Some(Message { text, tone });
    }
}

/// The position and message of a rule file error; the file name is the editor's own.
fn editor_error(err: ConfigError) -> EditorError {
    match err {
        ConfigError::Invalid {
            line,
            column,
            message,
            ..
        }
        | ConfigError::Syntax {
            line,
            column,
            message,
            ..
        } => EditorError {
            line,
            column,
            message,
        },
        other => EditorError {
            line: 1,
            column: 1,
            message: other.to_string(),
        },
    }
}

/// The check panel's title and its entries (one per error or preview line, each a few rows).
struct Panel {
    title: Line<'static>,
    entries: Vec<Vec<Line<'static>>>,
    /// What the line that replaces entries that do not fit says, given how many were left out.
    more: fn(usize) -> String,
}

// Drawing.
impl Editor {
    /// The text's area, the panel's area, and the panel, which sits below the text on a narrow
    /// screen (as tall as its entries, up to a third of the height) and beside it on a wide one.
    fn split(&self, body: Rect, theme: &Theme) -> (Rect, Rect, Panel) {
        if body.width >= SIDE_PANEL_MIN_WIDTH {
            let side = (body.width * 2 / 5).min(60);
            let [text_area, panel_area] =
                Layout::horizontal([Constraint::Min(40), Constraint::Length(side)]).areas(body);
            let panel = self.panel(panel_area.width.saturating_sub(2) as usize, theme);
            return (text_area, panel_area, panel);
        }
        let panel = self.panel(body.width.saturating_sub(2) as usize, theme);
        let rows: usize = panel.entries.iter().map(Vec::len).sum();
        let most = (body.height / 3).max(3);
        let height = u16::try_from(rows + 2).unwrap_or(u16::MAX).clamp(3, most);
        let [text_area, panel_area] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(height)]).areas(body);
        (text_area, panel_area, panel)
    }

    fn panel(&self, width: usize, theme: &Theme) -> Panel {
        if !self.errors.is_empty() {
            let title = format!(
                " {}: saving makes a draft, the running rule is kept ",
                count(self.errors.len(), "error")
            );
            let entries = self
                .errors
                .iter()
                .map(|e| {
                    let line = format!("{}:{}: {}", e.line, e.column, e.message);
                    SafeLine::plain(&line)
                        .wrap(width)
                        .iter()
                        .map(|row| row.to_line(theme.error))
                        .collect()
                })
                .collect();
            return Panel {
                title: Line::styled(text::fit(&title, width), theme.error),
                entries,
                more: |n| format!("… and {}", count(n, "more error")),
            };
        }
        let rules = self.rules.as_deref().unwrap_or_default();
        let names: Vec<&str> = rules.iter().map(|rule| rule.name.as_str()).collect();
        let title = format!(
            " valid: {} ({}) · decision now ",
            count(rules.len(), "rule"),
            text::sanitize_plain(&names.join(", "))
        );
        let entries = if self.preview.is_empty() {
            let waiting = "waiting for the decision the rule would make now";
            vec![vec![Line::styled(
                text::fit(waiting, width),
                theme.text_dim,
            )]]
        } else {
            self.preview
                .iter()
                .map(|line| {
                    let shown = text::fit(&text::sanitize_plain(line), width);
                    vec![Line::styled(shown, theme.text)]
                })
                .collect()
        };
        Panel {
            title: Line::styled(text::fit(&title, width), theme.success),
            entries,
            more: |n| format!("… and {}", count(n, "more line")),
        }
    }

    fn render_text(&mut self, f: &mut Frame, area: Rect, theme: &Theme) {
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.border_focus)
            .title(self.title(area.width.saturating_sub(2) as usize, theme));
        let inner = block.inner(area);
        f.render_widget(block, area);
        if inner.width == 0 || inner.height == 0 {
            return;
        }

        let digits = self.textarea.lines().len().to_string().len().max(2);
        let gutter = digits + 2;
        let width = (inner.width as usize).saturating_sub(gutter).max(1);
        let height = inner.height as usize;
        self.page = height;
        self.scroll_to_cursor(height, width);

        let view = LineView {
            cursor: self.textarea.cursor(),
            selection: self.textarea.selection_range(),
            digits,
            left: self.left,
            width,
        };
        let lines: Vec<Line> = self
            .textarea
            .lines()
            .iter()
            .enumerate()
            .skip(self.top)
            .take(height)
            .map(|(row, line)| view.line(row, line, &self.errors_on(row), theme))
            .collect();
        f.render_widget(Paragraph::new(lines).style(theme.text), inner);
    }

    /// The block title: the file, and whether the text is modified, a draft or a new file.
    fn title(&self, width: usize, theme: &Theme) -> Line<'static> {
        let name = format!(" {} ", text::sanitize_plain(&short_path(&self.path)));
        let mut flags = Vec::new();
        if self.is_dirty() {
            flags.push("modified");
        }
        match self.baseline_at {
            Baseline::Draft => flags.push("draft, not running"),
            Baseline::New => flags.push("new file"),
            Baseline::File => {}
        }
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!("● {} ", flags.join(", "))
        };
        let name = text::fit(&name, width);
        let room = width.saturating_sub(text::display_width(&name));
        Line::from(vec![
            Span::styled(name, theme.title),
            Span::styled(text::fit(&flags, room), theme.warning),
        ])
    }

    /// Move the view so the cursor is inside it, `height` lines by `width` columns.
    fn scroll_to_cursor(&mut self, height: usize, width: usize) {
        let (row, col) = self.textarea.cursor();
        if row < self.top {
            self.top = row;
        } else if row >= self.top + height {
            self.top = row + 1 - height;
        }
        let line = self.textarea.lines().get(row).map_or("", String::as_str);
        let before: String = line.chars().take(col).map(visible).collect();
        let x = text::display_width(&before);
        if x < self.left {
            self.left = x;
        } else if x >= self.left + width {
            self.left = x + 1 - width;
        }
    }

    /// The 0-based columns of the errors on 0-based line `row`.
    fn errors_on(&self, row: usize) -> Vec<usize> {
        self.errors
            .iter()
            .filter(|e| e.line == row + 1)
            .map(|e| e.column.saturating_sub(1))
            .collect()
    }

    fn render_status(&self, f: &mut Frame, area: Rect, theme: &Theme) {
        let width = area.width as usize;
        let line = if self.confirm_leave {
            Line::styled(
                text::fit(&format!(" {LEAVE_QUESTION}"), width),
                theme.warning,
            )
        } else if let Some(message) = &self.message {
            let style = match message.tone {
                Tone::Info => theme.text,
                Tone::Success => theme.success,
                Tone::Warning => theme.warning,
                Tone::Error => theme.error,
            };
            let shown = format!(" {}", text::sanitize_plain(&message.text));
            Line::styled(text::fit(&shown, width), style)
        } else {
            Line::default()
        };
        f.render_widget(Paragraph::new(line).style(theme.status_bar), area);
    }

    fn render_hints(&self, f: &mut Frame, area: Rect, theme: &Theme) {
        let keys: &[(&str, &str)] = if self.confirm_leave {
            &[("s", "save"), ("d", "discard"), ("Esc", "keep editing")]
        } else if self.rules.is_some() {
            &[
                ("Ctrl-S", "save"),
                ("Esc", "leave"),
                ("Ctrl-Z", "undo"),
                ("Ctrl-Y", "redo"),
            ]
        } else {
            &[
                ("Ctrl-S", "save draft"),
                ("Esc", "leave"),
                ("Ctrl-Z", "undo"),
                ("Ctrl-Y", "redo"),
            ]
        };
        let mut spans = Vec::new();
        for (key, what) in keys {
            spans.push(Span::styled(format!(" {key}"), theme.key_hint));
            spans.push(Span::styled(format!(" {what} "), theme.status_bar));
        }
        let used: usize = spans.iter().map(|s| text::display_width(&s.content)).sum();
        let (row, col) = self.textarea.cursor();
        let position = format!("{}:{} ", row + 1, col + 1);
        let gap = (area.width as usize).saturating_sub(used + position.len());
        if gap > 0 {
            spans.push(Span::raw(" ".repeat(gap)));
            spans.push(Span::styled(position, theme.text_dim));
        }
        f.render_widget(
            Paragraph::new(Line::from(spans)).style(theme.status_bar),
            area,
        );
    }
}

fn render_panel(f: &mut Frame, area: Rect, panel: Panel, theme: &Theme) {
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(panel.title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let lines = fit_entries(panel.entries, inner.height as usize, panel.more, theme);
    f.render_widget(Paragraph::new(lines).style(theme.text), inner);
}

/// As many whole entries as fit in `rows`, then a line saying how many were left out; an entry
/// taller than the whole panel is cut rather than left out.
fn fit_entries(
    entries: Vec<Vec<Line<'static>>>,
    rows: usize,
    more: fn(usize) -> String,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let total = entries.len();
    let mut out = Vec::with_capacity(rows);
    for (i, entry) in entries.into_iter().enumerate() {
        let left = total - i;
        let reserve = usize::from(left > 1);
        if out.len() + entry.len() + reserve <= rows {
            out.extend(entry);
            continue;
        }
        let mut hidden = left;
        if out.is_empty() {
            out.extend(entry.into_iter().take(rows.saturating_sub(reserve)));
            hidden -= 1;
        }
        if hidden > 0 && out.len() < rows {
            out.push(Line::styled(more(hidden), theme.text_dim));
        }
        break;
    }
    out
}

/// What every line drawn shares: the cursor, the selection and the visible columns.
struct LineView {
    cursor: (usize, usize),
    selection: Option<((usize, usize), (usize, usize))>,
    digits: usize,
    left: usize,
    width: usize,
}

impl LineView {
    /// Line `row` (0-based) with its gutter, coloured, with its errors and the cursor marked.
    fn line(&self, row: usize, line: &str, errors: &[usize], theme: &Theme) -> Line<'static> {
        let chars: Vec<char> = line.chars().collect();
        let tokens = scan_yaml(&chars);
        let mut safe = SafeLine::default();
        for (col, (&c, &token)) in chars.iter().zip(&tokens).enumerate() {
            let mut style = token.style(theme);
            if errors.contains(&col) {
                style = style.patch(theme.error).add_modifier(Modifier::UNDERLINED);
            }
            if self.selected(row, col) {
                style = style.patch(theme.row_selected);
            }
            if self.cursor == (row, col) {
                style = style.add_modifier(Modifier::REVERSED);
            }
            push_char(&mut safe, visible(c), style);
        }
        if self.cursor == (row, chars.len()) {
            push_char(
                &mut safe,
                ' ',
                Style::new().add_modifier(Modifier::REVERSED),
            );
        }

        let mut spans = self.gutter(row, !errors.is_empty(), theme);
        spans.extend(
            safe.display_cut(self.left, self.width)
                .to_line(theme.text)
                .spans,
        );
        Line::from(spans)
    }

    /// `!` on a line with an error, then the line number, then a space.
    fn gutter(&self, row: usize, has_error: bool, theme: &Theme) -> Vec<Span<'static>> {
        let number = format!("{:>width$} ", row + 1, width = self.digits);
        if has_error {
            return vec![Span::styled(format!("!{number}"), theme.error)];
        }
        let style = if row == self.cursor.0 {
            theme.text
        } else {
            theme.text_dim
        };
        vec![Span::raw(" "), Span::styled(number, style)]
    }

    fn selected(&self, row: usize, col: usize) -> bool {
        self.selection
            .is_some_and(|(start, end)| start <= (row, col) && (row, col) < end)
    }
}

/// Append `c` to `line` in `style`, growing the last span when it has the same style.
fn push_char(line: &mut SafeLine, c: char, style: Style) {
    let start = line.text.len();
    line.text.push(c);
    let end = line.text.len();
    match line.spans.last_mut() {
        Some((range, last)) if *last == style && range.end == start => range.end = end,
        _ => line.spans.push((start..end, style)),
    }
}

/// The char drawn for `c`: a control becomes its picture (a tab `␉`, ESC `␛`), a C1 control or
/// a bidi override U+FFFD, so the text shown is the text saved, one char for one char, and
/// nothing in it can act on the terminal.
fn visible(c: char) -> char {
    match c {
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{FFFD}'),
        '\u{7f}' => '\u{2421}',
        '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => '\u{FFFD}',
        _ => c,
    }
}

/// What a char of a YAML line is, for colouring only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Space,
    Key,
    Value,
    Comment,
    Punct,
}

impl Token {
    /// The theme has no editor scopes, so the nearest semantic styles stand in: keys take the
    /// table header's (they name fields, as column titles do), comments and punctuation the dim
    /// text's, values the text's.
    fn style(self, theme: &Theme) -> Style {
        match self {
            Token::Key => theme.table_header,
            Token::Comment | Token::Punct => theme.text_dim,
            Token::Space | Token::Value => theme.text,
        }
    }
}

/// The token of each char of one YAML line.
///
/// Keys are the scalars before a `:` that ends in a space, the line's end or (inside `{}` or
/// `[]`) a `,`, `}` or `]`; `#` after a space starts a comment; flow brackets, `,` inside them,
/// `:`, and `- ` before an item are punctuation; quoted scalars run to their closing quote.
// LIMITATION: each line is scanned alone, so the lines of a block scalar (`|`, `>`) or of a flow
// collection or quoted scalar spread over several lines are coloured as if they stood alone. This
// affects the colours only; validation reads the whole text.
fn scan_yaml(chars: &[char]) -> Vec<Token> {
    let n = chars.len();
    let mut tokens = vec![Token::Value; n];
    let mut depth = 0usize;
    let mut in_indent = true;
    let mut i = 0;
    while i < n {
        let c = chars[i];
        let ends_here = |k: usize| k + 1 >= n || is_blank(chars[k + 1]);
        if is_blank(c) {
            tokens[i] = Token::Space;
            i += 1;
            continue;
        }
        if c == '#' && (i == 0 || is_blank(chars[i - 1])) {
            tokens[i..].fill(Token::Comment);
            break;
        }
        if in_indent && depth == 0 && c == '-' && ends_here(i) {
            tokens[i] = Token::Punct;
            i += 1;
            continue;
        }
        let marker = n >= 3 && matches!(chars[..3], ['-', '-', '-'] | ['.', '.', '.']);
        if i == 0 && marker && (n == 3 || is_blank(chars[3])) {
            tokens[..3].fill(Token::Punct);
            i = 3;
            continue;
        }
        in_indent = false;
        let punct = match c {
            '{' | '[' => {
                depth += 1;
                true
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                true
            }
            ',' => depth > 0,
            ':' => is_mapping_colon(chars, i, depth),
            _ => false,
        };
        if punct {
            tokens[i] = Token::Punct;
            i += 1;
            continue;
        }
        let end = if c == '"' || c == '\'' {
            quoted_end(chars, i)
        } else {
            plain_end(chars, i, depth)
        };
        let mut next = end;
        while next < n && is_blank(chars[next]) {
            next += 1;
        }
        let is_key = next < n && chars[next] == ':' && is_mapping_colon(chars, next, depth);
        tokens[i..end].fill(if is_key { Token::Key } else { Token::Value });
        i = end;
    }
    tokens
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Whether the `:` at `i` separates a key from its value.
fn is_mapping_colon(chars: &[char], i: usize, depth: usize) -> bool {
    match chars.get(i + 1) {
        None => true,
        Some(&next) => is_blank(next) || (depth > 0 && matches!(next, ',' | '}' | ']')),
    }
}

/// The end (exclusive) of the quoted scalar that starts at `start`; the line's end when the
/// quote is not closed on it.
fn quoted_end(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut k = start + 1;
    while k < chars.len() {
        match chars[k] {
            '\\' if quote == '"' => k += 2,
            '\'' if quote == '\'' && chars.get(k + 1) == Some(&'\'') => k += 2,
            c if c == quote => return k + 1,
            _ => k += 1,
        }
    }
    chars.len()
}

/// The end (exclusive, trailing blanks left out) of the plain scalar that starts at `start`,
/// which is never a blank, so the scalar holds at least one char.
fn plain_end(chars: &[char], start: usize, depth: usize) -> usize {
    let mut k = start;
    while k < chars.len() {
        let c = chars[k];
        let stops = (c == ':' && is_mapping_colon(chars, k, depth))
            || (c == '#' && k > start && is_blank(chars[k - 1]))
            || (depth > 0 && k > start && matches!(c, ',' | '[' | ']' | '{' | '}'));
        if stops {
            break;
        }
        k += 1;
    }
    let mut end = k.max(start + 1);
    while end > start + 1 && is_blank(chars[end - 1]) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    const VALID: &str = "\
# A Compose service scaled on CPU.
name: web
target: { platform: docker, host: local, workload: shop/web }
maxReplicas: 4
metrics:
  - name: cpu
    cpu: { utilization: 70 }
";

    const UNKNOWN_FIELD: &str = "\
name: web
target: { platform: docker, host: local, workload: shop/web }
maxReplicas: 4
metrics:
  - name: cpu
    cpu: { utilization: 70 }
    averageUtilization: 60
";

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn type_text(editor: &mut Editor, text: &str) {
        for c in text.chars() {
            editor.on_key(key(KeyCode::Char(c)));
        }
    }

    fn rule_file(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("rules/web.yaml");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn set_mtime(path: &Path, time: SystemTime) {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    fn draw(editor: &mut Editor, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let theme = Theme::dark();
        terminal
            .draw(|f| editor.render(f, f.area(), &theme))
            .unwrap();
        terminal
    }

    fn row_text(terminal: &Terminal<TestBackend>, y: u16) -> String {
        let buffer = terminal.backend().buffer();
        (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect()
    }

    fn status_text(editor: &Editor) -> String {
        editor
            .message
            .as_ref()
            .map(|m| m.text.clone())
            .unwrap_or_default()
    }

    #[test]
    fn typing_makes_the_editor_dirty_and_revalidates() {
        let mut editor = Editor::open(PathBuf::from("rules/web.yaml"), VALID.to_string());
        assert!(!editor.is_dirty());
        assert_eq!(editor.rules().map(<[Rule]>::len), Some(1));

        // The cursor starts at 1:1, inside the comment; go to the start of `name: web`.
        editor.on_key(key(KeyCode::Down));
        assert_eq!(
            editor.on_key(key(KeyCode::Char('x'))),
            EditorEffect::Changed
        );
        assert!(editor.is_dirty());
        assert!(editor.rules().is_none());
        assert_eq!(editor.errors()[0].line, 2);
        assert!(
            editor
                .text()
                .starts_with("# A Compose service scaled on CPU.\nxname: web\n")
        );

        assert_eq!(
            editor.on_key(key(KeyCode::Backspace)),
            EditorEffect::Changed
        );
        assert!(
            !editor.is_dirty(),
            "the text is back to what the file holds"
        );
        assert!(editor.errors().is_empty());
        assert_eq!(editor.rules().unwrap()[0].name, "web");
    }

    #[test]
    fn an_unknown_field_is_reported_at_its_line_and_column() {
        let editor = Editor::open(PathBuf::from("web.yaml"), UNKNOWN_FIELD.to_string());
        assert!(editor.rules().is_none());
        let errors = editor.errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column), (7, 5));
        assert!(
            errors[0].message.contains("averageUtilization"),
            "{errors:?}"
        );
    }

    #[test]
    fn ctrl_s_on_valid_text_writes_the_file_returns_the_rules_and_removes_a_stale_draft() {
        let dir = tempfile::tempdir().unwrap();
        let path = rule_file(&dir, VALID);
        let draft = draft_path(&path);
        fs::write(&draft, "name: [unfinished\n").unwrap();
        set_mtime(
            &draft,
            SystemTime::now() - std::time::Duration::from_secs(3600),
        );
        let mut editor = Editor::open_file(path.clone(), String::new).unwrap();
        assert_eq!(editor.text(), VALID, "the older draft is not opened");

        editor.on_key(key(KeyCode::Down));
        editor.on_key(key(KeyCode::Down));
        editor.on_key(key(KeyCode::Down));
        editor.on_key(key(KeyCode::End));
        editor.on_key(key(KeyCode::Backspace));
        type_text(&mut editor, "9");
        assert!(editor.is_dirty());

        let EditorEffect::Saved { path: saved, rules } = editor.on_key(ctrl('s')) else {
            panic!(
                "valid text is saved to the rule file: {}",
                status_text(&editor)
            );
        };
        assert_eq!(saved, path);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].max_replicas, 9);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            VALID.replace("maxReplicas: 4", "maxReplicas: 9")
        );
        assert!(!draft.exists(), "the draft it supersedes is removed");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("web.yaml")],
            "no temp file is left"
        );
        assert!(!editor.is_dirty());
        assert!(!editor.is_closed());
        assert!(status_text(&editor).contains("saved rules/web.yaml (1 rule)"));
    }

    #[test]
    fn ctrl_s_on_invalid_text_writes_only_the_draft_and_leaves_the_rule_file_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = rule_file(&dir, VALID);
        let before = fs::read(&path).unwrap();
        let mut editor = Editor::open_file(path.clone(), String::new).unwrap();
        editor.on_key(key(KeyCode::Down));
        type_text(&mut editor, "x");

        let effect = editor.on_key(ctrl('s'));
        let draft = draft_path(&path);
        assert_eq!(
            effect,
            EditorEffect::DraftSaved {
                path: draft.clone()
            }
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            before,
            "the rule file is byte for byte the same"
        );
        assert_eq!(fs::read_to_string(&draft).unwrap(), editor.text());
        let message = status_text(&editor);
        assert!(
            message.contains("the running rule is unchanged because 2:"),
            "{message}"
        );
        assert!(!editor.is_dirty(), "the draft holds the text");
    }

    #[test]
    fn esc_with_unsaved_changes_asks_and_d_discards() {
        let mut editor = Editor::open(PathBuf::from("web.yaml"), VALID.to_string());
        type_text(&mut editor, "x");
        assert_eq!(editor.on_key(key(KeyCode::Esc)), EditorEffect::None);
        let screen = draw(&mut editor, 80, 24);
        assert!(row_text(&screen, 22).contains(LEAVE_QUESTION));

        assert_eq!(editor.on_key(key(KeyCode::Char('x'))), EditorEffect::None);
        assert_eq!(
            editor.text(),
            format!("x{VALID}"),
            "keys other than the answers do nothing"
        );
        assert_eq!(editor.on_key(key(KeyCode::Char('d'))), EditorEffect::Closed);
        assert!(editor.is_closed());
    }

    #[test]
    fn esc_in_the_question_keeps_editing() {
        let mut editor = Editor::open(PathBuf::from("web.yaml"), VALID.to_string());
        type_text(&mut editor, "x");
        editor.on_key(key(KeyCode::Esc));
        assert_eq!(editor.on_key(key(KeyCode::Esc)), EditorEffect::None);
        assert!(!editor.is_closed());
        assert_eq!(
            editor.on_key(key(KeyCode::Backspace)),
            EditorEffect::Changed
        );
        assert_eq!(editor.on_key(key(KeyCode::Esc)), EditorEffect::Closed);
    }

    #[test]
    fn s_in_the_question_saves_and_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let path = rule_file(&dir, VALID);
        let mut editor = Editor::open_file(path.clone(), String::new).unwrap();
        editor.on_key(key(KeyCode::End));
        type_text(&mut editor, " and memory");
        editor.on_key(key(KeyCode::Esc));
        let effect = editor.on_key(key(KeyCode::Char('s')));
        assert!(matches!(effect, EditorEffect::Saved { .. }), "{effect:?}");
        assert!(editor.is_closed());
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .starts_with("# A Compose service scaled on CPU. and memory\n")
        );
    }

    #[test]
    fn esc_when_clean_closes() {
        let mut editor = Editor::open(PathBuf::from("web.yaml"), VALID.to_string());
        editor.on_key(key(KeyCode::Down));
        assert_eq!(editor.on_key(key(KeyCode::Esc)), EditorEffect::Closed);
        assert!(editor.is_closed());
    }

    #[test]
    fn a_newer_draft_is_opened_instead_of_the_file_and_the_status_line_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = rule_file(&dir, VALID);
        set_mtime(
            &path,
            SystemTime::now() - std::time::Duration::from_secs(60),
        );
        fs::write(draft_path(&path), UNKNOWN_FIELD).unwrap();

        let mut editor = Editor::open_file(path.clone(), String::new).unwrap();
        assert_eq!(editor.text(), UNKNOWN_FIELD);
        assert_eq!(editor.path(), path);
        assert!(!editor.is_dirty());
        let screen = draw(&mut editor, 80, 24);
        assert!(row_text(&screen, 22).contains("opened the draft web.yaml.draft"));
        assert!(row_text(&screen, 0).contains("draft, not running"));
    }

    #[test]
    fn a_missing_file_opens_the_template_as_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules/api.yaml");
        let editor = Editor::open_file(path.clone(), || VALID.to_string()).unwrap();
        assert_eq!(editor.text(), VALID);
        assert_eq!(editor.baseline_at, Baseline::New);
        assert!(!path.exists(), "opening writes nothing");
    }

    #[test]
    fn a_file_that_is_not_utf8_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yaml");
        fs::write(&path, b"name: \xff\n").unwrap();
        let err = Editor::open_file(path.clone(), String::new).unwrap_err();
        assert_eq!(
            err,
            format!("cannot read {}: it is not UTF-8 text", path.display())
        );
    }

    #[test]
    fn tab_inserts_two_spaces_and_ctrl_z_and_ctrl_y_undo_and_redo() {
        let mut editor = Editor::open(PathBuf::from("web.yaml"), "a".to_string());
        assert_eq!(editor.on_key(key(KeyCode::Tab)), EditorEffect::Changed);
        assert_eq!(editor.text(), "  a");
        assert_eq!(editor.on_key(ctrl('z')), EditorEffect::Changed);
        assert_eq!(editor.text(), "a");
        assert_eq!(editor.on_key(ctrl('y')), EditorEffect::Changed);
        assert_eq!(editor.text(), "  a");
    }

    #[test]
    fn a_preview_is_wanted_once_after_each_change_that_leaves_the_text_valid() {
        let mut editor = Editor::open(PathBuf::from("web.yaml"), VALID.to_string());
        assert_eq!(editor.wants_preview().unwrap()[0].name, "web");
        assert!(editor.wants_preview().is_none());

        editor.on_key(key(KeyCode::Down));
        type_text(&mut editor, "x");
        assert!(
            editor.wants_preview().is_none(),
            "invalid text wants no preview"
        );
        editor.on_key(key(KeyCode::Backspace));
        assert!(editor.wants_preview().is_some());

        editor.set_preview(vec!["web: 2 → 3 replicas (cpu 95% of 70%)".into()]);
        assert!(row_text(&draw(&mut editor, 80, 24), 20).contains("web: 2 → 3 replicas"));
        type_text(&mut editor, " ");
        assert!(
            !row_text(&draw(&mut editor, 80, 24), 20).contains("web: 2 → 3"),
            "a change clears the preview of the text before it"
        );
    }

    #[test]
    fn a_text_over_the_size_cap_is_not_validated_and_says_so() {
        let big = format!("{VALID}# {}\n", "x".repeat(MAX_VALIDATED_BYTES));
        let editor = Editor::open(PathBuf::from("web.yaml"), big);
        assert!(editor.rules().is_none());
        assert_eq!(editor.errors().len(), 1);
        assert!(
            editor.errors()[0]
                .message
                .contains("more than the 256 KiB the editor checks")
        );
    }

    #[test]
    fn crlf_line_ends_are_kept_on_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = rule_file(&dir, &VALID.replace('\n', "\r\n"));
        let mut editor = Editor::open_file(path.clone(), String::new).unwrap();
        assert!(!editor.is_dirty());
        type_text(&mut editor, "#");
        assert!(matches!(
            editor.on_key(ctrl('s')),
            EditorEffect::Saved { .. }
        ));
        let saved = fs::read_to_string(&path).unwrap();
        assert_eq!(saved, format!("#{}", VALID.replace('\n', "\r\n")));
    }

    #[test]
    fn control_characters_in_the_text_are_drawn_as_pictures() {
        let text = "name: web\x1b]0;owned\x07\n\tmaxReplicas: 4\n";
        let mut editor = Editor::open(PathBuf::from("web.yaml"), text.to_string());
        let screen = draw(&mut editor, 80, 24);
        assert!(row_text(&screen, 1).contains("name: web␛]0;owned␇"));
        assert!(row_text(&screen, 2).contains("␉maxReplicas: 4"));
        let buffer = screen.backend().buffer();
        assert!(
            buffer
                .content
                .iter()
                .all(|cell| !cell.symbol().chars().any(char::is_control))
        );
    }

    #[test]
    fn the_view_follows_the_cursor_down_a_long_file() {
        let text: String = (1..=200).map(|i| format!("# line {i}\n")).collect();
        let mut editor = Editor::open(PathBuf::from("web.yaml"), text);
        draw(&mut editor, 80, 24);
        editor.on_key(key(KeyCode::PageDown));
        editor.on_key(key(KeyCode::PageDown));
        let screen = draw(&mut editor, 80, 24);
        let shown: String = (1..20).map(|y| row_text(&screen, y)).collect();
        let (row, _) = editor.textarea.cursor();
        assert!(row > 20);
        assert!(shown.contains(&format!("# line {}", row + 1)), "{shown}");
    }

    #[test]
    fn yaml_keys_values_comments_and_punctuation_are_told_apart() {
        let line: Vec<char> = "  - name: \"a: b\" # note".chars().collect();
        let tokens = scan_yaml(&line);
        let at = |s: &str| tokens["  - name: \"a: b\" # note".find(s).unwrap()];
        assert_eq!(at("-"), Token::Punct);
        assert_eq!(at("name"), Token::Key);
        assert_eq!(at(": \""), Token::Punct);
        assert_eq!(at("\"a"), Token::Value);
        assert_eq!(at("b\""), Token::Value);
        assert_eq!(at("# note"), Token::Comment);

        let flow = "target: { platform: docker, workload: shop/web }";
        let tokens = scan_yaml(&flow.chars().collect::<Vec<_>>());
        assert_eq!(tokens[flow.find("platform").unwrap()], Token::Key);
        assert_eq!(tokens[flow.find("docker").unwrap()], Token::Value);
        assert_eq!(tokens[flow.find(',').unwrap()], Token::Punct);
        assert_eq!(tokens[flow.find("shop/web").unwrap()], Token::Value);

        let query = "query: sum(rate(x{proxy=\"web\"}[1m]))";
        let tokens = scan_yaml(&query.chars().collect::<Vec<_>>());
        assert!(tokens[7..].iter().all(|&t| t == Token::Value), "{tokens:?}");
    }

    #[test]
    fn the_line_with_an_error_is_marked_in_the_error_style() {
        let mut editor = Editor::open(PathBuf::from("rules/web.yaml"), UNKNOWN_FIELD.into());
        let screen = draw(&mut editor, 80, 24);
        let buffer = screen.backend().buffer();
        let theme = Theme::dark();
        // Row 0 is the border, so line 7 is row 7; the gutter `! 7 ` puts column 1 at x 5.
        assert!(row_text(&screen, 7).starts_with("│! 7     averageUtilization: 60"));
        assert_eq!(buffer[(1, 7)].style().fg, theme.error.fg);
        assert_eq!(
            buffer[(9, 7)].style().fg,
            theme.error.fg,
            "the offending column"
        );
        assert!(
            buffer[(9, 7)]
                .style()
                .add_modifier
                .contains(Modifier::UNDERLINED)
        );
        assert_eq!(
            buffer[(1, 6)].symbol(),
            " ",
            "a line without an error has no marker"
        );
        assert_eq!(
            buffer[(3, 6)].style().fg,
            theme.text_dim.fg,
            "and a dim number"
        );
        assert_eq!(buffer[(9, 6)].style().fg, theme.table_header.fg, "a key");
    }

    #[test]
    fn errors_that_do_not_fit_are_counted_on_the_last_row_of_the_panel() {
        let rule = |i: usize| {
            format!(
                "- name: r{i}\n  target: {{ platform: docker, host: local, workload: w }}\n  \
                 minReplicas: 5\n  maxReplicas: 2\n  \
                 metrics: [{{ name: cpu, cpu: {{ utilization: 70 }} }}]\n"
            )
        };
        let text: String = (1..=10).map(rule).collect();
        let mut editor = Editor::open(PathBuf::from("rules/web.yaml"), text);
        assert_eq!(editor.errors().len(), 10, "{:?}", editor.errors());
        let screen = draw(&mut editor, 80, 24);
        // The panel takes a third of the 22 rows: a border, five rows, a border.
        let rows: Vec<String> = (0..24).map(|y| row_text(&screen, y)).collect();
        assert!(
            rows[15].contains("10 errors: saving makes a draft"),
            "{rows:#?}"
        );
        assert!(rows[16].starts_with("│3:16: "), "{rows:#?}");
        assert!(
            rows[19].starts_with("│18:16: minReplicas 5 is greater"),
            "{rows:#?}"
        );
        assert!(rows[20].starts_with("│… and 6 more errors "), "{rows:#?}");
    }

    #[test]
    fn on_a_wide_screen_the_check_panel_sits_beside_the_text() {
        let mut editor = Editor::open(PathBuf::from("rules/web.yaml"), UNKNOWN_FIELD.into());
        let screen = draw(&mut editor, 140, 30);
        let top = row_text(&screen, 0);
        assert!(top.starts_with("┌ rules/web.yaml "), "{top}");
        assert!(top.contains("┐┌ 1 error: saving makes a draft"), "{top}");
        assert!(row_text(&screen, 1).contains("│7:5: unknown field `averageUtilization`"));
    }

    #[test]
    fn the_editor_with_one_error_at_80x24() {
        let mut editor = Editor::open(PathBuf::from("rules/web.yaml"), UNKNOWN_FIELD.into());
        insta::assert_snapshot!(draw(&mut editor, 80, 24).backend());
    }
}
