//! End-to-end: an entitled event on the real `floodlight up`, published over RTMP by
//! ffmpeg. The origin refuses playback without a token (401), with an expired, tampered
//! or other event's token (403); with a token from `POST /v1/events/{id}/playback` the
//! LL-HLS player follows it, every URI it is given carrying the token; a plan's
//! concurrency limit of 1 refuses a second session (409); a revoked session is refused
//! within 5 s.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{ADMIN_KEY, Server, ffmpeg_publish};
use floodlight_media::token::{PlaybackClaims, TokenKey};
use floodlight_player::{PlayerConfig, follow};
use serde_json::{Value, json};

/// The signing key the server is configured with, so the test can forge what a client
/// could not: an expired token with a valid signature.
const SIGNING_KEY: &str = "e2e:0123456789abcdef0123456789abcdef-signing";

struct Api<'a> {
    server: &'a Server,
    http: reqwest::Client,
}

impl Api<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, self.server.api(path))
            .bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// POSTs and expects `status`; returns the answer.
    async fn expect(&self, path: &str, body: Value, status: u16) -> Value {
        let (got, answer) = self.post(path, body).await;
        assert_eq!(got, status, "POST {path}: {answer}");
        answer
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Status and problem `reason` of a GET.
async fn get_status(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["reason"].as_str().unwrap_or_default().to_string(),
    )
}

/// `floodlight_origin_playback_refused_total{reason="…"}` from the origin's metrics.
async fn refused(server: &Server, reason: &str) -> f64 {
    let text = reqwest::get(server.http("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = format!("floodlight_origin_playback_refused_total{{reason=\"{reason}\"}}");
    text.lines()
        .find_map(|line| line.strip_prefix(&label))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Every URI of a playlist: URI lines and `URI="…"` attributes.
fn playlist_uris(playlist: &str) -> Vec<String> {
    let mut uris = Vec::new();
    for line in playlist.lines() {
        if line.starts_with('#') {
            for piece in line.split("URI=\"").skip(1) {
                uris.push(piece.split('"').next().unwrap().to_string());
            }
        } else if !line.is_empty() {
            uris.push(line.to_string());
        }
    }
    uris
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entitled_event_plays_only_with_a_valid_token() {
    let server = Server::start(&[
        ("FLOODLIGHT_TRANSCODER__RECONNECT_GRACE_SECS", "15"),
        // The playback URL names the host the test reaches the origin on.
        ("FLOODLIGHT_PUBLIC_HOST", "127.0.0.1"),
        (
            "FLOODLIGHT_CONTROL__ENTITLEMENT__PLAYBACK_SIGNING_KEYS",
            &format!("[\"{SIGNING_KEY}\"]"),
        ),
    ])
    .await;
    let api = Api {
        server: &server,
        http: reqwest::Client::new(),
    };
    let http = reqwest::Client::new();

    // An entitled event and another one; a plan with a limit of one session; a
    // subscriber, and a viewer who bought only the other event.
    let event = api
        .expect(
            "/v1/events",
            json!({ "title": "Cup final", "visibility": "entitled", "category": "football" }),
            201,
        )
        .await;
    let event_id = event["event_id"].as_str().unwrap().to_string();
    let key = event["stream_key"].as_str().unwrap().to_string();
    let other = api
        .expect(
            "/v1/events",
            json!({ "title": "Semi-final", "visibility": "entitled", "category": "football" }),
            201,
        )
        .await;
    let other_id = other["event_id"].as_str().unwrap().to_string();
    let plan = api
        .expect(
            "/v1/plans",
            json!({ "name": "Football", "categories": ["football"], "max_concurrent_sessions": 1 }),
            201,
        )
        .await;
    let fan = api
        .expect("/v1/accounts", json!({ "email": "fan@example.com" }), 201)
        .await["account_id"]
        .as_str()
        .unwrap()
        .to_string();
    api.expect(
        &format!("/v1/accounts/{fan}/subscriptions"),
        json!({ "plan_id": plan["plan_id"] }),
        201,
    )
    .await;
    let buyer = api
        .expect("/v1/accounts", json!({ "email": "buyer@example.com" }), 201)
        .await["account_id"]
        .as_str()
        .unwrap()
        .to_string();
    api.expect(
        &format!("/v1/accounts/{buyer}/purchases"),
        json!({ "event_id": other_id }),
        201,
    )
    .await;

    let mut ffmpeg = ffmpeg_publish(&server.rtmp(&format!("/live/{key}")), 60);
    let master = server.http(&format!("/live/{event_id}/master.m3u8"));
    let media = server.http(&format!("/live/{event_id}/source/index.m3u8"));
    // The stream exists once the origin stops answering 404; without a token it is 401.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = get_status(&http, &media).await;
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream did not appear (last {status}):\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The subscriber's token; a second session is over the plan's limit.
    let playback = api
        .expect(
            &format!("/v1/events/{event_id}/playback"),
            json!({ "account_id": fan }),
            200,
        )
        .await;
    let playback_url = playback["playback_url"].as_str().unwrap().to_string();
    let token = playback["token"].as_str().unwrap().to_string();
    let session_id = playback["session_id"].as_str().unwrap().to_string();
    assert_eq!(playback_url, format!("{master}?token={token}"));
    let (status, answer) = api
        .post(
            &format!("/v1/events/{event_id}/playback"),
            json!({ "account_id": fan }),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["reason"], "concurrency_limit");
    let other_token = api
        .expect(
            &format!("/v1/events/{other_id}/playback"),
            json!({ "account_id": buyer }),
            200,
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();

    // Refusals, on the master playlist, a media playlist and a part.
    let signing_key = TokenKey::parse(SIGNING_KEY).unwrap();
    let expired = signing_key.sign(&PlaybackClaims {
        evt: event_id.clone(),
        sub: fan.clone(),
        sid: session_id.clone(),
        iat: unix_now() - 7200,
        exp: unix_now() - 3600,
    });
    let mut tampered = token.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let with_token = |url: &str, token: &str| format!("{url}?token={token}");
    let playlist = http
        .get(with_token(&media, &token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let part_path = playlist
        .lines()
        .find_map(|line| line.strip_prefix("#EXT-X-PART:"))
        .and_then(|attributes| attributes.split("URI=\"").nth(1))
        .and_then(|uri| uri.split('?').next())
        .expect("a part listed")
        .to_string();
    let part = server.http(&format!("/live/{event_id}/source/{part_path}"));
    for url in [&master, &media, &part] {
        assert_eq!(get_status(&http, url).await.0, 401, "{url} without a token");
        for (bad, reason) in [
            (&expired, "expired"),
            (&other_token, "wrong_event"),
            (&tampered, "bad_signature"),
        ] {
            let (status, why) = get_status(&http, &with_token(url, bad)).await;
            assert_eq!((status, why.as_str()), (403, reason), "{url}");
        }
        assert_eq!(
            get_status(&http, &with_token(url, &token)).await.0,
            200,
            "{url}"
        );
    }

    // The origin writes the token into every URI of the playlists it serves.
    let master_text = http
        .get(&playback_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for text in [&master_text, &playlist] {
        let uris = playlist_uris(text);
        assert!(!uris.is_empty(), "{text}");
        for uri in uris {
            assert!(uri.ends_with(&format!("token={token}")), "{uri} in\n{text}");
        }
    }

    // The player follows the stream from the playback URL alone, for 20 s: every URI it
    // is given carries the token, so no request of it goes without.
    let missing_before = refused(&server, "missing_token").await;
    let mut config = PlayerConfig::new(playback_url.clone());
    config.duration = Duration::from_secs(20);
    let report = follow(config).await.expect("the player follows the stream");
    println!("{report}");
    assert!(report.is_clean(), "player errors: {:#?}", report.errors);
    assert!(
        report.parts_fetched >= 40,
        "only {} parts in 20 s",
        report.parts_fetched
    );
    assert_eq!(
        refused(&server, "missing_token").await,
        missing_before,
        "the player sent requests without the token"
    );
    // Still one session: the one that played.
    let (status, _) = api
        .post(
            &format!("/v1/events/{event_id}/playback"),
            json!({ "account_id": fan }),
        )
        .await;
    assert_eq!(status, 409);

    // Revocation: refused within 5 s, on playlists and parts alike.
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{session_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let revoked_at = Instant::now();
    loop {
        let (status, reason) = get_status(&http, &with_token(&media, &token)).await;
        if status == 403 {
            assert_eq!(reason, "revoked");
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "a revoked session still plays after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get_status(&http, &with_token(&part, &token)).await,
        (403, "revoked".to_string())
    );
    // The slot is free again.
    api.expect(
        &format!("/v1/events/{event_id}/playback"),
        json!({ "account_id": fan }),
        200,
    )
    .await;

    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    // Tokens are credentials: no log line carries one.
    let log = server.log();
    for secret in [&token, &other_token, &expired] {
        assert!(!log.contains(secret.as_str()), "a token reached the log");
    }
}
