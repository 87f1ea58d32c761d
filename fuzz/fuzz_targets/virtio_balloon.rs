#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz_targets::virtio::fuzz_virtio_balloon(data));
