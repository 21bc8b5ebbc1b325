#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chaos::fuzzing::toxiproxy_api(data));
