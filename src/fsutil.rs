//! Writing the files a user keeps without ever leaving half a file behind.
//!
//! `write_atomic` replaces a whole file (config, rules, revision history) through a temporary file
//! in the same directory and a rename, so a reader sees the old version or the new one, never a
//! mix. `append_line` adds one record to a JSON-lines log (the audit log). Neither function knows
//! what the bytes mean; parsing and serialising belong to the callers.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use tempfile::NamedTempFile;

/// Replaces `path` with `bytes` by temp file, fsync and rename, creating parent directories.
///
/// An existing file keeps its permissions; a new one is private to the user (0600 on Unix).
/// A symbolic link at `path` is replaced by a regular file, not followed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir)?;

    let mut temp = NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    keep_permissions(path, temp.as_file())?;
    temp.as_file().sync_all()?;

    temp.persist(path).map_err(|err| err.error)?;

    sync_dir(dir)
}

/// Appends `line` and a newline in a single write, creating the file and its parents.
///
/// A line that holds a newline is refused: one call is one record.
pub fn append_line(path: &Path, line: &str) -> io::Result<()> {
    if line.contains('\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a record for {} must be one line", path.display()),
        ));
    }
    fs::create_dir_all(parent_dir(path))?;

    let mut record = String::with_capacity(line.len() + 1);
    record.push_str(line);
    record.push('\n');

    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(record.as_bytes())
}

/// The directory that holds `path`; the current one for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Gives the temporary file the permissions of the file it replaces, if there is one.
fn keep_permissions(path: &Path, temp: &fs::File) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(meta) => temp.set_permissions(meta.permissions()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

/// Makes the rename itself durable by syncing the directory entry (Unix only).
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Windows cannot open a directory as a file; the rename is as durable as the OS makes it.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_creates_parent_directories_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/config.toml");
        write_atomic(&path, b"theme = \"dark\"\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "theme = \"dark\"\n");
    }

    #[test]
    fn write_atomic_replaces_the_old_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yaml");
        write_atomic(&path, b"a very long first version of the file\n").unwrap();
        write_atomic(&path, b"short\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "short\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("rules.yaml")]);
    }

    #[cfg(unix)]
    #[test]
    fn write_atomic_keeps_the_permissions_of_the_file_it_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"new").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn append_line_adds_one_record_per_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit.jsonl");
        append_line(&path, r#"{"action":"scale"}"#).unwrap();
        append_line(&path, r#"{"action":"restart"}"#).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"action\":\"scale\"}\n{\"action\":\"restart\"}\n"
        );
    }

    #[test]
    fn append_line_refuses_a_record_with_a_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let err = append_line(&path, "one\ntwo").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(!path.exists());
    }
}
