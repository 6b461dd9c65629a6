//! The master playlist of recorded media (start-over, time-shift, a VOD asset): the same
//! shape as the live one (`stream/master.rs`), video variants playing with every audio
//! rendition as one group, start variant first, I-frame playlists for scrubbing, with
//! BANDWIDTH measured over the segments the playlists will list.

use floodlight_media::playlist::{AudioRendition, IFrameVariant, MasterPlaylist, Variant};
use floodlight_media::push::{RenditionDescriptor, RenditionKind};

use crate::resource;
use crate::stream::AUDIO_GROUP;
use crate::stream::master::start_variant_first;

/// One rendition as recorded: its descriptor and what its segments measure.
pub(crate) struct RecordedRendition<'a> {
    pub(crate) descriptor: &'a RenditionDescriptor,
    pub(crate) rate: Rate,
}

/// Bit rates measured over a rendition's segments, bits/s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rate {
    /// The highest segment's (RFC 8216bis §4.4.6.2 BANDWIDTH).
    pub(crate) peak: u64,
    /// All bytes over all seconds (AVERAGE-BANDWIDTH).
    pub(crate) average: u64,
    /// The I-frames alone: the highest I-frame's bytes over its segment's duration.
    pub(crate) iframe_peak: Option<u64>,
}

impl Rate {
    /// Over `(bytes, seconds, I-frame bytes)` of each segment with media.
    pub(crate) fn measure(segments: impl IntoIterator<Item = (u64, f64, Option<u64>)>) -> Rate {
        let mut rate = Rate::default();
        let (mut bytes, mut secs) = (0u64, 0f64);
        for (segment_bytes, duration, iframe_bytes) in segments {
            if duration <= 0.0 || segment_bytes == 0 {
                continue;
            }
            let bps = |b: u64| (b as f64 * 8.0 / duration).ceil() as u64;
            rate.peak = rate.peak.max(bps(segment_bytes));
            if let Some(iframe) = iframe_bytes {
                rate.iframe_peak = Some(rate.iframe_peak.unwrap_or(0).max(bps(iframe)));
            }
            bytes += segment_bytes;
            secs += duration;
        }
        if secs > 0.0 {
            rate.average = (bytes as f64 * 8.0 / secs).ceil() as u64;
        }
        rate
    }
}

/// The master playlist; `suffix` (a query such as `?start=…`, or empty) goes on every
/// playlist URI. `None` when nothing recorded can be played.
pub(crate) fn recorded_master(
    renditions: &[RecordedRendition<'_>],
    suffix: &str,
    start_max_bps: u64,
) -> Option<MasterPlaylist> {
    let of_kind = |kind| {
        renditions
            .iter()
            .filter(move |r| r.descriptor.kind == kind && r.rate.peak > 0)
    };
    let audio: Vec<&RecordedRendition> = of_kind(RenditionKind::Audio).collect();
    let video: Vec<&RecordedRendition> = of_kind(RenditionKind::Video).collect();
    let uri = |name: &str| format!("{}{suffix}", resource::variant_uri(name));
    if video.is_empty() {
        let variants = audio
            .iter()
            .map(|r| {
                variant(
                    r,
                    uri(&r.descriptor.name),
                    r.descriptor.codecs.clone(),
                    r.rate,
                    None,
                )
            })
            .collect::<Vec<_>>();
        return (!variants.is_empty()).then(|| MasterPlaylist {
            variants: start_variant_first(variants, start_max_bps),
            audio: Vec::new(),
            iframe_variants: Vec::new(),
        });
    }
    let audio_peak = audio.iter().map(|r| r.rate.peak).max().unwrap_or(0);
    let audio_average = audio.iter().map(|r| r.rate.average).max().unwrap_or(0);
    let mut audio_codecs: Vec<&str> = Vec::new();
    for r in &audio {
        if !audio_codecs.contains(&r.descriptor.codecs.as_str()) {
            audio_codecs.push(&r.descriptor.codecs);
        }
    }
    let audio_group = (!audio.is_empty()).then(|| AUDIO_GROUP.to_string());
    let variants = video
        .iter()
        .map(|r| {
            let codecs = std::iter::once(r.descriptor.codecs.as_str())
                .chain(audio_codecs.iter().copied())
                .collect::<Vec<_>>()
                .join(",");
            let rate = Rate {
                peak: r.rate.peak.saturating_add(audio_peak),
                average: r.rate.average.saturating_add(audio_average),
                iframe_peak: r.rate.iframe_peak,
            };
            variant(
                r,
                uri(&r.descriptor.name),
                codecs,
                rate,
                audio_group.clone(),
            )
        })
        .collect();
    let variants = start_variant_first(variants, start_max_bps);
    let iframe_variants = variants
        .iter()
        .filter_map(|v| {
            let r = video.iter().find(|r| uri(&r.descriptor.name) == v.uri)?;
            Some(IFrameVariant {
                uri: format!(
                    "{}{suffix}",
                    resource::iframe_playlist_uri(&r.descriptor.name)
                ),
                bandwidth: r.rate.iframe_peak?,
                average_bandwidth: None,
                codecs: r.descriptor.codecs.clone(),
                resolution: r.descriptor.width.zip(r.descriptor.height),
            })
        })
        .collect();
    let audio = audio
        .iter()
        .enumerate()
        .map(|(i, r)| AudioRendition {
            group_id: AUDIO_GROUP.to_string(),
            name: r.descriptor.name.clone(),
            uri: uri(&r.descriptor.name),
            default: i == 0,
            autoselect: true,
            channels: r.descriptor.channels,
            language: None,
        })
        .collect();
    Some(MasterPlaylist {
        variants,
        audio,
        iframe_variants,
    })
}

fn variant(
    r: &RecordedRendition<'_>,
    uri: String,
    codecs: String,
    rate: Rate,
    audio_group: Option<String>,
) -> Variant {
    Variant {
        uri,
        bandwidth: rate.peak,
        average_bandwidth: Some(rate.average),
        codecs,
        resolution: r.descriptor.width.zip(r.descriptor.height),
        frame_rate: r.descriptor.frame_rate,
        audio_group,
    }
}
