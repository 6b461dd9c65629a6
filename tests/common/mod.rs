//! Harness for end-to-end tests: the real `floodlight up` binary on free ports with a
//! temp data dir, real ffmpeg publishers, plain HTTP clients.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The bootstrap admin API key every test server starts with (`FLOODLIGHT_ADMIN_KEY`);
/// send it on every `/v1` call (`.bearer_auth(ADMIN_KEY)`).
pub const ADMIN_KEY: &str = "fl_api_e2e_admin_key_0123456789abcdefghijklmn";

pub struct Server {
    /// `None` between [`Server::kill_hard`] and [`Server::restart`].
    child: Option<Child>,
    _data: tempfile::TempDir,
    pub rtmp_port: u16,
    /// The SRT listener's UDP port.
    pub srt_port: u16,
    /// The WHIP HTTP endpoint's port.
    pub whip_port: u16,
    /// First and last UDP port of the WHIP sessions' range.
    pub whip_udp_ports: (u16, u16),
    pub http_port: u16,
    pub api_port: u16,
    pub log_path: PathBuf,
    /// The env overrides it was started with, for [`Server::restart`].
    extra: Vec<(String, String)>,
}

/// UDP ports a test server's WHIP sessions may use.
const WHIP_UDP_PORTS: u16 = 20;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts `floodlight up` with `extra` env overrides and waits until it is healthy.
    pub async fn start(extra: &[(&str, &str)]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let (rtmp_port, http_port, api_port) = (free_port(), free_port(), free_port());
        let srt_port = free_udp_port();
        let whip_port = free_port();
        // Sessions skip ports in use, so a range that overlaps another server's works.
        let first = free_udp_port().min(u16::MAX - WHIP_UDP_PORTS);
        let whip_udp_ports = (first, first + WHIP_UDP_PORTS - 1);
        let log_path = data.path().join("floodlight.log");
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut server = Server {
            child: None,
            _data: data,
            rtmp_port,
            srt_port,
            whip_port,
            whip_udp_ports,
            http_port,
            api_port,
            log_path,
            extra,
        };
        server.launch().await;
        server
    }

    /// Spawns `floodlight up` on this server's data dir and ports (its log appended to
    /// the same file) and waits until it is healthy.
    async fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_floodlight"));
        cmd.arg("up")
            .arg("--data-dir")
            .arg(self._data.path())
            .env("FLOODLIGHT_LOG", "info,floodlight_origin=debug")
            .env(
                "FLOODLIGHT_INGEST__RTMP__LISTEN",
                format!("127.0.0.1:{}", self.rtmp_port),
            )
            .env(
                "FLOODLIGHT_INGEST__SRT__LISTEN",
                format!("127.0.0.1:{}", self.srt_port),
            )
            .env(
                "FLOODLIGHT_INGEST__WHIP__LISTEN",
                format!("127.0.0.1:{}", self.whip_port),
            )
            .env(
                "FLOODLIGHT_INGEST__WHIP__UDP_PORTS",
                format!("{}-{}", self.whip_udp_ports.0, self.whip_udp_ports.1),
            )
            .env(
                "FLOODLIGHT_ORIGIN__LISTEN",
                format!("127.0.0.1:{}", self.http_port),
            )
            .env(
                "FLOODLIGHT_CONTROL__LISTEN",
                format!("127.0.0.1:{}", self.api_port),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        cmd.env("FLOODLIGHT_ADMIN_KEY", ADMIN_KEY);
        for (k, v) in &self.extra {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn floodlight"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = async {
                let a = reqwest::get(self.api("/healthz"))
                    .await
                    .ok()?
                    .status()
                    .is_success();
                let b = reqwest::get(self.http("/healthz"))
                    .await
                    .ok()?
                    .status()
                    .is_success();
                Some(a && b)
            };
            if ok.await == Some(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "floodlight did not become healthy:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9`: SIGKILL, no shutdown, nothing flushed.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL floodlight");
            let _ = child.wait();
        }
    }

    /// Starts `floodlight up` again on the same data dir, ports and settings.
    pub async fn restart(&mut self) {
        self.kill_hard();
        self.launch().await;
    }

    pub fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn rtmp(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}{path}", self.rtmp_port)
    }

    /// `srt://127.0.0.1:PORT?streamid=…` for ffmpeg, with `stream_id` as given (ffmpeg
    /// sends it as written, `#!::` included).
    pub fn srt(&self, stream_id: &str) -> String {
        format!("srt://127.0.0.1:{}?streamid={stream_id}", self.srt_port)
    }

    /// The WHIP endpoint of an event: `http://127.0.0.1:PORT/whip/{event_id}`.
    pub fn whip(&self, event_id: &str) -> String {
        format!("http://127.0.0.1:{}/whip/{event_id}", self.whip_port)
    }

    /// The server's data dir (`--data-dir`).
    pub fn data_dir(&self) -> &Path {
        self._data.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Creates an event; returns (event_id, stream_key, the whole answer).
    pub async fn create_event(&self, title: &str) -> (String, String, Value) {
        let resp = reqwest::Client::new()
            .post(self.api("/v1/events"))
            .bearer_auth(ADMIN_KEY)
            .json(&serde_json::json!({ "title": title }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        let id = body["event_id"].as_str().unwrap().to_string();
        let key = body["stream_key"].as_str().unwrap().to_string();
        (id, key, body)
    }

    /// `GET /v1/events/{event_id}` as the admin: the event with its live status.
    pub async fn event(&self, event_id: &str) -> Value {
        let resp = reqwest::Client::new()
            .get(self.api(&format!("/v1/events/{event_id}")))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// An ffmpeg publisher of a synthetic test stream: 29.97 fps (OBS's default) H.264 High
/// with B-frames, 2 s GOP,
/// AAC-LC 48 kHz, paced in real time (`-re`), as OBS would send it.
pub fn ffmpeg_publish(url: &str, seconds: u32) -> Child {
    ffmpeg_publish_as("flv", url, seconds)
}

/// As [`ffmpeg_publish`], in another container: `mpegts` for SRT.
pub fn ffmpeg_publish_as(format: &str, url: &str, seconds: u32) -> Child {
    publish("640x360", format, url, seconds)
}

/// As [`ffmpeg_publish`], at another picture size (`WIDTHxHEIGHT`).
pub fn ffmpeg_publish_sized(url: &str, size: &str, seconds: u32) -> Child {
    publish(size, "flv", url, seconds)
}

fn publish(size: &str, format: &str, url: &str, seconds: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30000/1001"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
            "-bf",
            "2",
        ])
        .args([
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-b:v",
            "800k",
        ])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-f", format, url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg must be installed (scripts/install-deps.sh)")
}

/// Waits until `url` answers 200, polling (the test's own wait, not the server's).
pub async fn wait_for_ok(url: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
