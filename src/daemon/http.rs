//! A small HTTP/1.1 listener for `/metrics` and `/healthz`.
