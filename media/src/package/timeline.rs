//! Timestamp arithmetic: timescale conversion, the audio sample clock, and the mapping of
//! the publisher's timestamps onto the stream timeline.

/// `value` ticks at `from` Hz in ticks at `to` Hz, rounded to the nearest (half away from
/// zero). `from` must not be 0 (the packager rejects a zero timescale).
pub(crate) fn rescale(value: i64, from: u32, to: u32) -> i64 {
    let from = i128::from(from.max(1));
    let scaled = i128::from(value) * i128::from(to);
    let rounded = if scaled >= 0 {
        (scaled + from / 2) / from
    } else {
        (scaled - from / 2) / from
    };
    saturate(rounded)
}

/// As [`rescale`], rounding up: an end time converted this way is never early.
pub(crate) fn rescale_ceil(value: i64, from: u32, to: u32) -> i64 {
    let from = i128::from(from.max(1));
    let scaled = i128::from(value) * i128::from(to);
    saturate(scaled.div_euclid(from) + i128::from(scaled.rem_euclid(from) != 0))
}

/// As [`rescale`], rounding down: a limit converted this way is never exceeded.
pub(crate) fn rescale_floor(value: i64, from: u32, to: u32) -> i64 {
    let from = i128::from(from.max(1));
    saturate((i128::from(value) * i128::from(to)).div_euclid(from))
}

fn saturate(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// Decode times of AAC frames from the sample count rather than their timestamps: the
/// frames are exactly 1024 samples long, while FLV stamps them in whole milliseconds
/// (±0.5 ms of jitter at 44.1 kHz, where a frame is 23.22 ms). Counting keeps every sample
/// duration exact; a timestamp more than half a frame off the count is a real gap or
/// overlap (dropped frames, an encoder restart) and the clock resynchronises to it.
#[derive(Debug, Clone)]
pub(crate) struct AudioClock {
    /// Track timescale ticks per frame.
    frame_duration: i64,
    /// Decode time the next frame would have by count.
    next: Option<i64>,
}

impl AudioClock {
    pub(crate) fn new(frame_duration: i64) -> Self {
        AudioClock {
            frame_duration,
            next: None,
        }
    }

    /// The decode time of a frame stamped `timestamp` (track timescale). Does not advance
    /// the clock: [`AudioClock::advance`] does once the frame is accepted.
    pub(crate) fn decode_time(&self, timestamp: i64) -> i64 {
        match self.next {
            Some(expected)
                if timestamp.abs_diff(expected) <= self.frame_duration.unsigned_abs() / 2 =>
            {
                expected
            }
            _ => timestamp,
        }
    }

    /// New codec parameters at the same timescale: the count runs on.
    pub(crate) fn set_frame_duration(&mut self, frame_duration: i64) {
        self.frame_duration = frame_duration;
    }

    pub(crate) fn frame_duration(&self) -> i64 {
        self.frame_duration
    }

    /// The decode time the next frame has by count; `None` before the first.
    pub(crate) fn next(&self) -> Option<i64> {
        self.next
    }

    pub(crate) fn advance(&mut self, decode_time: i64) {
        self.next = Some(decode_time.saturating_add(self.frame_duration));
    }

    /// Forget the count: the next frame's own timestamp starts it again.
    pub(crate) fn reset(&mut self) {
        self.next = None;
    }
}

/// Where a frame goes on the stream timeline, or why it cannot go there yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Decode time on the stream timeline, 90 kHz.
    At(i64),
    /// The publisher's clock jumped: the caller closes every segment and starts an epoch
    /// ([`StreamTimeline::start_epoch`]).
    Jump,
}

/// Maps the publisher's timestamps onto the stream's one timeline (90 kHz), which never
/// goes back and has no holes longer than a timestamp jump threshold.
///
/// An *epoch* is a stretch over which the publisher's clock runs on: a session, or the
/// part of one after a timestamp jump. Each epoch adds one offset to every track, keeping
/// their A/V sync, chosen so the epoch starts at `floor`, the end of what came before:
/// - The stream's first epoch keeps the publisher's timestamps (moved up to 0 if
///   negative: tfdt is unsigned).
/// - A later epoch's first frame lands on the floor; so does any other track's first
///   frame that would land below it, by raising the offset for all tracks (the tracks
///   already under way get a gap of the difference). Whichever track's frame arrives
///   first, none is placed at or below where its track ended, so no keyframe is refused.
/// - A frame more than the jump threshold after the latest frame of any track, or before
///   its own track's latest, means the publisher's clock jumped (encoder restart, stall).
///   A *track* here is one rendition (keyed by the packager's rendition index): the video
///   renditions of a ladder carry frames at the same decode times, and each is compared
///   with its own latest, never taken for a jump back of another's.
///   The track's later frames get the new epoch's offset; the other tracks keep the old
///   one until their own timestamps jump too, so their frames already in flight with the
///   old clock still land where they belong.
#[derive(Debug)]
pub(crate) struct StreamTimeline {
    jump_threshold: i64,
    /// Where the current epoch starts; `None` in the stream's first session.
    floor: Option<i64>,
    /// The current epoch's offset, set by its first frame.
    offset: Option<i64>,
    /// Per rendition, by the packager's rendition index; grown as renditions appear.
    tracks: Vec<TrackTimeline>,
    offset_raises: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct TrackTimeline {
    /// Added to this track's timestamps: the epoch's, or an earlier epoch's.
    offset: Option<i64>,
    in_epoch: bool,
    /// The last frame placed (stream timeline), and its distance from the one before.
    last: Option<i64>,
    step: i64,
}

impl StreamTimeline {
    /// `jump_threshold` in 90 kHz ticks.
    pub(crate) fn new(jump_threshold: i64) -> Self {
        StreamTimeline {
            jump_threshold,
            floor: None,
            offset: None,
            tracks: Vec::new(),
            offset_raises: 0,
        }
    }

    /// Times an epoch's offset was raised for a track whose first frame would have landed
    /// before the epoch's start.
    pub(crate) fn offset_raises(&self) -> u64 {
        self.offset_raises
    }

    /// A new publisher session, starting at `floor` (`None`: the stream's first).
    pub(crate) fn start_session(&mut self, floor: Option<i64>) {
        self.floor = floor;
        self.offset = None;
        self.tracks.clear();
    }

    /// After [`Placement::Jump`]: a new epoch starting after `end` (the end of everything
    /// packaged) and after every frame placed, with `track`'s frame `dts` as its first.
    /// Returns where that frame goes.
    pub(crate) fn start_epoch(&mut self, end: Option<i64>, track: usize, dts: i64) -> i64 {
        let placed_end = self
            .tracks
            .iter()
            .filter_map(|t| t.last.map(|last| last.saturating_add(t.step.max(1))))
            .max();
        self.floor = end.max(placed_end).or(self.floor);
        self.offset = None;
        for t in &mut self.tracks {
            t.in_epoch = false;
        }
        self.join_epoch(track, dts)
    }

    /// Where `track`'s frame stamped `dts` (90 kHz, as received) goes.
    pub(crate) fn place(&mut self, track: usize, dts: i64) -> Placement {
        let t = self.track(track);
        let Some(offset) = t.offset else {
            return Placement::At(self.join_epoch(track, dts));
        };
        let at = dts.saturating_add(offset);
        if !self.jumped(track, at) {
            return Placement::At(at);
        }
        // This track's clock jumped. If another's already did and this one lands where
        // that epoch continues, it is the same jump.
        match self.offset {
            Some(epoch) if !t.in_epoch && !self.jumped(track, dts.saturating_add(epoch)) => {
                Placement::At(self.join_epoch(track, dts))
            }
            _ => Placement::Jump,
        }
    }

    /// Records a frame placed at `at` and accepted.
    pub(crate) fn record(&mut self, track: usize, at: i64) {
        let t = self.track_mut(track);
        if let Some(last) = t.last.filter(|&last| at > last) {
            t.step = at.saturating_sub(last);
        }
        t.last = t.last.max(Some(at));
    }

    fn jumped(&self, track: usize, at: i64) -> bool {
        let latest = self.tracks.iter().filter_map(|t| t.last).max();
        latest.is_some_and(|latest| at > latest.saturating_add(self.jump_threshold))
            || self
                .track(track)
                .last
                .is_some_and(|last| at < last.saturating_sub(self.jump_threshold))
    }

    fn join_epoch(&mut self, track: usize, dts: i64) -> i64 {
        let floor = self.floor.unwrap_or(0);
        let t = self.track(track);
        let track_floor = t
            .last
            .map_or(floor, |last| floor.max(last.saturating_add(t.step.max(1))));
        let required = track_floor.saturating_sub(dts);
        let offset = match self.offset {
            None if self.floor.is_none() => required.max(0),
            None => required,
            Some(offset) if offset < required => {
                self.offset_raises += 1;
                required
            }
            Some(offset) => offset,
        };
        self.offset = Some(offset);
        for other in self.tracks.iter_mut().filter(|t| t.in_epoch) {
            other.offset = Some(offset);
        }
        let t = self.track_mut(track);
        t.offset = Some(offset);
        t.in_epoch = true;
        dts.saturating_add(offset)
    }

    fn track(&self, track: usize) -> TrackTimeline {
        self.tracks.get(track).copied().unwrap_or_default()
    }

    fn track_mut(&mut self, track: usize) -> &mut TrackTimeline {
        if self.tracks.len() <= track {
            self.tracks.resize(track + 1, TrackTimeline::default());
        }
        &mut self.tracks[track]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rounds_as_named() {
        assert_eq!(rescale(90_000, 90_000, 44_100), 44_100);
        // 23 ms at 90 kHz → 44.1 kHz: 1014.3 ticks.
        assert_eq!(rescale(2070, 90_000, 44_100), 1014);
        assert_eq!(rescale_ceil(2070, 90_000, 44_100), 1015);
        assert_eq!(rescale_floor(2070, 90_000, 44_100), 1014);
        assert_eq!(rescale(-2070, 90_000, 44_100), -1014);
        assert_eq!(rescale_ceil(-2070, 90_000, 44_100), -1014);
        assert_eq!(rescale_floor(-2070, 90_000, 44_100), -1015);
        assert_eq!(rescale(i64::MAX, 1, 90_000), i64::MAX);
    }

    const THRESHOLD: i64 = 180_000;

    /// Rendition indexes, as the packager keys them.
    const VIDEO: usize = 0;
    const AUDIO: usize = 1;
    /// A second video rendition of the ladder.
    const VIDEO_2: usize = 2;

    fn placed(timeline: &mut StreamTimeline, track: usize, dts: i64) -> i64 {
        let Placement::At(at) = timeline.place(track, dts) else {
            panic!("{track} {dts}: jump");
        };
        timeline.record(track, at);
        at
    }

    #[test]
    fn first_session_keeps_timestamps_and_later_tracks_never_land_below_the_start() {
        let mut timeline = StreamTimeline::new(THRESHOLD);
        timeline.start_session(None);
        assert_eq!(placed(&mut timeline, AUDIO, 9000), 9000);
        assert_eq!(placed(&mut timeline, VIDEO, 3000), 3000);
        // A negative timestamp would put tfdt below 0: everything moves up.
        let mut timeline = StreamTimeline::new(THRESHOLD);
        timeline.start_session(None);
        assert_eq!(placed(&mut timeline, AUDIO, 0), 0);
        assert_eq!(placed(&mut timeline, VIDEO, -6006), 0);
        assert_eq!(placed(&mut timeline, AUDIO, 1920), 1920 + 6006);
        assert_eq!(timeline.offset_raises(), 1);
    }

    #[test]
    fn reconnect_places_every_track_after_the_previous_end() {
        let mut timeline = StreamTimeline::new(THRESHOLD);
        timeline.start_session(Some(900_000));
        // Audio arrives first, stamped 100 ms; video's keyframe, stamped 0, comes next and
        // would land 100 ms before the end: the offset rises for both tracks.
        assert_eq!(placed(&mut timeline, AUDIO, 9000), 900_000);
        assert_eq!(placed(&mut timeline, VIDEO, 0), 900_000);
        assert_eq!(placed(&mut timeline, AUDIO, 10_920), 910_920);
        assert_eq!(timeline.offset_raises(), 1);
    }

    #[test]
    fn clock_jumps_start_an_epoch_after_everything_placed() {
        for jump in [3_600 * 90_000, -900_000] {
            let mut timeline = StreamTimeline::new(THRESHOLD);
            timeline.start_session(None);
            for i in 0..250 {
                placed(&mut timeline, VIDEO, i * 3600);
                placed(&mut timeline, AUDIO, i * 3600 + 100);
            }
            // Video's clock jumps; its frame starts an epoch right after the last frames.
            let new_dts = 250 * 3600 + jump;
            assert_eq!(timeline.place(VIDEO, new_dts), Placement::Jump);
            let at = timeline.start_epoch(Some(250 * 3600 + 100), VIDEO, new_dts);
            assert_eq!(at, 249 * 3600 + 100 + 3600);
            timeline.record(VIDEO, at);
            // An audio frame still on the old clock lands where it belongs...
            assert_eq!(placed(&mut timeline, AUDIO, 250 * 3600 + 100), 900_100);
            // ...and audio's first frame on the new clock joins video's epoch, moved up
            // past the old-clock frame.
            let audio = placed(&mut timeline, AUDIO, new_dts + 100);
            assert_eq!(audio, 900_100 + 3600);
            assert_eq!(
                placed(&mut timeline, VIDEO, new_dts + 3600),
                audio - 100 + 3600
            );
        }
    }

    #[test]
    fn ladder_renditions_at_the_same_decode_times_are_no_jump() {
        let mut timeline = StreamTimeline::new(THRESHOLD);
        timeline.start_session(None);
        // The leader runs 1.5 s ahead of a slower rung, whose frames carry the same
        // decode times: each compares with its own latest.
        for i in 0..45 {
            placed(&mut timeline, VIDEO, i * 3000);
        }
        for i in 0..45 {
            assert_eq!(placed(&mut timeline, VIDEO_2, i * 3000), i * 3000);
        }
        // A real jump back of one rendition's clock is still one.
        assert_eq!(timeline.place(VIDEO_2, -THRESHOLD), Placement::Jump);
    }

    #[test]
    fn small_steps_back_are_not_jumps() {
        let mut timeline = StreamTimeline::new(THRESHOLD);
        timeline.start_session(None);
        placed(&mut timeline, VIDEO, 90_000);
        // Out of order by a frame: placed as stamped (the packager refuses it).
        assert_eq!(timeline.place(VIDEO, 86_400), Placement::At(86_400));
        assert_eq!(
            timeline.place(VIDEO, 90_000 + THRESHOLD + 1),
            Placement::Jump
        );
    }

    #[test]
    fn audio_clock_counts_samples_through_millisecond_jitter() {
        // 44.1 kHz AAC stamped in ms: 0, 23, 46, 70, 93, ... (×90 → 90 kHz → 44.1 kHz).
        let mut clock = AudioClock::new(1024);
        for i in 0..100_i64 {
            let ms = i * 1024 * 1000 / 44_100;
            let stamp = rescale(ms * 90, 90_000, 44_100);
            let decode_time = clock.decode_time(stamp);
            assert_eq!(decode_time, i * 1024);
            clock.advance(decode_time);
        }
        // A 100 ms gap: resynchronised to the stamp.
        let stamp = 100 * 1024 + 4410;
        assert_eq!(clock.decode_time(stamp), stamp);
        clock.reset();
        assert_eq!(clock.decode_time(7), 7);
    }
}
