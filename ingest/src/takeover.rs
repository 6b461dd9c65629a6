//! Which of an event's publishers goes downstream: the live/standby takeover of backup
//! ingest, as a sans-IO state machine. It takes frames and time in, gives actions out;
//! it never reads the clock and never sends anything itself. The `Publisher`
//! (`publisher.rs`) feeds it every publisher's `Tracks` and `Frame`s with the time they
//! came, tells it when one leaves, and carries out what it answers, with the event's
//! downstream locked, so that downstream sees the answers in the order they were given.
//!
//! The first publisher of an event is live: its media goes downstream. Another one
//! (backup ingest) is standby: it keeps its frames since its last video keyframe, and
//! takes the stream over once it holds a decodable start (its tracks, and a keyframe when
//! it has video) and the live publisher has sent nothing for the quiet limit
//! (`ingest.backup_takeover_secs`) or is gone. A takeover looks like a reconnect
//! downstream: the old session ends (`Ended`), the new one begins with the standby's
//! tracks and its kept frames.

use std::time::{Duration, Instant};

use floodlight_media::{Frame, StreamEvent, TrackKind, TrackParams};

/// Frames a standby publisher keeps for a takeover (its GOP since the last video
/// keyframe); past this it keeps nothing until its next keyframe.
const STANDBY_MAX_FRAMES: usize = 2000;
/// Bytes of frames a standby publisher keeps, as `STANDBY_MAX_FRAMES`.
const STANDBY_MAX_BYTES: usize = 64 << 20;

/// A publisher of the event, as `Ingest` numbers them.
pub(crate) type PublisherId = u64;

/// One event's takeover state: who is live, whether downstream has an open session, and
/// what each publisher announced and holds back.
pub(crate) struct Takeover {
    /// How long the live publisher may send nothing before a standby takes over.
    quiet_limit: Duration,
    live: Option<PublisherId>,
    /// `Tracks` went down without an `Ended` after them.
    open: bool,
    members: Vec<Member>,
}

/// A publisher as the takeover sees it.
struct Member {
    id: PublisherId,
    /// When it last sent tracks or a frame (before its first: when it became live).
    last_heard: Instant,
    /// The tracks it announced last, live or not.
    tracks: Option<Vec<TrackParams>>,
    standby: StandbyBuffer,
}

/// What to do with a publisher's tracks or frame.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Nothing goes downstream: the publisher is standby (a frame is kept for a takeover
    /// from its keyframe on).
    Hold,
    /// The publisher is live: the event goes downstream (a downstream session begins if
    /// none is open), stamped with its arrival.
    Forward {
        event: StreamEvent,
        received_at_ms: i64,
    },
    /// The publisher takes the stream over.
    TakeOver(Switch),
}

/// A standby becoming live: what goes downstream, in this order.
#[derive(Debug, PartialEq)]
pub(crate) struct Switch {
    /// First end the downstream session (`Ended`; the tracks below begin a new one):
    /// tracks went down since the last `Ended`.
    pub(crate) end_previous: bool,
    /// A publisher was live until now (it went quiet or vanished), rather than none.
    pub(crate) previous_live: bool,
    /// The new live publisher's tracks.
    pub(crate) tracks: Vec<TrackParams>,
    /// Its frames since its last video keyframe, each with its arrival (ms since the Unix
    /// epoch); the tracks go down stamped with the first one's.
    pub(crate) gop: Vec<(Frame, i64)>,
}

/// The live publisher left: downstream's session closes, with `Ended` when `send_ended`
/// (tracks went down since the last one); the next live publisher begins a new one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Close {
    pub(crate) send_ended: bool,
}

impl Takeover {
    /// The takeover of an event whose first publisher, `first`, is live from `now`.
    pub(crate) fn new(first: PublisherId, quiet_limit: Duration, now: Instant) -> Self {
        Takeover {
            quiet_limit,
            live: Some(first),
            open: false,
            members: vec![Member::new(first, now)],
        }
    }

    /// The publisher whose media goes downstream, if any.
    pub(crate) fn live(&self) -> Option<PublisherId> {
        self.live
    }

    /// `publisher` announces its tracks at `now` (before its first frame, and whenever
    /// their parameters change).
    pub(crate) fn tracks(
        &mut self,
        publisher: PublisherId,
        tracks: Vec<TrackParams>,
        received_at_ms: i64,
        now: Instant,
    ) -> Action {
        let at = self.heard(publisher, now);
        let member = &mut self.members[at];
        let video = |t: Option<&[TrackParams]>| {
            t.and_then(|t| t.iter().find(|p| p.kind == TrackKind::Video).cloned())
        };
        if video(member.tracks.as_deref()) != video(Some(&tracks)) {
            // Frames held for a takeover cannot follow new video parameters.
            member.standby.clear();
        }
        member.tracks = Some(tracks.clone());
        self.deliver(at, StreamEvent::Tracks(tracks), received_at_ms, now)
    }

    /// `publisher` sends a frame at `now`, which arrived at `received_at_ms`.
    pub(crate) fn frame(
        &mut self,
        publisher: PublisherId,
        frame: Frame,
        received_at_ms: i64,
        now: Instant,
    ) -> Action {
        let at = self.heard(publisher, now);
        self.deliver(at, StreamEvent::Frame(frame), received_at_ms, now)
    }

    /// `publisher` leaves. When it was live, downstream's session closes, and a standby
    /// takes over at its next tracks or frame.
    pub(crate) fn leave(&mut self, publisher: PublisherId) -> Option<Close> {
        self.vanish(publisher);
        if self.live != Some(publisher) {
            return None;
        }
        self.live = None;
        Some(Close {
            send_ended: std::mem::take(&mut self.open),
        })
    }

    /// `publisher` is gone without leaving (its connection ended where nothing could
    /// wait on downstream): downstream stays as it is, and a standby takes over at its
    /// next tracks or frame, ending downstream's session then.
    pub(crate) fn vanish(&mut self, publisher: PublisherId) {
        self.members.retain(|m| m.id != publisher);
    }

    /// Notes that `publisher` was heard from at `now`; its place in `members`.
    fn heard(&mut self, publisher: PublisherId, now: Instant) -> usize {
        let at = match self.members.iter().position(|m| m.id == publisher) {
            Some(at) => at,
            None => {
                self.members.push(Member::new(publisher, now));
                self.members.len() - 1
            }
        };
        self.members[at].last_heard = now;
        at
    }

    /// Where the event from `members[at]` goes: downstream when it is live, else into
    /// its standby buffer, and the stream to it when it may take over now.
    fn deliver(
        &mut self,
        at: usize,
        event: StreamEvent,
        received_at_ms: i64,
        now: Instant,
    ) -> Action {
        let takeover_due = self.takeover_due(now);
        let member = &mut self.members[at];
        if self.live == Some(member.id) {
            member.standby.clear();
            if matches!(event, StreamEvent::Tracks(_)) {
                self.open = true;
            }
            return Action::Forward {
                event,
                received_at_ms,
            };
        }
        if let StreamEvent::Frame(frame) = event {
            member.standby.push(frame, received_at_ms);
        }
        // A standby takes over only from a decodable start: its tracks, and a keyframe
        // when it has video.
        let Some(tracks) = member.tracks.clone() else {
            return Action::Hold;
        };
        let has_video = tracks.iter().any(|t| t.kind == TrackKind::Video);
        if has_video && member.standby.gop.is_empty() {
            return Action::Hold;
        }
        if !takeover_due {
            return Action::Hold;
        }
        let gop = std::mem::take(&mut member.standby.gop);
        member.standby.clear();
        let previous_live = self.live.replace(member.id).is_some();
        Action::TakeOver(Switch {
            end_previous: std::mem::replace(&mut self.open, true),
            previous_live,
            tracks,
            gop,
        })
    }

    /// Whether a standby may take the stream over at `now`: nobody is live, or the live
    /// publisher is gone or has sent nothing for the quiet limit.
    fn takeover_due(&self, now: Instant) -> bool {
        let Some(live) = self.live else {
            return true;
        };
        self.members
            .iter()
            .find(|m| m.id == live)
            .is_none_or(|m| now.saturating_duration_since(m.last_heard) >= self.quiet_limit)
    }
}

impl Member {
    fn new(id: PublisherId, now: Instant) -> Self {
        Member {
            id,
            last_heard: now,
            tracks: None,
            standby: StandbyBuffer::default(),
        }
    }
}

/// What a standby publisher holds back for the moment it takes over.
#[derive(Default)]
struct StandbyBuffer {
    /// Frames since the last video keyframe, in arrival order, with their arrival (ms
    /// since the Unix epoch); empty until a keyframe arrives.
    gop: Vec<(Frame, i64)>,
    bytes: usize,
}

impl StandbyBuffer {
    fn clear(&mut self) {
        self.gop.clear();
        self.bytes = 0;
    }

    fn push(&mut self, frame: Frame, received_at_ms: i64) {
        if frame.track == TrackKind::Video && frame.keyframe {
            self.clear();
        } else if self.gop.is_empty() {
            return;
        }
        self.bytes += frame.data.len();
        self.gop.push((frame, received_at_ms));
        if self.gop.len() > STANDBY_MAX_FRAMES || self.bytes > STANDBY_MAX_BYTES {
            self.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use floodlight_media::AvcConfig;

    use super::*;
    use crate::test_fixtures::{aac, audio, avc, tracks, video};

    const LIVE: PublisherId = 1;
    const BACKUP: PublisherId = 2;
    const QUIET: Duration = Duration::from_secs(3);

    /// A fake clock: `at(ms)` is `ms` milliseconds after an arbitrary origin.
    struct Clock(Instant);

    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    /// A takeover whose live publisher joined at the clock's origin, and its clock.
    fn takeover() -> (Takeover, Clock) {
        let clock = Clock(Instant::now());
        (Takeover::new(LIVE, QUIET, clock.at(0)), clock)
    }

    /// The dts of a switch's kept frames.
    fn gop_dts(action: &Action) -> Vec<i64> {
        match action {
            Action::TakeOver(switch) => switch.gop.iter().map(|(f, _)| f.dts).collect(),
            other => panic!("expected a takeover, got {other:?}"),
        }
    }

    #[test]
    fn the_live_publisher_forwards_and_its_tracks_open_the_stream() {
        let (mut t, clock) = takeover();
        assert_eq!(t.live(), Some(LIVE));
        assert_eq!(
            t.tracks(LIVE, tracks(), 1000, clock.at(0)),
            Action::Forward {
                event: StreamEvent::Tracks(tracks()),
                received_at_ms: 1000
            }
        );
        assert_eq!(
            t.frame(LIVE, video(0, true), 1001, clock.at(1)),
            Action::Forward {
                event: StreamEvent::Frame(video(0, true)),
                received_at_ms: 1001
            }
        );
        assert_eq!(t.leave(LIVE), Some(Close { send_ended: true }));
        assert_eq!(t.live(), None);
    }

    #[test]
    fn a_live_publisher_that_sent_no_tracks_closes_without_ended() {
        let (mut t, clock) = takeover();
        assert!(matches!(
            t.frame(LIVE, video(0, true), 1, clock.at(0)),
            Action::Forward { .. }
        ));
        assert_eq!(t.leave(LIVE), Some(Close { send_ended: false }));
        assert_eq!(t.leave(BACKUP), None, "a standby leaving closes nothing");
    }

    #[test]
    fn a_quiet_live_publisher_is_taken_over_after_the_limit_with_the_standby_gop() {
        let (mut t, clock) = takeover();
        t.tracks(LIVE, tracks(), 0, clock.at(0));
        t.frame(LIVE, video(0, true), 0, clock.at(0));
        t.frame(LIVE, audio(10), 10, clock.at(10));
        assert_eq!(t.tracks(BACKUP, tracks(), 20, clock.at(20)), Action::Hold);
        // Before its keyframe nothing is kept; from it, its GOP is.
        assert_eq!(
            t.frame(BACKUP, video(90, false), 30, clock.at(30)),
            Action::Hold
        );
        assert_eq!(
            t.frame(BACKUP, video(100, true), 40, clock.at(40)),
            Action::Hold
        );
        assert_eq!(t.frame(BACKUP, audio(105), 50, clock.at(50)), Action::Hold);

        // The live one was last heard at 10 ms: at 3010 ms it has been quiet for 3 s.
        let action = t.frame(BACKUP, video(110, false), 3010, clock.at(3010));
        assert_eq!(
            action,
            Action::TakeOver(Switch {
                end_previous: true,
                previous_live: true,
                tracks: tracks(),
                gop: vec![
                    (video(100, true), 40),
                    (audio(105), 50),
                    (video(110, false), 3010)
                ],
            })
        );
        assert_eq!(t.live(), Some(BACKUP));

        // The new live one forwards; the old one is standby now.
        assert!(matches!(
            t.frame(BACKUP, video(120, false), 3020, clock.at(3020)),
            Action::Forward { .. }
        ));
        assert_eq!(
            t.frame(LIVE, video(3000, true), 3030, clock.at(3030)),
            Action::Hold
        );
        assert_eq!(t.leave(LIVE), None);
        assert_eq!(t.leave(BACKUP), Some(Close { send_ended: true }));
    }

    #[test]
    fn no_takeover_before_the_limit() {
        let (mut t, clock) = takeover();
        t.tracks(LIVE, tracks(), 0, clock.at(0));
        t.frame(LIVE, video(0, true), 0, clock.at(1000));
        t.tracks(BACKUP, tracks(), 0, clock.at(1000));
        t.frame(BACKUP, video(0, true), 0, clock.at(1000));
        // Quiet for a millisecond less than the limit.
        assert_eq!(
            t.frame(BACKUP, video(10, false), 0, clock.at(3999)),
            Action::Hold
        );
        // The live one speaks again: the quiet starts over.
        t.frame(LIVE, video(20, false), 0, clock.at(3500));
        assert_eq!(
            t.frame(BACKUP, video(30, false), 0, clock.at(6499)),
            Action::Hold
        );
        assert_eq!(t.live(), Some(LIVE));
        assert_eq!(
            gop_dts(&t.frame(BACKUP, video(40, false), 0, clock.at(6500))),
            [0, 10, 30, 40]
        );
    }

    #[test]
    fn a_live_publisher_that_never_sent_anything_is_quiet_from_when_it_joined() {
        let (mut t, clock) = takeover();
        t.tracks(BACKUP, tracks(), 0, clock.at(100));
        assert_eq!(
            t.frame(BACKUP, video(0, true), 0, clock.at(2999)),
            Action::Hold
        );
        assert_eq!(
            gop_dts(&t.frame(BACKUP, video(10, false), 0, clock.at(3000))),
            [0, 10]
        );
    }

    #[test]
    fn the_standby_takes_over_at_once_when_the_live_one_leaves() {
        let (mut t, clock) = takeover();
        t.tracks(LIVE, tracks(), 0, clock.at(0));
        t.frame(LIVE, video(0, true), 0, clock.at(0));
        t.tracks(BACKUP, tracks(), 0, clock.at(0));
        assert_eq!(t.leave(LIVE), Some(Close { send_ended: true }));
        // No keyframe yet: nothing to start from.
        assert_eq!(
            t.frame(BACKUP, video(50, false), 0, clock.at(1)),
            Action::Hold
        );
        assert_eq!(
            t.frame(BACKUP, video(60, true), 7, clock.at(2)),
            Action::TakeOver(Switch {
                end_previous: false,
                previous_live: false,
                tracks: tracks(),
                gop: vec![(video(60, true), 7)],
            })
        );
        assert_eq!(t.live(), Some(BACKUP));
    }

    #[test]
    fn a_vanished_live_publisher_is_taken_over_at_once_ending_its_session() {
        let (mut t, clock) = takeover();
        t.tracks(LIVE, tracks(), 0, clock.at(0));
        t.tracks(BACKUP, tracks(), 0, clock.at(0));
        t.vanish(LIVE);
        assert_eq!(t.live(), Some(LIVE), "downstream is left as it is");
        let Action::TakeOver(switch) = t.frame(BACKUP, video(0, true), 0, clock.at(1)) else {
            panic!("expected a takeover");
        };
        assert!(switch.end_previous && switch.previous_live);
    }

    #[test]
    fn the_standby_keeps_only_its_frames_since_its_latest_keyframe() {
        let (mut t, clock) = takeover();
        t.tracks(BACKUP, tracks(), 0, clock.at(0));
        for (dts, keyframe) in [(0, true), (10, false), (20, true), (30, false)] {
            t.frame(BACKUP, video(dts, keyframe), 0, clock.at(0));
        }
        // Audio before the next keyframe stays with the GOP it follows.
        t.frame(BACKUP, audio(35), 0, clock.at(0));
        assert_eq!(
            gop_dts(&t.frame(BACKUP, video(40, false), 0, clock.at(3000))),
            [20, 30, 35, 40]
        );
    }

    #[test]
    fn the_standby_keeps_nothing_past_its_limit_until_the_next_keyframe() {
        let (mut t, clock) = takeover();
        t.tracks(BACKUP, tracks(), 0, clock.at(0));
        t.frame(BACKUP, video(0, true), 0, clock.at(0));
        for dts in 1..=STANDBY_MAX_FRAMES as i64 {
            t.frame(BACKUP, video(dts, false), 0, clock.at(0));
        }
        // Over the limit: the GOP is gone, and what follows is not kept either.
        assert_eq!(
            t.frame(BACKUP, video(5000, false), 0, clock.at(3000)),
            Action::Hold
        );
        assert_eq!(
            gop_dts(&t.frame(BACKUP, video(6000, true), 0, clock.at(3000))),
            [6000]
        );
    }

    #[test]
    fn new_tracks_with_the_same_video_keep_what_the_standby_kept() {
        let (mut t, clock) = takeover();
        t.tracks(BACKUP, tracks(), 0, clock.at(0));
        t.frame(BACKUP, video(0, true), 0, clock.at(0));
        t.tracks(BACKUP, vec![TrackParams::video(avc())], 0, clock.at(0));
        t.frame(BACKUP, video(10, false), 0, clock.at(0));
        let action = t.frame(BACKUP, video(20, false), 0, clock.at(3000));
        assert_eq!(gop_dts(&action), [0, 10, 20]);
    }

    #[test]
    fn new_video_parameters_drop_what_the_standby_kept() {
        let (mut t, clock) = takeover();
        t.tracks(BACKUP, tracks(), 0, clock.at(0));
        t.frame(BACKUP, video(0, true), 0, clock.at(0));
        t.frame(BACKUP, video(10, false), 0, clock.at(0));
        let resized = AvcConfig {
            width: 640,
            ..avc()
        };
        let new_tracks = vec![TrackParams::video(resized), aac()];
        assert_eq!(
            t.tracks(BACKUP, new_tracks.clone(), 0, clock.at(3000)),
            Action::Hold,
            "the new video has no keyframe yet"
        );
        let Action::TakeOver(switch) = t.frame(BACKUP, video(20, true), 0, clock.at(3000)) else {
            panic!("expected a takeover");
        };
        assert_eq!(switch.tracks, new_tracks);
        assert_eq!(switch.gop, [(video(20, true), 0)]);
    }

    #[test]
    fn an_audio_only_standby_takes_over_with_its_tracks() {
        let (mut t, clock) = takeover();
        assert_eq!(t.tracks(BACKUP, vec![aac()], 0, clock.at(0)), Action::Hold);
        assert_eq!(
            t.tracks(BACKUP, vec![aac()], 0, clock.at(3000)),
            Action::TakeOver(Switch {
                end_previous: false,
                previous_live: true,
                tracks: vec![aac()],
                gop: Vec::new(),
            })
        );
        assert!(matches!(
            t.frame(BACKUP, audio(0), 0, clock.at(3001)),
            Action::Forward { .. }
        ));
    }
}
