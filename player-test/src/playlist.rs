//! Playlists as the player reads them: quick-m3u8 (a third-party parser) turns the text
//! into lines, and this module folds the lines into a small model of what a player needs.
//!
//! Tags quick-m3u8 knows but refuses to validate come back as `UnknownTag` with a
//! validation error; such lines are kept as `parser_findings` rather than dropped, because a
//! tag a real parser rejects is a bug in our writer (or in the parser) worth reporting.

use quick_m3u8::{
    HlsLine, Reader,
    config::ParsingOptionsBuilder,
    date::DateTime,
    tag::{
        HlsPlaylistType, KnownTag, NoCustomTag,
        hls::{self, MediaType, PreloadHintType},
    },
};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlaylistError {
    #[error("not a playlist: the first line is not #EXTM3U (RFC 8216bis §4.4.1.1)")]
    MissingHeader,
    #[error("media playlist without EXT-X-TARGETDURATION (RFC 8216bis §4.4.3.1)")]
    MissingTargetDuration,
    #[error("URI line {uri:?} follows no EXTINF (RFC 8216bis §4.4.4.1)")]
    UriWithoutExtinf { uri: String },
    #[error("EXTINF for media sequence {msn} has no URI line")]
    ExtinfWithoutUri { msn: u64 },
    #[error("URI line {uri:?} follows no EXT-X-STREAM-INF in a multivariant playlist")]
    UriWithoutStreamInf { uri: String },
    #[error("not UTF-8 after byte {valid_up_to} (RFC 8216bis §4.1)")]
    NotUtf8 { valid_up_to: usize },
}

/// A multivariant ("master") playlist (RFC 8216bis §4.4.6).
#[derive(Debug, Clone, PartialEq)]
pub struct MasterPlaylist {
    pub variants: Vec<Variant>,
    pub audio: Vec<AudioRendition>,
    /// EXT-X-I-FRAME-STREAM-INF (§4.4.6.3): I-frame playlists for scrubbing.
    pub iframe_variants: Vec<IFrameVariant>,
    /// EXT-X-INDEPENDENT-SEGMENTS (§4.4.2.1), which then holds for every media playlist.
    pub independent_segments: bool,
    /// Lines quick-m3u8 could not read or validate, with its reason.
    pub parser_findings: Vec<String>,
}

/// EXT-X-STREAM-INF and its URI (§4.4.6.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: String,
    pub bandwidth: u64,
    pub codecs: Option<String>,
    pub resolution: Option<(u64, u64)>,
    /// AUDIO: the GROUP-ID of the audio renditions this variant plays with.
    pub audio_group: Option<String>,
}

/// EXT-X-I-FRAME-STREAM-INF (§4.4.6.3).
#[derive(Debug, Clone, PartialEq)]
pub struct IFrameVariant {
    pub uri: String,
    pub bandwidth: u64,
    pub codecs: Option<String>,
    pub resolution: Option<(u64, u64)>,
}

/// EXT-X-MEDIA TYPE=AUDIO (§4.4.6.1).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioRendition {
    pub group_id: String,
    pub name: String,
    /// Absent when the audio is muxed into the variant's segments.
    pub uri: Option<String>,
    pub default: bool,
}

/// A media playlist (RFC 8216bis §4.4.3–4.4.5), segments oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    pub version: Option<u64>,
    /// EXT-X-PLAYLIST-TYPE (§4.4.3.5).
    pub playlist_type: Option<PlaylistType>,
    /// EXT-X-INDEPENDENT-SEGMENTS (§4.4.2.1).
    pub independent_segments: bool,
    /// EXT-X-I-FRAMES-ONLY (§4.4.3.6): each segment is one I-frame, a byte range.
    pub iframes_only: bool,
    pub target_duration: u64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    /// EXT-X-PART-INF PART-TARGET, seconds (§4.4.3.7).
    pub part_target: Option<f64>,
    pub server_control: ServerControl,
    /// EXT-X-SKIP SKIPPED-SEGMENTS of a delta update (§4.4.5.2): the first listed segment
    /// has Media Sequence Number `media_sequence + skipped_segments`.
    pub skipped_segments: Option<u64>,
    pub segments: Vec<Segment>,
    /// EXT-X-PRELOAD-HINT TYPE=PART URI (§4.4.5.3).
    pub preload_hint_part: Option<String>,
    /// EXT-X-ENDLIST (§4.4.3.4).
    pub ended: bool,
    /// Lines quick-m3u8 could not read or validate, with its reason.
    pub parser_findings: Vec<String>,
}

/// EXT-X-PLAYLIST-TYPE (§4.4.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistType {
    /// Segments are only ever appended (a start-over playlist growing with the event).
    Event,
    /// The playlist never changes (a time-shifted range, a VOD asset).
    Vod,
}

impl std::fmt::Display for PlaylistType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PlaylistType::Event => "EVENT",
            PlaylistType::Vod => "VOD",
        })
    }
}

/// EXT-X-SERVER-CONTROL (§4.4.3.8); all absent when the tag is.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ServerControl {
    pub can_block_reload: bool,
    pub part_hold_back: Option<f64>,
    pub can_skip_until: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub msn: u64,
    /// EXTINF for a complete segment; the sum of its parts while it is still being written.
    pub duration: f64,
    /// `None` for the segment in progress at the end of a live playlist: parts only.
    pub uri: Option<String>,
    /// EXT-X-PROGRAM-DATE-TIME as milliseconds since the Unix epoch (§4.4.4.6).
    pub program_date_time_ms: Option<i64>,
    /// EXT-X-DISCONTINUITY before this segment (§4.4.4.3).
    pub discontinuity: bool,
    /// The EXT-X-MAP URI in effect for this segment (§4.4.4.5).
    pub map_uri: Option<String>,
    /// EXT-X-PART tags, in order; index in this list = part index.
    pub parts: Vec<Part>,
    /// EXT-X-GAP (§4.4.4.7): a segment number with no media, not to be loaded.
    pub gap: bool,
    /// EXT-X-BYTERANGE (§4.4.4.2): the segment is this sub-range of its URI's resource,
    /// with the offset resolved when the tag leaves it out.
    pub byte_range: Option<ByteRange>,
}

/// A sub-range of a resource (§4.4.4.2), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub length: u64,
    pub offset: u64,
}

/// EXT-X-PART (§4.4.4.9).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
}

/// The lines of a playlist after its `#EXTM3U` header (RFC 8216bis §4.4.1.1). Lines
/// quick-m3u8 cannot read become findings; a playlist not starting with the header, or
/// empty, is an error.
struct Lines<'a> {
    reader: Reader<&'a str, NoCustomTag>,
    header_seen: bool,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let options = ParsingOptionsBuilder::new()
            .with_parsing_for_all_tags()
            .build();
        Lines {
            reader: Reader::from_str(text, options),
            header_seen: false,
        }
    }

    fn next(
        &mut self,
        findings: &mut Vec<String>,
    ) -> Result<Option<HlsLine<'a, NoCustomTag>>, PlaylistError> {
        loop {
            let line = match self.reader.read_line() {
                Ok(Some(line)) => line,
                Ok(None) if self.header_seen => return Ok(None),
                Ok(None) => return Err(PlaylistError::MissingHeader),
                Err(error) => {
                    findings.push(format!(
                        "quick-m3u8 could not read `{}`: {:?}",
                        error.errored_line, error.error
                    ));
                    continue;
                }
            };
            if self.header_seen {
                return Ok(Some(line));
            }
            match line {
                HlsLine::KnownTag(KnownTag::Hls(hls::Tag::M3u(_))) => self.header_seen = true,
                _ => return Err(PlaylistError::MissingHeader),
            }
        }
    }
}

/// A known tag quick-m3u8 refused (it comes back as an unknown tag carrying the validation
/// error), or an unreadable line. Truly unknown tags are ignored, as §6.3.1 asks of clients.
fn finding_for_unknown(tag: &quick_m3u8::tag::UnknownTag<'_>) -> Option<String> {
    tag.validation_error().map(|error| {
        format!(
            "quick-m3u8 rejected `{}`: {error:?}",
            String::from_utf8_lossy(tag.as_bytes())
        )
    })
}

/// Reads a multivariant playlist.
pub fn parse_master(text: &str) -> Result<MasterPlaylist, PlaylistError> {
    let mut lines = Lines::new(text);
    let mut master = MasterPlaylist {
        variants: Vec::new(),
        audio: Vec::new(),
        iframe_variants: Vec::new(),
        independent_segments: false,
        parser_findings: Vec::new(),
    };
    let mut pending: Option<Variant> = None;
    while let Some(line) = lines.next(&mut master.parser_findings)? {
        match line {
            HlsLine::KnownTag(KnownTag::Hls(hls::Tag::StreamInf(tag))) => {
                pending = Some(Variant {
                    uri: String::new(),
                    bandwidth: tag.bandwidth(),
                    codecs: tag.codecs().map(str::to_owned),
                    resolution: tag.resolution().map(|r| (r.width, r.height)),
                    audio_group: tag.audio().map(str::to_owned),
                });
            }
            HlsLine::KnownTag(KnownTag::Hls(hls::Tag::IFrameStreamInf(tag))) => {
                master.iframe_variants.push(IFrameVariant {
                    uri: tag.uri().to_owned(),
                    bandwidth: tag.bandwidth(),
                    codecs: tag.codecs().map(str::to_owned),
                    resolution: tag.resolution().map(|r| (r.width, r.height)),
                });
            }
            HlsLine::KnownTag(KnownTag::Hls(hls::Tag::IndependentSegments(_))) => {
                master.independent_segments = true;
            }
            HlsLine::KnownTag(KnownTag::Hls(hls::Tag::Media(tag)))
                if tag.media_type().known() == Some(&MediaType::Audio) =>
            {
                master.audio.push(AudioRendition {
                    group_id: tag.group_id().to_owned(),
                    name: tag.name().to_owned(),
                    uri: tag.uri().map(str::to_owned),
                    default: tag.default(),
                });
            }
            HlsLine::Uri(uri) => match pending.take() {
                Some(variant) => master.variants.push(Variant {
                    uri: uri.into_owned(),
                    ..variant
                }),
                None => {
                    return Err(PlaylistError::UriWithoutStreamInf {
                        uri: uri.into_owned(),
                    });
                }
            },
            HlsLine::UnknownTag(tag) => master.parser_findings.extend(finding_for_unknown(&tag)),
            _ => {}
        }
    }
    Ok(master)
}

/// Tags seen since the previous segment's URI line; they belong to the next segment.
#[derive(Default)]
struct PendingSegment {
    extinf: Option<f64>,
    program_date_time_ms: Option<i64>,
    discontinuity: bool,
    gap: bool,
    /// EXT-X-BYTERANGE length and offset as written.
    byte_range: Option<(u64, Option<u64>)>,
    parts: Vec<Part>,
}

/// Reads a media playlist (full or delta update).
pub fn parse_media(text: &str) -> Result<MediaPlaylist, PlaylistError> {
    let mut lines = Lines::new(text);
    let mut playlist = MediaPlaylist {
        version: None,
        playlist_type: None,
        independent_segments: false,
        iframes_only: false,
        target_duration: 0,
        media_sequence: 0,
        discontinuity_sequence: 0,
        part_target: None,
        server_control: ServerControl::default(),
        skipped_segments: None,
        segments: Vec::new(),
        preload_hint_part: None,
        ended: false,
        parser_findings: Vec::new(),
    };
    let mut target_duration = None;
    let mut map_uri: Option<String> = None;
    let mut pending = PendingSegment::default();
    // Segments are numbered after the whole playlist is read: EXT-X-MEDIA-SEQUENCE and
    // EXT-X-SKIP may legally follow nothing but must precede the first segment, yet a
    // misplaced one should still number the segments the way the server meant.
    let mut segments: Vec<Segment> = Vec::new();
    while let Some(line) = lines.next(&mut playlist.parser_findings)? {
        match line {
            HlsLine::KnownTag(KnownTag::Hls(tag)) => match tag {
                hls::Tag::Version(t) => playlist.version = Some(t.version()),
                hls::Tag::PlaylistType(t) => {
                    playlist.playlist_type = Some(match t.playlist_type() {
                        HlsPlaylistType::Event => PlaylistType::Event,
                        HlsPlaylistType::Vod => PlaylistType::Vod,
                    });
                }
                hls::Tag::IndependentSegments(_) => playlist.independent_segments = true,
                hls::Tag::IFramesOnly(_) => playlist.iframes_only = true,
                hls::Tag::Byterange(t) => pending.byte_range = Some((t.length(), t.offset())),
                hls::Tag::Targetduration(t) => target_duration = Some(t.target_duration()),
                hls::Tag::MediaSequence(t) => playlist.media_sequence = t.media_sequence(),
                hls::Tag::DiscontinuitySequence(t) => {
                    playlist.discontinuity_sequence = t.discontinuity_sequence();
                }
                hls::Tag::Endlist(_) => playlist.ended = true,
                hls::Tag::PartInf(t) => playlist.part_target = Some(t.part_target()),
                hls::Tag::ServerControl(t) => {
                    playlist.server_control = ServerControl {
                        can_block_reload: t.can_block_reload(),
                        part_hold_back: t.part_hold_back(),
                        can_skip_until: t.can_skip_until(),
                    };
                }
                hls::Tag::Skip(t) => playlist.skipped_segments = Some(t.skipped_segments()),
                hls::Tag::Inf(t) => pending.extinf = Some(t.duration()),
                hls::Tag::Discontinuity(_) => pending.discontinuity = true,
                hls::Tag::Gap(_) => pending.gap = true,
                hls::Tag::Map(t) => map_uri = Some(t.uri().to_owned()),
                hls::Tag::ProgramDateTime(t) => match unix_ms(&t.program_date_time()) {
                    Some(ms) => pending.program_date_time_ms = Some(ms),
                    None => playlist.parser_findings.push(format!(
                        "EXT-X-PROGRAM-DATE-TIME {} is not a valid date",
                        t.program_date_time()
                    )),
                },
                hls::Tag::Part(t) => pending.parts.push(Part {
                    uri: t.uri().to_owned(),
                    duration: t.duration(),
                    independent: t.independent(),
                }),
                hls::Tag::PreloadHint(t)
                    if t.hint_type().known() == Some(&PreloadHintType::Part) =>
                {
                    playlist.preload_hint_part = Some(t.uri().to_owned());
                }
                _ => {}
            },
            HlsLine::Uri(uri) => {
                let done = std::mem::take(&mut pending);
                let Some(duration) = done.extinf else {
                    return Err(PlaylistError::UriWithoutExtinf {
                        uri: uri.into_owned(),
                    });
                };
                let byte_range = done.byte_range.and_then(|(length, offset)| {
                    resolve_byte_range(
                        &segments,
                        &uri,
                        length,
                        offset,
                        &mut playlist.parser_findings,
                    )
                });
                segments.push(Segment {
                    msn: 0,
                    duration,
                    uri: Some(uri.into_owned()),
                    program_date_time_ms: done.program_date_time_ms,
                    discontinuity: done.discontinuity,
                    map_uri: map_uri.clone(),
                    parts: done.parts,
                    gap: done.gap,
                    byte_range,
                });
            }
            HlsLine::UnknownTag(tag) => {
                playlist.parser_findings.extend(finding_for_unknown(&tag));
            }
            _ => {}
        }
    }
    let first_msn = playlist.media_sequence + playlist.skipped_segments.unwrap_or(0);
    if pending.extinf.is_some() {
        return Err(PlaylistError::ExtinfWithoutUri {
            msn: first_msn + segments.len() as u64,
        });
    }
    if !pending.parts.is_empty() {
        segments.push(Segment {
            msn: 0,
            duration: pending.parts.iter().map(|p| p.duration).sum(),
            uri: None,
            program_date_time_ms: pending.program_date_time_ms,
            discontinuity: pending.discontinuity,
            map_uri,
            parts: pending.parts,
            gap: false,
            byte_range: None,
        });
    }
    for (segment, msn) in segments.iter_mut().zip(first_msn..) {
        segment.msn = msn;
    }
    playlist.segments = segments;
    playlist.target_duration = target_duration.ok_or(PlaylistError::MissingTargetDuration)?;
    Ok(playlist)
}

/// The sub-range an EXT-X-BYTERANGE names. RFC 8216bis §4.4.4.2: without an offset it
/// starts right after the previous segment's sub-range, which must be of the same
/// resource; otherwise that is a finding and the range is dropped.
fn resolve_byte_range(
    earlier: &[Segment],
    uri: &str,
    length: u64,
    offset: Option<u64>,
    findings: &mut Vec<String>,
) -> Option<ByteRange> {
    if let Some(offset) = offset {
        return Some(ByteRange { length, offset });
    }
    match earlier.last() {
        Some(Segment {
            uri: Some(previous_uri),
            byte_range: Some(previous),
            ..
        }) if previous_uri == uri => Some(ByteRange {
            length,
            offset: previous.offset + previous.length,
        }),
        _ => {
            findings.push(format!(
                "EXT-X-BYTERANGE:{length} for {uri:?} has no offset and does not follow a sub-range \
                 of the same resource (RFC 8216bis §4.4.4.2)"
            ));
            None
        }
    }
}

/// RFC 3339 date-time (as quick-m3u8 splits it) to milliseconds since the Unix epoch.
fn unix_ms(date: &DateTime) -> Option<i64> {
    let month = time::Month::try_from(date.date_month).ok()?;
    let day = time::Date::from_calendar_date(
        i32::try_from(date.date_fullyear).ok()?,
        month,
        date.date_mday,
    )
    .ok()?;
    let whole_seconds = date.time_second.trunc();
    let nanos = ((date.time_second - whole_seconds) * 1e9).round() as u32;
    let at = time::Time::from_hms_nano(
        date.time_hour,
        date.time_minute,
        whole_seconds as u8,
        nanos.min(999_999_999),
    )
    .ok()?;
    let offset_hours = date.timezone_offset.time_hour;
    let offset_minutes = i8::try_from(date.timezone_offset.time_minute).ok()?;
    let offset = time::UtcOffset::from_hms(
        offset_hours,
        if offset_hours < 0 {
            -offset_minutes
        } else {
            offset_minutes
        },
        0,
    )
    .ok()?;
    let instant = time::PrimitiveDateTime::new(day, at).assume_offset(offset);
    i64::try_from(instant.unix_timestamp_nanos() / 1_000_000).ok()
}

impl MediaPlaylist {
    /// A playlist of recorded media (start-over, time-shift, VOD): no EXT-X-PART-INF, and
    /// EXT-X-PLAYLIST-TYPE EVENT or VOD or an EXT-X-ENDLIST. Followed by plain segment
    /// reloads (RFC 8216bis §6.3.4), not with the low-latency machinery.
    pub fn is_recorded(&self) -> bool {
        self.part_target.is_none() && (self.playlist_type.is_some() || self.ended)
    }

    /// The (MSN, part index) of the last listed part, if any part is listed.
    pub fn last_part_position(&self) -> Option<(u64, u32)> {
        self.segments.iter().rev().find_map(|s| {
            let last = s.parts.len().checked_sub(1)?;
            Some((s.msn, u32::try_from(last).ok()?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6,CAN-SKIP-UNTIL=12.0
#EXT-X-MEDIA-SEQUENCE:40
#EXT-X-DISCONTINUITY-SEQUENCE:1
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z
#EXTINF:2.0,
seg40.mp4
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:02.500+01:00
#EXT-X-PART:DURATION=0.2,URI=\"p41.0.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.18,URI=\"p41.1.mp4\"
#EXTINF:0.38,
seg41.mp4
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:02.880Z
#EXT-X-PART:DURATION=0.2,URI=\"p42.0.mp4\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p42.1.mp4\"
#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=42,LAST-PART=0
";

    #[test]
    fn live_playlist_with_parts_and_in_progress_segment() {
        let playlist = parse_media(LIVE).expect("parses");
        assert_eq!(playlist.parser_findings, Vec::<String>::new());
        assert_eq!(playlist.version, Some(9));
        assert_eq!(playlist.target_duration, 2);
        assert_eq!(playlist.part_target, Some(0.2));
        assert_eq!(
            playlist.server_control,
            ServerControl {
                can_block_reload: true,
                part_hold_back: Some(0.6),
                can_skip_until: Some(12.0),
            }
        );
        assert_eq!(playlist.discontinuity_sequence, 1);
        let msns: Vec<u64> = playlist.segments.iter().map(|s| s.msn).collect();
        assert_eq!(msns, [40, 41, 42]);
        let [first, second, third] = playlist.segments.as_slice() else {
            panic!("three segments");
        };
        assert_eq!(first.program_date_time_ms, Some(1_735_689_600_000));
        assert_eq!(first.map_uri.as_deref(), Some("init.mp4"));
        assert!(first.parts.is_empty());
        // +01:00 means one hour earlier in UTC.
        assert_eq!(
            second.program_date_time_ms,
            Some(1_735_689_600_000 + 2_500 - 3_600_000)
        );
        assert!(second.discontinuity);
        assert_eq!(second.uri.as_deref(), Some("seg41.mp4"));
        assert_eq!(second.parts.len(), 2);
        assert!(second.parts[0].independent);
        assert!(!second.parts[1].independent);
        // The segment in progress: parts only, duration = sum of parts so far.
        assert_eq!(third.uri, None);
        assert_eq!(third.parts.len(), 1);
        assert!((third.duration - 0.2).abs() < 1e-9);
        assert_eq!(playlist.preload_hint_part.as_deref(), Some("p42.1.mp4"));
        assert_eq!(playlist.last_part_position(), Some((42, 0)));
        assert!(!playlist.ended);
    }

    #[test]
    fn delta_update_numbers_segments_after_the_skip() {
        // RFC 8216bis §4.4.5.2: the first segment after EXT-X-SKIP has
        // MSN = EXT-X-MEDIA-SEQUENCE + SKIPPED-SEGMENTS.
        let text = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-SKIP:SKIPPED-SEGMENTS=5
#EXTINF:2.0,
seg15.mp4
#EXTINF:2.0,
seg16.mp4
#EXT-X-ENDLIST
";
        let playlist = parse_media(text).expect("parses");
        assert_eq!(playlist.skipped_segments, Some(5));
        assert_eq!(playlist.segments[0].msn, 15);
        assert_eq!(playlist.segments[1].msn, 16);
        assert!(playlist.ended);
        assert_eq!(playlist.last_part_position(), None);
    }

    #[test]
    fn rejected_known_tag_is_a_finding_not_silence() {
        // EXT-X-PART requires DURATION (§4.4.4.9); quick-m3u8 refuses the tag.
        let text = "#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-PART:URI=\"p0.mp4\"
#EXTINF:2.0,
seg0.mp4
";
        let playlist = parse_media(text).expect("parses");
        assert_eq!(playlist.parser_findings.len(), 1);
        assert!(
            playlist.parser_findings[0].contains("EXT-X-PART"),
            "{:?}",
            playlist.parser_findings
        );
        assert!(playlist.segments[0].parts.is_empty());
    }

    #[test]
    fn structural_errors() {
        assert!(matches!(
            parse_media("#EXT-X-TARGETDURATION:2\n"),
            Err(PlaylistError::MissingHeader)
        ));
        assert!(matches!(
            parse_media("#EXTM3U\n#EXTINF:2.0,\nseg0.mp4\n"),
            Err(PlaylistError::MissingTargetDuration)
        ));
        assert!(matches!(
            parse_media("#EXTM3U\n#EXT-X-TARGETDURATION:2\nseg0.mp4\n"),
            Err(PlaylistError::UriWithoutExtinf { .. })
        ));
        assert!(matches!(
            parse_media("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n"),
            Err(PlaylistError::ExtinfWithoutUri { msn: 0 })
        ));
        assert!(matches!(
            parse_master("#EXTM3U\nvideo/index.m3u8\n"),
            Err(PlaylistError::UriWithoutStreamInf { .. })
        ));
    }

    #[test]
    fn master_with_audio_group() {
        let text = "#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2500000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000,AUDIO=\"aac\"
source/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.42c01e,mp4a.40.2\",RESOLUTION=640x360,AUDIO=\"aac\"
low/index.m3u8
";
        let master = parse_master(text).expect("parses");
        assert_eq!(master.parser_findings, Vec::<String>::new());
        assert_eq!(master.variants.len(), 2);
        assert_eq!(master.variants[0].uri, "source/index.m3u8");
        assert_eq!(master.variants[0].bandwidth, 3_000_000);
        assert_eq!(master.variants[0].resolution, Some((1280, 720)));
        assert_eq!(master.variants[0].audio_group.as_deref(), Some("aac"));
        assert_eq!(
            master.audio,
            [AudioRendition {
                group_id: "aac".into(),
                name: "English".into(),
                uri: Some("audio/index.m3u8".into()),
                default: true,
            }]
        );
    }

    #[test]
    fn recorded_vod_with_gap_discontinuity_and_map_change() {
        let text = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2025-12-07T20:00:00.000Z
#EXTINF:2.00200,
7.m4s
#EXT-X-PROGRAM-DATE-TIME:2025-12-07T20:00:02.002Z
#EXT-X-GAP
#EXTINF:2.00200,
8.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"init1.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2025-12-07T20:00:04.004Z
#EXTINF:2.00200,
9.m4s
#EXT-X-ENDLIST
";
        let playlist = parse_media(text).expect("parses");
        assert_eq!(playlist.parser_findings, Vec::<String>::new());
        assert_eq!(playlist.playlist_type, Some(PlaylistType::Vod));
        assert!(playlist.independent_segments && playlist.ended && !playlist.iframes_only);
        assert!(playlist.is_recorded());
        let gaps: Vec<bool> = playlist.segments.iter().map(|s| s.gap).collect();
        assert_eq!(gaps, [false, true, false]);
        assert!(playlist.segments[2].discontinuity);
        assert_eq!(playlist.segments[1].map_uri.as_deref(), Some("init0.mp4"));
        assert_eq!(playlist.segments[2].map_uri.as_deref(), Some("init1.mp4"));
        assert_eq!(playlist.segments[2].msn, 9);
        // §4.4.3.5: an EVENT playlist without parts is recorded too; a live one is not.
        let event = parse_media(&text.replace("VOD", "EVENT").replace("#EXT-X-ENDLIST\n", ""))
            .expect("parses");
        assert_eq!(event.playlist_type, Some(PlaylistType::Event));
        assert!(event.is_recorded());
        assert!(!parse_media(LIVE).expect("parses").is_recorded());
    }

    #[test]
    fn iframe_playlist_byte_ranges() {
        // §4.4.4.2: without an offset a sub-range follows the previous one of the same
        // resource; after another resource it has nothing to follow.
        let text = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-I-FRAMES-ONLY
#EXT-X-MAP:URI=\"init0.mp4\"
#EXTINF:1.0,
#EXT-X-BYTERANGE:1000@0
0.m4s
#EXTINF:1.0,
#EXT-X-BYTERANGE:800
0.m4s
#EXTINF:2.0,
#EXT-X-GAP
1.m4s
#EXTINF:2.0,
#EXT-X-BYTERANGE:900
2.m4s
#EXT-X-ENDLIST
";
        let playlist = parse_media(text).expect("parses");
        assert!(playlist.iframes_only);
        let ranges: Vec<Option<ByteRange>> =
            playlist.segments.iter().map(|s| s.byte_range).collect();
        assert_eq!(
            ranges,
            [
                Some(ByteRange {
                    length: 1000,
                    offset: 0
                }),
                Some(ByteRange {
                    length: 800,
                    offset: 1000
                }),
                None,
                None
            ]
        );
        assert!(playlist.segments[2].gap);
        assert_eq!(
            playlist.parser_findings.len(),
            1,
            "{:?}",
            playlist.parser_findings
        );
        assert!(playlist.parser_findings[0].contains("EXT-X-BYTERANGE:900 for \"2.m4s\""));
    }

    #[test]
    fn master_with_iframe_playlists() {
        let text = "#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720
source/index.m3u8?start=1765138500.000
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=300000,CODECS=\"avc1.64001f\",RESOLUTION=1280x720,URI=\"source/iframes.m3u8?start=1765138500.000\"
";
        let master = parse_master(text).expect("parses");
        assert_eq!(master.parser_findings, Vec::<String>::new());
        assert!(master.independent_segments);
        assert_eq!(
            master.iframe_variants,
            [IFrameVariant {
                uri: "source/iframes.m3u8?start=1765138500.000".into(),
                bandwidth: 300_000,
                codecs: Some("avc1.64001f".into()),
                resolution: Some((1280, 720)),
            }]
        );
        assert_eq!(master.variants.len(), 1);
    }
}
