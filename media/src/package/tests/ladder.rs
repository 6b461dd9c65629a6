//! StreamPackager over ABR ladders (`LadderEvent`): every rendition on one timeline, one
//! MSN numbering, one set of discontinuities and one PDT anchor, whatever order the rungs'
//! frames arrive in.

use super::*;

/// 29.97 fps, keyframes every 2.002 s at the same presentation times on every rung.
const SHAPE: VideoShape = SHAPES[0];
const VIDEO: [&str; 3] = ["720p", "480p", "360p"];
const GOP_90K: u64 = 60 * 3003;

fn rung(name: &str, width: u32, height: u32, bps: u64) -> RenditionTrack {
    let TrackParams { codec, .. } = SHAPE.params();
    let CodecParams::H264(avc) = codec else {
        unreachable!("SHAPE is H.264")
    };
    RenditionTrack {
        name: name.to_owned(),
        params: TrackParams::video(AvcConfig {
            width,
            height,
            ..avc
        }),
        bandwidth_hint_bps: Some(bps),
    }
}

fn audio_rendition() -> RenditionTrack {
    RenditionTrack {
        name: "audio".to_owned(),
        params: TrackParams::audio(aac_48k()),
        bandwidth_hint_bps: Some(128_000),
    }
}

/// 720p, 480p, 360p and AAC, in ladder order.
fn ladder() -> Vec<RenditionTrack> {
    vec![
        rung("720p", 1280, 720, 3_000_000),
        rung("480p", 854, 480, 1_400_000),
        rung("360p", 640, 360, 800_000),
        audio_rendition(),
    ]
}

/// Frames of the named rendition over `[start, start + duration)` of one stream that
/// began at 0: every video rung has the same timestamps and keyframes, with its own
/// sample sizes.
fn frames_of(name: &str, start: i64, duration: i64) -> Vec<Frame> {
    let frames = if name == "audio" {
        audio_frames(48_000, start + duration, 0)
    } else {
        let size = 500 - 100 * VIDEO.iter().position(|&n| n == name).unwrap_or(3);
        video_frames(SHAPE, start + duration, 0)
            .into_iter()
            .map(|f| Frame {
                data: Bytes::from(vec![0x65; size + f.data.len()]),
                ..f
            })
            .collect()
    };
    frames
        .into_iter()
        .filter(|f| (start..start + duration).contains(&f.dts))
        .collect()
}

/// One frame as the transcoder hands it over: `at` is when it reaches the packager (90 kHz
/// on the stream's clock), so a rung's lag delays all of its frames.
struct Arrival {
    at: i64,
    name: String,
    frame: Frame,
}

/// The frames of `names` over `[start, start + duration)`, each rung delayed by its lag.
fn arrivals(names: &[&str], start: i64, duration: i64, lag: impl Fn(&str) -> i64) -> Vec<Arrival> {
    let mut all: Vec<Arrival> = names
        .iter()
        .flat_map(|&name| {
            frames_of(name, start, duration)
                .into_iter()
                .map(|frame| Arrival {
                    at: frame.dts + lag(name),
                    name: name.to_owned(),
                    frame,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort_by_key(|a| a.at);
    all
}

/// Feeds frames by rendition name: the index is that of the latest `Renditions`.
fn feed_ladder(packager: &mut StreamPackager, listed: &[RenditionTrack], arrivals: Vec<Arrival>) {
    for Arrival { at, name, frame } in arrivals {
        let rendition = listed.iter().position(|r| r.name == name).unwrap();
        packager
            .handle_ladder(LadderEvent::Frame { rendition, frame }, EPOCH_MS + at / 90)
            .unwrap();
    }
}

fn announce(packager: &mut StreamPackager, listed: &[RenditionTrack], at: i64) {
    packager
        .handle_ladder(LadderEvent::Renditions(listed.to_vec()), EPOCH_MS + at / 90)
        .unwrap();
}

/// Where each segment of a rendition starts: (MSN, tfdt, PROGRAM-DATE-TIME, discontinuity).
fn segment_starts(parts: &[(PartMeta, Bytes)]) -> Vec<(u64, u64, i64, bool)> {
    parts
        .iter()
        .filter(|(m, _)| m.part == 0)
        .map(|(m, data)| {
            (
                m.msn,
                parse_part(data).base_media_decode_time,
                m.program_date_time_ms.unwrap(),
                m.discontinuity,
            )
        })
        .collect()
}

/// `PartMeta::sync_sample_bytes` is the byte length of moof, mdat header and the first
/// sample of every independent video part, and `None` elsewhere.
fn check_sync_sample_bytes(parts: &[(PartMeta, Bytes)], video: bool) {
    for (meta, data) in parts {
        let expected = (video && meta.independent).then(|| {
            let mut buf = &data[..];
            Moof::decode(&mut buf).unwrap();
            let moof = data.len() - buf.len();
            // ISO/IEC 14496-12 §4.2: size 1 means a 64-bit largesize follows the type.
            let header = if buf[..4] == [0, 0, 0, 1] { 16 } else { 8 };
            let first = parse_part(data).sizes[0] as usize;
            u32::try_from(moof + header + first).unwrap()
        });
        assert_eq!(meta.sync_sample_bytes, expected, "{meta:?}");
        if let Some(bytes) = expected {
            // The range holds exactly the sync sample: its bytes end the range.
            let sample = &data[bytes as usize - parse_part(data).sizes[0] as usize..bytes as usize];
            assert!(sample.iter().all(|&b| b == 0x65));
        }
    }
}

fn checked(outputs: &[PackagerOutput], name: &str) -> Vec<(PartMeta, Bytes)> {
    let parts = parts(outputs, name);
    let timescale = if name == "audio" { 48_000 } else { 90_000 };
    check_rendition(&parts, timescale, part_target(outputs, name));
    check_sync_sample_bytes(&parts, name != "audio");
    parts
}

#[test]
fn ladder_renditions_share_msns_segment_times_and_dates() {
    // The rungs reach the packager in step; with the followers 5 frames ahead of the
    // leader; with the leader 20 frames (0.67 s) behind; with the leader 1.5 s behind,
    // past the follower hold (the followers then cut where the leader would).
    for leader_lag in [0, 5 * 3003, 20 * 3003, 135_000] {
        let mut packager = StreamPackager::new(PackagerConfig::default());
        let listed = ladder();
        announce(&mut packager, &listed, 0);
        let names = ["720p", "480p", "360p", "audio"];
        let lag = |name: &str| if name == "720p" { leader_lag } else { 0 };
        feed_ladder(&mut packager, &listed, arrivals(&names, 0, 9 * 90_000, lag));
        packager
            .handle_ladder(LadderEvent::Ended, EPOCH_MS + 10_000)
            .unwrap();
        let outputs = drain(&mut packager);
        let leader = segment_starts(&checked(&outputs, "720p"));
        // Every keyframe starts a segment: MSN 0 to 4 at 0, 2.002, ... 8.008 s.
        let expected: Vec<(u64, u64)> = (0..5).map(|n| (n, n * GOP_90K)).collect();
        let at: Vec<(u64, u64)> = leader.iter().map(|s| (s.0, s.1)).collect();
        assert_eq!(at, expected, "leader lag {leader_lag}");
        for name in ["480p", "360p"] {
            // Same MSNs, same start times, same dates (one PDT anchor).
            assert_eq!(
                segment_starts(&checked(&outputs, name)),
                leader,
                "{name}, leader lag {leader_lag}"
            );
        }
        // Audio follows the leader's boundaries: the same MSNs, each starting with the
        // first AAC frame presented at or after the keyframe while that frame is still in
        // an open part (audio is not held: a leader that lags cuts audio at its earliest
        // open frame, within a part).
        let audio = segment_starts(&checked(&outputs, "audio"));
        assert_eq!(
            audio.iter().map(|s| s.0).collect::<Vec<_>>(),
            (0..5).collect::<Vec<_>>()
        );
        for ((_, tfdt, date, _), (_, video_tfdt, video_date, _)) in audio.iter().zip(&leader) {
            let video_at = *video_tfdt as i64 * 48_000 / 90_000;
            if leader_lag == 0 {
                assert!(
                    (0..1024).contains(&(*tfdt as i64 - video_at)),
                    "{tfdt} {video_tfdt}"
                );
                assert!((date - video_date).abs() <= 22);
            }
        }
        // Each rung announces its bit rate for the master playlist.
        for track in &listed {
            let descriptor = outputs.iter().find_map(|o| match o {
                PackagerOutput::Rendition(d) if d.name == track.name => Some(d),
                _ => None,
            });
            assert_eq!(
                descriptor.unwrap().bandwidth_hint_bps,
                track.bandwidth_hint_bps
            );
        }
        let stats = packager.stats();
        assert_eq!((stats.frames_rejected, stats.timestamp_jumps), (0, 0));
        // Followers wait at keyframes for the leader, a frame at least.
        assert!(stats.frames_held > 0);
    }
}

fn inits_of(outputs: &[PackagerOutput], name: &str) -> Vec<u32> {
    outputs
        .iter()
        .filter_map(|o| match o {
            PackagerOutput::Init {
                rendition, version, ..
            } if rendition == name => Some(*version),
            _ => None,
        })
        .collect()
}

/// Splits a rendition's parts where its MSNs jump (it skipped segments) or its timeline
/// does (it stopped and came back: a new start for the origin, which forgot it).
fn stretches(parts: &[(PartMeta, Bytes)]) -> Vec<&[(PartMeta, Bytes)]> {
    let mut out = Vec::new();
    let mut from = 0;
    for i in 1..parts.len() {
        let previous = parse_part(&parts[i - 1].1);
        let end = previous.base_media_decode_time + previous.duration();
        if parts[i].0.msn > parts[i - 1].0.msn + 1
            || parse_part(&parts[i].1).base_media_decode_time != end
        {
            out.push(&parts[from..i]);
            from = i;
        }
    }
    out.push(&parts[from..]);
    out
}

#[test]
fn shed_rung_stops_and_rejoins_at_its_next_keyframe_without_touching_the_others() {
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let full = ladder();
    announce(&mut packager, &full, 0);
    let all = ["720p", "480p", "360p", "audio"];
    feed_ladder(&mut packager, &full, arrivals(&all, 0, 5 * 90_000, |_| 0));
    // Under load the transcoder sheds 360p at 5 s...
    let shed: Vec<RenditionTrack> = full.iter().filter(|r| r.name != "360p").cloned().collect();
    announce(&mut packager, &shed, 5 * 90_000);
    let kept = ["720p", "480p", "audio"];
    feed_ladder(
        &mut packager,
        &shed,
        arrivals(&kept, 5 * 90_000, 4 * 90_000, |_| 0),
    );
    // ...and at 9 s brings it back, with a new 240p rung.
    let mut back = full.clone();
    back.insert(3, rung("240p", 426, 240, 400_000));
    announce(&mut packager, &back, 9 * 90_000);
    let rungs = ["720p", "480p", "360p", "240p", "audio"];
    feed_ladder(
        &mut packager,
        &back,
        arrivals(&rungs, 9 * 90_000, 4 * 90_000, |_| 0),
    );
    packager
        .handle_ladder(LadderEvent::Ended, EPOCH_MS + 13_000)
        .unwrap();
    let outputs = drain(&mut packager);
    // The rungs that went on: one stretch, MSN 0 to 6, no discontinuity.
    let leader = segment_starts(&checked(&outputs, "720p"));
    assert_eq!(leader.len(), 7);
    assert!(leader.iter().all(|s| !s.3));
    assert_eq!(segment_starts(&checked(&outputs, "480p")), leader);
    let audio = segment_starts(&checked(&outputs, "audio"));
    assert_eq!(
        audio.iter().map(|s| s.0).collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
    assert!(audio.iter().all(|s| !s.3));
    // 360p closed its segment 2 when shed, and was announced again when listed again
    // (the transcoder removed it from the origin meanwhile).
    let shed_parts = parts(&outputs, "360p");
    let [before, after] = stretches(&shed_parts)[..] else {
        panic!("360p: two stretches");
    };
    for stretch in [before, after] {
        check_rendition(stretch, 90_000, part_target(&outputs, "360p"));
        check_sync_sample_bytes(stretch, true);
    }
    assert!(before.last().unwrap().0.ends_segment);
    assert_eq!(segment_starts(before), leader[..3]);
    assert_eq!(inits_of(&outputs, "360p"), [0, 0]);
    // Back at 9 s, mid-segment 4: it joins at its next keyframe, where the leader starts
    // segment 5 (10.01 s), and 240p, new, does the same.
    assert_eq!(segment_starts(after), leader[5..]);
    assert_eq!(segment_starts(&checked(&outputs, "240p")), leader[5..]);
    assert_eq!(inits_of(&outputs, "240p"), [0]);
    assert_eq!(packager.stats().frames_rejected, 0);
}

#[test]
fn new_parameters_on_one_rung_mark_the_discontinuity_on_every_rendition() {
    // The `source` passthrough is re-encoded at the source resolution: a new SPS on the
    // leader, at a segment start (6.006 s) or mid-segment (5 s, with a keyframe).
    for change_at in [3 * GOP_90K as i64, 5 * 90_000] {
        let mut packager = StreamPackager::new(PackagerConfig::default());
        let listed = ladder();
        announce(&mut packager, &listed, 0);
        let all = ["720p", "480p", "360p", "audio"];
        feed_ladder(&mut packager, &listed, arrivals(&all, 0, change_at, |_| 0));
        let mut changed = listed.clone();
        let CodecParams::H264(avc) = &mut changed[0].params.codec else {
            unreachable!()
        };
        avc.level_idc = 40;
        announce(&mut packager, &changed, change_at);
        let mut rest = arrivals(&all, change_at, 9 * 90_000 - change_at, |_| 0);
        // The new encoder starts with a keyframe.
        if let Some(first) = rest.iter_mut().find(|a| a.name == "720p") {
            first.frame.keyframe = true;
        }
        feed_ladder(&mut packager, &changed, rest);
        packager
            .handle_ladder(LadderEvent::Ended, EPOCH_MS + 9_000)
            .unwrap();
        let outputs = drain(&mut packager);
        assert_eq!(inits_of(&outputs, "720p"), [0, 1]);
        assert_eq!(inits_of(&outputs, "480p"), [0]);
        for name in ["720p", "480p", "360p", "audio"] {
            let parts = checked(&outputs, name);
            let starts = segment_starts(&parts);
            // RFC 8216bis §4.4.3.3: the discontinuity sequence numbers stay equal, so
            // every rendition marks the same MSN.
            let marked: Vec<u64> = starts.iter().filter(|s| s.3).map(|s| s.0).collect();
            assert_eq!(marked, [3], "{name}, change at {change_at}");
            assert_eq!(
                starts.iter().map(|s| s.0).collect::<Vec<_>>(),
                (0..5).collect::<Vec<_>>(),
                "{name}"
            );
            let versions: Vec<(u64, u32)> =
                parts.iter().map(|(m, _)| (m.msn, m.init_version)).collect();
            let expected = u32::from(name == "720p");
            assert!(
                versions
                    .iter()
                    .all(|&(msn, v)| v == if msn >= 3 { expected } else { 0 })
            );
            // The leader's segment 3 starts at its new keyframe; the followers' at their
            // next keyframe (6.006 s).
            let new_keyframe = (change_at as u64).div_ceil(3003) * 3003;
            let start = if name == "720p" {
                new_keyframe
            } else {
                3 * GOP_90K
            };
            if name != "audio" {
                assert_eq!(starts[3].1, start, "{name}");
            }
        }
    }
}

#[test]
fn a_transcoder_taking_over_starts_at_the_given_msn_and_init_version_after_a_discontinuity() {
    let mut packager = StreamPackager::new(PackagerConfig {
        first_msn: 100,
        first_init_version: 7,
        continues: true,
        ..PackagerConfig::default()
    });
    let listed = ladder();
    announce(&mut packager, &listed, 0);
    let all = ["720p", "480p", "360p", "audio"];
    feed_ladder(&mut packager, &listed, arrivals(&all, 0, 5 * 90_000, |_| 0));
    packager
        .handle_ladder(LadderEvent::Ended, EPOCH_MS + 5_000)
        .unwrap();
    let outputs = drain(&mut packager);
    for name in all {
        assert_eq!(inits_of(&outputs, name), [7]);
        let parts = checked(&outputs, name);
        // The origin already has segments up to 99 from the transcoder that died: ours
        // follow them after EXT-X-DISCONTINUITY (RFC 8216bis §4.4.4.3), with init
        // versions after the ones it has.
        assert_eq!(
            (parts[0].0.msn, parts[0].0.part, parts[0].0.discontinuity),
            (100, 0, true),
            "{name}"
        );
        assert!(parts.iter().all(|(m, _)| m.init_version == 7));
        assert_eq!(parts.iter().filter(|(m, _)| m.discontinuity).count(), 1);
        assert_eq!(msns(&parts), [100, 101, 102]);
    }
}

#[test]
fn a_missing_keyframe_never_shifts_the_numbering() {
    // The keyframe at 4.004 s (segment 2) is missing on one rung: a follower (480p) or the
    // leader (720p). Rungs in step, or the followers five frames ahead of the leader.
    for missing in ["480p", "720p"] {
        for leader_lag in [0, 5 * 3003] {
            let mut packager = StreamPackager::new(PackagerConfig::default());
            let listed = ladder();
            announce(&mut packager, &listed, 0);
            let all = ["720p", "480p", "360p", "audio"];
            let lag = |name: &str| if name == "720p" { leader_lag } else { 0 };
            let mut frames = arrivals(&all, 0, 9 * 90_000, lag);
            for a in frames.iter_mut() {
                if a.name == missing && a.frame.dts == 2 * GOP_90K as i64 {
                    a.frame.keyframe = false;
                }
            }
            feed_ladder(&mut packager, &listed, frames);
            packager
                .handle_ladder(LadderEvent::Ended, EPOCH_MS + 9_000)
                .unwrap();
            let outputs = drain(&mut packager);
            let context = format!("{missing} missing, leader lag {leader_lag}");
            let leader_parts = parts(&outputs, "720p");
            let leader = segment_starts(&leader_parts);
            for name in ["720p", "480p", "360p", "audio"] {
                let parts = parts(&outputs, name);
                for stretch in stretches(&parts) {
                    let timescale = if name == "audio" { 48_000 } else { 90_000 };
                    check_rendition(stretch, timescale, part_target(&outputs, name));
                }
                let starts = segment_starts(&parts);
                if missing == "720p" {
                    // The leader cuts no segment there, so no rendition does: segment 1
                    // lasts two GOPs everywhere and the numbering goes on.
                    assert_eq!(
                        starts.iter().map(|s| s.0).collect::<Vec<_>>(),
                        [0, 1, 2, 3],
                        "{name}: {context}"
                    );
                } else if name == "480p" {
                    // Segment 1 goes on to its next keyframe, which starts the leader's
                    // segment in progress there: MSN 2 is skipped on 480p, not shifted.
                    let at: Vec<(u64, u64)> = starts.iter().map(|s| (s.0, s.1)).collect();
                    assert_eq!(
                        at,
                        [(0, 0), (1, GOP_90K), (3, 3 * GOP_90K), (4, 4 * GOP_90K)],
                        "{context}"
                    );
                } else {
                    assert_eq!(
                        starts.iter().map(|s| s.0).collect::<Vec<_>>(),
                        [0, 1, 2, 3, 4],
                        "{name}: {context}"
                    );
                }
                if name != "audio" {
                    // Whatever a rendition numbers N starts where the leader's N does.
                    for start in &starts {
                        assert!(leader.contains(start), "{name} {start:?}: {context}");
                    }
                }
            }
        }
    }
}

#[test]
fn invalid_ladders_and_frames_are_refused_with_the_reason() {
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let with_name = |name: &str| {
        let mut listed = ladder();
        listed[1].name = name.to_owned();
        listed
    };
    for name in ["480P", "", &"x".repeat(33), "hd/1", "720p"] {
        let err = packager
            .handle_ladder(LadderEvent::Renditions(with_name(name)), EPOCH_MS)
            .unwrap_err();
        assert!(
            matches!(&err, PackagerError::InvalidRendition { name: n, .. } if n == name),
            "{name:?}: {err}"
        );
    }
    let mut two_audio = ladder();
    two_audio.push(RenditionTrack {
        name: "audio-2".to_owned(),
        ..audio_rendition()
    });
    let err = packager
        .handle_ladder(LadderEvent::Renditions(two_audio), EPOCH_MS)
        .unwrap_err();
    assert!(
        matches!(err, PackagerError::InvalidTrackParams { track: TrackKind::Audio, reason } if reason.contains("more than one audio")),
        "{err}"
    );
    // A runaway list: refused whole, naming the limit.
    let mut oversized = ladder();
    for i in 0..MAX_RENDITIONS {
        oversized.push(rung(&format!("extra{i}"), 640, 360, 800_000));
    }
    let err = packager
        .handle_ladder(LadderEvent::Renditions(oversized), EPOCH_MS)
        .unwrap_err();
    assert!(
        matches!(err, PackagerError::TooManyRenditions { count, max: MAX_RENDITIONS } if count == MAX_RENDITIONS + 4),
        "{err}"
    );
    assert!(drain(&mut packager).is_empty(), "nothing half-started");
    let listed = ladder();
    announce(&mut packager, &listed, 0);
    let video = frames_of("720p", 0, 3003).remove(0);
    for (rendition, frame) in [(4, video.clone()), (3, video)] {
        assert!(matches!(
            packager.handle_ladder(LadderEvent::Frame { rendition, frame }, EPOCH_MS),
            Err(PackagerError::UnknownRendition { index, track: TrackKind::Video }) if index == rendition
        ));
    }
    // A name keeps its kind for the stream's life.
    let mut swapped = ladder();
    swapped[3].name = "360p".to_owned();
    swapped.remove(2);
    assert!(matches!(
        packager.handle_ladder(LadderEvent::Renditions(swapped), EPOCH_MS),
        Err(PackagerError::InvalidRendition { .. })
    ));
    assert_eq!(packager.stats().frames_rejected, 2);
}

#[test]
fn a_follower_holds_at_most_two_seconds_of_60_fps_frames() {
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let listed = ladder();
    announce(&mut packager, &listed, 0);
    // The leader (720p) sends nothing; 480p's keyframe waits for it, and so does every
    // frame after it, here a tick apart: far within the 1 s hold by time.
    let follower = listed.iter().position(|r| r.name == "480p").unwrap();
    let template = frames_of("480p", 0, 2 * 3003);
    for i in 0..300 {
        let frame = Frame {
            dts: i,
            pts: i,
            keyframe: i == 0,
            ..template[usize::from(i != 0)].clone()
        };
        // A frame the packager refuses after holding it is counted, not returned.
        let _ = packager.handle_ladder(
            LadderEvent::Frame {
                rendition: follower,
                frame,
            },
            EPOCH_MS,
        );
        let held = packager
            .renditions
            .iter()
            .find(|r| r.name == "480p")
            .map_or(0, |r| r.held.len());
        assert!(held <= MAX_FOLLOWER_HOLD_FRAMES + 1, "{held} frames held");
    }
}

#[test]
fn shedding_the_leader_hands_the_lead_to_the_next_rung() {
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let full = ladder();
    announce(&mut packager, &full, 0);
    let all = ["720p", "480p", "360p", "audio"];
    feed_ladder(&mut packager, &full, arrivals(&all, 0, 5 * 90_000, |_| 0));
    let shed = full[1..].to_vec();
    announce(&mut packager, &shed, 5 * 90_000);
    let kept = ["480p", "360p", "audio"];
    feed_ladder(
        &mut packager,
        &shed,
        arrivals(&kept, 5 * 90_000, 4 * 90_000, |_| 0),
    );
    packager
        .handle_ladder(LadderEvent::Ended, EPOCH_MS + 9_000)
        .unwrap();
    let outputs = drain(&mut packager);
    let leader = segment_starts(&checked(&outputs, "720p"));
    assert_eq!(leader.len(), 3);
    // 480p leads from 5 s on: it cuts its own segments at the keyframes, numbered on.
    let next = segment_starts(&checked(&outputs, "480p"));
    assert_eq!(next[..3], leader[..]);
    let at: Vec<(u64, u64)> = next.iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(at, (0..5).map(|n| (n, n * GOP_90K)).collect::<Vec<_>>());
    assert_eq!(segment_starts(&checked(&outputs, "360p")), next);
    let audio = segment_starts(&checked(&outputs, "audio"));
    assert_eq!(
        audio.iter().map(|s| s.0).collect::<Vec<_>>(),
        (0..5).collect::<Vec<_>>()
    );
    assert!(audio.iter().all(|s| !s.3));
}

#[test]
fn the_next_leader_packages_its_held_keyframe_as_the_leader() {
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let full = ladder()[..3].to_vec();
    announce(&mut packager, &full, 0);
    // 720p stops just before its keyframe at 3 GOPs; the followers run on past theirs,
    // which they hold for the leader.
    let mut frames = arrivals(&["720p"], 0, 3 * GOP_90K as i64 - 1, |_| 0);
    frames.extend(arrivals(
        &["480p", "360p"],
        0,
        3 * GOP_90K as i64 + 9_000,
        |_| 0,
    ));
    frames.sort_by_key(|a| a.at);
    feed_ladder(&mut packager, &full, frames);
    assert!(packager.renditions.iter().any(|r| !r.held.is_empty()));
    // The leader is shed: 480p leads and its held keyframe starts segment 3 there.
    let shed = full[1..].to_vec();
    announce(&mut packager, &shed, 3 * GOP_90K as i64 + 9_000);
    feed_ladder(
        &mut packager,
        &shed,
        arrivals(
            &["480p", "360p"],
            3 * GOP_90K as i64 + 9_000,
            2 * GOP_90K as i64,
            |_| 0,
        ),
    );
    packager
        .handle_ladder(LadderEvent::Ended, EPOCH_MS + 12_000)
        .unwrap();
    let outputs = drain(&mut packager);
    let next = segment_starts(&checked(&outputs, "480p"));
    let at: Vec<(u64, u64)> = next.iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(at, (0..6).map(|n| (n, n * GOP_90K)).collect::<Vec<_>>());
    assert_eq!(segment_starts(&checked(&outputs, "360p")), next);
}

#[test]
fn a_new_bandwidth_hint_updates_the_descriptor_only() {
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let mut listed = ladder();
    announce(&mut packager, &listed, 0);
    drain(&mut packager);
    listed[1].bandwidth_hint_bps = Some(1_200_000);
    announce(&mut packager, &listed, 0);
    let outputs = drain(&mut packager);
    assert_eq!(outputs.len(), 1);
    assert!(matches!(
        &outputs[0],
        PackagerOutput::Rendition(d) if d.name == "480p" && d.bandwidth_hint_bps == Some(1_200_000)
    ));
}

#[test]
fn passthrough_source_with_b_frames_leads_rungs_without() {
    // The publisher's H.264 has B-frames (pts two frames after dts); the encoded rungs
    // (x264 zero-latency) have none, so their keyframes decode two frames later, at the
    // same presentation time. Segments line up on presentation: equal tfdt (the source's
    // decode times are shifted by its reorder delay), equal dates.
    let bframes = VideoShape {
        bframes: true,
        ..SHAPE
    };
    let mut listed = ladder();
    listed[0].name = "source".to_owned();
    let mut packager = StreamPackager::new(PackagerConfig::default());
    announce(&mut packager, &listed, 0);
    let mut all: Vec<Arrival> = video_frames(bframes, 9 * 90_000, 0)
        .into_iter()
        .map(|frame| Arrival {
            at: frame.dts,
            name: "source".to_owned(),
            frame,
        })
        .collect();
    for name in ["480p", "360p"] {
        all.extend(
            video_frames(SHAPE, 9 * 90_000, 6006)
                .into_iter()
                .map(|frame| Arrival {
                    at: frame.dts,
                    name: name.to_owned(),
                    frame,
                }),
        );
    }
    all.extend(arrivals(&["audio"], 0, 9 * 90_000, |_| 0));
    all.sort_by_key(|a| a.at);
    feed_ladder(&mut packager, &listed, all);
    packager
        .handle_ladder(LadderEvent::Ended, EPOCH_MS + 9_500)
        .unwrap();
    let outputs = drain(&mut packager);
    let source = segment_starts(&checked(&outputs, "source"));
    let at: Vec<(u64, u64)> = source.iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(
        at,
        (0..5).map(|n| (n, 6006 + n * GOP_90K)).collect::<Vec<_>>()
    );
    for name in ["480p", "360p"] {
        assert_eq!(segment_starts(&checked(&outputs, name)), source, "{name}");
    }
    let audio = segment_starts(&checked(&outputs, "audio"));
    assert_eq!(
        audio.iter().map(|s| s.0).collect::<Vec<_>>(),
        (0..5).collect::<Vec<_>>()
    );
}

/// xorshift64: the same pseudo-random ladders on every run.
fn next_random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn random_ladders_keep_every_rung_numbered_as_the_leader() {
    let mut seed = 0x1add_e2e2_u64;
    for round in 0..40 {
        let mut random = |n: u64| next_random(&mut seed) % n;
        // Each rung reaches the packager up to 10 frames late, with up to a frame of
        // jitter; keyframes go missing or come extra on any rung; one follower is shed
        // for a while and comes back. Audio comes with the leader (audio is not held: it
        // follows a leader less than a part behind it exactly).
        let names = ["720p", "480p", "360p", "audio"];
        let mut lags: Vec<i64> = (0..3).map(|_| random(10) as i64 * 3003).collect();
        lags.push(lags[0]);
        let mut all = Vec::new();
        for (rung, &name) in names.iter().enumerate() {
            for mut frame in frames_of(name, 0, 12 * 90_000) {
                if rung < 3 && frame.dts > 0 {
                    match random(100) {
                        0..10 if frame.keyframe => frame.keyframe = false,
                        10..12 => frame.keyframe = true,
                        _ => {}
                    }
                }
                all.push(Arrival {
                    // Jitter within a frame keeps each rung's own order; audio comes
                    // evenly (its millisecond stamps are 1890 to 1980 ticks apart).
                    at: frame.dts + lags[rung] + if rung < 3 { random(3000) as i64 } else { 0 },
                    name: name.to_owned(),
                    frame,
                });
            }
        }
        all.sort_by_key(|a| a.at);
        let shed = ["480p", "360p"][random(2) as usize];
        let shed_at = (2 + random(5) as i64) * 90_000;
        let back_at = shed_at + (1 + random(3) as i64) * 90_000;
        let full = ladder();
        let without: Vec<RenditionTrack> =
            full.iter().filter(|r| r.name != shed).cloned().collect();
        let mut packager = StreamPackager::new(PackagerConfig::default());
        announce(&mut packager, &full, 0);
        let mut listed = &full;
        for arrival in all {
            if arrival.at >= shed_at && listed.len() == full.len() && arrival.at < back_at {
                announce(&mut packager, &without, arrival.at);
                listed = &without;
            }
            if arrival.at >= back_at && listed.len() != full.len() {
                announce(&mut packager, &full, arrival.at);
                listed = &full;
            }
            if listed.iter().any(|r| r.name == arrival.name) {
                feed_ladder(&mut packager, listed, vec![arrival]);
            }
        }
        packager
            .handle_ladder(LadderEvent::Ended, EPOCH_MS + 13_000)
            .unwrap();
        let context = format!("round {round}: lags {lags:?}, {shed} shed {shed_at}..{back_at}");
        let outputs = drain(&mut packager);
        let leader = segment_starts(&parts(&outputs, "720p"));
        for name in names {
            let parts = parts(&outputs, name);
            let timescale = if name == "audio" { 48_000 } else { 90_000 };
            for stretch in stretches(&parts) {
                check_rendition(stretch, timescale, part_target(&outputs, name));
            }
            check_sync_sample_bytes(&parts, name != "audio");
            if name == "audio" {
                // Silence and boundaries give audio every MSN the leader has.
                let msns: Vec<u64> = segment_starts(&parts).iter().map(|s| s.0).collect();
                let leads: Vec<u64> = leader.iter().map(|s| s.0).collect();
                assert_eq!(msns, leads, "{context}");
                continue;
            }
            // A rung's segment N lies within the leader's segment N: it starts at or after
            // the leader's start (less half a frame) and before the leader's N + 1.
            for (msn, tfdt, ..) in segment_starts(&parts) {
                let i = leader.iter().position(|s| s.0 == msn);
                let i = i.unwrap_or_else(|| panic!("{name} MSN {msn} unknown: {context}"));
                assert!(tfdt + 1501 >= leader[i].1, "{name} {msn}: {context}");
                if let Some(next) = leader.get(i + 1) {
                    assert!(tfdt < next.1, "{name} {msn}: {context}");
                }
            }
        }
        assert_eq!(packager.stats().frames_rejected, 0, "{context}");
    }
}

#[test]
fn source_re_encoded_without_b_frames_lines_up_with_the_rungs_again() {
    // The `source` passthrough has B-frames; from 6.073 s on (a segment start) the ladder
    // re-encodes it without, like the other rungs. The new encoder's segments start at
    // their keyframes' presentation times, as the rungs' do (B2's report: the
    // passthrough's reorder shift used to stay).
    let bframes = VideoShape {
        bframes: true,
        ..SHAPE
    };
    let switch = 3 * GOP_90K as i64 + 6006;
    let mut listed = ladder();
    listed[0].name = "source".to_owned();
    let mut packager = StreamPackager::new(PackagerConfig::default());
    announce(&mut packager, &listed, 0);
    let arrival = |name: &str| {
        let name = name.to_owned();
        move |frame: Frame| Arrival {
            at: frame.dts,
            name: name.clone(),
            frame,
        }
    };
    let mut all: Vec<Arrival> = video_frames(bframes, 9 * 90_000, 0)
        .into_iter()
        .filter(|f| f.pts < switch)
        .map(arrival("source"))
        .collect();
    let re_encoded: Vec<Arrival> = video_frames(SHAPE, 9 * 90_000, 6006)
        .into_iter()
        .filter(|f| f.pts >= switch)
        .map(arrival("source"))
        .collect();
    for name in ["480p", "360p"] {
        all.extend(
            video_frames(SHAPE, 9 * 90_000, 6006)
                .into_iter()
                .map(arrival(name)),
        );
    }
    all.extend(arrivals(&["audio"], 0, 9 * 90_000, |_| 0));
    all.sort_by_key(|a| a.at);
    let (before, after): (Vec<Arrival>, Vec<Arrival>) =
        all.into_iter().partition(|a| a.at < switch - 3003);
    feed_ladder(&mut packager, &listed, before);
    let mut changed = listed.clone();
    let CodecParams::H264(avc) = &mut changed[0].params.codec else {
        unreachable!()
    };
    avc.profile_idc = 77;
    announce(&mut packager, &changed, switch - 3003);
    let mut after = after;
    after.extend(re_encoded);
    after.sort_by_key(|a| a.at);
    feed_ladder(&mut packager, &changed, after);
    packager
        .handle_ladder(LadderEvent::Ended, EPOCH_MS + 9_500)
        .unwrap();
    let outputs = drain(&mut packager);
    let source = checked(&outputs, "source");
    let starts = segment_starts(&source);
    for name in ["480p", "360p"] {
        assert_eq!(segment_starts(&checked(&outputs, name)), starts, "{name}");
    }
    // Every segment of the source begins with its keyframe presented at tfdt, before and
    // after the switch (which is a discontinuity on every rendition).
    for (meta, data) in &source {
        if meta.part == 0 {
            assert_eq!(parse_part(data).first_cts, 0, "{meta:?}");
        }
    }
    assert_eq!(starts[3], (3, switch as u64, starts[3].2, true));
    assert_eq!(inits_of(&outputs, "source"), [0, 1]);
}

#[test]
fn garbage_ladder_input_is_refused_never_a_panic() {
    // Extreme and disordered timestamps, wrong indexes and kinds, lists changing under the
    // frames: every event returns, and the stream goes on.
    for mut seed in [0xbad_f00d_u64, 0xdead_beef, 0x0123_4567_89ab] {
        garbage_round(&mut seed);
    }
}

fn garbage_round(seed: &mut u64) {
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let lists = [ladder(), ladder()[1..].to_vec(), vec![ladder()[2].clone()]];
    let extremes = [i64::MIN, i64::MAX, -1, 0, 1 << 40, -(1 << 40)];
    for i in 0..3000 {
        let random = next_random(seed);
        let event = match random % 50 {
            0 => LadderEvent::Renditions(lists[(random >> 8) as usize % 3].clone()),
            1 => LadderEvent::Ended,
            _ => {
                let video = random & 0x100 == 0;
                let dts = if random & 0x200 == 0 {
                    i * 3003 + ((random >> 12) % 9000) as i64 - 4500
                } else {
                    extremes[(random >> 12) as usize % extremes.len()]
                };
                let pts = if random & 0x400 == 0 {
                    dts.saturating_add(((random >> 20) % 20_000) as i64)
                } else {
                    extremes[(random >> 20) as usize % extremes.len()]
                };
                LadderEvent::Frame {
                    rendition: (random >> 32) as usize % 6,
                    frame: Frame {
                        track: if video {
                            TrackKind::Video
                        } else {
                            TrackKind::Audio
                        },
                        dts,
                        pts,
                        keyframe: random & 0x800 == 0,
                        data: Bytes::from_static(&[0x65; 20]),
                    },
                }
            }
        };
        let _ = packager.handle_ladder(event, EPOCH_MS + i);
    }
    packager
        .handle_ladder(LadderEvent::Ended, EPOCH_MS + 3000)
        .unwrap();
    let outputs = drain(&mut packager);
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, PackagerOutput::Part { .. }))
    );
}
