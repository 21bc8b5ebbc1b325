#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| target_system::fuzzing::checkout_body(data));
