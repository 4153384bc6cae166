//! Following the logs of one or more replicas as one stream: one task per replica reads the
//! engine's log stream, cuts it into lines, strips the engine's timestamp and sanitizes each
//! line; one merger task batches the lines of all of them into [`Update::Logs`] messages.
//!
//! Not for keeping lines: the store's log buffer does that, and the UI never sees raw bytes.

use std::collections::VecDeque;
use std::time::Duration;

use bollard::Docker;
use bollard::container::{LogOutput, LogsOptions};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;

use crate::platform::{LogRecord, LogStart, Update};
use crate::text::sanitize;

/// The most lines one [`Update::Logs`] carries.
pub const BATCH_LINES: usize = 500;

/// The longest a line waits in a batch before the batch is sent.
pub const BATCH_DELAY: Duration = Duration::from_millis(50);

/// A line longer than this (no newline in sight) is passed on in pieces of this size, so a
/// container printing without newlines cannot grow the worker's memory.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// What a replica task hands the merger.
#[derive(Debug)]
enum LogItem {
    Lines(Vec<LogRecord>),
    Ended { replica: String, reason: String },
}

/// Starts following `replicas` (container id, name) as stream `stream`; returns every task it
/// spawned, so the caller can abort them.
pub fn spawn_stream(
    docker: &Docker,
    stream: u64,
    replicas: Vec<(String, String)>,
    start: LogStart,
    updates: mpsc::Sender<Update>,
) -> Vec<JoinHandle<()>> {
    let (tx, rx) = mpsc::channel(16);
    let mut tasks = Vec::with_capacity(replicas.len() + 1);
    for (id, name) in replicas {
        let task = follow_replica(docker.clone(), id, name, start, tx.clone());
        tasks.push(tokio::spawn(task));
    }
    drop(tx);
    tasks.push(tokio::spawn(merge(stream, rx, updates)));
    tasks
}

/// Batches the lines of all replicas of a stream: up to [`BATCH_LINES`] lines, or whatever came
/// within [`BATCH_DELAY`] of the first line of the batch.
async fn merge(stream: u64, mut rx: mpsc::Receiver<LogItem>, updates: mpsc::Sender<Update>) {
    let mut batch: Vec<LogRecord> = Vec::new();
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + BATCH_DELAY;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                LogItem::Lines(lines) => batch.extend(lines),
                LogItem::Ended { replica, reason } => {
                    if !flush(stream, &mut batch, &updates).await {
                        return;
                    }
                    let ended = Update::LogsEnded {
                        stream,
                        replica,
                        reason,
                    };
                    if updates.send(ended).await.is_err() {
                        return;
                    }
                }
            }
            if batch.len() >= BATCH_LINES {
                break;
            }
            // A timeout means the batch is due; it yields no item.
            next = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_default();
        }
        if !flush(stream, &mut batch, &updates).await {
            return;
        }
    }
}

/// Sends the batch in messages of at most [`BATCH_LINES`]; false when the store is gone.
async fn flush(stream: u64, batch: &mut Vec<LogRecord>, updates: &mpsc::Sender<Update>) -> bool {
    while !batch.is_empty() {
        let rest = batch.split_off(batch.len().min(BATCH_LINES));
        let lines = std::mem::replace(batch, rest);
        if updates.send(Update::Logs { stream, lines }).await.is_err() {
            return false;
        }
    }
    true
}

/// The engine's options for a start point. `Before` reads up to the second after `t` (the
/// engine takes whole seconds) and the caller drops lines at or after `t`.
fn options_for(start: LogStart) -> LogsOptions<String> {
    let base = LogsOptions {
        follow: false,
        stdout: true,
        stderr: true,
        since: 0,
        until: 0,
        timestamps: true,
        tail: "all".to_string(),
    };
    match start {
        LogStart::Tail(n) => LogsOptions {
            follow: true,
            tail: n.to_string(),
            ..base
        },
        // LIMITATION: the engine applies `tail` before `until`, so earlier lines are found by
        // reading the log from its start up to `t` and keeping the last n; a huge log file
        // makes scrolling back slow.
        LogStart::Before(t, _) => {
            let secs = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
            LogsOptions {
                until: secs,
                ..base
            }
        }
    }
}

/// Reads one replica's log until it ends; in `Before` mode keeps only the last n lines before t.
async fn follow_replica(
    docker: Docker,
    id: String,
    name: String,
    start: LogStart,
    tx: mpsc::Sender<LogItem>,
) {
    let mut stream = docker.logs(&id, Some(options_for(start)));
    let mut stdout = LineSplitter::default();
    let mut stderr = LineSplitter::default();
    let mut earlier = match start {
        LogStart::Before(t, n) => Some(Window::new(t, n)),
        LogStart::Tail(_) => None,
    };
    let reason = loop {
        let (is_stderr, bytes) = match stream.next().await {
            None => break end_reason(start),
            Some(Err(err)) => break format!("cannot read the log of {name}: {err}"),
            Some(Ok(LogOutput::StdErr { message })) => (true, message),
            Some(Ok(
                LogOutput::StdOut { message }
                | LogOutput::Console { message }
                | LogOutput::StdIn { message },
            )) => (false, message),
        };
        let splitter = if is_stderr { &mut stderr } else { &mut stdout };
        let records: Vec<LogRecord> = splitter
            .push(&bytes)
            .iter()
            .map(|line| record(&name, is_stderr, line))
            .collect();
        if !deliver(records, &mut earlier, &tx).await {
            return;
        }
    };
    let mut rest: Vec<LogRecord> = Vec::new();
    rest.extend(stdout.finish().map(|line| record(&name, false, &line)));
    rest.extend(stderr.finish().map(|line| record(&name, true, &line)));
    if !deliver(rest, &mut earlier, &tx).await {
        return;
    }
    if let Some(window) = earlier {
        if tx.send(LogItem::Lines(window.into_lines())).await.is_err() {
            return;
        }
    }
    debug!(container = %id, %reason, "log stream ended");
    let _ = tx
        .send(LogItem::Ended {
            replica: name,
            reason,
        })
        .await;
}

/// Why a log stream that the engine closed ended.
fn end_reason(start: LogStart) -> String {
    match start {
        LogStart::Tail(_) => "the replica stopped or was removed".to_string(),
        LogStart::Before(..) => "earlier lines loaded".to_string(),
    }
}

/// Passes lines on now (following) or into the window (earlier lines); false when the merger
/// is gone.
async fn deliver(
    records: Vec<LogRecord>,
    earlier: &mut Option<Window>,
    tx: &mpsc::Sender<LogItem>,
) -> bool {
    if records.is_empty() {
        return true;
    }
    match earlier {
        Some(window) => {
            records.into_iter().for_each(|r| window.push(r));
            true
        }
        None => tx.send(LogItem::Lines(records)).await.is_ok(),
    }
}

/// The last `n` lines before `until`, for loading earlier lines.
#[derive(Debug)]
struct Window {
    until: DateTime<Utc>,
    keep: usize,
    lines: VecDeque<LogRecord>,
}

impl Window {
    fn new(until: DateTime<Utc>, keep: u64) -> Self {
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        Window {
            until,
            keep,
            lines: VecDeque::new(),
        }
    }

    fn push(&mut self, record: LogRecord) {
        if record.timestamp.is_some_and(|t| t >= self.until) || self.keep == 0 {
            return;
        }
        if self.lines.len() == self.keep {
            self.lines.pop_front();
        }
        self.lines.push_back(record);
    }

    fn into_lines(self) -> Vec<LogRecord> {
        self.lines.into()
    }
}

/// One line of output as a record: the engine's timestamp taken off and parsed, a line-ending
/// `\r` dropped, the rest sanitized.
fn record(replica: &str, stderr: bool, raw: &[u8]) -> LogRecord {
    let (timestamp, text) = split_timestamp(raw);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    LogRecord {
        replica: replica.to_string(),
        stderr,
        timestamp,
        line: sanitize(text),
    }
}

/// Splits the engine's `2024-05-01T10:00:00.123456789Z ` prefix off a line; the whole line
/// and no time when there is none.
pub fn split_timestamp(line: &[u8]) -> (Option<DateTime<Utc>>, &[u8]) {
    let Some(space) = line.iter().take(40).position(|b| *b == b' ') else {
        return (None, line);
    };
    let parsed = std::str::from_utf8(&line[..space])
        .ok()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
    match parsed {
        Some(time) => (Some(time.with_timezone(&Utc)), &line[space + 1..]),
        None => (None, line),
    }
}

/// Cuts a byte stream into lines, carrying a partial line from one chunk to the next.
#[derive(Debug, Default)]
pub struct LineSplitter {
    carry: Vec<u8>,
}

impl LineSplitter {
    /// The complete lines in `chunk` (without `\n`), with any carried part in front.
    ///
    /// The engine stamps every message it stores, so a long line it stored in parts arrives as
    /// parts each with a timestamp; the stamp of a continuation is dropped here.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut rest = chunk;
        if !self.carry.is_empty() {
            if let (Some(_), tail) = split_timestamp(rest) {
                rest = tail;
            }
        }
        let mut lines = Vec::new();
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            self.carry.extend_from_slice(&rest[..pos]);
            lines.push(std::mem::take(&mut self.carry));
            rest = &rest[pos + 1..];
        }
        self.carry.extend_from_slice(rest);
        while self.carry.len() >= MAX_LINE_BYTES {
            let tail = self.carry.split_off(MAX_LINE_BYTES);
            lines.push(std::mem::replace(&mut self.carry, tail));
        }
        lines
    }

    /// The partial line left when the stream ends, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.carry.is_empty()).then(|| std::mem::take(&mut self.carry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(parts: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::default();
        let mut out: Vec<Vec<u8>> = Vec::new();
        for part in parts {
            out.extend(splitter.push(part));
        }
        out.extend(splitter.finish());
        out.into_iter()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .collect()
    }

    #[test]
    fn a_chunk_with_several_lines_gives_each_line() {
        assert_eq!(lines(&[b"one\ntwo\nthree\n"]), vec!["one", "two", "three"]);
    }

    #[test]
    fn a_line_split_over_chunks_is_joined() {
        assert_eq!(
            lines(&[b"hel", b"lo\nwor", b"ld\n"]),
            vec!["hello", "world"]
        );
    }

    #[test]
    fn a_last_line_without_newline_is_kept() {
        assert_eq!(lines(&[b"a\nb"]), vec!["a", "b"]);
    }

    #[test]
    fn empty_lines_are_kept() {
        assert_eq!(lines(&[b"a\n\nb\n"]), vec!["a", "", "b"]);
    }

    #[test]
    fn the_timestamp_of_a_continuation_part_is_dropped() {
        let got = lines(&[
            b"2024-05-01T10:00:00.1Z long ",
            b"2024-05-01T10:00:00.2Z line\n",
        ]);
        assert_eq!(got, vec!["2024-05-01T10:00:00.1Z long line"]);
    }

    #[test]
    fn a_line_without_end_is_cut_at_the_limit() {
        let mut splitter = LineSplitter::default();
        let big = vec![b'x'; MAX_LINE_BYTES + 10];
        let out = splitter.push(&big);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), MAX_LINE_BYTES);
        assert_eq!(splitter.finish().map(|l| l.len()), Some(10));
    }

    #[test]
    fn the_engine_timestamp_is_parsed_and_stripped() {
        let (time, rest) = split_timestamp(b"2024-05-01T10:00:00.123456789Z hello world");
        assert_eq!(rest, b"hello world");
        let time = time.expect("a timestamp");
        assert_eq!(time.timestamp(), 1_714_557_600);
        assert_eq!(time.timestamp_subsec_nanos(), 123_456_789);
    }

    #[test]
    fn a_line_without_timestamp_is_left_whole() {
        assert_eq!(
            split_timestamp(b"plain text here"),
            (None, &b"plain text here"[..])
        );
        assert_eq!(split_timestamp(b"nospace"), (None, &b"nospace"[..]));
    }

    #[test]
    fn a_record_is_sanitized_and_loses_its_carriage_return() {
        let r = record("web-1", true, b"2024-05-01T10:00:00Z \x1b]0;pwned\x07ok\r");
        assert_eq!(r.replica, "web-1");
        assert!(r.stderr);
        assert!(r.timestamp.is_some());
        assert!(!r.line.text.contains('\x1b') && !r.line.text.contains('\x07'));
        assert!(!r.line.text.contains('\r'));
        assert!(r.line.text.ends_with("ok"), "got {:?}", r.line.text);
    }

    #[test]
    fn the_window_keeps_the_last_lines_before_its_time() {
        let at = |s: i64| DateTime::from_timestamp(s, 0);
        let mut window = Window::new(at(100).expect("time"), 2);
        for (i, s) in [97, 98, 99, 100, 101].into_iter().enumerate() {
            window.push(LogRecord {
                replica: "r".into(),
                stderr: false,
                timestamp: at(s),
                line: sanitize(format!("line{i}").as_bytes()),
            });
        }
        let kept: Vec<String> = window
            .into_lines()
            .into_iter()
            .map(|r| r.line.text)
            .collect();
        assert_eq!(kept, vec!["line1", "line2"]);
    }

    #[test]
    fn before_asks_the_engine_for_whole_seconds_up_to_the_next_one() {
        let t = DateTime::from_timestamp(1_000, 500).expect("time");
        let o = options_for(LogStart::Before(t, 10));
        assert_eq!((o.until, o.follow, o.tail.as_str()), (1_001, false, "all"));
        let o = options_for(LogStart::Tail(25));
        assert_eq!((o.until, o.follow, o.tail.as_str()), (0, true, "25"));
        assert!(o.timestamps && o.stdout && o.stderr);
    }

    #[tokio::test]
    async fn the_merger_batches_lines_and_sends_the_end_after_them() {
        let (tx, rx) = mpsc::channel(16);
        let (utx, mut urx) = mpsc::channel(16);
        let merger = tokio::spawn(merge(7, rx, utx));
        let rec = |i: usize| LogRecord {
            replica: "r".into(),
            stderr: false,
            timestamp: None,
            line: sanitize(format!("{i}").as_bytes()),
        };
        tx.send(LogItem::Lines((0..300).map(rec).collect()))
            .await
            .expect("send");
        tx.send(LogItem::Lines((300..700).map(rec).collect()))
            .await
            .expect("send");
        tx.send(LogItem::Ended {
            replica: "r".into(),
            reason: "done".into(),
        })
        .await
        .expect("send");
        drop(tx);
        let mut sizes = Vec::new();
        let mut ended = None;
        while let Some(update) = urx.recv().await {
            match update {
                Update::Logs { stream, lines } => {
                    assert_eq!(stream, 7);
                    assert!(ended.is_none(), "lines after the end");
                    sizes.push(lines.len());
                }
                Update::LogsEnded { reason, .. } => ended = Some(reason),
                other => panic!("unexpected {other:?}"),
            }
        }
        merger.await.expect("merger");
        assert_eq!(sizes.iter().sum::<usize>(), 700);
        assert!(sizes.iter().all(|n| *n <= BATCH_LINES), "{sizes:?}");
        assert!(
            sizes.len() <= 3,
            "lines sent in too many messages: {sizes:?}"
        );
        assert_eq!(ended.as_deref(), Some("done"));
    }
}
