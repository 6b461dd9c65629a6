//! One rendition of a frame-precise asset: its boundary segments read, cut ([`cut`]),
//! made ([`render`], on `spawn_blocking`) and written as the asset's own objects; the
//! segments between them referenced as they are, never read.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use floodlight_archive::{AssetId, AssetRendition, AssetSegment, AssetSource, RenditionName};
use floodlight_media::cmaf::{
    Fragment, InitTrack, read_init, read_segment, write_fragment, write_init,
};
use floodlight_media::push::{RenditionDescriptor, RenditionKind};
use floodlight_media::{AvcConfig, CodecParams, TIMESCALE, TrackParams};
use object_store::ObjectStore;

use super::cut::{SegmentCut, Track, Window, cut, first_pts};
use super::params;
use super::render::{Reencode, RenderError, Rendered, SegmentMedia, render};
use super::{VodError, get, put};
use crate::av::RungEncoding;

/// Bit rate a re-encoded GOP of a rendition without a rung profile (the publisher's own
/// video) falls back to when its segments cannot be measured.
const FALLBACK_BITRATE_BPS: u32 = 1_000_000;

/// What every rendition of one asset shares.
pub(super) struct Job<'a> {
    pub(super) store: &'a Arc<dyn ObjectStore>,
    pub(super) asset_id: &'a AssetId,
    pub(super) source: &'a AssetSource,
    pub(super) encoding: RungEncoding,
    pub(super) cancelled: &'a (dyn Fn() -> bool + Send + Sync),
}

/// A rendition under way: the inits it has read, and what it has written.
struct Rendering<'j, 'a> {
    job: &'j Job<'a>,
    name: RenditionName,
    track: Track,
    reencode: Option<Reencode>,
    /// Archived inits by key, read once.
    inits: HashMap<String, Arc<InitTrack>>,
    /// The asset's own inits: their avcC record and key.
    own_inits: Vec<(Bytes, String)>,
    /// Archived inits whose segments are to decode with an init of the asset's own that
    /// also holds a re-encoded GOP's parameter sets, in order of first use: the archived
    /// init's key, the re-encoded GOP's avcC record, and the record holding both
    /// (`params::combined`).
    combined: Vec<Combined>,
    next_segment: u64,
}

struct Combined {
    archived: String,
    taken_in: Bytes,
    config: AvcConfig,
}

impl<'a> Job<'a> {
    /// The frame-precise version of one rendition. `step` is called after each boundary
    /// segment.
    pub(super) async fn render(
        &self,
        rendition: &AssetRendition,
        step: &mut (dyn FnMut() + Send),
    ) -> Result<AssetRendition, VodError> {
        let descriptor = &rendition.descriptor;
        let name = RenditionName::new(descriptor.name.clone())
            .map_err(|e| self.manifest_error(format!("rendition {:?}: {e}", descriptor.name)))?;
        let track = match descriptor.kind {
            RenditionKind::Video => Track::Video,
            RenditionKind::Audio => Track::Audio,
        };
        let reencode = (track == Track::Video).then(|| Reencode {
            encoding: self.encoding.clone(),
            bitrate_bps: bitrate_bps(descriptor, &rendition.segments),
            segment_target_90k: i64::from(descriptor.segment_target_ms) * 90,
        });
        let mut rendering = Rendering {
            job: self,
            name,
            track,
            reencode,
            inits: HashMap::new(),
            own_inits: Vec::new(),
            combined: Vec::new(),
            next_segment: 0,
        };
        let segments = &rendition.segments;
        let media: Vec<usize> = (0..segments.len()).filter(|&i| !segments[i].gap).collect();
        // The first segment with a frame of the range; before it, segments (and gaps)
        // whose frames all fall before the start leave the asset.
        let mut head = None;
        for (k, &i) in media.iter().enumerate() {
            let out = rendering.boundary(&segments[i]).await?;
            step();
            if !out.is_empty() {
                head = Some((k, i, out));
                break;
            }
        }
        let Some((head_k, head_i, mut out)) = head else {
            return Err(self.manifest_error(format!(
                "rendition {}: no frame in the range",
                descriptor.name
            )));
        };
        // The same from the end.
        for &i in media[head_k + 1..].iter().rev() {
            let tail = rendering.boundary(&segments[i]).await?;
            step();
            if !tail.is_empty() {
                out.extend(segments[head_i + 1..i].iter().cloned());
                out.extend(tail);
                break;
            }
        }
        rendering.combine_inits(&mut out).await?;
        mark_init_changes(&mut out, self.asset_id.prefix().as_ref());
        Ok(AssetRendition {
            descriptor: descriptor.clone(),
            segments: out,
        })
    }

    fn manifest_error(&self, reason: String) -> VodError {
        VodError::Manifest {
            asset_id: self.asset_id.to_string(),
            reason,
        }
    }

    /// The segment's frames all lie in the range, by the manifest's timing alone.
    fn inside(&self, segment: &AssetSegment) -> bool {
        let end_90k =
            i128::from(segment.program_date_time_ms) * 90 + i128::from(segment.duration_90k);
        segment.program_date_time_ms >= self.source.start_ms
            && end_90k <= i128::from(self.source.end_ms) * 90
    }
}

impl Rendering<'_, '_> {
    /// A segment at a boundary of the range, as the asset plays it: as archived, or as
    /// objects of the asset's own (none when no frame of it is in the range).
    async fn boundary(&mut self, segment: &AssetSegment) -> Result<Vec<AssetSegment>, VodError> {
        if (self.job.cancelled)() {
            return Err(VodError::Cancelled);
        }
        if segment.gap || self.job.inside(segment) {
            return Ok(vec![segment.clone()]);
        }
        let init = self.init(&segment.init).await?;
        let bytes = get(&**self.job.store, &segment.object).await?;
        let corrupt = |reason: String| VodError::Corrupt {
            object: segment.object.clone(),
            reason,
        };
        let fragments = read_segment(&bytes, &init).map_err(|e| corrupt(e.to_string()))?;
        let media = SegmentMedia::new(fragments).map_err(corrupt)?;
        let window = Window {
            start_ms: self.job.source.start_ms,
            end_ms: self.job.source.end_ms,
            pdt_ms: segment.program_date_time_ms,
            timescale: init.timescale,
        };
        let pieces =
            match cut(&media.timed, &window, self.track).map_err(|e| corrupt(e.to_string()))? {
                SegmentCut::Whole => return Ok(vec![segment.clone()]),
                SegmentCut::Nothing => return Ok(Vec::new()),
                SegmentCut::Pieces(pieces) => pieces,
            };
        let first_pts = first_pts(&media.timed).unwrap_or_default();
        let video = match (&init.params.codec, &self.reencode) {
            (CodecParams::H264(config), Some(reencode)) => Some((config.clone(), reencode.clone())),
            _ => None,
        };
        let rendered = tokio::task::spawn_blocking(move || {
            render(&media, &pieces, video.as_ref().map(|(c, r)| (c, r)))
        })
        .await
        .map_err(|e| self.encode_error(format!("the render task failed: {e}")))?
        .map_err(|e| match e {
            RenderError::Corrupt(reason) => corrupt(reason),
            RenderError::Encode(reason) => self.encode_error(reason),
        })?;
        self.write(segment, &init, &window, first_pts, rendered)
            .await
    }

    fn encode_error(&self, reason: String) -> VodError {
        VodError::Encode {
            rendition: self.name.to_string(),
            reason,
        }
    }

    /// An archived init, read and checked once per rendition.
    async fn init(&mut self, key: &str) -> Result<Arc<InitTrack>, VodError> {
        if let Some(init) = self.inits.get(key) {
            return Ok(init.clone());
        }
        let bytes = get(&**self.job.store, key).await?;
        let corrupt = |reason: String| VodError::Corrupt {
            object: key.to_string(),
            reason,
        };
        let init = read_init(&bytes).map_err(|e| corrupt(e.to_string()))?;
        match (&init.params.codec, self.track) {
            // Re-encoded pictures are timed on the encoder's 90 kHz `Frame` timeline, the
            // timescale the packager writes video in.
            (CodecParams::H264(_), Track::Video) if init.timescale == TIMESCALE => {}
            (CodecParams::Aac(_), Track::Audio) => {}
            (codec, _) => {
                return Err(corrupt(format!(
                    "a {:?} rendition cannot decode with this init ({} at timescale {})",
                    self.track,
                    match codec {
                        CodecParams::H264(_) => "H.264",
                        CodecParams::Aac(_) => "AAC",
                        CodecParams::Opus(_) => "Opus",
                    },
                    init.timescale
                )));
            }
        }
        let init = Arc::new(init);
        self.inits.insert(key.to_string(), init.clone());
        Ok(init)
    }

    /// The key of the asset's own init for a re-encoded GOP's configuration, written the
    /// first time it is needed.
    async fn own_init(&mut self, config: AvcConfig) -> Result<String, VodError> {
        if let Some((_, key)) = self.own_inits.iter().find(|(r, _)| *r == config.record) {
            return Ok(key.clone());
        }
        let n = u32::try_from(self.own_inits.len()).unwrap_or(u32::MAX);
        let path = self.job.asset_id.init(&self.name, n);
        let record = config.record.clone();
        let bytes = write_init(&TrackParams::video(config))
            .map_err(|e| self.encode_error(format!("the new init: {e}")))?;
        put(&**self.job.store, &path, bytes).await?;
        self.own_inits.push((record, path.to_string()));
        Ok(path.to_string())
    }

    /// Has the archived init `key` take in a re-encoded GOP's parameter sets when one
    /// record can hold both; otherwise gives the configuration back, to decode with an
    /// init of its own.
    fn take_in(&mut self, key: &str, archived: &AvcConfig, config: AvcConfig) -> Option<AvcConfig> {
        match self.combined.iter().find(|c| c.archived == key) {
            Some(combined) if combined.taken_in == config.record => None,
            Some(_) => Some(config),
            None => match params::combined(archived, &config) {
                Some(both) => {
                    self.combined.push(Combined {
                        archived: key.to_string(),
                        taken_in: config.record,
                        config: both,
                    });
                    None
                }
                None => Some(config),
            },
        }
    }

    /// Writes the inits that hold archived and re-encoded parameter sets together, and
    /// points every segment that decoded with such an archived init at its new one.
    async fn combine_inits(&mut self, segments: &mut [AssetSegment]) -> Result<(), VodError> {
        for combined in std::mem::take(&mut self.combined) {
            let own = self.own_init(combined.config).await?;
            for segment in segments.iter_mut().filter(|s| s.init == combined.archived) {
                segment.init = own.clone();
            }
        }
        Ok(())
    }

    /// Writes the rendered pieces of `segment` as the asset's own segments: consecutive
    /// pieces that decode with the same init share one object, one fragment a piece.
    async fn write(
        &mut self,
        segment: &AssetSegment,
        init: &InitTrack,
        window: &Window,
        first_pts: i64,
        rendered: Vec<Rendered>,
    ) -> Result<Vec<AssetSegment>, VodError> {
        let archived = match &init.params.codec {
            CodecParams::H264(config) => Some(config),
            _ => None,
        };
        // Where each piece's samples decode: with the archived init (copies; a re-encoded
        // GOP with the archived parameter sets; one whose sets the archived init can take
        // in beside its own), or only with an init of their own.
        let mut groups: Vec<(Option<AvcConfig>, Vec<Fragment>)> = Vec::new();
        for piece in rendered {
            let own = match (piece.config, archived) {
                (Some(config), Some(archived)) if config.record != archived.record => {
                    self.take_in(&segment.init, archived, config)
                }
                _ => None,
            };
            match groups.last_mut() {
                Some((last, fragments))
                    if last.as_ref().map(|c| &c.record) == own.as_ref().map(|c| &c.record) =>
                {
                    fragments.push(piece.fragment)
                }
                _ => groups.push((own, vec![piece.fragment])),
            }
        }
        let mut out = Vec::with_capacity(groups.len());
        for (n, (config, fragments)) in groups.into_iter().enumerate() {
            let init_key = match config {
                None => segment.init.clone(),
                Some(config) => self.own_init(config).await?,
            };
            let mut bytes = Vec::new();
            let mut iframe_bytes = None;
            let (mut ticks, mut first_presented) = (0u64, i64::MAX);
            for fragment in &fragments {
                let start = bytes.len();
                write_fragment(&mut bytes, fragment)
                    .map_err(|e| self.encode_error(format!("writing a fragment: {e}")))?;
                let first = &fragment.samples[0];
                if start == 0 && self.track == Track::Video && first.keyframe {
                    // moof, mdat header and the sync sample: the I-frame playlist's range.
                    let payload: usize = fragment.samples.iter().map(|s| s.data.len()).sum();
                    iframe_bytes = Some((bytes.len() - payload + first.data.len()) as u64);
                }
                let mut dts = fragment.base_media_decode_time as i64;
                for sample in &fragment.samples {
                    first_presented =
                        first_presented.min(dts + i64::from(sample.composition_offset));
                    dts += i64::from(sample.duration);
                    ticks += u64::from(sample.duration);
                }
            }
            let path = self.job.asset_id.segment(&self.name, self.next_segment);
            self.next_segment += 1;
            let size = bytes.len() as u64;
            put(&**self.job.store, &path, Bytes::from(bytes)).await?;
            out.push(AssetSegment {
                object: path.to_string(),
                init: init_key,
                duration_90k: to_90k(ticks, init.timescale),
                program_date_time_ms: window.date_ms(first_presented, first_pts),
                bytes: size,
                iframe_bytes,
                discontinuity: n == 0 && segment.discontinuity,
                gap: false,
            });
        }
        Ok(out)
    }
}

/// EXT-X-DISCONTINUITY wherever the init changes next to one of the asset's own
/// segments: a re-encoded GOP's SPS/PPS and the archived ones are different encoding
/// parameters (RFC 8216bis §4.4.4.3). Changes between archived segments keep the
/// archive's flags.
fn mark_init_changes(segments: &mut [AssetSegment], asset_prefix: &str) {
    let own = |s: &AssetSegment| {
        s.object
            .strip_prefix(asset_prefix)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    for i in 1..segments.len() {
        if segments[i].init != segments[i - 1].init && (own(&segments[i]) || own(&segments[i - 1]))
        {
            segments[i].discontinuity = true;
        }
    }
}

/// The bit rate re-encoded GOPs of a rendition get: its rung's (`bandwidth_hint_bps`),
/// or for the publisher's own video what its segments in the asset average.
fn bitrate_bps(descriptor: &RenditionDescriptor, segments: &[AssetSegment]) -> u32 {
    if let Some(hint) = descriptor.bandwidth_hint_bps.filter(|&h| h > 0) {
        return u32::try_from(hint).unwrap_or(u32::MAX);
    }
    let media = segments.iter().filter(|s| !s.gap);
    let (bytes, ticks) = media.fold((0u128, 0u128), |(b, t), s| {
        (b + u128::from(s.bytes), t + u128::from(s.duration_90k))
    });
    if ticks == 0 || bytes == 0 {
        return FALLBACK_BITRATE_BPS;
    }
    u32::try_from(bytes * 8 * u128::from(TIMESCALE) / ticks).unwrap_or(u32::MAX)
}

/// Ticks of `timescale` on the 90 kHz timeline, rounded to the nearest.
fn to_90k(ticks: u64, timescale: u32) -> u64 {
    let ts = u128::from(timescale.max(1));
    ((u128::from(ticks) * u128::from(TIMESCALE) * 2 + ts) / (2 * ts)) as u64
}
