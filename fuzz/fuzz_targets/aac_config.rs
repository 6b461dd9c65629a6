#![no_main]

use floodlight_media::AacConfig;
use floodlight_media::aac::AdtsHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = AacConfig::from_asc(bytes::Bytes::copy_from_slice(data)) {
        assert!(c.sample_rate > 0 && c.channels > 0);
    }
    if let Ok(header) = AdtsHeader::parse(data)
        && let Ok(c) = header.audio_specific_config()
    {
        assert!(c.sample_rate > 0 && c.channels > 0);
    }
});
