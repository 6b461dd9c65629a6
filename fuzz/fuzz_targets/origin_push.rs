//! The origin's push API as a transcoder (or anyone reaching the port) drives it: every
//! request goes through `Origin::router()`, so the decoders of what is pushed (the bearer
//! token header, the JSON `RenditionDescriptor` body, the `PartMeta` and `reason` query
//! strings, path numbers, init/part/thumbnail bodies) and what the origin does with them
//! run as in production. A fresh origin (push token set, at most two streams) per input;
//! a current-thread runtime with a paused clock.
//!
//! Input: records `[op, flags, a, b, len, text[len], blen_hi, blen_lo, body[blen]]`. `op`
//! picks the route (descriptor, init, part, end, last, shed, thumbnail, any path under
//! the push prefix), `flags` the event, the rendition, the credential (right, none,
//! wrong), whether the harness writes a well-formed descriptor or `PartMeta` from `a`, `b`
//! and `text` or passes `text`/`body` as they are, and the content type. Invariants after
//! each request: no panic; no 5xx but a 503 for a descriptor over `max_streams`; nothing
//! but 401 without the push token; a 2xx descriptor decodes (by serde_json alone) to one
//! named as its path, re-encoding to itself; a query `PartMeta` does not decode is a 400
//! and a decoded one re-encodes to itself; a stored part and a stored thumbnail are then
//! served byte for byte (or refused 401 while the stream wants a playback token); `last`
//! answers a `LastPart`.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use floodlight_media::PlaybackAccess;
use floodlight_media::push::{LastPart, PartMeta, RenditionDescriptor, RenditionKind};
use floodlight_origin::{Origin, OriginConfig};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const PUSH_TOKEN: &str = "fuzz-push-token-0123456789";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    })
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

struct Answer {
    status: StatusCode,
    body: bytes::Bytes,
}

async fn send(
    router: &axum::Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Option<Answer> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(auth) = auth {
        request = request.header(header::AUTHORIZATION, auth);
    }
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    // A URI or header no HTTP parser would have let through never reaches the router.
    let request = request.body(Body::from(body)).ok()?;
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Some(Answer { status, body })
}

fn descriptor(name: &str, a: u8, b: u8) -> RenditionDescriptor {
    let kind = if a & 1 == 0 {
        RenditionKind::Video
    } else {
        RenditionKind::Audio
    };
    let part_target_ms = [50, 100, 250, 500, 1000, 2000][usize::from(b) % 6];
    RenditionDescriptor {
        name: name.to_string(),
        kind,
        codecs: match (a & 2 != 0, kind) {
            (true, _) => " ".to_string(),
            (false, RenditionKind::Video) => "avc1.64001f".to_string(),
            (false, RenditionKind::Audio) => "mp4a.40.2".to_string(),
        },
        width: (kind == RenditionKind::Video).then_some(1280),
        height: (kind == RenditionKind::Video).then_some(720),
        frame_rate: (kind == RenditionKind::Video).then_some(30.0),
        channels: (kind == RenditionKind::Audio).then_some(2),
        part_target_ms,
        segment_target_ms: part_target_ms * (1 + u32::from(a >> 2) % 8),
        access: if a & 0x20 != 0 {
            PlaybackAccess::Token
        } else {
            PlaybackAccess::Public
        },
        bandwidth_hint_bps: (a & 0x40 != 0).then_some(u64::from(b) * 10_000),
        dvr_window_secs: None,
    }
}

fn part_meta(msn: u64, part: u32, text: &[u8]) -> PartMeta {
    let at = |i: usize| text.get(i).copied().unwrap_or(0);
    PartMeta {
        msn,
        part,
        duration: f64::from(at(0)) / 100.0,
        independent: at(1) & 1 != 0,
        init_version: u32::from(at(1) >> 4),
        program_date_time_ms: (at(1) & 2 != 0).then_some(1_700_000_000_000 + msn as i64 * 1000),
        discontinuity: at(1) & 4 != 0,
        ends_segment: at(1) & 8 != 0,
        last_frame_arrival_ms: i64::from(at(2)),
        sync_sample_bytes: (at(2) & 1 != 0).then_some(u32::from(at(3))),
    }
}

/// Percent-encodes `text` so it fits in a URI's query (or path).
fn escape(text: &[u8]) -> String {
    text.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.=&+".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn run(data: &[u8]) {
    let config = OriginConfig {
        push_token: Some(PUSH_TOKEN.to_string()),
        max_streams: 2,
        max_renditions_per_stream: 3,
        max_init_versions_per_rendition: 3,
        max_window_segments: 8,
        dvr_window_secs: 4.0,
        max_push_body_bytes: 4096,
        max_thumbnail_bytes: 512,
        ..OriginConfig::default()
    };
    let origin = Origin::new(config, String::new);
    let router = origin.router();
    // Whether each event's latest accepted descriptor asked for playback tokens.
    let mut token_access: HashMap<&str, bool> = HashMap::new();
    let mut input = Cursor(data);
    for _ in 0..32 {
        let (Some(op), Some(flags), Some(a), Some(b), Some(len)) = (
            input.byte(),
            input.byte(),
            input.byte(),
            input.byte(),
            input.byte(),
        ) else {
            return;
        };
        let text = input.take(usize::from(len));
        let blen = usize::from(u16::from_be_bytes([
            input.byte().unwrap_or(0),
            input.byte().unwrap_or(0),
        ]));
        let body = input.take(blen).to_vec();

        let event = ["ev_a", "ev_b", "ev-c", "bad.id"][usize::from(flags & 3)];
        let rendition = ["v", "a", "end", "x_y"][usize::from(flags >> 2 & 3)];
        let auth = match flags >> 4 & 3 {
            0 | 1 => Some(format!("Bearer {PUSH_TOKEN}")),
            2 => None,
            _ => Some(format!("bearer  {}", String::from_utf8_lossy(text))),
        };
        let authorized = flags >> 4 & 3 < 2;
        let structured = flags & 0x40 != 0;
        let base = format!("/push/v1/{event}");
        let (msn, part) = (u64::from(a), u32::from(b % 8));

        let (method, uri, content_type, body) = match op % 8 {
            0 => {
                let body = if structured {
                    serde_json::to_vec(&descriptor(rendition, a, b)).unwrap()
                } else {
                    body
                };
                let content_type = (flags & 0x80 == 0).then_some("application/json");
                (Method::PUT, format!("{base}/{rendition}"), content_type, body)
            }
            1 => (Method::PUT, format!("{base}/{rendition}/init/{}", a % 4), None, body),
            2 => {
                let query = if structured {
                    serde_urlencoded::to_string(part_meta(msn, part, text)).unwrap()
                } else {
                    escape(text)
                };
                let uri = format!("{base}/{rendition}/part/{msn}/{part}?{query}");
                (Method::PUT, uri, None, body)
            }
            3 => (Method::POST, format!("{base}/end"), None, body),
            4 => (Method::GET, format!("{base}/{rendition}/last"), None, Vec::new()),
            5 => (
                Method::DELETE,
                format!("{base}/{rendition}?{}", escape(text)),
                None,
                Vec::new(),
            ),
            6 => {
                let mut body = body;
                if structured {
                    body.splice(0..0, [0xFF, 0xD8, 0xFF]);
                }
                (Method::PUT, format!("{base}/thumbnail.jpg"), None, body)
            }
            _ => {
                let method = [Method::GET, Method::PUT, Method::POST, Method::DELETE]
                    [usize::from(a % 4)]
                .clone();
                (method, format!("/push/v1/{}", escape(text)), None, body)
            }
        };
        let sent_body = body.clone();
        let Some(answer) = send(&router, method, &uri, auth.as_deref(), content_type, body).await
        else {
            continue;
        };
        let status = answer.status;
        assert!(
            !status.is_server_error()
                || (status == StatusCode::SERVICE_UNAVAILABLE && op % 8 == 0),
            "{status} for {uri}"
        );
        if status.is_success() {
            assert!(authorized, "{status} without the push token for {uri}");
        }
        if !authorized && op % 8 < 7 {
            // A route that exists answers 401; PUT or DELETE .../end is another route's
            // path (405).
            assert!(
                status == StatusCode::UNAUTHORIZED
                    || (status == StatusCode::METHOD_NOT_ALLOWED && rendition == "end"),
                "{status} without the push token for {uri}"
            );
            continue;
        }
        match op % 8 {
            0 => match serde_json::from_slice::<RenditionDescriptor>(&sent_body) {
                Ok(descriptor) => {
                    let again = serde_json::to_vec(&descriptor).unwrap();
                    assert_eq!(
                        serde_json::from_slice::<RenditionDescriptor>(&again).unwrap(),
                        descriptor
                    );
                    if status.is_success() {
                        assert_eq!(descriptor.name, rendition);
                        assert_ne!(event, "bad.id");
                        assert!(content_type.is_some());
                        token_access.insert(event, descriptor.access == PlaybackAccess::Token);
                    }
                }
                Err(_) => assert!(
                    status.is_client_error(),
                    "{status} for an undecodable descriptor"
                ),
            },
            2 => {
                let query = uri.split_once('?').map_or("", |(_, q)| q);
                match serde_urlencoded::from_str::<PartMeta>(query) {
                    Ok(meta) => {
                        let again = serde_urlencoded::to_string(&meta).unwrap();
                        let meta2 = serde_urlencoded::from_str::<PartMeta>(&again).unwrap();
                        assert_eq!(serde_urlencoded::to_string(&meta2).unwrap(), again);
                        if (meta.msn, meta.part) != (msn, part) {
                            assert_eq!(status, StatusCode::BAD_REQUEST);
                        }
                    }
                    Err(_) => assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}"),
                }
                if status == StatusCode::CREATED {
                    let uri = format!("/live/{event}/{rendition}/{msn}.{part}.m4s");
                    let got = send(&router, Method::GET, &uri, None, None, Vec::new())
                        .await
                        .unwrap();
                    if got.status == StatusCode::UNAUTHORIZED {
                        assert_eq!(token_access.get(event), Some(&true), "{uri}: 401");
                    } else {
                        assert_eq!(got.status, StatusCode::OK, "{uri}");
                        assert_eq!(got.body, sent_body, "{uri}: other bytes");
                    }
                }
            }
            4 if status == StatusCode::OK => {
                serde_json::from_slice::<LastPart>(&answer.body).expect("last is a LastPart");
            }
            6 if status == StatusCode::NO_CONTENT => {
                assert!(sent_body.starts_with(&[0xFF, 0xD8, 0xFF]) && sent_body.len() <= 512);
                let uri = format!("/live/{event}/thumbnail.jpg");
                let got = send(&router, Method::GET, &uri, None, None, Vec::new())
                    .await
                    .unwrap();
                if got.status == StatusCode::UNAUTHORIZED {
                    assert_eq!(token_access.get(event), Some(&true), "{uri}: 401");
                } else {
                    assert_eq!(got.status, StatusCode::OK, "{uri}");
                    assert_eq!(got.body, sent_body, "{uri}: other bytes");
                }
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(run(data));
});
