use std::sync::Arc;

use bytes::Bytes;
use floodlight_media::push::{RenditionDescriptor, RenditionKind};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};

use super::*;
use crate::index::SegmentRecord;
use crate::layout::{EventId, RenditionKey, RenditionName};
use crate::reader::{archived_event_span, read_renditions};
use crate::writer::{ArchiveJob, ArchiveWriter, Descriptor, InitVersion, Segment, WriterConfig};

const T0: i64 = 1_765_137_600_000;

fn descriptor(name: &str, kind: RenditionKind) -> RenditionDescriptor {
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
        part_target_ms: 200,
        segment_target_ms: 2000,
        access: Default::default(),
        bandwidth_hint_bps: Some(3_000_000),
        dvr_window_secs: None,
    }
}

fn key(rendition: &str) -> RenditionKey {
    RenditionKey::new(
        EventId::new("final").unwrap(),
        RenditionName::new(rendition).unwrap(),
    )
}

/// Archives `records` of rendition `name` through the real writer.
async fn archive(
    writer: &ArchiveWriter,
    name: &str,
    kind: RenditionKind,
    records: &[SegmentRecord],
) {
    let key = key(name);
    writer
        .try_archive(ArchiveJob::Descriptor(Descriptor {
            rendition: key.clone(),
            descriptor: descriptor(name, kind),
        }))
        .unwrap();
    for version in [0, 1] {
        writer
            .try_archive(ArchiveJob::Init(InitVersion {
                rendition: key.clone(),
                version,
                bytes: Bytes::from_static(b"ftyp+moov"),
            }))
            .unwrap();
    }
    for record in records {
        writer
            .try_archive(ArchiveJob::Segment(Segment {
                rendition: key.clone(),
                record: *record,
                bytes: Bytes::from(vec![7; 100 + record.msn as usize]),
            }))
            .unwrap();
    }
    writer.flush().await;
}

/// Ten 2 s segments from T0; a publisher reconnect (discontinuity, init version 1) at
/// MSN 6 after a 5 s hole.
fn records() -> Vec<SegmentRecord> {
    (0..10)
        .map(|msn| {
            let reconnected = msn >= 6;
            SegmentRecord {
                msn,
                duration_90k: 180_000,
                program_date_time_ms: T0 + msn as i64 * 2000 + if reconnected { 5000 } else { 0 },
                bytes: 0,
                iframe_bytes: Some(40),
                init_version: u32::from(reconnected),
                discontinuity: msn == 6,
                gap: false,
            }
        })
        .collect()
}

async fn archived() -> Arc<dyn ObjectStore> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let writer = ArchiveWriter::spawn(store.clone(), WriterConfig::default()).unwrap();
    archive(&writer, "720p", RenditionKind::Video, &records()).await;
    archive(&writer, "audio", RenditionKind::Audio, &records()).await;
    store
}

fn source(start_ms: i64, end_ms: i64) -> AssetSource {
    AssetSource {
        event_id: EventId::new("final").unwrap(),
        start_ms,
        end_ms,
    }
}

#[tokio::test]
async fn a_segment_asset_references_the_segments_that_overlap_the_range() {
    let store = archived().await;
    let renditions = read_renditions(store.as_ref(), &EventId::new("final").unwrap())
        .await
        .unwrap();
    let names: Vec<&str> = renditions
        .iter()
        .map(|(k, _)| k.rendition.as_str())
        .collect();
    assert_eq!(names, ["720p", "audio"]);
    assert_eq!(renditions[0].1, descriptor("720p", RenditionKind::Video));

    // From inside MSN 3 to inside MSN 7, across the reconnect.
    let asset = AssetId::new("clip-1").unwrap();
    let manifest = segment_asset(
        store.as_ref(),
        asset.clone(),
        source(T0 + 7_000, T0 + 20_500),
    )
    .await
    .unwrap();
    assert_eq!(manifest.precision, Precision::Segment);
    assert_eq!(manifest.renditions.len(), 2);
    let video = manifest.rendition("720p").unwrap();
    let objects: Vec<&str> = video.segments.iter().map(|s| s.object.as_str()).collect();
    assert_eq!(
        objects,
        (3..=7)
            .map(|msn| format!("v1/events/final/renditions/720p/segments/{msn}.m4s"))
            .collect::<Vec<_>>()
    );
    let discontinuities: Vec<bool> = video.segments.iter().map(|s| s.discontinuity).collect();
    assert_eq!(discontinuities, [false, false, false, true, false]);
    assert_eq!(
        video.segments[2].init,
        "v1/events/final/renditions/720p/init/0.mp4"
    );
    assert_eq!(
        video.segments[3].init,
        "v1/events/final/renditions/720p/init/1.mp4"
    );
    assert_eq!(video.segments[0].bytes, 103);
    assert_eq!(video.segments[0].iframe_bytes, Some(40));
    // Covers the range, within one segment at either end.
    assert_eq!(manifest.duration_secs(), 10.0);

    write_manifest(store.as_ref(), &manifest).await.unwrap();
    let read = read_manifest(store.as_ref(), &asset)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, manifest);
}

#[tokio::test]
async fn the_event_span_is_what_the_archive_holds() {
    let store = archived().await;
    let span = archived_event_span(store.as_ref(), &EventId::new("final").unwrap())
        .await
        .unwrap();
    assert_eq!(span, Some((T0, T0 + 5000 + 20_000)));
    let none = archived_event_span(store.as_ref(), &EventId::new("other").unwrap())
        .await
        .unwrap();
    assert_eq!(none, None);
}

#[tokio::test]
async fn deleting_an_asset_removes_its_own_objects_and_nothing_archived() {
    let store = archived().await;
    let asset = AssetId::new("clip-2").unwrap();
    let manifest = segment_asset(store.as_ref(), asset.clone(), source(T0, T0 + 4000))
        .await
        .unwrap();
    write_manifest(store.as_ref(), &manifest).await.unwrap();
    let own = asset.segment(&RenditionName::new("720p").unwrap(), 0);
    store
        .put(&own, Bytes::from_static(b"re-rendered").into())
        .await
        .unwrap();

    delete_asset(store.as_ref(), &asset).await.unwrap();
    assert!(
        read_manifest(store.as_ref(), &asset)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.head(&own).await.is_err());
    assert!(store.head(&key("720p").segment(0)).await.is_ok());
    // Again: nothing left to delete is no error.
    delete_asset(store.as_ref(), &asset).await.unwrap();
}

#[test]
fn a_manifest_names_the_object_when_it_cannot_be_read() {
    let err = AssetManifest::decode("v1/assets/a/manifest.json", b"{\"format\":\"x\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("v1/assets/a/manifest.json: line 1"),
        "{err}"
    );
    let wrong = br#"{"format":"floodlight-asset-manifest","version":2}"#;
    let err = AssetManifest::decode("m.json", wrong)
        .unwrap_err()
        .to_string();
    assert!(err.contains("version 2"), "{err}");
    assert!(AssetId::new("../x").is_err());
}

#[tokio::test]
async fn retention_sweeps_ended_events_but_keeps_what_assets_reference() {
    let store = archived().await;
    // Another event, two days later: not past retention yet.
    let writer = ArchiveWriter::spawn(store.clone(), WriterConfig::default()).unwrap();
    let later: Vec<SegmentRecord> = records()
        .into_iter()
        .map(|r| SegmentRecord {
            program_date_time_ms: r.program_date_time_ms + 2 * 86_400_000,
            ..r
        })
        .collect();
    let other = RenditionKey::new(
        EventId::new("other").unwrap(),
        RenditionName::new("720p").unwrap(),
    );
    for record in &later {
        writer
            .try_archive(ArchiveJob::Segment(Segment {
                rendition: other.clone(),
                record: *record,
                bytes: Bytes::from_static(b"media"),
            }))
            .unwrap();
    }
    writer.flush().await;
    // An asset of MSNs 3 to 7 of the first event.
    let asset = AssetId::new("keep").unwrap();
    let manifest = segment_asset(
        store.as_ref(),
        asset.clone(),
        source(T0 + 7_000, T0 + 20_500),
    )
    .await
    .unwrap();
    write_manifest(store.as_ref(), &manifest).await.unwrap();

    let day = 86_400_000;
    // A day after the first event's archive ended (T0 + 25 s), minus a millisecond.
    let report = crate::sweep(store.as_ref(), T0 + 25_000 + day - 1, day)
        .await
        .unwrap();
    assert_eq!(report, crate::SweepReport::default());

    let report = crate::sweep(store.as_ref(), T0 + 25_000 + day, day)
        .await
        .unwrap();
    assert_eq!(report.events_swept, 1);
    // 5 segments of each rendition and the init version they use.
    let video = key("720p");
    for msn in 3..=7 {
        assert!(
            store.head(&video.segment(msn)).await.is_ok(),
            "MSN {msn} kept"
        );
    }
    assert!(store.head(&video.segment(2)).await.is_err());
    assert!(store.head(&video.segment(8)).await.is_err());
    assert!(store.head(&video.init(0)).await.is_ok());
    assert!(
        store.head(&video.index_head()).await.is_err(),
        "no more start-over"
    );
    assert!(store.head(&video.descriptor()).await.is_err());
    assert_eq!(report.objects_kept_for_assets, 2 * (5 + 2));
    // The asset still plays; the other event is untouched.
    assert!(
        read_manifest(store.as_ref(), &asset)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.head(&other.segment(0)).await.is_ok());
    assert!(store.head(&other.index_head()).await.is_ok());

    // Deleting the asset: the event segments only it used go at the next sweep once
    // they are older than retention (they were stored just now, in this test).
    delete_asset(store.as_ref(), &asset).await.unwrap();
    let now = floodlight_media::clock::unix_millis();
    let report = crate::sweep(store.as_ref(), now, day).await.unwrap();
    assert_eq!(report.objects_deleted, 0, "{report:?}");
    let report = crate::sweep(store.as_ref(), now + day + 1000, day)
        .await
        .unwrap();
    // The first event's 14 leftovers, and by now the second event too.
    assert_eq!(report.events_swept, 2, "{report:?}");
    assert!(store.head(&video.segment(3)).await.is_err());
    assert!(store.head(&video.init(1)).await.is_err());
    assert!(store.head(&other.segment(0)).await.is_err());
}
