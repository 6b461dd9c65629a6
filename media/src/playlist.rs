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
    pub variants: Vec<Variant>,
    pub audio: Vec<AudioRendition>,
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

impl MediaPlaylist {
    /// Renders the playlist text; `delta` selects a delta update (§6.2.5.1).
    pub fn render(&self, delta: DeltaUpdate) -> String {
        let _ = delta;
        todo!()
    }
}

impl MasterPlaylist {
    pub fn render(&self) -> String {
        todo!()
    }
}
