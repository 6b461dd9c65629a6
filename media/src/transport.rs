//! The internal media transport between ingest and a transcoder (issue 4): a compact,
//! versioned, length-prefixed framing of a stream's `StreamEvent`s over TCP, carrying the
//! stream's identity and the last MSN so a transcoder taking over continues the numbering.
//! Sans-IO: encode to bytes, decode from bytes.
//!
//! Every message is `u32` big-endian length (of what follows), one type byte, the body.
//! This outer framing never changes; what a version may change is bodies and types. A
//! connection opens with [`Hello`] (magic + protocol version first, so a peer of another
//! version is refused with a clear reason rather than misread; the deployment's internal
//! service token, so that only the deployment's ingest can feed a transcoder), answered
//! by `Accepted` or `Refused`. Then ingest sends the session's events (`Tracks`,
//! `Frame`, `Ended`) and the transcoder sends `Progress` (the last part it packaged);
//! both send `Keepalive` when idle. Frames are encoded by hand, field by field (the hot path: no serde per
//! frame); all integers are big-endian.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::frame::{Frame, TrackKind};
use crate::push::LastPart;
use crate::stream::{PlaybackAccess, StampedEvent, StreamEvent, StreamSettings};
use crate::track::{AacConfig, AvcConfig, CodecParams, OpusConfig, TrackParams};

/// First bytes of a [`Hello`] body: "Floodlight Media Transport".
pub const MAGIC: [u8; 4] = *b"FLMT";
/// The protocol version this build speaks. 2: `Hello` carries the deployment's token.
pub const VERSION: u16 = 2;

const HELLO: u8 = 1;
const ACCEPTED: u8 = 2;
const REFUSED: u8 = 3;
const TRACKS: u8 = 4;
const FRAME: u8 = 5;
const ENDED: u8 = 6;
const PROGRESS: u8 = 7;
const KEEPALIVE: u8 = 8;

/// Opens a connection: which stream this is and where its numbering stands.
#[derive(Clone, PartialEq)]
pub struct Hello {
    pub event_id: String,
    pub settings: StreamSettings,
    /// The last part the stream's previous transcoder packaged (it died): the new one
    /// continues after it.
    pub resume: Option<LastPart>,
    /// Ingest's id of this connection's publisher session, for logs on both sides.
    pub session_id: String,
    /// The deployment's internal service token (`[transcoder] push_token`): the
    /// transcoder takes streams only from peers that know it. Empty: none.
    pub token: String,
}

/// Everything but the token, which must not reach a log.
impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hello")
            .field("event_id", &self.event_id)
            .field("settings", &self.settings)
            .field("resume", &self.resume)
            .field("session_id", &self.session_id)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// One message of the transport.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// ingest → transcoder, first.
    Hello(Hello),
    /// transcoder → ingest: the stream's pipeline takes the events.
    Accepted,
    /// transcoder → ingest: it will not take the stream (full, wrong version…).
    Refused { reason: String },
    /// ingest → transcoder: a session event (`Tracks`, `Frame`, `Ended`).
    Event(StampedEvent),
    /// transcoder → ingest: the last part packaged so far.
    Progress(LastPart),
    /// Either way, when there is nothing else to send: a silent peer is a dead peer.
    Keepalive,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("not a Floodlight media transport peer (bad magic)")]
    BadMagic,
    #[error("protocol version {got} is not supported (this side speaks {VERSION})")]
    Version { got: u16 },
    #[error("malformed {message} message: {reason}")]
    Malformed {
        message: &'static str,
        reason: &'static str,
    },
    /// Encoding: a field does not fit its length prefix (it would be cut, and the peer
    /// would read something else).
    #[error("{field} of {len} does not fit the transport's limit of {max}")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

impl Message {
    /// Appends the encoded message to `out`. A field too long for its length prefix (or
    /// a message over 4 GiB) is an error, and leaves `out` as it was.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), TransportError> {
        let start = out.len();
        let result = self.encode_unchecked(out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_unchecked(&self, out: &mut BytesMut, start: usize) -> Result<(), TransportError> {
        out.put_u32(0);
        match self {
            Message::Hello(hello) => {
                out.put_u8(HELLO);
                encode_hello(hello, out)?;
            }
            Message::Accepted => out.put_u8(ACCEPTED),
            Message::Refused { reason } => {
                out.put_u8(REFUSED);
                out.put_slice(reason.as_bytes());
            }
            Message::Event(stamped) => match &stamped.event {
                StreamEvent::Tracks(tracks) => {
                    out.put_u8(TRACKS);
                    out.put_i64(stamped.received_at_ms);
                    out.put_u8(count8("tracks", tracks.len())?);
                    for track in tracks {
                        encode_track(track, out)?;
                    }
                }
                StreamEvent::Frame(frame) => {
                    out.put_u8(FRAME);
                    out.put_i64(stamped.received_at_ms);
                    out.put_u8(kind_byte(frame.track));
                    out.put_i64(frame.dts);
                    out.put_i64(frame.pts);
                    out.put_u8(frame.keyframe as u8);
                    out.put_slice(&frame.data);
                }
                StreamEvent::Ended => {
                    out.put_u8(ENDED);
                    out.put_i64(stamped.received_at_ms);
                }
            },
            Message::Progress(last) => {
                out.put_u8(PROGRESS);
                encode_last_part(last, out);
            }
            Message::Keepalive => out.put_u8(KEEPALIVE),
        }
        let len = out.len() - start - 4;
        let len = u32::try_from(len).map_err(|_| TransportError::FieldTooLong {
            field: "message",
            len,
            max: u32::MAX as usize,
        })?;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// The encoded message on its own.
    pub fn to_bytes(&self) -> Result<Bytes, TransportError> {
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

/// Reassembles messages from a byte stream read in arbitrary pieces. After an error the
/// connection is unusable (framing is lost): the caller closes it.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max_message: usize,
}

impl Decoder {
    /// `max_message`: the largest message (type byte and body) accepted; a length prefix
    /// above it is an error before any of the body is buffered.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            max_message,
        }
    }

    /// Bytes read from the connection.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The buffer to read into directly (`AsyncReadExt::read_buf`).
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The next complete message, `None` until more bytes arrive.
    pub fn next_message(&mut self) -> Result<Option<Message>, TransportError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > self.max_message {
            return Err(TransportError::TooLarge {
                len,
                max: self.max_message,
            });
        }
        if len == 0 {
            return Err(malformed("message", "empty (no type byte)"));
        }
        if self.buf.len() < 4 + len {
            self.buf.reserve(4 + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(4);
        let mut body = self.buf.split_to(len).freeze();
        let kind = body.get_u8();
        decode_body(kind, body).map(Some)
    }
}

fn malformed(message: &'static str, reason: &'static str) -> TransportError {
    TransportError::Malformed { message, reason }
}

fn kind_byte(kind: TrackKind) -> u8 {
    match kind {
        TrackKind::Video => 0,
        TrackKind::Audio => 1,
    }
}

fn put_bytes16(out: &mut BytesMut, field: &'static str, data: &[u8]) -> Result<(), TransportError> {
    let len = u16::try_from(data.len()).map_err(|_| TransportError::FieldTooLong {
        field,
        len: data.len(),
        max: u16::MAX as usize,
    })?;
    out.put_u16(len);
    out.put_slice(data);
    Ok(())
}

/// A count sent as one byte.
fn count8(field: &'static str, count: usize) -> Result<u8, TransportError> {
    u8::try_from(count).map_err(|_| TransportError::FieldTooLong {
        field,
        len: count,
        max: u8::MAX as usize,
    })
}

fn put_opt_u32(out: &mut BytesMut, value: Option<u32>) {
    match value {
        Some(v) => {
            out.put_u8(1);
            out.put_u32(v);
        }
        None => out.put_u8(0),
    }
}

fn encode_hello(hello: &Hello, out: &mut BytesMut) -> Result<(), TransportError> {
    out.put_slice(&MAGIC);
    out.put_u16(VERSION);
    put_bytes16(out, "event id", hello.event_id.as_bytes())?;
    put_bytes16(out, "session id", hello.session_id.as_bytes())?;
    put_bytes16(out, "token", hello.token.as_bytes())?;
    out.put_u8(match hello.settings.access {
        PlaybackAccess::Public => 0,
        PlaybackAccess::Token => 1,
    });
    put_opt_u32(out, hello.settings.part_target_ms);
    put_opt_u32(out, hello.settings.dvr_window_secs);
    match &hello.settings.ladder {
        Some(ladder) => {
            out.put_u8(1);
            put_bytes16(out, "ladder", ladder.as_bytes())?;
        }
        None => out.put_u8(0),
    }
    match &hello.resume {
        Some(last) => {
            out.put_u8(1);
            encode_last_part(last, out);
        }
        None => out.put_u8(0),
    }
    Ok(())
}

fn encode_last_part(last: &LastPart, out: &mut BytesMut) {
    out.put_u64(last.msn);
    out.put_u32(last.part);
    out.put_u8(last.ends_segment as u8);
    out.put_u32(last.init_version);
}

fn encode_track(track: &TrackParams, out: &mut BytesMut) -> Result<(), TransportError> {
    out.put_u8(kind_byte(track.kind));
    match &track.codec {
        CodecParams::H264(c) => {
            out.put_u8(0);
            put_bytes16(out, "avcC record", &c.record)?;
            for (field, sets) in [("SPS", &c.sps), ("PPS", &c.pps)] {
                out.put_u8(count8(field, sets.len())?);
                for set in sets {
                    put_bytes16(out, field, set)?;
                }
            }
            out.put_u8(c.nal_length_size);
            out.put_u8(c.profile_idc);
            out.put_u8(c.profile_compatibility);
            out.put_u8(c.level_idc);
            out.put_u32(c.width);
            out.put_u32(c.height);
            match c.frame_rate {
                Some(rate) => {
                    out.put_u8(1);
                    out.put_f64(rate);
                }
                None => out.put_u8(0),
            }
        }
        CodecParams::Aac(c) => {
            out.put_u8(1);
            put_bytes16(out, "AudioSpecificConfig", &c.asc)?;
            out.put_u8(c.object_type);
            out.put_u32(c.sample_rate);
            out.put_u8(c.channels);
        }
        CodecParams::Opus(c) => {
            out.put_u8(2);
            out.put_u8(c.channels);
            out.put_u16(c.pre_skip);
        }
    }
    Ok(())
}

/// A cursor over a message body whose reads fail instead of panicking when it runs short.
struct Body {
    data: Bytes,
    message: &'static str,
}

impl Body {
    fn need(&self, n: usize) -> Result<(), TransportError> {
        if self.data.remaining() < n {
            return Err(malformed(self.message, "truncated"));
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, TransportError> {
        self.need(1)?;
        Ok(self.data.get_u8())
    }

    fn u16(&mut self) -> Result<u16, TransportError> {
        self.need(2)?;
        Ok(self.data.get_u16())
    }

    fn u32(&mut self) -> Result<u32, TransportError> {
        self.need(4)?;
        Ok(self.data.get_u32())
    }

    fn u64(&mut self) -> Result<u64, TransportError> {
        self.need(8)?;
        Ok(self.data.get_u64())
    }

    fn i64(&mut self) -> Result<i64, TransportError> {
        self.need(8)?;
        Ok(self.data.get_i64())
    }

    fn f64(&mut self) -> Result<f64, TransportError> {
        self.need(8)?;
        Ok(self.data.get_f64())
    }

    fn flag(&mut self) -> Result<bool, TransportError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(malformed(self.message, "flag byte is neither 0 nor 1")),
        }
    }

    fn bytes16(&mut self) -> Result<Bytes, TransportError> {
        let len = self.u16()? as usize;
        self.need(len)?;
        Ok(self.data.split_to(len))
    }

    fn string16(&mut self) -> Result<String, TransportError> {
        let raw = self.bytes16()?;
        String::from_utf8(raw.to_vec()).map_err(|_| malformed(self.message, "invalid UTF-8"))
    }

    fn opt_u32(&mut self) -> Result<Option<u32>, TransportError> {
        Ok(if self.flag()? {
            Some(self.u32()?)
        } else {
            None
        })
    }

    fn track_kind(&mut self) -> Result<TrackKind, TransportError> {
        match self.u8()? {
            0 => Ok(TrackKind::Video),
            1 => Ok(TrackKind::Audio),
            _ => Err(malformed(self.message, "unknown track kind")),
        }
    }

    fn last_part(&mut self) -> Result<LastPart, TransportError> {
        Ok(LastPart {
            msn: self.u64()?,
            part: self.u32()?,
            ends_segment: self.flag()?,
            init_version: self.u32()?,
        })
    }

    /// Nothing may follow the last field of a fixed-layout body.
    fn end(self) -> Result<(), TransportError> {
        if self.data.has_remaining() {
            return Err(malformed(self.message, "trailing bytes"));
        }
        Ok(())
    }
}

fn decode_body(kind: u8, data: Bytes) -> Result<Message, TransportError> {
    let name = match kind {
        HELLO => "Hello",
        ACCEPTED => "Accepted",
        REFUSED => "Refused",
        TRACKS => "Tracks",
        FRAME => "Frame",
        ENDED => "Ended",
        PROGRESS => "Progress",
        KEEPALIVE => "Keepalive",
        other => return Err(TransportError::UnknownType(other)),
    };
    let mut body = Body {
        data,
        message: name,
    };
    let message = match kind {
        HELLO => Message::Hello(decode_hello(&mut body)?),
        ACCEPTED => Message::Accepted,
        REFUSED => {
            let reason = String::from_utf8(body.data.to_vec())
                .map_err(|_| malformed(name, "invalid UTF-8"))?;
            return Ok(Message::Refused { reason });
        }
        TRACKS => {
            let received_at_ms = body.i64()?;
            let count = body.u8()?;
            let tracks = (0..count)
                .map(|_| decode_track(&mut body))
                .collect::<Result<Vec<_>, _>>()?;
            Message::Event(StampedEvent {
                event: StreamEvent::Tracks(tracks),
                received_at_ms,
            })
        }
        FRAME => {
            let received_at_ms = body.i64()?;
            let track = body.track_kind()?;
            let dts = body.i64()?;
            let pts = body.i64()?;
            let keyframe = body.flag()?;
            // The rest of the message is the payload, shared with the read buffer.
            let data = std::mem::take(&mut body.data);
            return Ok(Message::Event(StampedEvent {
                event: StreamEvent::Frame(Frame {
                    track,
                    dts,
                    pts,
                    keyframe,
                    data,
                }),
                received_at_ms,
            }));
        }
        ENDED => Message::Event(StampedEvent {
            event: StreamEvent::Ended,
            received_at_ms: body.i64()?,
        }),
        PROGRESS => Message::Progress(body.last_part()?),
        _ => Message::Keepalive,
    };
    body.end()?;
    Ok(message)
}

fn decode_hello(body: &mut Body) -> Result<Hello, TransportError> {
    body.need(MAGIC.len())?;
    if body.data.split_to(MAGIC.len()) != MAGIC[..] {
        return Err(TransportError::BadMagic);
    }
    let version = body.u16()?;
    if version != VERSION {
        return Err(TransportError::Version { got: version });
    }
    let event_id = body.string16()?;
    let session_id = body.string16()?;
    let token = body.string16()?;
    let access = match body.u8()? {
        0 => PlaybackAccess::Public,
        1 => PlaybackAccess::Token,
        _ => return Err(malformed("Hello", "unknown playback access")),
    };
    let part_target_ms = body.opt_u32()?;
    let dvr_window_secs = body.opt_u32()?;
    let ladder = if body.flag()? {
        Some(body.string16()?)
    } else {
        None
    };
    let resume = if body.flag()? {
        Some(body.last_part()?)
    } else {
        None
    };
    Ok(Hello {
        event_id,
        settings: StreamSettings {
            access,
            part_target_ms,
            dvr_window_secs,
            ladder,
        },
        resume,
        session_id,
        token,
    })
}

fn decode_track(body: &mut Body) -> Result<TrackParams, TransportError> {
    let kind = body.track_kind()?;
    let codec = match body.u8()? {
        0 => {
            let record = body.bytes16()?;
            let mut sets = [Vec::new(), Vec::new()];
            for list in &mut sets {
                let count = body.u8()?;
                for _ in 0..count {
                    list.push(body.bytes16()?);
                }
            }
            let [sps, pps] = sets;
            let nal_length_size = body.u8()?;
            if !matches!(nal_length_size, 1 | 2 | 4) {
                return Err(malformed("Tracks", "NAL length size is not 1, 2 or 4"));
            }
            CodecParams::H264(AvcConfig {
                record,
                sps,
                pps,
                nal_length_size,
                profile_idc: body.u8()?,
                profile_compatibility: body.u8()?,
                level_idc: body.u8()?,
                width: body.u32()?,
                height: body.u32()?,
                frame_rate: if body.flag()? {
                    Some(body.f64()?)
                } else {
                    None
                },
            })
        }
        1 => CodecParams::Aac(AacConfig {
            asc: body.bytes16()?,
            object_type: body.u8()?,
            sample_rate: body.u32()?,
            channels: body.u8()?,
        }),
        2 => CodecParams::Opus(OpusConfig {
            channels: body.u8()?,
            pre_skip: body.u16()?,
        }),
        _ => return Err(malformed("Tracks", "unknown codec")),
    };
    Ok(TrackParams { kind, codec })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::{
        AudioTag, FlvFileReader, FlvTagType, VideoTag, parse_audio_tag, parse_video_tag,
    };

    const MAX: usize = 1 << 20;

    /// Tracks as ffmpeg's FLV capture declares them, plus an Opus track (WHIP).
    fn real_tracks() -> Vec<TrackParams> {
        let mut tracks = Vec::new();
        let flv = include_bytes!("../testdata/ffmpeg_h264_aac_bframes.flv");
        for tag in FlvFileReader::new(flv).unwrap() {
            let tag = tag.unwrap();
            match tag.tag_type {
                FlvTagType::Video => {
                    if let VideoTag::SequenceHeader(c) = parse_video_tag(tag.body, 0).unwrap() {
                        tracks.push(TrackParams::video(c));
                    }
                }
                FlvTagType::Audio => {
                    if let AudioTag::SequenceHeader(c) = parse_audio_tag(tag.body, 0).unwrap() {
                        tracks.push(TrackParams::audio(c));
                    }
                }
                FlvTagType::ScriptData => {}
            }
        }
        assert_eq!(tracks.len(), 2);
        tracks.push(TrackParams::opus(OpusConfig {
            channels: 2,
            pre_skip: 312,
        }));
        tracks
    }

    fn every_message() -> Vec<Message> {
        let last = LastPart {
            msn: 41,
            part: 3,
            ends_segment: true,
            init_version: 2,
        };
        vec![
            Message::Hello(Hello {
                event_id: "evt_123".into(),
                settings: StreamSettings {
                    access: PlaybackAccess::Token,
                    part_target_ms: Some(300),
                    dvr_window_secs: None,
                    ladder: Some("sports".into()),
                },
                resume: Some(last.clone()),
                session_id: "s-1".into(),
                token: "0123456789abcdef".into(),
            }),
            Message::Hello(Hello {
                event_id: "evt_é".into(),
                settings: StreamSettings::default(),
                resume: None,
                session_id: String::new(),
                token: String::new(),
            }),
            Message::Accepted,
            Message::Refused {
                reason: "at capacity".into(),
            },
            Message::Event(StampedEvent {
                event: StreamEvent::Tracks(real_tracks()),
                received_at_ms: 1_700_000_000_000,
            }),
            Message::Event(StampedEvent {
                event: StreamEvent::Frame(Frame {
                    track: TrackKind::Video,
                    dts: -3003,
                    pts: 0,
                    keyframe: true,
                    data: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
                }),
                received_at_ms: 5,
            }),
            Message::Event(StampedEvent {
                event: StreamEvent::Frame(Frame {
                    track: TrackKind::Audio,
                    dts: 1 << 40,
                    pts: 1 << 40,
                    keyframe: false,
                    data: Bytes::new(),
                }),
                received_at_ms: -1,
            }),
            Message::Event(StampedEvent {
                event: StreamEvent::Ended,
                received_at_ms: 77,
            }),
            Message::Progress(last),
            Message::Keepalive,
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for message in every_message() {
            let mut decoder = Decoder::new(MAX);
            decoder.extend(&message.to_bytes().unwrap());
            assert_eq!(decoder.next_message().unwrap(), Some(message));
            assert_eq!(decoder.next_message().unwrap(), None);
        }
    }

    #[test]
    fn messages_split_at_every_byte_come_out_whole_and_in_order() {
        let messages = every_message();
        let mut stream = BytesMut::new();
        for m in &messages {
            m.encode(&mut stream).unwrap();
        }
        let mut decoder = Decoder::new(MAX);
        let mut out = Vec::new();
        for byte in stream.iter() {
            decoder.extend(&[*byte]);
            while let Some(m) = decoder.next_message().unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, messages);
    }

    #[test]
    fn oversize_is_refused_from_the_length_prefix_alone() {
        let mut decoder = Decoder::new(64);
        decoder.extend(&1000u32.to_be_bytes());
        assert_eq!(
            decoder.next_message(),
            Err(TransportError::TooLarge { len: 1000, max: 64 })
        );
    }

    #[test]
    fn other_versions_and_peers_are_refused() {
        let hello = every_message().remove(0).to_bytes().unwrap();
        let mut bumped = hello.to_vec();
        bumped[9..11].copy_from_slice(&(VERSION + 1).to_be_bytes());
        let mut decoder = Decoder::new(MAX);
        decoder.extend(&bumped);
        assert_eq!(
            decoder.next_message(),
            Err(TransportError::Version { got: VERSION + 1 })
        );
        // Version 1's Hello had no token: a peer of that version is told, not misread.
        let mut old = hello.to_vec();
        old[9..11].copy_from_slice(&1u16.to_be_bytes());
        let mut decoder = Decoder::new(MAX);
        decoder.extend(&old);
        assert_eq!(
            decoder.next_message(),
            Err(TransportError::Version { got: 1 })
        );
        let mut http = hello.to_vec();
        http[5..9].copy_from_slice(b"GET ");
        let mut decoder = Decoder::new(MAX);
        decoder.extend(&http);
        assert_eq!(decoder.next_message(), Err(TransportError::BadMagic));
    }

    #[test]
    fn fields_too_long_for_their_prefix_are_an_error_not_cut() {
        let mut hello = match every_message().remove(0) {
            Message::Hello(h) => h,
            _ => unreachable!(),
        };
        hello.settings.ladder = Some("x".repeat(70_000));
        let mut out = BytesMut::from(&b"kept"[..]);
        assert_eq!(
            Message::Hello(hello).encode(&mut out),
            Err(TransportError::FieldTooLong {
                field: "ladder",
                len: 70_000,
                max: u16::MAX as usize
            })
        );
        assert_eq!(&out[..], b"kept", "nothing half-written");
        let mut tracks = real_tracks();
        let CodecParams::H264(avc) = &mut tracks[0].codec else {
            panic!("video first")
        };
        avc.sps = vec![avc.sps[0].clone(); 256];
        let message = Message::Event(StampedEvent {
            event: StreamEvent::Tracks(tracks.clone()),
            received_at_ms: 0,
        });
        assert!(matches!(
            message.to_bytes(),
            Err(TransportError::FieldTooLong {
                field: "SPS",
                len: 256,
                ..
            })
        ));
        let message = Message::Event(StampedEvent {
            event: StreamEvent::Tracks(vec![tracks[1].clone(); 256]),
            received_at_ms: 0,
        });
        assert!(matches!(
            message.to_bytes(),
            Err(TransportError::FieldTooLong {
                field: "tracks",
                ..
            })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            &[0, 0, 0, 0],
            &[0, 0, 0, 1, 99],
            &[0, 0, 0, 3, PROGRESS, 0, 1],
            &[0, 0, 0, 2, KEEPALIVE, 0],
            &[0, 0, 0, 4, TRACKS, 0, 0, 0],
            &[0, 0, 0, 11, FRAME, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0],
        ];
        for case in cases {
            let mut decoder = Decoder::new(MAX);
            decoder.extend(case);
            assert!(decoder.next_message().is_err(), "{case:?}");
        }
        // Truncating any message's body inside its fields is an error too.
        for message in every_message() {
            let bytes = message.to_bytes().unwrap();
            for cut in 5..bytes.len() {
                let mut short = bytes[..cut].to_vec();
                short[..4].copy_from_slice(&((cut - 4) as u32).to_be_bytes());
                let mut decoder = Decoder::new(MAX);
                decoder.extend(&short);
                // Frames and Refused end in free-form bytes: shorter is still valid.
                if let Ok(Some(m)) = decoder.next_message() {
                    assert!(
                        matches!(
                            m,
                            Message::Refused { .. }
                                | Message::Event(StampedEvent {
                                    event: StreamEvent::Frame(_),
                                    ..
                                })
                        ),
                        "{m:?} decoded from {cut} of {} bytes",
                        bytes.len()
                    );
                }
            }
        }
    }
}
