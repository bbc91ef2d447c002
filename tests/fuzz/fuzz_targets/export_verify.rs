#![no_main]
//! See `vivirk::fuzzing::export_verify` (src/fuzzing/export_verify.rs) for the input format and the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| vivirk::fuzzing::export_verify::check(data));
