//! The keymap: which key does which action in which mode.
//!
//! Terminal key events become [`KeyAction`]s here, so the UI handles actions and never matches on
//! raw keys. The built-in bindings are written in code ([`Keymap::default_bindings`]) and shipped
//! as `keymaps/default.toml`, which a test proves equal; a user's `keymaps/NAME.toml` in the config
//! directory is merged over them. This module does not decide what an action does, and it does not
//! handle the y/n of a confirmation prompt, which the UI reads directly.
//!
//! # File format
//! ```toml
//! [global]                  # tables: global, workloads, detail, logs, help, autoscaler, rollouts
//! quit = ["q", "ctrl-c"]    # snake_case action = list of keys; it replaces that action's keys
//! refresh = []              # an empty list unbinds the action in that mode
//! ```
//! A key is one character (`q`, `G`, `?`, `/`: a capital letter implies shift) or a name (`enter`,
//! `esc`, `tab`, `backtab`, `up`, `down`, `left`, `right`, `pageup`, `pagedown`, `home`, `end`,
//! `space`, `backspace`, `delete`, `insert`, `f1` to `f12`), optionally after `ctrl-`, `alt-` or
//! `shift-` (shift only on names). A mode's own bindings are looked up before the global ones, so
//! a mode may reuse a global key: in the logs view `/` searches and `|` filters.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use toml::Spanned;

use crate::config::{ConfigError, is_plain_name, read_optional};
use crate::paths::Paths;

/// Something a key asks the UI to do; what it does depends on the mode.
///
/// [`KeyAction::description`] says what each one does; `Confirm` and `Deny` have no default key,
/// since prompts read y and n themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyAction {
    Quit,
    Back,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Left,
    Right,
    Open,
    NextPane,
    Filter,
    Command,
    Help,
    Logs,
    Restart,
    Scale,
    SortNext,
    SortReverse,
    Follow,
    Wrap,
    Timestamps,
    NextMatch,
    PrevMatch,
    Reveal,
    Search,
    Refresh,
    Confirm,
    Deny,
    Autoscaler,
    EditRule,
    PauseRule,
    Rollouts,
    PauseRollout,
    ResumeRollout,
    AbortRollout,
    Rollback,
    NewRollout,
    PreviousLogs,
}

impl KeyAction {
    /// Every action, in the order the help lists them; a new variant must be added here too.
    pub const ALL: [KeyAction; 40] = [
        KeyAction::Quit,
        KeyAction::Back,
        KeyAction::Up,
        KeyAction::Down,
        KeyAction::PageUp,
        KeyAction::PageDown,
        KeyAction::Top,
        KeyAction::Bottom,
        KeyAction::Left,
        KeyAction::Right,
        KeyAction::Open,
        KeyAction::NextPane,
        KeyAction::Filter,
        KeyAction::Command,
        KeyAction::Help,
        KeyAction::Logs,
        KeyAction::Restart,
        KeyAction::Scale,
        KeyAction::SortNext,
        KeyAction::SortReverse,
        KeyAction::Follow,
        KeyAction::Wrap,
        KeyAction::Timestamps,
        KeyAction::NextMatch,
        KeyAction::PrevMatch,
        KeyAction::Reveal,
        KeyAction::Search,
        KeyAction::Refresh,
        KeyAction::Confirm,
        KeyAction::Deny,
        KeyAction::Autoscaler,
        KeyAction::EditRule,
        KeyAction::PauseRule,
        KeyAction::Rollouts,
        KeyAction::PauseRollout,
        KeyAction::ResumeRollout,
        KeyAction::AbortRollout,
        KeyAction::Rollback,
        KeyAction::NewRollout,
        KeyAction::PreviousLogs,
    ];

    /// The snake_case name used in keymap files.
    pub fn name(self) -> &'static str {
        match self {
            KeyAction::Quit => "quit",
            KeyAction::Back => "back",
            KeyAction::Up => "up",
            KeyAction::Down => "down",
            KeyAction::PageUp => "page_up",
            KeyAction::PageDown => "page_down",
            KeyAction::Top => "top",
            KeyAction::Bottom => "bottom",
            KeyAction::Left => "left",
            KeyAction::Right => "right",
            KeyAction::Open => "open",
            KeyAction::NextPane => "next_pane",
            KeyAction::Filter => "filter",
            KeyAction::Command => "command",
            KeyAction::Help => "help",
            KeyAction::Logs => "logs",
            KeyAction::Restart => "restart",
            KeyAction::Scale => "scale",
            KeyAction::SortNext => "sort_next",
            KeyAction::SortReverse => "sort_reverse",
            KeyAction::Follow => "follow",
            KeyAction::Wrap => "wrap",
            KeyAction::Timestamps => "timestamps",
            KeyAction::NextMatch => "next_match",
            KeyAction::PrevMatch => "prev_match",
            KeyAction::Reveal => "reveal",
            KeyAction::Search => "search",
            KeyAction::Refresh => "refresh",
            KeyAction::Confirm => "confirm",
            KeyAction::Deny => "deny",
            KeyAction::Autoscaler => "autoscaler",
            KeyAction::EditRule => "edit_rule",
            KeyAction::PauseRule => "pause_rule",
            KeyAction::Rollouts => "rollouts",
            KeyAction::PauseRollout => "pause_rollout",
            KeyAction::ResumeRollout => "resume_rollout",
            KeyAction::AbortRollout => "abort_rollout",
            KeyAction::Rollback => "rollback",
            KeyAction::NewRollout => "new_rollout",
            KeyAction::PreviousLogs => "previous_logs",
        }
    }

    /// What the action does, as the `?` help shows it.
    pub fn description(self) -> &'static str {
        match self {
            KeyAction::Quit => "quit",
            KeyAction::Back => "go back, close",
            KeyAction::Up => "move up",
            KeyAction::Down => "move down",
            KeyAction::PageUp => "page up",
            KeyAction::PageDown => "page down",
            KeyAction::Top => "go to the top",
            KeyAction::Bottom => "go to the bottom",
            KeyAction::Left => "scroll left",
            KeyAction::Right => "scroll right",
            KeyAction::Open => "open the selection",
            KeyAction::NextPane => "next pane",
            KeyAction::Filter => "filter (regex)",
            KeyAction::Command => "command line (:workloads, :host NAME...)",
            KeyAction::Help => "this help",
            KeyAction::Logs => "logs of the selection",
            KeyAction::Restart => "restart the selection",
            KeyAction::Scale => "scale the workload",
            KeyAction::SortNext => "sort by the next column",
            KeyAction::SortReverse => "reverse the sort",
            KeyAction::Follow => "follow on/off",
            KeyAction::Wrap => "wrap long lines on/off",
            KeyAction::Timestamps => "timestamps on/off",
            KeyAction::NextMatch => "next match",
            KeyAction::PrevMatch => "previous match",
            KeyAction::Reveal => "reveal masked values on/off",
            KeyAction::Search => "search (regex)",
            KeyAction::Refresh => "refresh now",
            KeyAction::Confirm => "confirm",
            KeyAction::Deny => "cancel",
            KeyAction::Autoscaler => "autoscaler view: rules, decisions",
            KeyAction::EditRule => "edit the rule, or write one for the workload",
            KeyAction::PauseRule => "pause / resume the rule",
            KeyAction::Rollouts => "rollout view: the selected workload's, or all",
            KeyAction::PauseRollout => "pause the rollout after its current step",
            KeyAction::ResumeRollout => "resume a paused rollout",
            KeyAction::AbortRollout => "abort the rollout and roll back (asks first)",
            KeyAction::Rollback => "roll back to the previous revision (asks first)",
            KeyAction::NewRollout => "roll out a new image (asks for it)",
            KeyAction::PreviousLogs => "logs of the replica's previous container (Kubernetes)",
        }
    }

    /// The action a keymap file names `name`.
    pub fn from_name(name: &str) -> Option<KeyAction> {
        KeyAction::ALL
            .into_iter()
            .find(|action| action.name() == name)
    }
}

/// Where the keyboard is: each mode has its own bindings over the global ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Bindings that apply everywhere unless the current mode binds the key itself.
    Global,
    /// The workloads table has focus.
    Workloads,
    /// The detail pane (replicas, sparklines, events) has focus.
    Detail,
    /// A log view is open.
    Logs,
    /// The `?` help is open.
    Help,
    /// The autoscaler view (rules and their decisions) is open.
    Autoscaler,
    /// The rollout view (steps, replicas per revision, analysis) is open.
    Rollouts,
}

impl Mode {
    /// Every mode, in the order of the keymap file.
    pub const ALL: [Mode; 7] = [
        Mode::Global,
        Mode::Workloads,
        Mode::Detail,
        Mode::Logs,
        Mode::Help,
        Mode::Autoscaler,
        Mode::Rollouts,
    ];

    /// The table name used in keymap files.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Global => "global",
            Mode::Workloads => "workloads",
            Mode::Detail => "detail",
            Mode::Logs => "logs",
            Mode::Help => "help",
            Mode::Autoscaler => "autoscaler",
            Mode::Rollouts => "rollouts",
        }
    }

    /// The mode a keymap file's table `name` is for.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

/// One key with its modifiers, normalised so that a typed `G` matches the binding `"G"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// The key itself.
    pub code: KeyCode,
    /// Ctrl, Alt and Shift; Shift is never set on a character, whose case carries it.
    pub modifiers: KeyModifiers,
}

/// Named keys and their codes; `space` is written here but shown as `space` too.
const NAMED_KEYS: [(&str, KeyCode); 16] = [
    ("enter", KeyCode::Enter),
    ("esc", KeyCode::Esc),
    ("tab", KeyCode::Tab),
    ("backtab", KeyCode::BackTab),
    ("up", KeyCode::Up),
    ("down", KeyCode::Down),
    ("left", KeyCode::Left),
    ("right", KeyCode::Right),
    ("pageup", KeyCode::PageUp),
    ("pagedown", KeyCode::PageDown),
    ("home", KeyCode::Home),
    ("end", KeyCode::End),
    ("space", KeyCode::Char(' ')),
    ("backspace", KeyCode::Backspace),
    ("delete", KeyCode::Delete),
    ("insert", KeyCode::Insert),
];

impl Key {
    /// A key as written in a keymap file (`q`, `G`, `ctrl-c`, `pagedown`, `f5`).
    pub fn parse(text: &str) -> Result<Key, String> {
        let (modifiers, rest) = split_modifiers(text);
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) if !c.is_control() && !c.is_whitespace() => KeyCode::Char(c),
            _ => named_key(rest).ok_or_else(|| unknown_key(text))?,
        };
        if modifiers.contains(KeyModifiers::SHIFT) && matches!(code, KeyCode::Char(_)) {
            return Err(format!(
                "`{text}`: write the character itself (a capital letter for shift), not shift-"
            ));
        }
        Ok(Key::normalised(code, modifiers))
    }

    /// The key of a terminal event, normalised the way bindings are.
    pub fn from_event(event: &KeyEvent) -> Key {
        Key::normalised(event.code, event.modifiers)
    }

    /// Drops Shift where the key already carries it and folds ctrl-letters to lower case.
    fn normalised(code: KeyCode, modifiers: KeyModifiers) -> Key {
        let mut modifiers = modifiers;
        let code = match code {
            KeyCode::Char(c) => {
                modifiers.remove(KeyModifiers::SHIFT);
                // Terminals send Ctrl-C and Ctrl-Shift-C alike, so ctrl-letters ignore case.
                if modifiers.contains(KeyModifiers::CONTROL) {
                    KeyCode::Char(c.to_ascii_lowercase())
                } else {
                    KeyCode::Char(c)
                }
            }
            KeyCode::BackTab => {
                modifiers.remove(KeyModifiers::SHIFT);
                KeyCode::BackTab
            }
            KeyCode::Tab if modifiers.contains(KeyModifiers::SHIFT) => {
                modifiers.remove(KeyModifiers::SHIFT);
                KeyCode::BackTab
            }
            other => other,
        };
        Key { code, modifiers }
    }
}

/// The `ctrl-`, `alt-` and `shift-` prefixes of `text`, and what follows them.
fn split_modifiers(text: &str) -> (KeyModifiers, &str) {
    let prefixes = [
        ("ctrl-", KeyModifiers::CONTROL),
        ("alt-", KeyModifiers::ALT),
        ("shift-", KeyModifiers::SHIFT),
    ];
    let mut modifiers = KeyModifiers::NONE;
    let mut rest = text;
    'strip: loop {
        for (prefix, modifier) in prefixes {
            let matches = rest
                .get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix));
            // `ctrl--` is Ctrl and the `-` key: a prefix needs something after it.
            if matches && rest.len() > prefix.len() {
                modifiers |= modifier;
                rest = &rest[prefix.len()..];
                continue 'strip;
            }
        }
        return (modifiers, rest);
    }
}

/// The code of a named key (`enter`, `f5`), in any case.
fn named_key(name: &str) -> Option<KeyCode> {
    let name = name.to_ascii_lowercase();
    if let Some((_, code)) = NAMED_KEYS.iter().find(|(known, _)| *known == name) {
        return Some(*code);
    }
    let number: u8 = name.strip_prefix('f')?.parse().ok()?;
    (1..=12).contains(&number).then_some(KeyCode::F(number))
}

fn unknown_key(text: &str) -> String {
    format!(
        "unknown key `{text}`: write a character (q, G, ?) or a name (enter, esc, tab, backtab, \
         up, down, left, right, pageup, pagedown, home, end, space, backspace, delete, insert, \
         f1 to f12), optionally after ctrl-, alt- or shift-"
    )
}

impl fmt::Display for Key {
    /// The key as a keymap file writes it, so help text can be pasted back into a file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (modifier, prefix) in [
            (KeyModifiers::CONTROL, "ctrl-"),
            (KeyModifiers::ALT, "alt-"),
            (KeyModifiers::SHIFT, "shift-"),
        ] {
            if self.modifiers.contains(modifier) {
                f.write_str(prefix)?;
            }
        }
        if let Some((name, _)) = NAMED_KEYS.iter().find(|(_, code)| *code == self.code) {
            return f.write_str(name);
        }
        match self.code {
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::F(n) => write!(f, "f{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// The bindings of every mode; look keys up with [`Keymap::action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keymap {
    modes: BTreeMap<Mode, BTreeMap<KeyAction, Vec<Key>>>,
}

impl Default for Keymap {
    fn default() -> Keymap {
        Keymap::default_bindings()
    }
}

/// The shipped keymap file, embedded; a test proves it equals [`Keymap::default_bindings`].
pub const DEFAULT_KEYMAP_TOML: &str = include_str!("../keymaps/default.toml");

impl Keymap {
    /// The built-in k9s- and vim-style bindings, written in code.
    pub fn default_bindings() -> Keymap {
        use KeyAction as A;
        let mut keymap = Keymap {
            modes: BTreeMap::new(),
        };
        keymap.bind_all(
            Mode::Global,
            &[
                (A::Quit, &[key('q'), ctrl('c')]),
                (A::Back, &[named(KeyCode::Esc)]),
                (A::Up, &[key('k'), named(KeyCode::Up)]),
                (A::Down, &[key('j'), named(KeyCode::Down)]),
                (A::PageUp, &[named(KeyCode::PageUp), ctrl('b')]),
                (A::PageDown, &[named(KeyCode::PageDown), ctrl('f')]),
                (A::Top, &[key('g'), named(KeyCode::Home)]),
                (A::Bottom, &[key('G'), named(KeyCode::End)]),
                (A::Open, &[named(KeyCode::Enter)]),
                (A::NextPane, &[named(KeyCode::Tab)]),
                (A::Filter, &[key('/')]),
                (A::Command, &[key(':')]),
                (A::Help, &[key('?')]),
                (A::Refresh, &[ctrl('r')]),
                (A::Autoscaler, &[key('a')]),
                (A::Rollouts, &[key('R')]),
            ],
        );
        keymap.bind_all(
            Mode::Workloads,
            &[
                (A::Logs, &[key('l')]),
                (A::Restart, &[key('r')]),
                (A::Scale, &[key('s')]),
                (A::SortNext, &[key('>')]),
                (A::SortReverse, &[key('<')]),
                (A::Reveal, &[key('x')]),
                (A::EditRule, &[key('e')]),
                (A::PauseRule, &[key('P')]),
                (A::NewRollout, &[key('i')]),
                (A::PreviousLogs, &[key('p')]),
            ],
        );
        keymap.bind_all(
            Mode::Detail,
            &[
                (A::Logs, &[key('l')]),
                (A::Restart, &[key('r')]),
                (A::Reveal, &[key('x')]),
                (A::PreviousLogs, &[key('p')]),
            ],
        );
        keymap.bind_all(
            Mode::Logs,
            &[
                (A::Left, &[key('h'), named(KeyCode::Left)]),
                (A::Right, &[named(KeyCode::Right)]),
                (A::Filter, &[key('|')]),
                (A::Follow, &[key('f')]),
                (A::Wrap, &[key('w')]),
                (A::Timestamps, &[key('t')]),
                (A::NextMatch, &[key('n')]),
                (A::PrevMatch, &[key('N')]),
                (A::Search, &[key('/')]),
            ],
        );
        keymap.bind_all(Mode::Help, &[(A::Back, &[key('?')])]);
        keymap.bind_all(
            Mode::Autoscaler,
            &[
                (A::EditRule, &[key('e'), named(KeyCode::Enter)]),
                (A::PauseRule, &[key('P')]),
                (A::Autoscaler, &[key('a')]),
            ],
        );
        keymap.bind_all(
            Mode::Rollouts,
            &[
                (A::PauseRollout, &[key('p')]),
                (A::ResumeRollout, &[key('r')]),
                (A::AbortRollout, &[key('X')]),
                (A::Rollback, &[key('u')]),
                (A::NewRollout, &[key('n')]),
                (A::Rollouts, &[key('R')]),
            ],
        );
        keymap
    }

    /// The keymap `name`: the built-in one with `keymaps/NAME.toml` merged over it if present.
    pub fn resolve(name: &str, paths: &Paths) -> Result<Keymap, ConfigError> {
        let path = paths.keymaps_dir().join(format!("{name}.toml"));
        let text = if is_plain_name(name) {
            read_optional(&path)?
        } else {
            None
        };
        match text {
            Some(text) => Keymap::default_bindings().merged(&path, &text),
            None if name == "default" => Ok(Keymap::default_bindings()),
            None => Err(ConfigError::UnknownKeymap {
                name: name.to_string(),
                path,
            }),
        }
    }

    /// This keymap with the keymap file `text` (the contents of `path`) merged over it.
    pub fn merged(mut self, path: &Path, text: &str) -> Result<Keymap, ConfigError> {
        let file = KeymapFile::parse(path, text)?;
        for binding in &file.bindings {
            let keys = self.modes.entry(binding.mode).or_default();
            if binding.keys.is_empty() {
                keys.remove(&binding.action);
            } else {
                keys.insert(
                    binding.action,
                    binding.keys.iter().map(|(key, _)| *key).collect(),
                );
            }
        }
        file.check_conflicts(&self)?;
        file.check_quit_remains(&self)?;
        Ok(self)
    }

    /// The action `event` asks for in `mode`, looking in the mode's bindings, then the global ones.
    ///
    /// Key releases give nothing, so a terminal that reports them does not act twice.
    pub fn action(&self, mode: Mode, event: &KeyEvent) -> Option<KeyAction> {
        if event.kind == KeyEventKind::Release {
            return None;
        }
        let key = Key::from_event(event);
        self.find(mode, key)
            .or_else(|| self.find(Mode::Global, key))
    }

    /// The bindings of `mode` alone (not the global ones), for the `?` help.
    ///
    /// Each entry is the keys joined by `, `, the action, and its description.
    pub fn bindings(&self, mode: Mode) -> Vec<(String, KeyAction, &'static str)> {
        let Some(actions) = self.modes.get(&mode) else {
            return Vec::new();
        };
        actions
            .iter()
            .map(|(action, keys)| {
                let keys: Vec<String> = keys.iter().map(Key::to_string).collect();
                (keys.join(", "), *action, action.description())
            })
            .collect()
    }

    /// The keys that do `action` in `mode`: the mode's own, or else the global ones.
    pub fn keys(&self, mode: Mode, action: KeyAction) -> &[Key] {
        let own = |mode: Mode| {
            self.modes
                .get(&mode)
                .and_then(|actions| actions.get(&action))
        };
        own(mode)
            .or_else(|| own(Mode::Global))
            .map_or(&[], Vec::as_slice)
    }

    /// The action bound to `key` in `mode` alone.
    fn find(&self, mode: Mode, key: Key) -> Option<KeyAction> {
        let actions = self.modes.get(&mode)?;
        actions
            .iter()
            .find(|(_, keys)| keys.contains(&key))
            .map(|(action, _)| *action)
    }

    /// Replaces the keys of each listed action in `mode`.
    fn bind_all(&mut self, mode: Mode, bindings: &[(KeyAction, &[Key])]) {
        let actions = self.modes.entry(mode).or_default();
        for (action, keys) in bindings {
            actions.insert(*action, keys.to_vec());
        }
    }

    /// A keymap with no bindings, to parse the shipped file onto in tests.
    #[cfg(test)]
    fn empty() -> Keymap {
        Keymap {
            modes: BTreeMap::new(),
        }
    }
}

/// A character key without modifiers.
const fn key(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        modifiers: KeyModifiers::NONE,
    }
}

/// Ctrl and a character key.
const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        modifiers: KeyModifiers::CONTROL,
    }
}

/// A named key without modifiers.
const fn named(code: KeyCode) -> Key {
    Key {
        code,
        modifiers: KeyModifiers::NONE,
    }
}

/// One `action = [keys]` line of a keymap file, with the position of each key.
struct FileBinding {
    mode: Mode,
    action: KeyAction,
    /// Where the action's name stands in the file, for errors about the binding as a whole.
    action_span: std::ops::Range<usize>,
    keys: Vec<(Key, std::ops::Range<usize>)>,
}

/// A keymap file, checked and in file order, with its path and text kept for error messages.
struct KeymapFile<'t> {
    path: PathBuf,
    text: &'t str,
    bindings: Vec<FileBinding>,
}

/// A keymap file as TOML gives it: mode table → action → keys.
type RawKeymap = BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Vec<Spanned<String>>>>;

impl<'t> KeymapFile<'t> {
    /// Parses `text` and checks every mode, action and key name.
    fn parse(path: &Path, text: &'t str) -> Result<KeymapFile<'t>, ConfigError> {
        let raw: RawKeymap =
            toml::from_str(text).map_err(|err| ConfigError::from_toml(path, text, err))?;
        let error = |span, message| ConfigError::invalid(path, text, span, message);

        let mut bindings = Vec::new();
        for (mode_name, actions) in raw {
            let mode = Mode::from_name(mode_name.get_ref()).ok_or_else(|| {
                let names = Mode::ALL.map(Mode::name).join("], [");
                let message = format!(
                    "unknown mode [{}]; the modes are [{names}]",
                    mode_name.get_ref()
                );
                error(mode_name.span(), message)
            })?;
            for (action_name, keys) in actions {
                let action = KeyAction::from_name(action_name.get_ref()).ok_or_else(|| {
                    let names = KeyAction::ALL.map(KeyAction::name).join(", ");
                    let message = format!(
                        "unknown action `{}` in [{}]; the actions are {names}",
                        action_name.get_ref(),
                        mode.name()
                    );
                    error(action_name.span(), message)
                })?;
                let mut parsed: Vec<(Key, std::ops::Range<usize>)> = Vec::new();
                for written in keys {
                    let key =
                        Key::parse(written.get_ref()).map_err(|m| error(written.span(), m))?;
                    if !parsed.iter().any(|(seen, _)| *seen == key) {
                        parsed.push((key, written.span()));
                    }
                }
                let start = action_name.span().start;
                bindings.push((
                    start,
                    FileBinding {
                        mode,
                        action,
                        action_span: action_name.span(),
                        keys: parsed,
                    },
                ));
            }
        }
        bindings.sort_by_key(|(start, _)| *start);
        let bindings = bindings.into_iter().map(|(_, binding)| binding).collect();
        Ok(KeymapFile {
            path: path.to_path_buf(),
            text,
            bindings,
        })
    }

    /// Refuses a file that leaves no key to quit with: an operator must always have a way out.
    fn check_quit_remains(&self, keymap: &Keymap) -> Result<(), ConfigError> {
        let bound = keymap
            .modes
            .get(&Mode::Global)
            .and_then(|actions| actions.get(&KeyAction::Quit))
            .is_some_and(|keys| !keys.is_empty());
        if bound {
            return Ok(());
        }
        let culprit = self
            .bindings
            .iter()
            .find(|b| b.mode == Mode::Global && b.action == KeyAction::Quit);
        let span = culprit.map_or(0..0, |b| b.action_span.clone());
        let message = "this leaves no key for `quit` in [global]; keep at least one \
                       (the default is [\"q\", \"ctrl-c\"])"
            .to_string();
        Err(ConfigError::invalid(&self.path, self.text, span, message))
    }

    /// Refuses a key this file binds that now does two actions in one mode.
    fn check_conflicts(&self, keymap: &Keymap) -> Result<(), ConfigError> {
        for binding in &self.bindings {
            let Some(actions) = keymap.modes.get(&binding.mode) else {
                continue;
            };
            for (key, span) in &binding.keys {
                let other = actions
                    .iter()
                    .find(|(action, keys)| **action != binding.action && keys.contains(key));
                if let Some((other, _)) = other {
                    let message = format!(
                        "`{key}` is bound to both `{}` and `{}` in [{}]; give `{}` other keys \
                         or unbind it with `{} = []`",
                        binding.action.name(),
                        other.name(),
                        binding.mode.name(),
                        other.name(),
                        other.name()
                    );
                    return Err(ConfigError::invalid(
                        &self.path,
                        self.text,
                        span.clone(),
                        message,
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    fn char_press(c: char) -> KeyEvent {
        press(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn merge(text: &str) -> Result<Keymap, ConfigError> {
        Keymap::default_bindings().merged(Path::new("/cfg/keymaps/mine.toml"), text)
    }

    fn error_text(text: &str) -> String {
        merge(text).unwrap_err().to_string()
    }

    #[test]
    fn the_shipped_default_file_is_exactly_the_keymap_in_code() {
        let parsed = Keymap::empty().merged(Path::new("keymaps/default.toml"), DEFAULT_KEYMAP_TOML);
        assert_eq!(parsed.unwrap(), Keymap::default_bindings());
    }

    #[test]
    fn a_mode_binding_comes_before_the_global_one() {
        let keymap = Keymap::default_bindings();
        assert_eq!(
            keymap.action(Mode::Logs, &char_press('/')),
            Some(KeyAction::Search)
        );
        assert_eq!(
            keymap.action(Mode::Workloads, &char_press('/')),
            Some(KeyAction::Filter)
        );
        assert_eq!(
            keymap.action(Mode::Help, &char_press('?')),
            Some(KeyAction::Back)
        );
        assert_eq!(
            keymap.action(Mode::Workloads, &char_press('?')),
            Some(KeyAction::Help)
        );
    }

    #[test]
    fn a_key_not_bound_in_the_mode_falls_back_to_global() {
        let keymap = Keymap::default_bindings();
        assert_eq!(
            keymap.action(Mode::Logs, &char_press('j')),
            Some(KeyAction::Down)
        );
        assert_eq!(keymap.action(Mode::Detail, &char_press('z')), None);
    }

    #[test]
    fn a_capital_letter_matches_with_or_without_a_shift_modifier() {
        let keymap = Keymap::default_bindings();
        let shifted = press(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(
            keymap.action(Mode::Workloads, &shifted),
            Some(KeyAction::Bottom)
        );
        assert_eq!(
            keymap.action(Mode::Workloads, &char_press('G')),
            Some(KeyAction::Bottom)
        );
        assert_eq!(
            keymap.action(Mode::Workloads, &char_press('g')),
            Some(KeyAction::Top)
        );
        let question = press(KeyCode::Char('?'), KeyModifiers::SHIFT);
        assert_eq!(
            keymap.action(Mode::Workloads, &question),
            Some(KeyAction::Help)
        );
    }

    #[test]
    fn ctrl_c_quits_and_plain_c_does_not() {
        let keymap = Keymap::default_bindings();
        let ctrl_c = press(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(keymap.action(Mode::Logs, &ctrl_c), Some(KeyAction::Quit));
        assert_eq!(keymap.action(Mode::Logs, &char_press('c')), None);
    }

    #[test]
    fn a_key_release_does_nothing() {
        let keymap = Keymap::default_bindings();
        let mut release = char_press('q');
        release.kind = KeyEventKind::Release;
        assert_eq!(keymap.action(Mode::Global, &release), None);
    }

    #[test]
    fn shift_tab_arrives_as_backtab() {
        let key = Key::from_event(&press(KeyCode::Tab, KeyModifiers::SHIFT));
        assert_eq!(key, Key::parse("backtab").unwrap());
        assert_eq!(
            Key::parse("shift-tab").unwrap(),
            Key::parse("backtab").unwrap()
        );
    }

    #[test]
    fn every_key_syntax_parses_and_prints_back_the_same() {
        for text in [
            "q",
            "G",
            "?",
            "/",
            ":",
            "-",
            "ctrl-c",
            "ctrl--",
            "alt-x",
            "enter",
            "esc",
            "tab",
            "backtab",
            "up",
            "down",
            "left",
            "right",
            "pageup",
            "pagedown",
            "home",
            "end",
            "space",
            "f1",
            "f12",
            "ctrl-alt-delete",
            "shift-up",
        ] {
            let key = Key::parse(text).unwrap();
            assert_eq!(key.to_string(), text);
        }
        assert_eq!(Key::parse("Enter").unwrap(), named(KeyCode::Enter));
        assert_eq!(Key::parse("ctrl-C").unwrap(), ctrl('c'));
    }

    #[test]
    fn bad_key_strings_are_refused() {
        for text in ["", "ctrl-", "qq", "f13", "f0", "shift-a", "hyper-x", " "] {
            assert!(Key::parse(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn a_user_binding_replaces_only_that_actions_keys() {
        let keymap = merge("[logs]\nfollow = [\"F\", \"space\"]\n").unwrap();
        assert_eq!(
            keymap.action(Mode::Logs, &char_press('F')),
            Some(KeyAction::Follow)
        );
        assert_eq!(
            keymap.action(Mode::Logs, &char_press(' ')),
            Some(KeyAction::Follow)
        );
        assert_eq!(keymap.action(Mode::Logs, &char_press('f')), None);
        assert_eq!(
            keymap.action(Mode::Logs, &char_press('w')),
            Some(KeyAction::Wrap)
        );
    }

    #[test]
    fn dotted_keys_work_like_tables() {
        let keymap = merge("logs.follow = [\"F\"]\n").unwrap();
        assert_eq!(
            keymap.action(Mode::Logs, &char_press('F')),
            Some(KeyAction::Follow)
        );
    }

    #[test]
    fn an_empty_list_unbinds_the_action() {
        let keymap = merge("[global]\nhelp = []\n").unwrap();
        assert_eq!(keymap.action(Mode::Global, &char_press('?')), None);
        assert!(
            keymap
                .bindings(Mode::Global)
                .iter()
                .all(|(_, action, _)| *action != KeyAction::Help)
        );
    }

    #[test]
    fn unbinding_every_quit_key_is_refused() {
        let err = merge("[global]\nquit = []\n").unwrap_err().to_string();
        assert!(err.contains(":2:1: this leaves no key for `quit`"), "{err}");
        assert!(merge("[global]\nquit = [\"ctrl-q\"]\n").is_ok());
    }

    #[test]
    fn a_key_bound_to_two_actions_in_one_mode_is_an_error_at_the_key() {
        let text = error_text("[logs]\nsearch = [\"/\", \"f\"]\n");
        assert!(
            text.starts_with("/cfg/keymaps/mine.toml:2:16: `f` is bound to both"),
            "{text}"
        );
        assert!(text.contains("`follow = []`"), "{text}");
    }

    #[test]
    fn an_unknown_action_is_an_error_at_its_name() {
        let text = error_text("[workloads]\n\nexplode = [\"e\"]\n");
        assert!(
            text.starts_with("/cfg/keymaps/mine.toml:3:1: unknown action `explode`"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_mode_is_an_error_at_its_table() {
        let text = error_text("[editor]\nquit = [\"q\"]\n");
        assert!(
            text.starts_with("/cfg/keymaps/mine.toml:1:2: unknown mode [editor]"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_key_is_an_error_at_the_key() {
        let text = error_text("[global]\nquit = [\"q\", \"ctrl-\"]\n");
        assert!(
            text.starts_with("/cfg/keymaps/mine.toml:2:14: unknown key `ctrl-`"),
            "{text}"
        );
    }

    #[test]
    fn bindings_list_the_keys_and_descriptions_for_help() {
        let bindings = Keymap::default_bindings().bindings(Mode::Global);
        let quit = bindings
            .iter()
            .find(|(_, action, _)| *action == KeyAction::Quit)
            .unwrap();
        assert_eq!(quit, &("q, ctrl-c".to_string(), KeyAction::Quit, "quit"));
        assert_eq!(
            bindings.first().map(|(_, action, _)| *action),
            Some(KeyAction::Quit)
        );
    }

    #[test]
    fn keys_for_an_action_fall_back_to_global() {
        let keymap = Keymap::default_bindings();
        assert_eq!(keymap.keys(Mode::Logs, KeyAction::Search), &[key('/')]);
        assert_eq!(
            keymap.keys(Mode::Logs, KeyAction::Top),
            &[key('g'), named(KeyCode::Home)]
        );
        assert!(keymap.keys(Mode::Logs, KeyAction::Confirm).is_empty());
    }

    #[test]
    fn action_names_round_trip_and_are_unique() {
        for action in KeyAction::ALL {
            assert_eq!(KeyAction::from_name(action.name()), Some(action));
            assert!(!action.description().is_empty());
        }
        let mut names: Vec<_> = KeyAction::ALL.map(KeyAction::name).to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KeyAction::ALL.len());
    }

    #[test]
    fn resolve_merges_the_users_file_and_refuses_an_unknown_name() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            config_dir: dir.path().to_path_buf(),
            data_dir: dir.path().to_path_buf(),
            state_dir: dir.path().to_path_buf(),
        };
        assert_eq!(
            Keymap::resolve("default", &paths).unwrap(),
            Keymap::default_bindings()
        );
        let err = Keymap::resolve("emacs", &paths).unwrap_err().to_string();
        assert!(
            err.contains("no keymap named `emacs`") && err.contains("emacs.toml"),
            "{err}"
        );

        fs::create_dir_all(paths.keymaps_dir()).unwrap();
        fs::write(
            paths.keymaps_dir().join("emacs.toml"),
            "[global]\ndown = [\"ctrl-n\"]\n",
        )
        .unwrap();
        let keymap = Keymap::resolve("emacs", &paths).unwrap();
        let ctrl_n = press(KeyCode::Char('n'), KeyModifiers::CONTROL);
        assert_eq!(
            keymap.action(Mode::Workloads, &ctrl_n),
            Some(KeyAction::Down)
        );
        assert_eq!(keymap.action(Mode::Workloads, &char_press('j')), None);
    }
}
