//! Benchmark helper (`bench/vod.sh`): lengthens an event's archive to `SECONDS` of media
//! by appending copies of the event's own archived segments through [`ArchiveWriter`],
//! so that a `segment` asset of an hour can be timed without publishing for an hour.
//!
//! Per rendition, the archived non-gap segments (all but the last, which a publisher's end
//! may have cut short) are the template. Copies of them, in order and round again, are
//! appended with the MSNs continuing the rendition's last one and PROGRAM-DATE-TIMEs
//! continuing where its last segment ends (summed on the 90 kHz timeline, so an hour does
//! not drift), with their own bytes, init version and I-frame size. Each round's first copy
//! is marked `discontinuity`: its media timestamps restart, as they would after a publisher
//! reconnect, so the result is still a timeline a player may follow.
//!
//! Run it on an archive no process is writing (stop `floodlight up` first): the writer
//! merges its index writes with the stored chunks once, as a restarted origin does.
//!
//! Usage: `extend_archive DATA_DIR EVENT_ID SECONDS` (the local archive of `floodlight up
//! --data-dir DATA_DIR` with the default `[archive]`: `DATA_DIR/archive`). Prints one JSON
//! line: renditions, segments and bytes appended, and the event's archived span.

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use floodlight_archive::reader::{read_chunk, read_head};
use floodlight_archive::{
    ArchiveConfig, ArchiveJob, ArchiveWriter, EventId, ObjectStore, RenditionKey, Segment,
    SegmentRecord, archived_event_span, open_store, read_renditions,
};
use object_store::ObjectStoreExt;

/// Segments handed to the writer between two flushes: under its queue (so nothing is
/// dropped as a gap), and enough to keep every rendition's lane busy.
const BATCH: usize = 128;

type AnyError = Box<dyn Error + Send + Sync>;

/// One rendition's appended segments, in MSN order.
struct Appended {
    key: RenditionKey,
    segments: Vec<(SegmentRecord, Bytes)>,
}

#[tokio::main]
async fn main() -> Result<(), AnyError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data_dir, event_id, seconds] = args.as_slice() else {
        return Err("usage: extend_archive DATA_DIR EVENT_ID SECONDS".into());
    };
    let data_dir = PathBuf::from(data_dir);
    let event_id = EventId::new(event_id.as_str())?;
    let target_ms: i64 = (seconds.parse::<f64>()? * 1000.0) as i64;

    let config = ArchiveConfig::default();
    let store = open_store(&config, &data_dir)?;
    let (first_ms, _) = archived_event_span(store.as_ref(), &event_id)
        .await?
        .ok_or("nothing of the event is archived")?;
    let end_ms = first_ms + target_ms;

    let mut plan = Vec::new();
    for (key, _) in read_renditions(store.as_ref(), &event_id).await? {
        plan.push(extension(store.as_ref(), key, end_ms).await?);
    }
    if plan.is_empty() {
        return Err("the event has no archived rendition".into());
    }

    let started = Instant::now();
    let writer = ArchiveWriter::spawn(store.clone(), config.writer.clone())?;
    let longest = plan.iter().map(|a| a.segments.len()).max().unwrap_or(0);
    let (mut segments, mut bytes, mut since_flush) = (0usize, 0u64, 0usize);
    // Renditions interleaved, one segment each in turn, as the live edge archives them.
    for i in 0..longest {
        for appended in &plan {
            let Some((record, data)) = appended.segments.get(i) else {
                continue;
            };
            writer.try_archive(ArchiveJob::Segment(Segment {
                rendition: appended.key.clone(),
                record: *record,
                bytes: data.clone(),
            }))?;
            segments += 1;
            bytes += data.len() as u64;
            since_flush += 1;
            if since_flush == BATCH {
                writer.flush().await;
                since_flush = 0;
            }
        }
    }
    writer.flush().await;
    let status = writer.event_status(&event_id);
    if status.degraded {
        return Err(format!("the writer reports {status}").into());
    }
    let (span_start, span_end) = archived_event_span(store.as_ref(), &event_id)
        .await?
        .ok_or("the event's archive vanished")?;
    println!(
        "{}",
        serde_json::json!({
            "event_id": event_id.as_str(),
            "renditions": plan.len(),
            "segments_appended": segments,
            "bytes_appended": bytes,
            "write_secs": started.elapsed().as_secs_f64(),
            "archived_start_ms": span_start,
            "archived_end_ms": span_end,
            "archived_secs": (span_end - span_start) as f64 / 1000.0,
        })
    );
    Ok(())
}

/// The copies that carry `key`'s archive on to `end_ms`.
async fn extension(
    store: &dyn ObjectStore,
    key: RenditionKey,
    end_ms: i64,
) -> Result<Appended, AnyError> {
    let head = read_head(store, &key).await?;
    let mut records = Vec::new();
    for chunk in head.chunks() {
        records.extend_from_slice(read_chunk(store, &key, chunk.chunk).await?.records());
    }
    let last = *records.last().ok_or_else(|| format!("{key}: no records"))?;
    let mut template: Vec<SegmentRecord> = records.iter().filter(|r| !r.gap).copied().collect();
    if template.len() > 2 {
        template.pop();
    }
    if template.is_empty() {
        return Err(format!("{key}: no archived segment to copy").into());
    }
    let mut template_bytes = Vec::with_capacity(template.len());
    for record in &template {
        let object = key.segment(record.msn);
        template_bytes.push(store.get(&object).await?.bytes().await?);
    }

    // PDTs continue from where the last record ends, summed in 90 kHz ticks.
    let base_ms = last.program_date_time_ms + (last.duration_90k as i64 + 45) / 90;
    let mut ticks: i64 = 0;
    let mut msn = last.msn;
    let mut segments = Vec::new();
    'rounds: loop {
        for (i, (record, bytes)) in template.iter().zip(&template_bytes).enumerate() {
            let pdt = base_ms + (ticks + 45) / 90;
            if pdt >= end_ms {
                break 'rounds;
            }
            msn += 1;
            segments.push((
                SegmentRecord {
                    msn,
                    program_date_time_ms: pdt,
                    discontinuity: i == 0,
                    gap: false,
                    ..*record
                },
                bytes.clone(),
            ));
            ticks += record.duration_90k as i64;
        }
    }
    Ok(Appended { key, segments })
}
