//! Runs `tests/support/rtsp_server.py` (GStreamer's RTSP server with a live H.264 + AAC
//! test pattern) for the RTSP pull tests, and kills and restarts it on the same port.
//! Included with `#[path]` by the crate test (ingest/tests) and the end-to-end test.
#![allow(dead_code)] // each includer uses a different part

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RtspServer {
    child: Option<Child>,
    pub port: u16,
    pub mount: String,
    credentials: Option<(String, String)>,
}

/// The script, found from the crate being tested up to the workspace root.
fn script() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("tests/support/rtsp_server.py");
        if candidate.exists() {
            return candidate;
        }
        assert!(dir.pop(), "tests/support/rtsp_server.py not found");
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RtspServer {
    /// Serves the test pattern at `rtsp://127.0.0.1:{free port}/test`, with Basic
    /// authentication when `credentials` are given; returns once it accepts connections.
    pub fn start(credentials: Option<(&str, &str)>) -> RtspServer {
        let mut server = RtspServer {
            child: None,
            port: free_port(),
            mount: "/test".to_string(),
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        // Debian's python3, which has the GStreamer bindings (python3-gi).
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script())
            .args(["--port", &self.port.to_string(), "--mount", &self.mount])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some((user, password)) = &self.credentials {
            cmd.args(["--user", user, "--password", password]);
        }
        let mut child = cmd
            .spawn()
            .expect("/usr/bin/python3 with python3-gi (scripts/install-deps.sh)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("rtsp_server.py exited: {status}");
            }
            assert!(Instant::now() < deadline, "rtsp_server.py did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// Kills the server outright (SIGKILL), as a camera losing power.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and mount.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The URL with the credentials percent-encoded in it, as an operator would give it.
    pub fn url(&self) -> String {
        let userinfo = match &self.credentials {
            Some((user, password)) => format!("{}:{}@", encode(user), encode(password)),
            None => String::new(),
        };
        format!("rtsp://{userinfo}127.0.0.1:{}{}", self.port, self.mount)
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986 §2.3).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
    }
}
