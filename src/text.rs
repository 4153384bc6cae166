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
//!   U+FFFD as well.
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

/// `s` fitted to `width` columns and padded with spaces to exactly `width` columns.
pub fn pad(s: &str, width: usize) -> String {
    let mut out = fit(s, width);
    let used = display_width(&out);
    push_spaces(&mut out, width.saturating_sub(used));
    out
}

impl SafeLine {
    /// A line of plain text with no spans; the caller vouches that `text` is already safe.
    pub fn plain(text: impl Into<String>) -> SafeLine {
        SafeLine {
            text: text.into(),
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

    /// Like [`SafeLine::to_line`], with `hl` patched over the byte ranges in `matches` (search
    /// hits, as from `Regex::find_iter` on `text`); ranges not on char boundaries are ignored.
    pub fn to_line_highlighted(
        &self,
        base: Style,
        matches: &[Range<usize>],
        hl: Style,
    ) -> Line<'static> {
        build_line(&self.text, &self.overlay_spans(matches, hl), base)
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
    if let Some((last, last_style)) = spans.last_mut() {
        if last.end == range.start && *last_style == style {
            last.end = range.end;
            return;
        }
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
