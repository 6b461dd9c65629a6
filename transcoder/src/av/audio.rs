//! Opus → AAC-LC. WebRTC publishers (WHIP) send Opus (RFC 7587); HLS players expect AAC
//! in fMP4, so every Opus frame is decoded, re-chunked into AAC's 1024-sample frames and
//! encoded with libav's native `aac` encoder (AAC-LC).
//!
//! Timing: Opus always decodes at 48 kHz (RFC 7845 §5.1) and the encoder runs at the same
//! rate, so one sample clock serves both sides and no timestamp is ever resampled. The
//! samples waiting for a full AAC frame carry the timestamp of their first sample; the
//! encoder's output timestamps follow its input's, including its 1024-sample priming
//! (the first AAC frame starts one frame before the first Opus sample, as decoders expect).

use bytes::Bytes;
use ffmpeg_next::format::Sample;
use ffmpeg_next::format::sample::Type;
use ffmpeg_next::software::resampling;
use ffmpeg_next::{ChannelLayout, Packet, Rational, codec, decoder, encoder, frame};
use floodlight_media::{AacConfig, Frame, OpusConfig, TIMESCALE, TrackKind};

use super::{AvError, init};

const RATE: u32 = OpusConfig::SAMPLE_RATE;
/// The AAC encoder's sample format: planar 32-bit float, what libav's `aac` takes.
const ENCODER_FORMAT: Sample = Sample::F32(Type::Planar);
/// Timestamp policy for gaps in the publisher's audio (lost packets, a muted track that
/// stops sending): a gap up to this long, 48 kHz samples, is filled with silence so the
/// AAC timeline runs on unbroken; a longer gap, or a step back, restarts the timeline at
/// the new timestamp (the packager takes it as a jump).
const MAX_SILENCE_FILL: i64 = RATE as i64;
/// Timestamp jitter, 48 kHz samples, below which a frame's timestamp is taken to follow the
/// previous one exactly: half a 20 ms Opus frame. Senders' RTP timestamps are sample
/// counts, so real streams never come near it.
const JITTER: i64 = 480;

/// 90 kHz ↔ 48 kHz, rounded to the nearest tick.
fn to_samples(ts_90k: i64) -> i64 {
    rescale(ts_90k, i64::from(TIMESCALE), i64::from(RATE))
}

fn to_90k(samples: i64) -> i64 {
    rescale(samples, i64::from(RATE), i64::from(TIMESCALE))
}

/// Rounds half away from zero, so negative timestamps (the encoder's priming) map back
/// and forth like positive ones.
fn rescale(value: i64, from: i64, to: i64) -> i64 {
    let scaled = i128::from(value) * i128::from(to);
    let from = i128::from(from);
    let magnitude = (scaled.abs() + from / 2) / from;
    (scaled.signum() * magnitude) as i64
}

/// Decodes one stream's Opus frames and encodes them as AAC-LC frames on the same 90 kHz
/// timeline. One per audio track of a publisher session; not reusable after [`finish`].
///
/// [`finish`]: OpusToAac::finish
pub(crate) struct OpusToAac {
    decoder: decoder::Audio,
    /// Converts the decoder's output to the encoder's format and channels; made for the
    /// first decoded frame that needs it (libav's Opus decoder gives planar float stereo).
    resampler: Option<resampling::Context>,
    encoder: encoder::Audio,
    layout: ChannelLayout,
    channels: usize,
    frame_size: usize,
    config: AacConfig,
    /// Decoded samples not yet encoded, one buffer per channel.
    pending: Vec<Vec<f32>>,
    /// Timestamp (48 kHz) of the first sample in `pending`, or where it would be.
    pending_pts: Option<i64>,
    /// Samples still to drop from the decoder's output (OpusHead pre-skip).
    skip: usize,
}

impl OpusToAac {
    /// Opens the Opus decoder and an AAC-LC encoder with `opus.channels` channels at
    /// `bitrate_bps`.
    pub(crate) fn new(opus: &OpusConfig, bitrate_bps: u32) -> Result<Self, AvError> {
        init();
        let opus_codec =
            decoder::find(codec::Id::OPUS).ok_or(AvError::CodecMissing("Opus decoder"))?;
        // No extradata: libav then assumes mapping family 0 in stereo (RFC 7845
        // §5.1.1.1), which decodes mono and stereo packets alike; the channel count the
        // session wants is made by the resampler.
        let decoder = codec::Context::new_with_codec(opus_codec)
            .decoder()
            .audio()
            .map_err(AvError::codec("opening the Opus decoder"))?;

        let aac_codec = encoder::find_by_name("aac").ok_or(AvError::CodecMissing("aac encoder"))?;
        let channels = usize::from(opus.channels.clamp(1, 2));
        let layout = ChannelLayout::default(channels as i32);
        let mut setup = codec::Context::new_with_codec(aac_codec)
            .encoder()
            .audio()
            .map_err(AvError::codec("creating the AAC encoder"))?;
        setup.set_rate(RATE as i32);
        setup.set_format(ENCODER_FORMAT);
        setup.set_channel_layout(layout);
        setup.set_bit_rate(bitrate_bps as usize);
        setup.set_time_base(Rational::new(1, RATE as i32));
        let encoder = setup
            .open_as(aac_codec)
            .map_err(AvError::codec("opening the AAC encoder"))?;
        let asc = Bytes::from(extradata(&encoder));
        let config = AacConfig::from_asc(asc).map_err(|e| AvError::EncoderConfig(e.to_string()))?;
        Ok(OpusToAac {
            decoder,
            resampler: None,
            frame_size: encoder.frame_size() as usize,
            encoder,
            layout,
            channels,
            config,
            pending: vec![Vec::new(); channels],
            pending_pts: None,
            skip: usize::from(opus.pre_skip),
        })
    }

    /// The AAC track's parameters (AudioSpecificConfig from the encoder).
    pub(crate) fn aac_config(&self) -> &AacConfig {
        &self.config
    }

    /// Decodes one Opus frame and appends every AAC frame that completes to `out`. An
    /// error means this frame was dropped (not decodable); the stream goes on.
    pub(crate) fn push(&mut self, opus: &Frame, out: &mut Vec<Frame>) -> Result<(), AvError> {
        let mut packet = Packet::copy(&opus.data);
        let pts = to_samples(opus.pts);
        packet.set_pts(Some(pts));
        self.decoder
            .send_packet(&packet)
            .map_err(AvError::codec("decoding Opus"))?;
        let mut decoded = frame::Audio::empty();
        // One packet is one Opus frame (RFC 7587 §4.2), so one decoded frame; its samples
        // start at the packet's timestamp.
        let mut at = pts;
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let samples = decoded.samples() as i64;
            self.append(&decoded, at, out)?;
            at += samples;
        }
        Ok(())
    }

    /// Encodes what is left (the last frame padded with silence) and drains the encoder.
    pub(crate) fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), AvError> {
        if self.pending.first().is_some_and(|p| !p.is_empty()) {
            let pad = self.frame_size - self.pending[0].len() % self.frame_size;
            self.pad(pad);
            self.encode_full(out)?;
        }
        self.encoder
            .send_eof()
            .map_err(AvError::codec("flushing the AAC encoder"))?;
        self.drain(out);
        Ok(())
    }

    /// Adds one decoded frame starting at `pts` (48 kHz) to the pending samples.
    fn append(
        &mut self,
        decoded: &frame::Audio,
        pts: i64,
        out: &mut Vec<Frame>,
    ) -> Result<(), AvError> {
        let converted;
        let source = if decoded.format() == ENCODER_FORMAT
            && usize::from(decoded.channels()) == self.channels
            && decoded.rate() == RATE
        {
            decoded
        } else {
            converted = self.convert(decoded)?;
            &converted
        };
        let samples = source.samples();
        let skip = self.skip.min(samples);
        self.skip -= skip;
        if skip == samples {
            return Ok(());
        }
        let pts = pts + skip as i64;
        match self.pending_pts {
            None => self.pending_pts = Some(pts),
            Some(start) => {
                let expected = start + self.pending[0].len() as i64;
                let gap = pts - expected;
                if gap > JITTER && gap <= MAX_SILENCE_FILL {
                    self.pad(gap as usize);
                } else if !(-JITTER..=JITTER).contains(&gap) {
                    // A jump: close the timeline so far, start again at `pts`.
                    let rest = self.pending[0].len() % self.frame_size;
                    if rest > 0 {
                        self.pad(self.frame_size - rest);
                    }
                    self.encode_full(out)?;
                    self.pending_pts = Some(pts);
                }
            }
        }
        for (channel, pending) in self.pending.iter_mut().enumerate() {
            pending.extend_from_slice(&source.plane::<f32>(channel)[skip..samples]);
        }
        self.encode_full(out)
    }

    fn convert(&mut self, decoded: &frame::Audio) -> Result<frame::Audio, AvError> {
        let input_layout = ChannelLayout::default(i32::from(decoded.channels()));
        let stale = self.resampler.as_ref().is_some_and(|r| {
            let input = r.input();
            input.format != decoded.format()
                || input.channel_layout != input_layout
                || input.rate != decoded.rate()
        });
        if stale || self.resampler.is_none() {
            self.resampler = Some(
                resampling::Context::get(
                    decoded.format(),
                    input_layout,
                    decoded.rate(),
                    ENCODER_FORMAT,
                    self.layout,
                    RATE,
                )
                .map_err(AvError::codec("setting up the resampler"))?,
            );
        }
        let Some(resampler) = self.resampler.as_mut() else {
            unreachable!("set just above");
        };
        let mut input = decoded.clone();
        // The decoder's legacy channel layout may be unset; the resampler reads it.
        input.set_channel_layout(input_layout);
        let mut output = frame::Audio::empty();
        resampler
            .run(&input, &mut output)
            .map_err(AvError::codec("resampling"))?;
        output.set_channels(self.channels as u16);
        Ok(output)
    }

    fn pad(&mut self, samples: usize) {
        for pending in &mut self.pending {
            pending.resize(pending.len() + samples, 0.0);
        }
    }

    /// Encodes every whole AAC frame of the pending samples.
    fn encode_full(&mut self, out: &mut Vec<Frame>) -> Result<(), AvError> {
        let Some(mut pts) = self.pending_pts else {
            return Ok(());
        };
        let frames = self.pending[0].len() / self.frame_size;
        for i in 0..frames {
            let mut frame = frame::Audio::new(ENCODER_FORMAT, self.frame_size, self.layout);
            frame.set_channels(self.channels as u16);
            frame.set_rate(RATE);
            frame.set_pts(Some(pts));
            let range = i * self.frame_size..(i + 1) * self.frame_size;
            for (channel, pending) in self.pending.iter().enumerate() {
                frame.plane_mut::<f32>(channel)[..self.frame_size]
                    .copy_from_slice(&pending[range.clone()]);
            }
            self.encoder
                .send_frame(&frame)
                .map_err(AvError::codec("encoding AAC"))?;
            self.drain(out);
            pts += self.frame_size as i64;
        }
        let used = frames * self.frame_size;
        for pending in &mut self.pending {
            pending.drain(..used);
        }
        self.pending_pts = Some(pts);
        Ok(())
    }

    /// Collects the packets the encoder has ready as AAC frames on the 90 kHz timeline.
    fn drain(&mut self, out: &mut Vec<Frame>) {
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            let (Some(pts), Some(data)) = (packet.pts(), packet.data()) else {
                continue;
            };
            let ts = to_90k(pts);
            out.push(Frame {
                track: TrackKind::Audio,
                dts: ts,
                pts: ts,
                keyframe: true,
                data: Bytes::copy_from_slice(data),
            });
        }
    }
}

/// The encoder's extradata: for AAC, the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1)
/// that goes into `esds`. `ffmpeg-next` has no safe accessor for it.
#[allow(unsafe_code)]
fn extradata(encoder: &encoder::Audio) -> Vec<u8> {
    // SAFETY: `encoder` is an opened codec context, alive for this borrow. libav sets
    // `extradata` (or leaves it null) in avcodec_open2 and `extradata_size` is its length;
    // the bytes are copied out before the borrow ends.
    unsafe {
        let context = encoder.as_ptr();
        let (data, size) = ((*context).extradata, (*context).extradata_size);
        if data.is_null() || size <= 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts(data, size as usize).to_vec()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 440 Hz sine encoded to Opus by libav's libopus encoder: 20 ms frames, as WebRTC
    /// senders packetize them, stamped on the 90 kHz timeline from `start_90k`.
    pub(crate) fn opus_sine(channels: usize, seconds: usize, start_90k: i64) -> Vec<Frame> {
        init();
        let codec = encoder::find_by_name("libopus").expect("Debian's libavcodec has libopus");
        let layout = ChannelLayout::default(channels as i32);
        let mut setup = codec::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .unwrap();
        setup.set_rate(RATE as i32);
        setup.set_format(Sample::F32(Type::Packed));
        setup.set_channel_layout(layout);
        setup.set_bit_rate(64_000);
        setup.set_time_base(Rational::new(1, RATE as i32));
        let mut enc = setup.open_as(codec).unwrap();
        let frame_size = enc.frame_size() as usize;
        assert_eq!(frame_size, 960, "20 ms frames");
        let mut frames = Vec::new();
        let mut packet = Packet::empty();
        let mut collect = |enc: &mut encoder::Audio, frames: &mut Vec<Frame>| {
            while enc.receive_packet(&mut packet).is_ok() {
                let ts = start_90k + to_90k(packet.pts().unwrap());
                frames.push(Frame {
                    track: TrackKind::Audio,
                    dts: ts,
                    pts: ts,
                    keyframe: true,
                    data: Bytes::copy_from_slice(packet.data().unwrap()),
                });
            }
        };
        for n in 0..seconds * RATE as usize / frame_size {
            let mut frame = frame::Audio::new(Sample::F32(Type::Packed), frame_size, layout);
            frame.set_channels(channels as u16);
            frame.set_rate(RATE);
            frame.set_pts(Some((n * frame_size) as i64));
            let data = frame.plane_mut::<f32>(0);
            for (i, sample) in data.iter_mut().enumerate() {
                let t = (n * frame_size + i / channels) as f32 / RATE as f32;
                *sample = 0.5 * (2.0 * std::f32::consts::PI * 440.0 * t).sin();
            }
            enc.send_frame(&frame).unwrap();
            collect(&mut enc, &mut frames);
        }
        enc.send_eof().unwrap();
        collect(&mut enc, &mut frames);
        frames
    }

    /// Decodes AAC frames with libav's AAC decoder: (samples per channel, peak level).
    fn decode_aac(config: &AacConfig, frames: &[Frame]) -> (usize, f32) {
        let codec = decoder::find(codec::Id::AAC).unwrap();
        let mut context = codec::Context::new_with_codec(codec);
        let mut parameters = codec::Parameters::new();
        parameters.set_medium(ffmpeg_next::media::Type::Audio);
        parameters.set_id(codec::Id::AAC);
        context.set_parameters(parameters).unwrap();
        let mut dec = aac_decoder_with_asc(context, &config.asc);
        let (mut samples, mut peak) = (0, 0f32);
        let mut decoded = frame::Audio::empty();
        for f in frames {
            dec.send_packet(&Packet::copy(&f.data)).unwrap();
            while dec.receive_frame(&mut decoded).is_ok() {
                samples += decoded.samples();
                let plane = decoded.plane::<f32>(0);
                peak = plane.iter().fold(peak, |p, s| p.max(s.abs()));
            }
        }
        (samples, peak)
    }

    /// An AAC decoder configured with the AudioSpecificConfig, as a player reads it from
    /// `esds`.
    #[allow(unsafe_code)]
    fn aac_decoder_with_asc(mut context: codec::Context, asc: &[u8]) -> decoder::Audio {
        // SAFETY: the context is not opened yet; libav takes ownership of an
        // av_malloc'ed, zero-padded extradata buffer and frees it with the context.
        unsafe {
            let padding = ffmpeg_next::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
            let buf = ffmpeg_next::ffi::av_mallocz(asc.len() + padding) as *mut u8;
            std::ptr::copy_nonoverlapping(asc.as_ptr(), buf, asc.len());
            let raw = context.as_mut_ptr();
            (*raw).extradata = buf;
            (*raw).extradata_size = asc.len() as i32;
        }
        context.decoder().audio().unwrap()
    }

    fn transcode(opus: &OpusConfig, input: &[Frame]) -> (OpusToAac, Vec<Frame>) {
        let mut t = OpusToAac::new(opus, 128_000).unwrap();
        let mut out = Vec::new();
        for f in input {
            t.push(f, &mut out).unwrap();
        }
        t.finish(&mut out).unwrap();
        (t, out)
    }

    #[test]
    fn stereo_opus_becomes_aac_lc_with_exact_timestamps() {
        let start = 123_456;
        let input = opus_sine(2, 3, start);
        let opus = OpusConfig {
            channels: 2,
            pre_skip: 0,
        };
        let (t, out) = transcode(&opus, &input);
        let config = t.aac_config();
        // ISO/IEC 14496-3: AAC-LC (object type 2), 48 kHz, two channels.
        assert_eq!(
            (config.object_type, config.sample_rate, config.channels),
            (2, 48_000, 2)
        );
        // Every AAC frame is 1024 samples = 1920 ticks at 90 kHz, back to back, and the
        // first starts one frame (the encoder's priming) before the first Opus sample.
        // (±1 tick: 48 kHz timestamps that are no multiple of 8 samples round on 90 kHz.)
        assert!(
            (out[0].pts - (input[0].pts - 1920)).abs() <= 1,
            "{}",
            out[0].pts
        );
        for pair in out.windows(2) {
            assert_eq!(pair[1].pts - pair[0].pts, 1920);
            assert_eq!(pair[1].dts, pair[1].pts);
        }
        let opus_samples = input.len() * 960;
        let (samples, peak) = decode_aac(config, &out);
        assert!(
            samples >= opus_samples && samples <= opus_samples + 3 * 1024,
            "{samples} decoded samples for {opus_samples} in"
        );
        assert!(
            peak > 0.3,
            "the sine is audible after the round trip: {peak}"
        );
    }

    #[test]
    fn mono_session_downmixes_and_gaps_are_filled_or_restart() {
        let input = opus_sine(1, 2, 0);
        let opus = OpusConfig {
            channels: 1,
            pre_skip: 0,
        };
        // Lose frames 10..15 (100 ms: filled with silence), and shift everything from
        // frame 60 on by 5 s (a jump: the timeline restarts there).
        let shifted: Vec<Frame> = input
            .iter()
            .enumerate()
            .filter(|(i, _)| !(10..15).contains(i))
            .map(|(i, f)| {
                let mut f = f.clone();
                if i >= 60 {
                    f.pts += 5 * 90_000;
                    f.dts = f.pts;
                }
                f
            })
            .collect();
        let (t, out) = transcode(&opus, &shifted);
        assert_eq!(t.aac_config().channels, 1);
        let steps: Vec<i64> = out.windows(2).map(|p| p[1].pts - p[0].pts).collect();
        let jumps: Vec<&i64> = steps.iter().filter(|&&s| s != 1920).collect();
        assert_eq!(jumps.len(), 1, "one restart, the loss filled: {steps:?}");
        assert!(*jumps[0] > 4 * 90_000, "{jumps:?}");
        let restart = out
            .iter()
            .find(|f| f.pts >= input[60].pts + 4 * 90_000)
            .unwrap();
        assert!(
            (restart.pts - (input[60].pts + 5 * 90_000 - 1920)).abs() <= 1920,
            "restart near the shifted frame: {} vs {}",
            restart.pts,
            input[60].pts + 5 * 90_000
        );
        let (_, peak) = decode_aac(t.aac_config(), &out);
        assert!(peak > 0.3, "{peak}");
    }

    #[test]
    fn undecodable_frame_is_refused_and_the_stream_goes_on() {
        let input = opus_sine(2, 1, 0);
        let opus = OpusConfig {
            channels: 2,
            pre_skip: 0,
        };
        let mut t = OpusToAac::new(&opus, 96_000).unwrap();
        let mut out = Vec::new();
        let garbage = Frame {
            data: Bytes::from_static(&[0xff; 3]),
            ..input[5].clone()
        };
        for (i, f) in input.iter().enumerate() {
            if i == 5 {
                assert!(t.push(&garbage, &mut out).is_err());
                continue;
            }
            t.push(f, &mut out).unwrap();
        }
        t.finish(&mut out).unwrap();
        assert!(out.len() >= input.len() * 960 / 1024);
    }

    #[test]
    fn pre_skip_drops_the_first_samples() {
        let input = opus_sine(2, 1, 0);
        let (_, plain) = transcode(
            &OpusConfig {
                channels: 2,
                pre_skip: 0,
            },
            &input,
        );
        let (_, skipped) = transcode(
            &OpusConfig {
                channels: 2,
                pre_skip: 312,
            },
            &input,
        );
        // The first kept sample is 312 samples (585 ticks) after the first packet's start.
        assert_eq!(skipped[0].pts - plain[0].pts, 585);
    }
}
