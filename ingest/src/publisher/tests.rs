//! The publisher registry's integration tier: real `Publisher`s of one event, with
//! a channel as the transcoder, through join, takeover and leave, on paused time: the
//! publisher reads tokio's clock, so the quiet limit passes without a real wait.

use std::sync::atomic::AtomicUsize;

use super::*;
use crate::neighbours::{BoxFuture, PublishRefusal, PublishRequest, PullSource};
use crate::test_fixtures::{audio, tracks, video};

#[derive(Default)]
struct RecordingAuthority {
    changes: Mutex<Vec<(String, SessionChange)>>,
}

impl IngestAuthority for RecordingAuthority {
    fn authorize<'a>(
        &'a self,
        _request: PublishRequest<'a>,
    ) -> BoxFuture<'a, Result<PublishGrant, PublishRefusal>> {
        Box::pin(async { Err(PublishRefusal::UnknownKey) })
    }

    fn session_changed(&self, event_id: &str, change: SessionChange) {
        lock(&self.changes).push((event_id.to_string(), change));
    }

    fn pull_sources(&self) -> BoxFuture<'_, Result<Vec<PullSource>, PublishRefusal>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The transcoder's side, one channel for every session begun.
struct ChannelHandler {
    tx: mpsc::Sender<StampedEvent>,
    sessions: AtomicUsize,
}

impl StreamHandler for ChannelHandler {
    fn begin_session(&self, _: &str, _: &StreamSettings) -> mpsc::Sender<StampedEvent> {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        self.tx.clone()
    }
}

struct Harness {
    ingest: Ingest,
    authority: Arc<RecordingAuthority>,
    handler: Arc<ChannelHandler>,
    rx: mpsc::Receiver<StampedEvent>,
}

impl Harness {
    fn new(takeover_secs: u64) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let authority = Arc::new(RecordingAuthority::default());
        let handler = Arc::new(ChannelHandler {
            tx,
            sessions: AtomicUsize::new(0),
        });
        let config = IngestConfig {
            backup_takeover_secs: takeover_secs,
            ..IngestConfig::default()
        };
        Harness {
            ingest: Ingest::new(config, authority.clone(), handler.clone()),
            authority,
            handler,
            rx,
        }
    }

    fn publish(&self, backup_ingest: bool) -> Result<Publisher, SlotTaken> {
        let grant = PublishGrant {
            event_id: "ev1".to_string(),
            backup_ingest,
            ..PublishGrant::default()
        };
        self.ingest
            .start_publish(&grant, Protocol::Srt, "127.0.0.1:5000".parse().unwrap())
    }

    /// Events downstream so far, in a form easy to compare.
    fn drain(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.rx.try_recv().ok())
            .map(|e| match e.event {
                StreamEvent::Tracks(t) => format!("tracks{}", t.len()),
                StreamEvent::Frame(f) if f.track == TrackKind::Audio => format!("a{}", f.dts),
                StreamEvent::Frame(f) => {
                    format!("v{}{}", f.dts, if f.keyframe { "k" } else { "" })
                }
                StreamEvent::Ended => "ended".to_string(),
            })
            .collect()
    }

    fn changes(&self) -> Vec<SessionChange> {
        lock(&self.authority.changes)
            .iter()
            .map(|(_, c)| *c)
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_publisher_needs_backup_ingest_and_a_third_is_refused() {
    let h = Harness::new(3);
    let first = h.publish(false).unwrap();
    assert!(matches!(h.publish(false), Err(SlotTaken::Live)));
    let grant = |backup_ingest| PublishGrant {
        event_id: "ev1".into(),
        backup_ingest,
        ..PublishGrant::default()
    };
    assert_eq!(h.ingest.check_room(&grant(false)), Err(SlotTaken::Live));
    assert_eq!(h.ingest.check_room(&grant(true)), Ok(()));
    let second = h.publish(true).unwrap();
    assert!(matches!(h.publish(true), Err(SlotTaken::LiveAndBackup)));
    let statuses = h.ingest.publishers("ev1");
    assert_eq!(statuses.iter().filter(|s| s.live).count(), 1);
    assert_eq!(statuses.len(), 2);
    assert!(h.ingest.session("ev1").unwrap().live);
    first.end().await;
    second.end().await;
    assert!(h.ingest.session("ev1").is_none());
    assert!(h.publish(false).is_ok(), "the place is free again");
}

#[tokio::test(start_paused = true)]
async fn the_event_starts_with_its_first_publisher_and_stops_with_its_last() {
    let mut h = Harness::new(3);
    let mut first = h.publish(true).unwrap();
    let second = h.publish(true).unwrap();
    first.send_tracks(tracks()).await.unwrap();
    first.send_frame(video(0, true)).await.unwrap();
    first.end().await;
    assert_eq!(
        h.changes(),
        [SessionChange::Started {
            protocol: Protocol::Srt
        }]
    );
    second.end().await;
    assert_eq!(
        h.changes(),
        [
            SessionChange::Started {
                protocol: Protocol::Srt
            },
            SessionChange::Stopped {
                protocol: Protocol::Srt
            }
        ]
    );
    assert_eq!(h.drain(), ["tracks2", "v0k", "ended"]);
}

#[tokio::test(start_paused = true)]
async fn the_standby_takes_over_with_its_gop_when_the_live_one_goes_quiet() {
    let mut h = Harness::new(1);
    let mut primary = h.publish(true).unwrap();
    let mut backup = h.publish(true).unwrap();
    primary.send_tracks(tracks()).await.unwrap();
    primary.send_frame(video(0, true)).await.unwrap();
    primary.send_frame(audio(10)).await.unwrap();
    backup.send_tracks(tracks()).await.unwrap();
    // Before its keyframe nothing is kept; from it, its GOP is.
    backup.send_frame(video(90, false)).await.unwrap();
    backup.send_frame(video(100, true)).await.unwrap();
    backup.send_frame(audio(105)).await.unwrap();
    assert_eq!(
        h.drain(),
        ["tracks2", "v0k", "a10"],
        "the standby is held back"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    backup.send_frame(video(110, false)).await.unwrap();
    assert_eq!(
        h.drain(),
        ["ended", "tracks2", "v100k", "a105", "v110"],
        "a reconnect downstream, starting at the standby's keyframe"
    );
    assert_eq!(h.handler.sessions.load(Ordering::SeqCst), 2);
    let live = h.ingest.session("ev1").unwrap();
    assert!(live.live && live.frames == 4);

    // The old live publisher comes back: it is the standby now.
    primary.send_frame(video(3000, true)).await.unwrap();
    backup.send_frame(video(120, false)).await.unwrap();
    assert_eq!(h.drain(), ["v120"]);
    primary.end().await;
    backup.end().await;
    assert_eq!(h.drain(), ["ended"]);
}

#[tokio::test(start_paused = true)]
async fn the_standby_takes_over_at_once_when_the_live_one_disconnects() {
    let mut h = Harness::new(3600);
    let mut primary = h.publish(true).unwrap();
    let mut backup = h.publish(true).unwrap();
    primary.send_tracks(tracks()).await.unwrap();
    primary.send_frame(video(0, true)).await.unwrap();
    backup.send_tracks(tracks()).await.unwrap();
    primary.end().await;
    assert_eq!(h.drain(), ["tracks2", "v0k", "ended"]);
    // No keyframe yet: nothing to start from.
    backup.send_frame(video(50, false)).await.unwrap();
    assert!(h.drain().is_empty());
    backup.send_frame(video(60, true)).await.unwrap();
    assert_eq!(h.drain(), ["tracks2", "v60k"]);
    assert_eq!(h.changes().len(), 1, "the event stayed live");
    drop(backup);
    // Dropped without end(): it still leaves, in the background.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.drain(), ["ended"]);
    assert!(h.ingest.session("ev1").is_none());
    assert_eq!(h.changes().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn counters_and_keyframe_interval() {
    let h = Harness::new(3);
    let mut p = h.publish(false).unwrap();
    p.send_tracks(tracks()).await.unwrap();
    p.record_bytes(1000);
    p.record_dropped(2);
    p.send_frame(video(0, true)).await.unwrap();
    p.send_frame(video(3000, false)).await.unwrap();
    p.send_frame(video(180_000, true)).await.unwrap();
    let status = h.ingest.session("ev1").unwrap();
    assert_eq!(
        (status.bytes, status.frames, status.dropped_frames),
        (1000, 3, 2)
    );
    assert_eq!(status.keyframe_interval_ms, Some(2000));
    assert_eq!(status.protocol, Protocol::Srt);
    p.end().await;
}
