//! Following the logs of one or more replicas as one stream. A stream starting at the tail
//! reads every replica's last lines first, sends them as one timeline, then follows each replica
//! from just after its last line, again after each restart of its container; a stream of
//! earlier lines reads each replica's lines before a time and ends. Lines are cut from the
//! engine's chunks, lose the engine's timestamp prefix and are sanitized.
//!
//! Not for keeping lines: the store's log buffer does that, and the UI never sees raw bytes.
//! Not for watching containers either: the session tells a stream when a followed container
//! starts or is removed, from the engine's events.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bollard::Docker;
use bollard::container::{InspectContainerOptions, LogOutput, LogsOptions};
use bollard::errors::Error as BollardError;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
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

/// Why a followed replica's stream ends when its container is gone.
const REMOVED: &str = "the replica was removed";

/// Why a stream of earlier lines ends for a replica that gave them.
pub(crate) const EARLIER_LOADED: &str = "earlier lines loaded";

/// What a replica's follower hands the relay.
#[derive(Debug)]
enum LogItem {
    Lines(Vec<LogRecord>),
    Paused { replica: String, reason: String },
    Ended { replica: String, reason: String },
}

/// What the session has seen of a followed replica's container: how often it started since the
/// stream began, and whether it is gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Lifecycle {
    starts: u64,
    removed: bool,
}

/// The replicas of a stream whose [`Update::LogsEnded`] has not been sent, shared by the
/// stream's task and the session so that each replica's end is sent once.
#[derive(Debug, Clone, Default)]
struct Open(Arc<Mutex<Vec<String>>>);

impl Open {
    /// Marks `replica` ended; false when it already was.
    fn close(&self, replica: &str) -> bool {
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let before = open.len();
        open.retain(|name| name != replica);
        open.len() < before
    }

    fn take_all(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The session's side of one log stream: where it reports that a followed container started or
/// was removed, and which replicas have not been told their end.
#[derive(Debug)]
pub struct Followers {
    lifecycle: HashMap<String, watch::Sender<Lifecycle>>,
    open: Open,
}

impl Followers {
    /// Tells the follower of container `id`, if any, that it runs again (a `start` event).
    pub fn started(&self, id: &str) {
        if let Some(tx) = self.lifecycle.get(id) {
            tx.send_modify(|seen| seen.starts += 1);
        }
    }

    /// Tells the follower of container `id`, if any, that the container is gone.
    pub fn removed(&self, id: &str) {
        if let Some(tx) = self.lifecycle.get(id) {
            tx.send_modify(|seen| seen.removed = true);
        }
    }

    /// The replicas whose end has not been sent, now counted as ended: the caller sends it.
    pub fn take_open(&self) -> Vec<String> {
        self.open.take_all()
    }
}

/// One replica of a stream, as its reader and follower know it.
#[derive(Debug)]
struct Followed {
    id: String,
    name: String,
    lifecycle: watch::Receiver<Lifecycle>,
}

/// Starts stream `stream` of `replicas` (container id, name) from `start`. Returns the task
/// (aborting it aborts everything the stream started) and the session's side of the stream.
pub fn spawn_stream(
    docker: &Docker,
    stream: u64,
    replicas: Vec<(String, String)>,
    start: LogStart,
    updates: mpsc::Sender<Update>,
) -> (JoinHandle<()>, Followers) {
    let mut lifecycle = HashMap::new();
    let mut followed = Vec::new();
    let mut ids = HashSet::new();
    for (id, name) in replicas {
        if !ids.insert(id.clone()) {
            continue;
        }
        let (tx, rx) = watch::channel(Lifecycle::default());
        lifecycle.insert(id.clone(), tx);
        followed.push(Followed {
            id,
            name,
            lifecycle: rx,
        });
    }
    let open = Open(Arc::new(Mutex::new(
        followed.iter().map(|r| r.name.clone()).collect(),
    )));
    let out = Out {
        sink: LogSink { stream, updates },
        open: open.clone(),
    };
    let docker = docker.clone();
    let task = tokio::spawn(async move {
        match start {
            LogStart::Tail(n) => tail_then_follow(docker, followed, n, out).await,
            LogStart::Before(t, n) => earlier(&docker, followed, t, n, &out).await,
        }
    });
    (task, Followers { lifecycle, open })
}

/// Where a log stream's lines, pauses and ends go, under its stream id; the Docker and the
/// Kubernetes streams both send through it. Every method returns false when the store is gone.
pub(crate) struct LogSink {
    pub(crate) stream: u64,
    pub(crate) updates: mpsc::Sender<Update>,
}

impl LogSink {
    /// Sends the batch in messages of at most [`BATCH_LINES`], leaving it empty.
    pub(crate) async fn lines(&self, batch: &mut Vec<LogRecord>) -> bool {
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(BATCH_LINES));
            let lines = std::mem::replace(batch, rest);
            let update = Update::Logs {
                stream: self.stream,
                lines,
            };
            if self.updates.send(update).await.is_err() {
                return false;
            }
        }
        true
    }

    pub(crate) async fn paused(&self, replica: String, reason: String) -> bool {
        let update = Update::LogsPaused {
            stream: self.stream,
            replica,
            reason,
        };
        self.updates.send(update).await.is_ok()
    }

    pub(crate) async fn ended(&self, replica: String, reason: String) -> bool {
        debug!(stream = self.stream, %replica, %reason, "log stream ended");
        let update = Update::LogsEnded {
            stream: self.stream,
            replica,
            reason,
        };
        self.updates.send(update).await.is_ok()
    }
}

/// Where a stream's task sends its updates. Every method returns false when the store is gone.
struct Out {
    sink: LogSink,
    open: Open,
}

impl Out {
    async fn lines(&self, batch: &mut Vec<LogRecord>) -> bool {
        self.sink.lines(batch).await
    }

    async fn paused(&self, replica: String, reason: String) -> bool {
        self.sink.paused(replica, reason).await
    }

    /// Sends the end of `replica`'s part, unless the session already did.
    async fn ended(&self, replica: String, reason: String) -> bool {
        if !self.open.close(&replica) {
            return true;
        }
        self.sink.ended(replica, reason).await
    }
}

/// The backlog of every replica as one timeline, then a follower per replica.
async fn tail_then_follow(docker: Docker, replicas: Vec<Followed>, n: u64, out: Out) {
    let reads = replicas.iter().map(|r| read_tail(&docker, r, n));
    let tails = join_all(reads).await;

    let mut shown = Vec::new();
    let mut followers = Vec::new();
    let mut failed = Vec::new();
    for (replica, tail) in replicas.into_iter().zip(tails) {
        match tail {
            Ok(tail) => {
                shown.push(tail.lines);
                followers.push((replica, tail.newest));
            }
            Err(reason) => failed.push((replica.name, reason)),
        }
    }
    let mut backlog = merge_by_time(shown);
    if !out.lines(&mut backlog).await {
        return;
    }
    for (replica, reason) in failed {
        if !out.ended(replica, reason).await {
            return;
        }
    }

    let (tx, rx) = mpsc::channel(16);
    // Dropped with this task, which aborts every follower.
    let mut tasks = JoinSet::new();
    for (replica, newest) in followers {
        tasks.spawn(follow(docker.clone(), replica, newest, tx.clone()));
    }
    drop(tx);
    relay(rx, &out).await;
}

/// A replica's last lines and the newest time its log held when they were read.
#[derive(Debug)]
struct Tail {
    lines: Vec<LogRecord>,
    newest: Option<DateTime<Utc>>,
}

/// Reads the last `n` lines of one replica without following. One line is read even for
/// `n == 0`, so the follower knows where the log stood.
async fn read_tail(docker: &Docker, replica: &Followed, n: u64) -> Result<Tail, String> {
    let options = LogsOptions {
        tail: n.max(1).to_string(),
        ..base_options()
    };
    let mut reader = Reader::open(docker, replica, options);
    let mut lines = Vec::new();
    while let Some(records) = reader.next().await.map_err(|e| read_failure(replica, &e))? {
        lines.extend(records);
    }
    let keep = usize::try_from(n).unwrap_or(usize::MAX);
    let lines = lines.split_off(lines.len().saturating_sub(keep));
    Ok(Tail {
        lines,
        newest: reader.newest,
    })
}

/// Each replica's last `n` lines strictly before `t`, as one timeline; then the end of every
/// replica's part.
async fn earlier(docker: &Docker, replicas: Vec<Followed>, t: DateTime<Utc>, n: u64, out: &Out) {
    let reads = replicas.iter().map(|r| read_before(docker, r, t, n));
    let parts = join_all(reads).await;

    let mut found = Vec::new();
    let mut ends = Vec::new();
    for (replica, part) in replicas.into_iter().zip(parts) {
        match part {
            Ok(lines) => {
                found.push(lines);
                ends.push((replica.name, EARLIER_LOADED.to_string()));
            }
            Err(reason) => ends.push((replica.name, reason)),
        }
    }
    let mut lines = merge_by_time(found);
    if !out.lines(&mut lines).await {
        return;
    }
    for (replica, reason) in ends {
        if !out.ended(replica, reason).await {
            return;
        }
    }
}

/// One replica's last `n` lines strictly before `t`.
async fn read_before(
    docker: &Docker,
    replica: &Followed,
    t: DateTime<Utc>,
    n: u64,
) -> Result<Vec<LogRecord>, String> {
    let mut reader = Reader::open(docker, replica, before_options(t));
    let mut window = Window::new(t, n);
    while let Some(records) = reader.next().await.map_err(|e| read_failure(replica, &e))? {
        records.into_iter().for_each(|r| window.push(r));
    }
    Ok(window.into_lines())
}

/// One timeline from each replica's lines (each in its own order): by timestamp, lines with
/// equal times in the order the parts were given. A line without a time keeps its place after
/// the line before it in its part.
pub(crate) fn merge_by_time(parts: Vec<Vec<LogRecord>>) -> Vec<LogRecord> {
    let mut keyed = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for part in parts {
        let mut time = None;
        for record in part {
            time = record.timestamp.or(time);
            keyed.push((time, record));
        }
    }
    // `sort_by_key` is stable: equal times keep the order they were pushed in.
    keyed.sort_by_key(|(time, _)| *time);
    keyed.into_iter().map(|(_, record)| record).collect()
}

/// How one attachment to a replica's log ended.
enum Attached {
    /// The engine closed the log: the container stopped (or was removed).
    Closed,
    /// The engine refused the log of a container being removed (or dead): its `destroy` event
    /// is coming.
    Refused,
    /// The log cannot be read any more; why.
    Failed(String),
    /// The relay is gone: the stream was stopped.
    Gone,
}

/// What a follower does after the engine closed its replica's log.
enum Next {
    Attach,
    /// Wait for the container to start again (saying why), or to be removed.
    Wait(String),
    /// Wait without a word: the container is being removed.
    Hold,
    End(String),
}

/// Follows one replica until it is removed or its log cannot be read: lines after `newest`
/// only, and again from there each time its container runs again.
async fn follow(
    docker: Docker,
    mut replica: Followed,
    mut newest: Option<DateTime<Utc>>,
    tx: mpsc::Sender<LogItem>,
) {
    // The StartedAt of the run last attached to after a close, so one run is attached once.
    let mut run: Option<String> = None;
    let reason = loop {
        // Starts seen from here on wake a pause below, even one that comes during the read.
        let seen = *replica.lifecycle.borrow_and_update();
        if seen.removed {
            break REMOVED.to_string();
        }
        let next = match attach(&docker, &replica, &mut newest, &tx).await {
            Attached::Closed => after_close(&docker, &replica, &mut run).await,
            Attached::Refused => Next::Hold,
            Attached::Failed(reason) => Next::End(reason),
            Attached::Gone => return,
        };
        match next {
            Next::Attach => continue,
            Next::End(reason) => break reason,
            Next::Hold => {}
            Next::Wait(reason) => {
                debug!(container = %replica.id, %reason, "log follow paused");
                let paused = LogItem::Paused {
                    replica: replica.name.clone(),
                    reason,
                };
                if tx.send(paused).await.is_err() {
                    return;
                }
            }
        }
        // An error means the session dropped the stream; its task is being aborted.
        if replica.lifecycle.changed().await.is_err() {
            return;
        }
    };
    let ended = LogItem::Ended {
        replica: replica.name,
        reason,
    };
    let _ = tx.send(ended).await;
}

/// Reads the replica's log from the second of `newest` on, following, and passes on the lines
/// after `newest` (the engine's `since` is whole seconds), moving `newest` along.
async fn attach(
    docker: &Docker,
    replica: &Followed,
    newest: &mut Option<DateTime<Utc>>,
    tx: &mpsc::Sender<LogItem>,
) -> Attached {
    let mut reader = Reader::open(docker, replica, follow_options(*newest));
    loop {
        let records = match reader.next().await {
            Ok(Some(records)) => records,
            Ok(None) => return Attached::Closed,
            Err(err) if is_not_found(&err) => return Attached::Failed(REMOVED.to_string()),
            Err(err) if status_of(&err) == Some(409) => return Attached::Refused,
            Err(err) => return Attached::Failed(read_failure(replica, &err)),
        };
        let fresh = after(records, *newest);
        *newest = (*newest).max(reader.newest);
        if !fresh.is_empty() && tx.send(LogItem::Lines(fresh)).await.is_err() {
            return Attached::Gone;
        }
    }
}

/// The lines later than `newest`; lines without a time are kept, as nothing says they were
/// sent.
pub(crate) fn after(records: Vec<LogRecord>, newest: Option<DateTime<Utc>>) -> Vec<LogRecord> {
    let Some(newest) = newest else {
        return records;
    };
    records
        .into_iter()
        .filter(|r| r.timestamp.is_none_or(|t| t > newest))
        .collect()
}

/// Decides from the container's state what follows a closed log: attach again to a run not yet
/// attached to, wait for a start while it exists, or end when it is gone.
async fn after_close(docker: &Docker, replica: &Followed, run: &mut Option<String>) -> Next {
    let inspect = docker
        .inspect_container(&replica.id, None::<InspectContainerOptions>)
        .await;
    let state = match inspect {
        Ok(inspect) => inspect.state.unwrap_or_default(),
        Err(err) if is_not_found(&err) => return Next::End(REMOVED.to_string()),
        Err(err) => {
            return Next::End(format!("cannot read the state of {}: {err}", replica.name));
        }
    };
    let status = state.status.map(|s| s.to_string()).unwrap_or_default();
    // A container being removed, or dead (which only removal follows), never runs again: wait
    // silently for its destroy event rather than announce a restart that cannot come.
    if status == "removing" || status == "dead" || state.dead == Some(true) {
        return Next::Hold;
    }
    // The engine may report the next run before its `start` event reaches the worker.
    if state.running == Some(true) && state.started_at != *run {
        *run = state.started_at;
        return Next::Attach;
    }
    Next::Wait(pause_reason(&status))
}

/// What the UI shows while a replica's log waits for its container to run again.
fn pause_reason(status: &str) -> String {
    match status {
        "" | "running" => "log closed by the engine, waiting for restart".to_string(),
        status => format!("{status}, waiting for restart"),
    }
}

/// Batches the lines of a stream's followers: up to [`BATCH_LINES`] lines, or whatever came
/// within [`BATCH_DELAY`] of the first line of the batch. A pause or end is sent after the
/// lines before it.
async fn relay(mut rx: mpsc::Receiver<LogItem>, out: &Out) {
    let mut batch: Vec<LogRecord> = Vec::new();
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + BATCH_DELAY;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            let sent = match item {
                LogItem::Lines(lines) => {
                    batch.extend(lines);
                    true
                }
                LogItem::Paused { replica, reason } => {
                    out.lines(&mut batch).await && out.paused(replica, reason).await
                }
                LogItem::Ended { replica, reason } => {
                    out.lines(&mut batch).await && out.ended(replica, reason).await
                }
            };
            if !sent {
                return;
            }
            if batch.len() >= BATCH_LINES {
                break;
            }
            // A timeout means the batch is due; it yields no item.
            next = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_default();
        }
        if !out.lines(&mut batch).await {
            return;
        }
    }
}

/// What every read asks for: both outputs, with the engine's timestamps, not following.
fn base_options() -> LogsOptions<String> {
    LogsOptions {
        follow: false,
        stdout: true,
        stderr: true,
        since: 0,
        until: 0,
        timestamps: true,
        tail: "all".to_string(),
    }
}

/// Following from the second of `newest` (the engine takes whole seconds), or from the start of
/// a log that held nothing.
// LIMITATION: `since` without `tail` makes the json-file driver read the log from its start to
// find that second, so each attach (and re-attach after a restart) of a replica with a huge log
// file takes longer; a `tail` cannot bound it, as the lines since the backlog are uncounted.
fn follow_options(newest: Option<DateTime<Utc>>) -> LogsOptions<String> {
    LogsOptions {
        follow: true,
        since: newest.map_or(0, |t| t.timestamp()),
        ..base_options()
    }
}

/// Reading up to the second after `t` (the engine takes whole seconds, inclusive); the window
/// drops the lines at or after `t`.
// LIMITATION: the engine applies `tail` before `until`, so earlier lines are found by reading
// the log from its start up to `t` and keeping the last n; a huge log file makes scrolling back
// slow.
fn before_options(t: DateTime<Utc>) -> LogsOptions<String> {
    let secs = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
    LogsOptions {
        until: secs,
        ..base_options()
    }
}

fn status_of(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn is_not_found(err: &BollardError) -> bool {
    status_of(err) == Some(404)
}

fn read_failure(replica: &Followed, err: &BollardError) -> String {
    if is_not_found(err) {
        return REMOVED.to_string();
    }
    format!("cannot read the log of {}: {err}", replica.name)
}

type LogChunks = Pin<Box<dyn Stream<Item = Result<LogOutput, BollardError>> + Send>>;

/// One read of a replica's log, as records: stdout and stderr cut into lines apart, the
/// partial lines given when the engine closes the log.
struct Reader {
    chunks: LogChunks,
    name: String,
    stdout: LineSplitter,
    stderr: LineSplitter,
    closed: bool,
    /// The newest engine timestamp read so far, of a line or of a part of one.
    newest: Option<DateTime<Utc>>,
}

impl Reader {
    fn open(docker: &Docker, replica: &Followed, options: LogsOptions<String>) -> Reader {
        Reader {
            chunks: Box::pin(docker.logs(&replica.id, Some(options))),
            name: replica.name.clone(),
            stdout: LineSplitter::default(),
            stderr: LineSplitter::default(),
            closed: false,
            newest: None,
        }
    }

    /// The records of the next chunk; `None` once the log was closed and its partial lines
    /// given.
    async fn next(&mut self) -> Result<Option<Vec<LogRecord>>, BollardError> {
        if self.closed {
            return Ok(None);
        }
        let (is_stderr, bytes) = match self.chunks.next().await {
            None => {
                self.closed = true;
                let mut rest: Vec<LogRecord> = Vec::new();
                rest.extend(self.stdout.finish().map(|l| record(&self.name, false, &l)));
                rest.extend(self.stderr.finish().map(|l| record(&self.name, true, &l)));
                return Ok(Some(rest));
            }
            Some(Err(err)) => return Err(err),
            Some(Ok(LogOutput::StdErr { message })) => (true, message),
            Some(Ok(
                LogOutput::StdOut { message }
                | LogOutput::Console { message }
                | LogOutput::StdIn { message },
            )) => (false, message),
        };
        let splitter = if is_stderr {
            &mut self.stderr
        } else {
            &mut self.stdout
        };
        let records: Vec<LogRecord> = splitter
            .push(&bytes)
            .iter()
            .map(|line| record(&self.name, is_stderr, line))
            .collect();
        let part = splitter.last_part_stamp();
        let lines = records.iter().filter_map(|r| r.timestamp);
        self.newest = lines.chain(part).chain(self.newest).max();
        Ok(Some(records))
    }
}

/// The last `n` lines before `until`, for loading earlier lines.
#[derive(Debug)]
pub(crate) struct Window {
    until: DateTime<Utc>,
    keep: usize,
    lines: VecDeque<LogRecord>,
    /// The time of the last line pushed, which a line without one is taken to share.
    last: Option<DateTime<Utc>>,
}

impl Window {
    pub(crate) fn new(until: DateTime<Utc>, keep: u64) -> Self {
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        Window {
            until,
            keep,
            lines: VecDeque::new(),
            last: None,
        }
    }

    /// Keeps a line strictly before `until`, dropping the oldest kept when full.
    pub(crate) fn push(&mut self, record: LogRecord) {
        self.last = record.timestamp.or(self.last);
        if self.last.is_some_and(|t| t >= self.until) || self.keep == 0 {
            return;
        }
        if self.lines.len() == self.keep {
            self.lines.pop_front();
        }
        self.lines.push_back(record);
    }

    pub(crate) fn into_lines(self) -> Vec<LogRecord> {
        self.lines.into()
    }
}

/// One line of output as a record: the engine's timestamp taken off and parsed, a line-ending
/// `\r` dropped, the rest sanitized.
pub(crate) fn record(replica: &str, stderr: bool, raw: &[u8]) -> LogRecord {
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
    /// The stamp of the last continuation part dropped, so a reader knows how far it read.
    part_stamp: Option<DateTime<Utc>>,
}

impl LineSplitter {
    /// The complete lines in `chunk` (without `\n`), with any carried part in front.
    ///
    /// The engine stamps every message it stores, so a long line it stored in parts arrives as
    /// parts each with a timestamp; the stamp of a continuation is dropped here.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut rest = chunk;
        if !self.carry.is_empty()
            && let (Some(stamp), tail) = split_timestamp(rest)
        {
            self.part_stamp = Some(stamp);
            rest = tail;
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

    /// The engine's stamp of the last continuation part, whose own stamp [`Self::push`] dropped.
    pub fn last_part_stamp(&self) -> Option<DateTime<Utc>> {
        self.part_stamp
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
        let o = before_options(t);
        assert_eq!((o.until, o.follow, o.tail.as_str()), (1_001, false, "all"));
        let whole = DateTime::from_timestamp(1_000, 0).expect("time");
        assert_eq!(before_options(whole).until, 1_000);
    }

    #[test]
    fn following_starts_at_the_second_of_the_newest_line_or_at_the_start_of_an_empty_log() {
        let t = DateTime::from_timestamp(1_000, 999_999_999).expect("time");
        let o = follow_options(Some(t));
        assert_eq!(
            (o.since, o.until, o.follow, o.tail.as_str()),
            (1_000, 0, true, "all")
        );
        assert!(o.timestamps && o.stdout && o.stderr);
        assert_eq!(follow_options(None).since, 0);
    }

    fn at(replica: &str, secs: i64, nanos: u32, text: &str) -> LogRecord {
        LogRecord {
            replica: replica.into(),
            stderr: false,
            timestamp: DateTime::from_timestamp(secs, nanos),
            line: sanitize(text.as_bytes()),
        }
    }

    fn texts(records: &[LogRecord]) -> Vec<&str> {
        records.iter().map(|r| r.line.text.as_str()).collect()
    }

    #[test]
    fn replicas_lines_merge_by_time_with_equal_times_in_replica_order() {
        let a = vec![
            at("a", 10, 0, "a1"),
            at("a", 12, 0, "a2"),
            at("a", 14, 0, "a3"),
        ];
        let b = vec![
            at("b", 11, 0, "b1"),
            at("b", 12, 0, "b2"),
            at("b", 15, 0, "b3"),
        ];
        let c = vec![at("c", 9, 0, "c1"), at("c", 12, 0, "c2")];
        let merged = merge_by_time(vec![a, b, c]);
        assert_eq!(
            texts(&merged),
            ["c1", "a1", "b1", "a2", "b2", "c2", "a3", "b3"]
        );
    }

    #[test]
    fn a_line_without_a_time_stays_after_the_line_before_it() {
        let mut untimed = at("a", 0, 0, "a2 (no time)");
        untimed.timestamp = None;
        let a = vec![at("a", 10, 0, "a1"), untimed, at("a", 13, 0, "a3")];
        let b = vec![at("b", 11, 0, "b1"), at("b", 12, 0, "b2")];
        let merged = merge_by_time(vec![a, b]);
        assert_eq!(texts(&merged), ["a1", "a2 (no time)", "b1", "b2", "a3"]);
    }

    #[test]
    fn following_again_drops_every_line_at_or_before_the_newest_sent_to_the_nanosecond() {
        let lines = vec![
            at("a", 20, 5, "sent before"),
            at("a", 20, 6, "the newest sent"),
            at("a", 20, 7, "new, same second"),
            at("a", 21, 0, "new, next second"),
        ];
        let newest = DateTime::from_timestamp(20, 6);
        assert_eq!(
            texts(&after(lines.clone(), newest)),
            ["new, same second", "new, next second"]
        );
        assert_eq!(after(lines, None).len(), 4, "nothing was sent before");
    }

    #[test]
    fn earlier_lines_stop_strictly_before_the_time_asked_to_the_nanosecond() {
        let until = DateTime::from_timestamp(50, 300).expect("time");
        let mut window = Window::new(until, 2);
        for (secs, nanos, text) in [
            (49, 0, "older"),
            (50, 100, "before 1"),
            (50, 299, "before 2"),
            (50, 300, "the line at the time"),
            (50, 301, "after"),
        ] {
            window.push(at("a", secs, nanos, text));
        }
        let mut untimed = at("a", 0, 0, "part of the line after");
        untimed.timestamp = None;
        window.push(untimed);
        assert_eq!(texts(&window.into_lines()), ["before 1", "before 2"]);
    }

    #[test]
    fn the_stamp_of_a_continuation_part_is_remembered() {
        let mut splitter = LineSplitter::default();
        splitter.push(b"2024-05-01T10:00:00.1Z long ");
        assert_eq!(splitter.last_part_stamp(), None);
        splitter.push(b"2024-05-01T10:00:00.2Z line\n");
        let stamp = splitter.last_part_stamp().expect("a part stamp");
        assert_eq!(stamp.timestamp_subsec_millis(), 200);
    }

    #[test]
    fn a_paused_replica_says_what_state_it_waits_in() {
        assert_eq!(pause_reason("exited"), "exited, waiting for restart");
        assert_eq!(
            pause_reason("restarting"),
            "restarting, waiting for restart"
        );
        assert_eq!(
            pause_reason("running"),
            "log closed by the engine, waiting for restart"
        );
    }

    #[test]
    fn each_replica_end_is_sent_once_by_whoever_comes_first() {
        let open = Open(Arc::new(Mutex::new(vec!["a".into(), "b".into()])));
        assert!(open.close("a"));
        assert!(!open.close("a"), "a second end of a is not sent");
        assert_eq!(open.take_all(), vec!["b".to_string()]);
        assert!(!open.close("b"), "the session took b's end");
    }

    #[tokio::test]
    async fn the_relay_batches_lines_and_sends_the_end_after_them() {
        let (tx, rx) = mpsc::channel(16);
        let (utx, mut urx) = mpsc::channel(16);
        let out = Out {
            sink: LogSink {
                stream: 7,
                updates: utx,
            },
            open: Open(Arc::new(Mutex::new(vec!["r".into()]))),
        };
        let merger = tokio::spawn(async move { relay(rx, &out).await });
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
