//! Integration tests across the paych crates live in `tests/`.
