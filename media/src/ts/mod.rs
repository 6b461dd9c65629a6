//! MPEG-TS demuxing (ISO/IEC 13818-1 | ITU-T H.222.0), as SRT publishers send it: the
//! first program's H.264 video (stream_type 0x1B, Annex B) and AAC audio in ADTS
//! (stream_type 0x0F) become `StreamEvent`s, the same ones the FLV path produces.
//!
//! Sans-IO: [`TsDemuxer::push`] takes bytes in any chunking with the wall clock of their
//! arrival, [`TsDemuxer::poll_event`] gives events out, each stamped with the arrival of
//! its frame's first byte (a frame is only known whole when the next one starts, and the
//! first ones wait for every track's parameters: the packager dates segments from the
//! stamps, so they must not include that wait). Handwritten rather than `mpeg2ts-reader`, whose problems are only
//! reported through `log::warn!` (it says so itself): ingest needs them as values, with
//! the byte offset for the one log line that closes a connection, and as counters for
//! the rest. The subset is small: PAT, PMT, PES (§2.4.3, §2.4.4).
//!
//! What it promises:
//! - Video samples are length-prefixed (4 bytes, `AvcConfig::nal_length_size` 4) without
//!   the AUD, SPS and PPS NAL units; the parameter sets come in-band and make an
//!   [`AvcConfig`], announced again when they change. AAC frames lose their ADTS header,
//!   which makes the [`AacConfig`].
//! - Timestamps are the 33-bit PTS/DTS extended to 64 bits: a wrap (every 26.5 h) carries
//!   on upwards instead of going back to 0. A jump of the publisher's own clock is passed
//!   on as is; the packager's timeline turns it into a discontinuity.
//! - Frames that cannot be whole (a continuity counter gap, a truncated PES, a bad ADTS
//!   header, video before a keyframe) are dropped and counted in [`TsStats`]; only input
//!   that is not usable MPEG-TS at all is an error ([`TsError`]).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::aac::AdtsHeader;
use crate::avc::annexb_nal_units;
use crate::frame::{Frame, TrackKind};
use crate::stream::{StampedEvent, StreamEvent};
use crate::track::{AacConfig, AvcConfig, TrackParams};

/// Transport packet size (§2.4.3.2).
pub const PACKET_SIZE: usize = 188;
const SYNC_BYTE: u8 = 0x47;

/// Bytes without a packet boundary after which the input is taken not to be MPEG-TS:
/// more than one SRT message (7 packets, 1316 bytes) of garbage.
const MAX_UNSYNCED_BYTES: u64 = 8 * PACKET_SIZE as u64;
/// Packets without a PAT and PMT after which the input is taken to carry no program.
/// Muxers repeat both every 100 ms or so.
const MAX_PACKETS_WITHOUT_PROGRAM: u64 = 4096;
/// A PES packet (one access unit) larger than this is dropped.
const MAX_PES_BYTES: usize = 16 << 20;
/// Frames held back, before the tracks are first announced, while waiting for every
/// stream of the PMT to bring its codec parameters (AAC's come with its first frame).
/// Past this media time the tracks known so far are announced.
const MAX_HOLD_TICKS: i64 = 2 * 90_000;

/// Extended timestamps wrap at 2^33 ticks of 90 kHz (§2.4.3.7).
const PTS_MODULUS: i64 = 1 << 33;

/// H.264 Table 7-1.
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// Samples per AAC frame (ISO/IEC 14496-3 §4.5.2.1, frameLengthFlag 0).
const AAC_FRAME_SAMPLES: i64 = 1024;

/// ISO/IEC 13818-1 Table 2-34 stream types.
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_ADTS: u8 = 0x0f;
/// Video codecs we recognise but do not take: MPEG-1/2, MPEG-4 Part 2, HEVC, CAVS, VC-1.
const OTHER_VIDEO: [u8; 7] = [0x01, 0x02, 0x10, 0x24, 0x42, 0xd1, 0xea];
/// Audio codecs we recognise but do not take: MPEG-1/2 audio, AAC in LATM, raw AAC,
/// AC-3, E-AC-3.
const OTHER_AUDIO: [u8; 6] = [0x03, 0x04, 0x11, 0x1c, 0x81, 0x87];

/// Input that cannot be demuxed at all. The byte offset counts from the first byte given
/// to [`TsDemuxer::push`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsError {
    #[error("not MPEG-TS: no 0x47 sync byte at 188-byte intervals near byte {offset}")]
    LostSync { offset: u64 },
    #[error("no program (PAT and PMT) by byte {offset}")]
    NoProgram { offset: u64 },
    #[error(
        "unsupported {kind} codec (stream_type 0x{stream_type:02x}, PID {pid}) in the PMT at byte {offset}: send H.264 video and AAC audio (ADTS)"
    )]
    UnsupportedCodec {
        kind: &'static str,
        stream_type: u8,
        pid: u16,
        offset: u64,
    },
    #[error("the PMT at byte {offset} has neither H.264 video nor AAC audio")]
    NoMediaStreams { offset: u64 },
    #[error("PID {pid} is scrambled (encrypted at the TS level) at byte {offset}")]
    Scrambled { pid: u16, offset: u64 },
}

/// Counters of what the demuxer saw and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TsStats {
    /// Transport packets read.
    pub packets: u64,
    /// Frames handed out.
    pub frames: u64,
    /// Frames (access units, or a PES packet's worth of audio) dropped as broken.
    pub dropped_frames: u64,
    /// Gaps in a stream's continuity_counter (§2.4.3.3): packets lost before us.
    pub continuity_errors: u64,
    /// Packets flagged with transport_error_indicator, or with a malformed header.
    pub packet_errors: u64,
    /// Times the packet boundary was lost and found again.
    pub resyncs: u64,
    /// PSI sections whose CRC_32 did not match (ignored).
    pub crc_errors: u64,
}

/// Extends 33-bit timestamps to 64 bits around one reference shared by all tracks, so
/// interleaved audio and video across a wrap land on the same side of it.
#[derive(Debug, Default)]
struct TimestampExtender {
    last: Option<i64>,
}

impl TimestampExtender {
    fn extend(&mut self, ts: u64) -> i64 {
        let ts = (ts as i64) & (PTS_MODULUS - 1);
        let value = match self.last {
            None => ts,
            Some(last) => last + signed_delta(ts - last),
        };
        self.last = Some(value);
        value
    }
}

/// `delta` taken modulo 2^33 into [-2^32, 2^32): the shortest way around the clock.
fn signed_delta(delta: i64) -> i64 {
    let d = delta.rem_euclid(PTS_MODULUS);
    if d >= PTS_MODULUS / 2 {
        d - PTS_MODULUS
    } else {
        d
    }
}

/// A PSI section being put together from packet payloads (§2.4.4).
#[derive(Debug, Default)]
struct SectionAssembler {
    buf: Vec<u8>,
    active: bool,
}

impl SectionAssembler {
    /// Adds one packet's payload; returns the sections it completed.
    fn push(&mut self, payload: &[u8], unit_start: bool) -> Vec<Vec<u8>> {
        let mut done = Vec::new();
        if unit_start {
            let Some((&pointer, rest)) = payload.split_first() else {
                self.reset();
                return done;
            };
            let Some((tail, start)) = rest.split_at_checked(usize::from(pointer)) else {
                self.reset();
                return done;
            };
            if self.active {
                self.buf.extend_from_slice(tail);
                self.take_complete(&mut done);
            }
            self.buf.clear();
            self.buf.extend_from_slice(start);
            self.active = true;
        } else if self.active {
            self.buf.extend_from_slice(payload);
        }
        self.take_complete(&mut done);
        done
    }

    fn take_complete(&mut self, done: &mut Vec<Vec<u8>>) {
        while self.active && self.buf.len() >= 3 {
            if self.buf[0] == 0xff {
                // Stuffing after the last section of the packet.
                self.reset();
                return;
            }
            let section_length =
                usize::from(u16::from_be_bytes([self.buf[1], self.buf[2]]) & 0x0fff);
            // §2.4.4.3 / §2.4.4.8: PAT and PMT sections are at most 1021 bytes long.
            if section_length > 1021 {
                self.reset();
                return;
            }
            let total = 3 + section_length;
            if self.buf.len() < total {
                return;
            }
            let rest = self.buf.split_off(total);
            done.push(std::mem::replace(&mut self.buf, rest));
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
    }
}

/// CRC_32 of Annex A (polynomial 0x04C11DB7, no reflection, initial all ones): over a
/// whole section including its CRC_32 field it gives 0.
fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The body of a long-form section (after the 8 header bytes, before the CRC), if it is
/// one of `table_id`, current, and intact.
fn section_body(section: &[u8], table_id: u8) -> Option<&[u8]> {
    if section.len() < 12 || section[0] != table_id || section[1] & 0x80 == 0 {
        return None;
    }
    let current_next = section[5] & 0x01 != 0;
    current_next.then(|| &section[8..section.len() - 4])
}

/// One elementary stream of the program and its PES packet in progress.
#[derive(Debug)]
struct PesStream {
    pid: u16,
    kind: TrackKind,
    continuity: Option<u8>,
    buf: Vec<u8>,
    /// A PES packet is being collected (its start was seen, nothing lost since).
    collecting: bool,
    /// Bytes the PES packet has in all, when its header says (PES_packet_length ≠ 0).
    expected_len: Option<usize>,
    /// Wall clock at the arrival of the PES packet's first byte, ms.
    arrival_ms: i64,
}

impl PesStream {
    fn new(pid: u16, kind: TrackKind) -> Self {
        PesStream {
            pid,
            kind,
            continuity: None,
            buf: Vec::new(),
            collecting: false,
            expected_len: None,
            arrival_ms: 0,
        }
    }
}

/// A PES packet's timestamps and payload.
struct Pes<'a> {
    pts: u64,
    dts: Option<u64>,
    payload: &'a [u8],
}

/// Why a PES packet was not usable; it is dropped and counted.
enum PesDefect {
    /// Not media (padding, private_stream_2, …): ignored, not counted.
    NotMedia,
    Broken,
}

fn parse_pes(data: &[u8]) -> Result<Pes<'_>, PesDefect> {
    if data.len() < 9 || data[..3] != [0, 0, 1] {
        return Err(PesDefect::Broken);
    }
    // §2.4.3.7: these stream_ids have no optional PES header.
    if matches!(
        data[3],
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return Err(PesDefect::NotMedia);
    }
    if data[6] & 0xc0 != 0x80 || data[6] & 0x30 != 0 {
        // Missing '10' marker bits, or PES_scrambling_control set.
        return Err(PesDefect::Broken);
    }
    let pts_dts_flags = data[7] >> 6;
    let header_end = 9 + usize::from(data[8]);
    let payload = data.get(header_end..).ok_or(PesDefect::Broken)?;
    let timestamp = |at: usize| {
        data.get(at..at + 5).map(|b| {
            (u64::from(b[0] >> 1) & 0x07) << 30
                | u64::from(b[1]) << 22
                | u64::from(b[2] >> 1) << 15
                | u64::from(b[3]) << 7
                | u64::from(b[4] >> 1)
        })
    };
    let (pts, dts) = match pts_dts_flags {
        0b10 if header_end >= 14 => (timestamp(9), None),
        0b11 if header_end >= 19 => (timestamp(9), timestamp(14)),
        // No PTS: the frame cannot be placed. 0b01 is forbidden.
        _ => return Err(PesDefect::Broken),
    };
    Ok(Pes {
        pts: pts.ok_or(PesDefect::Broken)?,
        dts,
        payload,
    })
}

/// MPEG-TS in, `StreamEvent`s out. See the module documentation.
#[derive(Debug, Default)]
pub struct TsDemuxer {
    /// Bytes not yet read as whole packets.
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    buf_offset: u64,
    /// Looking for the packet boundary again.
    searching: bool,
    /// Bytes skipped since the last packet.
    unsynced: u64,
    pat: SectionAssembler,
    pmt: SectionAssembler,
    pmt_pid: Option<u16>,
    /// The program's streams we take, from its PMT: `None` until one was read.
    streams: Option<Vec<PesStream>>,
    /// Whether the PMT lists a video / an audio stream we take.
    has_video: bool,
    has_audio: bool,
    clock: TimestampExtender,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    video: Option<AvcConfig>,
    audio: Option<AacConfig>,
    /// Video is skipped until the next keyframe (at the start, and after a loss).
    awaiting_keyframe: bool,
    /// The tracks as last announced; `None` before the first announcement.
    announced: Option<Vec<TrackParams>>,
    /// Frames waiting for the first announcement, with their arrival.
    held: Vec<(Frame, i64)>,
    /// Wall clock of the bytes being read, ms.
    now_ms: i64,
    out: VecDeque<StampedEvent>,
    stats: TsStats,
}

impl TsDemuxer {
    pub fn new() -> Self {
        TsDemuxer {
            awaiting_keyframe: true,
            ..TsDemuxer::default()
        }
    }

    pub fn stats(&self) -> &TsStats {
        &self.stats
    }

    /// The next event the input so far produced, stamped with the arrival of its frame.
    pub fn poll_event(&mut self) -> Option<StampedEvent> {
        self.out.pop_front()
    }

    /// Reads `data`, the next bytes of the transport stream, which arrived at
    /// `received_at_ms` (ms since the Unix epoch). After an error the demuxer must not be
    /// fed again.
    pub fn push(&mut self, data: &[u8], received_at_ms: i64) -> Result<(), TsError> {
        self.now_ms = received_at_ms;
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        let result = loop {
            if self.buf.len() - pos < PACKET_SIZE {
                break Ok(());
            }
            if self.buf[pos] != SYNC_BYTE || self.searching {
                // Lost: a sync byte counts once another follows a packet later.
                self.searching = true;
                let found = (pos..self.buf.len() - PACKET_SIZE)
                    .find(|&j| self.buf[j] == SYNC_BYTE && self.buf[j + PACKET_SIZE] == SYNC_BYTE);
                // Without one, keep what may be the start of a packet for the next push.
                let to = found.unwrap_or_else(|| {
                    (pos..self.buf.len())
                        .find(|&j| self.buf[j] == SYNC_BYTE && j + PACKET_SIZE >= self.buf.len())
                        .unwrap_or(self.buf.len())
                });
                self.unsynced += (to - pos) as u64;
                if self.unsynced > MAX_UNSYNCED_BYTES {
                    break Err(TsError::LostSync {
                        offset: self.buf_offset + pos as u64,
                    });
                }
                pos = to;
                if found.is_none() {
                    break Ok(());
                }
                self.searching = false;
                self.stats.resyncs += 1;
            }
            self.unsynced = 0;
            let offset = self.buf_offset + pos as u64;
            let mut packet = [0u8; PACKET_SIZE];
            packet.copy_from_slice(&self.buf[pos..pos + PACKET_SIZE]);
            pos += PACKET_SIZE;
            if let Err(e) = self.packet(&packet, offset) {
                break Err(e);
            }
        };
        self.buf.drain(..pos);
        self.buf_offset += pos as u64;
        result
    }

    /// The end of the input: the PES packets still open are complete now.
    pub fn finish(&mut self) {
        for index in 0..self.streams.as_ref().map_or(0, Vec::len) {
            self.complete_pes(index);
        }
        self.announce_held();
    }

    /// One transport packet (§2.4.3.2).
    fn packet(&mut self, p: &[u8; PACKET_SIZE], offset: u64) -> Result<(), TsError> {
        self.stats.packets += 1;
        let transport_error = p[1] & 0x80 != 0;
        let unit_start = p[1] & 0x40 != 0;
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        let scrambled = p[3] & 0xc0 != 0;
        let adaptation = p[3] & 0x20 != 0;
        let has_payload = p[3] & 0x10 != 0;
        let continuity = p[3] & 0x0f;
        let stream = self
            .streams
            .as_ref()
            .and_then(|s| s.iter().position(|s| s.pid == pid));

        let mut payload_start = 4;
        let mut discontinuity = false;
        if adaptation {
            let len = usize::from(p[4]);
            // §2.4.3.5: at most 183 bytes, 182 when a payload follows.
            if len > 183 || (has_payload && len > 182) {
                self.stats.packet_errors += 1;
                if let Some(index) = stream {
                    self.lose_pes(index);
                }
                return Ok(());
            }
            discontinuity = len > 0 && p[5] & 0x80 != 0;
            payload_start = 5 + len;
        }
        if transport_error {
            self.stats.packet_errors += 1;
            if let Some(index) = stream {
                self.lose_pes(index);
            }
            return Ok(());
        }
        if self.streams.is_none() && self.stats.packets > MAX_PACKETS_WITHOUT_PROGRAM {
            return Err(TsError::NoProgram { offset });
        }
        if !has_payload {
            return Ok(());
        }
        let payload = &p[payload_start..];
        if pid == 0 {
            for section in self.pat.push(payload, unit_start) {
                self.read_pat(&section);
            }
        } else if Some(pid) == self.pmt_pid {
            for section in self.pmt.push(payload, unit_start) {
                self.read_pmt(&section, offset)?;
            }
        } else if let Some(index) = stream {
            if scrambled {
                return Err(TsError::Scrambled { pid, offset });
            }
            self.es_packet(index, payload, unit_start, continuity, discontinuity);
        }
        Ok(())
    }

    /// Program association section (§2.4.4.3): the PMT PID of the first program.
    fn read_pat(&mut self, section: &[u8]) {
        if crc32_mpeg2(section) != 0 {
            self.stats.crc_errors += 1;
            return;
        }
        let Some(body) = section_body(section, 0x00) else {
            return;
        };
        let pmt_pid = body
            .chunks_exact(4)
            .find(|entry| u16::from_be_bytes([entry[0], entry[1]]) != 0)
            .map(|entry| u16::from_be_bytes([entry[2] & 0x1f, entry[3]]));
        if pmt_pid.is_some() && pmt_pid != self.pmt_pid {
            self.pmt_pid = pmt_pid;
            self.pmt = SectionAssembler::default();
        }
    }

    /// Program map section (§2.4.4.8): which PIDs carry the video and audio we take.
    fn read_pmt(&mut self, section: &[u8], offset: u64) -> Result<(), TsError> {
        if crc32_mpeg2(section) != 0 {
            self.stats.crc_errors += 1;
            return Ok(());
        }
        let Some(body) = section_body(section, 0x02) else {
            return Ok(());
        };
        let Some(info) = body.get(2..4) else {
            return Ok(());
        };
        let program_info_length = usize::from(u16::from_be_bytes([info[0], info[1]]) & 0x0fff);
        let mut rest = body.get(4 + program_info_length..).unwrap_or_default();
        let (mut video, mut audio) = (None, None);
        let (mut other_video, mut other_audio) = (None, None);
        while rest.len() >= 5 {
            let stream_type = rest[0];
            let pid = u16::from_be_bytes([rest[1] & 0x1f, rest[2]]);
            let es_info_length = usize::from(u16::from_be_bytes([rest[3], rest[4]]) & 0x0fff);
            rest = rest.get(5 + es_info_length..).unwrap_or_default();
            match stream_type {
                STREAM_TYPE_H264 => video = video.or(Some(pid)),
                STREAM_TYPE_ADTS => audio = audio.or(Some(pid)),
                t if OTHER_VIDEO.contains(&t) => other_video = other_video.or(Some((t, pid))),
                t if OTHER_AUDIO.contains(&t) => other_audio = other_audio.or(Some((t, pid))),
                _ => {}
            }
        }
        let unsupported = |kind, (stream_type, pid)| TsError::UnsupportedCodec {
            kind,
            stream_type,
            pid,
            offset,
        };
        if video.is_none()
            && let Some(other) = other_video
        {
            return Err(unsupported("video", other));
        }
        if audio.is_none()
            && let Some(other) = other_audio
        {
            return Err(unsupported("audio", other));
        }
        if video.is_none() && audio.is_none() {
            return Err(TsError::NoMediaStreams { offset });
        }
        let pids = |s: &Vec<PesStream>| s.iter().map(|s| (s.pid, s.kind)).collect::<Vec<_>>();
        let wanted: Vec<(u16, TrackKind)> = video
            .map(|pid| (pid, TrackKind::Video))
            .into_iter()
            .chain(audio.map(|pid| (pid, TrackKind::Audio)))
            .collect();
        if self.streams.as_ref().map(pids) != Some(wanted.clone()) {
            // A new stream layout: PES packets in progress on the old one are lost.
            for index in 0..self.streams.as_ref().map_or(0, Vec::len) {
                self.lose_pes(index);
            }
            self.streams = Some(
                wanted
                    .into_iter()
                    .map(|(pid, kind)| PesStream::new(pid, kind))
                    .collect(),
            );
            self.has_video = video.is_some();
            self.has_audio = audio.is_some();
        }
        Ok(())
    }

    /// A packet of an elementary stream we take (§2.4.3.3 continuity, §2.4.3.6 PES).
    fn es_packet(
        &mut self,
        index: usize,
        payload: &[u8],
        unit_start: bool,
        continuity: u8,
        discontinuity: bool,
    ) {
        let Some(stream) = self.streams.as_mut().and_then(|s| s.get_mut(index)) else {
            return;
        };
        if let Some(last) = stream.continuity {
            // §2.4.3.3: a packet may be sent twice in a row; the copy is ignored.
            if continuity == last && !discontinuity {
                return;
            }
            if continuity != (last + 1) & 0x0f && !discontinuity {
                stream.continuity = Some(continuity);
                self.stats.continuity_errors += 1;
                self.lose_pes(index);
                if !unit_start {
                    return;
                }
            }
        }
        if let Some(stream) = self.streams.as_mut().and_then(|s| s.get_mut(index)) {
            stream.continuity = Some(continuity);
        }
        if unit_start {
            self.complete_pes(index);
            let Some(stream) = self.streams.as_mut().and_then(|s| s.get_mut(index)) else {
                return;
            };
            stream.buf.clear();
            stream.buf.extend_from_slice(payload);
            stream.collecting = true;
            stream.arrival_ms = self.now_ms;
            stream.expected_len = payload
                .get(4..6)
                .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                .filter(|&l| l != 0)
                .map(|l| l + 6);
        } else {
            let Some(stream) = self.streams.as_mut().and_then(|s| s.get_mut(index)) else {
                return;
            };
            if !stream.collecting {
                return;
            }
            stream.buf.extend_from_slice(payload);
            if stream.buf.len() > MAX_PES_BYTES {
                self.lose_pes(index);
                return;
            }
        }
        let complete = self
            .streams
            .as_ref()
            .and_then(|s| s.get(index))
            .is_some_and(|s| s.expected_len.is_some_and(|len| s.buf.len() >= len));
        if complete {
            self.complete_pes(index);
        }
    }

    /// The PES packet in progress on a stream is lost: counted, and video waits for the
    /// next keyframe, since the frames after a lost one refer to it.
    fn lose_pes(&mut self, index: usize) {
        let Some(stream) = self.streams.as_mut().and_then(|s| s.get_mut(index)) else {
            return;
        };
        if stream.collecting {
            stream.collecting = false;
            stream.buf.clear();
            self.stats.dropped_frames += 1;
            if stream.kind == TrackKind::Video {
                self.awaiting_keyframe = true;
            }
        }
    }

    /// The PES packet in progress on a stream is whole: its frames go out.
    fn complete_pes(&mut self, index: usize) {
        let Some(stream) = self.streams.as_mut().and_then(|s| s.get_mut(index)) else {
            return;
        };
        if !stream.collecting {
            return;
        }
        stream.collecting = false;
        let kind = stream.kind;
        let arrival_ms = stream.arrival_ms;
        let mut data = std::mem::take(&mut stream.buf);
        if let Some(len) = stream.expected_len {
            if data.len() < len {
                self.stats.dropped_frames += 1;
                if kind == TrackKind::Video {
                    self.awaiting_keyframe = true;
                }
                return;
            }
            data.truncate(len);
        }
        let pes = match parse_pes(&data) {
            Ok(pes) => pes,
            Err(PesDefect::NotMedia) => return,
            Err(PesDefect::Broken) => {
                self.stats.dropped_frames += 1;
                return;
            }
        };
        let dts = self.clock.extend(pes.dts.unwrap_or(pes.pts));
        let pts = dts + signed_delta(pes.pts as i64 - pes.dts.unwrap_or(pes.pts) as i64);
        match kind {
            TrackKind::Video => self.video_access_unit(pes.payload, dts, pts, arrival_ms),
            TrackKind::Audio => self.adts_frames(pes.payload, pts, arrival_ms),
        }
        // Give the buffer back: its capacity fits the stream's PES packets.
        if let Some(stream) = self.streams.as_mut().and_then(|s| s.get_mut(index)) {
            data.clear();
            stream.buf = data;
        }
    }

    /// One H.264 access unit in Annex B form (ISO/IEC 13818-1 §2.14: one per PES packet).
    fn video_access_unit(&mut self, payload: &[u8], dts: i64, pts: i64, arrival_ms: i64) {
        let mut sample = Vec::with_capacity(payload.len() + 16);
        let mut keyframe = false;
        let (mut sps, mut pps) = (None, None);
        for nal in annexb_nal_units(payload) {
            match nal[0] & 0x1f {
                NAL_SPS => sps = Some(nal),
                NAL_PPS => pps = Some(nal),
                NAL_AUD => {}
                nal_type => {
                    keyframe |= nal_type == NAL_IDR;
                    // A NAL unit fits 32 bits: the PES is at most MAX_PES_BYTES.
                    sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    sample.extend_from_slice(nal);
                }
            }
        }
        if sps.is_some() || pps.is_some() {
            let changed = sps.is_some_and(|s| self.sps.as_deref() != Some(s))
                || pps.is_some_and(|p| self.pps.as_deref() != Some(p));
            if let Some(s) = sps {
                self.sps = Some(Bytes::copy_from_slice(s));
            }
            if let Some(p) = pps {
                self.pps = Some(Bytes::copy_from_slice(p));
            }
            if changed && let (Some(s), Some(p)) = (&self.sps, &self.pps) {
                match AvcConfig::from_parameter_sets(s, p) {
                    Ok(config) => self.video = Some(config),
                    Err(_) => {
                        // Frames cannot be decoded with broken parameter sets; wait for
                        // the next good ones and a keyframe.
                        self.video = None;
                        self.awaiting_keyframe = true;
                    }
                }
            }
        }
        if sample.is_empty() {
            return;
        }
        if self.video.is_none() || (self.awaiting_keyframe && !keyframe) {
            self.stats.dropped_frames += 1;
            return;
        }
        self.awaiting_keyframe = false;
        self.emit(
            Frame {
                track: TrackKind::Video,
                dts,
                pts,
                keyframe,
                data: Bytes::from(sample),
            },
            arrival_ms,
        );
    }

    /// The ADTS frames of an audio PES packet (ISO/IEC 14496-3 §1.A.2); the PES PTS is
    /// the first frame's, the others follow at 1024 samples each.
    fn adts_frames(&mut self, mut payload: &[u8], pts: i64, arrival_ms: i64) {
        let mut index = 0i64;
        while !payload.is_empty() {
            let header = match AdtsHeader::parse(payload) {
                Ok(h) if h.frame_len <= payload.len() => h,
                _ => {
                    self.stats.dropped_frames += 1;
                    return;
                }
            };
            let frame = &payload[..header.frame_len];
            payload = &payload[header.frame_len..];
            let blocks = i64::from(header.raw_data_blocks);
            let first = index;
            index += blocks;
            // Several raw data blocks in one ADTS frame would need splitting at
            // syntax-element level: no encoder we take sends them.
            let Ok(config) = header.audio_specific_config() else {
                self.stats.dropped_frames += 1;
                continue;
            };
            // An ADTS frame no longer than its header carries no audio: an empty access
            // unit would make an empty CMAF sample (found by fuzz/ts_demux).
            if blocks != 1 || header.frame_len <= header.header_len {
                self.stats.dropped_frames += 1;
                continue;
            }
            let rate = i64::from(config.sample_rate.max(1));
            let offset = (first * AAC_FRAME_SAMPLES * 90_000 + rate / 2) / rate;
            if self.audio.as_ref() != Some(&config) {
                self.audio = Some(config);
            }
            self.emit(
                Frame {
                    track: TrackKind::Audio,
                    dts: pts + offset,
                    pts: pts + offset,
                    keyframe: true,
                    data: Bytes::copy_from_slice(&frame[header.header_len..]),
                },
                arrival_ms,
            );
        }
    }

    fn tracks(&self) -> Vec<TrackParams> {
        let video = self.video.clone().map(TrackParams::video);
        let audio = self.audio.clone().map(TrackParams::audio);
        video.into_iter().chain(audio).collect()
    }

    /// Sends a frame out, announcing the tracks first when they are new or changed.
    /// Before the first announcement frames are held until every stream of the PMT has
    /// its parameters, so the first `Tracks` lists them all.
    fn emit(&mut self, frame: Frame, arrival_ms: i64) {
        if self.announced.is_none() {
            self.held.push((frame, arrival_ms));
            let ready = (!self.has_video || self.video.is_some())
                && (!self.has_audio || self.audio.is_some());
            let span = self
                .held
                .iter()
                .map(|(f, _)| f.dts)
                .max()
                .zip(self.held.iter().map(|(f, _)| f.dts).min())
                .map_or(0, |(max, min)| max - min);
            if ready || span > MAX_HOLD_TICKS {
                self.announce_held();
            }
            return;
        }
        let tracks = self.tracks();
        if self.announced.as_ref() != Some(&tracks) {
            self.push_out(StreamEvent::Tracks(tracks.clone()), arrival_ms);
            self.announced = Some(tracks);
        }
        self.stats.frames += 1;
        self.push_out(StreamEvent::Frame(frame), arrival_ms);
    }

    fn push_out(&mut self, event: StreamEvent, received_at_ms: i64) {
        self.out.push_back(StampedEvent {
            event,
            received_at_ms,
        });
    }

    fn announce_held(&mut self) {
        if self.announced.is_some() || self.held.is_empty() {
            return;
        }
        let tracks = self.tracks();
        // Parameter sets that turned out broken while frames were held leave their
        // frames without a track.
        let held = std::mem::take(&mut self.held);
        let (frames, orphans): (Vec<_>, Vec<_>) = held
            .into_iter()
            .partition(|(f, _)| tracks.iter().any(|t| t.kind == f.track));
        self.stats.dropped_frames += orphans.len() as u64;
        let Some(&(_, first_arrival)) = frames.first() else {
            return;
        };
        self.push_out(StreamEvent::Tracks(tracks.clone()), first_arrival);
        self.announced = Some(tracks);
        for (frame, arrival_ms) in frames {
            self.stats.frames += 1;
            self.push_out(StreamEvent::Frame(frame), arrival_ms);
        }
    }
}

#[cfg(test)]
mod tests;
