//! Smart-render cut points on captured GOPs: an event archived by the real encoder and
//! packager ([`fixture`]), cut to ranges that start and end at, just before and just
//! after frame boundaries, inside one segment and across several, in every rendition;
//! what comes out decoded back with libav.

mod fixture;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use floodlight_archive::{AssetManifest, AssetRendition, AssetSegment, Precision};
use floodlight_media::cmaf::{read_init, read_segment};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::*;
use fixture::{ArchivedFrame, RUNG, Rung, T0, archive, build, decode, psnr, read_index, settings};

/// One frame at 30 fps, 90 kHz.
const FRAME_90K: i64 = 3000;
/// One AAC frame at 48 kHz, 90 kHz.
const AAC_FRAME_90K: i64 = 1920;

async fn render(store: &Arc<InMemory>, asset: AssetManifest) -> Result<AssetManifest, VodError> {
    render_frame_precise(store.clone(), &settings(), asset, &|_| {}, &|| false).await
}

async fn object(store: &InMemory, key: &str) -> Bytes {
    let path = Path::parse(key).unwrap();
    store.get(&path).await.unwrap().bytes().await.unwrap()
}

/// The frames (presentation order) an asset's rendition plays, with the pictures of video
/// decoded; checks that every segment is what its record says.
async fn played(
    store: &InMemory,
    rendition: &AssetRendition,
) -> Vec<(i64, Bytes, Option<ffmpeg_next::frame::Video>)> {
    let mut frames = Vec::new();
    for segment in &rendition.segments {
        let init_bytes = object(store, &segment.init).await;
        let bytes = object(store, &segment.object).await;
        assert_eq!(segment.bytes, bytes.len() as u64, "{}", segment.object);
        let init = read_init(&init_bytes).unwrap();
        let mut samples = Vec::new();
        let mut ticks = 0;
        for read in read_segment(&bytes, &init).unwrap() {
            let mut dts = read.fragment.base_media_decode_time as i64;
            for sample in read.fragment.samples {
                samples.push((dts + i64::from(sample.composition_offset), sample.data));
                dts += i64::from(sample.duration);
                ticks += u64::from(sample.duration);
            }
        }
        let ticks_90k = ticks * 90_000 / u64::from(init.timescale);
        assert!(
            segment.duration_90k.abs_diff(ticks_90k) <= 1,
            "{}",
            segment.object
        );
        samples.sort_by_key(|(pts, _)| *pts);
        if rendition.descriptor.kind == floodlight_media::push::RenditionKind::Video {
            let pictures = decode(&init_bytes, &bytes);
            assert_eq!(
                pictures.len(),
                samples.len(),
                "{} decodes whole",
                segment.object
            );
            for ((pts, data), picture) in samples.into_iter().zip(pictures) {
                assert_eq!(picture.pts, pts);
                frames.push((pts, data, Some(picture.frame)));
            }
        } else {
            frames.extend(samples.into_iter().map(|(pts, data)| (pts, data, None)));
        }
    }
    frames
}

/// The archived frames of `name` presented in `[start_ms, end_ms)` (ms after T0).
fn expected(name: &str, start_ms: i64, end_ms: i64) -> Vec<ArchivedFrame> {
    archive()
        .frames(name)
        .into_iter()
        .filter(|f| f.ms >= start_ms as f64 && f.ms < end_ms as f64)
        .collect()
}

/// A frame's wall-clock time, ms after T0, when it falls on a whole millisecond (the
/// capture's timestamps are FLV milliseconds, so every frame does).
fn frame_ms(name: &str, index: usize) -> i64 {
    let ms = archive().frames(name)[index].ms;
    assert_eq!(ms, ms.round(), "frame {index} of {name} is on a whole ms");
    ms as i64
}

/// H.264 NAL unit types (Table 7-1) of a sample with 4-byte lengths.
fn nal_types(mut data: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while data.len() > 4 {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        types.push(data[4] & 0x1f);
        data = &data[(4 + len).min(data.len())..];
    }
    types
}

fn is_own(asset: &AssetManifest, key: &str) -> bool {
    key.starts_with(&format!("{}/", asset.asset_id.prefix()))
}

#[tokio::test]
async fn a_rung_starts_and_ends_on_the_frames_asked_at_just_before_and_just_after_their_boundaries()
{
    let archive = archive();
    let rung = archive.rendition(RUNG);
    assert_eq!(rung.segments.len(), 3, "2 s segments of 6 s");
    let store = archive.store().await;
    let (t10, t150) = (frame_ms(RUNG, 10), frame_ms(RUNG, 150));
    for (start, first) in [(t10 - 1, 10), (t10, 10), (t10 + 1, 11)] {
        for (end, last) in [(t150 - 1, 149), (t150, 149), (t150 + 1, 150)] {
            let asset = archive.segment_asset("cuts", start, end);
            let frame = render(&store, asset.clone()).await.unwrap();
            assert_eq!(frame.precision, Precision::Frame);
            let out = frame.rendition(RUNG).unwrap();
            let input = asset.rendition(RUNG).unwrap();
            // The first segment is re-encoded from the cut: x264 with the rung's own
            // settings writes the rung's own SPS/PPS, so the archived init stays.
            let head = &out.segments[0];
            assert!(is_own(&frame, &head.object));
            assert_eq!(head.init, input.segments[0].init, "same parameter sets");
            assert!(!out.segments.iter().any(|s| s.discontinuity));
            // The middle segment is referenced, untouched; the last is cut to a prefix.
            assert_eq!(out.segments.len(), 3);
            assert_eq!(out.segments[1], input.segments[1]);
            assert!(is_own(&frame, &out.segments[2].object));

            let frames = played(&store, out).await;
            let indexes: Vec<usize> = frames
                .iter()
                .map(|f| read_index(f.2.as_ref().unwrap()))
                .collect();
            assert_eq!(
                indexes,
                (first..=last).collect::<Vec<_>>(),
                "start {start} end {end}"
            );
            // The first sample is an IDR (H.264 NAL type 5) and the first presented.
            let first_segment = object(&store, &head.object).await;
            let init = read_init(&object(&store, &head.init).await).unwrap();
            let sample = &read_segment(&first_segment, &init).unwrap()[0]
                .fragment
                .samples[0];
            assert!(sample.keyframe);
            assert!(nal_types(&sample.data).contains(&5), "an IDR slice");
            // moof, mdat header, the IDR: what an I-frame playlist addresses.
            let rest: usize = read_segment(&first_segment, &init).unwrap()[0]
                .fragment
                .samples[1..]
                .iter()
                .map(|s| s.data.len())
                .sum();
            assert_eq!(head.iframe_bytes, Some((first_segment.len() - rest) as u64));
            // Its date is the cut frame's; the re-encoded frames keep their pts.
            let archived = archive.frames(RUNG);
            assert_eq!(
                head.program_date_time_ms,
                T0 + archived[first].ms.round() as i64
            );
            assert_eq!(frames[0].0, archived[first].pts);
            // The end: a prefix of the archived samples, copied without a re-encode.
            let tail = &frames[frames.len() - (last - 119)..];
            for (played, archived) in tail.iter().zip(&archived[120..=last]) {
                assert_eq!(played.1, archived.data);
            }
            // Within one frame of the range.
            let duration: i64 = out.segments.iter().map(|s| s.duration_90k as i64).sum();
            assert!(
                (duration - (end - start) * 90).abs() <= FRAME_90K,
                "{duration}"
            );
            // Exactly the frames' span on the timeline (give or take the archive's rounding
            // of each segment to whole ticks).
            let span = archived[last + 1].pts - archived[first].pts;
            assert!(
                (duration - span).abs() <= 3,
                "{duration} for a span of {span}"
            );
        }
    }
}

#[tokio::test]
async fn the_source_with_b_frames_re_encodes_only_the_gops_the_range_cuts() {
    let archive = archive();
    let store = archive.store().await;
    let source = archive.frames("source");
    // Frame 10 is in the first GOP of segment 0 (a 1 s GOP, two per segment).
    let start = frame_ms("source", 10);
    // Ends in segment 2's second GOP (frames 150..): one end the decode order allows to
    // copy (a prefix of the GOP is exactly the frames kept), one it does not.
    let mut checked = (false, false);
    for last in 152..158 {
        let end = frame_ms("source", last + 1);
        let asset = archive.segment_asset("bframes", start, end);
        let frame = render(&store, asset.clone()).await.unwrap();
        let out = frame.rendition("source").unwrap();
        let input = asset.rendition("source").unwrap();
        // Segment 0: the cut GOP re-encoded, the second GOP copied, in one object; then
        // segment 1 as archived, and segment 2 cut. x264's parameter sets are not the
        // publisher's: they are numbered apart and one init of the asset's own holds both,
        // so every segment decodes with it and nothing is discontinuous.
        let both = &out.segments[0].init;
        assert!(is_own(&frame, both));
        assert!(out.segments.iter().all(|s| &s.init == both));
        assert!(!out.segments.iter().any(|s| s.discontinuity));
        let combined = read_init(&object(&store, both).await).unwrap();
        let floodlight_media::CodecParams::H264(combined) = combined.params.codec else {
            panic!("H.264");
        };
        let archived = read_init(&archive.object(&input.segments[0].init)).unwrap();
        let floodlight_media::CodecParams::H264(archived) = archived.params.codec else {
            panic!("H.264");
        };
        assert_eq!((combined.sps.len(), combined.pps.len()), (2, 2));
        assert_eq!(
            (&combined.sps[0], &combined.pps[0]),
            (&archived.sps[0], &archived.pps[0])
        );
        // The same CODECS: profile and level are the publisher's.
        assert_eq!(
            (combined.profile_idc, combined.level_idc),
            (archived.profile_idc, archived.level_idc)
        );
        assert_eq!(out.segments.len(), 3);
        assert_eq!(
            out.segments[1],
            AssetSegment {
                init: both.clone(),
                ..input.segments[1].clone()
            },
            "the middle segment's object is referenced as archived"
        );
        let frames = played(&store, out).await;
        assert_eq!(frames[0].0, source[10].pts);
        assert_eq!(frames.len(), last - 10 + 1);
        // The first picture is the frame at the cut.
        let first = frames[0].2.as_ref().unwrap();
        let at = |i: usize| &archive.source_pictures[&source[i].pts];
        let (cut, before, after) = (psnr(first, at(10)), psnr(first, at(9)), psnr(first, at(11)));
        assert!(
            cut > 30.0 && cut > before + 3.0 && cut > after + 3.0,
            "{cut} {before} {after}"
        );
        // Copied GOPs are the archived bytes.
        for (played, archived) in frames[20..50].iter().zip(&source[30..60]) {
            assert_eq!(played.1, archived.data);
        }
        // The end: copied when the decode order allows, re-encoded otherwise.
        let ending = &frames[frames.len() - (last - 149)..];
        let copied = ending
            .iter()
            .zip(&source[150..=last])
            .all(|(played, archived)| played.1 == archived.data);
        if copied {
            checked.0 = true;
        } else {
            checked.1 = true;
            let first = ending[0].2.as_ref().unwrap();
            assert!(
                psnr(first, at(150)) > 30.0,
                "the re-encoded end starts at frame 150"
            );
        }
        let duration: i64 = out.segments.iter().map(|s| s.duration_90k as i64).sum();
        assert!(
            (duration - (end - start) * 90).abs() <= FRAME_90K,
            "{duration} for {}",
            end - start
        );
    }
    assert_eq!(checked, (true, true), "both end cuts met");
}

#[tokio::test]
async fn a_range_inside_one_segment_cuts_it_at_both_ends_in_every_rendition() {
    let archive = archive();
    let store = archive.store().await;
    let (start, end) = (frame_ms(RUNG, 70) + 1, frame_ms(RUNG, 100));
    let asset = archive.segment_asset("inside", start, end);
    for rendition in &asset.renditions {
        assert_eq!(rendition.segments.len(), 1, "{}", rendition.name());
    }
    let frame = render(&store, asset.clone()).await.unwrap();
    for rendition in &frame.renditions {
        let name = rendition.name();
        let want = expected(name, start, end);
        let frames = played(&store, rendition).await;
        let duration: i64 = rendition
            .segments
            .iter()
            .map(|s| s.duration_90k as i64)
            .sum();
        if name == "audio" {
            check_audio(&frames, start, end, duration);
            continue;
        }
        assert_eq!(frames.len(), want.len(), "{name}");
        assert_eq!(frames[0].0, want[0].pts, "{name}");
        assert!(
            (duration - (end - start) * 90).abs() <= FRAME_90K,
            "{name}: {duration}"
        );
        if name == RUNG {
            assert_eq!(read_index(frames[0].2.as_ref().unwrap()), 71);
            assert_eq!(read_index(frames.last().unwrap().2.as_ref().unwrap()), 99);
        }
    }
}

/// Audio frames are the archived ones (no re-encode), the first and last within half an
/// AAC frame of the cuts.
fn check_audio(
    frames: &[(i64, Bytes, Option<ffmpeg_next::frame::Video>)],
    start: i64,
    end: i64,
    duration: i64,
) {
    let archived = archive().frames("audio");
    let first = archived.iter().position(|f| f.data == frames[0].1).unwrap();
    for (i, played) in frames.iter().enumerate() {
        assert_eq!(played.1, archived[first + i].data, "audio frame {i} copied");
    }
    let half = 1024.0 / 48.0 / 2.0;
    let begins = archived[first].ms;
    let ends = archived[first + frames.len() - 1].ms + 1024.0 / 48.0;
    assert!(
        (begins - start as f64).abs() <= half + 1e-6,
        "audio begins at {begins}, cut {start}"
    );
    assert!(
        (ends - end as f64).abs() <= half + 1e-6,
        "audio ends at {ends}, cut {end}"
    );
    assert!(
        (duration - (end - start) * 90).abs() <= AAC_FRAME_90K,
        "audio {duration}"
    );
}

#[tokio::test]
async fn audio_is_trimmed_within_one_aac_frame_and_never_re_encoded() {
    let archive = archive();
    let store = archive.store().await;
    for (start, end) in [
        (100, 5900),
        (500, 4321),
        (1990, 2050),
        (1234, 5678),
        (2000, 4000),
    ] {
        let asset = archive.segment_asset("audio", start, end);
        let frame = render(&store, asset.clone()).await.unwrap();
        let audio = frame.rendition("audio").unwrap();
        let frames = played(&store, audio).await;
        let duration: i64 = audio.segments.iter().map(|s| s.duration_90k as i64).sum();
        check_audio(&frames, start, end, duration);
        // The segments between the boundaries are referenced as archived.
        let input = asset.rendition("audio").unwrap();
        if let [_, middle @ .., _] = &audio.segments[..] {
            assert!(middle.iter().all(|s| input.segments.contains(s)));
        }
        // Dates follow the first kept frame.
        let first = archive
            .frames("audio")
            .into_iter()
            .find(|f| f.data == frames[0].1)
            .unwrap();
        assert_eq!(
            audio.segments[0].program_date_time_ms,
            T0 + first.ms.round() as i64
        );
    }
}

#[tokio::test]
async fn a_range_on_segment_boundaries_reads_no_segment_and_writes_nothing() {
    let archive = archive();
    let rung = archive.rendition(RUNG);
    let start = rung.segments[1].program_date_time_ms - T0;
    let end = rung.segments[2].program_date_time_ms - T0;
    let asset = archive.segment_asset("aligned", start, end);
    // Video only, in an empty store: reading any object would fail the job. (Audio's
    // segments start at its first frame after video's boundary, so it has one to cut.)
    let mut video = asset.clone();
    video.renditions.retain(|r| r.name() != "audio");
    let store = Arc::new(InMemory::new());
    let frame = render(&store, video.clone()).await.unwrap();
    assert_eq!(frame.renditions, video.renditions);
}

#[tokio::test]
async fn a_rerun_writes_the_same_objects_and_manifest() {
    let archive = archive();
    let store = archive.store().await;
    let asset = archive.segment_asset("rerun", 345, 4567);
    let first = render(&store, asset.clone()).await.unwrap();
    let mut objects = HashMap::new();
    for segment in first.renditions.iter().flat_map(|r| &r.segments) {
        for key in [&segment.object, &segment.init] {
            objects.insert(key.clone(), object(&store, key).await);
        }
    }
    let second = render(&store, asset).await.unwrap();
    assert_eq!(first, second);
    for (key, bytes) in objects {
        assert_eq!(object(&store, &key).await, bytes, "{key}");
    }
}

#[tokio::test]
async fn progress_runs_to_one_and_cancel_stops_between_segments() {
    let archive = archive();
    let store = archive.store().await;
    let asset = archive.segment_asset("progress", 345, 4567);
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |p: f64| seen.lock().unwrap().push(p);
    let settings = settings();
    let future = render_frame_precise(store.clone(), &settings, asset.clone(), &progress, &|| {
        false
    });
    fn send<T: Send>(t: T) -> T {
        t
    }
    send(future).await.unwrap();
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.first(), Some(&0.0));
    assert_eq!(seen.last(), Some(&1.0));
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(seen.len() >= 2 + 3, "a step per boundary segment: {seen:?}");

    let asked = AtomicUsize::new(0);
    let cancelled = || asked.fetch_add(1, Ordering::SeqCst) >= 2;
    let result = render_frame_precise(store, &settings, asset, &|_| {}, &cancelled).await;
    assert!(matches!(result, Err(VodError::Cancelled)), "{result:?}");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        3,
        "asked before each boundary segment"
    );
}

#[tokio::test]
async fn a_corrupt_or_missing_object_fails_the_job_naming_it() {
    let archive = archive();
    let asset = archive.segment_asset("broken", 345, 4567);
    let rung = asset.rendition(RUNG).unwrap();
    let (segment, init) = (&rung.segments[0].object, &rung.segments[0].init);

    // A torn segment: half of it.
    let store = archive.store().await;
    let bytes = object(&store, segment).await;
    let torn = bytes.slice(..bytes.len() / 2);
    store
        .put(&Path::parse(segment).unwrap(), PutPayload::from(torn))
        .await
        .unwrap();
    let error = render(&store, asset.clone()).await.unwrap_err();
    assert!(
        matches!(&error, VodError::Corrupt { object, .. } if object == segment),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert!(
        error
            .to_string()
            .starts_with(&format!("{segment}: corrupt media: byte ")),
        "{error}"
    );

    // Samples that are not H.264: the container is fine, the decoder is not.
    let store = archive.store().await;
    let init_track = read_init(&object(&store, init).await).unwrap();
    let mut fragments = read_segment(&bytes, &init_track).unwrap();
    for read in &mut fragments {
        for sample in &mut read.fragment.samples {
            sample.data = Bytes::from(vec![0, 0, 0, 2, 0x65, 0xff]);
        }
    }
    let mut garbage = Vec::new();
    for read in &fragments {
        floodlight_media::cmaf::write_fragment(&mut garbage, &read.fragment).unwrap();
    }
    store
        .put(&Path::parse(segment).unwrap(), PutPayload::from(garbage))
        .await
        .unwrap();
    let error = render(&store, asset.clone()).await.unwrap_err();
    assert!(
        matches!(&error, VodError::Corrupt { object, .. } if object == segment),
        "{error}"
    );

    // A corrupt init.
    let store = archive.store().await;
    store
        .put(
            &Path::parse(init).unwrap(),
            PutPayload::from_static(b"\0\0\0\x08moov"),
        )
        .await
        .unwrap();
    let error = render(&store, asset.clone()).await.unwrap_err();
    assert!(
        matches!(&error, VodError::Corrupt { object, .. } if object == init),
        "{error}"
    );

    // A missing segment.
    let store = archive.store().await;
    store.delete(&Path::parse(segment).unwrap()).await.unwrap();
    let error = render(&store, asset.clone()).await.unwrap_err();
    assert!(
        matches!(&error, VodError::Missing { object } if object == segment),
        "{error}"
    );
    assert!(!error.is_retryable());

    // Not a segment asset, or a reversed range.
    let store = archive.store().await;
    let mut wrong = asset.clone();
    wrong.precision = Precision::Frame;
    assert!(matches!(
        render(&store, wrong).await,
        Err(VodError::Manifest { .. })
    ));
    let mut reversed = asset;
    reversed.source.end_ms = reversed.source.start_ms;
    assert!(matches!(
        render(&store, reversed).await,
        Err(VodError::Manifest { .. })
    ));
}

#[test]
fn only_a_failing_store_is_retryable() {
    let store = VodError::Store {
        object: "v1/events/final/renditions/180p/segments/3.m4s".into(),
        source: object_store::Error::Generic {
            store: "S3",
            source: "503 Slow Down".into(),
        },
    };
    assert!(store.is_retryable());
    assert!(store.to_string().contains("segments/3.m4s"));
    for fatal in [
        VodError::Missing { object: "k".into() },
        VodError::Corrupt {
            object: "k".into(),
            reason: "r".into(),
        },
        VodError::Cancelled,
    ] {
        assert!(!fatal.is_retryable(), "{fatal}");
    }
}

#[tokio::test]
async fn the_poster_is_the_first_picture_of_the_top_rendition() {
    let archive = archive();
    let store = archive.store().await;
    let start = frame_ms("source", 40);
    let asset = archive.segment_asset("poster", start, 5000);
    let frame = render(&store, asset).await.unwrap();
    let mut settings = settings();
    settings.poster_width = 320;
    let key = render_poster(store.clone(), &settings, &frame)
        .await
        .unwrap();
    assert_eq!(key, "v1/assets/poster/poster.jpg");
    let jpeg = object(&store, &key).await;
    assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
    // Decoded back: the source's size, and the source's frame 40 (not its neighbours).
    let codec = ffmpeg_next::decoder::find(ffmpeg_next::codec::Id::MJPEG).unwrap();
    let mut decoder = ffmpeg_next::codec::Context::new_with_codec(codec)
        .decoder()
        .video()
        .unwrap();
    decoder
        .send_packet(&ffmpeg_next::Packet::copy(&jpeg))
        .unwrap();
    decoder.send_eof().unwrap();
    let mut picture = ffmpeg_next::frame::Video::empty();
    decoder.receive_frame(&mut picture).unwrap();
    assert_eq!((picture.width(), picture.height()), (320, 240));
    let source = archive.frames("source");
    let at = |i: usize| &archive.source_pictures[&source[i].pts];
    // JPEG's luma is full range, the source's video range: compare the shape, not levels.
    let score = |i| psnr_full_range(&picture, at(i));
    assert!(
        score(40) > score(39) && score(40) > score(41),
        "{} {} {}",
        score(39),
        score(40),
        score(41)
    );
    // A smaller poster keeps the aspect ratio; an asset without video has none.
    settings.poster_width = 161;
    render_poster(store.clone(), &settings, &frame)
        .await
        .unwrap();
    let mut audio_only = frame.clone();
    audio_only.renditions.retain(|r| r.name() == "audio");
    assert!(matches!(
        render_poster(store, &settings, &audio_only).await,
        Err(VodError::Manifest { .. })
    ));
}

/// PSNR of a full-range (JPEG) luma against a video-range one, the levels mapped.
fn psnr_full_range(full: &ffmpeg_next::frame::Video, video: &ffmpeg_next::frame::Video) -> f64 {
    let mut mapped = video.clone();
    let stride = mapped.stride(0);
    let (w, h) = (mapped.width() as usize, mapped.height() as usize);
    let luma = mapped.data_mut(0);
    for y in 0..h {
        for x in 0..w {
            let v = f64::from(luma[y * stride + x]);
            luma[y * stride + x] = ((v - 16.0) * 255.0 / 219.0).round().clamp(0.0, 255.0) as u8;
        }
    }
    psnr(full, &mapped)
}

/// Time to render a frame-precise asset of the default ladder on a 1080p30 publisher
/// (source with B-frames + 720p, 480p, 360p, 240p + audio) with the default settings. The
/// work is the boundary segments' only, the same for any range length: the middle
/// segments are referenced unread. Run with
/// `cargo test -p floodlight-transcoder --release vod::tests::default_ladder -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: makes 8 s of 1080p with the ffmpeg CLI and a ladder first"]
async fn default_ladder_1080p_render_time() {
    let path = std::env::temp_dir().join(format!("floodlight-vod-{}.flv", std::process::id()));
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "8",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
            "-bf",
            "2",
        ])
        .args([
            "-g",
            "60",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            "6M",
        ])
        .args(["-c:a", "aac", "-ac", "2", "-b:a", "128k", "-f", "flv"])
        .arg(&path)
        .status()
        .expect("ffmpeg (scripts/install-deps.sh)");
    assert!(status.success());
    let capture = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let settings = VodSettings::default();
    let rung = |name, size, bitrate_bps, profile| Rung {
        name,
        size,
        bitrate_bps,
        profile,
    };
    use crate::av::H264Profile::{Baseline, High, Main};
    let ladder = [
        rung("720p", (1280, 720), 3_000_000, High),
        rung("480p", (854, 480), 1_400_000, Main),
        rung("360p", (640, 360), 800_000, Main),
        rung("240p", (426, 240), 400_000, Baseline),
    ];
    let started = std::time::Instant::now();
    let archive = build(&capture, &ladder, &settings);
    eprintln!("fixture: {:.1} s", started.elapsed().as_secs_f64());
    let store = archive.store().await;
    // Both cuts mid-GOP in every rendition: the most work a range can take.
    let asset = archive.segment_asset("bench", 1_023, 7_011);
    let started = std::time::Instant::now();
    let frame = render_frame_precise(store.clone(), &settings, asset, &|_| {}, &|| false)
        .await
        .unwrap();
    let render = started.elapsed();
    for rendition in frame.renditions.iter().filter(|r| r.name() != "audio") {
        let head = &rendition.segments[0];
        assert!(
            is_own(&frame, &head.object),
            "{}: its first GOP re-encoded",
            rendition.name()
        );
    }
    let started = std::time::Instant::now();
    render_poster(store, &settings, &frame).await.unwrap();
    eprintln!(
        "frame-precise render: {:.2} s, poster {:.2} s, {} renditions",
        render.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        frame.renditions.len()
    );
}

/// What the end-to-end test checks on the served asset, here on the objects: each
/// rendition, as an HLS VOD playlist (EXT-X-MAP before each init change,
/// EXT-X-DISCONTINUITY where the manifest says), plays through the ffmpeg CLI without an
/// error, every frame of the range decoded.
#[tokio::test]
async fn every_rendition_plays_through_ffmpeg_without_errors() {
    let archive = archive();
    let store = archive.store().await;
    let (start, end) = (frame_ms("source", 10), frame_ms("source", 156));
    let frame = render(&store, archive.segment_asset("ffmpeg", start, end))
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("floodlight-vod-ffmpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for rendition in &frame.renditions {
        let mut playlist = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:3\n");
        playlist.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
        let mut inits: Vec<&str> = Vec::new();
        for (n, segment) in rendition.segments.iter().enumerate() {
            if segment.discontinuity {
                playlist.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if inits.last() != Some(&segment.init.as_str()) {
                let file = format!("{}-init{}.mp4", rendition.name(), inits.len());
                std::fs::write(dir.join(&file), object(&store, &segment.init).await).unwrap();
                playlist.push_str(&format!("#EXT-X-MAP:URI=\"{file}\"\n"));
                inits.push(&segment.init);
            }
            let file = format!("{}-{n}.m4s", rendition.name());
            std::fs::write(dir.join(&file), object(&store, &segment.object).await).unwrap();
            playlist.push_str(&format!(
                "#EXTINF:{:.5},\n{file}\n",
                segment.duration_secs()
            ));
        }
        playlist.push_str("#EXT-X-ENDLIST\n");
        let path = dir.join(format!("{}.m3u8", rendition.name()));
        std::fs::write(&path, playlist).unwrap();
        let output = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .expect("ffmpeg (scripts/install-deps.sh)");
        assert!(
            output.status.success(),
            "{}: {}",
            rendition.name(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            "",
            "{}",
            rendition.name()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `data` with 4-byte NAL unit lengths, as 2-byte ones.
fn two_byte_lengths(mut data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len());
    while !data.is_empty() {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        out.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        out.extend_from_slice(&data[4..4 + len]);
        data = &data[4 + len..];
    }
    Bytes::from(out)
}

#[tokio::test]
async fn a_publisher_init_that_cannot_take_in_x264s_parameter_sets_is_followed_by_a_discontinuity()
{
    let archive = archive();
    let store = archive.store().await;
    // The publisher's video with 2-byte NAL unit lengths (lengthSizeMinusOne = 1):
    // x264's samples have 4-byte ones, so one init cannot describe both.
    let mut asset = archive.segment_asset("apart", frame_ms("source", 10), 5000);
    let source = asset
        .renditions
        .iter_mut()
        .find(|r| r.name() == "source")
        .unwrap();
    let init_key = source.segments[0].init.clone();
    let init = read_init(&archive.object(&init_key)).unwrap();
    let floodlight_media::CodecParams::H264(config) = &init.params.codec else {
        panic!("H.264");
    };
    let mut record = config.record.to_vec();
    record[4] = 0xfc | 1;
    let short = floodlight_media::AvcConfig::from_record(Bytes::from(record)).unwrap();
    let short_init =
        floodlight_media::cmaf::write_init(&floodlight_media::TrackParams::video(short)).unwrap();
    let path = |key: &str| Path::parse(key).unwrap();
    store
        .put(&path(&init_key), PutPayload::from(short_init))
        .await
        .unwrap();
    for segment in &mut source.segments {
        let mut bytes = Vec::new();
        for mut read in read_segment(&archive.object(&segment.object), &init).unwrap() {
            for sample in &mut read.fragment.samples {
                sample.data = two_byte_lengths(&sample.data);
            }
            floodlight_media::cmaf::write_fragment(&mut bytes, &read.fragment).unwrap();
        }
        segment.bytes = bytes.len() as u64;
        store
            .put(&path(&segment.object), PutPayload::from(bytes))
            .await
            .unwrap();
    }
    let input = asset.rendition("source").unwrap().clone();

    let frame = render(&store, asset).await.unwrap();
    let out = frame.rendition("source").unwrap();
    // The re-encoded GOP with an init of the asset's own, then the copied GOP with the
    // archived init after EXT-X-DISCONTINUITY (RFC 8216bis §4.4.4.3).
    assert!(is_own(&frame, &out.segments[0].init));
    assert!(!out.segments[0].discontinuity);
    assert!(is_own(&frame, &out.segments[1].object));
    assert_eq!(out.segments[1].init, init_key);
    assert!(out.segments[1].discontinuity);
    assert_eq!(out.segments[2], input.segments[1]);
    // Each segment decodes with its init; the first picture is the frame at the cut.
    let frames = played(&store, out).await;
    let source_frames = archive.frames("source");
    assert_eq!(frames[0].0, source_frames[10].pts);
    let at = |i: usize| &archive.source_pictures[&source_frames[i].pts];
    assert!(psnr(frames[0].2.as_ref().unwrap(), at(10)) > 30.0);
}
