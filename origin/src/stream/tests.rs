//! The stream core driven through pushes, read through its playlists and status.

use bytes::Bytes;

use super::*;
use crate::window::tests::{LIMITS, descriptor, meta, part_bytes};
use floodlight_media::playlist::{AudioRendition, Variant};

/// The tests' 1 s segment targets get TARGETDURATION 1.
const STREAM_LIMITS: StreamLimits = StreamLimits {
    window: LIMITS,
    max_renditions: 3,
    target_duration_factor: 1.0,
    start_variant_max_bandwidth_bps: 2_500_000,
};

fn push_segments(stream: &mut StreamCore, name: &str, segments: u64, extra_parts: u32) {
    stream
        .push_init(name, 0, Bytes::from_static(b"init"))
        .unwrap();
    for msn in 0..segments {
        for part in 0..4 {
            stream
                .push_part(name, &meta(msn, part, 4), part_bytes(msn, part), 0)
                .unwrap();
        }
    }
    for part in 0..extra_parts {
        stream
            .push_part(
                name,
                &meta(segments, part, 4),
                part_bytes(segments, part),
                0,
            )
            .unwrap();
    }
}

fn stream_with_video_and_audio() -> StreamCore {
    let mut stream = StreamCore::new(STREAM_LIMITS);
    stream
        .declare(descriptor("video", RenditionKind::Video))
        .unwrap();
    stream
        .declare(descriptor("audio", RenditionKind::Audio))
        .unwrap();
    stream
}

#[test]
fn the_master_playlist_pairs_video_variants_with_the_audio_group() {
    let mut stream = stream_with_video_and_audio();
    assert_eq!(stream.master_playlist(), None);
    push_segments(&mut stream, "video", 2, 0);
    push_segments(&mut stream, "audio", 2, 0);
    assert!(stream.master_ready());
    let master = stream.master_playlist().unwrap();
    // 160 bit/s per rendition (5-byte parts, four per 1 s segment).
    assert_eq!(
        master.variants,
        vec![Variant {
            uri: "video/index.m3u8".to_string(),
            bandwidth: 320,
            average_bandwidth: Some(320),
            codecs: "avc1.64001f,mp4a.40.2".to_string(),
            resolution: Some((1280, 720)),
            frame_rate: Some(30.0),
            audio_group: Some("audio".to_string()),
        }]
    );
    assert_eq!(
        master.audio,
        vec![AudioRendition {
            group_id: "audio".to_string(),
            name: "audio".to_string(),
            uri: "audio/index.m3u8".to_string(),
            default: true,
            autoselect: true,
            channels: Some(2),
            language: None,
        }]
    );
}

#[test]
fn an_audio_only_stream_lists_its_audio_as_the_variant() {
    let mut stream = StreamCore::new(STREAM_LIMITS);
    stream
        .declare(descriptor("audio", RenditionKind::Audio))
        .unwrap();
    push_segments(&mut stream, "audio", 1, 0);
    let master = stream.master_playlist().unwrap();
    assert_eq!(master.audio, Vec::new());
    assert_eq!(master.variants.len(), 1);
    assert_eq!(master.variants[0].uri, "audio/index.m3u8");
    assert_eq!(master.variants[0].codecs, "mp4a.40.2");
    assert_eq!(master.variants[0].audio_group, None);
}

#[test]
fn media_playlists_report_the_other_renditions() {
    let mut stream = stream_with_video_and_audio();
    push_segments(&mut stream, "video", 2, 1);
    push_segments(&mut stream, "audio", 2, 3);
    let playlist = stream.media_playlist("video").unwrap();
    // RFC 8216bis §4.4.5.4: one EXT-X-RENDITION-REPORT per other rendition, with its
    // last MSN and part.
    assert_eq!(playlist.rendition_reports.len(), 1);
    assert_eq!(playlist.rendition_reports[0].uri, "../audio/index.m3u8");
    assert_eq!(
        (
            playlist.rendition_reports[0].last_msn,
            playlist.rendition_reports[0].last_part
        ),
        (2, 2)
    );
    assert_eq!(stream.media_playlist("nope"), None);
}

#[test]
fn a_descriptor_after_the_end_starts_a_new_session() {
    let mut stream = stream_with_video_and_audio();
    push_segments(&mut stream, "video", 1, 0);
    stream.end();
    assert!(stream.status().ended);
    assert_eq!(
        stream.declare(descriptor("video", RenditionKind::Video)),
        Ok(Declared::NewSession)
    );
    assert!(!stream.is_ended());
    assert!(
        stream.rendition("audio").is_none(),
        "the new session starts with no renditions but this one"
    );
    assert_eq!(stream.rendition("video").unwrap().last(), None);
}

#[test]
fn descriptors_are_validated_and_part_target_is_fixed() {
    let mut stream = stream_with_video_and_audio();
    let mut changed = descriptor("video", RenditionKind::Video);
    changed.part_target_ms = 500;
    // RFC 8216bis §4.4.3.7: PART-TARGET does not change for a stream.
    assert_eq!(
        stream.declare(changed),
        Err(PushError::PartTargetChanged { was: 250, now: 500 })
    );
    let mut renamed = descriptor("video", RenditionKind::Video);
    renamed.name = "../x".to_string();
    assert!(matches!(
        stream.declare(renamed),
        Err(PushError::InvalidDescriptor(_))
    ));
    let mut tiny = descriptor("other", RenditionKind::Video);
    tiny.part_target_ms = 10;
    assert!(matches!(
        stream.declare(tiny),
        Err(PushError::InvalidDescriptor(_))
    ));
    let mut wider = descriptor("video", RenditionKind::Video);
    wider.width = Some(1920);
    assert_eq!(stream.declare(wider), Ok(Declared::Updated));
}

#[test]
fn status_sums_the_current_bitrates() {
    let mut stream = stream_with_video_and_audio();
    push_segments(&mut stream, "video", 2, 0);
    let status = stream.status();
    assert_eq!(status.bitrate_bps, 160);
    assert_eq!(
        status.renditions[0].last_part,
        Some(LastPart {
            msn: 1,
            part: 3,
            ends_segment: true,
            init_version: 0,
        })
    );
    assert_eq!(status.renditions[1].bitrate_bps, None);
    assert_eq!(status.last_part_at_ms, Some(0));
    assert!(!status.ended);
}

#[test]
fn the_master_playlist_keeps_the_audio_group_before_audio_has_parts() {
    let mut stream = stream_with_video_and_audio();
    push_segments(&mut stream, "video", 2, 0);
    // After the master's wait timed out: the variant still plays with the audio group
    // (players keep the first master they load), CODECS names the audio from its
    // descriptor (RFC 8216bis §4.4.6.2), and BANDWIDTH is the video's alone.
    let master = stream.master_playlist().unwrap();
    assert_eq!(master.variants.len(), 1);
    assert_eq!(master.variants[0].audio_group.as_deref(), Some("audio"));
    assert_eq!(master.variants[0].codecs, "avc1.64001f,mp4a.40.2");
    assert_eq!(master.variants[0].bandwidth, 160);
    assert_eq!(master.audio.len(), 1);
    assert_eq!(master.audio[0].uri, "audio/index.m3u8");
}

#[test]
fn no_audio_only_master_while_video_is_declared() {
    let mut stream = stream_with_video_and_audio();
    push_segments(&mut stream, "audio", 2, 0);
    assert_eq!(stream.master_playlist(), None);
    push_segments(&mut stream, "video", 1, 0);
    assert_eq!(stream.master_playlist().unwrap().variants.len(), 1);
}

#[test]
fn the_target_duration_is_the_streams_and_fixed() {
    let limits = StreamLimits {
        target_duration_factor: 1.5,
        ..STREAM_LIMITS
    };
    let mut stream = StreamCore::new(limits);
    let mut video = descriptor("video", RenditionKind::Video);
    video.segment_target_ms = 2000;
    stream.declare(video.clone()).unwrap();
    // ceil(2 s × 1.5) = 3.
    assert_eq!(stream.target_duration(), 3);
    // A rendition with a shorter segment target plays with the stream's target duration
    // too: all renditions of a stream share it.
    let mut audio = descriptor("audio", RenditionKind::Audio);
    audio.segment_target_ms = 1000;
    stream.declare(audio).unwrap();
    assert_eq!(stream.rendition("audio").unwrap().target_duration(), 3);
    // RFC 8216bis §6.2.1: EXT-X-TARGETDURATION MUST NOT change, so a descriptor that
    // needs a longer one is refused, and changes nothing.
    let mut longer = video.clone();
    longer.segment_target_ms = 4000;
    longer.width = Some(1920);
    assert_eq!(
        stream.declare(longer),
        Err(PushError::TargetDurationChanged {
            target_duration: 3,
            wanted: 6,
            segment_target_ms: 4000
        })
    );
    assert_eq!(stream.rendition("video").unwrap().descriptor(), &video);
    // A new session may choose again.
    stream.end();
    let mut longer = video.clone();
    longer.segment_target_ms = 4000;
    assert_eq!(stream.declare(longer), Ok(Declared::NewSession));
    assert_eq!(stream.target_duration(), 6);
}

#[test]
fn renditions_per_stream_are_capped() {
    let mut stream = stream_with_video_and_audio();
    stream
        .declare(descriptor("low", RenditionKind::Video))
        .unwrap();
    assert_eq!(
        stream.declare(descriptor("lower", RenditionKind::Video)),
        Err(PushError::TooManyRenditions { max: 3 })
    );
    // Updating a declared one is not a new rendition.
    assert_eq!(
        stream.declare(descriptor("low", RenditionKind::Video)),
        Ok(Declared::Updated)
    );
    assert_eq!(
        stream.push_part("lower", &meta(0, 0, 4), part_bytes(0, 0), 0),
        Err(PushError::UnknownRendition("lower".to_string()))
    );
}

#[test]
fn descriptors_with_absurd_segment_targets_are_refused() {
    let mut stream = StreamCore::new(STREAM_LIMITS);
    let mut huge = descriptor("video", RenditionKind::Video);
    huge.segment_target_ms = u32::MAX;
    assert!(matches!(
        stream.declare(huge),
        Err(PushError::InvalidDescriptor(_))
    ));
}

#[test]
fn a_playlist_is_rendered_once_per_change() {
    let mut stream = stream_with_video_and_audio();
    push_segments(&mut stream, "video", 2, 1);
    let first = stream
        .media_playlist_text("video", DeltaUpdate::Full)
        .unwrap()
        .text;
    assert_eq!(
        first,
        stream
            .media_playlist("video")
            .unwrap()
            .render(DeltaUpdate::Full)
    );
    // Unchanged: the same bytes, not a new rendering.
    let again = stream
        .media_playlist_text("video", DeltaUpdate::Full)
        .unwrap()
        .text;
    assert_eq!(again.as_ptr(), first.as_ptr());
    // Another form is another text.
    let skip = stream
        .media_playlist_text("video", DeltaUpdate::Skip)
        .unwrap()
        .text;
    assert_ne!(skip.as_ptr(), first.as_ptr());
    // A part of another rendition changes the rendition report (RFC 8216bis §4.4.5.4).
    push_segments(&mut stream, "audio", 0, 1);
    let after = stream
        .media_playlist_text("video", DeltaUpdate::Full)
        .unwrap()
        .text;
    assert_ne!(after, first);
    assert!(
        std::str::from_utf8(&after)
            .unwrap()
            .contains("URI=\"../audio/index.m3u8\",LAST-MSN=0,LAST-PART=0")
    );
    assert_eq!(stream.media_playlist_text("nope", DeltaUpdate::Full), None);
}

fn rung(name: &str, hint_bps: u64) -> RenditionDescriptor {
    let mut rung = descriptor(name, RenditionKind::Video);
    rung.bandwidth_hint_bps = Some(hint_bps);
    rung
}

/// A 3-rung ladder and audio, each with one part.
fn ladder() -> StreamCore {
    let mut stream = StreamCore::new(StreamLimits {
        max_renditions: 8,
        ..STREAM_LIMITS
    });
    for rung in [
        rung("source", 5_000_000),
        rung("720p", 2_000_000),
        rung("360p", 800_000),
    ] {
        stream.declare(rung).unwrap();
    }
    stream
        .declare(descriptor("audio", RenditionKind::Audio))
        .unwrap();
    for name in ["source", "720p", "360p", "audio"] {
        push_segments(&mut stream, name, 0, 1);
    }
    stream
}

#[test]
fn a_ladder_lists_the_start_variant_first_then_highest_first() {
    let stream = ladder();
    assert!(stream.master_ready());
    let master = stream.master_playlist().unwrap();
    // Before a complete segment: BANDWIDTH = hint × 1.1 plus the audio's estimate
    // (one 5-byte part in 0.25 s), AVERAGE-BANDWIDTH = hint plus the same.
    let listed: Vec<(&str, u64, Option<u64>)> = master
        .variants
        .iter()
        .map(|v| (v.uri.as_str(), v.bandwidth, v.average_bandwidth))
        .collect();
    assert_eq!(
        listed,
        vec![
            // The highest at or below 2.5 Mbit/s starts; then highest first.
            ("720p/index.m3u8", 2_200_160, Some(2_000_160)),
            ("source/index.m3u8", 5_500_160, Some(5_000_160)),
            ("360p/index.m3u8", 880_160, Some(800_160)),
        ]
    );
    // RFC 8216bis §4.4.6.2: CODECS of every track the variant plays.
    assert!(
        master
            .variants
            .iter()
            .all(|v| v.codecs == "avc1.64001f,mp4a.40.2")
    );
    // §4.4.6.3: an I-frame playlist per video variant, in their order, video codec only.
    let iframes: Vec<(&str, &str)> = master
        .iframe_variants
        .iter()
        .map(|i| (i.uri.as_str(), i.codecs.as_str()))
        .collect();
    assert_eq!(
        iframes,
        vec![
            ("720p/iframes.m3u8", "avc1.64001f"),
            ("source/iframes.m3u8", "avc1.64001f"),
            ("360p/iframes.m3u8", "avc1.64001f"),
        ]
    );
    // With every rung above the start limit, the lowest starts.
    let mut stream = StreamCore::new(StreamLimits {
        start_variant_max_bandwidth_bps: 100,
        ..STREAM_LIMITS
    });
    stream.declare(rung("a", 5_000_000)).unwrap();
    stream.declare(rung("b", 1_000_000)).unwrap();
    push_segments(&mut stream, "a", 0, 1);
    push_segments(&mut stream, "b", 0, 1);
    let uris: Vec<String> = stream
        .master_playlist()
        .unwrap()
        .variants
        .into_iter()
        .map(|v| v.uri)
        .collect();
    assert_eq!(uris, vec!["b/index.m3u8", "a/index.m3u8"]);
}

#[test]
fn a_rung_starting_late_does_not_hold_the_master() {
    let mut stream = StreamCore::new(STREAM_LIMITS);
    stream.declare(rung("720p", 2_000_000)).unwrap();
    stream.declare(rung("360p", 800_000)).unwrap();
    push_segments(&mut stream, "720p", 0, 2);
    // 360p has nothing yet: wait, while no video segment is complete.
    assert!(!stream.master_ready());
    for part in 2..4 {
        stream
            .push_part("720p", &meta(0, part, 4), part_bytes(0, part), 0)
            .unwrap();
    }
    // A complete video segment: answer with what has started.
    assert!(stream.master_ready());
    let master = stream.master_playlist().unwrap();
    assert_eq!(master.variants.len(), 1);
    assert_eq!(master.variants[0].uri, "720p/index.m3u8");
}

#[test]
fn a_shed_rendition_leaves_the_master_the_reports_and_the_status() {
    let mut stream = ladder();
    assert_eq!(stream.shed_rendition("360p", "cpu", 1_234), Ok(true));
    // Again: nothing changes, the first reason stays.
    assert_eq!(stream.shed_rendition("360p", "other", 2_000), Ok(false));
    assert_eq!(
        stream.shed_rendition("nope", "cpu", 0),
        Err(PushError::UnknownRendition("nope".to_string()))
    );
    let master = stream.master_playlist().unwrap();
    assert!(master.variants.iter().all(|v| v.uri != "360p/index.m3u8"));
    assert!(
        master
            .iframe_variants
            .iter()
            .all(|v| v.uri != "360p/iframes.m3u8")
    );
    // RFC 8216bis §4.4.5.4: reports name the renditions a player may switch to.
    let reports = stream.media_playlist("720p").unwrap().rendition_reports;
    assert!(reports.iter().all(|r| r.uri != "../360p/index.m3u8"));
    assert_eq!(reports.len(), 2);
    let status = stream.status();
    assert_eq!(
        status.shed_renditions,
        vec![ShedRendition {
            name: "360p".to_string(),
            reason: "cpu".to_string(),
            at_ms: 1_234
        }]
    );
    assert!(status.renditions.iter().all(|r| r.name != "360p"));
    // Its segment in progress closed; its parts are refused from now on.
    let shed = stream.rendition("360p").unwrap();
    assert_eq!(shed.last().map(|l| l.ends_segment), Some(true));
    assert_eq!(
        stream.push_part("360p", &meta(1, 0, 4), part_bytes(1, 0), 0),
        Err(PushError::Shed {
            reason: "cpu".to_string()
        })
    );
    // A shed rendition does not hold the master either.
    assert!(stream.master_ready());
    // Declared again (a transcoder with room for it): back, continuing at the next
    // segment.
    assert_eq!(stream.declare(rung("360p", 800_000)), Ok(Declared::Resumed));
    assert!(stream.status().shed_renditions.is_empty());
    // Nothing new to play yet: still out of the master and the reports.
    let master = stream.master_playlist().unwrap();
    assert!(master.variants.iter().all(|v| v.uri != "360p/index.m3u8"));
    let reports = stream.media_playlist("720p").unwrap().rendition_reports;
    assert!(reports.iter().all(|r| r.uri != "../360p/index.m3u8"));
    let mut next = meta(1, 0, 4);
    next.discontinuity = true;
    assert_eq!(
        stream.push_part("360p", &next, part_bytes(1, 0), 0),
        Ok(Pushed::Stored)
    );
    assert!(
        stream
            .master_playlist()
            .unwrap()
            .variants
            .iter()
            .any(|v| v.uri == "360p/index.m3u8")
    );
}

#[test]
fn a_shed_rung_back_after_its_window_starts_over_with_its_siblings_numbering() {
    let mut stream = StreamCore::new(StreamLimits {
        window: WindowLimits {
            max_segments: 2,
            ..LIMITS
        },
        ..STREAM_LIMITS
    });
    stream.declare(rung("720p", 2_000_000)).unwrap();
    stream.declare(rung("360p", 800_000)).unwrap();
    push_segments(&mut stream, "720p", 1, 0);
    push_segments(&mut stream, "360p", 1, 0);
    stream.shed_rendition("360p", "cpu", 0).unwrap();
    for msn in 1..7 {
        for part in 0..4 {
            let mut meta = meta(msn, part, 4);
            meta.discontinuity = msn == 3 && part == 0;
            stream
                .push_part("720p", &meta, part_bytes(msn, part), 0)
                .unwrap();
        }
    }
    stream.declare(rung("360p", 800_000)).unwrap();
    // Five numbers skipped, more than the window's two segments: not gaps, a restart.
    stream
        .push_part("360p", &meta(6, 0, 4), part_bytes(6, 0), 0)
        .unwrap();
    let resumed = stream.media_playlist("360p").unwrap();
    assert_eq!(resumed.media_sequence, 6);
    assert_eq!(
        resumed.segments.iter().map(|s| s.msn).collect::<Vec<_>>(),
        vec![6]
    );
    assert!(!resumed.segments[0].discontinuity);
    // RFC 8216bis §4.4.3.3: segment 6 in the same discontinuity sequence as 720p's.
    let sibling = stream.media_playlist("720p").unwrap();
    let sibling_at_6 = sibling.discontinuity_sequence
        + sibling
            .segments
            .iter()
            .filter(|s| s.msn <= 6 && s.discontinuity)
            .count() as u64;
    assert_eq!(sibling_at_6, 1);
    assert_eq!(resumed.discontinuity_sequence, sibling_at_6);
    assert!(
        stream
            .master_playlist()
            .unwrap()
            .variants
            .iter()
            .any(|v| v.uri == "360p/index.m3u8")
    );
}

#[test]
fn an_unhinted_video_rung_holds_the_master_until_its_first_segment() {
    let mut stream = StreamCore::new(STREAM_LIMITS);
    // The passthrough: no encoder rate to go by.
    stream
        .declare(descriptor("source", RenditionKind::Video))
        .unwrap();
    stream.declare(rung("360p", 800_000)).unwrap();
    push_segments(&mut stream, "360p", 0, 1);
    stream
        .push_init("source", 0, Bytes::from_static(b"init"))
        .unwrap();
    // Its first part is mostly the IDR frame: 8000 bit/s over 0.25 s, 32 kbit/s.
    let idr = Bytes::from(vec![0u8; 1000]);
    stream.push_part("source", &meta(0, 0, 4), idr, 0).unwrap();
    assert!(!stream.master_ready());
    // Not even once a hinted rung has a complete segment.
    for part in 1..4 {
        stream
            .push_part("360p", &meta(0, part, 4), part_bytes(0, part), 0)
            .unwrap();
    }
    assert!(!stream.master_ready());
    for part in 1..4 {
        stream
            .push_part("source", &meta(0, part, 4), part_bytes(0, part), 0)
            .unwrap();
    }
    assert!(stream.master_ready());
    let master = stream.master_playlist().unwrap();
    let source = master
        .variants
        .iter()
        .find(|v| v.uri == "source/index.m3u8")
        .unwrap();
    // RFC 8216bis §4.4.6.2: the segment's rate, (1000 + 3 × 5) bytes over 1 s.
    assert_eq!(source.bandwidth, 8_120);
}

#[test]
fn the_thumbnail_is_kept_per_session() {
    let mut stream = stream_with_video_and_audio();
    assert_eq!(stream.thumbnail(), None);
    stream.set_thumbnail(Bytes::from_static(b"\xFF\xD8\xFFone"));
    stream.set_thumbnail(Bytes::from_static(b"\xFF\xD8\xFFtwo"));
    assert_eq!(
        stream.thumbnail(),
        Some(Bytes::from_static(b"\xFF\xD8\xFFtwo"))
    );
    stream.end();
    stream
        .declare(descriptor("video", RenditionKind::Video))
        .unwrap();
    assert_eq!(stream.thumbnail(), None, "a new session has no poster yet");
}

#[test]
fn iframe_playlists_are_for_video_renditions() {
    let mut stream = stream_with_video_and_audio();
    push_segments(&mut stream, "video", 2, 1);
    push_segments(&mut stream, "audio", 2, 0);
    assert_eq!(stream.iframe_playlist("audio"), None);
    assert_eq!(stream.iframe_playlist("nope"), None);
    assert_eq!(stream.iframe_playlist("video").unwrap().entries.len(), 2);
}
