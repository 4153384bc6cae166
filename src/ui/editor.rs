//! The rule editor.
