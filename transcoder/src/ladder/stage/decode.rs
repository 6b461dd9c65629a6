//! The publisher's access units on the ladder thread: counted for its bit rate, passed
//! through while `source` is, and decoded once for the rungs and the poster. Each unit is
//! decoded before it is passed through, so a switch of `source` to a re-encode that the
//! unit completes stops the passthrough before it ([`boundaries`](super::boundaries)).

use floodlight_media::Frame;

use super::{Ladder, StageOutput};

/// H.264 reorders at most 16 pictures (max_dec_frame_buffering, Annex A.3.1).
const MAX_REORDER: usize = 16;
/// Decoded pictures whose ingest time is remembered while they are reordered.
const MAX_PENDING_ARRIVALS: usize = 256;

impl Ladder {
    pub(super) fn video(&mut self, frame: Frame, at: i64) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        session.source_bytes += frame.data.len() as u64;
        let span = session.source_span.get_or_insert((frame.dts, frame.dts));
        span.1 = span.1.max(frame.dts);
        if session.decoder.is_some() {
            // Decoded before it is passed through: a switch this access unit completes
            // (its own picture, or earlier ones it releases from reordering) stops the
            // passthrough before it.
            self.decode(&frame, at);
        } else {
            self.passthrough_thumbnail(&frame);
        }
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if let Some(id) = session.passthrough {
            session.passed.push_back(frame.pts);
            if session.passed.len() > MAX_REORDER {
                session.passed.pop_front();
            }
            self.emit(StageOutput::Frame {
                id,
                frame,
                received_at_ms: at,
            });
        }
    }

    fn decode(&mut self, frame: &Frame, at: i64) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if frame.keyframe {
            session.keyframes.push_back(frame.pts);
        }
        session.arrivals.push_back((frame.pts, at));
        if session.arrivals.len() > MAX_PENDING_ARRIVALS {
            session.arrivals.pop_front();
        }
        let Some(decoder) = session.decoder.as_mut() else {
            return;
        };
        let sent = decoder.send(frame);
        let mut pictures = Vec::new();
        while let Some(p) = decoder.receive() {
            pictures.push(p);
        }
        if let Err(e) = sent {
            self.count_error("decode_error", &e, frame.pts);
        }
        for picture in pictures {
            self.picture(picture.frame, picture.pts);
        }
    }
}
