#![no_main]

//! media's CMAF reader (what frame-precise VOD rendering reads archived init segments and
//! segments with): any bytes give an error or a reading, never a panic, and every sample
//! it hands out is a slice of the segment it read.

use bytes::Bytes;
use floodlight_media::cmaf::{read_init, read_segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // [init length: u16 BE][init][segment]
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (init, segment) = rest.split_at(len);
    let Ok(track) = read_init(init) else {
        return;
    };
    let segment = Bytes::copy_from_slice(segment);
    if let Ok(fragments) = read_segment(&segment, &track) {
        let total: usize = fragments
            .iter()
            .flat_map(|f| &f.fragment.samples)
            .map(|s| s.data.len())
            .sum();
        assert!(total <= segment.len(), "samples beyond the segment");
    }
});
