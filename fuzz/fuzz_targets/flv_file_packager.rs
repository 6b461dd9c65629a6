#![no_main]

//! An FLV file through the whole sans-IO path ingest and transcoder run: FLV tags →
//! `StreamEvent`s → `StreamPackager`, checking the LL-HLS invariants after every step.

use std::collections::HashMap;

use floodlight_media::flv::{AudioTag, FlvFileReader, FlvTagType, VideoTag, parse_audio_tag, parse_video_tag};
use floodlight_media::package::{PackagerConfig, PackagerOutput, StreamPackager};
use floodlight_media::{StreamEvent, TrackParams};
use libfuzzer_sys::fuzz_target;
use mp4_atom::Decode;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = FlvFileReader::new(data) else { return };
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let (mut video, mut audio) = (None, None);
    let mut announced = false;
    let mut targets: HashMap<String, f64> = HashMap::new();
    let mut last: HashMap<String, (u64, u32)> = HashMap::new();
    let mut now = 1_700_000_000_000i64;
    for tag in reader {
        let Ok(tag) = tag else { break };
        now += 10;
        let frame = match tag.tag_type {
            FlvTagType::Video => match parse_video_tag(tag.body, tag.timestamp_ms) {
                Ok(VideoTag::SequenceHeader(c)) => {
                    video = Some(c);
                    None
                }
                Ok(VideoTag::Frame(f)) => Some(f),
                _ => None,
            },
            FlvTagType::Audio => match parse_audio_tag(tag.body, tag.timestamp_ms) {
                Ok(AudioTag::SequenceHeader(c)) => {
                    audio = Some(c);
                    None
                }
                Ok(AudioTag::Frame(f)) => Some(f),
                Err(_) => None,
            },
            FlvTagType::ScriptData => None,
        };
        let Some(frame) = frame else { continue };
        if !announced {
            let tracks: Vec<TrackParams> = video
                .clone()
                .map(TrackParams::video)
                .into_iter()
                .chain(audio.clone().map(TrackParams::audio))
                .collect();
            let _ = packager.handle_event(StreamEvent::Tracks(tracks), now);
            announced = true;
        }
        let _ = packager.handle_event(StreamEvent::Frame(frame), now);
        check(&mut packager, &mut targets, &mut last);
    }
    let _ = packager.handle_event(StreamEvent::Ended, now);
    check(&mut packager, &mut targets, &mut last);
});

fn check(
    packager: &mut StreamPackager,
    targets: &mut HashMap<String, f64>,
    last: &mut HashMap<String, (u64, u32)>,
) {
    while let Some(output) = packager.poll_output() {
        match output {
            PackagerOutput::Rendition(d) => {
                targets.insert(d.name.clone(), f64::from(d.part_target_ms) / 1000.0);
            }
            PackagerOutput::Init { data, .. } => assert!(!data.is_empty()),
            PackagerOutput::Part { rendition, meta, data } => {
                assert!(!data.is_empty());
                // Every part ≤ PART-TARGET (RFC 8216bis §4.4.4.9); the one exception the
                // packager allows is a single frame longer than the target, alone.
                let moof = mp4_atom::Moof::decode(&mut &data[..]).expect("part starts with a moof");
                let samples: usize = moof.traf.iter().flat_map(|t| &t.trun).map(|t| t.samples.len()).sum();
                assert!(samples > 0);
                let target = targets[&rendition];
                assert!(
                    meta.duration <= target + 1e-9 || samples == 1,
                    "{rendition} part {}.{} lasts {} s over PART-TARGET {target} with {samples} samples",
                    meta.msn,
                    meta.part,
                    meta.duration
                );
                let position = (meta.msn, meta.part);
                if let Some(previous) = last.insert(rendition, position) {
                    assert!(position > previous, "numbering went back: {previous:?} → {position:?}");
                }
            }
        }
    }
}
