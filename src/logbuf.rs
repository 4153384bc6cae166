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
    /// Its sequence number: stays the same while the line is held.
    pub seq: u64,
    /// Container name of the replica that printed it.
    pub replica: &'a str,
    /// True when the replica wrote it to stderr.
    pub stderr: bool,
    /// When the engine says it was written, if the stream carried timestamps.
    pub timestamp: Option<DateTime<Utc>>,
    /// The whole sanitized line, never cut.
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

    /// Lines held now.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when no line is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Bytes counted for the held lines (see the module doc for what is counted).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The line cap given to [`LogBuffer::new`] (at least one).
    pub fn max_lines(&self) -> usize {
        self.max_lines
    }

    /// The byte cap given to [`LogBuffer::new`].
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
        if let Some(last) = &self.last_name
            && **last == *name
        {
            return Arc::clone(last);
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::text::sanitize;

    fn record(replica: &str, text: &str) -> LogRecord {
        LogRecord {
            replica: replica.to_owned(),
            stderr: false,
            timestamp: None,
            line: SafeLine::plain(text),
        }
    }

    fn texts(buf: &LogBuffer) -> Vec<String> {
        buf.iter_from(0).map(|e| e.line.text.clone()).collect()
    }

    fn recount(buf: &LogBuffer) -> usize {
        buf.iter_from(0).map(|e| line_cost(e.line)).sum()
    }

    #[test]
    fn lines_get_numbers_from_first_seq_in_order() {
        let mut buf = LogBuffer::new(10, 1 << 20);
        assert_eq!(buf.last_seq(), None);
        buf.extend([record("web-1", "a"), record("web-1", "b")]);
        assert_eq!(buf.first_seq(), FIRST_SEQ);
        assert_eq!(buf.last_seq(), Some(FIRST_SEQ + 1));
        assert_eq!(
            buf.get(FIRST_SEQ + 1).map(|e| e.line.text.as_str()),
            Some("b")
        );
        assert_eq!(buf.get(FIRST_SEQ + 2), None);
        assert_eq!(buf.get(FIRST_SEQ - 1), None);
    }

    #[test]
    fn line_cap_evicts_the_oldest_and_numbers_stay_with_their_lines() {
        let mut buf = LogBuffer::new(3, 1 << 20);
        for i in 0..5 {
            buf.push(record("web-1", &format!("line {i}")));
        }
        assert_eq!(texts(&buf), ["line 2", "line 3", "line 4"]);
        assert_eq!(buf.dropped(), 2);
        assert_eq!(buf.first_seq(), FIRST_SEQ + 2);
        assert_eq!(
            buf.get(FIRST_SEQ + 3).map(|e| e.line.text.as_str()),
            Some("line 3")
        );
        assert_eq!(buf.get(FIRST_SEQ + 1), None);
    }

    #[test]
    fn byte_cap_evicts_the_oldest_and_counts_text_spans_and_overhead() {
        let one = line_cost(&SafeLine::plain("0123456789"));
        assert_eq!(one, 10 + RECORD_OVERHEAD);
        let mut buf = LogBuffer::new(100, one * 2 + one / 2);
        for _ in 0..4 {
            buf.push(record("web-1", "0123456789"));
        }
        assert_eq!(buf.len(), 2);
        assert_eq!(buf.bytes(), one * 2);
        assert_eq!(buf.dropped(), 2);

        let styled = sanitize(b"\x1b[31mred\x1b[0m plain");
        assert_eq!(line_cost(&styled), 9 + SPAN_BYTES + RECORD_OVERHEAD);
    }

    #[test]
    fn a_line_larger_than_the_byte_cap_is_kept_alone() {
        let mut buf = LogBuffer::new(100, 1000);
        buf.push(record("web-1", "small"));
        buf.push(record("web-1", &"x".repeat(5000)));
        assert_eq!(buf.len(), 1);
        assert_eq!(
            buf.get(FIRST_SEQ + 1).map(|e| e.line.text.len()),
            Some(5000)
        );
        buf.push(record("web-1", "after"));
        assert_eq!(texts(&buf), ["after"]);
    }

    #[test]
    fn memory_stays_flat_over_100k_lines_with_caps() {
        let max_bytes = 64 * 1024;
        let mut buf = LogBuffer::new(1000, max_bytes);
        for i in 0..100_000u64 {
            let replica = format!("web-{}", i % 5);
            let raw = format!(
                "\x1b[3{}m{i:06}\x1b[0m request served in {}ms",
                i % 8,
                i % 97
            );
            let line = sanitize(raw.as_bytes());
            buf.push(LogRecord {
                replica,
                stderr: i % 7 == 0,
                timestamp: None,
                line,
            });
            assert!(buf.bytes() <= max_bytes);
            assert!(buf.len() <= 1000);
        }
        assert_eq!(buf.bytes(), recount(&buf));
        assert_eq!(buf.dropped(), 100_000 - buf.len() as u64);
        assert_eq!(buf.first_seq(), FIRST_SEQ + buf.dropped());
        assert_eq!(buf.last_seq(), Some(FIRST_SEQ + 99_999));
        assert!(buf.len() > 100, "caps let {} lines stay", buf.len());
        assert_eq!(buf.names.len(), 5);
        let newest = buf
            .get(FIRST_SEQ + 99_999)
            .map(|e| (e.replica, e.line.text.as_str()));
        assert_eq!(newest, Some(("web-4", "099999 request served in 89ms")));
    }

    #[test]
    fn line_cap_of_100k_pushes_holds_exactly_the_cap() {
        let mut buf = LogBuffer::new(10_000, 8 << 20);
        buf.extend((0..100_000).map(|i| record("api-1", &format!("GET /items/{i} 200"))));
        assert_eq!(buf.len(), 10_000);
        assert_eq!(buf.dropped(), 90_000);
        assert_eq!(buf.bytes(), recount(&buf));
        assert_eq!(
            buf.iter_from(0).next().map(|e| e.seq),
            Some(FIRST_SEQ + 90_000)
        );
    }

    #[test]
    fn replica_names_are_shared_between_lines() {
        let mut buf = LogBuffer::new(100, 1 << 20);
        buf.extend([
            record("web-1", "a"),
            record("web-2", "b"),
            record("web-1", "c"),
        ]);
        let first = buf.held[0].replica.clone();
        assert!(Arc::ptr_eq(&first, &buf.held[2].replica));
        assert_eq!(buf.names.len(), 2);
    }

    #[test]
    fn names_of_evicted_replicas_are_forgotten() {
        let mut buf = LogBuffer::new(10, 1 << 20);
        for i in 0..5000 {
            buf.push(record(&format!("job-{i}"), "done"));
        }
        assert!(
            buf.names.len() <= 2 * NAMES_BEFORE_PRUNE,
            "{} names",
            buf.names.len()
        );
        assert_eq!(
            buf.get(FIRST_SEQ + 4999).map(|e| e.replica),
            Some("job-4999")
        );
    }

    #[test]
    fn entries_keep_every_field_of_the_record() {
        let ts = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).single();
        let sent = LogRecord {
            replica: "db-0".to_owned(),
            stderr: true,
            timestamp: ts,
            line: sanitize(b"\x1b[33mWARN\x1b[0m slow query"),
        };
        let mut buf = LogBuffer::new(10, 1 << 20);
        buf.push(sent.clone());
        let back = buf.get(FIRST_SEQ).map(|e| e.to_record());
        assert_eq!(back, Some(sent));
    }

    #[test]
    fn prepend_puts_earlier_lines_below_the_first_number() {
        let mut buf = LogBuffer::new(10, 1 << 20);
        buf.extend([record("w", "c"), record("w", "d")]);
        let kept = buf.prepend(vec![record("w", "a"), record("w", "b")]);
        assert_eq!(kept, 2);
        assert_eq!(texts(&buf), ["a", "b", "c", "d"]);
        assert_eq!(buf.first_seq(), FIRST_SEQ - 2);
        assert_eq!(buf.get(FIRST_SEQ).map(|e| e.line.text.as_str()), Some("c"));
        assert_eq!(buf.dropped(), 0);
    }

    #[test]
    fn prepend_into_a_full_buffer_keeps_the_newest_lines() {
        let mut buf = LogBuffer::new(4, 1 << 20);
        buf.extend([record("w", "e"), record("w", "f")]);
        let kept = buf.prepend(vec![
            record("w", "a"),
            record("w", "b"),
            record("w", "c"),
            record("w", "d"),
        ]);
        assert_eq!(kept, 2);
        assert_eq!(texts(&buf), ["c", "d", "e", "f"]);
        assert_eq!(buf.prepend(vec![record("w", "z")]), 0);
        assert_eq!(buf.bytes(), recount(&buf));
    }

    #[test]
    fn prepend_respects_the_byte_cap() {
        let one = line_cost(&SafeLine::plain("x"));
        let mut buf = LogBuffer::new(100, one * 3);
        buf.push(record("w", "x"));
        assert_eq!(buf.prepend(vec![record("w", "x"); 5]), 2);
        assert_eq!(buf.bytes(), one * 3);
    }

    #[test]
    fn clear_empties_but_never_reuses_numbers() {
        let mut buf = LogBuffer::new(10, 1 << 20);
        buf.extend([record("w", "a"), record("w", "b")]);
        buf.clear();
        assert!(buf.is_empty());
        assert_eq!(buf.bytes(), 0);
        assert_eq!(buf.last_seq(), None);
        buf.push(record("w", "c"));
        assert_eq!(buf.first_seq(), FIRST_SEQ + 2);
        assert_eq!(buf.get(FIRST_SEQ), None);
    }

    #[test]
    fn iter_from_starts_at_the_oldest_when_the_number_was_evicted() {
        let mut buf = LogBuffer::new(2, 1 << 20);
        buf.extend([record("w", "a"), record("w", "b"), record("w", "c")]);
        let seqs: Vec<u64> = buf.iter_from(0).map(|e| e.seq).collect();
        assert_eq!(seqs, [FIRST_SEQ + 1, FIRST_SEQ + 2]);
        assert_eq!(buf.iter_from(FIRST_SEQ + 2).len(), 1);
        assert_eq!(buf.iter_from(FIRST_SEQ + 9).len(), 0);
        assert_eq!(
            buf.iter_from(0).next_back().map(|e| e.line.text.as_str()),
            Some("c")
        );
    }

    fn searchable() -> LogBuffer {
        let mut buf = LogBuffer::new(100, 1 << 20);
        for text in ["boot", "error: disk", "ok", "ok", "error: net", "ok"] {
            buf.push(record("w", text));
        }
        buf
    }

    #[test]
    fn find_next_and_prev_include_the_starting_line() {
        let buf = searchable();
        let re = Regex::new("error").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(buf.find_next(&re, 0), Some(FIRST_SEQ + 1));
        assert_eq!(buf.find_next(&re, FIRST_SEQ + 1), Some(FIRST_SEQ + 1));
        assert_eq!(buf.find_next(&re, FIRST_SEQ + 2), Some(FIRST_SEQ + 4));
        assert_eq!(buf.find_next(&re, FIRST_SEQ + 5), None);
        assert_eq!(buf.find_prev(&re, u64::MAX), Some(FIRST_SEQ + 4));
        assert_eq!(buf.find_prev(&re, FIRST_SEQ + 3), Some(FIRST_SEQ + 1));
        assert_eq!(buf.find_prev(&re, FIRST_SEQ), None);
        assert_eq!(buf.find_prev(&re, 0), None);
    }

    #[test]
    fn filtered_lists_matching_numbers_and_matches_gives_byte_ranges() {
        let buf = searchable();
        let re = Regex::new(r"o").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            buf.filtered(&Regex::new("^ok$").unwrap_or_else(|e| panic!("{e}"))),
            [FIRST_SEQ + 2, FIRST_SEQ + 3, FIRST_SEQ + 5]
        );
        assert_eq!(buf.matches(&re, FIRST_SEQ), [1..2, 2..3]);
        assert_eq!(buf.matches(&re, FIRST_SEQ + 99), Vec::<Range<usize>>::new());
        let empty = Regex::new("x*").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(buf.matches(&empty, FIRST_SEQ), Vec::<Range<usize>>::new());
    }

    #[test]
    fn search_sees_the_whole_line_not_the_displayed_cut() {
        let mut buf = LogBuffer::new(10, 1 << 20);
        let long = format!("{}needle", "x".repeat(10_000));
        buf.push(record("w", &long));
        let re = Regex::new("needle").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(buf.find_next(&re, 0), Some(FIRST_SEQ));
        let needle = 10_000..10_006;
        assert_eq!(buf.matches(&re, FIRST_SEQ), [needle]);
    }
}
