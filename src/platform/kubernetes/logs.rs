//! Following the logs of pods as one stream: every container of every pod asked for, lines
//! named by the pod (or `pod/container` when it has several), with the API server's
//! timestamps, sanitized exactly as Docker logs are. A stream from the tail reads each
//! container's last lines, sends them as one timeline, then follows each container from its
//! newest line, again after each restart. A crash-looping container with nothing of its own
//! yet shows its previous instance's lines. A stream of earlier lines reads and cuts (the API
//! has no upper time bound) and ends.
//!
//! Not for keeping lines: the store's log buffer does that. Every read is streamed line by line
//! with bounded lines; nothing holds a whole log.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use futures::{AsyncBufRead, AsyncBufReadExt};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, LogParams};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::debug;

use super::convert;
use super::watch::client_cause;
use crate::platform::docker::logs::LogSink;
use crate::platform::docker::logs::{EARLIER_LOADED, Window, after, merge_by_time, record};
use crate::platform::docker::{BATCH_DELAY, BATCH_LINES, MAX_LINE_BYTES};
use crate::platform::{LogRecord, LogStart, Update};

/// How many lines of a previous container instance are read at most.
pub const PREVIOUS_LINES: u64 = 10_000;

/// How often a follower waiting for a restart looks at its pod again.
const RESTART_POLL: Duration = Duration::from_millis(500);

/// Why a stream of a previous instance ends when it was read.
const PREVIOUS_LOADED: &str = "previous instance's lines loaded";

/// Why a followed pod's stream ends when the pod is deleted.
const POD_GONE: &str = "the pod was deleted";

/// The log streams of one session: each aborted when stopped, replaced or dropped.
pub struct Logs {
    client: Client,
    pods: Store<Pod>,
    updates: mpsc::Sender<Update>,
    streams: HashMap<u64, Running>,
}

/// One stream's task and the pods whose end it has not sent.
struct Running {
    task: JoinHandle<()>,
    open: Open,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Logs {
    pub fn new(client: Client, pods: Store<Pod>, updates: mpsc::Sender<Update>) -> Logs {
        Logs {
            client,
            pods,
            updates,
            streams: HashMap::new(),
        }
    }

    /// Starts stream `stream` of `replicas` (pod uid, pod name), ending an earlier one with the
    /// same id; false when the store is gone.
    pub async fn follow(
        &mut self,
        stream: u64,
        replicas: Vec<(String, String)>,
        start: LogStart,
    ) -> bool {
        if !self.stop(stream, "replaced by a new request").await {
            return false;
        }
        let (parts, missing) = parts_of(&self.pods, &replicas);
        let open = Open::new(&parts);
        let ctx = Ctx {
            client: self.client.clone(),
            pods: self.pods.clone(),
            out: Out {
                sink: LogSink {
                    stream,
                    updates: self.updates.clone(),
                },
                open: open.clone(),
            },
        };
        let task = tokio::spawn(async move {
            for name in missing {
                if !ctx
                    .out
                    .send_end(&name, "the pod is not known (deleted?)")
                    .await
                {
                    return;
                }
            }
            match start {
                LogStart::Tail(n) => tail_then_follow(ctx, parts, n).await,
                LogStart::Before(t, n) => earlier(&ctx, parts, t, n).await,
            }
        });
        self.streams.insert(stream, Running { task, open });
        true
    }

    /// Starts stream `stream` with the previous instance's lines of every container of one pod.
    pub async fn previous(&mut self, stream: u64, replica: (String, String)) -> bool {
        if !self.stop(stream, "replaced by a new request").await {
            return false;
        }
        let (parts, missing) = parts_of(&self.pods, std::slice::from_ref(&replica));
        let open = Open::new(&parts);
        let ctx = Ctx {
            client: self.client.clone(),
            pods: self.pods.clone(),
            out: Out {
                sink: LogSink {
                    stream,
                    updates: self.updates.clone(),
                },
                open: open.clone(),
            },
        };
        let task = tokio::spawn(async move {
            for name in missing {
                if !ctx
                    .out
                    .send_end(&name, "the pod is not known (deleted?)")
                    .await
                {
                    return;
                }
            }
            previous_lines(&ctx, parts).await;
        });
        self.streams.insert(stream, Running { task, open });
        true
    }

    /// Stops a stream, if there is one, and ends the pods it has not ended itself.
    pub async fn stop(&mut self, stream: u64, reason: &str) -> bool {
        self.streams.retain(|_, s| !s.task.is_finished());
        let Some(stopped) = self.streams.remove(&stream) else {
            return true;
        };
        stopped.task.abort();
        for replica in stopped.open.take_all() {
            let ended = Update::LogsEnded {
                stream,
                replica,
                reason: reason.to_string(),
            };
            if self.updates.send(ended).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Stops every stream, telling why (the connection was lost), or silently when quitting.
    pub async fn close(&mut self, reason: Option<&str>) {
        let streams: Vec<u64> = self.streams.keys().copied().collect();
        for stream in streams {
            match reason {
                Some(reason) => {
                    if !self.stop(stream, reason).await {
                        return;
                    }
                }
                None => {
                    self.streams.remove(&stream);
                }
            }
        }
    }
}

/// The pods of a stream whose [`Update::LogsEnded`] has not been sent, with how many of their
/// containers still have a reader; shared by the stream's task and [`Logs::stop`].
#[derive(Debug, Clone, Default)]
struct Open(Arc<Mutex<Vec<(String, usize)>>>);

impl Open {
    fn new(parts: &[Part]) -> Open {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for part in parts {
            match counts.iter_mut().find(|(pod, _)| *pod == part.pod) {
                Some((_, n)) => *n += 1,
                None => counts.push((part.pod.clone(), 1)),
            }
        }
        Open(Arc::new(Mutex::new(counts)))
    }

    /// One container of `pod` ended; true when it was the pod's last, whose end is now due.
    fn part_ended(&self, pod: &str) -> bool {
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(i) = open.iter().position(|(p, _)| p == pod) else {
            return false;
        };
        open[i].1 = open[i].1.saturating_sub(1);
        if open[i].1 > 0 {
            return false;
        }
        open.remove(i);
        true
    }

    fn take_all(&self) -> Vec<String> {
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        open.drain(..).map(|(pod, _)| pod).collect()
    }
}

/// One container of one pod, as a stream reads it.
#[derive(Debug, Clone)]
struct Part {
    namespace: String,
    /// The pod's name, as the request named the replica.
    pod: String,
    uid: String,
    container: String,
    /// What its lines are named: the pod, or `pod/container` in a pod of several.
    label: String,
}

/// The parts of each replica asked for, and the names of those not known.
fn parts_of(pods: &Store<Pod>, replicas: &[(String, String)]) -> (Vec<Part>, Vec<String>) {
    let mut parts = Vec::new();
    let mut missing = Vec::new();
    for (uid, name) in replicas {
        let found = pods.find(|p| convert::pod_id(p) == *uid);
        let Some(pod) = found else {
            missing.push(name.clone());
            continue;
        };
        let containers: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
            .collect();
        let several = containers.len() > 1;
        for container in containers {
            let label = if several {
                format!("{name}/{container}")
            } else {
                name.clone()
            };
            parts.push(Part {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                pod: name.clone(),
                uid: uid.clone(),
                container,
                label,
            });
        }
        if parts.iter().all(|p| p.uid != *uid) {
            missing.push(name.clone());
        }
    }
    (parts, missing)
}

/// What a stream's task reads with.
struct Ctx {
    client: Client,
    pods: Store<Pod>,
    out: Out,
}

/// Where a stream's task sends. Every method returns false when the store is gone.
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

    /// One container of `pod` is done; the pod's end is sent when it was its last.
    async fn part_ended(&self, pod: &str, reason: &str) -> bool {
        if !self.open.part_ended(pod) {
            return true;
        }
        self.send_end(pod, reason).await
    }

    async fn send_end(&self, pod: &str, reason: &str) -> bool {
        self.sink.ended(pod.to_string(), reason.to_string()).await
    }
}

/// A log read that failed.
#[derive(Debug)]
enum ReadError {
    /// The pod is gone (404).
    Gone,
    /// The container has not started, or has no previous instance (400); the API's words.
    NotThere(String),
    Other(String),
}

impl ReadError {
    fn from_client(error: &kube::Error) -> ReadError {
        match error {
            kube::Error::Api(status) if status.code == 404 => ReadError::Gone,
            kube::Error::Api(status) if status.code == 400 => {
                ReadError::NotThere(status.message.clone())
            }
            other => ReadError::Other(client_cause(other)),
        }
    }

    fn describe(&self, part: &Part) -> String {
        match self {
            ReadError::Gone => POD_GONE.to_string(),
            ReadError::NotThere(message) => message.clone(),
            ReadError::Other(message) => {
                format!("cannot read the log of {}: {message}", part.label)
            }
        }
    }
}

type LogBody = Pin<Box<dyn AsyncBufRead + Send>>;

/// One open log read, cut into records line by line; no line is longer than
/// [`MAX_LINE_BYTES`].
struct Reader {
    body: LogBody,
    label: String,
    carry: Vec<u8>,
    /// The newest timestamp read so far.
    newest: Option<DateTime<Utc>>,
}

impl Reader {
    async fn open(ctx: &Ctx, part: &Part, params: &LogParams) -> Result<Reader, ReadError> {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &part.namespace);
        let body = api
            .log_stream(&part.pod, params)
            .await
            .map_err(|e| ReadError::from_client(&e))?;
        Ok(Reader {
            body: Box::pin(body),
            label: part.label.clone(),
            carry: Vec::new(),
            newest: None,
        })
    }

    /// The next line as a record; `None` at the end of the read.
    async fn next(&mut self) -> Result<Option<LogRecord>, String> {
        loop {
            let buf = self.body.fill_buf().await.map_err(|e| e.to_string())?;
            if buf.is_empty() {
                if self.carry.is_empty() {
                    return Ok(None);
                }
                let line = std::mem::take(&mut self.carry);
                return Ok(Some(self.record(&line)));
            }
            let room = MAX_LINE_BYTES - self.carry.len();
            let (taken, complete) = match buf.iter().take(room).position(|b| *b == b'\n') {
                Some(pos) => {
                    self.carry.extend_from_slice(&buf[..pos]);
                    (pos + 1, true)
                }
                None => {
                    let n = buf.len().min(room);
                    self.carry.extend_from_slice(&buf[..n]);
                    (n, self.carry.len() >= MAX_LINE_BYTES)
                }
            };
            self.body.consume_unpin(taken);
            if complete {
                let line = std::mem::take(&mut self.carry);
                return Ok(Some(self.record(&line)));
            }
        }
    }

    fn record(&mut self, line: &[u8]) -> LogRecord {
        let record = record(&self.label, false, line);
        self.newest = self.newest.max(record.timestamp);
        record
    }
}

/// Reads a whole answer, keeping the last `keep` lines.
async fn read_last(
    ctx: &Ctx,
    part: &Part,
    params: &LogParams,
    keep: u64,
) -> Result<(Vec<LogRecord>, Option<DateTime<Utc>>), ReadError> {
    let mut reader = Reader::open(ctx, part, params).await?;
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    let mut lines = VecDeque::new();
    while let Some(line) = reader.next().await.map_err(ReadError::Other)? {
        if lines.len() == keep {
            lines.pop_front();
        }
        if keep > 0 {
            lines.push_back(line);
        }
    }
    Ok((lines.into(), reader.newest))
}

fn params(part: &Part) -> LogParams {
    LogParams {
        container: Some(part.container.clone()),
        timestamps: true,
        ..LogParams::default()
    }
}

/// A container's last lines, and where its follower starts.
struct Tail {
    lines: Vec<LogRecord>,
    newest: Option<DateTime<Utc>>,
    /// Why the lines are the previous instance's, when they are.
    previous: Option<String>,
}

/// The last `n` lines of the container; when the current instance has none yet and it has
/// restarted, the previous instance's instead. One line is read even for `n == 0`, so the
/// follower knows where the log stood.
async fn read_tail(ctx: &Ctx, part: &Part, n: u64) -> Result<Tail, ReadError> {
    let tail = LogParams {
        tail_lines: Some(i64::try_from(n.max(1)).unwrap_or(i64::MAX)),
        ..params(part)
    };
    let current = read_last(ctx, part, &tail, n).await;
    let why_previous = match &current {
        Ok((lines, newest)) if !lines.is_empty() || newest.is_some() => None,
        Ok(_) => Some("nothing printed yet".to_string()),
        Err(ReadError::NotThere(message)) => Some(message.clone()),
        Err(_) => None,
    };
    let restarted = container_status(&ctx.pods, part).is_some_and(|s| s.restart_count > 0);
    if let (Some(why), true) = (why_previous, restarted) {
        let previous = LogParams {
            previous: true,
            ..tail
        };
        if let Ok((lines, _)) = read_last(ctx, part, &previous, n).await {
            return Ok(Tail {
                lines,
                newest: None,
                previous: Some(format!("the previous instance's lines ({why})")),
            });
        }
    }
    match current {
        Ok((lines, newest)) => Ok(Tail {
            lines,
            newest,
            previous: None,
        }),
        Err(ReadError::NotThere(_)) => Ok(Tail {
            lines: Vec::new(),
            newest: None,
            previous: None,
        }),
        Err(error) => Err(error),
    }
}

/// The backlog of every container as one timeline, then a follower per container.
async fn tail_then_follow(ctx: Ctx, parts: Vec<Part>, n: u64) {
    let tails = join_all(parts.iter().map(|p| read_tail(&ctx, p, n))).await;
    let mut shown = Vec::new();
    let mut followers = Vec::new();
    let mut notes = Vec::new();
    let mut failed = Vec::new();
    for (part, tail) in parts.into_iter().zip(tails) {
        match tail {
            Ok(tail) => {
                shown.push(tail.lines);
                if let Some(note) = tail.previous {
                    notes.push((part.label.clone(), note));
                }
                followers.push((part, tail.newest));
            }
            Err(error) => failed.push((part.pod.clone(), error.describe(&part))),
        }
    }
    let mut backlog = merge_by_time(shown);
    if !ctx.out.lines(&mut backlog).await {
        return;
    }
    for (label, note) in notes {
        if !ctx.out.paused(label, note).await {
            return;
        }
    }
    for (pod, reason) in failed {
        if !ctx.out.part_ended(&pod, &reason).await {
            return;
        }
    }

    let (tx, rx) = mpsc::channel(16);
    let ctx = Arc::new(ctx);
    // Dropped with this task, which aborts every follower.
    let mut tasks = JoinSet::new();
    for (part, newest) in followers {
        tasks.spawn(follow(Arc::clone(&ctx), part, newest, tx.clone()));
    }
    drop(tx);
    relay(rx, &ctx.out).await;
}

/// What a follower hands the relay.
#[derive(Debug)]
enum Item {
    Lines(Vec<LogRecord>),
    Paused { label: String, reason: String },
    Ended { pod: String, reason: String },
}

/// The container as the pod store shows it now.
enum Now {
    PodGone,
    /// It will not run again (the pod finished, or it exited under `restartPolicy: Never`).
    Finished(String),
    /// Running this instance (restart count and start time).
    Running(String),
    /// Waiting or terminated, to be restarted; why.
    Waiting(String),
}

fn container_status(pods: &Store<Pod>, part: &Part) -> Option<ContainerStatus> {
    let pod = current_pod(pods, part)?;
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find(|s| s.name == part.container).cloned()
}

fn current_pod(pods: &Store<Pod>, part: &Part) -> Option<Arc<Pod>> {
    let key = ObjectRef::new(&part.pod).within(&part.namespace);
    pods.get(&key).filter(|p| convert::pod_id(p) == part.uid)
}

fn now_of(pods: &Store<Pod>, part: &Part) -> Now {
    let Some(pod) = current_pod(pods, part) else {
        return Now::PodGone;
    };
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return Now::Finished(format!("the pod finished ({phase})"));
    }
    let never = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never");
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    let status = statuses.and_then(|all| all.iter().find(|s| s.name == part.container));
    let Some(status) = status else {
        return Now::Waiting("the container has not started".to_string());
    };
    let state = status.state.as_ref();
    if let Some(running) = state.and_then(|s| s.running.as_ref()) {
        let started = running.started_at.as_ref().map(|t| t.0.to_string());
        return Now::Running(format!(
            "{}/{}",
            status.restart_count,
            started.unwrap_or_default()
        ));
    }
    if let Some(done) = state.and_then(|s| s.terminated.as_ref()) {
        let how = done
            .reason
            .clone()
            .unwrap_or_else(|| format!("exit code {}", done.exit_code));
        if never {
            return Now::Finished(format!("the container exited ({how})"));
        }
        return Now::Waiting(format!("{how}, waiting for restart"));
    }
    let waiting = state
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone())
        .unwrap_or_else(|| "waiting".to_string());
    Now::Waiting(format!("{waiting}, waiting for restart"))
}

/// How one follow request ended.
enum Attached {
    /// The API closed the log: the container stopped, or the request timed out.
    Closed,
    /// The container is not running (400).
    NotRunning,
    Failed(String),
    /// The relay is gone: the stream was stopped.
    Gone,
}

/// Follows one container until its pod is deleted or finishes: lines after `newest` only,
/// and again from there each time the container runs anew.
async fn follow(
    ctx: Arc<Ctx>,
    part: Part,
    mut newest: Option<DateTime<Utc>>,
    tx: mpsc::Sender<Item>,
) {
    let mut attached_to: Option<String> = match now_of(&ctx.pods, &part) {
        Now::Running(instance) => Some(instance),
        _ => None,
    };
    let mut told: Option<String> = None;
    let reason = loop {
        match attach(&ctx, &part, &mut newest, &tx).await {
            Attached::Gone => return,
            Attached::Failed(reason) => break reason,
            Attached::Closed | Attached::NotRunning => {}
        }
        let waited = wait_for_run(&ctx, &part, &mut attached_to, &mut told, &tx).await;
        match waited {
            Ok(()) => continue,
            Err(Some(reason)) => break reason,
            Err(None) => return,
        }
    };
    let ended = Item::Ended {
        pod: part.pod,
        reason,
    };
    let _ = tx.send(ended).await;
}

/// Waits until the container runs an instance not yet attached to. `Err(Some(why))` when it
/// never will, `Err(None)` when the stream was stopped.
async fn wait_for_run(
    ctx: &Ctx,
    part: &Part,
    attached_to: &mut Option<String>,
    told: &mut Option<String>,
    tx: &mpsc::Sender<Item>,
) -> Result<(), Option<String>> {
    loop {
        match now_of(&ctx.pods, part) {
            Now::PodGone => return Err(Some(POD_GONE.to_string())),
            Now::Finished(reason) => return Err(Some(reason)),
            Now::Running(instance) if attached_to.as_ref() != Some(&instance) => {
                *attached_to = Some(instance);
                *told = None;
                return Ok(());
            }
            Now::Running(_) => {
                // The log closed while the same instance runs (a server timeout): attach again
                // once, after a pause, so a closing server is not asked in a tight loop.
                tokio::time::sleep(RESTART_POLL).await;
                return Ok(());
            }
            Now::Waiting(reason) => {
                if told.as_ref() != Some(&reason) {
                    *told = Some(reason.clone());
                    let paused = Item::Paused {
                        label: part.label.clone(),
                        reason,
                    };
                    if tx.send(paused).await.is_err() {
                        return Err(None);
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RESTART_POLL) => {}
            () = tx.closed() => return Err(None),
        }
    }
}

/// Reads the container's log following, from `newest` on, passing on the lines after it.
async fn attach(
    ctx: &Ctx,
    part: &Part,
    newest: &mut Option<DateTime<Utc>>,
    tx: &mpsc::Sender<Item>,
) -> Attached {
    let since = newest.and_then(|t| {
        Timestamp::new(
            t.timestamp(),
            i32::try_from(t.timestamp_subsec_nanos()).ok()?,
        )
        .ok()
    });
    let follow = LogParams {
        follow: true,
        since_time: since,
        ..params(part)
    };
    let mut reader = match Reader::open(ctx, part, &follow).await {
        Ok(reader) => reader,
        Err(ReadError::NotThere(_)) => return Attached::NotRunning,
        Err(ReadError::Gone) => return Attached::Failed(POD_GONE.to_string()),
        Err(error) => return Attached::Failed(error.describe(part)),
    };
    loop {
        let mut batch = Vec::new();
        let first = reader.next().await;
        let line = match first {
            Ok(Some(line)) => line,
            Ok(None) => return Attached::Closed,
            Err(error) => {
                debug!(pod = %part.pod, container = %part.container, %error, "log follow cut");
                return Attached::Closed;
            }
        };
        batch.push(line);
        let fresh = after(batch, *newest);
        *newest = (*newest).max(reader.newest);
        if !fresh.is_empty() && tx.send(Item::Lines(fresh)).await.is_err() {
            return Attached::Gone;
        }
    }
}

/// Batches the followers' lines: up to [`BATCH_LINES`] lines, or whatever came within
/// [`BATCH_DELAY`] of the first line of the batch. A pause or end goes after the lines before
/// it.
async fn relay(mut rx: mpsc::Receiver<Item>, out: &Out) {
    let mut batch: Vec<LogRecord> = Vec::new();
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + BATCH_DELAY;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            let sent = match item {
                Item::Lines(lines) => {
                    batch.extend(lines);
                    true
                }
                Item::Paused { label, reason } => {
                    out.lines(&mut batch).await && out.paused(label, reason).await
                }
                Item::Ended { pod, reason } => {
                    out.lines(&mut batch).await && out.part_ended(&pod, &reason).await
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

/// Each container's last `n` lines strictly before `t`, as one timeline; then every pod's end.
async fn earlier(ctx: &Ctx, parts: Vec<Part>, t: DateTime<Utc>, n: u64) {
    let reads = parts.iter().map(|part| read_before(ctx, part, t, n));
    let results = join_all(reads).await;
    let mut found = Vec::new();
    let mut ends = Vec::new();
    for (part, result) in parts.iter().zip(results) {
        match result {
            Ok(lines) => {
                found.push(lines);
                ends.push((part.pod.clone(), EARLIER_LOADED.to_string()));
            }
            Err(error) => ends.push((part.pod.clone(), error.describe(part))),
        }
    }
    let mut lines = merge_by_time(found);
    if !ctx.out.lines(&mut lines).await {
        return;
    }
    for (pod, reason) in ends {
        if !ctx.out.part_ended(&pod, &reason).await {
            return;
        }
    }
}

/// One container's last `n` lines strictly before `t`: the log is read from its start (the
/// API has no upper bound) through a window of `n` lines.
// LIMITATION: scrolling back in a long log reads it from the start each time, since the API
// takes no end time; the window keeps memory bounded, not time.
async fn read_before(
    ctx: &Ctx,
    part: &Part,
    t: DateTime<Utc>,
    n: u64,
) -> Result<Vec<LogRecord>, ReadError> {
    let mut reader = Reader::open(ctx, part, &params(part)).await?;
    let mut window = Window::new(t, n);
    while let Some(line) = reader.next().await.map_err(ReadError::Other)? {
        window.push(line);
    }
    Ok(window.into_lines())
}

/// The previous instance of each container, sent container by container; then the pod's end.
async fn previous_lines(ctx: &Ctx, parts: Vec<Part>) {
    for part in parts {
        let previous = LogParams {
            previous: true,
            tail_lines: Some(i64::try_from(PREVIOUS_LINES).unwrap_or(i64::MAX)),
            ..params(&part)
        };
        let reason = match send_all(ctx, &part, &previous).await {
            Ok(true) => PREVIOUS_LOADED.to_string(),
            Ok(false) => return,
            Err(error) => error.describe(&part),
        };
        if !ctx.out.part_ended(&part.pod, &reason).await {
            return;
        }
    }
}

/// Streams one read to the store in batches; `Ok(false)` when the store is gone.
async fn send_all(ctx: &Ctx, part: &Part, params: &LogParams) -> Result<bool, ReadError> {
    let mut reader = Reader::open(ctx, part, params).await?;
    let mut batch = Vec::new();
    while let Some(line) = reader.next().await.map_err(ReadError::Other)? {
        batch.push(line);
        if batch.len() == BATCH_LINES && !ctx.out.lines(&mut batch).await {
            return Ok(false);
        }
    }
    Ok(ctx.out.lines(&mut batch).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(pod: &str, container: &str) -> Part {
        Part {
            namespace: "shop".into(),
            pod: pod.into(),
            uid: format!("uid-{pod}"),
            container: container.into(),
            label: format!("{pod}/{container}"),
        }
    }

    #[test]
    fn a_pod_ends_once_when_its_last_container_ends() {
        let open = Open::new(&[
            part("web-1", "app"),
            part("web-1", "proxy"),
            part("web-2", "app"),
        ]);
        assert!(!open.part_ended("web-1"));
        assert!(open.part_ended("web-1"));
        assert!(!open.part_ended("web-1"), "already ended");
        assert_eq!(open.take_all(), vec!["web-2".to_string()]);
    }

    #[tokio::test]
    async fn a_log_body_is_cut_into_stamped_sanitized_lines_of_bounded_length() {
        let mut body = b"2025-06-01T10:00:00.5Z hello \x1b]0;title\x07world\n".to_vec();
        body.extend(b"2025-06-01T10:00:01Z ");
        body.extend(vec![b'x'; MAX_LINE_BYTES + 10]);
        body.extend(b"\nlast without newline");
        let mut reader = Reader {
            body: Box::pin(futures::io::Cursor::new(body)),
            label: "web-1".into(),
            carry: Vec::new(),
            newest: None,
        };
        let first = reader.next().await.unwrap().unwrap();
        assert_eq!(first.replica, "web-1");
        assert_eq!(first.line.text, "hello world");
        assert_eq!(
            first.timestamp,
            Some(
                DateTime::parse_from_rfc3339("2025-06-01T10:00:00.5Z")
                    .unwrap()
                    .into()
            )
        );
        let long = reader.next().await.unwrap().unwrap();
        assert!(long.timestamp.is_some());
        let rest = reader.next().await.unwrap().unwrap();
        assert!(
            rest.line.text.chars().all(|c| c == 'x'),
            "the cut-off part of the long line"
        );
        let last = reader.next().await.unwrap().unwrap();
        assert_eq!(last.line.text, "last without newline");
        assert!(reader.next().await.unwrap().is_none());
    }
}
