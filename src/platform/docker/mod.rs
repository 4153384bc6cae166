//! The Docker platform (bollard).
