//! End-to-end, distributed on one machine with real Redis (127.0.0.1:6379): `floodlight
//! up` with `[assignment] mode = "remote"` (control API, ingest, origin) and two
//! `floodlight transcoder` processes pushing to its origin. ffmpeg publishes over RTMP,
//! the LL-HLS player follows; the transcoder serving the stream is killed (SIGKILL) and
//! the other one must take over within 3 s with EXT-X-DISCONTINUITY, the numbering going
//! on, and the player seeing no error.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Server, ffmpeg_publish, wait_for_ok};
use floodlight_player::{PlayerConfig, follow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REDIS: &str = "127.0.0.1:6379";
const PUSH_TOKEN: &str = "e2e-push-token-0123456789abcdef";

/// One Redis command over RESP; the raw reply. Fails the test (never skips it) when
/// Redis does not answer: these tests are about Redis-backed assignment.
async fn redis(args: &[&str]) -> String {
    let mut socket = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(REDIS))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| {
            panic!("Redis must run at {REDIS} for the transcoder assignment tests (redis-server)")
        });
    let mut request = format!("*{}\r\n", args.len());
    for a in args {
        request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // Replies here are small; read until a short pause follows the first bytes.
    loop {
        match tokio::time::timeout(Duration::from_millis(100), socket.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => reply.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("Redis read: {e}"),
            Err(_) if !reply.is_empty() => break,
            Err(_) => {}
        }
    }
    String::from_utf8(reply).unwrap()
}

/// The bulk strings of an array reply (SMEMBERS).
fn members(reply: &str) -> Vec<String> {
    let mut lines = reply.split("\r\n");
    let mut out = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with('$')
            && let Some(value) = lines.next()
        {
            out.push(value.to_string());
        }
    }
    out
}

/// A registry key prefix of this test run alone, so runs never see each other.
fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("floodlight:e2e:{test}:{}:{nanos}:", std::process::id())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `floodlight transcoder` process.
struct TranscoderProcess {
    child: Child,
    http_port: u16,
    log_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TranscoderProcess {
    fn start(prefix: &str, origin: &str) -> TranscoderProcess {
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let log_path = dir.path().join("transcoder.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_floodlight"))
            .arg("transcoder")
            .arg("--data-dir")
            .arg(dir.path())
            .env("FLOODLIGHT_LOG", "info")
            .env(
                "FLOODLIGHT_TRANSCODER__LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env(
                "FLOODLIGHT_TRANSCODER__HTTP_LISTEN",
                format!("127.0.0.1:{http_port}"),
            )
            .env("FLOODLIGHT_TRANSCODER__ORIGINS", format!("[\"{origin}\"]"))
            .env("FLOODLIGHT_TRANSCODER__PUSH_TOKEN", PUSH_TOKEN)
            .env(
                "FLOODLIGHT_ASSIGNMENT__REDIS_URL",
                format!("redis://{REDIS}/0"),
            )
            .env("FLOODLIGHT_ASSIGNMENT__KEY_PREFIX", prefix)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn floodlight transcoder");
        TranscoderProcess {
            child,
            http_port,
            log_path,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Streams its pipelines run now, from its /metrics.
    async fn active_streams(&self) -> u64 {
        let Ok(resp) = reqwest::get(self.url("/metrics")).await else {
            return 0;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("floodlight_transcoder_active_streams "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    }
}

impl Drop for TranscoderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The media playlist URIs a master playlist lists: its variants (the line after each
/// EXT-X-STREAM-INF), then its renditions (EXT-X-MEDIA URI attributes).
fn media_playlists(master: &str) -> Vec<String> {
    let mut lines = master.lines();
    let mut uris = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with("#EXT-X-STREAM-INF")
            && let Some(uri) = lines.next()
        {
            uris.push(uri.to_string());
        }
    }
    for line in master.lines().filter(|l| l.starts_with("#EXT-X-MEDIA:")) {
        if let Some(uri) = line
            .split("URI=\"")
            .nth(1)
            .and_then(|u| u.split('"').next())
        {
            uris.push(uri.to_string());
        }
    }
    assert!(
        !uris.is_empty(),
        "the master lists no media playlist:\n{master}"
    );
    uris
}

/// (msn, part) of every EXT-X-PART of a media playlist (`{msn}.{part}.m4s`).
fn parts(playlist: &str) -> Vec<(u64, u32)> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .filter_map(|attrs| attrs.split("URI=\"").nth(1)?.split('"').next())
        .filter_map(|uri| {
            let mut it = uri.trim_end_matches(".m4s").split('.');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcoder_registers_renews_and_expires_from_redis() {
    let prefix = unique_prefix("registry");
    let index = format!("{prefix}index");
    let transcoder = TranscoderProcess::start(&prefix, "http://127.0.0.1:9");
    assert!(
        wait_for_ok(&transcoder.url("/readyz"), Duration::from_secs(20)).await,
        "transcoder not ready:\n{}",
        transcoder.log()
    );
    let ids = members(&redis(&["SMEMBERS", &index]).await);
    assert_eq!(ids.len(), 1, "one registration: {ids:?}");
    let key = format!("{prefix}id:{}", ids[0]);
    let entry = redis(&["GET", &key]).await;
    assert!(entry.contains("\"capacity\":16"), "{entry}");
    assert!(entry.contains("\"addr\":\"127.0.0.1:"), "{entry}");
    // Renewed every heartbeat: alive well past one expiry period.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(redis(&["EXISTS", &key]).await, ":1\r\n", "renewed");
    let ttl: i64 = redis(&["PTTL", &key]).await.trim()[1..].parse().unwrap();
    assert!((1..=3000).contains(&ttl), "expires with PX 3000: {ttl}");
    let ttl: i64 = redis(&["PTTL", &index]).await.trim()[1..].parse().unwrap();
    assert!(
        (1..=3000).contains(&ttl),
        "the index expires with its last transcoder: {ttl}"
    );

    // Killed without a goodbye: the entry expires within the expiry period.
    let mut transcoder = transcoder;
    transcoder.child.kill().unwrap();
    transcoder.child.wait().unwrap();
    let killed = Instant::now();
    while redis(&["EXISTS", &key]).await != ":0\r\n" {
        assert!(
            killed.elapsed() < Duration::from_millis(3500),
            "the registration outlived its expiry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The index too, renewed with the entries, is gone with the last of them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        redis(&["EXISTS", &index]).await,
        ":0\r\n",
        "index left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_transcoder_mid_stream_moves_the_stream_within_3_s() {
    let prefix = unique_prefix("failover");
    let redis_url = format!("redis://{REDIS}/0");
    // Fail now, clearly, if Redis is not there.
    assert_eq!(redis(&["PING"]).await, "+PONG\r\n");
    let server = Server::start(&[
        ("FLOODLIGHT_ASSIGNMENT__MODE", "remote"),
        ("FLOODLIGHT_ASSIGNMENT__REDIS_URL", &redis_url),
        ("FLOODLIGHT_ASSIGNMENT__KEY_PREFIX", &prefix),
        ("FLOODLIGHT_ORIGIN__PUSH_TOKEN", PUSH_TOKEN),
        ("FLOODLIGHT_TRANSCODER__PUSH_TOKEN", PUSH_TOKEN),
    ])
    .await;
    let origin = server.http("");
    let transcoders = [
        TranscoderProcess::start(&prefix, &origin),
        TranscoderProcess::start(&prefix, &origin),
    ];
    for t in &transcoders {
        assert!(
            wait_for_ok(&t.url("/readyz"), Duration::from_secs(20)).await,
            "transcoder not ready:\n{}",
            t.log()
        );
    }
    let (event_id, key, _) = server.create_event("failover").await;
    let mut ffmpeg = ffmpeg_publish(&server.rtmp(&format!("/live/{key}")), 40);
    let master = server.http(&format!("/live/{event_id}/master.m3u8"));
    assert!(
        wait_for_ok(&master, Duration::from_secs(20)).await,
        "no master playlist:\n{}\n{}\n{}",
        server.log(),
        transcoders[0].log(),
        transcoders[1].log()
    );
    // Every media playlist the master lists, whatever the ladder names them; the first
    // variant is followed closely.
    let http = reqwest::Client::new();
    let master_text = http
        .get(&master)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let renditions = media_playlists(&master_text);
    let media = server.http(&format!("/live/{event_id}/{}", renditions[0]));
    assert!(wait_for_ok(&media, Duration::from_secs(10)).await);

    let mut config = PlayerConfig::new(master.clone());
    config.duration = Duration::from_secs(20);
    let player = tokio::spawn(follow(config));
    // Let the player settle on the stream before the kill.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let mut serving = None;
    for (i, t) in transcoders.iter().enumerate() {
        if t.active_streams().await == 1 {
            serving = Some(i);
        }
    }
    let serving = serving.expect("one transcoder runs the stream");
    let other = 1 - serving;
    assert_eq!(transcoders[other].active_streams().await, 0);
    let mut last_before = Vec::new();
    for rendition in &renditions {
        let url = server.http(&format!("/live/{event_id}/{rendition}"));
        let playlist = http.get(&url).send().await.unwrap().text().await.unwrap();
        last_before.push(parts(&playlist).last().map_or(0, |p| p.0));
    }
    let mut transcoders = transcoders;
    transcoders[serving].child.kill().unwrap();
    let killed = Instant::now();
    transcoders[serving].child.wait().unwrap();

    // The next part after the kill comes from the other transcoder, after a
    // discontinuity (RFC 8216bis §4.4.4.3), numbered after every part before it.
    let (taken_over, after) = loop {
        let playlist = http.get(&media).send().await.unwrap().text().await.unwrap();
        let beyond = parts(&playlist)
            .into_iter()
            .any(|(msn, _)| msn > last_before[0]);
        if beyond && playlist.contains("#EXT-X-DISCONTINUITY\n") {
            break (killed.elapsed(), playlist);
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no part after the kill:\n{playlist}\n--- up:\n{}\n--- other transcoder:\n{}",
            server.log(),
            transcoders[other].log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("first part after the kill: {taken_over:?}");
    // 3 s, plus one part target (200 ms) for the part to fill.
    assert!(
        taken_over <= Duration::from_millis(3200),
        "the stream stalled {taken_over:?} after its transcoder died"
    );
    assert_eq!(transcoders[other].active_streams().await, 1);
    // Every rendition goes on, not only the first (audio lags the video by up to a
    // segment when the transcoder dies, and must continue all the same).
    for (rendition, last) in renditions.iter().zip(&last_before).skip(1) {
        let url = server.http(&format!("/live/{event_id}/{rendition}"));
        loop {
            let playlist = http.get(&url).send().await.unwrap().text().await.unwrap();
            if parts(&playlist).iter().any(|(msn, _)| msn > last) {
                break;
            }
            assert!(
                killed.elapsed() <= Duration::from_millis(3200),
                "{rendition} stopped at the kill:\n{playlist}\n--- other transcoder:\n{}",
                transcoders[other].log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let numbered: Vec<(u64, u32)> = parts(&after);
    assert!(
        numbered.windows(2).all(|w| w[0] < w[1]),
        "numbering only goes forward: {numbered:?}"
    );

    let report = player
        .await
        .unwrap()
        .expect("player follows across the failover");
    println!("{report}");
    assert!(
        report.is_clean(),
        "player found errors: {:#?}",
        report.errors
    );
    assert!(report.discontinuities >= 1, "player saw the discontinuity");
    let log = server.log();
    assert!(log.contains("reassigning the stream"), "{log}");
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let _ = redis(&["DEL", &format!("{prefix}index")]).await;
}
