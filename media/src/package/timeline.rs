//! Timestamp arithmetic: timescale conversion and the audio sample clock.

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
            Some(expected) if (timestamp - expected).abs() <= self.frame_duration / 2 => expected,
            _ => timestamp,
        }
    }

    /// New codec parameters at the same timescale: the count runs on.
    pub(crate) fn set_frame_duration(&mut self, frame_duration: i64) {
        self.frame_duration = frame_duration;
    }

    pub(crate) fn advance(&mut self, decode_time: i64) {
        self.next = Some(decode_time + self.frame_duration);
    }

    /// Forget the count: the next frame's own timestamp starts it again.
    pub(crate) fn reset(&mut self) {
        self.next = None;
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
