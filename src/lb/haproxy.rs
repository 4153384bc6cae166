//! HAProxy through its runtime API (placeholder).
