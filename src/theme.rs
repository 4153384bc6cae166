//! Themes: the semantic styles every widget draws with, resolved once from TOML.
//!
//! A widget asks for `theme.row_selected` or `theme.warning`, never for a colour, so a theme file
//! can restyle the whole console. This module parses the built-in themes (embedded from
//! `themes/*.toml`) and the user's partial patches over them, resolves palette names, dotted-scope
//! fallback and `NO_COLOR`, and hands back plain ratatui styles. It draws nothing and knows no
//! widget.
//!
//! # File format
//! ```toml
//! inherits = "light"            # user files only: the built-in to patch (default: same name, or dark)
//! replica_colors = ["cyan", "magenta", "green", "yellow", "blue", "red"]   # at least 6
//! "ui.row.selected" = { fg = "accent", bg = "#1e1e2e", modifiers = ["bold", "reversed"] }
//! "ui.text.dim" = "dark gray"   # a bare colour is the foreground
//!
//! [palette]                     # names for colours, usable wherever a colour goes
//! accent = "#89b4fa"
//! ```
//! Colours are `#rrggbb`, ratatui colour names (`red`, `light blue`, `dark gray`, `reset`), an
//! index `"0"` to `"255"`, or a palette name. Modifiers are `bold`, `dim`, `italic`, `underlined`,
//! `slow_blink`, `rapid_blink`, `reversed`, `hidden` and `crossed_out`. Scope names must be quoted,
//! since a bare `ui.row = ...` is a nested TOML table.
//!
//! A field takes the style of its scope, or of the nearest parent scope the theme defines
//! (`ui.row.selected` → `ui.row` → `ui`); the scope of each field is listed on the field. A user
//! file replaces whole scopes (a scope it names loses the built-in's attributes) and palette
//! entries (which recolour every built-in scope that uses them); everything else is inherited.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use toml::Spanned;

use crate::config::{ConfigError, is_plain_name, read_optional};
use crate::paths::Paths;

/// The names of the built-in themes; `dark` is the default.
pub const BUILTIN_THEMES: [&str; 3] = ["dark", "light", "high-contrast"];

/// The least number of replica colours a theme may give.
pub const MIN_REPLICA_COLORS: usize = 6;

/// Every style the console draws with; see each field for its scope name in a theme file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    /// `ui.text`: ordinary text.
    pub text: Style,
    /// `ui.text.dim`: secondary text (ages, units, placeholders).
    pub text_dim: Style,
    /// `ui.title`: pane titles.
    pub title: Style,
    /// `ui.border`: borders of panes without focus.
    pub border: Style,
    /// `ui.border.focus`: the border of the pane with focus.
    pub border_focus: Style,
    /// `ui.header`: the top bar.
    pub header: Style,
    /// `ui.header.ok`: a connected target in the top bar.
    pub header_ok: Style,
    /// `ui.header.warn`: a target that is connecting or degraded.
    pub header_warn: Style,
    /// `ui.header.error`: a target that cannot be reached.
    pub header_err: Style,
    /// `ui.table.header`: column titles of tables.
    pub table_header: Style,
    /// `ui.row`: table rows.
    pub row: Style,
    /// `ui.row.selected`: the selected row; keep a modifier so it survives `NO_COLOR`.
    pub row_selected: Style,
    /// `ui.match`: a search hit inside text.
    pub match_highlight: Style,
    /// `warning`: warnings in text.
    pub warning: Style,
    /// `error`: errors in text.
    pub error: Style,
    /// `success`: healthy states and completed actions.
    pub success: Style,
    /// `warning.risk`: a risky security setting (privileged, added capabilities...).
    pub risk: Style,
    /// `ui.text.masked`: a masked secret value.
    pub masked: Style,
    /// `ui.statusbar`: the bottom bar.
    pub status_bar: Style,
    /// `ui.statusbar.key`: key names in the bottom bar's hints.
    pub key_hint: Style,
    /// `ui.command`: the `:` command line.
    pub command_line: Style,
    /// `ui.sparkline.cpu`: CPU sparklines.
    pub sparkline_cpu: Style,
    /// `ui.sparkline.mem`: memory sparklines.
    pub sparkline_mem: Style,
    /// `ui.log.stderr`: the marker in front of a log line from stderr.
    pub stderr: Style,
    /// `replica_colors`: colours for per-replica log prefixes, used in turn.
    pub replica_colors: Vec<Color>,
}

/// A way to reach one style field of a theme.
type Field = fn(&mut Theme) -> &mut Style;

/// Each style field with its scope name; the one table that maps files onto fields.
const FIELDS: [(&str, Field); 24] = [
    ("ui.text", |t| &mut t.text),
    ("ui.text.dim", |t| &mut t.text_dim),
    ("ui.title", |t| &mut t.title),
    ("ui.border", |t| &mut t.border),
    ("ui.border.focus", |t| &mut t.border_focus),
    ("ui.header", |t| &mut t.header),
    ("ui.header.ok", |t| &mut t.header_ok),
    ("ui.header.warn", |t| &mut t.header_warn),
    ("ui.header.error", |t| &mut t.header_err),
    ("ui.table.header", |t| &mut t.table_header),
    ("ui.row", |t| &mut t.row),
    ("ui.row.selected", |t| &mut t.row_selected),
    ("ui.match", |t| &mut t.match_highlight),
    ("warning", |t| &mut t.warning),
    ("error", |t| &mut t.error),
    ("success", |t| &mut t.success),
    ("warning.risk", |t| &mut t.risk),
    ("ui.text.masked", |t| &mut t.masked),
    ("ui.statusbar", |t| &mut t.status_bar),
    ("ui.statusbar.key", |t| &mut t.key_hint),
    ("ui.command", |t| &mut t.command_line),
    ("ui.sparkline.cpu", |t| &mut t.sparkline_cpu),
    ("ui.sparkline.mem", |t| &mut t.sparkline_mem),
    ("ui.log.stderr", |t| &mut t.stderr),
];

/// The shipped theme files, embedded so the binary needs nothing on disk.
const BUILTIN_SOURCES: [(&str, &str); 3] = [
    ("dark", include_str!("../themes/dark.toml")),
    ("light", include_str!("../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../themes/high-contrast.toml"),
    ),
];

/// Whether the user asked for no colour: `NO_COLOR` set to a non-empty value (no-color.org).
pub fn no_color_requested() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}

impl Theme {
    /// The default theme, written in code; `themes/dark.toml` is proven equal to it by a test.
    pub fn dark() -> Theme {
        let fg = |color: Color| Style::new().fg(color);
        let bold = Modifier::BOLD;
        Theme {
            text: Style::new(),
            text_dim: fg(Color::DarkGray),
            title: fg(Color::Cyan).add_modifier(bold),
            border: fg(Color::DarkGray),
            border_focus: fg(Color::Cyan),
            header: fg(Color::Gray),
            header_ok: fg(Color::Green),
            header_warn: fg(Color::Yellow),
            header_err: fg(Color::Red).add_modifier(bold),
            table_header: fg(Color::Yellow).add_modifier(bold),
            row: Style::new(),
            row_selected: fg(Color::Cyan).add_modifier(Modifier::REVERSED | bold),
            match_highlight: fg(Color::Yellow).add_modifier(Modifier::REVERSED),
            warning: fg(Color::Yellow),
            error: fg(Color::Red).add_modifier(bold),
            success: fg(Color::Green),
            risk: fg(Color::LightRed).add_modifier(bold),
            masked: fg(Color::DarkGray),
            status_bar: fg(Color::Gray),
            key_hint: fg(Color::Cyan).add_modifier(bold),
            command_line: fg(Color::White),
            sparkline_cpu: fg(Color::Green),
            sparkline_mem: fg(Color::Magenta),
            stderr: fg(Color::Red),
            replica_colors: vec![
                Color::Cyan,
                Color::Magenta,
                Color::Green,
                Color::Yellow,
                Color::Blue,
                Color::LightRed,
                Color::LightCyan,
                Color::LightMagenta,
                Color::LightGreen,
                Color::LightBlue,
            ],
        }
    }

    /// The theme `name`: a built-in, patched by `themes/NAME.toml` in the config dir if present.
    pub fn resolve(name: &str, paths: &Paths, no_color: bool) -> Result<Theme, ConfigError> {
        let user_path = paths.themes_dir().join(format!("{name}.toml"));
        let user_text = if is_plain_name(name) {
            read_optional(&user_path)?
        } else {
            None
        };
        let user = match &user_text {
            Some(text) => Some(ThemeSource::parse(user_path.clone(), text)?),
            None => None,
        };

        let base_name = match &user {
            Some(user) => user.base_name(name)?,
            None if builtin_source(name).is_some() => name.to_string(),
            None => {
                let builtin = BUILTIN_THEMES.join(", ");
                return Err(ConfigError::UnknownTheme {
                    name: name.into(),
                    path: user_path,
                    builtin,
                });
            }
        };
        let base = ThemeSource::builtin(&base_name)?;

        let theme = Layers::new(&base, user.as_ref()).resolve()?;
        Ok(if no_color {
            theme.without_colors()
        } else {
            theme
        })
    }

    /// The same theme with every colour removed and every modifier kept, for `NO_COLOR`.
    pub fn without_colors(mut self) -> Theme {
        for (_, field) in FIELDS {
            let style = field(&mut self);
            *style = Style::new()
                .add_modifier(style.add_modifier)
                .remove_modifier(style.sub_modifier);
        }
        for color in &mut self.replica_colors {
            *color = Color::Reset;
        }
        self
    }

    /// The colour of the `index`th replica's log prefix, cycling through `replica_colors`.
    pub fn replica_color(&self, index: usize) -> Color {
        match self.replica_colors.len() {
            0 => Color::Reset,
            len => self.replica_colors[index % len],
        }
    }

    /// Every scope name a field reads, in the order of the fields.
    pub fn scope_names() -> impl Iterator<Item = &'static str> {
        FIELDS.iter().map(|(scope, _)| *scope)
    }
}

/// The embedded text of a built-in theme.
fn builtin_source(name: &str) -> Option<&'static str> {
    BUILTIN_SOURCES
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, text)| *text)
}

/// Field scopes and every dotted prefix of them: the scopes a file may define.
fn known_scopes() -> BTreeSet<&'static str> {
    let mut scopes = BTreeSet::new();
    for scope in Theme::scope_names() {
        scopes.insert(scope);
        let mut rest = scope;
        while let Some(dot) = rest.rfind('.') {
            rest = &scope[..dot];
            scopes.insert(rest);
        }
    }
    scopes
}

/// One theme file as written, with its path and text kept for error messages.
struct ThemeSource<'t> {
    path: PathBuf,
    text: &'t str,
    file: ThemeFile,
}

impl<'t> ThemeSource<'t> {
    /// Parses and checks a theme file, without resolving colours yet.
    fn parse(path: PathBuf, text: &'t str) -> Result<ThemeSource<'t>, ConfigError> {
        let file: ThemeFile =
            toml::from_str(text).map_err(|err| ConfigError::from_toml(&path, text, err))?;
        let source = ThemeSource { path, text, file };
        source.check()?;
        Ok(source)
    }

    /// The embedded built-in theme `name`; callers pass only names from [`BUILTIN_THEMES`].
    fn builtin(name: &str) -> Result<ThemeSource<'static>, ConfigError> {
        let text = builtin_source(name).unwrap_or_default();
        ThemeSource::parse(builtin_path(name), text)
    }

    /// An error at `span` of this file.
    fn error(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(&self.path, self.text, span, message)
    }

    /// Refuses unknown scopes and attributes, too few replica colours and bad modifiers.
    fn check(&self) -> Result<(), ConfigError> {
        let known = known_scopes();
        for (scope, spec) in &self.file.scopes {
            if !known.contains(scope.get_ref().as_str()) {
                let list: Vec<_> = known.iter().copied().collect();
                let message = format!(
                    "unknown theme scope `{}`; the scopes are {}",
                    scope.get_ref(),
                    list.join(", ")
                );
                return Err(self.error(scope.span(), message));
            }
            self.check_style(scope.get_ref(), spec)?;
        }
        if let Some(colors) = &self.file.replica_colors
            && colors.get_ref().len() < MIN_REPLICA_COLORS
        {
            let message = format!(
                "`replica_colors` needs at least {MIN_REPLICA_COLORS} colours so that \
                     neighbouring replicas differ, not {}",
                colors.get_ref().len()
            );
            return Err(self.error(colors.span(), message));
        }
        Ok(())
    }

    /// Refuses unknown attributes and modifiers in the style of `scope`.
    fn check_style(&self, scope: &str, spec: &StyleSpec) -> Result<(), ConfigError> {
        let StyleSpec::Full {
            modifiers, unknown, ..
        } = spec
        else {
            return Ok(());
        };
        if let Some(attribute) = unknown.first() {
            let message = format!(
                "unknown style attribute `{}` in `{scope}`: a style has fg, bg and modifiers \
                 (quote a scope with dots: \"{scope}.{}\" = {{ ... }})",
                attribute.get_ref(),
                attribute.get_ref()
            );
            return Err(self.error(attribute.span(), message));
        }
        for name in modifiers {
            if parse_modifier(name.get_ref()).is_none() {
                let message = format!(
                    "unknown modifier `{}` in `{scope}`; modifiers are {}",
                    name.get_ref(),
                    MODIFIERS.map(|(name, _)| name).join(", ")
                );
                return Err(self.error(name.span(), message));
            }
        }
        Ok(())
    }

    /// The built-in this user file patches: `inherits`, else the same name, else dark.
    fn base_name(&self, name: &str) -> Result<String, ConfigError> {
        match &self.file.inherits {
            Some(inherits) if builtin_source(inherits.get_ref()).is_some() => {
                Ok(inherits.get_ref().clone())
            }
            Some(inherits) => {
                let message = format!(
                    "`inherits` must name a built-in theme ({}), not `{}`",
                    BUILTIN_THEMES.join(", "),
                    inherits.get_ref()
                );
                Err(self.error(inherits.span(), message))
            }
            None if builtin_source(name).is_some() => Ok(name.to_string()),
            None => Ok("dark".to_string()),
        }
    }
}

/// A built-in theme with the user's patch laid over it, before colours are resolved.
struct Layers<'a> {
    palette: BTreeMap<&'a str, (&'a ThemeSource<'a>, &'a Spanned<String>)>,
    scopes: BTreeMap<&'a str, (&'a ThemeSource<'a>, &'a Spanned<String>, &'a StyleSpec)>,
    replica_colors: Option<(&'a ThemeSource<'a>, &'a Spanned<Vec<Spanned<String>>>)>,
}

impl<'a> Layers<'a> {
    /// Lays `user` (if any) over `base`: later entries replace earlier ones of the same name.
    fn new(base: &'a ThemeSource<'a>, user: Option<&'a ThemeSource<'a>>) -> Layers<'a> {
        let mut layers = Layers {
            palette: BTreeMap::new(),
            scopes: BTreeMap::new(),
            replica_colors: None,
        };
        for source in std::iter::once(base).chain(user) {
            for (name, color) in &source.file.palette {
                layers.palette.insert(name.get_ref(), (source, color));
            }
            for (scope, spec) in &source.file.scopes {
                layers.scopes.insert(scope.get_ref(), (source, scope, spec));
            }
            if let Some(colors) = &source.file.replica_colors {
                layers.replica_colors = Some((source, colors));
            }
        }
        layers
    }

    /// Resolves palette names, scope fallback and colours into a theme.
    fn resolve(&self) -> Result<Theme, ConfigError> {
        let palette = self.resolve_palette()?;
        let mut theme = Theme::empty();
        for (scope, field) in FIELDS {
            if let Some((source, key, spec)) = self.lookup(scope) {
                *field(&mut theme) = resolve_style(source, key, spec, &palette)?;
            }
        }
        if let Some((source, colors)) = self.replica_colors {
            theme.replica_colors = colors
                .get_ref()
                .iter()
                .map(|color| resolve_color(source, color, &palette))
                .collect::<Result<_, _>>()?;
        }
        Ok(theme)
    }

    /// Palette entries as colours; a palette value cannot name another palette entry.
    fn resolve_palette(&self) -> Result<BTreeMap<&'a str, Color>, ConfigError> {
        let mut palette = BTreeMap::new();
        for (name, (source, value)) in &self.palette {
            let color = Color::from_str(value.get_ref()).map_err(|_| {
                let message = format!(
                    "`palette.{name}` = {:?} is not a colour: use #rrggbb, a colour name \
                     (red, light blue...) or an index 0-255",
                    value.get_ref()
                );
                source.error(value.span(), message)
            })?;
            palette.insert(*name, color);
        }
        Ok(palette)
    }

    /// The style of `scope`, or of its nearest parent that is defined.
    fn lookup(
        &self,
        scope: &str,
    ) -> Option<(&'a ThemeSource<'a>, &'a Spanned<String>, &'a StyleSpec)> {
        let mut scope = scope;
        loop {
            if let Some(entry) = self.scopes.get(scope) {
                return Some(*entry);
            }
            scope = &scope[..scope.rfind('.')?];
        }
    }
}

impl Theme {
    /// A theme with every style empty, filled in by resolution.
    fn empty() -> Theme {
        Theme {
            text: Style::new(),
            text_dim: Style::new(),
            title: Style::new(),
            border: Style::new(),
            border_focus: Style::new(),
            header: Style::new(),
            header_ok: Style::new(),
            header_warn: Style::new(),
            header_err: Style::new(),
            table_header: Style::new(),
            row: Style::new(),
            row_selected: Style::new(),
            match_highlight: Style::new(),
            warning: Style::new(),
            error: Style::new(),
            success: Style::new(),
            risk: Style::new(),
            masked: Style::new(),
            status_bar: Style::new(),
            key_hint: Style::new(),
            command_line: Style::new(),
            sparkline_cpu: Style::new(),
            sparkline_mem: Style::new(),
            stderr: Style::new(),
            replica_colors: Vec::new(),
        }
    }
}

/// The style `spec` written under the scope `key`, with its colour names resolved.
fn resolve_style(
    source: &ThemeSource<'_>,
    key: &Spanned<String>,
    spec: &StyleSpec,
    palette: &BTreeMap<&str, Color>,
) -> Result<Style, ConfigError> {
    match spec {
        StyleSpec::Bare(color) => {
            // A bare string arrives without its position; the scope's key is on the same line.
            let color = Spanned::new(key.span(), color.clone());
            Ok(Style::new().fg(resolve_color(source, &color, palette)?))
        }
        StyleSpec::Full {
            fg, bg, modifiers, ..
        } => {
            let mut style = Style::new();
            if let Some(fg) = fg {
                style = style.fg(resolve_color(source, fg, palette)?);
            }
            if let Some(bg) = bg {
                style = style.bg(resolve_color(source, bg, palette)?);
            }
            // Modifiers were checked when the file was parsed; an unknown one cannot reach here.
            let modifier = modifiers
                .iter()
                .filter_map(|name| parse_modifier(name.get_ref()))
                .collect();
            Ok(style.add_modifier(modifier))
        }
    }
}

/// A palette name or a colour written in a style.
fn resolve_color(
    source: &ThemeSource<'_>,
    color: &Spanned<String>,
    palette: &BTreeMap<&str, Color>,
) -> Result<Color, ConfigError> {
    let name = color.get_ref().as_str();
    if let Some(color) = palette.get(name) {
        return Ok(*color);
    }
    Color::from_str(name).map_err(|_| {
        let message = format!(
            "unknown colour {name:?}: use #rrggbb, a colour name (red, light blue...), \
             an index 0-255 or a name from [palette]"
        );
        source.error(color.span(), message)
    })
}

/// The modifier names a theme may use.
const MODIFIERS: [(&str, Modifier); 9] = [
    ("bold", Modifier::BOLD),
    ("dim", Modifier::DIM),
    ("italic", Modifier::ITALIC),
    ("underlined", Modifier::UNDERLINED),
    ("slow_blink", Modifier::SLOW_BLINK),
    ("rapid_blink", Modifier::RAPID_BLINK),
    ("reversed", Modifier::REVERSED),
    ("hidden", Modifier::HIDDEN),
    ("crossed_out", Modifier::CROSSED_OUT),
];

fn parse_modifier(name: &str) -> Option<Modifier> {
    MODIFIERS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, modifier)| *modifier)
}

/// A theme file as written: top-level keys other than the three known ones are scopes.
///
/// Tables are never wrapped in `Spanned`: a table implied by a dotted key has no span, and
/// asking for one would turn a clear error into a confusing one. Keys and leaf values have spans.
#[derive(Default)]
struct ThemeFile {
    inherits: Option<Spanned<String>>,
    palette: BTreeMap<Spanned<String>, Spanned<String>>,
    replica_colors: Option<Spanned<Vec<Spanned<String>>>>,
    scopes: Vec<(Spanned<String>, StyleSpec)>,
}

impl<'de> Deserialize<'de> for ThemeFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ThemeFile, D::Error> {
        deserializer.deserialize_map(ThemeFileVisitor)
    }
}

struct ThemeFileVisitor;

impl<'de> Visitor<'de> for ThemeFileVisitor {
    type Value = ThemeFile;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a theme table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ThemeFile, A::Error> {
        let mut file = ThemeFile::default();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            match key.get_ref().as_str() {
                "inherits" => file.inherits = Some(map.next_value()?),
                "palette" => file.palette = map.next_value()?,
                "replica_colors" => file.replica_colors = Some(map.next_value()?),
                _ => file.scopes.push((key, map.next_value()?)),
            }
        }
        Ok(file)
    }
}

/// One style as written: a bare colour (the foreground) or a table.
enum StyleSpec {
    Bare(String),
    Full {
        fg: Option<Spanned<String>>,
        bg: Option<Spanned<String>>,
        modifiers: Vec<Spanned<String>>,
        /// Keys that are not style attributes, refused after parsing with a hint.
        unknown: Vec<Spanned<String>>,
    },
}

impl<'de> Deserialize<'de> for StyleSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StyleSpec, D::Error> {
        deserializer.deserialize_any(StyleSpecVisitor)
    }
}

struct StyleSpecVisitor;

impl<'de> Visitor<'de> for StyleSpecVisitor {
    type Value = StyleSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a colour or a table of fg, bg and modifiers")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<StyleSpec, E> {
        Ok(StyleSpec::Bare(value.to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StyleSpec, A::Error> {
        let (mut fg, mut bg, mut modifiers, mut unknown) = (None, None, Vec::new(), Vec::new());
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            match key.get_ref().as_str() {
                "fg" => fg = Some(map.next_value()?),
                "bg" => bg = Some(map.next_value()?),
                "modifiers" => modifiers = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    unknown.push(key);
                }
            }
        }
        Ok(StyleSpec::Full {
            fg,
            bg,
            modifiers,
            unknown,
        })
    }
}

/// The path a built-in theme is reported under in errors: where it lives in the source tree.
fn builtin_path(name: &str) -> PathBuf {
    Path::new("themes").join(format!("{name}.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn temp_paths() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under(dir.path());
        (dir, paths)
    }

    fn write_theme(paths: &Paths, name: &str, text: &str) {
        fs::create_dir_all(paths.themes_dir()).unwrap();
        fs::write(paths.themes_dir().join(format!("{name}.toml")), text).unwrap();
    }

    fn resolve_user(name: &str, text: &str) -> Result<Theme, ConfigError> {
        let (_dir, paths) = temp_paths();
        write_theme(&paths, name, text);
        Theme::resolve(name, &paths, false)
    }

    /// The scopes a built-in file defines exactly, without fallback.
    fn defined_scopes(name: &str) -> BTreeSet<String> {
        let source = ThemeSource::builtin(name).unwrap();
        source
            .file
            .scopes
            .iter()
            .map(|(scope, _)| scope.get_ref().clone())
            .collect()
    }

    #[test]
    fn the_shipped_dark_file_is_exactly_the_theme_in_code() {
        let (_dir, paths) = temp_paths();
        assert_eq!(
            Theme::resolve("dark", &paths, false).unwrap(),
            Theme::dark()
        );
    }

    #[test]
    fn light_and_high_contrast_parse_and_set_every_field_themselves() {
        for name in ["light", "high-contrast"] {
            let defined = defined_scopes(name);
            for scope in Theme::scope_names() {
                assert!(defined.contains(scope), "{name} does not define `{scope}`");
            }
            let source = ThemeSource::builtin(name).unwrap();
            assert!(
                source.file.replica_colors.is_some(),
                "{name} has no replica_colors"
            );
            let (_dir, paths) = temp_paths();
            let theme = Theme::resolve(name, &paths, false).unwrap();
            assert_ne!(theme, Theme::dark(), "{name} is the dark theme");
            assert!(theme.replica_colors.len() >= MIN_REPLICA_COLORS);
        }
    }

    #[test]
    fn every_builtin_theme_keeps_the_selected_row_and_errors_visible_without_colour() {
        let (_dir, paths) = temp_paths();
        for name in BUILTIN_THEMES {
            let theme = Theme::resolve(name, &paths, true).unwrap();
            assert!(
                !theme.row_selected.add_modifier.is_empty(),
                "{name}: selected row"
            );
            assert!(!theme.error.add_modifier.is_empty(), "{name}: error");
            assert!(
                !theme.match_highlight.add_modifier.is_empty(),
                "{name}: search hit"
            );
        }
    }

    #[test]
    fn every_field_has_a_distinct_scope() {
        let scopes: BTreeSet<_> = Theme::scope_names().collect();
        assert_eq!(scopes.len(), FIELDS.len());
    }

    #[test]
    fn user_theme_patches_only_the_styles_it_names() {
        let theme = resolve_user("dark", "\"ui.row.selected\" = { fg = \"#ff0000\" }\n").unwrap();
        assert_eq!(theme.row_selected, Style::new().fg(Color::Rgb(255, 0, 0)));
        let expected = Theme {
            row_selected: theme.row_selected,
            ..Theme::dark()
        };
        assert_eq!(theme, expected);
    }

    #[test]
    fn a_user_palette_entry_recolours_the_builtin_scopes_that_use_it() {
        let theme = resolve_user("dark", "[palette]\naccent = \"#102030\"\n").unwrap();
        assert_eq!(theme.title.fg, Some(Color::Rgb(0x10, 0x20, 0x30)));
        assert_eq!(theme.border_focus.fg, Some(Color::Rgb(0x10, 0x20, 0x30)));
        assert_eq!(theme.error, Theme::dark().error);
    }

    #[test]
    fn a_dotted_palette_key_and_a_table_header_scope_parse() {
        let text = "palette.sea = \"#0000ff\"\n[\"ui.row\"]\nfg = \"sea\"\n";
        let theme = resolve_user("mine", text).unwrap();
        assert_eq!(theme.row, Style::new().fg(Color::Rgb(0, 0, 255)));
    }

    #[test]
    fn a_new_theme_name_patches_dark_and_inherits_picks_another_base() {
        let theme = resolve_user("mine", "\"error\" = \"magenta\"\n").unwrap();
        assert_eq!(
            theme,
            Theme {
                error: Style::new().fg(Color::Magenta),
                ..Theme::dark()
            }
        );

        let (_dir, paths) = temp_paths();
        let light = Theme::resolve("light", &paths, false).unwrap();
        let theme =
            resolve_user("mine", "inherits = \"light\"\n\"error\" = \"magenta\"\n").unwrap();
        assert_eq!(
            theme,
            Theme {
                error: Style::new().fg(Color::Magenta),
                ..light
            }
        );
    }

    #[test]
    fn a_missing_scope_falls_back_along_the_dots() {
        let source = ThemeSource::parse(
            PathBuf::from("t.toml"),
            "\"ui\" = \"blue\"\n\"ui.row\" = { fg = \"red\", modifiers = [\"bold\"] }\n",
        )
        .unwrap();
        let theme = Layers::new(&source, None).resolve().unwrap();
        assert_eq!(
            theme.row_selected,
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        );
        assert_eq!(theme.table_header, Style::new().fg(Color::Blue));
        assert_eq!(theme.error, Style::new(), "`error` has no parent scope");
    }

    #[test]
    fn no_color_strips_colours_but_keeps_reverse() {
        let (_dir, paths) = temp_paths();
        let theme = Theme::resolve("dark", &paths, true).unwrap();
        assert_eq!(
            theme.row_selected,
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        );
        assert_eq!(theme.error, Style::new().add_modifier(Modifier::BOLD));
        assert_eq!(theme.border, Style::new());
        assert!(
            theme
                .replica_colors
                .iter()
                .all(|color| *color == Color::Reset)
        );
    }

    #[test]
    fn colours_may_be_hex_names_indexes_or_palette_names() {
        let theme = resolve_user(
            "mine",
            "[palette]\nsea = \"#0077be\"\n[\"ui.row\"]\nfg = \"sea\"\nbg = \"236\"\n\
             [\"ui.text\"]\nfg = \"light blue\"\n",
        )
        .unwrap();
        assert_eq!(
            theme.row,
            Style::new()
                .fg(Color::Rgb(0, 0x77, 0xbe))
                .bg(Color::Indexed(236))
        );
        assert_eq!(theme.text, Style::new().fg(Color::LightBlue));
    }

    #[test]
    fn an_unknown_scope_is_an_error_at_its_key() {
        let err =
            resolve_user("mine", "\"ui.text\" = \"red\"\n\"ui.rows\" = \"blue\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("mine.toml:2:1: unknown theme scope `ui.rows`"),
            "{text}"
        );
    }

    #[test]
    fn an_unquoted_dotted_scope_gets_a_hint_to_quote_it() {
        let err = resolve_user("mine", "ui.row.selected = { fg = \"red\" }\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("mine.toml:1:4: unknown style attribute `row` in `ui`"),
            "{text}"
        );
        assert!(text.contains("\"ui.row\""), "{text}");
    }

    #[test]
    fn a_bad_colour_is_an_error_at_the_colour() {
        let err = resolve_user("mine", "\"ui.row\" = { bg = \"#12345\" }\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("mine.toml:1:19: unknown colour \"#12345\""),
            "{text}"
        );
    }

    #[test]
    fn a_bad_modifier_is_an_error_at_the_modifier() {
        let err = resolve_user(
            "mine",
            "\"ui.row\" = { modifiers = [\"bold\", \"blink\"] }\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("mine.toml:1:35: unknown modifier `blink`"),
            "{text}"
        );
    }

    #[test]
    fn too_few_replica_colours_is_an_error() {
        let err = resolve_user("mine", "replica_colors = [\"red\", \"blue\"]\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("mine.toml:1:18: `replica_colors` needs at least 6"),
            "{text}"
        );
    }

    #[test]
    fn inherits_must_name_a_builtin() {
        let err = resolve_user("mine", "inherits = \"solarized\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("mine.toml:1:12: `inherits` must name a built-in")
        );
    }

    #[test]
    fn an_unknown_theme_name_says_where_it_looked() {
        let (_dir, paths) = temp_paths();
        let err = Theme::resolve("solarized", &paths, false).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no theme named `solarized`"), "{text}");
        assert!(text.contains("themes/solarized.toml"), "{text}");
    }

    #[test]
    fn replica_colours_cycle() {
        let theme = Theme::dark();
        let len = theme.replica_colors.len();
        assert_eq!(theme.replica_color(len + 1), theme.replica_colors[1]);
    }

    #[test]
    fn builtin_errors_are_reported_under_the_shipped_path() {
        let source = ThemeSource::parse(builtin_path("dark"), "\"nope\" = \"red\"\n");
        let text = source.err().map(|err| err.to_string()).unwrap_or_default();
        assert!(text.starts_with("themes/dark.toml:1:1:"), "{text}");
    }
}
