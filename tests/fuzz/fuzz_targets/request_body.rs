#![no_main]
//! See `vivirk::fuzzing::request_body` (src/fuzzing/request_body.rs) for the input format and the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| vivirk::fuzzing::request_body::check(data));
