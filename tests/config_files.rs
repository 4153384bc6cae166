//! The fixture files under `tests/valid_configs/` and `tests/invalid_configs/`, loaded the way the
//! console loads a user's files.
//!
//! Config fixtures sit at the top of each folder, theme fixtures under `themes/`, keymap fixtures
//! under `keymaps/`. Every valid fixture must load. Every invalid one must fail, and its first line
//! is `# expect: LINE:COLUMN: FRAGMENT`: the error must name the file at that line and column and
//! contain the fragment.

use std::fs;
use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pilothouse::config::{Config, ConfigError};
use pilothouse::keymap::{KeyAction, Keymap, Mode};
use pilothouse::paths::Paths;
use pilothouse::theme::Theme;
use ratatui::style::{Color, Modifier, Style};

/// What a fixture is, which decides how it is loaded.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Config,
    Theme,
    Keymap,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Config, Kind::Theme, Kind::Keymap];

    fn folder(self, root: &Path) -> PathBuf {
        match self {
            Kind::Config => root.to_path_buf(),
            Kind::Theme => root.join("themes"),
            Kind::Keymap => root.join("keymaps"),
        }
    }
}

fn fixtures_root(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

/// The `.toml` files directly in `folder`, sorted so failures read in a stable order.
fn toml_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(folder)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

/// A config, data and state directory in a fresh temporary directory.
fn temp_paths() -> (tempfile::TempDir, Paths) {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::under(dir.path());
    (dir, paths)
}

/// Copies a theme or keymap fixture into `dir` under its own file name.
fn install(fixture: &Path, dir: &Path) -> String {
    fs::create_dir_all(dir).unwrap();
    let file_name = fixture.file_name().unwrap();
    fs::copy(fixture, dir.join(file_name)).unwrap();
    fixture.file_stem().unwrap().to_string_lossy().into_owned()
}

/// Loads one fixture as the console would, returning the error text on failure.
fn load(kind: Kind, fixture: &Path) -> Result<(), String> {
    let (_dir, paths) = temp_paths();
    let result = match kind {
        Kind::Config => {
            let text = fs::read_to_string(fixture).unwrap();
            Config::parse(fixture, &text).map(drop)
        }
        Kind::Theme => {
            let name = install(fixture, &paths.themes_dir());
            Theme::resolve(&name, &paths, false).map(drop)
        }
        Kind::Keymap => {
            let name = install(fixture, &paths.keymaps_dir());
            Keymap::resolve(&name, &paths).map(drop)
        }
    };
    result.map_err(|err: ConfigError| err.to_string())
}

/// The `LINE:COLUMN` and fragment of an invalid fixture's `# expect:` first line.
fn expectation(fixture: &Path) -> (String, String) {
    let text = fs::read_to_string(fixture).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{} has no `# expect:` first line", fixture.display()));
    let mut parts = rest.splitn(3, ':');
    let (line, column, fragment) = (parts.next(), parts.next(), parts.next());
    match (line, column, fragment) {
        (Some(line), Some(column), Some(fragment)) => {
            (format!("{line}:{column}"), fragment.trim().to_string())
        }
        _ => panic!(
            "{}: write `# expect: LINE:COLUMN: FRAGMENT`",
            fixture.display()
        ),
    }
}

#[test]
fn every_valid_fixture_loads() {
    let root = fixtures_root("valid_configs");
    let mut failures = Vec::new();
    let mut count = 0;
    for kind in Kind::ALL {
        for fixture in toml_files(&kind.folder(&root)) {
            count += 1;
            if let Err(err) = load(kind, &fixture) {
                failures.push(format!("{}: {err}", fixture.display()));
            }
        }
    }
    assert!(count >= 10, "only {count} valid fixtures found");
    assert!(
        failures.is_empty(),
        "valid fixtures failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_invalid_fixture_fails_at_its_expected_line_and_column() {
    let root = fixtures_root("invalid_configs");
    let mut failures = Vec::new();
    let mut count = 0;
    for kind in Kind::ALL {
        for fixture in toml_files(&kind.folder(&root)) {
            count += 1;
            let (position, fragment) = expectation(&fixture);
            let file_name = fixture.file_name().unwrap().to_string_lossy().into_owned();
            match load(kind, &fixture) {
                Ok(()) => failures.push(format!("{}: loaded without error", fixture.display())),
                Err(err) => {
                    let located = format!("{file_name}:{position}: ");
                    if !err.contains(&located) || !err.contains(&fragment) {
                        failures.push(format!(
                            "{}:\n  expected `{located}` and `{fragment}`\n  got      {err}",
                            fixture.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(count >= 25, "only {count} invalid fixtures found");
    assert!(
        failures.is_empty(),
        "invalid fixtures went wrong:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_documented_defaults_file_equals_the_defaults_in_code() {
    let fixture = fixtures_root("valid_configs").join("defaults.toml");
    let text = fs::read_to_string(&fixture).unwrap();
    assert_eq!(Config::parse(&fixture, &text).unwrap(), Config::default());
}

#[test]
fn config_load_reads_config_toml_from_the_config_directory() {
    let (_dir, paths) = temp_paths();
    let fixture = fixtures_root("valid_configs").join("several_docker_hosts.toml");
    fs::create_dir_all(&paths.config_dir).unwrap();
    fs::copy(&fixture, paths.config_file()).unwrap();

    let config = Config::load(&paths).unwrap();
    assert_eq!(config.theme, "light");
    assert!(config.read_only);
    let targets: Vec<_> = config
        .docker_targets()
        .into_iter()
        .map(|target| (target.name, target.host))
        .collect();
    assert_eq!(
        targets,
        [
            ("local".to_string(), None),
            (
                "edge-1".to_string(),
                Some("tcp://127.0.0.1:2375".to_string())
            ),
            ("lab".to_string(), Some("http://127.0.0.1:2376".to_string())),
            (
                "rootless".to_string(),
                Some("unix:///run/user/1000/docker.sock".to_string())
            ),
        ]
    );
}

#[test]
fn a_bad_config_toml_in_the_config_directory_is_reported_under_its_real_path() {
    let (_dir, paths) = temp_paths();
    fs::create_dir_all(&paths.config_dir).unwrap();
    fs::write(paths.config_file(), "[ui]\nframe_rate = 0\n").unwrap();
    let err = Config::load(&paths).unwrap_err().to_string();
    let expected = format!("{}:2:14: `ui.frame_rate`", paths.config_file().display());
    assert!(err.starts_with(&expected), "{err}");
}

#[test]
fn a_user_theme_fixture_patches_dark_and_keeps_everything_else() {
    let (_dir, paths) = temp_paths();
    let fixture = fixtures_root("valid_configs").join("themes/ocean.toml");
    let name = install(&fixture, &paths.themes_dir());
    let theme = Theme::resolve(&name, &paths, false).unwrap();

    let dark = Theme::dark();
    let accent = Color::Rgb(0x5f, 0xaf, 0xd7);
    assert_eq!(
        theme.row_selected,
        Style::new()
            .fg(Color::Black)
            .bg(Color::Rgb(0, 0x5f, 0x87))
            .add_modifier(Modifier::BOLD)
    );
    assert_eq!(theme.text_dim, Style::new().fg(Color::Indexed(244)));
    assert_eq!(
        theme.title,
        dark.title.fg(accent),
        "the palette recolours the built-in title"
    );
    assert_eq!(theme.error, dark.error);
    assert_eq!(theme.replica_colors.len(), 6);
}

#[test]
fn no_color_keeps_the_selected_row_reversed_in_a_patched_theme() {
    let (_dir, paths) = temp_paths();
    let fixture = fixtures_root("valid_configs").join("themes/paper.toml");
    let name = install(&fixture, &paths.themes_dir());
    let theme = Theme::resolve(&name, &paths, true).unwrap();
    assert_eq!(theme.row_selected.fg, None);
    assert_eq!(theme.row_selected.bg, None);
    assert!(theme.row_selected.add_modifier.contains(Modifier::REVERSED));
    assert_eq!(theme.border, Style::new());
}

#[test]
fn a_user_keymap_fixture_adds_replaces_and_unbinds_keys() {
    let (_dir, paths) = temp_paths();
    let fixture = fixtures_root("valid_configs").join("keymaps/vim-extra.toml");
    let name = install(&fixture, &paths.keymaps_dir());
    let keymap = Keymap::resolve(&name, &paths).unwrap();

    let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
    let plain = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
    assert_eq!(
        keymap.action(Mode::Workloads, &ctrl('n')),
        Some(KeyAction::Down)
    );
    assert_eq!(
        keymap.action(Mode::Workloads, &ctrl('r')),
        None,
        "refresh was unbound"
    );
    assert_eq!(
        keymap.action(Mode::Logs, &plain('l')),
        Some(KeyAction::Right)
    );
    assert_eq!(
        keymap.action(Mode::Workloads, &plain('l')),
        Some(KeyAction::Logs)
    );
    assert_eq!(
        keymap.action(Mode::Logs, &plain('F')),
        Some(KeyAction::Follow)
    );
}
