//! RTSP pull against a real RTSP server (GStreamer's gst-rtsp-server serving a live H.264 +
//! AAC test pattern, `tests/support/rtsp_server.py`): the control plane is a small test
//! authority listing the source, the transcoder a handler that collects what arrives.

#[path = "../../tests/support/rtsp_server.rs"]
mod rtsp_server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use floodlight_ingest::{
    BoxFuture, Ingest, IngestAuthority, IngestConfig, Protocol, PublishGrant, PublishRefusal,
    PublishRequest, PullSource, RtspConfig, RtspTransport, SessionChange, StampedEvent,
    StreamHandler, pull_rtsp,
};
use floodlight_media::{CodecParams, Frame, StreamEvent, StreamSettings, TrackKind};
use rtsp_server::RtspServer;
use tokio::sync::{mpsc, oneshot};

/// Lists whatever sources the test sets; records session changes.
#[derive(Default)]
struct TestAuthority {
    sources: Mutex<Vec<PullSource>>,
    changes: Mutex<Vec<(String, SessionChange)>>,
}

impl IngestAuthority for TestAuthority {
    fn authorize<'a>(
        &'a self,
        _request: PublishRequest<'a>,
    ) -> BoxFuture<'a, Result<PublishGrant, PublishRefusal>> {
        Box::pin(async { Err(PublishRefusal::UnknownKey) })
    }

    fn session_changed(&self, event_id: &str, change: SessionChange) {
        self.changes
            .lock()
            .unwrap()
            .push((event_id.to_string(), change));
    }

    fn pull_sources(&self) -> BoxFuture<'_, Result<Vec<PullSource>, PublishRefusal>> {
        let sources = self.sources.lock().unwrap().clone();
        Box::pin(async move { Ok(sources) })
    }
}

/// What reached the "transcoder": (session number, event id, event), in order.
type Received = (usize, String, StreamEvent);

/// Forwards every session's events into one channel, tagged with the session's number.
struct Collector {
    sessions: Mutex<usize>,
    out: mpsc::UnboundedSender<Received>,
}

impl StreamHandler for Collector {
    fn begin_session(&self, event_id: &str, _: &StreamSettings) -> mpsc::Sender<StampedEvent> {
        let session = {
            let mut n = self.sessions.lock().unwrap();
            *n += 1;
            *n
        };
        let (tx, mut rx) = mpsc::channel::<StampedEvent>(1024);
        let out = self.out.clone();
        let event_id = event_id.to_string();
        tokio::spawn(async move {
            while let Some(stamped) = rx.recv().await {
                let _ = out.send((session, event_id.clone(), stamped.event));
            }
        });
        tx
    }
}

struct Harness {
    ingest: Ingest,
    authority: Arc<TestAuthority>,
    received: mpsc::UnboundedReceiver<Received>,
    stop: Option<oneshot::Sender<()>>,
    supervisor: tokio::task::JoinHandle<()>,
}

fn source(event_id: &str, url: String, transport: RtspTransport) -> PullSource {
    PullSource {
        event_id: event_id.to_string(),
        url,
        transport,
        settings: StreamSettings::default(),
    }
}

impl Harness {
    fn start(sources: Vec<PullSource>) -> Harness {
        let authority = Arc::new(TestAuthority::default());
        *authority.sources.lock().unwrap() = sources;
        let (out, received) = mpsc::unbounded_channel();
        let handler = Arc::new(Collector {
            sessions: Mutex::new(0),
            out,
        });
        let config = IngestConfig {
            rtsp: RtspConfig {
                poll_interval_secs: 1,
                connect_timeout_secs: 10,
                read_timeout_secs: 5,
                reconnect_initial_ms: 200,
                reconnect_max_ms: 2000,
                ..RtspConfig::default()
            },
            ..IngestConfig::default()
        };
        let ingest = Ingest::new(config, authority.clone(), handler);
        let (stop, stopped) = oneshot::channel::<()>();
        let supervisor = tokio::spawn(pull_rtsp(ingest.clone(), async {
            let _ = stopped.await;
        }));
        Harness {
            ingest,
            authority,
            received,
            stop: Some(stop),
            supervisor,
        }
    }

    /// The next event, within a generous time for a loaded 2-core machine.
    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(30), self.received.recv())
            .await
            .expect("no event within 30 s")
            .expect("collector gone")
    }

    /// Collects a session's events until it has `frames` frames of each of its tracks.
    async fn frames_of_session(&mut self, session: usize, frames: usize) -> Vec<StreamEvent> {
        let mut events = vec![];
        loop {
            let (n, _, event) = self.next().await;
            assert_eq!(
                n, session,
                "event of session {n} while reading {session}: {event:?}"
            );
            assert!(
                !matches!(event, StreamEvent::Ended),
                "session {session} ended early"
            );
            events.push(event);
            let count = |kind| {
                events
                    .iter()
                    .filter(|e| matches!(e, StreamEvent::Frame(f) if f.track == kind))
                    .count()
            };
            if count(TrackKind::Video) >= frames && count(TrackKind::Audio) >= frames {
                return events;
            }
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.supervisor)
            .await
            .expect("pulls stop on shutdown")
            .unwrap();
    }
}

/// The session starts with the tracks (H.264 640x360 and AAC 48 kHz stereo, as served),
/// then a video keyframe, and each track's timestamps only go forward.
fn check_session(events: &[StreamEvent]) {
    let StreamEvent::Tracks(tracks) = &events[0] else {
        panic!("session starts with {:?}", events[0]);
    };
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    let CodecParams::H264(avc) = &tracks[0].codec else {
        panic!("{tracks:?}")
    };
    assert_eq!((avc.width, avc.height), (640, 360));
    let CodecParams::Aac(aac) = &tracks[1].codec else {
        panic!("{tracks:?}")
    };
    assert_eq!(
        (aac.object_type, aac.sample_rate, aac.channels),
        (2, 48_000, 2)
    );

    let frames: Vec<&Frame> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Frame(f) => Some(f),
            _ => None,
        })
        .collect();
    assert!(frames[0].track == TrackKind::Video && frames[0].keyframe);
    for kind in [TrackKind::Video, TrackKind::Audio] {
        let dts: Vec<i64> = frames
            .iter()
            .filter(|f| f.track == kind)
            .map(|f| f.dts)
            .collect();
        assert!(
            dts.windows(2).all(|w| w[1] > w[0]),
            "{kind:?} timestamps go forward: {dts:?}"
        );
    }
    // 30 fps on the 90 kHz clock: 3000 ticks a frame (RTP's own video clock).
    let video: Vec<i64> = frames
        .iter()
        .filter(|f| f.track == TrackKind::Video)
        .map(|f| f.dts)
        .collect();
    let span = video[video.len() - 1] - video[0];
    let per_frame = span / (video.len() as i64 - 1);
    assert!(
        (2900..=3100).contains(&per_frame),
        "{per_frame} ticks per frame"
    );
    // Samples are length-prefixed NAL units (nal_length_size 4), not Annex B.
    let first = &frames[0].data;
    let len = u32::from_be_bytes(first[..4].try_into().unwrap()) as usize;
    assert!(len + 4 <= first.len(), "first NAL unit length {len}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_h264_and_aac_and_reconnects_after_a_server_restart() {
    let mut server = RtspServer::start(Some(("camera", "pa ss:w@rd")));
    let mut h = Harness::start(vec![source("cam1", server.url(), RtspTransport::Tcp)]);

    let first = h.frames_of_session(1, 60).await;
    check_session(&first);
    let status = h.ingest.session("cam1").expect("a live session");
    assert_eq!(status.protocol, Protocol::Rtsp);
    assert_eq!(status.remote_addr.port(), server.port);
    assert!(status.frames >= 120 && status.bytes > 0, "{status:?}");
    assert_eq!(
        h.authority.changes.lock().unwrap()[0],
        (
            "cam1".to_string(),
            SessionChange::Started {
                protocol: Protocol::Rtsp
            }
        )
    );

    // The camera loses power: the session ends; it comes back on the same port and the
    // pull reconnects by itself, as a new session that starts on a keyframe again.
    server.kill();
    loop {
        let (n, _, event) = h.next().await;
        assert_eq!(n, 1);
        if event == StreamEvent::Ended {
            break;
        }
    }
    server.restart();
    let second = h.frames_of_session(2, 60).await;
    check_session(&second);

    // The event's source is removed: its pull stops and the session ends.
    h.authority.sources.lock().unwrap().clear();
    loop {
        let (n, _, event) = h.next().await;
        assert_eq!(n, 2);
        if event == StreamEvent::Ended {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.ingest.session("cam1").is_none());
    assert!(h.authority.changes.lock().unwrap().contains(&(
        "cam1".to_string(),
        SessionChange::Stopped {
            protocol: Protocol::Rtsp
        }
    )));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_over_udp() {
    let server = RtspServer::start(None);
    let mut h = Harness::start(vec![source("cam-udp", server.url(), RtspTransport::Udp)]);
    let events = h.frames_of_session(1, 60).await;
    check_session(&events);
    // Shutting down ends the session downstream.
    let stop = h.stop.take().unwrap();
    let _ = stop.send(());
    loop {
        let (_, _, event) = h.next().await;
        if event == StreamEvent::Ended {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_that_cannot_be_pulled_leave_the_others_alone() {
    let server = RtspServer::start(Some(("camera", "right")));
    let wrong_password = server.url().replace(":right@", ":wrong@");
    let closed_port = format!("rtsp://127.0.0.1:{}/test", rtsp_server::free_port());
    let mut h = Harness::start(vec![
        source("wrong-password", wrong_password, RtspTransport::Tcp),
        source("closed-port", closed_port, RtspTransport::Tcp),
        source(
            "not-rtsp",
            "http://127.0.0.1/x".to_string(),
            RtspTransport::Tcp,
        ),
        source("good", server.url(), RtspTransport::Tcp),
    ]);
    let mut events = vec![];
    while events.len() < 200 {
        let (_, event_id, event) = h.next().await;
        assert_eq!(event_id, "good", "only the good source publishes");
        events.push(event);
    }
    check_session(&events);
    for bad in ["wrong-password", "closed-port", "not-rtsp"] {
        assert!(h.ingest.session(bad).is_none(), "{bad} has no session");
    }
    h.shutdown().await;
}
