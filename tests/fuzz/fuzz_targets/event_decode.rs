#![no_main]
//! See `vivirk::fuzzing::event_decode` (src/fuzzing/event_decode.rs) for the input format and the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| vivirk::fuzzing::event_decode::check(data));
