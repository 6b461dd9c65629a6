//! The master playlist across a stream's renditions: when it can be answered, which
//! renditions it offers and in which order (ARCHITECTURE.md, LL-HLS packaging rules).

use floodlight_media::playlist::{AudioRendition, IFrameVariant, MasterPlaylist, Variant};
use floodlight_media::push::{RenditionDescriptor, RenditionKind};

use super::{AUDIO_GROUP, StreamCore};
use crate::resource;
use crate::window::{Bandwidth, RenditionWindow};

impl StreamCore {
    /// The master playlist can be answered: the stream ended, or no started rendition
    /// still lacks the BANDWIDTH it may declare ([`RenditionWindow::variant_bandwidth`]:
    /// an unhinted video rung waits for its first complete segment) and either every
    /// rendition in the ladder has one or a rendition of the kind that makes the variants
    /// has a complete segment already, so a rung declared later than the others, or
    /// starting later, is not waited for: it is left out of this master rather than
    /// holding every viewer's startup until the blocking timeout.
    pub(crate) fn master_ready(&self) -> bool {
        if self.ended {
            return true;
        }
        let ladder: Vec<&RenditionWindow> = self.ladder().collect();
        if ladder.is_empty() {
            return false;
        }
        let variant_kind = if ladder
            .iter()
            .any(|w| w.descriptor().kind == RenditionKind::Video)
        {
            RenditionKind::Video
        } else {
            RenditionKind::Audio
        };
        let unsettled = ladder
            .iter()
            .any(|w| w.bandwidth().is_some() && w.variant_bandwidth().is_none());
        !unsettled
            && (ladder.iter().all(|w| w.variant_bandwidth().is_some())
                || ladder
                    .iter()
                    .any(|w| w.descriptor().kind == variant_kind && w.has_complete_segment()))
    }

    /// Whether the master playlist and the rendition reports offer the rendition: not
    /// shed, and not resumed without a new part yet.
    pub(super) fn offered(&self, window: &RenditionWindow) -> bool {
        !self.is_shed(window) && !window.is_resuming()
    }

    /// The renditions the master offers.
    pub(super) fn ladder(&self) -> impl Iterator<Item = &RenditionWindow> {
        self.renditions.iter().filter(|w| self.offered(w))
    }

    /// The master playlist; `None` while it cannot be right yet.
    ///
    /// Players load a master playlist once and keep it for the session, so what it says a
    /// variant plays must be right from the first answer, while BANDWIDTH may be an
    /// estimate. Hence:
    /// - Video renditions are the variants, each playing with the audio group. Only video
    ///   renditions whose BANDWIDTH can be right are listed
    ///   ([`RenditionWindow::variant_bandwidth`]; an unlisted rung costs a quality choice,
    ///   not the picture); with video declared but none started: `None`, since an
    ///   audio-only master would leave those players without picture.
    /// - Every declared audio rendition is in the group, started or not (its playlist fills
    ///   when its parts land), so a variant never loses its sound. CODECS comes from the
    ///   descriptors (RFC 8216bis §4.4.6.2: every format the variant may play); BANDWIDTH
    ///   adds the highest measured audio peak, none while no audio has parts yet.
    /// - A stream without video lists its audio renditions that have parts as variants.
    pub(crate) fn master_playlist(&self) -> Option<MasterPlaylist> {
        let declared = |kind| self.ladder().filter(move |w| w.descriptor().kind == kind);
        let started =
            |kind| declared(kind).filter_map(|w| w.bandwidth().map(|b| (w.descriptor(), b)));
        let settled = |kind| {
            declared(kind).filter_map(|w| w.variant_bandwidth().map(|b| (w.descriptor(), b)))
        };
        if declared(RenditionKind::Video).next().is_none() {
            let variants: Vec<Variant> = started(RenditionKind::Audio)
                .map(|(d, b)| variant(d, b, d.codecs.clone(), None))
                .collect();
            let variants =
                start_variant_first(variants, self.limits.start_variant_max_bandwidth_bps);
            return (!variants.is_empty()).then_some(MasterPlaylist {
                variants,
                audio: Vec::new(),
                iframe_variants: Vec::new(),
            });
        }
        // Only rungs whose BANDWIDTH can be right (see `master_ready`); all started ones
        // when none is, as after the blocking timeout, rather than no picture at all.
        let mut video: Vec<(&RenditionDescriptor, Bandwidth)> =
            settled(RenditionKind::Video).collect();
        if video.is_empty() {
            video = started(RenditionKind::Video).collect();
        }
        if video.is_empty() {
            return None;
        }
        let audio_peak = started(RenditionKind::Audio)
            .map(|(_, b)| b.peak)
            .max()
            .unwrap_or(0);
        let audio_average = started(RenditionKind::Audio)
            .map(|(_, b)| b.average)
            .max()
            .unwrap_or(0);
        let audio: Vec<&RenditionDescriptor> = declared(RenditionKind::Audio)
            .map(RenditionWindow::descriptor)
            .collect();
        let mut audio_codecs: Vec<&str> = Vec::new();
        for descriptor in &audio {
            if !audio_codecs.contains(&descriptor.codecs.as_str()) {
                audio_codecs.push(&descriptor.codecs);
            }
        }
        let audio_group = (!audio.is_empty()).then(|| AUDIO_GROUP.to_string());
        let variants: Vec<Variant> = video
            .iter()
            .map(|&(descriptor, bandwidth)| {
                let codecs =
                    std::iter::once(descriptor.codecs.as_str()).chain(audio_codecs.iter().copied());
                let total = Bandwidth {
                    peak: bandwidth.peak.saturating_add(audio_peak),
                    average: bandwidth.average.saturating_add(audio_average),
                    current: bandwidth.current,
                };
                variant(
                    descriptor,
                    total,
                    codecs.collect::<Vec<_>>().join(","),
                    audio_group.clone(),
                )
            })
            .collect();
        let audio = audio
            .iter()
            .enumerate()
            .map(|(i, descriptor)| AudioRendition {
                group_id: AUDIO_GROUP.to_string(),
                name: descriptor.name.clone(),
                uri: resource::variant_uri(&descriptor.name),
                default: i == 0,
                autoselect: true,
                channels: descriptor.channels,
                language: None,
            })
            .collect();
        let variants = start_variant_first(variants, self.limits.start_variant_max_bandwidth_bps);
        // The I-frame playlists, in the variants' order (RFC 8216bis §4.4.6.3): scrubbing
        // for every rung a player may be on.
        let iframe_variants = variants
            .iter()
            .filter_map(|variant| {
                let window = declared(RenditionKind::Video)
                    .find(|w| resource::variant_uri(&w.descriptor().name) == variant.uri)?;
                let bandwidth = window.iframe_bandwidth()?;
                let descriptor = window.descriptor();
                Some(IFrameVariant {
                    uri: resource::iframe_playlist_uri(&descriptor.name),
                    bandwidth: bandwidth.peak,
                    average_bandwidth: Some(bandwidth.average),
                    codecs: descriptor.codecs.clone(),
                    resolution: descriptor.width.zip(descriptor.height),
                })
            })
            .collect();
        Some(MasterPlaylist {
            variants,
            audio,
            iframe_variants,
        })
    }
}

/// Variants by BANDWIDTH, highest first, with the start variant moved to the top.
/// Apple's HLS authoring spec: a player starts with the first variant listed (hls.js
/// likewise takes the first listed as its start level), before it has measured the
/// network. The top rung would stall phones on startup, the bottom one would show
/// every viewer a blurry first seconds: the start variant is the highest one at or
/// below `start_max_bps` (`start_variant_max_bandwidth_bps`, a 720p rung by default), or
/// the lowest when all are above it. The rest follow highest first, the order the
/// issue's operators read a ladder in.
pub(crate) fn start_variant_first(mut variants: Vec<Variant>, start_max_bps: u64) -> Vec<Variant> {
    variants.sort_by(|a, b| b.bandwidth.cmp(&a.bandwidth).then(a.uri.cmp(&b.uri)));
    let start = variants
        .iter()
        .position(|v| v.bandwidth <= start_max_bps)
        .unwrap_or(variants.len().saturating_sub(1));
    if start < variants.len() {
        let first = variants.remove(start);
        variants.insert(0, first);
    }
    variants
}

fn variant(
    descriptor: &RenditionDescriptor,
    bandwidth: Bandwidth,
    codecs: String,
    audio_group: Option<String>,
) -> Variant {
    Variant {
        uri: resource::variant_uri(&descriptor.name),
        bandwidth: bandwidth.peak,
        average_bandwidth: Some(bandwidth.average),
        codecs,
        resolution: descriptor.width.zip(descriptor.height),
        frame_rate: descriptor.frame_rate,
        audio_group,
    }
}
