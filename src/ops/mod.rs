//! One-shot commands for pipelines and scripts (placeholder).
