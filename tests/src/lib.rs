//! Consumer-level integration tests live in `tests/`.
