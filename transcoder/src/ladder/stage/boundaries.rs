//! Each decoded picture against the segment boundaries: the aligner
//! ([`KeyframeAligner`](crate::ladder::align::KeyframeAligner)) decides where segments
//! start, the picture goes to every rung with an IDR forced on the boundaries (a rung whose
//! queue was full waits for the next boundary), and the first forced boundary switches
//! `source` from the passthrough to a re-encode.
//!
//! `source` re-encoding: the passthrough is offered while its keyframes are the
//! boundaries. At the first forced boundary (the publisher's GOP does not line up) it is
//! re-encoded at the source size from that IDR on. The packager sees `source` with new
//! parameters: a new init segment, and EXT-X-DISCONTINUITY on every rendition at that MSN
//! (RFC 8216bis §4.4.3.3 keeps the discontinuity sequence equal across renditions).
//! Each access unit is decoded before it is passed through, so the unit that completes the
//! switch picture is not passed through, nor any after it: the re-encode carries every
//! picture from the switch on and no picture is lost. With B-frames, units decoded before
//! the switch picture may have a later pts (up to the reorder depth): they were passed
//! through already and end the passthrough's last segment, overlapping the re-encode by a
//! frame or two (counted: `floodlight_transcoder_source_overlap_frames_total`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ffmpeg_next::frame;
use floodlight_media::TIMESCALE;
use floodlight_media::clock::unix_millis;
use tracing::{error, warn};

use super::Ladder;
use super::worker::RungPicture;
use crate::ladder::align::Cut;

/// The re-encoded `source` stays within these when it takes the publisher's bit rate.
pub(super) const SOURCE_BITRATE_BPS: (u32, u32) = (300_000, 20_000_000);

impl Ladder {
    /// One decoded picture, in presentation order.
    pub(super) fn picture(&mut self, picture: frame::Video, pts: i64) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        while session.keyframes.front().is_some_and(|&k| k < pts) {
            session.keyframes.pop_front();
        }
        let keyframe = session.keyframes.front() == Some(&pts);
        let position = session.arrivals.iter().position(|&(p, _)| p == pts);
        let received_at_ms = match position {
            Some(i) => session.arrivals.remove(i).map_or(0, |(_, at)| at),
            None => session.arrivals.front().map_or_else(unix_millis, |a| a.1),
        };
        let cut = session.aligner.picture(pts, keyframe);
        if cut == Cut::Skip {
            metrics::counter!("floodlight_transcoder_frames_dropped_total", "reason" => "before_keyframe")
                .increment(1);
            return;
        }
        if cut.is_boundary() {
            session.since_boundary = 0;
        } else {
            session.since_boundary += 1;
        }
        if cut == Cut::Forced && session.passthrough.is_some() {
            self.switch_source(pts);
        }
        self.poster(&picture, pts);
        let Some(session) = self.session.as_mut() else {
            return;
        };
        // Above 60 fps every other picture; boundaries are always kept.
        if session.plan.decimate && session.since_boundary % 2 == 1 {
            return;
        }
        let picture = Arc::new(picture);
        let now = Instant::now();
        let lag_ms = u64::from(self.settings.shed_lag_ms);
        let mut behind = Vec::new();
        for (i, rung) in session.rungs.iter_mut().enumerate() {
            if rung.skip_to_boundary && !cut.is_boundary() {
                metrics::counter!("floodlight_transcoder_frames_dropped_total", "reason" => "rung_behind")
                    .increment(1);
                continue;
            }
            let Some(tx) = &rung.tx else { continue };
            let sent = tx.try_send(RungPicture {
                picture: picture.clone(),
                pts,
                idr: cut.is_boundary(),
                received_at_ms,
                queued_at: now,
            });
            let full = sent.is_err();
            if !full {
                rung.stats.pending.fetch_add(1, Ordering::Relaxed);
            }
            rung.skip_to_boundary = full;
            if full {
                metrics::counter!("floodlight_transcoder_frames_dropped_total", "reason" => "rung_behind")
                    .increment(1);
            }
            let late = rung.stats.wait_ms.load(Ordering::Relaxed) > lag_ms;
            if rung.lag.observe(full || late, unix_millis()) {
                behind.push(i);
            }
        }
        if let Some(&slow) = behind.first() {
            self.shed(slow);
        }
        self.measure_speed();
    }

    /// The first forced boundary: `source` is re-encoded at its own size from `pts` on.
    fn switch_source(&mut self, pts: i64) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let measured = match session.source_span {
            Some((first, last)) if last > first => {
                (session.source_bytes * 8 * u64::from(TIMESCALE) / (last - first) as u64) as u32
            }
            _ => SOURCE_BITRATE_BPS.0,
        };
        let bitrate = self
            .settings
            .profile
            .source_bitrate_bps
            .unwrap_or_else(|| measured.clamp(SOURCE_BITRATE_BPS.0, SOURCE_BITRATE_BPS.1));
        session.passthrough = None;
        let overlap = session.passed.iter().filter(|&&p| p >= pts).count();
        metrics::counter!("floodlight_transcoder_source_overlap_frames_total")
            .increment(overlap as u64);
        let Some(planned) = session.plan.rungs.iter().find(|r| r.passthrough).cloned() else {
            return;
        };
        let plan = session.plan.clone();
        match self.spawn_rung(planned, bitrate, &plan) {
            Ok(rung) => {
                warn!(
                    pts,
                    bitrate,
                    "the publisher's keyframes do not line up with the segments: re-encoding source"
                );
                metrics::counter!("floodlight_transcoder_source_reencodes_total").increment(1);
                if let Some(session) = self.session.as_mut() {
                    session.rungs.insert(0, rung);
                }
            }
            Err(e) => {
                error!(error = %e, "cannot re-encode source: the ladder goes on without it");
            }
        }
        self.announce();
        self.publish_status(None);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use floodlight_media::CodecParams;

    use crate::ladder::stage::test_support::{capture, generated, generated_at, run, settings};

    #[test]
    fn a_2_s_gop_keeps_the_passthrough_and_every_rung_has_its_keyframes() {
        let out = run(settings(), capture());
        assert!(out.ended);
        // One announcement: the passthrough stayed.
        assert_eq!(out.announcements.len(), 1);
        let names: Vec<&str> = out.announcements[0]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["source", "180p", "120p"]);
        assert_eq!(out.size("180p"), (240, 180));
        assert_eq!(out.size("120p"), (160, 120));
        let source = out.keyframes("source");
        assert_eq!(source.len(), 2, "IDRs at 0 and 2 s: {source:?}");
        for rung in ["180p", "120p"] {
            assert_eq!(out.keyframes(rung), source, "{rung}");
            let frames = &out.frames[rung];
            assert!(frames.iter().all(|f| f.dts == f.pts));
            // Every picture of the source is encoded, in presentation order.
            assert_eq!(frames.len(), out.frames["source"].len(), "{rung}");
            assert!(frames.windows(2).all(|p| p[1].pts > p[0].pts));
        }
    }

    #[test]
    fn a_4_s_gop_forces_aligned_idrs_and_reencodes_source() {
        let out = run(settings(), generated(9, 120));
        assert_eq!(out.announcements.len(), 2, "source switched once");
        let first: Vec<&str> = out.announcements[0]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        let then: Vec<&str> = out.announcements[1]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(first, ["source", "180p", "120p"]);
        assert_eq!(then, ["source", "180p", "120p"]);
        assert_eq!(out.size("source"), (320, 240));
        // Boundaries: the first source IDR, then every 2 s from target + tolerance.
        let boundaries = [0, 189_000, 369_000, 549_000, 729_000];
        assert_eq!(out.keyframes("180p"), boundaries);
        assert_eq!(out.keyframes("120p"), boundaries);
        // `source`: passed through up to the switch, re-encoded from it on.
        let source = &out.frames["source"];
        let switch = source.iter().position(|f| f.pts == 189_000).unwrap();
        assert!(source[..switch].iter().all(|f| f.pts < 189_000));
        let reencoded: BTreeSet<i64> = source[switch..]
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.pts)
            .collect();
        assert_eq!(reencoded, boundaries[1..].iter().copied().collect());
        assert!(source[switch].keyframe);
        assert_eq!(
            source.len(),
            270,
            "no picture lost or doubled at the switch"
        );
    }

    #[test]
    fn a_120_fps_source_is_encoded_at_60_with_aligned_keyframes() {
        let out = run(settings(), generated_at(120, 3, 240));
        assert_eq!(out.announcements.len(), 1, "2 s GOP: the passthrough stays");
        assert_eq!(out.frames["source"].len(), 360);
        let source = out.keyframes("source");
        assert_eq!(source, [0, 180_000]);
        for rung in ["180p", "120p"] {
            let frames = &out.frames[rung];
            // Every other picture, the boundaries always among them.
            assert_eq!(frames.len(), 180, "{rung}");
            assert!(frames.windows(2).all(|p| p[1].pts - p[0].pts == 1500));
            assert_eq!(out.keyframes(rung), source, "{rung}");
        }
        let CodecParams::H264(rung) = &out.announcements[0][1].1.codec else {
            panic!()
        };
        assert_eq!(rung.frame_rate, Some(60.0));
    }
}
