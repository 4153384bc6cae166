//! The revisions of one Docker workload: the templates its rollouts made, numbered as Kubernetes
//! numbers a Deployment's revisions, each with the cause a person or pipeline gave and when it
//! was recorded. The history is kept in `STATE/revisions/<engine ID>/<workload>.json`, so it
//! outlives the process; the replicas carry their revision number and template hash as labels,
//! so a lost history can be rebuilt from them in part ([`History::recover`]).
//!
//! Not for running a rollout or a rollback (the rollout executor decides when to record), and
//! not for reading a workload's replicas from the engine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::revision::Template;
use super::state::{engine_stem, workload_stem};
use crate::fsutil;
use crate::text::{display_width, pad, sanitize_plain};

/// How many revisions a history keeps, like a Deployment's `revisionHistoryLimit`.
pub const DEFAULT_KEEP: usize = 10;

/// The cause of revisions rebuilt by [`History::recover`].
pub const RECOVERED_CAUSE: &str = "recovered from container labels";

/// One recorded template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub number: u32,
    /// [`Template::hash`] of `template`.
    pub hash: String,
    pub template: Template,
    /// Who made it and why, as given to the rollout (or a pipeline's message).
    pub cause: String,
    pub created: DateTime<Utc>,
    /// Why the last rollout to it was rolled back (a failed health gate, an abort, the
    /// timeout), when it was: `rollback` without `--to-revision` passes over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
}

/// The recorded revisions of one workload.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct History {
    pub workload: String,
    /// Ascending by number, numbers unique.
    pub revisions: Vec<Revision>,
}

impl History {
    /// An empty history for `workload`.
    pub fn new(workload: &str) -> History {
        History {
            workload: workload.to_string(),
            revisions: Vec::new(),
        }
    }

    /// `STATE/revisions/<engine_stem(engine_id)>/<workload_stem(workload)>.json`.
    pub fn path(state_dir: &Path, engine_id: &str, workload: &str) -> PathBuf {
        state_dir
            .join("revisions")
            .join(engine_stem(engine_id))
            .join(format!("{}.json", workload_stem(workload)))
    }

    /// The history in `path`; an empty one for `workload` when there is no file. A file that
    /// does not parse is an error naming the file, line and column, never an empty history;
    /// so is a file of another workload or with a revision number twice.
    pub fn load(path: &Path, workload: &str) -> Result<History, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(History::new(workload));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut history: History = serde_json::from_str(&text)
            .map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
        if history.workload != workload {
            return Err(format!(
                "{} holds the revisions of {:?}, not of {:?}; move it away to start a new history",
                path.display(),
                sanitize_plain(&history.workload),
                sanitize_plain(workload)
            ));
        }
        history.revisions.sort_by_key(|r| r.number);
        let repeated = history
            .revisions
            .windows(2)
            .find(|pair| pair[0].number == pair[1].number);
        if let Some(pair) = repeated {
            return Err(format!(
                "{}: revision {} is recorded twice",
                path.display(),
                pair[0].number
            ));
        }
        Ok(history)
    }

    /// Writes the whole history to `path` through a temporary file and a rename, so a reader
    /// never sees part of it; the error names the path.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        text.push('\n');
        fsutil::write_atomic(path, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The newest revision.
    pub fn latest(&self) -> Option<&Revision> {
        self.revisions.last()
    }

    pub fn by_number(&self, n: u32) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.number == n)
    }

    pub fn by_hash(&self, hash: &str) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.hash == hash)
    }

    /// Marks revision `number` as rolled back, with why.
    pub fn mark_rolled_back(&mut self, number: u32, why: &str) {
        if let Some(revision) = self.revisions.iter_mut().find(|r| r.number == number) {
            revision.rolled_back = Some(why.to_string());
        }
    }

    /// Where `rollback` without `--to-revision` goes from the revision whose hash is
    /// `current`: the newest other revision whose last rollout was not rolled back.
    pub fn before(&self, current: &str) -> Option<&Revision> {
        self.revisions
            .iter()
            .filter(|r| r.hash != current && r.rolled_back.is_none())
            .max_by_key(|r| r.number)
    }

    /// The revision before the latest.
    pub fn previous(&self) -> Option<&Revision> {
        let count = self.revisions.len();
        count
            .checked_sub(2)
            .and_then(|index| self.revisions.get(index))
    }

    /// Records `template` as the newest revision and returns its number.
    ///
    /// A template not recorded yet becomes revision max+1 (1 in an empty history). One equal
    /// (by hash) to an older revision moves to the top as max+1 with the new cause and time,
    /// as `kubectl rollout undo` renumbers; one equal to the latest is left as it is, and its
    /// number returned. Then at most `keep` revisions are kept (at least 1), dropping the
    /// oldest; the newest is never dropped.
    pub fn record(
        &mut self,
        template: Template,
        cause: &str,
        now: DateTime<Utc>,
        keep: usize,
    ) -> u32 {
        let hash = template.hash();
        if let Some(latest) = self.revisions.last_mut().filter(|r| r.hash == hash) {
            // A new attempt: what the last one found is no longer the verdict.
            latest.rolled_back = None;
            return latest.number;
        }
        let number = self.next_number();
        self.revisions.retain(|r| r.hash != hash);
        self.revisions.push(Revision {
            number,
            hash,
            template,
            cause: cause.to_string(),
            created: now,
            rolled_back: None,
        });
        let excess = self.revisions.len().saturating_sub(keep.max(1));
        self.revisions.drain(..excess);
        number
    }

    /// The number after the highest recorded (1 when there is none).
    fn next_number(&self) -> u32 {
        self.revisions
            .iter()
            .map(|r| r.number)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }

    /// What can be rebuilt when the history file is gone, from the workload's replicas: each
    /// with its template and the number its revision label gives (`None` when it has none).
    ///
    /// One revision per distinct template hash, with the cause [`RECOVERED_CAUSE`] and `now` as
    /// its time. A template takes the highest number its replicas' labels give. Templates of
    /// replicas without labels (the workload as it was before its first rollout) take the lowest
    /// free numbers from 1, in the order the replicas come. A template whose labelled number
    /// another template already took takes the next number after the highest. What the lost
    /// history held beyond the running replicas (older revisions, causes, times) is gone.
    pub fn recover(
        workload: &str,
        containers: &[(Template, Option<u32>)],
        now: DateTime<Utc>,
    ) -> History {
        // (hash, template, labelled number) per distinct hash, in the order first seen.
        let mut groups: Vec<(String, Template, Option<u32>)> = Vec::new();
        for (template, number) in containers {
            let hash = template.hash();
            match groups.iter_mut().find(|(h, _, _)| *h == hash) {
                Some((_, _, known)) => *known = (*known).max(*number),
                None => groups.push((hash, template.clone(), *number)),
            }
        }

        let mut taken: BTreeSet<u32> = BTreeSet::new();
        let mut numbered: Vec<(u32, String, Template)> = Vec::new();
        let mut unlabelled: Vec<(String, Template)> = Vec::new();
        let mut clashing: Vec<(String, Template)> = Vec::new();
        for (hash, template, number) in groups {
            match number {
                Some(n) if n > 0 && taken.insert(n) => numbered.push((n, hash, template)),
                Some(_) => clashing.push((hash, template)),
                None => unlabelled.push((hash, template)),
            }
        }
        let mut free = (1..).filter(|n| !taken.contains(n));
        let mut lowest: Vec<(u32, String, Template)> = Vec::new();
        for (hash, template) in unlabelled {
            if let Some(n) = free.next() {
                lowest.push((n, hash, template));
            }
        }
        numbered.extend(lowest);
        let mut next = numbered.iter().map(|(n, _, _)| *n).max().unwrap_or(0);
        for (hash, template) in clashing {
            next = next.saturating_add(1);
            numbered.push((next, hash, template));
        }

        numbered.sort_by_key(|(n, _, _)| *n);
        History {
            workload: workload.to_string(),
            revisions: numbered
                .into_iter()
                .map(|(number, hash, template)| Revision {
                    number,
                    hash,
                    template,
                    cause: RECOVERED_CAUSE.to_string(),
                    created: now,
                    rolled_back: None,
                })
                .collect(),
        }
    }

    /// The number of the revision whose hash is `hash`.
    fn number_of(&self, hash: Option<&str>) -> Option<u32> {
        hash.and_then(|h| self.by_hash(h)).map(|r| r.number)
    }
}

/// `pilothouse history` as text: a table of REVISION, CREATED (UTC, to the second), IMAGE and
/// CAUSE, oldest first, the revision whose hash is `current_hash` marked with `*`. Images and
/// causes are made safe to print (control characters shown as pictures).
pub fn render_table(history: &History, current_hash: Option<&str>) -> String {
    if history.revisions.is_empty() {
        return format!(
            "no revisions recorded for {}\n",
            sanitize_plain(&history.workload)
        );
    }
    let current = history.number_of(current_hash);
    let header = ["REVISION", "CREATED (UTC)", "IMAGE", "CAUSE"].map(String::from);
    let rows: Vec<[String; 4]> = history
        .revisions
        .iter()
        .map(|r| {
            let mark = if Some(r.number) == current { "*" } else { "" };
            let mut cause = if r.cause.is_empty() {
                "-".to_string()
            } else {
                sanitize_plain(&r.cause)
            };
            if r.rolled_back.is_some() {
                cause.push_str(" (rolled back)");
            }
            [
                format!("{}{mark}", r.number),
                r.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                sanitize_plain(&r.template.image),
                cause,
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..3)
        .map(|col| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|row| display_width(&row[col]))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        for (col, width) in widths.iter().enumerate() {
            out.push_str(&pad(&row[col], *width));
            out.push_str("  ");
        }
        out.push_str(&row[3]);
        out.push('\n');
    }
    out
}

/// The history as JSON, with stable field names: `{"workload", "current": N or null,
/// "revisions": [{"revision", "hash", "image", "cause", "created" (RFC 3339, UTC, seconds),
/// "rolled_back" (why, or null)}]}`.
/// Strings are as recorded; whoever prints the value escapes what a terminal would act on.
pub fn to_json(history: &History, current_hash: Option<&str>) -> serde_json::Value {
    let revisions: Vec<serde_json::Value> = history
        .revisions
        .iter()
        .map(|r| {
            json!({
                "revision": r.number,
                "hash": r.hash,
                "image": r.template.image,
                "cause": r.cause,
                "created": r.created.to_rfc3339_opts(SecondsFormat::Secs, true),
                "rolled_back": r.rolled_back,
            })
        })
        .collect();
    json!({
        "workload": history.workload,
        "current": history.number_of(current_hash),
        "revisions": revisions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::revision::Resources;
    use chrono::TimeZone;
    use std::collections::BTreeMap;

    fn template(image: &str) -> Template {
        Template {
            image: image.to_string(),
            cmd: Some(vec!["serve".to_string()]),
            entrypoint: None,
            env: vec!["PATH=/bin".to_string()],
            labels: BTreeMap::new(),
            healthcheck: None,
            working_dir: None,
            user: None,
            resources: Resources::default(),
        }
    }

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, hour, 0, 5)
            .single()
            .expect("a valid time")
    }

    fn numbers_and_images(history: &History) -> Vec<(u32, String)> {
        history
            .revisions
            .iter()
            .map(|r| (r.number, r.template.image.clone()))
            .collect()
    }

    fn pairs(items: &[(u32, &str)]) -> Vec<(u32, String)> {
        items.iter().map(|(n, s)| (*n, s.to_string())).collect()
    }

    #[test]
    fn new_templates_are_numbered_after_the_highest() {
        let mut h = History::new("shop/web");
        assert_eq!(
            h.record(template("web:1"), "initial", at(1), DEFAULT_KEEP),
            1
        );
        assert_eq!(h.record(template("web:2"), "ci 41", at(2), DEFAULT_KEEP), 2);
        assert_eq!(h.record(template("web:3"), "ci 42", at(3), DEFAULT_KEEP), 3);
        assert_eq!(
            numbers_and_images(&h),
            pairs(&[(1, "web:1"), (2, "web:2"), (3, "web:3")])
        );
        let latest = h.latest().expect("latest");
        assert_eq!(latest.cause, "ci 42");
        assert_eq!(latest.hash, template("web:3").hash());
        assert_eq!(latest.created, at(3));
        assert_eq!(h.previous().map(|r| r.number), Some(2));
        assert_eq!(h.by_number(1).map(|r| r.cause.as_str()), Some("initial"));
        assert_eq!(
            h.by_hash(&template("web:2").hash()).map(|r| r.number),
            Some(2)
        );
        assert!(h.by_number(9).is_none());
    }

    #[test]
    fn an_earlier_template_moves_to_the_top_with_a_new_number_and_cause() {
        let mut h = History::new("web");
        h.record(template("web:1"), "a", at(1), DEFAULT_KEEP);
        h.record(template("web:2"), "b", at(2), DEFAULT_KEEP);
        h.record(template("web:3"), "c", at(3), DEFAULT_KEEP);
        assert_eq!(
            h.record(template("web:1"), "rollback", at(4), DEFAULT_KEEP),
            4
        );
        assert_eq!(
            numbers_and_images(&h),
            pairs(&[(2, "web:2"), (3, "web:3"), (4, "web:1")])
        );
        let latest = h.latest().expect("latest");
        assert_eq!((latest.cause.as_str(), latest.created), ("rollback", at(4)));
        assert_eq!(h.previous().map(|r| r.number), Some(3));
    }

    #[test]
    fn recording_the_latest_template_again_changes_nothing() {
        let mut h = History::new("web");
        h.record(template("web:1"), "a", at(1), DEFAULT_KEEP);
        h.record(template("web:2"), "b", at(2), DEFAULT_KEEP);
        let before = h.clone();
        assert_eq!(h.record(template("web:2"), "again", at(3), DEFAULT_KEEP), 2);
        assert_eq!(h, before);
    }

    #[test]
    fn only_the_newest_revisions_are_kept() {
        let mut h = History::new("web");
        for n in 1..=5 {
            h.record(template(&format!("web:{n}")), "", at(n), 3);
        }
        assert_eq!(
            numbers_and_images(&h),
            pairs(&[(3, "web:3"), (4, "web:4"), (5, "web:5")])
        );
        assert_eq!(h.record(template("web:6"), "", at(6), 0), 6);
        assert_eq!(
            numbers_and_images(&h),
            pairs(&[(6, "web:6")]),
            "the newest stays"
        );
        assert!(h.previous().is_none());
        assert!(History::new("web").latest().is_none());
    }

    #[test]
    fn the_history_file_lives_under_the_engine_and_the_workload() {
        let path = History::path(Path::new("/state"), "AB:CD", "shop/web");
        assert_eq!(
            path,
            PathBuf::from("/state/revisions/AB_CD/shop%2Fweb.json")
        );
    }

    #[test]
    fn a_missing_file_is_an_empty_history_and_a_saved_one_loads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = History::path(dir.path(), "E1", "shop/web");
        assert_eq!(
            History::load(&path, "shop/web"),
            Ok(History::new("shop/web"))
        );
        let mut h = History::new("shop/web");
        h.record(template("web:1"), "initial", at(1), DEFAULT_KEEP);
        h.record(template("web:2"), "ci: deploy", at(2), DEFAULT_KEEP);
        h.save(&path).expect("saved");
        let text = std::fs::read_to_string(&path).expect("the file exists");
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(value["workload"], "shop/web");
        assert_eq!(History::load(&path, "shop/web"), Ok(h));
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("shop%2Fweb.json")],
            "no temp file"
        );
    }

    #[test]
    fn a_broken_file_is_an_error_naming_its_line_and_column_never_an_empty_history() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("web.json");
        std::fs::write(&path, "{\n  \"workload\": \"web\",\n  \"revisions\": [}\n").expect("write");
        let err = History::load(&path, "web").unwrap_err();
        let place = format!("{}:3:17: ", path.display());
        assert!(err.starts_with(&place), "{err}");
    }

    #[test]
    fn a_file_of_another_workload_or_with_a_number_twice_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("web.json");
        let mut h = History::new("shop/api");
        h.record(template("api:1"), "", at(1), DEFAULT_KEEP);
        h.save(&path).expect("saved");
        let err = History::load(&path, "shop/web").unwrap_err();
        assert!(
            err.contains("\"shop/api\"") && err.contains("\"shop/web\""),
            "{err}"
        );

        let mut twice = History::new("web");
        twice.record(template("web:1"), "", at(1), DEFAULT_KEEP);
        twice.record(template("web:2"), "", at(2), DEFAULT_KEEP);
        twice.revisions[1].number = 1;
        twice.save(&path).expect("saved");
        let err = History::load(&path, "web").unwrap_err();
        assert!(err.ends_with("revision 1 is recorded twice"), "{err}");
    }

    #[test]
    fn a_file_with_revisions_out_of_order_loads_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("web.json");
        let mut h = History::new("web");
        h.record(template("web:1"), "", at(1), DEFAULT_KEEP);
        h.record(template("web:2"), "", at(2), DEFAULT_KEEP);
        h.revisions.reverse();
        h.save(&path).expect("saved");
        let loaded = History::load(&path, "web").expect("loaded");
        assert_eq!(loaded.latest().map(|r| r.number), Some(2));
    }

    #[test]
    fn a_save_that_cannot_write_names_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").expect("write");
        let path = blocker.join("web.json");
        let err = History::new("web").save(&path).unwrap_err();
        assert!(
            err.starts_with(&format!("cannot write {}: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn recovery_makes_one_revision_per_template_with_the_labelled_numbers() {
        let now = at(9);
        let containers = vec![
            (template("web:3"), Some(3)),
            (template("web:2"), Some(2)),
            (template("web:3"), Some(3)),
        ];
        let h = History::recover("web", &containers, now);
        assert_eq!(numbers_and_images(&h), pairs(&[(2, "web:2"), (3, "web:3")]));
        assert!(
            h.revisions
                .iter()
                .all(|r| r.cause == RECOVERED_CAUSE && r.created == now)
        );
        assert_eq!(
            h.latest().map(|r| r.hash.clone()),
            Some(template("web:3").hash())
        );
    }

    #[test]
    fn recovery_numbers_unlabelled_replicas_from_one_and_clashes_after_the_highest() {
        let now = at(9);
        let h = History::recover(
            "web",
            &[(template("web:1"), None), (template("web:1"), None)],
            now,
        );
        assert_eq!(numbers_and_images(&h), pairs(&[(1, "web:1")]));

        let mixed = vec![
            (template("web:1"), None),
            (template("web:4"), Some(4)),
            (template("web:x"), Some(4)),
            (template("web:4"), None),
        ];
        let h = History::recover("web", &mixed, now);
        assert_eq!(
            numbers_and_images(&h),
            pairs(&[(1, "web:1"), (4, "web:4"), (5, "web:x")]),
            "an unlabelled replica of a labelled template joins it"
        );
        assert!(History::recover("web", &[], now).revisions.is_empty());
    }

    #[test]
    fn the_table_marks_the_current_revision_and_shows_controls_as_pictures() {
        let mut h = History::new("shop/web");
        h.record(template("web:1"), "", at(1), DEFAULT_KEEP);
        h.record(
            template("shop/web:1.4"),
            "ci: deploy\x07 #42\nnext",
            at(13),
            DEFAULT_KEEP,
        );
        let current = template("web:1").hash();
        assert_eq!(
            render_table(&h, Some(&current)),
            "REVISION  CREATED (UTC)        IMAGE         CAUSE\n\
             1*        2026-12-01 01:00:05  web:1         -\n\
             2         2026-12-01 13:00:05  shop/web:1.4  ci: deploy␇ #42␊next\n"
        );
        assert!(!render_table(&h, None).contains('*'));
        assert_eq!(
            render_table(&History::new("web"), None),
            "no revisions recorded for web\n"
        );
    }

    #[test]
    fn rollback_passes_over_revisions_that_failed_their_gate_and_a_new_attempt_clears_that() {
        let mut h = History::new("web");
        h.record(template("web:1"), "", at(1), DEFAULT_KEEP);
        h.record(template("web:2"), "", at(2), DEFAULT_KEEP);
        let bad = h.record(template("web:bad"), "", at(3), DEFAULT_KEEP);
        h.mark_rolled_back(bad, "web-4 is unhealthy");
        let on_two = template("web:2").hash();
        assert_eq!(h.before(&on_two).map(|r| r.number), Some(1));
        assert!(render_table(&h, Some(&on_two)).contains("(rolled back)"));
        // v1 recorded again (renumbered above the current one) is still where rollback goes.
        let one_again = h.record(template("web:1"), "", at(4), DEFAULT_KEEP);
        assert_eq!(h.before(&on_two).map(|r| r.number), Some(one_again));
        // Trying the bad image again clears its mark.
        let again = h.record(template("web:bad"), "", at(5), DEFAULT_KEEP);
        h.mark_rolled_back(again, "still bad");
        assert_eq!(
            h.record(template("web:bad"), "", at(6), DEFAULT_KEEP),
            again
        );
        assert_eq!(h.by_number(again).and_then(|r| r.rolled_back.clone()), None);
    }

    #[test]
    fn the_json_has_stable_fields_and_the_current_number() {
        let mut h = History::new("shop/web");
        h.record(template("web:1"), "initial", at(1), DEFAULT_KEEP);
        h.record(template("web:2"), "ci", at(2), DEFAULT_KEEP);
        let current = template("web:2").hash();
        assert_eq!(
            to_json(&h, Some(&current)),
            json!({
                "workload": "shop/web",
                "current": 2,
                "revisions": [
                    {"revision": 1, "hash": template("web:1").hash(), "image": "web:1",
                     "cause": "initial", "created": "2026-12-01T01:00:05Z", "rolled_back": null},
                    {"revision": 2, "hash": current, "image": "web:2",
                     "cause": "ci", "created": "2026-12-01T02:00:05Z", "rolled_back": null},
                ]
            })
        );
        assert_eq!(
            to_json(&h, Some("0000000000"))["current"],
            serde_json::Value::Null
        );
        assert_eq!(to_json(&h, None)["current"], serde_json::Value::Null);
    }
}
