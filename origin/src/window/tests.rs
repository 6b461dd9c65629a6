//! The live window's unit tests, and the builders other tests of the crate share.

use floodlight_media::playlist::{MediaPlaylist, PartEntry, ServerControl};
use floodlight_media::push::RenditionKind;

use super::*;

pub(crate) fn descriptor(name: &str, kind: RenditionKind) -> RenditionDescriptor {
    RenditionDescriptor {
        name: name.to_string(),
        kind,
        codecs: match kind {
            RenditionKind::Video => "avc1.64001f".to_string(),
            RenditionKind::Audio => "mp4a.40.2".to_string(),
        },
        width: (kind == RenditionKind::Video).then_some(1280),
        height: (kind == RenditionKind::Video).then_some(720),
        frame_rate: (kind == RenditionKind::Video).then_some(30.0),
        channels: (kind == RenditionKind::Audio).then_some(2),
        part_target_ms: 250,
        segment_target_ms: 1000,
        access: Default::default(),
        bandwidth_hint_bps: None,
        dvr_window_secs: None,
    }
}

pub(crate) const LIMITS: WindowLimits = WindowLimits {
    dvr_window_secs: 60.0,
    max_segments: 100,
    max_init_versions: 4,
};

/// The tests' 1 s segment target with a target duration factor of 1.
pub(crate) const TARGET_DURATION: u32 = 1;

pub(crate) fn empty_window(limits: WindowLimits) -> RenditionWindow {
    let mut window = RenditionWindow::new(
        descriptor("video", RenditionKind::Video),
        limits,
        TARGET_DURATION,
    );
    window.push_init(0, Bytes::from_static(b"init0")).unwrap();
    window
}

/// Pushes segments `msns` of 4 × 0.25 s parts.
fn push_segments(window: &mut RenditionWindow, msns: std::ops::Range<u64>) {
    for msn in msns {
        for part in 0..4 {
            window
                .push_part(&meta(msn, part, 4), part_bytes(msn, part), 0)
                .unwrap();
        }
    }
}

pub(crate) fn meta(msn: u64, part: u32, parts_per_segment: u32) -> PartMeta {
    PartMeta {
        msn,
        part,
        duration: 0.25,
        independent: part == 0,
        init_version: 0,
        program_date_time_ms: (part == 0).then_some(1_700_000_000_000 + msn as i64 * 1000),
        discontinuity: false,
        ends_segment: part + 1 == parts_per_segment,
        last_frame_arrival_ms: 0,
        sync_sample_bytes: None,
    }
}

pub(crate) fn part_bytes(msn: u64, part: u32) -> Bytes {
    Bytes::from(format!("[{msn}.{part}]"))
}

/// A window with init version 0 and `segments` segments of 4 × 0.25 s parts pushed,
/// then `extra_parts` parts of the next segment.
pub(crate) fn window_with(segments: u64, extra_parts: u32) -> RenditionWindow {
    let mut window = empty_window(LIMITS);
    push_segments(&mut window, 0..segments);
    for part in 0..extra_parts {
        window
            .push_part(&meta(segments, part, 4), part_bytes(segments, part), 0)
            .unwrap();
    }
    window
}

#[test]
fn a_segment_is_exactly_its_parts_concatenated() {
    let window = window_with(2, 1);
    assert_eq!(
        window.segment_bytes(1),
        Lookup::Found(Bytes::from_static(b"[1.0][1.1][1.2][1.3]"))
    );
    // The segment in progress is not a segment yet: only its parts are served.
    assert_eq!(window.segment_bytes(2), Lookup::NotFound);
    assert_eq!(
        window.part(PartPosition { msn: 1, part: 2 }),
        Lookup::Found(part_bytes(1, 2))
    );
}

#[test]
fn parts_arrive_in_order_and_retries_are_idempotent() {
    let mut window = window_with(1, 2);
    // A retry of the last part with the same bytes changes nothing.
    assert_eq!(
        window.push_part(&meta(1, 1, 4), part_bytes(1, 1), 0),
        Ok(Pushed::Duplicate)
    );
    assert_eq!(
        window.push_part(&meta(1, 1, 4), Bytes::from_static(b"other"), 0),
        Err(PushError::PartConflict { msn: 1, part: 1 })
    );
    assert!(matches!(
        window.push_part(&meta(1, 0, 4), part_bytes(1, 0), 0),
        Err(PushError::OutOfOrder { .. })
    ));
    assert!(matches!(
        window.push_part(&meta(1, 3, 4), part_bytes(1, 3), 0),
        Err(PushError::OutOfOrder { .. })
    ));
    // Skipping more segment numbers than the window holds (fewer become gaps).
    let far = 3 + LIMITS.max_segments as u64;
    assert!(matches!(
        window.push_part(&meta(far, 0, 4), part_bytes(far, 0), 0),
        Err(PushError::OutOfOrder { .. })
    ));
    let mut unknown_init = meta(1, 2, 4);
    unknown_init.init_version = 7;
    assert_eq!(
        window.push_part(&unknown_init, part_bytes(1, 2), 0),
        Err(PushError::UnknownInitVersion {
            msn: 1,
            part: 2,
            version: 7
        })
    );
}

#[test]
fn the_first_part_must_start_a_segment() {
    let mut window = empty_window(LIMITS);
    assert_eq!(
        window.push_part(&meta(5, 2, 4), part_bytes(5, 2), 0),
        Err(PushError::NotSegmentStart { msn: 5, part: 2 })
    );
    // Any MSN may start: a transcoder taking over continues the numbering.
    assert_eq!(
        window.push_part(&meta(5, 0, 4), part_bytes(5, 0), 0),
        Ok(Pushed::Stored)
    );
}

#[test]
fn a_new_segment_closes_an_unfinished_one() {
    // A publisher reconnect: segment 1 stops after two parts, segment 2 follows with a
    // discontinuity.
    let mut window = window_with(1, 2);
    let mut resumed = meta(2, 0, 4);
    resumed.discontinuity = true;
    window.push_part(&resumed, part_bytes(2, 0), 0).unwrap();
    assert_eq!(
        window.segment_bytes(1),
        Lookup::Found(Bytes::from_static(b"[1.0][1.1]"))
    );
    let playlist = window.media_playlist(Vec::new());
    assert_eq!(playlist.segments[1].uri.as_deref(), Some("1.m4s"));
    assert_eq!(playlist.segments[1].duration, 0.5);
    assert!(playlist.segments[2].discontinuity);
    // The hinted 1.2 will never exist.
    assert_eq!(
        window.part(PartPosition { msn: 1, part: 2 }),
        Lookup::NotFound
    );
}

#[test]
fn init_versions_are_immutable_and_move_forward() {
    let mut window = window_with(0, 0);
    assert_eq!(
        window.push_init(0, Bytes::from_static(b"init0")),
        Ok(Pushed::Duplicate)
    );
    assert_eq!(
        window.push_init(0, Bytes::from_static(b"x")),
        Err(PushError::InitConflict { version: 0 })
    );
    assert_eq!(
        window.push_init(2, Bytes::from_static(b"init2")),
        Ok(Pushed::Stored)
    );
    assert_eq!(
        window.push_init(1, Bytes::from_static(b"init1")),
        Err(PushError::InitVersionBackwards {
            version: 1,
            latest: 2
        })
    );
    assert_eq!(
        window.init(None),
        Lookup::Found(Bytes::from_static(b"init2"))
    );
    assert_eq!(
        window.init(Some(0)),
        Lookup::Found(Bytes::from_static(b"init0"))
    );
    assert_eq!(window.init(Some(3)), Lookup::NotFound);
}

#[test]
fn blocking_reload_waits_for_the_awaited_part() {
    // Segments 0..=2 complete, segment 3 has parts 0 and 1.
    let window = window_with(3, 2);
    // RFC 8216bis §6.2.5.2: answer once the playlist contains the part (or later).
    assert_eq!(window.awaited(3, Some(1)), Awaited::Ready);
    assert_eq!(window.awaited(1, Some(3)), Awaited::Ready);
    assert_eq!(window.awaited(3, Some(2)), Awaited::Wait);
    // Without _HLS_part: wait for the whole segment.
    assert_eq!(window.awaited(2, None), Awaited::Ready);
    assert_eq!(window.awaited(3, None), Awaited::Wait);
    assert_eq!(window.awaited(4, Some(0)), Awaited::Wait);
}

#[test]
fn blocking_reload_refuses_requests_too_far_ahead() {
    let window = window_with(3, 2);
    // RFC 8216bis §6.2.5.2: an _HLS_msn more than two past the last complete segment
    // (2) is refused.
    assert_eq!(window.awaited(4, None), Awaited::Wait);
    assert_eq!(window.awaited(5, None), Awaited::TooFar);
    // RFC 8216bis §6.2.5.2: the Advance Part Limit is 3 / 0.25 s = 12 parts.
    assert_eq!(window.awaited(3, Some(13)), Awaited::Wait);
    assert_eq!(window.awaited(3, Some(14)), Awaited::TooFar);
    assert_eq!(window.awaited(4, Some(11)), Awaited::Wait);
    assert_eq!(window.awaited(4, Some(12)), Awaited::TooFar);
    assert_eq!(advance_part_limit(200), 15);
    assert_eq!(advance_part_limit(1000), 3);
}

#[test]
fn a_part_index_past_a_complete_segment_means_the_next_segment() {
    // RFC 8216bis §6.2.5.2: a part index past the final part of its segment is treated
    // as part 0 of the following segment.
    let window = window_with(3, 0);
    assert_eq!(window.awaited(2, Some(4)), Awaited::Wait);
    let window = window_with(3, 1);
    assert_eq!(window.awaited(2, Some(4)), Awaited::Ready);
}

#[test]
fn an_ended_stream_answers_at_once() {
    let mut window = window_with(2, 1);
    window.end();
    // RFC 8216bis §6.2.5.2: _HLS_msn/_HLS_part are ignored once EXT-X-ENDLIST is there.
    assert_eq!(window.awaited(9, Some(0)), Awaited::Ready);
    assert_eq!(
        window.part(PartPosition { msn: 2, part: 1 }),
        Lookup::NotFound
    );
    let playlist = window.media_playlist(Vec::new());
    assert!(playlist.ended);
    assert_eq!(playlist.preload_hint, None);
    assert_eq!(
        playlist.segments.last().and_then(|s| s.uri.as_deref()),
        Some("2.m4s")
    );
    assert_eq!(
        window.push_part(&meta(2, 1, 4), part_bytes(2, 1), 0),
        Err(PushError::Ended)
    );
}

#[test]
fn only_the_next_parts_are_waited_for() {
    let window = window_with(3, 2);
    // The preload hint (3.2) and a little past it (another replica may be ahead).
    assert_eq!(window.part(PartPosition { msn: 3, part: 2 }), Lookup::Wait);
    assert_eq!(window.part(PartPosition { msn: 4, part: 0 }), Lookup::Wait);
    // RFC 8216bis §6.2.6: beyond that, 404.
    assert_eq!(
        window.part(PartPosition { msn: 3, part: 40 }),
        Lookup::NotFound
    );
    assert_eq!(
        window.part(PartPosition { msn: 9, part: 0 }),
        Lookup::NotFound
    );
    // A complete segment has no more parts.
    assert_eq!(
        window.part(PartPosition { msn: 2, part: 4 }),
        Lookup::NotFound
    );
}

fn listed_parts(playlist: &MediaPlaylist) -> Vec<String> {
    playlist
        .segments
        .iter()
        .flat_map(|s| s.parts.iter().map(|p| p.uri.clone()))
        .collect()
}

#[test]
fn a_segments_parts_leave_the_playlist_together_three_target_durations_after_it_ended() {
    // Target duration 1 s; 9 complete segments and one part of the tenth: the edge is
    // at 9.25 s.
    let window = window_with(9, 1);
    let playlist = window.media_playlist(Vec::new());
    // RFC 8216bis §6.2.2: a parent segment's EXT-X-PART tags go once it ended more
    // than 3 target durations before the end, all together (a part is addressed by its
    // index in its parent): segments ending at or after 6.25 s keep theirs.
    assert_eq!(
        listed_parts(&playlist).first().map(String::as_str),
        Some("6.0.m4s")
    );
    assert_eq!(listed_parts(&playlist).len(), 3 * 4 + 1);
    for segment in &playlist.segments {
        assert!(
            segment.parts.is_empty() || segment.parts[0].uri == format!("{}.0.m4s", segment.msn)
        );
    }
    assert_eq!(
        playlist.segments.len(),
        10,
        "segments stay for the DVR window"
    );
    // RFC 8216bis §6.2.2: a removed part stays fetchable 3 target durations more.
    // Segment 3 (ended at 4 s) left the playlist at edge 7 s, so until 10 s; segment 2
    // (ended at 3 s) until 9 s.
    assert_eq!(
        window.part(PartPosition { msn: 3, part: 0 }),
        Lookup::Found(part_bytes(3, 0))
    );
    assert_eq!(window.part(PartPosition { msn: 2, part: 3 }), Lookup::Gone);
    assert_eq!(
        window.segment_bytes(0),
        Lookup::Found(Bytes::from_static(b"[0.0][0.1][0.2][0.3]"))
    );
}

#[test]
fn the_segment_in_progress_keeps_its_parts_however_long_it_runs() {
    // A publisher's 8 s GOP against a 1 s target duration: segment 2 is still in
    // progress after 32 parts.
    let mut window = window_with(2, 0);
    for part in 0..32 {
        let mut meta = meta(2, part, 100);
        meta.ends_segment = false;
        window.push_part(&meta, part_bytes(2, part), 0).unwrap();
    }
    // RFC 8216bis §6.2.2: the parts of the live edge stay listed, even those that
    // started 8 s (more than 3 target durations) ago, and fetchable.
    let playlist = window.media_playlist(Vec::new());
    let in_progress = playlist.segments.last().unwrap();
    assert_eq!(in_progress.uri, None);
    assert_eq!(in_progress.parts.len(), 32);
    assert_eq!(
        window.part(PartPosition { msn: 2, part: 0 }),
        Lookup::Found(part_bytes(2, 0))
    );
    // Once it completes, its old parts leave the playlist, and stay fetchable for 3
    // target durations from then (RFC 8216bis §6.2.2).
    let mut last = meta(2, 32, 100);
    last.ends_segment = true;
    window.push_part(&last, part_bytes(2, 32), 0).unwrap();
    let playlist = window.media_playlist(Vec::new());
    assert_eq!(
        listed_parts(&playlist).first().map(String::as_str),
        Some("2.0.m4s"),
        "a segment that just ended keeps all its parts"
    );
    // Ended at 10.25 s: listed until the edge passes 13.25 s, fetchable until 16.25 s.
    push_segments(&mut window, 3..6);
    let playlist = window.media_playlist(Vec::new());
    assert_eq!(
        listed_parts(&playlist).first().map(String::as_str),
        Some("2.0.m4s")
    );
    push_segments(&mut window, 6..9);
    let playlist = window.media_playlist(Vec::new());
    // Edge 16.25 s: segment 5 ended exactly 3 target durations before it.
    assert_eq!(
        listed_parts(&playlist).first().map(String::as_str),
        Some("5.0.m4s")
    );
    assert!(matches!(
        window.part(PartPosition { msn: 2, part: 0 }),
        Lookup::Found(_)
    ));
    push_segments(&mut window, 9..10);
    assert_eq!(window.part(PartPosition { msn: 2, part: 0 }), Lookup::Gone);
}

#[test]
fn the_window_keeps_the_dvr_duration_but_never_less_than_three_target_durations() {
    let limits = WindowLimits {
        dvr_window_secs: 5.0,
        ..LIMITS
    };
    let mut window = empty_window(limits);
    push_segments(&mut window, 0..20);
    let playlist = window.media_playlist(Vec::new());
    // Segment 14 ends 5 s behind the edge (20 s): it left the playlist; 15..=19 remain.
    assert_eq!(playlist.media_sequence, 15);
    assert_eq!(playlist.segments.len(), 5);

    let limits = WindowLimits {
        dvr_window_secs: 1.0,
        max_segments: 3,
        ..LIMITS
    };
    let mut window = empty_window(limits);
    push_segments(&mut window, 0..20);
    // RFC 8216bis §6.2.2: the playlist stays at least 3 target durations (3 s) long.
    let playlist = window.media_playlist(Vec::new());
    assert_eq!(
        playlist.segments.iter().map(|s| s.duration).sum::<f64>(),
        3.0
    );
}

#[test]
fn a_segment_that_left_the_playlist_stays_fetchable_for_its_availability_duration() {
    let limits = WindowLimits {
        dvr_window_secs: 5.0,
        ..LIMITS
    };
    let mut window = empty_window(limits);
    push_segments(&mut window, 0..20);
    // RFC 8216bis §6.2.2: a segment removed from a live playlist stays available until
    // it first appeared (when it completed) plus its duration plus the longest playlist
    // it appeared in (5.75 s, just before segment 19 completed). Edge 20 s:
    // segment 14 (complete at 15 s) until 21.75 s, 12 (at 13 s) until 19.75 s.
    assert!(matches!(window.segment_bytes(14), Lookup::Found(_)));
    assert!(matches!(window.segment_bytes(13), Lookup::Found(_)));
    assert_eq!(window.segment_bytes(12), Lookup::Gone);
    // Its parts follow their own rule: fetchable until 3 target durations after they
    // left the playlist, 6 after the segment ended (13: ended at 14 s, so until 20 s).
    assert!(matches!(
        window.part(PartPosition { msn: 13, part: 0 }),
        Lookup::Found(_)
    ));
    assert_eq!(window.part(PartPosition { msn: 12, part: 0 }), Lookup::Gone);
    // The init version an unlisted segment uses is kept while the segment is.
    assert!(matches!(window.init(Some(0)), Lookup::Found(_)));
    // The playlist does not list them.
    let playlist = window.media_playlist(Vec::new());
    assert!(playlist.segments.iter().all(|s| s.msn >= 15));

    // The unlisted tail is bounded by count too. With one kept, segment 15 (available
    // until 20.75 s) goes early.
    let limits = WindowLimits {
        dvr_window_secs: 1.0,
        max_segments: 1,
        ..LIMITS
    };
    let mut window = empty_window(limits);
    push_segments(&mut window, 0..20);
    assert_eq!(window.media_playlist(Vec::new()).media_sequence, 17);
    assert!(matches!(window.segment_bytes(16), Lookup::Found(_)));
    assert_eq!(window.segment_bytes(15), Lookup::Gone);
}

#[test]
fn removing_a_discontinuity_advances_the_discontinuity_sequence() {
    let limits = WindowLimits {
        dvr_window_secs: 3.0,
        ..LIMITS
    };
    let mut window = empty_window(limits);
    for msn in 0..10 {
        for part in 0..4 {
            let mut meta = meta(msn, part, 4);
            meta.discontinuity = msn == 2 && part == 0;
            window.push_part(&meta, part_bytes(msn, part), 0).unwrap();
        }
    }
    // RFC 8216bis §6.2.2: EXT-X-DISCONTINUITY-SEQUENCE counts the removed ones.
    assert_eq!(window.media_playlist(Vec::new()).discontinuity_sequence, 1);
}

#[test]
fn part_durations_are_checked() {
    let mut window = window_with(0, 0);
    // The segment target is 1 s: a part may last at most 2 s.
    for duration in [0.0, -0.25, f64::NAN, f64::INFINITY, 2.01] {
        let mut meta = meta(0, 0, 4);
        meta.duration = duration;
        assert!(
            matches!(
                window.push_part(&meta, part_bytes(0, 0), 0),
                Err(PushError::InvalidDuration { .. })
            ),
            "{duration}"
        );
    }
    let mut meta = meta(0, 0, 4);
    meta.duration = 2.0;
    assert_eq!(
        window.push_part(&meta, part_bytes(0, 0), 0),
        Ok(Pushed::Stored)
    );
}

#[test]
fn init_versions_are_capped_and_unused_ones_pruned() {
    // LIMITS keeps 4 init versions.
    let mut window = window_with(0, 0);
    for version in 1..=3 {
        window
            .push_init(version, Bytes::from(format!("init{version}")))
            .unwrap();
    }
    // Pushed ahead of any part: all kept. A fifth makes the oldest unused one go.
    window.push_init(4, Bytes::from_static(b"init4")).unwrap();
    assert_eq!(window.init(Some(0)), Lookup::Gone);
    assert!(matches!(window.init(Some(1)), Lookup::Found(_)));
    // Parts use version 2: the unused older version 1 will never be used again.
    let mut first = meta(0, 0, 4);
    first.init_version = 2;
    window.push_part(&first, part_bytes(0, 0), 0).unwrap();
    window.push_init(5, Bytes::from_static(b"init5")).unwrap();
    assert_eq!(window.init(Some(1)), Lookup::Gone);
    assert!(matches!(window.init(Some(2)), Lookup::Found(_)));
    assert!(matches!(window.init(Some(5)), Lookup::Found(_)));
}

#[test]
fn init_versions_in_use_within_three_target_durations_refuse_a_new_one() {
    let limits = WindowLimits {
        max_init_versions: 2,
        ..LIMITS
    };
    let mut window = empty_window(limits);
    window.push_init(1, Bytes::from_static(b"init1")).unwrap();
    // Segment 0 uses version 0, segment 1 version 1: both in the 3 s playlist floor.
    window
        .push_part(&meta(0, 0, 1), part_bytes(0, 0), 0)
        .unwrap();
    let mut second = meta(1, 0, 1);
    second.init_version = 1;
    window.push_part(&second, part_bytes(1, 0), 0).unwrap();
    assert_eq!(
        window.push_init(2, Bytes::from_static(b"init2")),
        Err(PushError::TooManyInitVersions { version: 2, max: 2 })
    );
    assert_eq!(window.init(Some(2)), Lookup::NotFound);
    // With 4 s more of version 1, segment 0 can go: the new version makes room.
    for msn in 2..6 {
        let mut meta = meta(msn, 0, 1);
        meta.init_version = 1;
        meta.duration = 1.0;
        window.push_part(&meta, part_bytes(msn, 0), 0).unwrap();
    }
    assert_eq!(
        window.push_init(2, Bytes::from_static(b"init2")),
        Ok(Pushed::Stored)
    );
    assert_eq!(window.init(Some(0)), Lookup::Gone);
    assert_eq!(window.segment_bytes(0), Lookup::Gone);
    assert_eq!(window.media_playlist(Vec::new()).media_sequence, 1);
}

#[test]
fn the_playlist_model_follows_the_window() {
    let window = window_with(2, 2);
    let playlist = window.media_playlist(Vec::new());
    assert_eq!(playlist.target_duration, 1);
    assert_eq!(playlist.part_target, 0.25);
    // RFC 8216bis §4.4.3.8: PART-HOLD-BACK ≥ 3 × PART-TARGET, CAN-SKIP-UNTIL ≥ 6 × TD.
    assert_eq!(
        playlist.server_control,
        ServerControl {
            can_block_reload: true,
            part_hold_back: 0.75,
            can_skip_until: Some(6.0)
        }
    );
    assert_eq!(playlist.media_sequence, 0);
    let in_progress = &playlist.segments[2];
    assert_eq!(in_progress.uri, None);
    assert_eq!(in_progress.duration, 0.5);
    assert_eq!(in_progress.map_uri, "init0.mp4");
    assert_eq!(in_progress.program_date_time_ms, Some(1_700_000_002_000));
    assert_eq!(
        in_progress.parts,
        vec![
            PartEntry {
                duration: 0.25,
                uri: "2.0.m4s".to_string(),
                independent: true
            },
            PartEntry {
                duration: 0.25,
                uri: "2.1.m4s".to_string(),
                independent: false
            },
        ]
    );
    // RFC 8216bis §4.4.5.3: the preload hint names the next part.
    assert_eq!(playlist.preload_hint.as_deref(), Some("2.2.m4s"));
    assert_eq!(
        window_with(2, 0)
            .media_playlist(Vec::new())
            .preload_hint
            .as_deref(),
        Some("2.0.m4s")
    );
}

#[test]
fn the_target_duration_is_fixed_and_longer_segments_are_counted() {
    // A 2 s segment target with the default factor 1.5 declares TARGETDURATION 3.
    assert_eq!(target_duration_for(2000, 1.5), 3);
    assert_eq!(target_duration_for(1000, 1.0), 1);
    assert_eq!(target_duration_for(1200, 2.5), 3);
    assert_eq!(target_duration_for(2001, 1.0), 3);
    assert_eq!(target_duration_for(1, 1.0), 1);
    assert_eq!(target_duration_for(u32::MAX, 3.0), 12_884_902);

    let mut window = window_with(1, 0);
    // A 1.6 s segment (a long GOP): its EXTINF rounds to 2 > 1 (RFC 8216bis §4.4.3.1).
    for part in 0..6 {
        let mut meta = meta(1, part, 6);
        meta.duration = 0.26666;
        window.push_part(&meta, part_bytes(1, part), 0).unwrap();
    }
    // RFC 8216bis §6.2.1: the target duration MUST NOT change; the segment is counted.
    assert_eq!(window.target_duration(), 1);
    assert_eq!(window.media_playlist(Vec::new()).target_duration, 1);
    assert_eq!(window.segments_over_target(), 1);
    assert_eq!(window.first_over_target().map(|o| o.msn), Some(1));
    // 1.4 s rounds to 1: within the target.
    for part in 0..4 {
        let mut meta = meta(2, part, 4);
        meta.duration = 0.35;
        window.push_part(&meta, part_bytes(2, part), 0).unwrap();
    }
    assert_eq!(window.segments_over_target(), 1);
}

#[test]
fn bandwidth_is_measured_over_complete_segments() {
    // Every part is 5 bytes ("[0.1]"): 20 bytes per 1 s segment = 160 bit/s.
    let window = window_with(0, 2);
    // Before a complete segment, estimated from the parts: 10 bytes in 0.5 s.
    assert_eq!(
        window.bandwidth(),
        Some(Bandwidth {
            peak: 160,
            average: 160,
            current: 160
        })
    );
    let window = window_with(2, 0);
    assert_eq!(
        window.bandwidth(),
        Some(Bandwidth {
            peak: 160,
            average: 160,
            current: 160
        })
    );
    assert_eq!(window_with(0, 0).bandwidth(), None);
}

#[test]
fn a_takeover_closes_the_abandoned_segment_and_continues_after_it() {
    // Segments 0 and 1 complete, then two parts of segment 2: the transcoder dies.
    let mut window = window_with(2, 2);
    // The new one asks where to continue (GET .../last), pushes init version
    // previous + 1, then part 0 of the segment after the abandoned one.
    let last = window.last().cloned().unwrap();
    assert_eq!((last.msn, last.part, last.ends_segment), (2, 1, false));
    assert_eq!(last.init_version, 0);
    // Blocked before the takeover: a reload for the abandoned segment's next part.
    assert_eq!(window.awaited(2, Some(2)), Awaited::Wait);
    assert_eq!(window.part(PartPosition { msn: 2, part: 2 }), Lookup::Wait);
    window
        .push_init(last.init_version + 1, Bytes::from_static(b"init1"))
        .unwrap();
    let mut first = meta(last.msn + 1, 0, 4);
    first.discontinuity = true;
    first.init_version = 1;
    assert_eq!(
        window.push_part(&first, part_bytes(3, 0), 0),
        Ok(Pushed::Stored)
    );
    // The abandoned segment closed as it was: shorter, listed with its URI and its
    // two parts, fetchable whole and part by part.
    let playlist = window.media_playlist(Vec::new());
    let abandoned = &playlist.segments[2];
    assert_eq!(abandoned.uri.as_deref(), Some("2.m4s"));
    assert_eq!(abandoned.duration, 0.5);
    assert_eq!(abandoned.parts.len(), 2);
    assert_eq!(
        window.segment_bytes(2),
        Lookup::Found(Bytes::from_static(b"[2.0][2.1]"))
    );
    // RFC 8216bis §4.4.4.3: the new segment follows a discontinuity, with its new
    // init section (§4.4.4.5).
    let next = &playlist.segments[3];
    assert!(next.discontinuity);
    assert_eq!(next.map_uri, "init1.mp4");
    assert!(!playlist.segments[..3].iter().any(|s| s.discontinuity));
    // The blocked reload is answered (§6.2.5.2: a part index past a complete segment's
    // last part means the next segment's part 0), the part request is not found.
    assert_eq!(window.awaited(2, Some(2)), Awaited::Ready);
    assert_eq!(
        window.part(PartPosition { msn: 2, part: 2 }),
        Lookup::NotFound
    );
    // No MSN goes back.
    assert!(matches!(
        window.push_part(&meta(2, 2, 4), part_bytes(2, 2), 0),
        Err(PushError::OutOfOrder { .. })
    ));
    assert_eq!(window.last().map(|l| l.init_version), Some(1));
}

#[test]
fn a_segment_cut_short_does_not_set_the_peak() {
    // Whole segments of 20 bytes per second (160 bit/s); then a cut-short segment that
    // is mostly its IDR: 80 bytes in 0.25 s.
    let mut window = window_with(2, 0);
    let mut idr = meta(2, 0, 4);
    idr.ends_segment = false;
    window
        .push_part(&idr, Bytes::from(vec![0u8; 80]), 0)
        .unwrap();
    let mut next = meta(3, 0, 4);
    next.discontinuity = true;
    window.push_part(&next, part_bytes(3, 0), 0).unwrap();
    let bandwidth = window.bandwidth().unwrap();
    // RFC 8216bis §4.4.6.2: the peak segment bit rate, of segments as packaged.
    assert_eq!(bandwidth.peak, 160);
    // The average counts every byte served.
    assert_eq!(bandwidth.average, ((40 + 80) * 8 * 4u64).div_ceil(9));
}

#[test]
fn before_a_complete_segment_bandwidth_comes_from_the_hint() {
    let mut descriptor = descriptor("720p", RenditionKind::Video);
    descriptor.bandwidth_hint_bps = Some(3_000_000);
    let mut window = RenditionWindow::new(descriptor, LIMITS, TARGET_DURATION);
    window.push_init(0, Bytes::from_static(b"init0")).unwrap();
    assert_eq!(window.bandwidth(), None);
    // One part that is mostly an IDR frame would claim a huge rate.
    let mut idr = meta(0, 0, 4);
    idr.duration = 0.1;
    window
        .push_part(&idr, Bytes::from(vec![0u8; 200_000]), 0)
        .unwrap();
    assert_eq!(
        window.bandwidth(),
        Some(Bandwidth {
            peak: 3_300_000,
            average: 3_000_000,
            current: 3_000_000
        })
    );
    // Measured once a segment is complete: 4 parts of 5 bytes in 1 s and the IDR part.
    for part in 1..4 {
        window
            .push_part(&meta(0, part, 4), part_bytes(0, part), 0)
            .unwrap();
    }
    let measured = window.bandwidth().unwrap();
    assert_eq!(measured.peak, ((200_000 + 15) * 8 * 20u64).div_ceil(17));
}

#[test]
fn sync_sample_bytes_are_checked_and_address_the_iframe() {
    let mut window = empty_window(LIMITS);
    for bad in [0, 6] {
        let mut first = meta(0, 0, 4);
        first.sync_sample_bytes = Some(bad);
        assert!(matches!(
            window.push_part(&first, part_bytes(0, 0), 0),
            Err(PushError::InvalidSyncSampleBytes { .. })
        ));
    }
    for msn in 0..3 {
        for part in 0..4 {
            let mut meta = meta(msn, part, 4);
            // Segment 1's pusher did not measure its I-frame: the first part whole.
            meta.sync_sample_bytes = (part == 0 && msn != 1).then_some(3);
            window.push_part(&meta, part_bytes(msn, part), 0).unwrap();
        }
    }
    window
        .push_part(&meta(3, 0, 4), part_bytes(3, 0), 0)
        .unwrap();
    let playlist = window.iframe_playlist();
    // RFC 8216bis §4.4.3.6: one I-frame per complete segment, EXTINF its interval (the
    // segment), the byte range from the segment's start; the segment in progress has
    // none yet.
    assert_eq!(playlist.media_sequence, 0);
    assert_eq!(playlist.target_duration, TARGET_DURATION);
    let entries: Vec<_> = playlist
        .entries
        .iter()
        .map(|e| (e.uri.clone(), e.byte_range, e.duration))
        .collect();
    assert_eq!(
        entries,
        vec![
            ("0.m4s".to_string(), Some((3, 0)), 1.0),
            ("1.m4s".to_string(), Some((5, 0)), 1.0),
            ("2.m4s".to_string(), Some((3, 0)), 1.0),
        ]
    );
    assert_eq!(playlist.entries[0].map_uri, "init0.mp4");
    assert_eq!(
        playlist.entries[2].program_date_time_ms,
        Some(1_700_000_002_000)
    );
    // BANDWIDTH of the I-frames (§4.4.6.3): the largest, 5 bytes per 1 s segment.
    assert_eq!(window.iframe_bandwidth().map(|b| b.peak), Some(40));
    assert!(window.has_complete_segment());
}

#[test]
fn the_peak_is_a_segments_rate_not_a_parts() {
    // Segment 0: an 80-byte IDR part and three 5-byte parts (95 bytes in 1 s);
    // segment 1: four 5-byte parts. The IDR part alone runs at 2560 bit/s.
    let mut window = empty_window(LIMITS);
    window
        .push_part(&meta(0, 0, 4), Bytes::from(vec![0u8; 80]), 0)
        .unwrap();
    for part in 1..4 {
        window
            .push_part(&meta(0, part, 4), part_bytes(0, part), 0)
            .unwrap();
    }
    push_segments(&mut window, 1..2);
    // RFC 8216bis §4.4.6.2: BANDWIDTH is the peak segment bit rate.
    assert_eq!(
        window.bandwidth(),
        Some(Bandwidth {
            peak: 760,
            average: 460,
            current: 160
        })
    );
}

/// (msn, EXTINF, gap, EXT-X-PROGRAM-DATE-TIME) of every listed segment.
fn timeline(window: &RenditionWindow) -> Vec<(u64, f64, bool, Option<i64>)> {
    window
        .media_playlist(Vec::new())
        .segments
        .iter()
        .map(|s| (s.msn, s.duration, s.gap, s.program_date_time_ms))
        .collect()
}

/// Segments 0 and 1 (1 s each, from `T0`), then part 4.0 at `pdt_ms`.
fn jump_to_4(pdt_ms: Option<i64>) -> RenditionWindow {
    let mut window = window_with(2, 0);
    let mut jump = meta(4, 0, 4);
    jump.discontinuity = true;
    jump.program_date_time_ms = pdt_ms;
    assert_eq!(window.skipped_segments(&jump), Some(2..4));
    window.push_part(&jump, part_bytes(4, 0), 0).unwrap();
    window
}

const T0: i64 = 1_700_000_000_000;

#[test]
fn skipped_segment_numbers_become_gaps() {
    // RFC 8216bis §4.4.4.7: the skipped numbers 2 and 3 share the 1.5 s from the end
    // of segment 1 (T0 + 2 s) to segment 4's date, and their dates follow on.
    let window = jump_to_4(Some(T0 + 3_500));
    assert_eq!(
        timeline(&window),
        vec![
            (0, 1.0, false, Some(T0)),
            (1, 1.0, false, Some(T0 + 1_000)),
            (2, 0.75, true, Some(T0 + 2_000)),
            (3, 0.75, true, Some(T0 + 2_750)),
            (4, 0.25, false, Some(T0 + 3_500)),
        ]
    );
    assert!(window.media_playlist(Vec::new()).segments[4].discontinuity);
    assert_eq!(window.segment_bytes(2), Lookup::NotFound);
    assert_eq!(
        window.part(PartPosition { msn: 3, part: 0 }),
        Lookup::NotFound
    );
    // Gaps are not measured: the peak stays that of the segments with media.
    assert_eq!(window.bandwidth().map(|b| b.peak), Some(160));
    let iframes = window.iframe_playlist();
    assert_eq!(iframes.entries[2].byte_range, None);
    assert_eq!(iframes.entries.len(), 4);
}

#[test]
fn gap_timing_comes_from_the_renditions_own_segments() {
    // The previous segment already reached the next one's date (a rung without a
    // keyframe at another rung's cut): the gaps take no time.
    let covered: Vec<f64> = timeline(&jump_to_4(Some(T0 + 1_500)))
        .iter()
        .map(|s| s.1)
        .collect();
    assert_eq!(covered, vec![1.0, 1.0, 0.0, 0.0, 0.25]);
    // RFC 8216bis §4.4.3.1: each gap at most the target duration; the next segment's
    // date then jumps ahead.
    let long = timeline(&jump_to_4(Some(T0 + 10_000)));
    assert_eq!(long[2], (2, 1.0, true, Some(T0 + 2_000)));
    assert_eq!(long[3], (3, 1.0, true, Some(T0 + 3_000)));
    assert_eq!(long[4].3, Some(T0 + 10_000));
    // Without a date to measure by, each lasts the segment target.
    let undated = timeline(&jump_to_4(None));
    assert_eq!(undated[2], (2, 1.0, true, Some(T0 + 2_000)));
    assert_eq!(undated[3], (3, 1.0, true, Some(T0 + 3_000)));
    // Further than the window holds: out of order.
    let mut window = window_with(2, 0);
    let far = meta(2 + LIMITS.max_segments as u64 + 1, 0, 4);
    assert!(matches!(
        window.push_part(&far, part_bytes(far.msn, 0), 0),
        Err(PushError::OutOfOrder { .. })
    ));
}

#[test]
fn a_segment_without_a_sync_sample_is_an_iframe_gap_not_a_missing_entry() {
    let mut window = window_with(1, 0);
    for part in 0..4 {
        let mut meta = meta(1, part, 4);
        // A pusher without sync_sample_bytes, and no sync sample at the segment start.
        meta.independent = false;
        window.push_part(&meta, part_bytes(1, part), 0).unwrap();
    }
    push_segments(&mut window, 2..3);
    let iframes = window.iframe_playlist();
    let ranges: Vec<(String, Option<(u64, u64)>)> = iframes
        .entries
        .iter()
        .map(|e| (e.uri.clone(), e.byte_range))
        .collect();
    // RFC 8216bis §4.4.4.7: still numbered as the media playlist, segment 1 a gap.
    assert_eq!(
        ranges,
        vec![
            ("0.m4s".to_string(), Some((5, 0))),
            ("1.m4s".to_string(), None),
            ("2.m4s".to_string(), Some((5, 0))),
        ]
    );
}

#[test]
fn completed_segments_are_handed_out_once_cut_short_ones_too_never_gaps() {
    let mut window = window_with(2, 1);
    let completed = window.take_completed();
    assert_eq!(completed.iter().map(|s| s.msn).collect::<Vec<_>>(), [0, 1]);
    let first = &completed[0];
    assert_eq!(first.bytes, "[0.0][0.1][0.2][0.3]");
    assert_eq!(first.duration, 1.0);
    assert_eq!(first.program_date_time_ms, Some(1_700_000_000_000));
    assert_eq!((first.init_version, first.discontinuity), (0, false));
    assert!(window.take_completed().is_empty(), "handed out once");
    // Segment 2 is cut short by segment 5's first part; 3 and 4 are gaps: no media.
    window
        .push_part(&meta(5, 0, 4), part_bytes(5, 0), 0)
        .unwrap();
    let completed = window.take_completed();
    assert_eq!(completed.iter().map(|s| s.msn).collect::<Vec<_>>(), [2]);
    assert_eq!(completed[0].bytes, "[2.0]");
    window.end();
    let completed = window.take_completed();
    assert_eq!(completed.iter().map(|s| s.msn).collect::<Vec<_>>(), [5]);
}
