//! Making text from containers safe to show: log lines, names, labels and env values become
//! printable text that cannot act on the operator's terminal, plus the column arithmetic that keeps
//! such text aligned in tables (wide CJK and emoji take two columns, combining marks none).
//!
//! What the sanitizer does with each kind of input:
//! - SGR colours and attributes (16 colours, 256 colours, truecolor in both the `;` and `:` forms,
//!   bold, dim, italic, underline, reverse, crossed out, and their resets) become style spans on
//!   byte ranges of [`SafeLine::text`]. Blink and conceal are not kept: text that hides itself or
//!   flashes is not shown as such.
//! - Every other escape sequence is dropped whole: CSI that is not SGR (cursor moves, clear screen,
//!   alternate screen, modes), OSC (window title, OSC 52 clipboard writes, OSC 8 hyperlinks, whose
//!   visible text is kept), DCS, APC, PM, SOS, and two-byte escapes such as `ESC c` (reset).
//! - A tab expands with spaces to the next multiple of 8 columns (a single space in
//!   [`sanitize_plain`]). One trailing `\n`, then one trailing `\r` (the rest of a CRLF whose LF
//!   the caller split off), are removed.
//! - Every other C0 control, including a lone `\r`, BEL, backspace, an interior `\n` and DEL,
//!   becomes its Unicode control picture (`␍`, `␇`, `␈`, `␊`, `␡`), so it is seen and not obeyed.
//!   A stray ESC (one followed by another ESC, by CAN or SUB, or starting a sequence that the line
//!   never finishes) becomes `␛`; the bytes of an unfinished sequence are then shown as text.
//! - C1 controls (U+0080–U+009F, whether UTF-8 encoded or raw bytes) and the Unicode bidi
//!   overrides and isolates (U+202A–U+202E, U+2066–U+2069) become U+FFFD rather than being
//!   dropped, so that a line that tried to reorder itself visibly says so. Invalid UTF-8 becomes
//!   U+FFFD as well. The invisible marks U+200E, U+200F and U+061C are kept: unlike overrides
//!   they cannot reorder strong letters, only the punctuation next to them.
//!
//! The result never holds a char for which [`char::is_control`] is true. Lines are kept whole
//! however long they are; [`SafeLine::display_cut`] and [`SafeLine::wrap`] make the part shown
//! cheap to compute.
//!
//! Not for deciding colours: spans carry only what the line asked for, and the theme supplies the
//! base style in [`SafeLine::to_line`]. Not a terminal emulator either: cursor movement is dropped,
//! not replayed, so a progress bar drawn with `\r` shows every frame it drew.

use std::ops::Range;

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;
use vte::{Params, Parser, Perform};

/// A line with every control sequence removed; colours kept only as spans.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SafeLine {
    /// Printable text only.
    pub text: String,
    /// Byte ranges of `text` with the colour the line asked for.
    pub spans: Vec<(Range<usize>, Style)>,
}

/// Columns between tab stops.
const TAB_STOP: usize = 8;
const ESC: u8 = 0x1b;
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
/// A printable byte fed after the input: only the ground state prints it back, which tells
/// whether the line left an escape sequence unfinished (and flushes a partial UTF-8 char).
const PROBE: u8 = b'A';
/// The picture shown for DEL.
const DEL_PICTURE: char = '\u{2421}';
const ELLIPSIS: char = '…';

/// Sanitize one line of raw output, keeping its SGR colours as spans.
pub fn sanitize(bytes: &[u8]) -> SafeLine {
    let bytes = strip_line_end(bytes);
    if let Some(text) = already_safe(bytes) {
        return SafeLine {
            text: text.to_owned(),
            spans: Vec::new(),
        };
    }
    let mut sink = Sink::new(true, bytes.len());
    feed(&mut sink, bytes);
    sink.finish()
}

/// Sanitize a short field (a name, a label, an env value): no colours, no controls.
///
/// The rules are those of [`sanitize`], except that colours are dropped and a tab is one space.
pub fn sanitize_plain(s: &str) -> String {
    let bytes = strip_line_end(s.as_bytes());
    if let Some(text) = already_safe(bytes) {
        return text.to_owned();
    }
    let mut sink = Sink::new(false, bytes.len());
    feed(&mut sink, bytes);
    sink.finish().text
}

/// Columns `s` takes on screen, counted per grapheme cluster as ratatui lays them out.
pub fn display_width(s: &str) -> usize {
    if is_printable_ascii(s.as_bytes()) {
        return s.len();
    }
    s.graphemes(true).map(UnicodeWidthStr::width).sum()
}

/// `s` cut to at most `width` columns, ending in `…` when cut; a wide char that would straddle
/// the edge is replaced by a space.
pub fn fit(s: &str, width: usize) -> String {
    if display_width(s) <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let budget = width - 1;
    let mut out = String::with_capacity(s.len().min(width * 4) + 3);
    let mut col = 0;
    for g in s.graphemes(true) {
        let w = g.width();
        if col + w > budget {
            break;
        }
        out.push_str(g);
        col += w;
    }
    push_spaces(&mut out, budget - col);
    out.push(ELLIPSIS);
    out
}

/// A message that may run over several lines as one line: its lines trimmed, blank ones
/// dropped, joined by spaces. An excerpt of the file a parser quotes under its message (from a
/// line ` --> <input>:5:12` on, with carets under the place) is left out: the message before it
/// already names the line and column.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("--> "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` fitted to `width` columns and padded with spaces to exactly `width` columns.
pub fn pad(s: &str, width: usize) -> String {
    let mut out = fit(s, width);
    let used = display_width(&out);
    push_spaces(&mut out, width.saturating_sub(used));
    out
}

impl SafeLine {
    /// A line without colours from text that is not raw output (a message of our own, say);
    /// it still goes through [`sanitize_plain`], so it cannot smuggle a control in.
    pub fn plain(text: &str) -> SafeLine {
        SafeLine {
            text: sanitize_plain(text),
            spans: Vec::new(),
        }
    }

    /// Columns the whole line takes on screen.
    pub fn width(&self) -> usize {
        display_width(&self.text)
    }

    /// The columns `skip_cols..skip_cols + max_cols` of the line, for horizontal scroll and for
    /// showing part of a very long line; costs time for the columns up to the cut, not the line.
    ///
    /// A wide char cut by either edge becomes a space, so the columns after it stay where they
    /// were. No ellipsis is added: marking the cut is the view's business.
    pub fn display_cut(&self, skip_cols: usize, max_cols: usize) -> SafeLine {
        let right = skip_cols.saturating_add(max_cols);
        let len = self.text.len();
        let (mut start, mut end) = (len, len);
        let (mut lead, mut trail) = (0, 0);
        let mut started = false;
        let mut col = 0;
        for (idx, g) in self.text.grapheme_indices(true) {
            let w = g.width();
            if !started {
                if col >= skip_cols {
                    started = true;
                    start = idx;
                } else {
                    col += w;
                    if col > skip_cols {
                        lead = (col - skip_cols).min(max_cols);
                        started = true;
                        start = idx + g.len();
                    }
                    continue;
                }
            }
            if col + w > right {
                trail = right.saturating_sub(col);
                end = idx;
                break;
            }
            col += w;
        }
        self.sub_line(start..end.max(start), lead, trail)
    }

    /// The line wrapped into rows of at most `width` columns, never splitting a grapheme cluster
    /// (so never a wide char); a cluster wider than `width` gets a row of its own.
    pub fn wrap(&self, width: usize) -> Vec<SafeLine> {
        let width = width.max(1);
        let mut rows = Vec::new();
        let mut row_start = 0;
        let mut col = 0;
        for (idx, g) in self.text.grapheme_indices(true) {
            let w = g.width();
            if col + w > width && idx > row_start {
                rows.push(self.sub_line(row_start..idx, 0, 0));
                row_start = idx;
                col = 0;
            }
            col += w;
        }
        rows.push(self.sub_line(row_start..self.text.len(), 0, 0));
        rows
    }

    /// A ratatui line: `base` everywhere, with each span's style patched over it.
    pub fn to_line(&self, base: Style) -> Line<'static> {
        build_line(&self.text, &self.spans, base)
    }

    /// A copy of the line with `hl` patched over `matches`; apply it before
    /// [`SafeLine::display_cut`] so the highlight follows a horizontal scroll.
    pub fn highlighted(&self, matches: &[Range<usize>], hl: Style) -> SafeLine {
        SafeLine {
            text: self.text.clone(),
            spans: self.overlay_spans(matches, hl),
        }
    }

    /// Spans that are in bounds, on char boundaries, non-empty and in order; anything else in
    /// the public `spans` field is skipped rather than trusted.
    fn valid_spans(&self) -> impl Iterator<Item = &(Range<usize>, Style)> {
        valid_spans_of(&self.text, &self.spans)
    }

    /// The spans with `hl` patched over the merged, valid match ranges.
    fn overlay_spans(&self, matches: &[Range<usize>], hl: Style) -> Vec<(Range<usize>, Style)> {
        let hits = merged_ranges(&self.text, matches);
        let spans: Vec<&(Range<usize>, Style)> = self.valid_spans().collect();
        let mut points = Vec::with_capacity(2 + 2 * (spans.len() + hits.len()));
        points.extend([0, self.text.len()]);
        points.extend(spans.iter().flat_map(|(r, _)| [r.start, r.end]));
        points.extend(hits.iter().flat_map(|r| [r.start, r.end]));
        points.sort_unstable();
        points.dedup();

        let mut out: Vec<(Range<usize>, Style)> = Vec::new();
        let (mut si, mut hi) = (0, 0);
        for pair in points.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            while si < spans.len() && spans[si].0.end <= a {
                si += 1;
            }
            while hi < hits.len() && hits[hi].end <= a {
                hi += 1;
            }
            let own = spans.get(si).filter(|(r, _)| r.start <= a).map(|(_, s)| *s);
            let hit = hits.get(hi).is_some_and(|r| r.start <= a);
            let style = match (own, hit) {
                (None, false) => continue,
                (Some(s), false) => s,
                (own, true) => own.unwrap_or_default().patch(hl),
            };
            push_span(&mut out, a..b, style);
        }
        out
    }

    /// The bytes `range` of the line with `lead` spaces before and `trail` spaces after, spans
    /// moved along.
    fn sub_line(&self, range: Range<usize>, lead: usize, trail: usize) -> SafeLine {
        let Some(body) = self.text.get(range.clone()) else {
            return SafeLine::default();
        };
        let mut text = String::with_capacity(lead + body.len() + trail);
        push_spaces(&mut text, lead);
        text.push_str(body);
        push_spaces(&mut text, trail);

        let first = self.spans.partition_point(|(r, _)| r.end <= range.start);
        let spans = self.spans[first..]
            .iter()
            .take_while(|(r, _)| r.start < range.end)
            .filter_map(|(r, style)| {
                let from = r.start.max(range.start);
                let to = r.end.min(range.end);
                (from < to).then(|| (from - range.start + lead..to - range.start + lead, *style))
            })
            .collect();
        SafeLine { text, spans }
    }
}

/// Unstyled gaps get `base`; each valid span gets its style patched over `base`.
fn build_line(text: &str, spans: &[(Range<usize>, Style)], base: Style) -> Line<'static> {
    let mut out = Vec::with_capacity(spans.len() * 2 + 1);
    let mut pos = 0;
    for (range, style) in valid_spans_of(text, spans) {
        if range.start > pos {
            out.push(Span::styled(text[pos..range.start].to_owned(), base));
        }
        out.push(Span::styled(
            text[range.clone()].to_owned(),
            base.patch(*style),
        ));
        pos = range.end;
    }
    if pos < text.len() || out.is_empty() {
        out.push(Span::styled(text[pos..].to_owned(), base));
    }
    Line::from(out)
}

/// Spans of `text` that can be sliced safely, in order.
fn valid_spans_of<'a>(
    text: &'a str,
    spans: &'a [(Range<usize>, Style)],
) -> impl Iterator<Item = &'a (Range<usize>, Style)> {
    let mut pos = 0;
    spans.iter().filter(move |(r, _)| {
        let ok = r.start >= pos
            && r.start < r.end
            && r.end <= text.len()
            && text.is_char_boundary(r.start)
            && text.is_char_boundary(r.end);
        if ok {
            pos = r.end;
        }
        ok
    })
}

/// `ranges` sorted, clipped to `text`, on char boundaries, with overlaps merged.
fn merged_ranges(text: &str, ranges: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut sorted: Vec<Range<usize>> = ranges
        .iter()
        .map(|r| r.start..r.end.min(text.len()))
        .filter(|r| {
            r.start < r.end && text.is_char_boundary(r.start) && text.is_char_boundary(r.end)
        })
        .collect();
    sorted.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Appends a span, merging it into the previous one when they touch and look the same.
fn push_span(spans: &mut Vec<(Range<usize>, Style)>, range: Range<usize>, style: Style) {
    if let Some((last, last_style)) = spans.last_mut()
        && last.end == range.start
        && *last_style == style
    {
        last.end = range.end;
        return;
    }
    spans.push((range, style));
}

fn push_spaces(s: &mut String, n: usize) {
    s.extend(std::iter::repeat_n(' ', n));
}

/// The line without one trailing `\n` and then one trailing `\r`.
fn strip_line_end(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

fn is_printable_ascii(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| (0x20..0x7f).contains(b))
}

/// The input as text when it needs no change at all: the common case, taken without the parser.
fn already_safe(bytes: &[u8]) -> Option<&str> {
    if is_printable_ascii(bytes) {
        // Printable ASCII is valid UTF-8, so this never falls back.
        return std::str::from_utf8(bytes).ok();
    }
    if bytes.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.chars().any(is_replaced)).then_some(text)
}

/// Chars that are shown as U+FFFD: C1 controls and bidi overrides and isolates.
fn is_replaced(c: char) -> bool {
    matches!(c, '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The Unicode control picture for a C0 control byte (U+2400 + code).
fn control_picture(byte: u8) -> char {
    match byte {
        0x00..=0x1f => {
            char::from_u32(0x2400 + u32::from(byte)).unwrap_or(char::REPLACEMENT_CHARACTER)
        }
        0x7f => DEL_PICTURE,
        _ => char::REPLACEMENT_CHARACTER,
    }
}

/// Runs the parser over the whole line, making stray and unfinished escapes visible.
fn feed(sink: &mut Sink, bytes: &[u8]) {
    let mut parser = Parser::new();
    let mut start = 0;
    let mut after_last_esc: Option<(usize, Mark)> = None;
    loop {
        let next_esc = bytes[start..]
            .iter()
            .position(|&b| b == ESC)
            .map(|i| start + i);
        let end = next_esc.unwrap_or(bytes.len());
        if after_last_esc.is_some() && follows_stray_esc(bytes.get(start)) {
            sink.push_char(control_picture(ESC));
        }
        parser.advance(sink, &bytes[start..end]);
        let Some(esc) = next_esc else { break };
        parser.advance(sink, &bytes[esc..=esc]);
        after_last_esc = Some((esc + 1, sink.mark()));
        start = esc + 1;
    }

    if ends_in_ground(&mut parser, sink) {
        return;
    }
    // Only an ESC leaves the ground state, so an unfinished sequence began at the last ESC;
    // whatever the parser did after it is undone and its bytes are shown as text instead.
    if let Some((tail, mark)) = after_last_esc {
        sink.rewind(mark);
        sink.push_char(control_picture(ESC));
        let mut parser = Parser::new();
        parser.advance(sink, &bytes[tail..]);
        ends_in_ground(&mut parser, sink);
    }
}

/// Whether the byte after an ESC shows that ESC to be stray: another ESC comes at once, or CAN
/// or SUB cancels it. (An ESC at the very end is handled as an unfinished sequence.)
fn follows_stray_esc(next: Option<&u8>) -> bool {
    matches!(next, Some(&(ESC | CAN | SUB)))
}

/// Feeds the probe byte; true when the parser printed it, that is, was in the ground state.
fn ends_in_ground(parser: &mut Parser, sink: &mut Sink) -> bool {
    sink.probing = true;
    sink.probe_printed = false;
    parser.advance(sink, &[PROBE]);
    sink.probing = false;
    sink.probe_printed
}

/// Where the output stood at one point, to undo what followed.
#[derive(Clone, Copy)]
struct Mark {
    text_len: usize,
    col: usize,
    col_upto: usize,
}

/// The SGR state a line has asked for so far.
#[derive(Clone, Copy, Default, PartialEq)]
struct Pen {
    fg: Option<Color>,
    bg: Option<Color>,
    mods: Modifier,
}

impl Pen {
    fn style(self) -> Style {
        let mut style = Style::new().add_modifier(self.mods);
        style.fg = self.fg;
        style.bg = self.bg;
        style
    }
}

/// The `vte` performer that builds a [`SafeLine`].
struct Sink {
    text: String,
    spans: Vec<(Range<usize>, Style)>,
    /// Keep colours (log lines) or not (short fields).
    styled: bool,
    pen: Pen,
    /// Where the text written with the current pen began.
    run_start: usize,
    /// Display column reached at byte `col_upto` of `text`, kept for tab stops.
    col: usize,
    col_upto: usize,
    probing: bool,
    probe_printed: bool,
}

impl Sink {
    fn new(styled: bool, capacity: usize) -> Sink {
        Sink {
            text: String::with_capacity(capacity),
            spans: Vec::new(),
            styled,
            pen: Pen::default(),
            run_start: 0,
            col: 0,
            col_upto: 0,
            probing: false,
            probe_printed: false,
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            text_len: self.text.len(),
            col: self.col,
            col_upto: self.col_upto,
        }
    }

    /// Undo the text written since `mark`; the pen cannot have changed since, because a pen
    /// change finishes a sequence and so returns the parser to the ground state.
    fn rewind(&mut self, mark: Mark) {
        self.text.truncate(mark.text_len);
        self.col = mark.col;
        self.col_upto = mark.col_upto;
        self.run_start = self.run_start.min(mark.text_len);
    }

    fn push_char(&mut self, c: char) {
        self.text.push(c);
    }

    fn push_tab(&mut self) {
        if !self.styled {
            self.text.push(' ');
            return;
        }
        self.col += display_width(&self.text[self.col_upto..]);
        let n = TAB_STOP - self.col % TAB_STOP;
        push_spaces(&mut self.text, n);
        self.col += n;
        self.col_upto = self.text.len();
    }

    fn set_pen(&mut self, pen: Pen) {
        if pen == self.pen {
            return;
        }
        self.close_run();
        self.pen = pen;
    }

    /// Ends the text written with the current pen, recording it as a span if it is styled.
    fn close_run(&mut self) {
        let end = self.text.len();
        if self.run_start < end && self.pen != Pen::default() {
            push_span(&mut self.spans, self.run_start..end, self.pen.style());
        }
        self.run_start = end;
    }

    fn finish(mut self) -> SafeLine {
        self.close_run();
        if self.text.capacity() > self.text.len() + self.text.len() / 8 + 64 {
            self.text.shrink_to_fit();
        }
        self.spans.shrink_to_fit();
        SafeLine {
            text: self.text,
            spans: self.spans,
        }
    }
}

impl Perform for Sink {
    fn print(&mut self, c: char) {
        if self.probing && c == char::from(PROBE) {
            self.probe_printed = true;
            return;
        }
        match c {
            '\u{7f}' => self.push_char(DEL_PICTURE),
            c if c.is_control() || is_replaced(c) => self.push_char(char::REPLACEMENT_CHARACTER),
            c => self.push_char(c),
        }
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            b'\t' => self.push_tab(),
            _ => self.push_char(control_picture(byte)),
        }
    }

    fn csi_dispatch(&mut self, params: &Params, intermediates: &[u8], _ignore: bool, action: char) {
        if self.styled && action == 'm' && intermediates.is_empty() {
            let pen = apply_sgr(self.pen, params);
            self.set_pen(pen);
        }
    }
}

/// The pen after one SGR sequence; unknown codes leave it as it was.
fn apply_sgr(mut pen: Pen, params: &Params) -> Pen {
    let mut groups = params.iter();
    while let Some(group) = groups.next() {
        let code = group.first().copied().unwrap_or(0);
        match code {
            0 => pen = Pen::default(),
            1 => pen.mods |= Modifier::BOLD,
            2 => pen.mods |= Modifier::DIM,
            3 => pen.mods |= Modifier::ITALIC,
            4 if group.get(1) == Some(&0) => pen.mods -= Modifier::UNDERLINED,
            4 | 21 => pen.mods |= Modifier::UNDERLINED,
            7 => pen.mods |= Modifier::REVERSED,
            9 => pen.mods |= Modifier::CROSSED_OUT,
            22 => pen.mods -= Modifier::BOLD | Modifier::DIM,
            23 => pen.mods -= Modifier::ITALIC,
            24 => pen.mods -= Modifier::UNDERLINED,
            27 => pen.mods -= Modifier::REVERSED,
            29 => pen.mods -= Modifier::CROSSED_OUT,
            30..=37 => pen.fg = Some(ansi_color(code - 30)),
            38 => pen.fg = extended_color(group, &mut groups).or(pen.fg),
            39 => pen.fg = None,
            40..=47 => pen.bg = Some(ansi_color(code - 40)),
            48 => pen.bg = extended_color(group, &mut groups).or(pen.bg),
            49 => pen.bg = None,
            // Underline colour: consumed so its numbers are not read as codes, then ignored.
            58 => {
                extended_color(group, &mut groups);
            }
            90..=97 => pen.fg = Some(ansi_color(code - 90 + 8)),
            100..=107 => pen.bg = Some(ansi_color(code - 100 + 8)),
            _ => {}
        }
    }
    pen
}

/// The colour of `38`/`48`/`58`, either in one group (`38:5:n`, `38:2::r:g:b`, `38:2:r:g:b`)
/// or spread over the following groups (`38;5;n`, `38;2;r;g;b`).
fn extended_color<'a>(group: &[u16], rest: &mut impl Iterator<Item = &'a [u16]>) -> Option<Color> {
    if group.len() > 1 {
        return match group[1] {
            5 => indexed(group.get(2).copied()),
            2 if group.len() >= 6 => rgb(group[3], group[4], group[5]),
            2 if group.len() == 5 => rgb(group[2], group[3], group[4]),
            _ => None,
        };
    }
    let mut next = || rest.next().and_then(|g| g.first().copied());
    match next()? {
        5 => indexed(next()),
        2 => {
            let (r, g, b) = (next()?, next()?, next()?);
            rgb(r, g, b)
        }
        _ => None,
    }
}

fn indexed(n: Option<u16>) -> Option<Color> {
    n.and_then(|n| u8::try_from(n).ok()).map(Color::Indexed)
}

fn rgb(r: u16, g: u16, b: u16) -> Option<Color> {
    Some(Color::Rgb(
        u8::try_from(r).ok()?,
        u8::try_from(g).ok()?,
        u8::try_from(b).ok()?,
    ))
}

/// The 16 ANSI colours by number (0–7 normal, 8–15 bright).
fn ansi_color(n: u16) -> Color {
    match n {
        0 => Color::Black,
        1 => Color::Red,
        2 => Color::Green,
        3 => Color::Yellow,
        4 => Color::Blue,
        5 => Color::Magenta,
        6 => Color::Cyan,
        7 => Color::Gray,
        8 => Color::DarkGray,
        9 => Color::LightRed,
        10 => Color::LightGreen,
        11 => Color::LightYellow,
        12 => Color::LightBlue,
        13 => Color::LightMagenta,
        14 => Color::LightCyan,
        _ => Color::White,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_over_several_lines_is_one_without_the_quoted_excerpt() {
        let parser = "failed to parse kubeconfig YAML: error: line 5 column 12: expected \
                      mapping start\n --> <input>:5:12\n  |\n5 |   cluster: [unclosed\n  |   \
                      ^ expected mapping start\n";
        assert_eq!(
            one_line(parser),
            "failed to parse kubeconfig YAML: error: line 5 column 12: expected mapping start"
        );
        assert_eq!(one_line("first\n\n   second  \n"), "first second");
    }

    fn text(bytes: &[u8]) -> String {
        sanitize(bytes).text
    }

    fn fg(color: Color) -> Style {
        Style::new().fg(color)
    }

    // --- C0 controls and line ends ---

    #[test]
    fn plain_ascii_line_is_kept_as_is() {
        let line = sanitize(b"GET /healthz 200 1.2ms");
        assert_eq!(line, SafeLine::plain("GET /healthz 200 1.2ms"));
    }

    #[test]
    fn trailing_newline_and_crlf_are_removed() {
        assert_eq!(text(b"ready\n"), "ready");
        assert_eq!(text(b"ready\r\n"), "ready");
        assert_eq!(text(b"ready\r"), "ready");
        assert_eq!(text(b"ready\n\n"), "ready\u{240a}");
    }

    #[test]
    fn lone_carriage_return_is_shown_not_obeyed() {
        assert_eq!(
            text(b"progress 10%\rprogress 20%"),
            "progress 10%\u{240d}progress 20%"
        );
    }

    #[test]
    fn bell_backspace_and_interior_newline_become_control_pictures() {
        assert_eq!(text(b"ding\x07"), "ding\u{2407}");
        assert_eq!(
            text(b"passwd\x08\x08\x08\x08\x08\x08******"),
            "passwd␈␈␈␈␈␈******"
        );
        assert_eq!(text(b"one\ntwo"), "one\u{240a}two");
        assert_eq!(text(b"\x00nul"), "\u{2400}nul");
    }

    #[test]
    fn delete_becomes_its_control_picture() {
        assert_eq!(text(b"a\x7fb"), "a\u{2421}b");
    }

    #[test]
    fn stray_escape_at_the_end_is_shown() {
        assert_eq!(text(b"cut here\x1b"), "cut here\u{241b}");
    }

    #[test]
    fn escape_followed_by_escape_shows_the_first() {
        let line = sanitize(b"a\x1b\x1b[31mred");
        assert_eq!(line.text, "a\u{241b}red");
        assert_eq!(line.spans, vec![(4..7, fg(Color::Red))]);
    }

    #[test]
    fn escape_cancelled_by_can_is_shown() {
        assert_eq!(text(b"a\x1b\x18b"), "a\u{241b}\u{2418}b");
    }

    #[test]
    fn unfinished_csi_is_shown_as_text() {
        assert_eq!(text(b"level=info \x1b[31"), "level=info \u{241b}[31");
        assert_eq!(text(b"x\x1b[3\x07"), "x\u{241b}[3\u{2407}");
    }

    #[test]
    fn unterminated_osc_title_is_shown_as_text_not_set() {
        assert_eq!(text(b"\x1b]0;owned"), "\u{241b}]0;owned");
    }

    #[test]
    fn tab_expands_to_the_next_multiple_of_eight_columns() {
        assert_eq!(text(b"a\tb"), "a       b");
        assert_eq!(text(b"12345678\tx"), "12345678        x");
        assert_eq!(
            text(b"\tat com.example.Main"),
            "        at com.example.Main"
        );
    }

    #[test]
    fn tab_after_wide_characters_counts_columns_not_bytes() {
        // "日本" takes 4 columns, so the tab adds 4 spaces to reach column 8.
        assert_eq!(text("日本\tx".as_bytes()), "日本    x");
    }

    #[test]
    fn tab_inside_coloured_text_counts_columns_not_escape_bytes() {
        assert_eq!(text(b"\x1b[32mok\x1b[0m\tdone"), "ok      done");
    }

    // --- SGR ---

    #[test]
    fn sgr_basic_colour_becomes_a_span() {
        let line = sanitize(b"\x1b[31merror\x1b[0m: disk full");
        assert_eq!(line.text, "error: disk full");
        assert_eq!(line.spans, vec![(0..5, fg(Color::Red))]);
    }

    #[test]
    fn sgr_bright_and_background_colours_are_kept() {
        let line = sanitize(b"\x1b[92;104mok\x1b[39;49m.");
        assert_eq!(line.text, "ok.");
        assert_eq!(
            line.spans,
            vec![(
                0..2,
                Style::new().fg(Color::LightGreen).bg(Color::LightBlue)
            )]
        );
    }

    #[test]
    fn sgr_256_and_truecolor_are_kept_in_both_separator_forms() {
        let cases: [(&[u8], Color); 5] = [
            (b"\x1b[38;5;208mx", Color::Indexed(208)),
            (b"\x1b[38:5:208mx", Color::Indexed(208)),
            (b"\x1b[38;2;10;20;30mx", Color::Rgb(10, 20, 30)),
            (b"\x1b[38:2:10:20:30mx", Color::Rgb(10, 20, 30)),
            (b"\x1b[38:2::10:20:30mx", Color::Rgb(10, 20, 30)),
        ];
        for (input, color) in cases {
            assert_eq!(sanitize(input).spans, vec![(0..1, fg(color))], "{input:?}");
        }
        let bg = sanitize(b"\x1b[48;2;1;2;3mx");
        assert_eq!(bg.spans, vec![(0..1, Style::new().bg(Color::Rgb(1, 2, 3)))]);
    }

    #[test]
    fn sgr_extended_colour_arguments_are_not_read_as_codes() {
        // 38;5;1 is colour 1 of 256, not "bold"; 58;5;4 (underline colour) must not underline.
        let line = sanitize(b"\x1b[38;5;1;58;5;4mx");
        assert_eq!(line.spans, vec![(0..1, fg(Color::Indexed(1)))]);
    }

    #[test]
    fn sgr_out_of_range_colour_is_ignored() {
        assert_eq!(sanitize(b"\x1b[38;5;300mx").spans, vec![]);
        assert_eq!(sanitize(b"\x1b[38;2;1;2;999mx").spans, vec![]);
    }

    #[test]
    fn sgr_attributes_and_their_resets() {
        let line =
            sanitize(b"\x1b[1mB\x1b[2mD\x1b[22mN\x1b[3mI\x1b[23m\x1b[4mU\x1b[24m\x1b[7mR\x1b[27mP");
        assert_eq!(line.text, "BDNIURP");
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let bold_dim = Style::new().add_modifier(Modifier::BOLD | Modifier::DIM);
        assert_eq!(
            line.spans,
            vec![
                (0..1, bold),
                (1..2, bold_dim),
                (3..4, Style::new().add_modifier(Modifier::ITALIC)),
                (4..5, Style::new().add_modifier(Modifier::UNDERLINED)),
                (5..6, Style::new().add_modifier(Modifier::REVERSED)),
            ]
        );
    }

    #[test]
    fn sgr_reset_and_empty_sgr_end_the_span() {
        let line = sanitize(b"\x1b[1;31mA\x1b[mB\x1b[33mC\x1b[0mD");
        assert_eq!(line.text, "ABCD");
        assert_eq!(
            line.spans,
            vec![
                (
                    0..1,
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
                ),
                (2..3, fg(Color::Yellow)),
            ]
        );
    }

    #[test]
    fn repeated_identical_sgr_keeps_one_span() {
        let line = sanitize(b"\x1b[31mab\x1b[31mcd\x1b[0m");
        assert_eq!(line.spans, vec![(0..4, fg(Color::Red))]);
    }

    #[test]
    fn conceal_and_blink_are_not_kept() {
        let line = sanitize(b"\x1b[8msecret\x1b[5mblink");
        assert_eq!(line.text, "secretblink");
        assert_eq!(line.spans, vec![]);
    }

    #[test]
    fn private_csi_ending_in_m_is_not_sgr() {
        // xterm's modifyOtherKeys (CSI > 4 ; 2 m) is a mode, not a colour.
        let line = sanitize(b"\x1b[>4;2mtext");
        assert_eq!(line, SafeLine::plain("text"));
    }

    // --- other escape sequences ---

    #[test]
    fn cursor_moves_and_clear_screen_are_removed() {
        assert_eq!(
            text(b"\x1b[2J\x1b[H\x1b[10;20Hhi\x1b[3A\x1b[K\x1b[2K!"),
            "hi!"
        );
    }

    #[test]
    fn alternate_screen_and_mode_switches_are_removed() {
        assert_eq!(
            text(b"\x1b[?1049h\x1b[?25lstarted\x1b[?1049l\x1b[?2004h"),
            "started"
        );
    }

    #[test]
    fn osc_window_title_is_removed_with_either_terminator() {
        assert_eq!(text(b"\x1b]0;pwned\x07after"), "after");
        assert_eq!(text(b"\x1b]2;pwned\x1b\\after"), "after");
    }

    #[test]
    fn osc52_clipboard_write_is_removed() {
        assert_eq!(text(b"copy\x1b]52;c;cm0gLXJmIH4=\x07 done"), "copy done");
    }

    #[test]
    fn osc8_hyperlink_keeps_only_the_visible_text() {
        let input = b"see \x1b]8;;https://evil.example/\x1b\\the docs\x1b]8;;\x1b\\ now";
        assert_eq!(text(input), "see the docs now");
    }

    #[test]
    fn dcs_apc_pm_and_sos_strings_are_removed() {
        assert_eq!(text(b"a\x1bP1$r0m\x1b\\b"), "ab");
        assert_eq!(text(b"a\x1b_Gf=100;AAAA\x1b\\b"), "ab");
        assert_eq!(text(b"a\x1b^privacy\x1b\\b"), "ab");
        assert_eq!(text(b"a\x1bXstart of string\x1b\\b"), "ab");
    }

    #[test]
    fn two_byte_escapes_like_reset_and_save_cursor_are_removed() {
        assert_eq!(
            text(b"\x1bcreset\x1b7saved\x1b8\x1bM\x1b(B!"),
            "resetsaved!"
        );
    }

    // --- C1, bidi, UTF-8 ---

    #[test]
    fn c1_controls_become_replacement_characters() {
        // U+009B is the 8-bit CSI; as UTF-8 and as a raw byte it must not start a sequence.
        assert_eq!(text("a\u{9b}31mb".as_bytes()), "a\u{fffd}31mb");
        assert_eq!(text(b"a\x9b31mb"), "a\u{fffd}31mb");
        assert_eq!(text("x\u{85}y".as_bytes()), "x\u{fffd}y");
    }

    #[test]
    fn bidi_overrides_and_isolates_become_replacement_characters() {
        let input = "access\u{202e}nimda\u{202c} \u{2066}x\u{2069}";
        assert_eq!(
            text(input.as_bytes()),
            "access\u{fffd}nimda\u{fffd} \u{fffd}x\u{fffd}"
        );
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        assert_eq!(text(b"caf\xc3"), "caf\u{fffd}");
        assert_eq!(text(b"a\xffb\xfe"), "a\u{fffd}b\u{fffd}");
        assert_eq!(text(b"\xe2\x82\x1b[31mred"), "\u{fffd}red");
        assert_eq!(text("ok ✓".as_bytes()), "ok ✓");
    }

    #[test]
    fn very_long_line_is_kept_whole() {
        let mut input = b"\x1b[36m".to_vec();
        input.extend(std::iter::repeat_n(b'x', 1 << 20));
        let line = sanitize(&input);
        assert_eq!(line.text.len(), 1 << 20);
        assert_eq!(line.spans, vec![(0..1 << 20, fg(Color::Cyan))]);
    }

    #[test]
    fn hostile_fixture_lines_come_out_as_expected() {
        let raw: &[u8] = include_bytes!("../tests/fixtures/text/hostile.log");
        let expected = include_str!("../tests/fixtures/text/hostile.expected");
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let got: Vec<String> = raw
            .split(|&b| b == b'\n')
            .map(|l| sanitize(l).text)
            .collect();
        let want: Vec<&str> = expected.lines().collect();
        assert_eq!(got, want);
    }

    // --- short fields ---

    #[test]
    fn sanitize_plain_drops_colours_and_turns_tabs_into_one_space() {
        assert_eq!(sanitize_plain("\x1b[1;31mweb\x1b[0m\tapi"), "web api");
    }

    #[test]
    fn sanitize_plain_removes_a_title_escape_from_a_container_name() {
        assert_eq!(sanitize_plain("web-1\x1b]0;root@prod\x07"), "web-1");
        assert_eq!(sanitize_plain("db\r\u{202e}"), "db\u{240d}\u{fffd}");
        assert_eq!(sanitize_plain("label\rvalue"), "label\u{240d}value");
    }

    // --- widths ---

    #[test]
    fn display_width_counts_wide_and_combining_characters() {
        assert_eq!(display_width("abc"), 3);
        assert_eq!(display_width("日本語"), 6);
        assert_eq!(display_width("e\u{301}"), 1);
        assert_eq!(display_width("🚀"), 2);
        assert_eq!(display_width("👩‍🔬"), 2);
        assert_eq!(sanitize("日本\x1b[1m語".as_bytes()).width(), 6);
    }

    #[test]
    fn pad_of_mixed_cjk_emoji_and_combining_strings_has_exact_width() {
        let names = [
            "web",
            "日本語のサービス",
            "🚀launch🚀",
            "cafe\u{301}-api",
            "a\u{300}\u{301}\u{302}",
            "",
        ];
        for width in 0..20 {
            for name in names {
                let cell = pad(name, width);
                assert_eq!(
                    display_width(&cell),
                    width,
                    "pad({name:?}, {width}) = {cell:?}"
                );
            }
        }
    }

    #[test]
    fn fit_never_exceeds_the_width_and_ends_in_an_ellipsis_when_cut() {
        let s = "服务-🚀-e\u{301}-web-frontend";
        let full = display_width(s);
        for width in 0..full + 3 {
            let out = fit(s, width);
            assert!(display_width(&out) <= width, "fit({width}) = {out:?}");
            if width < full {
                assert_eq!(out.ends_with('…'), width > 0, "fit({width}) = {out:?}");
            } else {
                assert_eq!(out, s);
            }
        }
    }

    #[test]
    fn fit_pads_with_a_space_where_a_wide_char_would_straddle_the_edge() {
        assert_eq!(fit("日本語", 4), "日 …");
        assert_eq!(fit("日本語", 5), "日本…");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abcdef", 1), "…");
        assert_eq!(fit("abcdef", 0), "");
    }

    #[test]
    fn fit_keeps_combining_marks_with_their_letter() {
        assert_eq!(
            fit("e\u{301}e\u{301}e\u{301}", 3),
            "e\u{301}e\u{301}e\u{301}"
        );
        assert_eq!(fit("e\u{301}e\u{301}e\u{301}", 2), "e\u{301}…");
    }

    // --- cutting, wrapping, rendering ---

    #[test]
    fn display_cut_skips_columns_and_moves_spans() {
        let line = sanitize(b"abc\x1b[31mdefgh\x1b[0mij");
        let cut = line.display_cut(2, 4);
        assert_eq!(cut.text, "cdef");
        assert_eq!(cut.spans, vec![(1..4, fg(Color::Red))]);
        assert_eq!(line.display_cut(8, 10).text, "ij");
        assert_eq!(line.display_cut(20, 10), SafeLine::default());
    }

    #[test]
    fn display_cut_replaces_a_wide_char_cut_by_an_edge_with_a_space() {
        let line = sanitize("日本語x".as_bytes());
        assert_eq!(line.display_cut(1, 4).text, " 本 ");
        assert_eq!(line.display_cut(1, 4).width(), 4);
        assert_eq!(line.display_cut(0, 3).text, "日 ");
        assert_eq!(line.display_cut(4, 3).text, "語x");
    }

    #[test]
    fn display_cut_of_a_megabyte_line_returns_only_the_visible_columns() {
        let line = SafeLine::plain(&"0123456789".repeat(100_000));
        let cut = line.display_cut(500_003, 8);
        assert_eq!(cut.text, "34567890");
        assert_eq!(line.text.len(), 1_000_000);
    }

    #[test]
    fn wrap_never_splits_wide_chars_or_grapheme_clusters() {
        let line = sanitize("ab日本e\u{301}🚀c".as_bytes());
        let rows: Vec<String> = line.wrap(3).into_iter().map(|r| r.text).collect();
        assert_eq!(rows, vec!["ab", "日", "本e\u{301}", "🚀c"]);
        for row in line.wrap(3) {
            assert!(row.width() <= 3);
        }
    }

    #[test]
    fn wrap_carries_spans_into_each_row() {
        let line = sanitize(b"ab\x1b[32mcdef\x1b[0mg");
        let rows = line.wrap(3);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].text, "abc");
        assert_eq!(rows[0].spans, vec![(2..3, fg(Color::Green))]);
        assert_eq!(rows[1].text, "def");
        assert_eq!(rows[1].spans, vec![(0..3, fg(Color::Green))]);
        assert_eq!(rows[2], SafeLine::plain("g"));
    }

    #[test]
    fn wrap_of_an_empty_line_is_one_empty_row() {
        assert_eq!(SafeLine::default().wrap(10), vec![SafeLine::default()]);
    }

    #[test]
    fn to_line_patches_span_styles_over_the_base() {
        let base = Style::new().fg(Color::White).bg(Color::Black);
        let line = sanitize(b"a\x1b[1;31mb\x1b[0mc").to_line(base);
        let spans: Vec<(String, Style)> = line
            .spans
            .iter()
            .map(|s| (s.content.to_string(), s.style))
            .collect();
        assert_eq!(
            spans,
            vec![
                ("a".to_owned(), base),
                (
                    "b".to_owned(),
                    base.fg(Color::Red).add_modifier(Modifier::BOLD)
                ),
                ("c".to_owned(), base),
            ]
        );
    }

    #[test]
    fn highlighted_overlays_matches_on_top_of_colours() {
        let base = Style::new();
        let hl = Style::new().bg(Color::Yellow);
        let line = sanitize(b"xx \x1b[31merror\x1b[0m yy");
        let out = line.highlighted(&[1..5, 100..200], hl).to_line(base);
        let spans: Vec<(String, Style)> = out
            .spans
            .iter()
            .map(|s| (s.content.to_string(), s.style))
            .collect();
        assert_eq!(
            spans,
            vec![
                ("x".to_owned(), base),
                ("x ".to_owned(), hl),
                ("er".to_owned(), fg(Color::Red).bg(Color::Yellow)),
                ("ror".to_owned(), fg(Color::Red)),
                (" yy".to_owned(), base),
            ]
        );
    }

    #[test]
    fn highlight_follows_a_horizontal_scroll() {
        let hl = Style::new().bg(Color::Yellow);
        let line = SafeLine::plain("abcdefgh");
        let hit = 4..6;
        let cut = line.highlighted(&[hit], hl).display_cut(3, 4);
        assert_eq!(cut.text, "defg");
        assert_eq!(cut.spans, vec![(1..3, hl)]);
    }

    #[test]
    fn invalid_public_spans_are_skipped_not_panicked_on() {
        let line = SafeLine {
            text: "日本".to_owned(),
            spans: vec![
                (1..2, fg(Color::Red)),
                (0..99, fg(Color::Red)),
                (3..6, fg(Color::Blue)),
            ],
        };
        let out = line.to_line(Style::new());
        let text: String = out.spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(text, "日本");
        assert_eq!(out.spans[1].style, fg(Color::Blue));
    }

    // --- properties ---

    /// A small deterministic generator, so failures reproduce.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// Bytes biased towards the ones that make terminals act.
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            const INTERESTING: &[u8] = b"\x1b\x1b[]P_^X\\;:0123456789m\
                \x07\x08\x09\x0a\x0d\x18\x1a\x7f\x9b\x9c\xc2\xe2\x80\xae";
            (0..len)
                .map(|_| {
                    let r = self.next();
                    if r.is_multiple_of(3) {
                        INTERESTING[(r >> 8) as usize % INTERESTING.len()]
                    } else {
                        (r >> 16) as u8
                    }
                })
                .collect()
        }
    }

    fn assert_safe(line: &SafeLine, input: &[u8]) {
        assert!(
            !line.text.chars().any(|c| c.is_control()),
            "control char from {input:?}"
        );
        assert!(
            !line.text.chars().any(is_replaced),
            "bidi or C1 from {input:?}"
        );
        let mut pos = 0;
        for (range, _) in &line.spans {
            assert!(
                range.start >= pos && range.start < range.end,
                "{:?} from {input:?}",
                line.spans
            );
            assert!(range.end <= line.text.len());
            assert!(
                line.text.is_char_boundary(range.start) && line.text.is_char_boundary(range.end)
            );
            pos = range.end;
        }
    }

    #[test]
    fn random_bytes_give_no_control_chars_spans_on_char_boundaries_and_exact_pads() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let len = (rng.next() % 64) as usize;
            let input = rng.bytes(len);
            let line = sanitize(&input);
            assert_safe(&line, &input);
            let plain = sanitize_plain(&String::from_utf8_lossy(&input));
            assert!(
                !plain.chars().any(|c| c.is_control()),
                "round {round}: {input:?}"
            );
            let width = (rng.next() % 12) as usize + 1;
            for row in line.wrap(width) {
                assert_safe(&row, &input);
            }
            let skip = (rng.next() % 20) as usize;
            let cut = line.display_cut(skip, width);
            assert_safe(&cut, &input);
            assert!(cut.width() <= width, "cut {cut:?} of {line:?}");
            assert_eq!(
                display_width(&pad(&line.text, width)),
                width,
                "pad of {line:?}"
            );
        }
    }
}
