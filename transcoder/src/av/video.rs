//! H.264 for the ABR ladder: decode the publisher's video once ([`VideoDecoder`]), resize
//! it per rung ([`Scaler`], swscale), and encode each rung with libx264 in live settings
//! ([`VideoEncoder`]).
//!
//! Latency is the budget everything here is tuned to. The decoder uses slice threads only:
//! frame threads would hold back one frame per thread. The encoder runs x264's
//! `zerolatency` tune (no lookahead, no B-frames, sliced threads), so each picture comes
//! back encoded from the same `encode` call. Keyframes are decided by the caller alone:
//! scene-cut detection is off and x264's own keyframe interval is only a safety net, so
//! that every rung, fed the same forced IDRs, cuts segments at the same pictures
//! (RFC 8216bis §6.2.4 wants aligned segment boundaries across variants; Apple's HLS
//! authoring spec §1.8 asks for IDR-aligned segments).
//!
//! Timestamps stay on the stream's 90 kHz timeline on both sides: a decoded [`Picture`]
//! carries the pts of the access unit it came from, and an encoded frame carries the pts
//! of the picture it encodes.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use ffmpeg_next::codec::threading;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;
use ffmpeg_next::util::picture;
use ffmpeg_next::{Dictionary, Packet, Rational, codec, decoder, encoder, frame};
use floodlight_media::avc::{annexb_nal_units, annexb_to_avcc};
use floodlight_media::{AvcConfig, Frame, TIMESCALE, TrackKind};

use super::{AvError, init};

/// The encoders' input format: 8-bit 4:2:0, what the Baseline, Main and High profiles code
/// and what every HLS player decodes.
pub(crate) const ENCODER_FORMAT: Pixel = Pixel::YUV420P;
/// swscale's filter. Bicubic is also the ffmpeg CLI's default for `scale`, so the
/// benchmark against it compares the same work.
const SCALER_FLAGS: scaling::Flags = scaling::Flags::BICUBIC;
/// Slice threads of a decoder made with [`VideoDecoder::new`]. Slice threads only help on
/// multi-slice streams (x264 with sliced threads, many hardware encoders); single-slice
/// streams decode on one thread, which 1080p60 H.264 High still does faster than real time.
const DEFAULT_DECODER_THREADS: u32 = 2;

/// H.264 Table 7-1.
const NAL_IDR_SLICE: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

/// One decoded picture in presentation order, in the decoder's pixel format and size.
pub(crate) struct Picture {
    pub(crate) frame: frame::Video,
    /// Presentation timestamp, 90 kHz, of the access unit the picture was decoded from.
    pub(crate) pts: i64,
}

impl fmt::Debug for Picture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picture")
            .field("pts", &self.pts)
            .field("width", &self.frame.width())
            .field("height", &self.frame.height())
            .field("format", &self.frame.format())
            .finish()
    }
}

/// libav's H.264 decoder, configured from the track's AVCDecoderConfigurationRecord and
/// fed access units in the same length-prefixed form.
pub(crate) struct VideoDecoder {
    decoder: decoder::Video,
    /// Pictures decoded but not yet taken by [`VideoDecoder::receive`]. Draining the
    /// decoder after every packet means `send` never meets EAGAIN.
    ready: VecDeque<Picture>,
}

impl VideoDecoder {
    /// A decoder for the track `config` describes, with two slice threads.
    pub(crate) fn new(config: &AvcConfig) -> Result<Self, AvError> {
        Self::with_threads(config, DEFAULT_DECODER_THREADS)
    }

    /// A decoder with at most `threads` slice threads (at least one).
    pub(crate) fn with_threads(config: &AvcConfig, threads: u32) -> Result<Self, AvError> {
        init();
        let codec = decoder::find(codec::Id::H264).ok_or(AvError::CodecMissing("H.264 decoder"))?;
        if config.record.is_empty() {
            return Err(AvError::InvalidSettings(
                "the H.264 track has no AVCDecoderConfigurationRecord".into(),
            ));
        }
        let mut context = codec::Context::new_with_codec(codec);
        // The avcC record as extradata: libav reads the parameter sets and the NAL unit
        // length size from it (ISO/IEC 14496-15 §5.3.3.1), as a demuxer would hand it over.
        set_extradata(&mut context, &config.record)?;
        context.set_threading(threading::Config {
            kind: threading::Type::Slice,
            count: threads.max(1) as usize,
            ..Default::default()
        });
        let mut setup = context.decoder();
        setup.set_packet_time_base(Rational::new(1, TIMESCALE as i32));
        let decoder = setup
            .video()
            .map_err(AvError::codec("opening the H.264 decoder"))?;
        Ok(VideoDecoder {
            decoder,
            ready: VecDeque::new(),
        })
    }

    /// Decodes one access unit (`Frame::data` with the track's NAL unit length prefixes).
    /// An error drops this access unit; the decoder stays usable, and the pictures that
    /// referenced it show errors until the next IDR.
    pub(crate) fn send(&mut self, frame: &Frame) -> Result<(), AvError> {
        let mut packet = Packet::copy(&frame.data);
        packet.set_pts(Some(frame.pts));
        packet.set_dts(Some(frame.dts));
        if frame.keyframe {
            packet.set_flags(codec::packet::Flags::KEY);
        }
        let sent = self.decoder.send_packet(&packet);
        // Collect whatever the packet completed even when it failed: libav may have
        // finished earlier pictures on the way.
        self.drain();
        sent.map_err(AvError::codec("decoding H.264"))
    }

    /// The next decoded picture, in presentation order.
    pub(crate) fn receive(&mut self) -> Option<Picture> {
        self.ready.pop_front()
    }

    /// Ends the stream: the pictures the decoder still holds for reordering. The decoder
    /// takes no more access units afterwards.
    pub(crate) fn flush(&mut self) -> Vec<Picture> {
        // An error here means the decoder was already flushed; nothing is held then.
        let _ = self.decoder.send_eof();
        self.drain();
        self.ready.drain(..).collect()
    }

    fn drain(&mut self) {
        loop {
            let mut decoded = frame::Video::empty();
            if self.decoder.receive_frame(&mut decoded).is_err() {
                return;
            }
            // The pts libav carried through reordering from the packet the picture began
            // in; every packet has one, so a picture without one is not placeable in time.
            if let Some(pts) = decoded.pts().or_else(|| decoded.timestamp()) {
                self.ready.push_back(Picture {
                    frame: decoded,
                    pts,
                });
            }
        }
    }
}

/// swscale from the decoder's pictures to one rung's size in [`ENCODER_FORMAT`].
pub(crate) struct Scaler {
    context: scaling::Context,
}

impl Scaler {
    pub(crate) fn new(
        src_w: u32,
        src_h: u32,
        src_fmt: Pixel,
        dst_w: u32,
        dst_h: u32,
    ) -> Result<Self, AvError> {
        Self::to_format(src_w, src_h, src_fmt, dst_w, dst_h, ENCODER_FORMAT)
    }

    pub(super) fn to_format(
        src_w: u32,
        src_h: u32,
        src_fmt: Pixel,
        dst_w: u32,
        dst_h: u32,
        dst_fmt: Pixel,
    ) -> Result<Self, AvError> {
        init();
        if src_w == 0 || src_h == 0 || dst_w == 0 || dst_h == 0 {
            return Err(AvError::InvalidSettings(format!(
                "cannot scale {src_w}x{src_h} to {dst_w}x{dst_h}: empty picture"
            )));
        }
        let context = scaling::Context::get(
            src_fmt,
            src_w,
            src_h,
            dst_fmt,
            dst_w,
            dst_h,
            SCALER_FLAGS,
        )
        .map_err(|_| {
            AvError::InvalidSettings(format!(
                "swscale cannot convert {src_w}x{src_h} {src_fmt:?} to {dst_w}x{dst_h} {dst_fmt:?}"
            ))
        })?;
        Ok(Scaler { context })
    }

    /// The output picture size.
    pub(crate) fn output_size(&self) -> (u32, u32) {
        let output = self.context.output();
        (output.width, output.height)
    }

    /// Whether `picture` has the size and format this scaler was made for (a publisher
    /// that changes resolution needs new scalers).
    pub(crate) fn accepts(&self, picture: &frame::Video) -> bool {
        let input = self.context.input();
        (picture.width(), picture.height(), picture.format())
            == (input.width, input.height, input.format)
    }

    /// A new picture at the output size; the input's pts is kept.
    pub(crate) fn scale(&mut self, input: &frame::Video) -> Result<frame::Video, AvError> {
        if !self.accepts(input) {
            let expected = self.context.input();
            return Err(AvError::InvalidSettings(format!(
                "picture is {}x{} {:?}, the scaler was made for {}x{} {:?}",
                input.width(),
                input.height(),
                input.format(),
                expected.width,
                expected.height,
                expected.format
            )));
        }
        let mut output = frame::Video::empty();
        self.context
            .run(input, &mut output)
            .map_err(AvError::codec("scaling"))?;
        output.set_pts(input.pts());
        Ok(output)
    }
}

/// H.264 profiles the ladder encodes (H.264 Annex A.2). All are 8-bit 4:2:0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum H264Profile {
    /// Constrained Baseline in practice (x264 writes constraint_set1): the oldest phones.
    Baseline,
    Main,
    High,
}

impl H264Profile {
    /// The name x264 and the ffmpeg CLI take (`-profile:v`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            H264Profile::Baseline => "baseline",
            H264Profile::Main => "main",
            H264Profile::High => "high",
        }
    }
}

impl FromStr for H264Profile {
    type Err = AvError;

    fn from_str(s: &str) -> Result<Self, AvError> {
        match s {
            "baseline" => Ok(H264Profile::Baseline),
            "main" => Ok(H264Profile::Main),
            "high" => Ok(H264Profile::High),
            other => Err(AvError::InvalidSettings(format!(
                "unknown H.264 profile {other:?}: expected baseline, main or high"
            ))),
        }
    }
}

/// One rung's encoder settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EncoderSettings {
    /// Output size, even (4:2:0 chroma).
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Frames per second as num/den (30/1, 30000/1001). Pictures should come at about this
    /// rate: it is the rate control's clock and the SPS timing info.
    pub(crate) frame_rate: (u32, u32),
    /// Average bitrate.
    pub(crate) bitrate_bps: u32,
    /// VBV maximum rate (≥ `bitrate_bps`; equal for CBR-like output).
    pub(crate) max_bitrate_bps: u32,
    /// VBV buffer size: how far the bitrate may swing around `max_bitrate_bps`. A buffer of
    /// one segment's worth or less keeps every segment near the advertised BANDWIDTH.
    pub(crate) vbv_buffer_bits: u32,
    /// x264 preset (`ultrafast` … `veryslow`); `veryfast` is the usual live choice.
    pub(crate) preset: String,
    pub(crate) profile: H264Profile,
    /// x264 slice threads for this rung (≥ 1); the machine's cores are shared by rungs.
    pub(crate) threads: u32,
    /// Longest run of pictures without an IDR before x264 inserts one itself; 0 = never.
    /// A safety net only: it should exceed the caller's forced IDR cadence, or rungs that
    /// miss a picture may drift out of alignment.
    pub(crate) keyint_max_frames: u32,
    /// The id of the SPS and PPS x264 writes (0 to 31; x264 numbers both alike). Live
    /// rungs use 0; a GOP re-encoded into a publisher's video takes an id its parameter
    /// sets do not use, so one avcC can carry both (`vod`).
    pub(crate) parameter_set_id: u8,
    /// The SPS level_idc; `None`: x264 derives it from size, rate and VBV. A re-encoded
    /// GOP keeps the publisher's, which CODECS already announces.
    pub(crate) level_idc: Option<u8>,
}

impl EncoderSettings {
    fn validate(&self) -> Result<(), AvError> {
        let invalid = |what: String| Err(AvError::InvalidSettings(what));
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 || w % 2 == 1 || h % 2 == 1 {
            return invalid(format!(
                "encoder size {w}x{h}: width and height must be even and non-zero (4:2:0)"
            ));
        }
        if self.frame_rate.0 == 0 || self.frame_rate.1 == 0 {
            return invalid(format!(
                "encoder frame rate {}/{} is not a rate",
                self.frame_rate.0, self.frame_rate.1
            ));
        }
        if self.bitrate_bps == 0 || self.max_bitrate_bps < self.bitrate_bps {
            return invalid(format!(
                "encoder bitrate {} bps with max {} bps: need 0 < bitrate <= max",
                self.bitrate_bps, self.max_bitrate_bps
            ));
        }
        if self.vbv_buffer_bits == 0 {
            return invalid("encoder VBV buffer of 0 bits".into());
        }
        if self.threads == 0 {
            return invalid("encoder threads = 0 (x264 would take every core)".into());
        }
        if self.preset.is_empty() || !self.preset.chars().all(|c| c.is_ascii_lowercase()) {
            return invalid(format!("x264 preset {:?}", self.preset));
        }
        if self.parameter_set_id > 31 {
            return invalid(format!(
                "SPS/PPS id {}: x264 numbers them 0 to 31",
                self.parameter_set_id
            ));
        }
        Ok(())
    }

    /// The x264 options that make it a live, aligned-keyframe encoder, in `x264-params`
    /// form (the benchmark passes the same string to the ffmpeg CLI). `zerolatency` sets
    /// most of them; they are spelled out so that a preset cannot bring any back:
    /// - `scenecut=0`: IDRs only where the caller forces them, identical on every rung;
    /// - `rc-lookahead=0:sync-lookahead=0:bframes=0`: no frame is held back;
    /// - `keyint`: the safety-net interval (`infinite` when 0).
    pub(crate) fn x264_params(&self) -> String {
        let keyint = match self.keyint_max_frames {
            0 => "infinite".to_string(),
            n => n.to_string(),
        };
        let mut params =
            format!("scenecut=0:rc-lookahead=0:sync-lookahead=0:bframes=0:keyint={keyint}");
        if self.parameter_set_id != 0 {
            params.push_str(&format!(":sps-id={}", self.parameter_set_id));
        }
        if let Some(level) = self.level_idc {
            params.push_str(&format!(":level={level}"));
        }
        params
    }
}

/// What the configuration decides for every encoded rung (`[transcoder]` `x264_preset`,
/// `threads_per_rung`, `vbv_buffer_ms`). The live ladder and VOD re-rendering both build a
/// rung's [`EncoderSettings`] from it, so a GOP re-encoded for a frame-precise asset gets
/// the live rung's x264 options, and with them the same SPS and PPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RungEncoding {
    pub(crate) preset: String,
    pub(crate) threads: u32,
    pub(crate) vbv_buffer_ms: u32,
}

impl RungEncoding {
    /// One rung's settings: capped VBR at `bitrate_bps` (the master playlist's BANDWIDTH
    /// is a peak), a VBV buffer of `vbv_buffer_ms` of it, and x264's own keyframe interval
    /// a safety net of four segment targets, well past the forced cadence (target +
    /// tolerance), so x264 never inserts an IDR of its own while the boundaries come.
    pub(crate) fn settings(
        &self,
        (width, height): (u32, u32),
        frame_rate: (u32, u32),
        bitrate_bps: u32,
        profile: H264Profile,
        segment_target_90k: i64,
    ) -> EncoderSettings {
        let fps = f64::from(frame_rate.0) / f64::from(frame_rate.1.max(1));
        let segment_frames = (segment_target_90k as f64 / f64::from(TIMESCALE)) * fps;
        EncoderSettings {
            width,
            height,
            frame_rate,
            bitrate_bps,
            max_bitrate_bps: bitrate_bps,
            vbv_buffer_bits: (u64::from(bitrate_bps) * u64::from(self.vbv_buffer_ms) / 1000)
                .min(u64::from(u32::MAX)) as u32,
            preset: self.preset.clone(),
            profile,
            threads: self.threads,
            keyint_max_frames: (segment_frames * 4.0).ceil().max(1.0) as u32,
            parameter_set_id: 0,
            level_idc: None,
        }
    }
}

/// libx264 for one rung. Output is AVCC (4-byte NAL unit lengths) with SPS/PPS only in
/// [`VideoEncoder::config`] (repeat-headers off: the init segment's `avcC` carries them).
pub(crate) struct VideoEncoder {
    encoder: encoder::Video,
    config: AvcConfig,
    settings: EncoderSettings,
    /// Pictures sent and not yet returned: (encoder tick, 90 kHz pts). x264 emits in input
    /// order here (no B-frames), so the front is the next packet's picture.
    in_flight: VecDeque<(i64, i64)>,
    /// The last encoder tick used; ticks must strictly increase.
    last_tick: Option<i64>,
}

impl VideoEncoder {
    pub(crate) fn new(settings: &EncoderSettings) -> Result<Self, AvError> {
        init();
        settings.validate()?;
        let codec =
            encoder::find_by_name("libx264").ok_or(AvError::CodecMissing("libx264 encoder"))?;
        let mut context = codec::Context::new_with_codec(codec);
        // Slice threads: x264's `zerolatency` threading, which adds no frame of delay
        // (frame threads would hold one picture per thread).
        context.set_threading(threading::Config {
            kind: threading::Type::Slice,
            count: settings.threads as usize,
            ..Default::default()
        });
        // SPS/PPS go to extradata, not in front of every IDR: the packager writes them
        // once into `avcC` (ISO/IEC 14496-15 §5.3.3), which CMAF wants (ISO/IEC 23000-19
        // §9.2.2: parameter sets in the sample entry).
        context.set_flags(codec::Flags::GLOBAL_HEADER);
        let mut setup = context
            .encoder()
            .video()
            .map_err(AvError::codec("creating the H.264 encoder"))?;
        let (num, den) = settings.frame_rate;
        let (num, den) = (
            i32::try_from(num).unwrap_or(i32::MAX),
            i32::try_from(den).unwrap_or(i32::MAX),
        );
        setup.set_width(settings.width);
        setup.set_height(settings.height);
        setup.set_format(ENCODER_FORMAT);
        // One tick per frame: x264 writes the time base into the SPS VUI timing info
        // (H.264 §E.2.1), so this gives players the real frame rate; a 90 kHz time base
        // would announce 90000 fps. Pictures' 90 kHz timestamps map onto these ticks and
        // back (see `tick`).
        setup.set_time_base(Rational::new(den, num));
        setup.set_frame_rate(Some(Rational::new(num, den)));
        setup.set_bit_rate(settings.bitrate_bps as usize);
        setup.set_max_bit_rate(settings.max_bitrate_bps as usize);
        setup.set_max_b_frames(0);
        let mut options = Dictionary::new();
        options.set("bufsize", &settings.vbv_buffer_bits.to_string());
        options.set("preset", &settings.preset);
        options.set("tune", "zerolatency");
        options.set("profile", settings.profile.name());
        // A picture sent as AV_PICTURE_TYPE_I becomes an IDR, not merely an I-frame
        // (libavcodec/libx264.c `forced-idr`): a segment must start with one.
        options.set("forced-idr", "1");
        options.set("x264-params", &settings.x264_params());
        let encoder = setup
            .open_as_with(codec, options)
            .map_err(AvError::codec("opening libx264"))?;
        let config = parameter_sets(&extradata(&encoder))?;
        Ok(VideoEncoder {
            encoder,
            config,
            settings: settings.clone(),
            in_flight: VecDeque::new(),
            last_tick: None,
        })
    }

    /// The rung's decoder configuration, from the encoder's own SPS/PPS: the exact
    /// profile and level for CODECS (RFC 6381 §3.3), size and frame rate.
    pub(crate) fn config(&self) -> &AvcConfig {
        &self.config
    }

    /// Encodes one picture (this rung's size, [`ENCODER_FORMAT`]) at `pts` (90 kHz); `idr`
    /// forces an IDR on exactly this picture. Returns the encoded frames (with the
    /// zero-latency settings, this picture's), AVCC with 4-byte lengths, dts == pts.
    pub(crate) fn encode(
        &mut self,
        picture: &frame::Video,
        pts: i64,
        idr: bool,
    ) -> Result<Vec<Frame>, AvError> {
        let (w, h) = (self.settings.width, self.settings.height);
        if (picture.width(), picture.height(), picture.format()) != (w, h, ENCODER_FORMAT) {
            return Err(AvError::InvalidSettings(format!(
                "picture is {}x{} {:?}, the encoder takes {w}x{h} {ENCODER_FORMAT:?}",
                picture.width(),
                picture.height(),
                picture.format()
            )));
        }
        let mut input = reference(picture)?;
        let tick = self.tick(pts);
        input.set_pts(Some(tick));
        // Always set: a decoded picture arrives with the source's picture type, and an I
        // left on it would force an IDR wherever the publisher had a keyframe.
        input.set_kind(if idr {
            picture::Type::I
        } else {
            picture::Type::None
        });
        self.encoder
            .send_frame(&input)
            .map_err(AvError::codec("encoding H.264"))?;
        self.in_flight.push_back((tick, pts));
        self.receive()
    }

    /// Ends the rung: whatever the encoder still holds. It takes no more pictures.
    pub(crate) fn flush(&mut self) -> Result<Vec<Frame>, AvError> {
        self.encoder
            .send_eof()
            .map_err(AvError::codec("flushing libx264"))?;
        self.receive()
    }

    /// The encoder tick for a 90 kHz pts: the nearest frame slot, and always after the
    /// previous one (x264 wants strictly increasing timestamps; jittery publisher
    /// timestamps, such as RTMP's milliseconds, may round onto the same slot).
    fn tick(&mut self, pts: i64) -> i64 {
        let (num, den) = self.settings.frame_rate;
        let scaled = i128::from(pts) * i128::from(num);
        let divisor = i128::from(den) * i128::from(TIMESCALE);
        let nearest = (scaled + divisor / 2).div_euclid(divisor) as i64;
        let tick = match self.last_tick {
            Some(last) if nearest <= last => last + 1,
            _ => nearest,
        };
        self.last_tick = Some(tick);
        tick
    }

    fn receive(&mut self) -> Result<Vec<Frame>, AvError> {
        let mut out = Vec::new();
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            let Some(data) = packet.data() else {
                continue;
            };
            let tick = packet.pts().unwrap_or_default();
            // Pictures come out in input order; pictures x264 skipped (none in these
            // settings) would be passed over.
            let pts = loop {
                match self.in_flight.pop_front() {
                    Some((sent, pts)) if sent == tick => break pts,
                    Some(_) => continue,
                    None => {
                        return Err(AvError::Bitstream(format!(
                            "libx264 returned a frame at tick {tick} that was never sent"
                        )));
                    }
                }
            };
            let keyframe = annexb_nal_units(data).any(|nal| nal[0] & 0x1f == NAL_IDR_SLICE);
            let avcc = annexb_to_avcc(data).map_err(|e| AvError::Bitstream(e.to_string()))?;
            out.push(Frame {
                track: TrackKind::Video,
                dts: pts,
                pts,
                keyframe,
                data: Bytes::from(avcc),
            });
        }
        Ok(out)
    }
}

/// The AvcConfig of x264's global headers: SPS and PPS in Annex B form (libx264.c keeps
/// its SEI out of extradata).
fn parameter_sets(extradata: &[u8]) -> Result<AvcConfig, AvError> {
    let find = |kind: u8| annexb_nal_units(extradata).find(|nal| nal[0] & 0x1f == kind);
    let (Some(sps), Some(pps)) = (find(NAL_SPS), find(NAL_PPS)) else {
        return Err(AvError::Bitstream(format!(
            "libx264's global header ({} bytes) lacks an SPS or a PPS",
            extradata.len()
        )));
    };
    AvcConfig::from_parameter_sets(sps, pps).map_err(|e| AvError::Bitstream(e.to_string()))
}

/// A new reference to `picture`'s buffers (no pixel copy), so the encoder can stamp its
/// own pts and picture type on a picture the caller shares between rungs.
#[allow(unsafe_code)]
pub(super) fn reference(picture: &frame::Video) -> Result<frame::Video, AvError> {
    let mut copy = frame::Video::empty();
    // SAFETY: both frames are valid AVFrames for this call; `copy` is freshly allocated
    // and empty, as av_frame_ref requires of its destination. av_frame_ref takes new
    // references on refcounted buffers (copying the data of a frame that has none) and
    // the copy frees them when dropped.
    let status = unsafe { ffmpeg_next::ffi::av_frame_ref(copy.as_mut_ptr(), picture.as_ptr()) };
    if status < 0 {
        return Err(AvError::Codec {
            step: "referencing a picture",
            source: ffmpeg_next::Error::from(status),
        });
    }
    Ok(copy)
}

/// A codec context's extradata; `ffmpeg-next` has no safe accessor for it.
#[allow(unsafe_code)]
fn extradata(context: &codec::Context) -> Vec<u8> {
    // SAFETY: `context` is a valid codec context, alive for this borrow. libav sets
    // `extradata` (or leaves it null) and `extradata_size` is its length; the bytes are
    // copied out before the borrow ends.
    unsafe {
        let raw = context.as_ptr();
        let (data, size) = ((*raw).extradata, (*raw).extradata_size);
        if data.is_null() || size <= 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts(data, size as usize).to_vec()
    }
}

/// Gives a decoder context its extradata before it is opened.
#[allow(unsafe_code)]
fn set_extradata(context: &mut codec::Context, bytes: &[u8]) -> Result<(), AvError> {
    let size = i32::try_from(bytes.len()).map_err(|_| {
        AvError::InvalidSettings(format!("decoder extradata of {} bytes", bytes.len()))
    })?;
    // SAFETY: the context is not opened yet and has no extradata. libav takes ownership of
    // an av_malloc'ed buffer with AV_INPUT_BUFFER_PADDING_SIZE zeroed bytes after the data
    // (its bitstream readers may read past the end) and frees it with the context.
    unsafe {
        let padding = ffmpeg_next::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
        let buf = ffmpeg_next::ffi::av_mallocz(bytes.len() + padding) as *mut u8;
        if buf.is_null() {
            return Err(AvError::Codec {
                step: "allocating decoder extradata",
                source: ffmpeg_next::Error::Other {
                    errno: ffmpeg_next::error::ENOMEM,
                },
            });
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len());
        let raw = context.as_mut_ptr();
        (*raw).extradata = buf;
        (*raw).extradata_size = size;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use floodlight_media::avc::parse_sps;
    use floodlight_media::codec::avc_codec_string;
    use floodlight_media::flv::{FlvFileReader, FlvTagType, VideoTag, parse_video_tag};

    use super::*;

    /// 4 s of H.264 High 320x240 @ 30 fps with 2 B-frames (media/testdata/README.md).
    const BFRAMES_FLV: &[u8] =
        include_bytes!("../../../media/testdata/ffmpeg_h264_aac_bframes.flv");

    /// A moving test pattern, `width`×`height` YUV 4:2:0, picture number `n`: diagonal
    /// luma stripes that scroll and a bright square that moves, so consecutive pictures
    /// differ as camera video does and P-frames have motion to code.
    pub(crate) fn test_picture(width: u32, height: u32, n: usize) -> frame::Video {
        let mut picture = frame::Video::new(ENCODER_FORMAT, width, height);
        let stride = picture.stride(0);
        let square = (n * 7) % (width as usize).saturating_sub(32).max(1);
        let luma = picture.data_mut(0);
        for y in 0..height as usize {
            for x in 0..width as usize {
                let stripes = ((x + y + 3 * n) % 64) as u8 * 3;
                let inside = (square..square + 32).contains(&x) && (16..48).contains(&y);
                luma[y * stride + x] = if inside { 235 } else { 16 + stripes };
            }
        }
        for plane in 1..3 {
            let stride = picture.stride(plane);
            let (w, h) = (picture.plane_width(plane), picture.plane_height(plane));
            let data = picture.data_mut(plane);
            for y in 0..h as usize {
                for x in 0..w as usize {
                    data[y * stride + x] = (96 + plane * 32 + (x + n) % 32) as u8;
                }
            }
        }
        picture
    }

    pub(crate) fn settings(width: u32, height: u32, profile: H264Profile) -> EncoderSettings {
        EncoderSettings {
            width,
            height,
            frame_rate: (30, 1),
            bitrate_bps: 400_000,
            max_bitrate_bps: 400_000,
            vbv_buffer_bits: 400_000,
            preset: "veryfast".into(),
            profile,
            threads: 2,
            keyint_max_frames: 300,
            parameter_set_id: 0,
            level_idc: None,
        }
    }

    fn nal_types(avcc: &[u8]) -> Vec<u8> {
        let mut types = Vec::new();
        let mut rest = avcc;
        while rest.len() > 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            types.push(rest[4] & 0x1f);
            rest = &rest[4 + len..];
        }
        assert!(rest.is_empty(), "NAL unit lengths add up to the sample");
        types
    }

    /// RTMP-style timestamps: whole milliseconds of 30 fps, on the 90 kHz timeline from
    /// `start`, so the steps jitter between 2970 and 3060 ticks.
    fn rtmp_pts(start: i64, n: usize) -> i64 {
        start + (n as i64 * 1000 + 15) / 30 * 90
    }

    #[test]
    fn three_rungs_get_idrs_exactly_where_forced_and_decode_back() {
        const PICTURES: usize = 75;
        // Irregular on purpose: the source's GOP, not a multiple of anything.
        let forced = [0, 23, 60, 61];
        let start = 8_100_000;
        let rungs = [
            settings(640, 360, H264Profile::High),
            settings(416, 234, H264Profile::Main),
            settings(256, 144, H264Profile::Baseline),
        ];
        let mut scalers: Vec<Scaler> = rungs
            .iter()
            .map(|r| Scaler::new(640, 360, ENCODER_FORMAT, r.width, r.height).unwrap())
            .collect();
        let mut encoders: Vec<VideoEncoder> = rungs
            .iter()
            .map(|r| VideoEncoder::new(r).unwrap())
            .collect();
        let mut outputs: Vec<Vec<Frame>> = vec![Vec::new(); rungs.len()];
        for n in 0..PICTURES {
            let mut source = test_picture(640, 360, n);
            let pts = rtmp_pts(start, n);
            source.set_pts(Some(pts));
            for (i, encoder) in encoders.iter_mut().enumerate() {
                let scaled = scalers[i].scale(&source).unwrap();
                let out = encoder.encode(&scaled, pts, forced.contains(&n)).unwrap();
                // Zero latency: the picture comes back from its own call.
                assert_eq!(out.len(), 1, "rung {i} picture {n}");
                outputs[i].extend(out);
            }
        }
        for (i, encoder) in encoders.iter_mut().enumerate() {
            assert!(encoder.flush().unwrap().is_empty(), "nothing held back");
            let out = &outputs[i];
            let idrs: Vec<usize> = (0..out.len()).filter(|&n| out[n].keyframe).collect();
            assert_eq!(
                idrs, forced,
                "rung {i}: IDRs exactly on the forced pictures"
            );
            for (n, frame) in out.iter().enumerate() {
                assert_eq!((frame.pts, frame.dts), (rtmp_pts(start, n), frame.pts));
                let types = nal_types(&frame.data);
                // H.264 Table 7-1: 5 = IDR slice, 1 = non-IDR slice; no SPS/PPS in band.
                let expected = if frame.keyframe { 5 } else { 1 };
                assert!(types.contains(&expected), "rung {i} picture {n}: {types:?}");
                assert!(!types.contains(&NAL_SPS) && !types.contains(&NAL_PPS));
                assert_eq!(types.contains(&5), frame.keyframe);
            }

            let config = encoder.config();
            let rung = &rungs[i];
            assert_eq!((config.width, config.height), (rung.width, rung.height));
            assert_eq!(config.frame_rate, Some(30.0));
            assert_eq!(config.nal_length_size, 4);
            // profile_idc (H.264 §A.2): 66 Baseline, 77 Main, 100 High.
            let profile_idc = match rung.profile {
                H264Profile::Baseline => 66,
                H264Profile::Main => 77,
                H264Profile::High => 100,
            };
            assert_eq!(config.profile_idc, profile_idc);
            let sps = parse_sps(&config.sps[0]).unwrap();
            let from_sps = format!(
                "avc1.{:02x}{:02x}{:02x}",
                sps.profile_idc, sps.constraint_flags, sps.level_idc
            );
            assert_eq!(avc_codec_string(config), from_sps);
            // The record the packager writes as avcC parses back to the same parameters.
            let reparsed = AvcConfig::from_record(config.record.clone()).unwrap();
            assert_eq!(&reparsed, config);

            // Round trip: libav decodes every frame back, same count and timestamps.
            let mut decoder = VideoDecoder::new(config).unwrap();
            let mut pictures = Vec::new();
            for frame in out {
                decoder.send(frame).unwrap();
                pictures.extend(std::iter::from_fn(|| decoder.receive()));
            }
            pictures.extend(decoder.flush());
            let pts: Vec<i64> = pictures.iter().map(|p| p.pts).collect();
            let sent: Vec<i64> = out.iter().map(|f| f.pts).collect();
            assert_eq!(pts, sent, "rung {i}");
            assert!(
                pictures
                    .iter()
                    .all(|p| (p.frame.width(), p.frame.height()) == (rung.width, rung.height))
            );
        }
        // x264 levels (H.264 Table A-1) for these sizes at 30 fps: 640x360 fits 3.0,
        // 256x144 fits 1.1 or above; a level far off would mislead players' CODECS checks.
        assert!((20..=31).contains(&encoders[0].config().level_idc));
        assert!(encoders[2].config().level_idc <= encoders[0].config().level_idc);
    }

    #[test]
    fn live_settings_reach_x264() {
        let mut encoder = VideoEncoder::new(&settings(320, 180, H264Profile::High)).unwrap();
        let out = encoder.encode(&test_picture(320, 180, 0), 0, true).unwrap();
        // x264 writes its settings into a user-data SEI in the first access unit.
        let data = String::from_utf8_lossy(&out[0].data);
        let text = &data[data.find("options:").unwrap()..];
        let text = &text[..text.find('\u{80}').unwrap_or(text.len()).min(1000)];
        for option in [
            "sliced_threads=1",
            "rc_lookahead=0",
            "bframes=0",
            "scenecut=0",
            "keyint=300",
            // maxrate == bitrate: x264's CBR mode under the VBV.
            "rc=cbr",
            "vbv_maxrate=400",
            "vbv_bufsize=400",
            "bitrate=400",
        ] {
            assert!(text.contains(option), "{option} in {text}");
        }
    }

    #[test]
    fn keyframes_of_the_input_do_not_leak_into_the_rung() {
        // A decoded I-picture is re-encoded as a P-frame unless the caller asks for an IDR.
        let mut encoder = VideoEncoder::new(&settings(320, 180, H264Profile::Main)).unwrap();
        let mut keyframes = Vec::new();
        for n in 0..10 {
            let mut picture = test_picture(320, 180, n);
            picture.set_kind(picture::Type::I);
            let out = encoder.encode(&picture, n as i64 * 3000, n == 0).unwrap();
            keyframes.extend(out.iter().map(|f| f.keyframe));
        }
        assert_eq!(keyframes, [[true].as_slice(), &[false; 9]].concat());
    }

    fn bframes_capture() -> (AvcConfig, Vec<Frame>) {
        let (mut config, mut frames) = (None, Vec::new());
        for tag in FlvFileReader::new(BFRAMES_FLV).unwrap() {
            let tag = tag.unwrap();
            if tag.tag_type != FlvTagType::Video {
                continue;
            }
            match parse_video_tag(tag.body, tag.timestamp_ms).unwrap() {
                VideoTag::SequenceHeader(c) => config = Some(c),
                VideoTag::Frame(f) => frames.push(f),
                _ => {}
            }
        }
        (config.unwrap(), frames)
    }

    #[test]
    fn decoder_gives_b_frame_sources_in_presentation_order() {
        let (config, frames) = bframes_capture();
        assert!(
            frames.iter().any(|f| f.pts != f.dts),
            "the capture has B-frames"
        );
        let mut decoder = VideoDecoder::new(&config).unwrap();
        let mut pts = Vec::new();
        for frame in &frames {
            decoder.send(frame).unwrap();
            while let Some(picture) = decoder.receive() {
                assert_eq!((picture.frame.width(), picture.frame.height()), (320, 240));
                pts.push(picture.pts);
            }
        }
        pts.extend(decoder.flush().iter().map(|p| p.pts));
        let mut expected: Vec<i64> = frames.iter().map(|f| f.pts).collect();
        expected.sort_unstable();
        assert_eq!(pts, expected);
    }

    #[test]
    fn undecodable_access_unit_is_refused_and_decoding_goes_on() {
        let (config, frames) = bframes_capture();
        let mut decoder = VideoDecoder::new(&config).unwrap();
        // A length prefix that runs past the sample.
        let garbage = Frame {
            data: Bytes::from_static(&[0, 0, 0, 200, 0x65, 1, 2]),
            ..frames[0].clone()
        };
        assert!(decoder.send(&garbage).is_err());
        let mut decoded = 0;
        for frame in &frames {
            decoder.send(frame).unwrap();
            decoded += std::iter::from_fn(|| decoder.receive()).count();
        }
        decoded += decoder.flush().len();
        assert_eq!(decoded, frames.len());
    }

    #[test]
    fn scaler_resizes_and_converts() {
        let mut source = test_picture(640, 360, 3);
        source.set_pts(Some(42));
        let mut scaler = Scaler::new(640, 360, ENCODER_FORMAT, 426, 240).unwrap();
        let out = scaler.scale(&source).unwrap();
        assert_eq!(
            (out.width(), out.height(), out.format()),
            (426, 240, ENCODER_FORMAT)
        );
        assert_eq!(out.pts(), Some(42));
        assert_eq!(scaler.output_size(), (426, 240));
        // A publisher that changes resolution mid-stream: a clear error, not garbage.
        let other = test_picture(320, 180, 0);
        assert!(matches!(
            scaler.scale(&other),
            Err(AvError::InvalidSettings(_))
        ));
        assert!(Scaler::new(0, 360, ENCODER_FORMAT, 10, 10).is_err());
    }

    #[test]
    fn bad_settings_and_pictures_are_refused() {
        let good = settings(320, 180, H264Profile::High);
        for bad in [
            EncoderSettings {
                width: 321,
                ..good.clone()
            },
            EncoderSettings {
                height: 0,
                ..good.clone()
            },
            EncoderSettings {
                frame_rate: (30, 0),
                ..good.clone()
            },
            EncoderSettings {
                max_bitrate_bps: 1,
                ..good.clone()
            },
            EncoderSettings {
                vbv_buffer_bits: 0,
                ..good.clone()
            },
            EncoderSettings {
                threads: 0,
                ..good.clone()
            },
            EncoderSettings {
                preset: "no such preset".into(),
                ..good.clone()
            },
        ] {
            assert!(
                matches!(VideoEncoder::new(&bad), Err(AvError::InvalidSettings(_))),
                "{bad:?}"
            );
        }
        // libx264 itself refuses a preset it does not know.
        let unknown = EncoderSettings {
            preset: "sluggish".into(),
            ..good.clone()
        };
        assert!(matches!(
            VideoEncoder::new(&unknown),
            Err(AvError::Codec { .. })
        ));
        let mut encoder = VideoEncoder::new(&good).unwrap();
        assert!(encoder.encode(&test_picture(640, 360, 0), 0, true).is_err());
        assert_eq!("main".parse::<H264Profile>().unwrap(), H264Profile::Main);
        assert!("extended".parse::<H264Profile>().is_err());
    }

    #[test]
    fn frame_rate_is_kept_for_ntsc_rates() {
        let mut settings = settings(320, 180, H264Profile::High);
        settings.frame_rate = (30_000, 1001);
        let mut encoder = VideoEncoder::new(&settings).unwrap();
        let rate = encoder.config().frame_rate.unwrap();
        assert!((rate - 29.97).abs() < 0.01, "{rate}");
        // 29.97 fps on 90 kHz is exactly 3003 ticks a picture.
        for n in 0..5 {
            let out = encoder.encode(&test_picture(320, 180, n), n as i64 * 3003, n == 0);
            assert_eq!(out.unwrap()[0].pts, n as i64 * 3003);
        }
    }
}
