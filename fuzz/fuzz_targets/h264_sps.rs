#![no_main]

use floodlight_media::avc::parse_sps;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sps) = parse_sps(data) {
        assert!(sps.width > 0 && sps.height > 0);
    }
});
