//! The LL-HLS playlist model (RFC 8216bis) and its renderer: plain data in, text out.
//!
//! The origin fills these structs from its live window; everything that decides how the
//! text looks (tag order, attribute formats, version, delta-update skipping) lives here
//! so every replica renders the same bytes for the same window.

/// A media playlist for one rendition of a live (or ended) stream.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    /// EXT-X-TARGETDURATION, whole seconds, ≥ every EXTINF rounded (§4.4.3.1).
    pub target_duration: u32,
    /// EXT-X-PART-INF PART-TARGET, seconds; fixed for the stream's life (§4.4.3.7).
    pub part_target: f64,
    /// EXT-X-SERVER-CONTROL (§4.4.3.8).
    pub server_control: ServerControl,
    /// EXT-X-MEDIA-SEQUENCE: the MSN of `segments[0]`.
    pub media_sequence: u64,
    /// EXT-X-DISCONTINUITY-SEQUENCE: discontinuities before `segments[0]`.
    pub discontinuity_sequence: u64,
    /// Oldest first. The last entry may be the segment in progress (`uri == None`), which
    /// has only parts.
    pub segments: Vec<SegmentEntry>,
    /// EXT-X-PRELOAD-HINT TYPE=PART for the part after the last one (§4.4.5.3).
    pub preload_hint: Option<String>,
    /// EXT-X-RENDITION-REPORT for each other rendition (§4.4.5.4).
    pub rendition_reports: Vec<RenditionReport>,
    /// EXT-X-ENDLIST: the stream has ended; no preload hint is rendered then.
    pub ended: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerControl {
    pub can_block_reload: bool,
    /// PART-HOLD-BACK, seconds, ≥ 3 × PART-TARGET (§4.4.3.8).
    pub part_hold_back: f64,
    /// CAN-SKIP-UNTIL, seconds, ≥ 6 × TARGETDURATION (§4.4.3.8); `None` = no delta updates.
    pub can_skip_until: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SegmentEntry {
    pub msn: u64,
    /// EXTINF, seconds. For the segment in progress: the sum of its parts so far.
    pub duration: f64,
    /// `None` while the segment is still being written (only its parts are listed).
    pub uri: Option<String>,
    /// EXT-X-PROGRAM-DATE-TIME, milliseconds since the Unix epoch (§4.4.4.6).
    pub program_date_time_ms: Option<i64>,
    /// EXT-X-DISCONTINUITY before this segment (§4.4.4.3).
    pub discontinuity: bool,
    /// EXT-X-MAP URI of this segment's init section. The renderer writes EXT-X-MAP before
    /// the first rendered segment and wherever the URI changes (§4.4.4.5).
    pub map_uri: String,
    /// EXT-X-PART tags, in order. Empty once the parts have aged out of the playlist.
    pub parts: Vec<PartEntry>,
    /// EXT-X-GAP (§4.4.4.7): a segment number the stream skipped; it has no media and
    /// clients do not load its URI.
    pub gap: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartEntry {
    /// DURATION, seconds.
    pub duration: f64,
    pub uri: String,
    /// INDEPENDENT=YES: the part starts with a sync sample (§4.4.4.9).
    pub independent: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RenditionReport {
    pub uri: String,
    pub last_msn: u64,
    pub last_part: u32,
}

/// Which form of a media playlist the client asked for (`_HLS_skip`, §6.2.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeltaUpdate {
    /// The whole playlist.
    #[default]
    Full,
    /// `_HLS_skip=YES`: replace segments older than CAN-SKIP-UNTIL with EXT-X-SKIP.
    Skip,
    /// `_HLS_skip=v2`: as `Skip`, also skipping EXT-X-DATERANGE tags.
    SkipV2,
}

/// A multivariant ("master") playlist (§4.4.6).
#[derive(Debug, Clone, PartialEq)]
pub struct MasterPlaylist {
    /// In the order listed; players start with the first (Apple HLS authoring spec).
    pub variants: Vec<Variant>,
    pub audio: Vec<AudioRendition>,
    /// EXT-X-I-FRAME-STREAM-INF, one per video rendition with an I-frame playlist.
    pub iframe_variants: Vec<IFrameVariant>,
}

/// EXT-X-I-FRAME-STREAM-INF (§4.4.6.3): an I-frame playlist for trick play and scrubbing.
#[derive(Debug, Clone, PartialEq)]
pub struct IFrameVariant {
    pub uri: String,
    /// Peak bit rate of the I-frames alone: I-frame bytes over the interval each one
    /// stands for, bits/s.
    pub bandwidth: u64,
    pub average_bandwidth: Option<u64>,
    /// The video codec alone (an I-frame playlist has no audio).
    pub codecs: String,
    pub resolution: Option<(u32, u32)>,
}

/// An I-frame playlist (§4.4.3.6 EXT-X-I-FRAMES-ONLY): one entry per I-frame, each a byte
/// range of a media segment. No parts, no blocking: players reload it as a plain live
/// playlist (§6.3.4).
#[derive(Debug, Clone, PartialEq)]
pub struct IFramePlaylist {
    pub target_duration: u32,
    /// EXT-X-MEDIA-SEQUENCE: the number of `entries[0]`.
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub entries: Vec<IFrameEntry>,
    /// EXT-X-ENDLIST.
    pub ended: bool,
}

/// One I-frame (§4.4.3.6): EXTINF is the time until the next I-frame.
#[derive(Debug, Clone, PartialEq)]
pub struct IFrameEntry {
    pub duration: f64,
    /// The media segment holding the I-frame.
    pub uri: String,
    /// EXT-X-BYTERANGE length and offset into `uri` (§4.4.4.2); `None` for a segment
    /// number the stream skipped or a segment without an I-frame to address, rendered
    /// with EXT-X-GAP (§4.4.4.7) so later entries keep their numbers.
    pub byte_range: Option<(u64, u64)>,
    pub program_date_time_ms: Option<i64>,
    pub discontinuity: bool,
    /// EXT-X-MAP URI, written before the first entry and wherever it changes (§4.4.4.5).
    pub map_uri: String,
}

/// EXT-X-STREAM-INF (§4.4.6.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: String,
    /// Peak segment bit rate, bits/s, audio group included.
    pub bandwidth: u64,
    pub average_bandwidth: Option<u64>,
    /// RFC 6381 codec strings of every track the variant plays, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
    /// GROUP-ID of the EXT-X-MEDIA TYPE=AUDIO group this variant plays with.
    pub audio_group: Option<String>,
}

/// EXT-X-MEDIA TYPE=AUDIO (§4.4.6.1).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioRendition {
    pub group_id: String,
    pub name: String,
    pub uri: String,
    pub default: bool,
    pub autoselect: bool,
    pub channels: Option<u8>,
    pub language: Option<String>,
}

/// Playlists with EXT-X-MAP need protocol version 6 (RFC 8216bis §7); EXT-X-SKIP needs 9.
/// A playlist that offers delta updates (CAN-SKIP-UNTIL) says 9 in its full form too, so a
/// client sees one version whichever form it asks for.
const VERSION_FMP4: u8 = 6;
const VERSION_DELTA_UPDATES: u8 = 9;

impl MediaPlaylist {
    /// Renders the playlist text; `delta` selects a delta update (§6.2.5.1).
    ///
    /// A delta update replaces the oldest segments, those starting more than CAN-SKIP-UNTIL
    /// seconds before the end of the playlist (the Skip Boundary, §4.4.3.8, §6.2.5.1), with
    /// one EXT-X-SKIP (§4.4.5.2). The header stays that of the full playlist: the same
    /// EXT-X-MEDIA-SEQUENCE and EXT-X-DISCONTINUITY-SEQUENCE, as the skipped segments are
    /// still counted. `SkipV2` also skips EXT-X-DATERANGE tags, which this model has none
    /// of, so both forms render alike. Without CAN-SKIP-UNTIL the full playlist is served.
    pub fn render(&self, delta: DeltaUpdate) -> String {
        let mut out = String::new();
        line(&mut out, format_args!("#EXTM3U"));
        let version = if self.server_control.can_skip_until.is_some() {
            VERSION_DELTA_UPDATES
        } else {
            VERSION_FMP4
        };
        line(&mut out, format_args!("#EXT-X-VERSION:{version}"));
        line(
            &mut out,
            format_args!("#EXT-X-TARGETDURATION:{}", self.target_duration),
        );
        let mut server_control = Vec::new();
        if self.server_control.can_block_reload {
            server_control.push("CAN-BLOCK-RELOAD=YES".to_owned());
        }
        if let Some(skip) = self.server_control.can_skip_until {
            server_control.push(format!("CAN-SKIP-UNTIL={}", attribute_decimal(skip)));
        }
        server_control.push(format!(
            "PART-HOLD-BACK={}",
            attribute_decimal(self.server_control.part_hold_back)
        ));
        line(
            &mut out,
            format_args!("#EXT-X-SERVER-CONTROL:{}", server_control.join(",")),
        );
        line(
            &mut out,
            format_args!(
                "#EXT-X-PART-INF:PART-TARGET={}",
                attribute_decimal(self.part_target)
            ),
        );
        line(
            &mut out,
            format_args!("#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence),
        );
        line(
            &mut out,
            format_args!(
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            ),
        );
        let skipped = match (delta, self.server_control.can_skip_until) {
            (DeltaUpdate::Skip | DeltaUpdate::SkipV2, Some(skip_until)) => {
                self.skippable_segments(skip_until)
            }
            _ => 0,
        };
        if skipped > 0 {
            line(
                &mut out,
                format_args!("#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}"),
            );
        }
        let mut map_uri: Option<&str> = None;
        for segment in self.segments.iter().skip(skipped) {
            segment_tags(
                &mut out,
                &mut map_uri,
                segment.discontinuity,
                &segment.map_uri,
                segment.program_date_time_ms,
            );
            for part in &segment.parts {
                let independent = if part.independent {
                    ",INDEPENDENT=YES"
                } else {
                    ""
                };
                line(
                    &mut out,
                    format_args!(
                        "#EXT-X-PART:DURATION={},URI={}{independent}",
                        duration(part.duration),
                        quoted(&part.uri)
                    ),
                );
            }
            if let Some(uri) = &segment.uri {
                if segment.gap {
                    line(&mut out, format_args!("#EXT-X-GAP"));
                }
                line(
                    &mut out,
                    format_args!("#EXTINF:{},", duration(segment.duration)),
                );
                line(&mut out, format_args!("{}", uri_line(uri)));
            }
        }
        if !self.ended
            && let Some(hint) = &self.preload_hint
        {
            line(
                &mut out,
                format_args!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI={}", quoted(hint)),
            );
        }
        for report in &self.rendition_reports {
            line(
                &mut out,
                format_args!(
                    "#EXT-X-RENDITION-REPORT:URI={},LAST-MSN={},LAST-PART={}",
                    quoted(&report.uri),
                    report.last_msn,
                    report.last_part
                ),
            );
        }
        if self.ended {
            line(&mut out, format_args!("#EXT-X-ENDLIST"));
        }
        out
    }

    /// How many of the oldest complete segments start more than `skip_until` seconds
    /// before the end of the playlist.
    fn skippable_segments(&self, skip_until: f64) -> usize {
        let end: f64 = self.segments.iter().map(|s| s.duration).sum();
        let mut start = 0.0;
        let mut skipped = 0;
        for segment in &self.segments {
            if segment.uri.is_none() || end - start <= skip_until {
                break;
            }
            start += segment.duration;
            skipped += 1;
        }
        skipped
    }
}

/// EXT-X-PLAYLIST-TYPE (§4.4.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistType {
    /// Segments are only appended (a start-over playlist growing with the event).
    Event,
    /// The playlist never changes (a time-shifted range, a VOD asset).
    Vod,
}

/// A media playlist of recorded media: start-over, time-shift and VOD. Whole segments
/// only (no parts, no blocking reload: the media is already in the archive), so the
/// header has none of the low-latency tags.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedPlaylist {
    pub playlist_type: PlaylistType,
    /// EXT-X-TARGETDURATION, whole seconds, ≥ every EXTINF rounded (§4.4.3.1).
    pub target_duration: u32,
    pub media_sequence: u64,
    /// Every entry has a `uri` and no parts.
    pub segments: Vec<SegmentEntry>,
    /// EXT-X-ENDLIST: always for VOD, once the event ended for EVENT.
    pub ended: bool,
}

impl RecordedPlaylist {
    /// The smallest EXT-X-TARGETDURATION for `durations` (seconds): every EXTINF rounded
    /// to the nearest integer is ≤ it (§4.4.3.1), and at least 1.
    pub fn target_duration_for(durations: impl IntoIterator<Item = f64>) -> u32 {
        durations
            .into_iter()
            .map(|d| d.round() as u32)
            .max()
            .unwrap_or(1)
            .max(1)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        line(&mut out, format_args!("#EXTM3U"));
        line(&mut out, format_args!("#EXT-X-VERSION:{VERSION_FMP4}"));
        let kind = match self.playlist_type {
            PlaylistType::Event => "EVENT",
            PlaylistType::Vod => "VOD",
        };
        line(&mut out, format_args!("#EXT-X-PLAYLIST-TYPE:{kind}"));
        line(
            &mut out,
            format_args!("#EXT-X-TARGETDURATION:{}", self.target_duration),
        );
        line(
            &mut out,
            format_args!("#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence),
        );
        line(&mut out, format_args!("#EXT-X-INDEPENDENT-SEGMENTS"));
        let mut map_uri: Option<&str> = None;
        for segment in &self.segments {
            let Some(uri) = &segment.uri else { continue };
            segment_tags(
                &mut out,
                &mut map_uri,
                segment.discontinuity,
                &segment.map_uri,
                segment.program_date_time_ms,
            );
            if segment.gap {
                line(&mut out, format_args!("#EXT-X-GAP"));
            }
            line(
                &mut out,
                format_args!("#EXTINF:{},", duration(segment.duration)),
            );
            line(&mut out, format_args!("{}", uri_line(uri)));
        }
        if self.ended {
            line(&mut out, format_args!("#EXT-X-ENDLIST"));
        }
        out
    }
}

impl IFramePlaylist {
    /// Renders the I-frame playlist. EXT-X-I-FRAMES-ONLY needs version 4 and EXT-X-MAP in
    /// it version 5 (RFC 8216bis §7); the fMP4 media playlists' 6 covers both.
    pub fn render(&self) -> String {
        let mut out = String::new();
        line(&mut out, format_args!("#EXTM3U"));
        line(&mut out, format_args!("#EXT-X-VERSION:{VERSION_FMP4}"));
        line(
            &mut out,
            format_args!("#EXT-X-TARGETDURATION:{}", self.target_duration),
        );
        line(
            &mut out,
            format_args!("#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence),
        );
        line(
            &mut out,
            format_args!(
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            ),
        );
        line(&mut out, format_args!("#EXT-X-I-FRAMES-ONLY"));
        let mut map_uri: Option<&str> = None;
        for entry in &self.entries {
            segment_tags(
                &mut out,
                &mut map_uri,
                entry.discontinuity,
                &entry.map_uri,
                entry.program_date_time_ms,
            );
            line(
                &mut out,
                format_args!("#EXTINF:{},", duration(entry.duration)),
            );
            match entry.byte_range {
                Some((length, offset)) => {
                    line(&mut out, format_args!("#EXT-X-BYTERANGE:{length}@{offset}"));
                }
                None => line(&mut out, format_args!("#EXT-X-GAP")),
            }
            line(&mut out, format_args!("{}", uri_line(&entry.uri)));
        }
        if self.ended {
            line(&mut out, format_args!("#EXT-X-ENDLIST"));
        }
        out
    }
}

impl MasterPlaylist {
    /// Renders the multivariant playlist (§4.4.6): every audio rendition, then every
    /// variant. EXT-X-INDEPENDENT-SEGMENTS (§4.4.2.1) holds for all our media playlists:
    /// video segments start with an IDR frame and every AAC frame is a sync sample.
    pub fn render(&self) -> String {
        let mut out = String::new();
        line(&mut out, format_args!("#EXTM3U"));
        line(&mut out, format_args!("#EXT-X-VERSION:{VERSION_FMP4}"));
        line(&mut out, format_args!("#EXT-X-INDEPENDENT-SEGMENTS"));
        for audio in &self.audio {
            let mut attributes = vec![
                "TYPE=AUDIO".to_owned(),
                format!("GROUP-ID={}", quoted(&audio.group_id)),
                format!("NAME={}", quoted(&audio.name)),
            ];
            if let Some(language) = &audio.language {
                attributes.push(format!("LANGUAGE={}", quoted(language)));
            }
            // §4.4.6.1: "If the value of DEFAULT is YES, AUTOSELECT MUST also be YES".
            attributes.push(format!("DEFAULT={}", yes_no(audio.default)));
            attributes.push(format!(
                "AUTOSELECT={}",
                yes_no(audio.autoselect || audio.default)
            ));
            if let Some(channels) = audio.channels {
                attributes.push(format!("CHANNELS=\"{channels}\""));
            }
            attributes.push(format!("URI={}", quoted(&audio.uri)));
            line(
                &mut out,
                format_args!("#EXT-X-MEDIA:{}", attributes.join(",")),
            );
        }
        for variant in &self.variants {
            let mut attributes = vec![format!("BANDWIDTH={}", variant.bandwidth)];
            if let Some(average) = variant.average_bandwidth {
                attributes.push(format!("AVERAGE-BANDWIDTH={average}"));
            }
            attributes.push(format!("CODECS={}", quoted(&variant.codecs)));
            if let Some((width, height)) = variant.resolution {
                attributes.push(format!("RESOLUTION={width}x{height}"));
            }
            // §4.4.6.2: FRAME-RATE "SHOULD be rounded to three decimal places".
            if let Some(rate) = variant.frame_rate.filter(|r| r.is_finite() && *r > 0.0) {
                attributes.push(format!("FRAME-RATE={rate:.3}"));
            }
            if let Some(group) = &variant.audio_group {
                attributes.push(format!("AUDIO={}", quoted(group)));
            }
            line(
                &mut out,
                format_args!("#EXT-X-STREAM-INF:{}", attributes.join(",")),
            );
            line(&mut out, format_args!("{}", uri_line(&variant.uri)));
        }
        for iframe in &self.iframe_variants {
            let mut attributes = vec![format!("BANDWIDTH={}", iframe.bandwidth)];
            if let Some(average) = iframe.average_bandwidth {
                attributes.push(format!("AVERAGE-BANDWIDTH={average}"));
            }
            attributes.push(format!("CODECS={}", quoted(&iframe.codecs)));
            if let Some((width, height)) = iframe.resolution {
                attributes.push(format!("RESOLUTION={width}x{height}"));
            }
            attributes.push(format!("URI={}", quoted(&iframe.uri)));
            line(
                &mut out,
                format_args!("#EXT-X-I-FRAME-STREAM-INF:{}", attributes.join(",")),
            );
        }
        out
    }
}

/// The tags before a segment that media and I-frame playlists share:
/// EXT-X-DISCONTINUITY, EXT-X-MAP where the init section changes (`current`: the one in
/// force), EXT-X-PROGRAM-DATE-TIME.
fn segment_tags<'a>(
    out: &mut String,
    current: &mut Option<&'a str>,
    discontinuity: bool,
    map_uri: &'a str,
    program_date_time_ms: Option<i64>,
) {
    if discontinuity {
        line(out, format_args!("#EXT-X-DISCONTINUITY"));
    }
    if *current != Some(map_uri) {
        line(out, format_args!("#EXT-X-MAP:URI={}", quoted(map_uri)));
        *current = Some(map_uri);
    }
    if let Some(pdt) = program_date_time_ms.and_then(program_date_time) {
        line(out, format_args!("#EXT-X-PROGRAM-DATE-TIME:{pdt}"));
    }
}

fn line(out: &mut String, args: std::fmt::Arguments<'_>) {
    // Writing to a String cannot fail.
    let _ = std::fmt::Write::write_fmt(out, args);
    out.push('\n');
}

fn yes_no(value: bool) -> &'static str {
    if value { "YES" } else { "NO" }
}

/// A quoted-string (§4.2): it cannot hold `"`, CR or LF, so those are dropped (a URI's `"`
/// is percent-encoded instead, which keeps it the same URI).
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("%22"),
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A URI line: one line, whatever the URI holds.
fn uri_line(uri: &str) -> String {
    uri.chars().filter(|c| !matches!(c, '\r' | '\n')).collect()
}

/// EXTINF and EXT-X-PART DURATION: fixed 5 decimals, never an exponent. Five decimals
/// resolve a 90 kHz tick to within half of 1/100000 s; a tolerance players expect.
fn duration(seconds: f64) -> String {
    format!("{:.5}", non_negative(seconds))
}

/// Other decimal-floating-point attributes (§4.2): the shortest form, at most 5 decimals,
/// e.g. `PART-TARGET=0.2`, `CAN-SKIP-UNTIL=12.0`.
fn attribute_decimal(value: f64) -> String {
    let fixed = format!("{:.5}", non_negative(value));
    let trimmed = fixed.trim_end_matches('0');
    if trimmed.ends_with('.') {
        format!("{trimmed}0")
    } else {
        trimmed.to_owned()
    }
}

/// decimal-floating-point is non-negative and finite (§4.2); anything else renders as 0.
fn non_negative(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    }
}

/// EXT-X-PROGRAM-DATE-TIME (§4.4.4.6): ISO 8601 with milliseconds, in UTC. `None` for an
/// instant `time` cannot represent (years beyond ±9999), and then the tag is left out.
fn program_date_time(ms: i64) -> Option<String> {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()?
        .format(&format)
        .ok()
}

#[cfg(test)]
mod tests {
    use quick_m3u8::config::ParsingOptionsBuilder;
    use quick_m3u8::tag::{KnownTag, hls};
    use quick_m3u8::{HlsLine, Reader};

    use super::*;

    /// 2023-11-14T22:13:20Z.
    const T0: i64 = 1_700_000_000_000;

    fn part(duration: f64, uri: &str, independent: bool) -> PartEntry {
        PartEntry {
            duration,
            uri: uri.into(),
            independent,
        }
    }

    fn segment(msn: u64, duration: f64, map: &str, parts: Vec<PartEntry>) -> SegmentEntry {
        SegmentEntry {
            msn,
            duration,
            uri: Some(format!("{msn}.m4s")),
            program_date_time_ms: Some(T0 + (msn as i64 - 100) * 2000),
            discontinuity: false,
            map_uri: map.into(),
            parts,
            gap: false,
        }
    }

    fn live() -> MediaPlaylist {
        let mut discontinuous = segment(
            101,
            1.998,
            "init-1.mp4",
            vec![
                part(0.2, "101.0.m4s", true),
                part(0.16683, "101.1.m4s", false),
            ],
        );
        discontinuous.discontinuity = true;
        discontinuous.program_date_time_ms = Some(T0 + 2002);
        let in_progress = SegmentEntry {
            uri: None,
            duration: 0.2,
            ..segment(102, 0.0, "init-1.mp4", vec![part(0.2, "102.0.m4s", true)])
        };
        MediaPlaylist {
            target_duration: 2,
            part_target: 0.2,
            server_control: ServerControl {
                can_block_reload: true,
                part_hold_back: 3.0 * 0.2,
                can_skip_until: Some(12.0),
            },
            media_sequence: 100,
            discontinuity_sequence: 1,
            segments: vec![
                segment(100, 2.002, "init-0.mp4", vec![]),
                discontinuous,
                in_progress,
            ],
            preload_hint: Some("102.1.m4s".into()),
            rendition_reports: vec![RenditionReport {
                uri: "../audio/index.m3u8".into(),
                last_msn: 102,
                last_part: 0,
            }],
            ended: false,
        }
    }

    /// Every line is a tag quick-m3u8 knows and accepts (required attributes present,
    /// values well-formed) or a URI; returns the tags.
    fn parse(text: &str) -> Vec<hls::Tag<'_>> {
        assert!(text.ends_with('\n'));
        let options = ParsingOptionsBuilder::new()
            .with_parsing_for_all_tags()
            .build();
        let mut reader = Reader::from_str(text, options);
        let mut tags = Vec::new();
        while let Some(line) = reader.read_line().unwrap() {
            match line {
                HlsLine::KnownTag(KnownTag::Hls(tag)) => tags.push(tag),
                HlsLine::Uri(uri) => assert!(!uri.is_empty()),
                other => panic!("not a valid tag or URI: {other:?}\n{text}"),
            }
        }
        tags
    }

    #[test]
    fn live_media_playlist_golden() {
        let text = live().render(DeltaUpdate::Full);
        assert_eq!(
            text,
            "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,PART-HOLD-BACK=0.6
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:100
#EXT-X-DISCONTINUITY-SEQUENCE:1
#EXT-X-MAP:URI=\"init-0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z
#EXTINF:2.00200,
100.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"init-1.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.002Z
#EXT-X-PART:DURATION=0.20000,URI=\"101.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.16683,URI=\"101.1.m4s\"
#EXTINF:1.99800,
101.m4s
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:24.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"102.0.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"102.1.m4s\"
#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=102,LAST-PART=0
"
        );
        parse(&text);
    }

    #[test]
    fn version_is_9_only_where_delta_updates_are_offered() {
        let version = |playlist: &MediaPlaylist| {
            parse(&playlist.render(DeltaUpdate::Full))
                .into_iter()
                .find_map(|t| match t {
                    hls::Tag::Version(v) => Some(v.version()),
                    _ => None,
                })
        };
        // §7: EXT-X-SKIP needs version 9; EXT-X-MAP (fMP4) needs 6.
        assert_eq!(version(&live()), Some(9));
        let mut no_delta = live();
        no_delta.server_control.can_skip_until = None;
        assert_eq!(version(&no_delta), Some(6));
        // §4.4.3.8: without CAN-SKIP-UNTIL there is no delta form: the full playlist.
        assert_eq!(
            no_delta.render(DeltaUpdate::Skip),
            no_delta.render(DeltaUpdate::Full)
        );
        assert!(
            !no_delta
                .render(DeltaUpdate::Full)
                .contains("CAN-SKIP-UNTIL")
        );
    }

    /// 20 segments of 2 s (MSN 200..219), two discontinuities, parts on the last three,
    /// and 0.4 s of the segment in progress: 40.4 s in all.
    fn long_window() -> MediaPlaylist {
        let mut segments: Vec<SegmentEntry> = (200..220)
            .map(|msn| {
                let parts = if msn >= 217 {
                    (0..10)
                        .map(|p| part(0.2, &format!("{msn}.{p}.m4s"), p == 0))
                        .collect()
                } else {
                    vec![]
                };
                segment(msn, 2.0, "init-0.mp4", parts)
            })
            .collect();
        segments[3].discontinuity = true;
        segments[16].discontinuity = true;
        segments.push(SegmentEntry {
            uri: None,
            duration: 0.4,
            ..segment(
                220,
                0.0,
                "init-0.mp4",
                vec![part(0.2, "220.0.m4s", true), part(0.2, "220.1.m4s", false)],
            )
        });
        MediaPlaylist {
            media_sequence: 200,
            discontinuity_sequence: 4,
            segments,
            preload_hint: Some("220.2.m4s".into()),
            ..live()
        }
    }

    #[test]
    fn delta_update_skips_segments_older_than_the_skip_boundary() {
        let playlist = long_window();
        let full = playlist.render(DeltaUpdate::Full);
        let delta = playlist.render(DeltaUpdate::Skip);
        let tags = parse(&delta);
        // §6.2.5.1: segments starting more than CAN-SKIP-UNTIL (12 s) before the end
        // (40.4 s) are skipped: those starting at 0 .. 28 s, MSN 200..214.
        let skipped = tags.iter().find_map(|t| match t {
            hls::Tag::Skip(s) => Some(s.skipped_segments()),
            _ => None,
        });
        assert_eq!(skipped, Some(15));
        assert!(!delta.contains("214.m4s") && delta.contains("\n215.m4s\n"));
        // §4.4.5.2: EXT-X-SKIP replaces the segments, not the header: MEDIA-SEQUENCE and
        // DISCONTINUITY-SEQUENCE are those of the full playlist (the skipped
        // discontinuity of MSN 203 still counts).
        let header = |text: &str| text.lines().take(7).collect::<Vec<_>>().join("\n");
        assert_eq!(header(&delta), header(&full));
        assert!(delta.contains("#EXT-X-MEDIA-SEQUENCE:200\n#EXT-X-DISCONTINUITY-SEQUENCE:4\n"));
        // The kept discontinuity (MSN 216) stays; EXT-X-MAP comes with the first segment
        // rendered; the edge is unchanged.
        assert_eq!(delta.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
        let after_skip: Vec<&str> = delta
            .lines()
            .skip_while(|l| !l.starts_with("#EXT-X-SKIP"))
            .skip(1)
            .take(2)
            .collect();
        assert_eq!(
            after_skip,
            [
                "#EXT-X-MAP:URI=\"init-0.mp4\"",
                "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:17:10.000Z"
            ]
        );
        assert_eq!(
            full.split_once("#EXT-X-PART:").unwrap().1,
            delta.split_once("#EXT-X-PART:").unwrap().1
        );
        // _HLS_skip=v2 also skips EXT-X-DATERANGE; there are none here.
        assert_eq!(playlist.render(DeltaUpdate::SkipV2), delta);
        // A playlist shorter than the Skip Boundary has nothing to skip.
        assert!(!live().render(DeltaUpdate::Skip).contains("#EXT-X-SKIP"));
    }

    #[test]
    fn parts_and_durations_parse_back_exactly() {
        let text = long_window().render(DeltaUpdate::Full);
        let tags = parse(&text);
        let parts: Vec<(f64, bool)> = tags
            .iter()
            .filter_map(|t| match t {
                hls::Tag::Part(p) => Some((p.duration(), p.independent())),
                _ => None,
            })
            .collect();
        // §4.4.4.9: every part of the window, INDEPENDENT=YES only where set.
        assert_eq!(parts.len(), 32);
        assert!(parts.iter().all(|&(d, _)| d == 0.2));
        assert_eq!(parts.iter().filter(|(_, i)| *i).count(), 4);
        let extinf = tags
            .iter()
            .filter(|t| matches!(t, hls::Tag::Inf(i) if i.duration() == 2.0));
        assert_eq!(extinf.count(), 20);
        for tag in &tags {
            match tag {
                hls::Tag::ServerControl(s) => {
                    // §4.4.3.8: PART-HOLD-BACK ≥ 3 × PART-TARGET, CAN-SKIP-UNTIL ≥ 6 × TD.
                    assert!(s.can_block_reload());
                    assert_eq!(s.part_hold_back(), Some(0.6));
                    assert_eq!(s.can_skip_until(), Some(12.0));
                }
                hls::Tag::PartInf(p) => assert_eq!(p.part_target(), 0.2),
                hls::Tag::RenditionReport(r) => assert_eq!(r.last_msn(), 102),
                _ => {}
            }
        }
    }

    #[test]
    fn ended_playlist_has_endlist_and_no_preload_hint() {
        let mut playlist = live();
        playlist.ended = true;
        let text = playlist.render(DeltaUpdate::Full);
        parse(&text);
        // §4.4.3.4 EXT-X-ENDLIST; §4.4.5.3: nothing more will be added, so no hint.
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert!(!text.contains("#EXT-X-PRELOAD-HINT"));
    }

    #[test]
    fn numbers_render_without_exponents() {
        assert_eq!(duration(1e-7), "0.00000");
        assert_eq!(duration(2.002_000_000_1), "2.00200");
        assert_eq!(duration(f64::NAN), "0.00000");
        assert_eq!(attribute_decimal(1e21), "1000000000000000000000.0");
        assert_eq!(attribute_decimal(3.0 * 0.1), "0.3");
        assert_eq!(attribute_decimal(-1.0), "0.0");
        // §4.4.4.6: date-time with milliseconds, UTC.
        assert_eq!(
            program_date_time(T0 + 7).as_deref(),
            Some("2023-11-14T22:13:20.007Z")
        );
        assert_eq!(program_date_time(i64::MAX), None);
        // §4.2: a quoted-string holds no `"`, CR or LF.
        assert_eq!(quoted("a\"b\r\nc"), "\"a%22bc\"");
    }

    #[test]
    fn master_playlist_golden() {
        let master = MasterPlaylist {
            variants: vec![Variant {
                uri: "source/index.m3u8".into(),
                bandwidth: 2_500_000,
                average_bandwidth: Some(2_000_000),
                codecs: "avc1.64001f,mp4a.40.2".into(),
                resolution: Some((1280, 720)),
                frame_rate: Some(30_000.0 / 1001.0),
                audio_group: Some("audio".into()),
            }],
            audio: vec![AudioRendition {
                group_id: "audio".into(),
                name: "audio".into(),
                uri: "audio/index.m3u8".into(),
                default: true,
                autoselect: false,
                channels: Some(2),
                language: None,
            }],
            iframe_variants: vec![IFrameVariant {
                uri: "source/iframes.m3u8".into(),
                bandwidth: 400_000,
                average_bandwidth: Some(300_000),
                codecs: "avc1.64001f".into(),
                resolution: Some((1280, 720)),
            }],
        };
        let text = master.render();
        // §4.4.6.1 (DEFAULT=YES implies AUTOSELECT=YES), §4.4.6.2 (FRAME-RATE rounded to
        // three decimals, RESOLUTION WxH, AUDIO naming the EXT-X-MEDIA group).
        assert_eq!(
            text,
            "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=29.970,AUDIO=\"audio\"
source/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=400000,AVERAGE-BANDWIDTH=300000,CODECS=\"avc1.64001f\",RESOLUTION=1280x720,URI=\"source/iframes.m3u8\"
"
        );
        let tags = parse(&text);
        // §4.4.6.3: every attribute of EXT-X-STREAM-INF but FRAME-RATE, AUDIO…, plus URI.
        let iframe = tags.iter().find_map(|t| match t {
            hls::Tag::IFrameStreamInf(i) => Some((i.bandwidth(), i.uri().to_string())),
            _ => None,
        });
        assert_eq!(iframe, Some((400_000, "source/iframes.m3u8".to_string())));
        let stream_inf = tags.iter().find_map(|t| match t {
            hls::Tag::StreamInf(s) => Some((s.bandwidth(), s.codecs(), s.frame_rate())),
            _ => None,
        });
        assert_eq!(
            stream_inf,
            Some((2_500_000, Some("avc1.64001f,mp4a.40.2"), Some(29.97)))
        );
    }

    #[test]
    fn iframe_playlist_golden() {
        let playlist = IFramePlaylist {
            target_duration: 3,
            media_sequence: 7,
            discontinuity_sequence: 1,
            entries: vec![
                IFrameEntry {
                    duration: 2.0,
                    uri: "7.m4s".into(),
                    byte_range: Some((41_234, 0)),
                    program_date_time_ms: Some(T0),
                    discontinuity: false,
                    map_uri: "init0.mp4".into(),
                },
                IFrameEntry {
                    duration: 1.2,
                    uri: "8.m4s".into(),
                    byte_range: Some((40_001, 0)),
                    program_date_time_ms: Some(T0 + 2000),
                    discontinuity: false,
                    map_uri: "init0.mp4".into(),
                },
                IFrameEntry {
                    duration: 2.0,
                    uri: "9.m4s".into(),
                    byte_range: Some((39_999, 0)),
                    program_date_time_ms: Some(T0 + 3200),
                    discontinuity: true,
                    map_uri: "init1.mp4".into(),
                },
            ],
            ended: false,
        };
        let text = playlist.render();
        // §4.4.3.6: EXT-X-I-FRAMES-ONLY; §4.4.4.2: EXT-X-BYTERANGE length@offset; the
        // discontinuity and the new map before the entry after a takeover (§4.4.4.3).
        assert_eq!(
            text,
            "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-DISCONTINUITY-SEQUENCE:1
#EXT-X-I-FRAMES-ONLY
#EXT-X-MAP:URI=\"init0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z
#EXTINF:2.00000,
#EXT-X-BYTERANGE:41234@0
7.m4s
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z
#EXTINF:1.20000,
#EXT-X-BYTERANGE:40001@0
8.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"init1.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:23.200Z
#EXTINF:2.00000,
#EXT-X-BYTERANGE:39999@0
9.m4s
"
        );
        let tags = parse(&text);
        assert!(tags.iter().any(|t| matches!(t, hls::Tag::IFramesOnly(_))));
        let ranges: Vec<u64> = tags
            .iter()
            .filter_map(|t| match t {
                hls::Tag::Byterange(b) => Some(b.length()),
                _ => None,
            })
            .collect();
        assert_eq!(ranges, vec![41_234, 40_001, 39_999]);
        let ended = IFramePlaylist {
            ended: true,
            ..playlist
        };
        assert!(ended.render().ends_with("9.m4s\n#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn a_skipped_segment_number_is_a_gap() {
        let mut playlist = live();
        playlist.segments[1] = SegmentEntry {
            gap: true,
            parts: Vec::new(),
            program_date_time_ms: None,
            discontinuity: false,
            ..segment(101, 2.0, "init-1.mp4", Vec::new())
        };
        let text = playlist.render(DeltaUpdate::Full);
        // RFC 8216bis §4.4.4.7: EXT-X-GAP applies to the next segment; its URI is kept so
        // the numbering holds, and clients do not load it.
        assert!(
            text.contains("#EXT-X-GAP\n#EXTINF:2.00000,\n101.m4s\n"),
            "{text}"
        );
        let tags = parse(&text);
        assert_eq!(
            tags.iter()
                .filter(|t| matches!(t, hls::Tag::Gap(_)))
                .count(),
            1
        );
        let iframes = IFramePlaylist {
            target_duration: 2,
            media_sequence: 101,
            discontinuity_sequence: 0,
            entries: vec![IFrameEntry {
                duration: 2.0,
                uri: "101.m4s".into(),
                byte_range: None,
                program_date_time_ms: None,
                discontinuity: false,
                map_uri: "init0.mp4".into(),
            }],
            ended: false,
        };
        assert!(
            iframes
                .render()
                .ends_with("#EXTINF:2.00000,\n#EXT-X-GAP\n101.m4s\n")
        );
    }

    #[test]
    fn recorded_playlists_have_no_low_latency_tags_and_mark_maps_gaps_and_the_end() {
        let entry = |msn: u64, map: &str, discontinuity: bool, gap: bool| SegmentEntry {
            msn,
            duration: 2.002,
            uri: Some(format!("{msn}.m4s")),
            program_date_time_ms: Some(1_765_137_600_000 + msn as i64 * 2002),
            discontinuity,
            map_uri: map.to_string(),
            parts: Vec::new(),
            gap,
        };
        let playlist = RecordedPlaylist {
            playlist_type: PlaylistType::Vod,
            target_duration: RecordedPlaylist::target_duration_for([2.002, 2.6]),
            media_sequence: 7,
            segments: vec![
                entry(7, "init0.mp4", false, false),
                entry(8, "init0.mp4", false, true),
                entry(9, "init1.mp4", true, false),
            ],
            ended: true,
        };
        let text = playlist.render();
        assert!(text.starts_with(
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        ), "{text}");
        assert!(
            !text.contains("PART") && !text.contains("SERVER-CONTROL"),
            "{text}"
        );
        assert_eq!(text.matches("#EXT-X-MAP").count(), 2, "{text}");
        assert!(
            text.contains("#EXT-X-GAP\n#EXTINF:2.00200,\n8.m4s"),
            "{text}"
        );
        assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
        assert!(text.ends_with("9.m4s\n#EXT-X-ENDLIST\n"), "{text}");
        assert_eq!(RecordedPlaylist::target_duration_for([]), 1);
    }
}
