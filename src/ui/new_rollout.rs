//! Starting a rollout from the console: `i` in the workloads table (or `n` in the rollout view)
//! asks for the image, prefilled with the one the workload runs; Enter rolls the workload out to
//! it and opens the rollout view on it.
//!
//! A Kubernetes workload's rollout is its worker's: it sets the image and follows the
//! Deployment, rolling back by itself when the new revision fails. A Docker workload's runs as
//! `pilothouse rollout` in a process of its own, as the rollout view's rollback does.
//!
//! Not for showing rollouts (see [`super::rollouts`]).

use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::actuator::{ActionError, ActionKind, ActionRequest, Refusal};
use crate::model::{PlatformKind, WorkloadId};
use crate::text;

use super::app::{App, Prompt, View};

/// The longest image reference a rollout takes (Docker's own limit is far below this).
const MAX_IMAGE: usize = 512;
/// The prompt keeps taking keys past that, so a paste too long is refused whole, not cut.
const MAX_INPUT: usize = 8 * MAX_IMAGE;

impl App {
    /// `i` / `n`: ask for the image to roll the selected workload out to.
    pub(crate) fn begin_new_rollout(&mut self) {
        let workload = match self.view {
            View::Rollouts => self.rollout_view_workload(),
            _ => self.selected_workload(),
        };
        let Some(workload) = workload else {
            self.info("select a workload to roll out".to_string());
            return;
        };
        // Refused before an image is asked for, in the words the actuator refuses others in;
        // nothing was requested yet, so there is nothing to audit.
        if self.actuator.read_only() {
            let what = format!(
                "roll {} out to a new image",
                text::sanitize_plain(&workload.id.name)
            );
            self.error(Refusal::ReadOnly(what).to_string());
            return;
        }
        if !workload.id.kind.scalable() {
            self.error(format!(
                "{} is a single {}; only workloads with replicas can be rolled out",
                text::sanitize_plain(&workload.id.name),
                workload.id.kind.label()
            ));
            return;
        }
        self.prompt = Prompt::Image {
            input: workload.image.clone(),
            workload: workload.id,
        };
    }

    /// A key while the image prompt is open; the prompt that remains.
    pub(crate) fn on_image_prompt_key(
        &mut self,
        mut input: String,
        workload: WorkloadId,
        key: KeyEvent,
    ) -> Prompt {
        match key.code {
            KeyCode::Enter => {
                let image = input.trim().to_string();
                if let Some(why) = bad_image(&image) {
                    // The prompt closes so the reason shows; `i` asks again.
                    self.error(why);
                    return Prompt::None;
                }
                self.start_new_rollout(workload, image);
                Prompt::None
            }
            KeyCode::Esc => Prompt::None,
            // Past the limit only typing stops: Ctrl-U and Ctrl-W still clear what is there.
            KeyCode::Char(_)
                if input.len() >= MAX_INPUT && !key.modifiers.contains(KeyModifiers::CONTROL) =>
            {
                Prompt::Image { input, workload }
            }
            _ => {
                super::app::edit_input(&mut input, key);
                Prompt::Image { input, workload }
            }
        }
    }

    fn start_new_rollout(&mut self, workload: WorkloadId, image: String) {
        let platform = self.store.target(&workload.target).map(|t| t.platform);
        match platform {
            Some(PlatformKind::Kubernetes) => {
                let from = self
                    .store
                    .target(&workload.target)
                    .and_then(|t| t.controllers.get(&(workload.kind, workload.name.clone())))
                    .and_then(|c| c.revision)
                    .and_then(|r| u32::try_from(r).ok())
                    .unwrap_or(0);
                self.submit(ActionRequest {
                    workload: workload.clone(),
                    kind: ActionKind::Rollout {
                        from_revision: from,
                        to_revision: 0,
                        image,
                    },
                    origin: "operator",
                    confirmed: false,
                    reason: None,
                });
            }
            _ => self.start_docker_rollout(&workload, image),
        }
        self.show_rollout_of(workload);
    }

    /// `pilothouse rollout WORKLOAD --image IMAGE --docker-host ADDRESS` as a process of its
    /// own.
    fn start_docker_rollout(&mut self, workload: &WorkloadId, image: String) {
        let args = ["rollout", workload.name.as_str(), "--image", image.as_str()];
        let kind = ActionKind::Rollout {
            from_revision: 0,
            to_revision: 0,
            image: image.clone(),
        };
        self.spawn_rollout_command(workload, kind, "roll out", &args);
    }

    /// `pilothouse ARGS --docker-host ADDRESS` (ARGS name the command and the workload) as a
    /// process of its own, through the actuator as `kind` (refused in read-only mode, audited);
    /// `what` names it in messages.
    pub(crate) fn spawn_rollout_command(
        &mut self,
        workload: &WorkloadId,
        kind: ActionKind,
        what: &str,
        args: &[&str],
    ) {
        let name = text::sanitize_plain(&workload.name);
        let Some(address) = self.rollouts.addresses.get(&workload.target).cloned() else {
            self.error(format!(
                "cannot {what} {name}: the address of target {} is not known",
                workload.target
            ));
            return;
        };
        let program = self.rollouts_program();
        let request = ActionRequest {
            workload: workload.clone(),
            kind,
            origin: "operator",
            confirmed: true,
            reason: None,
        };
        let command = args.first().copied().unwrap_or_default();
        let result = self.actuator.run_here(&request, || {
            let program = program?;
            let mut all = args.to_vec();
            all.extend(["--docker-host", address.as_str()]);
            spawn_detached(&program, &all)
                .map(|pid| format!("started `pilothouse {command}` (pid {pid})"))
        });
        match result {
            Ok(started) => self.info(format!(
                "{name}: {started} with --docker-host {address}; this view follows it"
            )),
            Err(ActionError::Refused(refusal)) => self.error(refusal.to_string()),
            Err(ActionError::Failed(why)) => self.error(format!("cannot {what} {name}: {why}")),
        }
    }

    /// Open (or keep) the rollout view on `workload`.
    fn show_rollout_of(&mut self, workload: WorkloadId) {
        if self.view != View::Rollouts {
            self.table.selected = Some(workload);
            self.toggle_rollouts();
        } else {
            self.poll_rollouts();
        }
    }
}

/// Why `image` cannot be an image reference, or `None`.
fn bad_image(image: &str) -> Option<String> {
    if image.is_empty() {
        return Some("type an image, e.g. web:1.5".to_string());
    }
    if image.len() > MAX_IMAGE {
        return Some(format!(
            "an image reference of {} bytes is too long (at most {MAX_IMAGE})",
            image.len()
        ));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "not an image reference: {} (no spaces or control characters)",
            text::sanitize_plain(image)
        ));
    }
    None
}

/// Starts `program ARGS` with no terminal (input and output to null, in a process group of its
/// own so the console's terminal signals miss it) and a thread that reaps it when it ends; the
/// pid.
pub(crate) fn spawn_detached(program: &Path, args: &[&str]) -> Result<u32, String> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let pid = child.id();
    let reaper = std::thread::Builder::new()
        .name("child-reaper".to_string())
        .spawn(move || {
            let _ = child.wait();
        });
    if let Err(e) = reaper {
        // The child runs all the same; it only stays a zombie until the console ends.
        tracing::warn!(pid, error = %e, "cannot start a thread to reap a child process");
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use crate::ui::app::tests_support::app;

    fn press(app: &mut App, code: KeyCode, modifiers: KeyModifiers) {
        app.on_key(KeyEvent::new(code, modifiers));
    }

    fn type_text(app: &mut App, text: &str) {
        for c in text.chars() {
            press(app, KeyCode::Char(c), KeyModifiers::NONE);
        }
    }

    /// The bottom row of the whole screen drawn at `width` columns.
    fn prompt_row(app: &mut App, width: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, 24)).unwrap();
        terminal.draw(|f| super::super::draw(f, app)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..width)
            .map(|x| buffer[(x, 23)].symbol().to_string())
            .collect()
    }

    fn image_input(app: &App) -> &str {
        match &app.prompt {
            Prompt::Image { input, .. } => input,
            other => panic!("the image prompt is not open: {other:?}"),
        }
    }

    #[test]
    fn a_long_image_scrolls_so_its_end_and_the_cursor_stay_in_sight() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = app(dir.path(), false);
        press(&mut app, KeyCode::Char('i'), KeyModifiers::NONE);
        press(&mut app, KeyCode::Char('u'), KeyModifiers::CONTROL);
        let long = format!("registry.example:5000/{}/web:1.5-END", "team".repeat(30));
        type_text(&mut app, &long);

        let row = prompt_row(&mut app, 80);
        assert!(row.starts_with(" roll g out to image: …"), "{row:?}");
        assert!(row.contains("web:1.5-END█"), "{row:?}");
        assert_eq!(text::display_width(row.trim_end()), 80, "{row:?}");

        // Short again: no `…`, and the hint comes back.
        press(&mut app, KeyCode::Char('u'), KeyModifiers::CONTROL);
        type_text(&mut app, "web:2");
        let row = prompt_row(&mut app, 80);
        assert!(
            row.starts_with(" roll g out to image: web:2█   Enter"),
            "{row:?}"
        );
    }

    #[test]
    fn ctrl_u_clears_the_image_to_its_start_even_past_the_longest_input() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = app(dir.path(), false);
        press(&mut app, KeyCode::Char('i'), KeyModifiers::NONE);
        type_text(&mut app, "web:1.5");
        press(&mut app, KeyCode::Char('u'), KeyModifiers::CONTROL);
        assert_eq!(image_input(&app), "");

        type_text(&mut app, &"a".repeat(MAX_INPUT + 5));
        assert_eq!(image_input(&app).len(), MAX_INPUT);
        press(&mut app, KeyCode::Char('u'), KeyModifiers::CONTROL);
        assert_eq!(image_input(&app), "");
    }

    #[test]
    fn the_filter_and_command_lines_scroll_and_clear_as_the_image_prompt_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = app(dir.path(), false);
        let long = format!("{}-END", "x".repeat(150));
        for lead in ['/', ':'] {
            press(&mut app, KeyCode::Char(lead), KeyModifiers::NONE);
            type_text(&mut app, &long);
            let row = prompt_row(&mut app, 60);
            assert!(row.starts_with(&format!(" {lead}…")), "{row:?}");
            assert!(row.contains("x-END█"), "{row:?}");
            press(&mut app, KeyCode::Char('u'), KeyModifiers::CONTROL);
            let row = prompt_row(&mut app, 60);
            assert!(row.starts_with(&format!(" {lead}█")), "{row:?}");
            press(&mut app, KeyCode::Esc, KeyModifiers::NONE);
        }
    }

    #[test]
    fn read_only_mode_refuses_i_before_asking_for_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = app(dir.path(), true);
        press(&mut app, KeyCode::Char('i'), KeyModifiers::NONE);
        assert_eq!(app.prompt, Prompt::None);
        let said = app
            .status
            .as_ref()
            .map(|s| s.text.clone())
            .unwrap_or_default();
        assert_eq!(
            said,
            "read-only mode: roll g out to a new image refused (start without --read-only to act)"
        );
        assert!(!dir.path().join("audit.jsonl").exists());
    }

    #[test]
    fn an_image_reference_has_no_spaces_or_control_characters() {
        assert_eq!(bad_image("registry:5000/web:1.5"), None);
        assert!(bad_image("").unwrap().contains("type an image"));
        assert!(bad_image("web 1.5").unwrap().contains("no spaces"));
        assert!(
            bad_image(&"a".repeat(600))
                .unwrap()
                .contains("600 bytes is too long")
        );
        let control = bad_image("web\u{1b}[2J").unwrap();
        assert!(!control.contains('\u{1b}'), "{control:?}");
    }
}
