//! Playback access for token streams (`PlaybackAccess::Token`): every playlist, init,
//! part and segment request carries a playback token (`floodlight_media::token`) in the
//! query string, which the origin verifies with no call to the control plane: signature
//! under a key in rotation, expiry, the event it names, and whether its session was
//! revoked. The playlists it serves carry the token in every URI, so players that only
//! resolve relative URIs (RFC 8216bis §4.1, RFC 3986 §5) keep sending it.
//!
//! The HMAC is computed once per token: verified tokens are remembered in a bounded
//! cache, and later requests only compare the event, the expiry and the revocation list.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use floodlight_media::PlaybackAccess;
use floodlight_media::token::{PlaybackClaims, TokenError, TokenKey, TokenVerifier};

use crate::error::ApiError;
use crate::metrics;

/// What the origin needs from the viewer-session store (in-process in `floodlight up`,
/// Redis-backed when distributed). Both calls sit on the request path of every token
/// stream request, so they must answer from memory at once: a store refreshes its
/// revocation list in the background and may batch heartbeats.
pub trait ViewerSessions: Send + Sync {
    /// The session was revoked: its requests are refused with 403. Called on every
    /// request of a token stream.
    fn is_revoked(&self, sid: &str) -> bool;

    /// The session is watching. Called on every master and media playlist request of a
    /// token stream (players reload playlists every part), which is what concurrency
    /// limits count.
    fn heartbeat(&self, claims: &PlaybackClaims);
}

/// Why a token stream request is refused with 403; `reason` in the problem answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Malformed,
    UnknownKey,
    BadSignature,
    Expired,
    OtherEvent,
    Revoked,
}

impl Refusal {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed_token",
            Refusal::UnknownKey => "unknown_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::OtherEvent => "wrong_event",
            Refusal::Revoked => "revoked",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Refusal::Malformed => "the playback token is not a well-formed token",
            Refusal::UnknownKey => {
                "the playback token was signed with a key this origin does not hold \
                 (origin.playback_keys)"
            }
            Refusal::BadSignature => "the playback token's signature does not verify",
            Refusal::Expired => "the playback token has expired; ask for a new one",
            Refusal::OtherEvent => "the playback token is for another event",
            Refusal::Revoked => "this playback session was revoked",
        }
    }
}

impl From<TokenError> for Refusal {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Malformed => Refusal::Malformed,
            TokenError::UnknownKey => Refusal::UnknownKey,
            TokenError::BadSignature => Refusal::BadSignature,
            TokenError::Expired => Refusal::Expired,
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ::metrics::counter!(metrics::PLAYBACK_REFUSED, "reason" => refusal.reason()).increment(1);
        ApiError::Forbidden {
            reason: refusal.reason(),
            detail: refusal.detail().to_string(),
        }
    }
}

/// The query string a token stream's playlists append to each of their URIs:
/// `{token_query_param}={token}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenQuery(String);

impl TokenQuery {
    fn new(param: &str, token: &str) -> Self {
        let mut query = String::with_capacity(param.len() + 1 + token.len());
        query.push_str(param);
        query.push('=');
        // Tokens are JWT compact serializations (base64url and dots: RFC 3986 §2.3
        // unreserved characters), which need no escaping; anything else is escaped so it
        // cannot break a quoted-string.
        if token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        {
            query.push_str(token);
        } else {
            query.extend(form_urlencoded::byte_serialize(token.as_bytes()));
        }
        TokenQuery(query)
    }

    /// `text` with the token appended at each of `ends`: a URI that has a query already
    /// gets `&`, others `?`.
    fn write(&self, text: &[u8], ends: &UriEnds) -> Bytes {
        let mut out = Vec::with_capacity(text.len() + ends.0.len() * (self.0.len() + 1));
        let mut copied = 0;
        for &(end, has_query) in &ends.0 {
            out.extend_from_slice(&text[copied..end]);
            out.push(if has_query { b'&' } else { b'?' });
            out.extend_from_slice(self.0.as_bytes());
            copied = end;
        }
        out.extend_from_slice(&text[copied..]);
        Bytes::from(out)
    }
}

/// Where the URIs of a rendered playlist end, and whether each has a query already: the
/// places a token stream's playlists get the token. Found once per rendered text (the
/// origin keeps it beside the text), so serving a playlist to each viewer is copying
/// alone.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct UriEnds(Vec<(usize, bool)>);

impl UriEnds {
    /// URI lines and every `URI="…"` attribute (EXT-X-MAP, EXT-X-PART,
    /// EXT-X-PRELOAD-HINT, EXT-X-RENDITION-REPORT, EXT-X-MEDIA).
    pub(crate) fn find(text: &[u8]) -> Self {
        let mut ends = Vec::new();
        let mut line_start = 0;
        for line in text.split_inclusive(|&b| b == b'\n') {
            let body_len = line.len()
                - line
                    .iter()
                    .rev()
                    .take_while(|&&b| b == b'\n' || b == b'\r')
                    .count();
            let body = &line[..body_len];
            if body.first() == Some(&b'#') {
                tag_uri_ends(body, line_start, &mut ends);
            } else if !body.is_empty() {
                // RFC 8216bis §4.1: a line that is not blank and not a tag is a URI.
                ends.push((line_start + body_len, body.contains(&b'?')));
            }
            line_start += line.len();
        }
        UriEnds(ends)
    }
}

/// The ends of the `URI="…"` attribute values of a tag line at `offset` (RFC 8216bis
/// §4.2: attributes follow the `:`, separated by commas; a quoted-string holds no `"` but
/// may hold commas).
fn tag_uri_ends(tag: &[u8], offset: usize, ends: &mut Vec<(usize, bool)>) {
    const URI_ATTRIBUTE: &[u8] = b"URI=\"";
    if !tag.windows(URI_ATTRIBUTE.len()).any(|w| w == URI_ATTRIBUTE) {
        return;
    }
    let Some(colon) = tag.iter().position(|&b| b == b':') else {
        return;
    };
    let mut start = colon + 1;
    while start < tag.len() {
        let rest = &tag[start..];
        let mut quoted = false;
        let len = rest
            .iter()
            .position(|&b| {
                quoted ^= b == b'"';
                b == b',' && !quoted
            })
            .unwrap_or(rest.len());
        if let Some(uri) = rest[..len]
            .strip_prefix(URI_ATTRIBUTE)
            .and_then(|value| value.strip_suffix(b"\""))
        {
            ends.push((offset + start + len - 1, uri.contains(&b'?')));
        }
        start += len + 1;
    }
}

/// The value of query parameter `name`, percent-decoded (RFC 3986 §2.1; `+` is a space in
/// a form-encoded query). Borrowed when it needs no decoding, as a token never does.
fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix(name)?.strip_prefix('=')?;
        Some(if memchr::memchr2(b'%', b'+', value.as_bytes()).is_some() {
            Cow::Owned(
                form_urlencoded::parse(pair.as_bytes())
                    .next()
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default(),
            )
        } else {
            Cow::Borrowed(value)
        })
    })
}

/// Verified tokens, bounded. Only tokens whose signature verified get in, so the entries
/// cannot be chosen by someone without a valid token.
struct TokenCache {
    entries: RwLock<HashMap<Box<str>, Arc<PlaybackClaims>>>,
    capacity: usize,
}

impl TokenCache {
    fn get(&self, token: &str) -> Option<Arc<PlaybackClaims>> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    fn insert(&self, token: &str, claims: Arc<PlaybackClaims>, now: i64) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.retain(|_, claims| claims.exp > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(token.into(), claims);
    }
}

/// The playback token check of one origin: keys, cache, session store.
pub(crate) struct PlaybackGate {
    verifier: TokenVerifier,
    param: String,
    cache: TokenCache,
    sessions: Option<Arc<dyn ViewerSessions>>,
}

/// A request the gate let through.
#[derive(Debug)]
pub(crate) enum Admission<'a> {
    /// A public stream: served as it always was.
    Public,
    /// A token stream with a valid token: its playlists carry it in every URI.
    Token { param: &'a str, token: Cow<'a, str> },
}

impl Admission<'_> {
    /// A playlist as this request should see it: with the token in every URI. `ends`
    /// are the text's URI ends when known already (found otherwise).
    pub(crate) fn playlist(&self, text: Bytes, ends: Option<&UriEnds>) -> Bytes {
        match self {
            Admission::Public => text,
            Admission::Token { param, token } => {
                let query = TokenQuery::new(param, token);
                match ends {
                    Some(ends) => query.write(&text, ends),
                    None => query.write(&text, &UriEnds::find(&text)),
                }
            }
        }
    }
}

impl PlaybackGate {
    pub(crate) fn new(
        keys: &[TokenKey],
        param: &str,
        cache_entries: usize,
        sessions: Option<Arc<dyn ViewerSessions>>,
    ) -> Self {
        PlaybackGate {
            verifier: TokenVerifier::new(keys),
            param: param.to_string(),
            cache: TokenCache {
                entries: RwLock::new(HashMap::new()),
                capacity: cache_entries,
            },
            sessions,
        }
    }

    /// Lets a request of `event_id` through, or says why not: 401 without a token, 403
    /// for a token that is malformed, signed with an unknown key or a bad signature,
    /// expired (at `now`, seconds since the Unix epoch), for another event, or of a
    /// revoked session. A playlist request (`heartbeat`) refreshes its session.
    pub(crate) fn admit<'a>(
        &'a self,
        event_id: &str,
        access: PlaybackAccess,
        query: Option<&'a str>,
        now: i64,
        heartbeat: bool,
    ) -> Result<Admission<'a>, ApiError> {
        if access == PlaybackAccess::Public {
            return Ok(Admission::Public);
        }
        let token = query.and_then(|query| query_param(query, &self.param));
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            ::metrics::counter!(metrics::PLAYBACK_REFUSED, "reason" => "missing_token")
                .increment(1);
            return Err(ApiError::TokenRequired(format!(
                "this stream needs a playback token in the `{}` query parameter of the \
                 master playlist URL",
                self.param
            )));
        };
        let claims = self.claims(&token, now)?;
        if claims.evt != event_id {
            return Err(Refusal::OtherEvent.into());
        }
        if let Some(sessions) = &self.sessions {
            if sessions.is_revoked(&claims.sid) {
                return Err(Refusal::Revoked.into());
            }
            if heartbeat {
                sessions.heartbeat(&claims);
            }
        }
        Ok(Admission::Token {
            param: &self.param,
            token,
        })
    }

    /// The token's claims, verified now or earlier; unexpired at `now`.
    fn claims(&self, token: &str, now: i64) -> Result<Arc<PlaybackClaims>, Refusal> {
        if let Some(claims) = self.cache.get(token) {
            return if claims.exp > now {
                Ok(claims)
            } else {
                Err(Refusal::Expired)
            };
        }
        ::metrics::counter!(metrics::PLAYBACK_TOKENS_VERIFIED).increment(1);
        let claims = Arc::new(self.verifier.verify(token, now)?);
        self.cache.insert(token, Arc::clone(&claims), now);
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn key(id: &str) -> TokenKey {
        TokenKey::parse(&format!("{id}:{SECRET}{id}")).unwrap()
    }

    fn claims(evt: &str, sid: &str, exp: i64) -> PlaybackClaims {
        PlaybackClaims {
            evt: evt.into(),
            sub: "acct".into(),
            sid: sid.into(),
            iat: 0,
            exp,
        }
    }

    #[derive(Default)]
    struct FakeSessions {
        revoked: Mutex<Vec<String>>,
        heartbeats: Mutex<Vec<String>>,
    }

    impl ViewerSessions for FakeSessions {
        fn is_revoked(&self, sid: &str) -> bool {
            self.revoked.lock().unwrap().iter().any(|s| s == sid)
        }

        fn heartbeat(&self, claims: &PlaybackClaims) {
            self.heartbeats.lock().unwrap().push(claims.sid.clone());
        }
    }

    fn refusal<T: std::fmt::Debug>(result: Result<T, ApiError>) -> String {
        match result {
            Err(ApiError::Forbidden { reason, .. }) => reason.to_string(),
            Err(ApiError::TokenRequired(_)) => "401".to_string(),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn token_streams_check_every_claim() {
        let sessions = Arc::new(FakeSessions::default());
        let gate = PlaybackGate::new(
            &[key("new"), key("old")],
            "token",
            16,
            Some(sessions.clone()),
        );
        let token = key("new").sign(&claims("ev1", "s1", 1000));
        let q = format!("token={token}");
        let admit = |q: &str, now, heartbeat| {
            gate.admit("ev1", PlaybackAccess::Token, Some(q), now, heartbeat)
                .map(|admission| matches!(admission, Admission::Token { .. }))
        };
        assert!(matches!(admit(&q, 999, true), Ok(true)));
        assert_eq!(*sessions.heartbeats.lock().unwrap(), ["s1"]);
        // From the cache, still checked for expiry and event.
        assert!(matches!(admit(&q, 999, false), Ok(true)));
        assert_eq!(sessions.heartbeats.lock().unwrap().len(), 1);
        assert_eq!(refusal(admit(&q, 1000, false)), "expired");
        assert_eq!(
            refusal(gate.admit("ev2", PlaybackAccess::Token, Some(&q), 999, false)),
            "wrong_event"
        );
        // The previous key still verifies; another key does not; no token is a 401.
        let old = key("old").sign(&claims("ev1", "s2", 1000));
        assert!(admit(&format!("_HLS_msn=3&token={old}"), 10, false).is_ok());
        let foreign = key("gone").sign(&claims("ev1", "s3", 1000));
        assert_eq!(
            refusal(admit(&format!("token={foreign}"), 10, false)),
            "unknown_key"
        );
        assert_eq!(refusal(admit("token=abc", 10, false)), "malformed_token");
        assert_eq!(refusal(admit("_HLS_msn=3", 10, false)), "401");
        assert_eq!(refusal(admit("token=", 10, false)), "401");
        assert_eq!(
            refusal(gate.admit("ev1", PlaybackAccess::Token, None, 10, false)),
            "401"
        );
        // A signature that does not match: the payload of another token spliced in.
        let other = key("new").sign(&claims("ev1", "s9", 5000));
        let parts: Vec<&str> = token.split('.').collect();
        let other_parts: Vec<&str> = other.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
        assert_eq!(
            refusal(admit(&format!("token={spliced}"), 10, false)),
            "bad_signature"
        );
        // Revocation applies to cached tokens at once.
        sessions.revoked.lock().unwrap().push("s1".into());
        assert_eq!(refusal(admit(&q, 999, false)), "revoked");
        // Public streams ignore tokens altogether.
        assert!(matches!(
            gate.admit("ev1", PlaybackAccess::Public, None, 10, true),
            Ok(Admission::Public)
        ));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let gate = PlaybackGate::new(&[key("k")], "t", 2, None);
        for i in 0..5 {
            let token = key("k").sign(&claims("ev1", &format!("s{i}"), 100 + i));
            assert!(
                gate.admit(
                    "ev1",
                    PlaybackAccess::Token,
                    Some(&format!("t={token}")),
                    50,
                    false
                )
                .is_ok()
            );
            assert!(gate.cache.entries.read().unwrap().len() <= 2);
        }
    }

    impl TokenQuery {
        fn rewrite(&self, text: &[u8]) -> Bytes {
            self.write(text, &UriEnds::find(text))
        }
    }

    #[test]
    fn query_parameters_are_found_and_decoded() {
        assert_eq!(
            query_param("a=1&token=x.y&b=2", "token").as_deref(),
            Some("x.y")
        );
        assert_eq!(
            query_param("tokenx=1&token=a%2Eb+c", "token").as_deref(),
            Some("a.b c")
        );
        assert_eq!(query_param("token", "token"), None);
        assert_eq!(query_param("_HLS_msn=1", "token"), None);
        assert!(matches!(
            query_param("token=abc", "token"),
            Some(Cow::Borrowed("abc"))
        ));
    }

    #[test]
    fn every_playlist_uri_carries_the_token() {
        let query = TokenQuery::new("token", "aaa.bbb.ccc");
        let media = "#EXTM3U\n\
#EXT-X-TARGETDURATION:2\n\
#EXT-X-MAP:URI=\"init0.mp4\"\n\
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n\
#EXTINF:2.00000,\n\
10.m4s\n\
#EXT-X-PART:DURATION=0.20000,URI=\"11.0.m4s\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"11.1.m4s\"\n\
#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=11,LAST-PART=0\n";
        let rewritten = String::from_utf8(query.rewrite(media.as_bytes()).to_vec()).unwrap();
        assert_eq!(
            rewritten,
            "#EXTM3U\n\
#EXT-X-TARGETDURATION:2\n\
#EXT-X-MAP:URI=\"init0.mp4?token=aaa.bbb.ccc\"\n\
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n\
#EXTINF:2.00000,\n\
10.m4s?token=aaa.bbb.ccc\n\
#EXT-X-PART:DURATION=0.20000,URI=\"11.0.m4s?token=aaa.bbb.ccc\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"11.1.m4s?token=aaa.bbb.ccc\"\n\
#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8?token=aaa.bbb.ccc\",LAST-MSN=11,LAST-PART=0\n"
        );
        let master = "#EXTM3U\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",URI=\"audio/index.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=1000,AUDIO=\"audio\"\n\
source/index.m3u8?x=1\n\
\n";
        let rewritten = String::from_utf8(query.rewrite(master.as_bytes()).to_vec()).unwrap();
        assert_eq!(
            rewritten,
            "#EXTM3U\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",URI=\"audio/index.m3u8?token=aaa.bbb.ccc\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=1000,AUDIO=\"audio\"\n\
source/index.m3u8?x=1&token=aaa.bbb.ccc\n\
\n"
        );
        // Only the URI attribute, not one whose name ends in URI, nor a quoted value.
        let tag = "#EXT-X-X:X-URI=\"a\",NAME=\"p,URI=q\",URI=\"c\"\r\n";
        let rewritten = String::from_utf8(query.rewrite(tag.as_bytes()).to_vec()).unwrap();
        assert_eq!(
            rewritten,
            "#EXT-X-X:X-URI=\"a\",NAME=\"p,URI=q\",URI=\"c?token=aaa.bbb.ccc\"\r\n"
        );
        // Characters a token should not hold are escaped, never written raw.
        assert_eq!(TokenQuery::new("token", "a\"b c").0, "token=a%22b+c");
    }
}
