//! The bounded buffer behind a logs view: the lines of one followed log (one replica or a whole
//! workload merged), capped by line count and by bytes, so memory stays flat while a container
//! floods its log.
//!
//! Every line gets a sequence number when it enters the buffer. Numbers stay attached to their
//! line when older lines are evicted, so a view that remembers "line 1099511628000" keeps its
//! place; the line at index `i` has number `first_seq() + i`. Numbers start at [`FIRST_SEQ`],
//! well above zero, so that earlier lines fetched on scroll can be prepended below the first one.
//!
//! Bytes are counted per line as the length of its text, plus [`SPAN_BYTES`] per style span,
//! plus [`RECORD_OVERHEAD`] for the line's fixed-size fields. The replica name is stored once per
//! distinct name and shared by its lines, so it is not counted per line. The newest line is always
//! kept, even when it alone is larger than the byte cap.
//!
//! Search and filtering run on the whole stored text of each line, never on the part a view cut
//! for display.
//!
//! Not for following or fetching logs (platform workers do that) nor for drawing them (the logs
//! view does); this is plain data with no I/O and no clock.

use std::collections::{HashSet, VecDeque};
use std::mem::size_of;
use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ratatui::style::Style;
use regex::Regex;

use crate::platform::LogRecord;
use crate::text::SafeLine;

/// Sequence number of the first line pushed into a new buffer; room below it is for prepends.
pub const FIRST_SEQ: u64 = 1 << 40;

/// Bytes counted for every held line besides its text and spans (its fixed-size fields).
pub const RECORD_OVERHEAD: usize = size_of::<Held>();

/// Bytes counted per style span of a line.
pub const SPAN_BYTES: usize = size_of::<(Range<usize>, Style)>();

/// Distinct replica names kept before names no line uses any more are forgotten.
const NAMES_BEFORE_PRUNE: usize = 256;

/// One stored line: a [`LogRecord`] with its replica name shared.
#[derive(Debug, Clone)]
struct Held {
    replica: Arc<str>,
    stderr: bool,
    timestamp: Option<DateTime<Utc>>,
    line: SafeLine,
}

impl Held {
    fn cost(&self) -> usize {
        line_cost(&self.line)
    }
}

/// A line in the buffer, borrowed, with its sequence number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogEntry<'a> {
    pub seq: u64,
    /// Container name of the replica that printed it.
    pub replica: &'a str,
    pub stderr: bool,
    pub timestamp: Option<DateTime<Utc>>,
    pub line: &'a SafeLine,
}

impl LogEntry<'_> {
    /// An owned copy, as the platform delivered it (for copying out or re-sending).
    pub fn to_record(&self) -> LogRecord {
        LogRecord {
            replica: self.replica.to_owned(),
            stderr: self.stderr,
            timestamp: self.timestamp,
            line: self.line.clone(),
        }
    }
}

/// The lines of one log, oldest first, bounded by line count and bytes.
#[derive(Debug, Clone)]
pub struct LogBuffer {
    held: VecDeque<Held>,
    first_seq: u64,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
    dropped: u64,
    names: HashSet<Arc<str>>,
    /// Prune `names` when it grows past this; raised when most names are still in use.
    names_prune_at: usize,
    /// The name interned last: consecutive lines mostly come from the same replica.
    last_name: Option<Arc<str>>,
}

impl LogBuffer {
    /// An empty buffer holding at most `max_lines` lines (at least one) and about `max_bytes`.
    pub fn new(max_lines: usize, max_bytes: usize) -> LogBuffer {
        LogBuffer {
            held: VecDeque::new(),
            first_seq: FIRST_SEQ,
            bytes: 0,
            max_lines: max_lines.max(1),
            max_bytes,
            dropped: 0,
            names: HashSet::new(),
            names_prune_at: NAMES_BEFORE_PRUNE,
            last_name: None,
        }
    }

    /// Appends a line as the newest, evicting the oldest lines while a cap is exceeded.
    pub fn push(&mut self, record: LogRecord) {
        let held = self.hold(record);
        self.bytes += held.cost();
        self.held.push_back(held);
        self.evict_to_caps();
    }

    /// Appends lines in order, as [`LogBuffer::push`] does one by one.
    pub fn extend(&mut self, records: impl IntoIterator<Item = LogRecord>) {
        for record in records {
            self.push(record);
        }
    }

    /// Puts earlier lines (oldest first) before the oldest held line, for scrolling back.
    ///
    /// Held lines are newer and are never evicted for them: of `records`, the newest that fit
    /// under both caps are kept, and the number kept is returned. Lines not kept are not counted
    /// in [`LogBuffer::dropped`], since they never were in the buffer.
    pub fn prepend(&mut self, records: Vec<LogRecord>) -> usize {
        let mut kept = 0;
        for record in records.into_iter().rev() {
            let cost = line_cost(&record.line);
            let fits = self.held.is_empty()
                || (self.held.len() < self.max_lines && self.bytes + cost <= self.max_bytes);
            if !fits || self.first_seq == 0 {
                break;
            }
            let held = self.hold(record);
            self.bytes += held.cost();
            self.held.push_front(held);
            self.first_seq -= 1;
            kept += 1;
        }
        kept
    }

    /// Forgets every line; numbers keep counting, so a number never names two lines.
    pub fn clear(&mut self) {
        self.first_seq += self.held.len() as u64;
        self.held.clear();
        self.bytes = 0;
        self.names.clear();
        self.last_name = None;
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Bytes counted for the held lines (see the module doc for what is counted).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn max_lines(&self) -> usize {
        self.max_lines
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Lines evicted to stay under the caps since the buffer was made.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Number of the oldest held line, or of the next line to come when the buffer is empty.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Number of the newest held line; `None` when the buffer is empty.
    pub fn last_seq(&self) -> Option<u64> {
        (!self.held.is_empty()).then(|| self.first_seq + self.held.len() as u64 - 1)
    }

    /// The line numbered `seq`, if it is still held.
    pub fn get(&self, seq: u64) -> Option<LogEntry<'_>> {
        let index = self.index_of(seq)?;
        self.held.get(index).map(|held| entry(seq, held))
    }

    /// Held lines from number `seq` on (from the oldest if `seq` was evicted), oldest first.
    pub fn iter_from(
        &self,
        seq: u64,
    ) -> impl DoubleEndedIterator<Item = LogEntry<'_>> + ExactSizeIterator {
        let start = seq
            .saturating_sub(self.first_seq)
            .min(self.held.len() as u64) as usize;
        let first = self.first_seq + start as u64;
        self.held
            .range(start..)
            .enumerate()
            .map(move |(i, held)| entry(first + i as u64, held))
    }

    /// Number of the first line at or after `from_seq` whose text matches `re`.
    pub fn find_next(&self, re: &Regex, from_seq: u64) -> Option<u64> {
        self.iter_from(from_seq)
            .find(|e| re.is_match(&e.line.text))
            .map(|e| e.seq)
    }

    /// Number of the last line at or before `from_seq` whose text matches `re`.
    pub fn find_prev(&self, re: &Regex, from_seq: u64) -> Option<u64> {
        let last = self.last_seq()?;
        if from_seq < self.first_seq {
            return None;
        }
        let end = self.index_of(from_seq.min(last))?;
        self.held
            .range(..=end)
            .rposition(|held| re.is_match(&held.line.text))
            .map(|i| self.first_seq + i as u64)
    }

    /// Byte ranges of `re`'s matches in the text of line `seq`, empty matches left out (they
    /// cannot be highlighted); empty when the line is not held.
    pub fn matches(&self, re: &Regex, seq: u64) -> Vec<Range<usize>> {
        let Some(e) = self.get(seq) else {
            return Vec::new();
        };
        re.find_iter(&e.line.text)
            .map(|m| m.range())
            .filter(|r| !r.is_empty())
            .collect()
    }

    /// Numbers of the held lines whose text matches `re`, oldest first.
    pub fn filtered(&self, re: &Regex) -> Vec<u64> {
        self.iter_from(self.first_seq)
            .filter(|e| re.is_match(&e.line.text))
            .map(|e| e.seq)
            .collect()
    }

    fn index_of(&self, seq: u64) -> Option<usize> {
        let index = seq.checked_sub(self.first_seq)?;
        usize::try_from(index).ok().filter(|&i| i < self.held.len())
    }

    fn evict_to_caps(&mut self) {
        while self.held.len() > 1
            && (self.held.len() > self.max_lines || self.bytes > self.max_bytes)
        {
            let Some(old) = self.held.pop_front() else {
                break;
            };
            self.bytes -= old.cost();
            self.first_seq += 1;
            self.dropped += 1;
        }
    }

    fn hold(&mut self, record: LogRecord) -> Held {
        Held {
            replica: self.intern(record.replica),
            stderr: record.stderr,
            timestamp: record.timestamp,
            line: record.line,
        }
    }

    /// The shared copy of a replica name.
    fn intern(&mut self, name: String) -> Arc<str> {
        if let Some(last) = &self.last_name {
            if **last == *name {
                return Arc::clone(last);
            }
        }
        let shared = match self.names.get(name.as_str()) {
            Some(shared) => Arc::clone(shared),
            None => self.add_name(name),
        };
        self.last_name = Some(Arc::clone(&shared));
        shared
    }

    fn add_name(&mut self, name: String) -> Arc<str> {
        if self.names.len() >= self.names_prune_at {
            // A name only the set (and perhaps `last_name`) holds belongs to no held line.
            self.last_name = None;
            self.names.retain(|n| Arc::strong_count(n) > 1);
            self.names_prune_at = (self.names.len() * 2).max(NAMES_BEFORE_PRUNE);
        }
        let shared: Arc<str> = Arc::from(name);
        self.names.insert(Arc::clone(&shared));
        shared
    }
}

/// Bytes counted for one line (see the module doc).
fn line_cost(line: &SafeLine) -> usize {
    line.text.len() + line.spans.len() * SPAN_BYTES + RECORD_OVERHEAD
}

fn entry(seq: u64, held: &Held) -> LogEntry<'_> {
    LogEntry {
        seq,
        replica: &held.replica,
        stderr: held.stderr,
        timestamp: held.timestamp,
        line: &held.line,
    }
}
