#![no_main]
//! See `vivirk::fuzzing::projection_record` (src/fuzzing/projection_record.rs) for the input format and the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| vivirk::fuzzing::projection_record::check(data));
