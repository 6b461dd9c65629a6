//! An asset's poster: a JPEG of the first picture of its highest video rendition. For a
//! frame-precise asset that first picture is the frame at the range's start.

use std::sync::Arc;

use floodlight_archive::{AssetManifest, AssetSegment};
use floodlight_media::cmaf::{read_init, read_segment};
use floodlight_media::push::RenditionKind;
use floodlight_media::{CodecParams, Frame, TrackKind};
use object_store::ObjectStore;

use super::{VodError, VodSettings, get, put};
use crate::av::{JpegEncoder, VideoDecoder};

/// JPEG quality of the poster (1–100), as the live poster's.
const POSTER_QUALITY: u8 = 80;

/// Writes the poster of `asset` to `v1/assets/{asset_id}/poster.jpg` and returns that key
/// (for `AssetManifest::poster`): the first picture of the video rendition with the most
/// lines, `settings.poster_width` wide at most, its aspect ratio kept.
pub async fn render_poster(
    store: Arc<dyn ObjectStore>,
    settings: &VodSettings,
    asset: &AssetManifest,
) -> Result<String, VodError> {
    let manifest_error = |reason: &str| VodError::Manifest {
        asset_id: asset.asset_id.to_string(),
        reason: reason.to_string(),
    };
    let top = asset
        .renditions
        .iter()
        .filter(|r| r.descriptor.kind == RenditionKind::Video)
        .max_by_key(|r| {
            let d = &r.descriptor;
            (d.height, d.width, d.bandwidth_hint_bps)
        })
        .ok_or_else(|| manifest_error("no video rendition to take a poster from"))?;
    let segment: &AssetSegment = top
        .segments
        .iter()
        .find(|s| !s.gap)
        .ok_or_else(|| manifest_error("the top video rendition has no media"))?;
    let init_bytes = get(&*store, &segment.init).await?;
    let bytes = get(&*store, &segment.object).await?;
    let init = read_init(&init_bytes).map_err(|e| VodError::Corrupt {
        object: segment.init.clone(),
        reason: e.to_string(),
    })?;
    let CodecParams::H264(config) = init.params.codec.clone() else {
        return Err(VodError::Corrupt {
            object: segment.init.clone(),
            reason: "a video rendition's init without H.264".to_string(),
        });
    };
    let corrupt = |reason: String| VodError::Corrupt {
        object: segment.object.clone(),
        reason,
    };
    let fragments = read_segment(&bytes, &init).map_err(|e| corrupt(e.to_string()))?;
    let width_limit = settings.poster_width;
    let (object, rendition) = (segment.object.clone(), top.descriptor.name.clone());
    let jpeg = tokio::task::spawn_blocking(move || {
        let corrupt = |reason: String| VodError::Corrupt {
            object: object.clone(),
            reason,
        };
        let mut decoder = VideoDecoder::new(&config).map_err(|e| corrupt(e.to_string()))?;
        // The first GOP: its first picture in presentation order comes out first.
        let mut first = None;
        'gop: for read in fragments {
            let mut dts = read.fragment.base_media_decode_time as i64;
            for sample in read.fragment.samples {
                if first.is_some() {
                    break 'gop;
                }
                let frame = Frame {
                    track: TrackKind::Video,
                    dts,
                    pts: dts + i64::from(sample.composition_offset),
                    keyframe: sample.keyframe,
                    data: sample.data,
                };
                dts += i64::from(sample.duration);
                decoder.send(&frame).map_err(|e| corrupt(e.to_string()))?;
                first = first.or_else(|| decoder.receive());
            }
        }
        let picture = first
            .or_else(|| decoder.flush().into_iter().next())
            .ok_or_else(|| corrupt("no picture decodes".to_string()))?;
        let (w, h) = (picture.frame.width().max(2), picture.frame.height().max(2));
        let width = width_limit.clamp(2, w) & !1;
        let height = ((u64::from(width) * u64::from(h) / u64::from(w)).max(2) as u32) & !1;
        JpegEncoder::new()
            .encode(&picture.frame, width, height, POSTER_QUALITY)
            .map_err(|e| VodError::Encode {
                rendition,
                reason: format!("the poster JPEG: {e}"),
            })
    })
    .await
    .map_err(|e| VodError::Encode {
        rendition: top.descriptor.name.clone(),
        reason: format!("the poster task failed: {e}"),
    })??;
    let path = asset.asset_id.poster();
    put(&*store, &path, jpeg).await?;
    Ok(path.to_string())
}
