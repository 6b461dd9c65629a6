#![no_main]

//! The archive's VOD asset manifest decoder (what VOD playback and retention read from
//! the object store): any bytes give an error naming the object or a manifest, never a
//! panic, and a manifest it accepts encodes and decodes back to itself.

use floodlight_archive::AssetManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = AssetManifest::decode("v1/assets/a/manifest.json", data) {
        let again = AssetManifest::decode("again", &manifest.encode()).expect("round trip");
        assert_eq!(again, manifest);
    }
});
