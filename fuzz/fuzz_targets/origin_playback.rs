//! Playback requests' query strings at the origin: the LL-HLS delivery directives
//! (`_HLS_msn`, `_HLS_part`, `_HLS_skip`, RFC 8216bis §6.2.5, `HlsDirectives` in
//! origin/src/playback.rs) and the playback token parameter (`token`, origin/src/access.rs,
//! verified by `floodlight_media::token`), through `Origin::router()` as a player reaches
//! them. One origin for the whole run holds a public stream (video and audio renditions)
//! and a token stream, each with three segments and two parts pushed; a current-thread
//! runtime with a paused clock answers blocking reloads at their timeout at once.
//!
//! Input: `[selector, query…]`: the selector picks the file (media playlist, I-frame
//! playlist, init, versioned init, part, segment, master playlist, poster), the stream,
//! the rendition and whether a valid token comes first in the query; the rest is the
//! query (bytes outside a URI's query percent-encoded). Also: the query as a token for
//! `TokenVerifier`. Invariants: no panic; no 5xx but 503; a token stream refuses 401
//! without a `token` parameter and lets a valid token through; a public stream serves
//! its files whatever the query, and its playlists whatever query holds no `_HLS_`
//! parameter; a playlist served starts `#EXTM3U`, and one of a token stream carries the
//! token on every URI; a token the verifier accepts re-signs to a token it accepts.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use floodlight_media::PlaybackAccess;
use floodlight_media::push::{PartMeta, RenditionDescriptor, RenditionKind};
use floodlight_media::token::{PlaybackClaims, TokenKey, TokenVerifier};
use floodlight_origin::{Origin, OriginConfig};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const KEY: &str = "k1:0123456789abcdef0123456789abcdef";
/// Far enough ahead that the token stays valid while the fuzzer runs.
const EXPIRY: i64 = 4_000_000_000;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    token: String,
    key: TokenKey,
    verifier: TokenVerifier,
}

async fn call(router: &axum::Router, method: Method, uri: &str, body: Vec<u8>) -> (StatusCode, bytes::Bytes) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body)
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let config = OriginConfig {
            playback_keys: vec![KEY.to_string()],
            ..OriginConfig::default()
        };
        let router = Origin::new(config, String::new).router();
        runtime.block_on(async {
            for (event, access) in [
                ("ev_pub", PlaybackAccess::Public),
                ("ev_tok", PlaybackAccess::Token),
            ] {
                for (name, kind) in [("v", RenditionKind::Video), ("a", RenditionKind::Audio)] {
                    let descriptor = RenditionDescriptor {
                        name: name.to_string(),
                        kind,
                        codecs: if kind == RenditionKind::Video {
                            "avc1.64001f".to_string()
                        } else {
                            "mp4a.40.2".to_string()
                        },
                        width: (kind == RenditionKind::Video).then_some(1280),
                        height: (kind == RenditionKind::Video).then_some(720),
                        frame_rate: (kind == RenditionKind::Video).then_some(30.0),
                        channels: (kind == RenditionKind::Audio).then_some(2),
                        part_target_ms: 250,
                        segment_target_ms: 1000,
                        access,
                        bandwidth_hint_bps: Some(1_000_000),
                        dvr_window_secs: None,
                    };
                    let uri = format!("/push/v1/{event}/{name}");
                    let body = serde_json::to_vec(&descriptor).unwrap();
                    assert!(call(&router, Method::PUT, &uri, body).await.0.is_success());
                    let uri = format!("/push/v1/{event}/{name}/init/0");
                    let init = b"init segment".to_vec();
                    assert!(call(&router, Method::PUT, &uri, init).await.0.is_success());
                    for msn in 0..4u64 {
                        for part in 0..if msn < 3 { 4 } else { 2 } {
                            let meta = PartMeta {
                                msn,
                                part,
                                duration: 0.25,
                                independent: part == 0,
                                init_version: 0,
                                program_date_time_ms: (part == 0)
                                    .then_some(1_700_000_000_000 + msn as i64 * 1000),
                                discontinuity: false,
                                ends_segment: part == 3,
                                last_frame_arrival_ms: 0,
                                sync_sample_bytes: (part == 0 && kind == RenditionKind::Video)
                                    .then_some(8),
                            };
                            let query = serde_urlencoded::to_string(&meta).unwrap();
                            let uri =
                                format!("/push/v1/{event}/{name}/part/{msn}/{part}?{query}");
                            let body = format!("[{msn}.{part}] part bytes").into_bytes();
                            let (status, _) = call(&router, Method::PUT, &uri, body).await;
                            assert!(status.is_success(), "{status} for {uri}");
                        }
                    }
                }
                let uri = format!("/push/v1/{event}/thumbnail.jpg");
                let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0];
                assert!(call(&router, Method::PUT, &uri, jpeg).await.0.is_success());
            }
        });
        let key = TokenKey::parse(KEY).unwrap();
        let token = key.sign(&PlaybackClaims {
            evt: "ev_tok".to_string(),
            sub: "acct_fuzz".to_string(),
            sid: "ses_fuzz".to_string(),
            iat: 1_700_000_000,
            exp: EXPIRY,
        });
        let verifier = TokenVerifier::new(std::slice::from_ref(&key));
        Fixture {
            runtime,
            router,
            token,
            key,
            verifier,
        }
    })
}

/// Bytes a URI's query cannot hold as they are, percent-encoded.
fn escape(query: &[u8]) -> String {
    query
        .iter()
        .map(|&b| {
            if (0x21..=0x7e).contains(&b) && b != b'#' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, query)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let query = escape(query);

    // The decoder of tokens, on the query as a token.
    let now = 1_800_000_000;
    if let Ok(claims) = fixture.verifier.verify(&query, now) {
        assert!(claims.exp > now);
        let again = fixture.key.sign(&claims);
        assert_eq!(fixture.verifier.verify(&again, now), Ok(claims));
    }

    let file = [
        "index.m3u8",
        "iframes.m3u8",
        "init.mp4",
        "init0.mp4",
        "1.2.m4s",
        "1.m4s",
        "master.m3u8",
        "thumbnail.jpg",
    ][usize::from(selector & 7)];
    let token_stream = selector & 8 != 0;
    let with_token = selector & 16 != 0;
    let rendition = if selector & 32 != 0 { "a" } else { "v" };
    let event = if token_stream { "ev_tok" } else { "ev_pub" };
    let full_query = if with_token {
        format!("token={}&{query}", fixture.token)
    } else {
        query.clone()
    };
    let uri = match file {
        "master.m3u8" | "thumbnail.jpg" => format!("/live/{event}/{file}?{full_query}"),
        _ => format!("/live/{event}/{rendition}/{file}?{full_query}"),
    };
    let Ok(request) = Request::builder().uri(&uri).body(Body::empty()) else {
        return;
    };
    let (status, body) = fixture.runtime.block_on(async {
        let response = fixture.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, body)
    });

    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status} for {uri}"
    );
    let playlist = file.ends_with(".m3u8");
    let iframes_of_audio = file == "iframes.m3u8" && rendition == "a";
    if token_stream {
        if !with_token && !query.contains("token") {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        }
        if with_token {
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{status}: a valid token refused for {uri}"
            );
        }
    } else if !playlist || !query.contains("_HLS_") {
        if iframes_of_audio {
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        } else {
            assert_eq!(status, StatusCode::OK, "{uri}");
        }
    }
    if status == StatusCode::OK && playlist {
        let text = std::str::from_utf8(&body).expect("a playlist is UTF-8");
        assert!(text.starts_with("#EXTM3U"), "{uri}: {text:?}");
        if token_stream {
            for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
                assert!(line.contains("token="), "{uri}: {line:?} without the token");
            }
        }
    }
});
