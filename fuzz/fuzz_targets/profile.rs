#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rig::fuzzing::profile(data));
