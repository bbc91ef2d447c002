//! The checks behind the fuzz targets in `tests/fuzz/` (cargo-fuzz, libFuzzer).
//!
//! Each `check` takes arbitrary bytes, must not panic on its own account, and asserts the
//! properties of the code it drives: decoders never panic, what decodes encodes back to the same
//! bytes (or the same value), and the readers of one format agree with each other. A failed
//! assertion is a finding. The fuzz targets call these functions and nothing else, and
//! `cargo test` runs every committed seed (`tests/fuzz/corpus/<target>/`) and every crash kept
//! for regression (`tests/fuzz/artifacts/<target>/`) through them, so a crash found once stays
//! fixed without cargo-fuzz.
//!
//! Compiled only for tests and for fuzz builds (`cargo fuzz` sets `--cfg fuzzing`), never into
//! the server.

pub mod event_decode;
pub mod export_verify;
pub mod log_record;
pub mod projection_record;
pub mod request_body;

#[cfg(test)]
mod tests;

/// Every target: its name (the file `tests/fuzz/fuzz_targets/{name}.rs` and the directories of
/// its corpus and artifacts) and its check.
/// A target's check.
pub type Check = fn(&[u8]);

pub const TARGETS: &[(&str, Check)] = &[
    ("log_record", log_record::check),
    ("event_decode", event_decode::check),
    ("export_verify", export_verify::check),
    ("request_body", request_body::check),
    ("projection_record", projection_record::check),
];
