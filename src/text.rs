//! Making text from containers safe to show: log lines, names, labels and env values become
//! printable text that cannot act on the operator's terminal.
//!
//! STUB: replaced by the real sanitizer.

use std::ops::Range;

use ratatui::style::Style;

/// A line with every control sequence removed; colours kept only as spans.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SafeLine {
    /// Printable text only.
    pub text: String,
    /// Byte ranges of `text` with the colour the line asked for.
    pub spans: Vec<(Range<usize>, Style)>,
}

/// Sanitize one line of raw output.
pub fn sanitize(bytes: &[u8]) -> SafeLine {
    SafeLine { text: sanitize_plain(&String::from_utf8_lossy(bytes)), spans: Vec::new() }
}

/// Sanitize a short field (a name, a label, an env value): no colours, no controls.
pub fn sanitize_plain(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}
