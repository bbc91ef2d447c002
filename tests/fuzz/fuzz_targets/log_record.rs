#![no_main]
//! See `vivirk::fuzzing::log_record` (src/fuzzing/log_record.rs) for the input format and the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| vivirk::fuzzing::log_record::check(data));
