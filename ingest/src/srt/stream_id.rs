//! The stream ID an SRT caller sends in its handshake (SRTO_STREAMID), read as a publish
//! request. Two forms:
//! - the stream key alone (`srt://HOST:9000?streamid={stream_key}`);
//! - the SRT Access Control syntax (Haivision SRT, `docs/features/access-control.md`):
//!   `#!::` then comma-separated `key=value` pairs, `r` the resource (our stream key),
//!   `m` the mode and `t` the connection type. Sans-IO.

/// Keys of the access-control syntax that matter here.
const RESOURCE: &str = "r";
const MODE: &str = "m";
const TYPE: &str = "t";
const ACCESS_CONTROL_PREFIX: &str = "#!::";

/// Why a stream ID cannot publish. The messages are safe to log: they never hold the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamIdError {
    #[error("no stream ID: publish to srt://HOST:9000?streamid={{stream_key}}")]
    Missing,
    #[error("access-control stream ID without r={{stream_key}}")]
    NoResource,
    /// Access control: `m` absent means `request` (the caller wants to play).
    #[error("mode {0:?} asked for; only m=publish is served")]
    Mode(String),
    #[error("connection type {0:?} asked for; only t=stream is served")]
    Type(String),
    #[error("malformed access-control stream ID: {0:?} is not key=value")]
    Malformed(String),
}

/// The stream key a stream ID names for publishing.
pub fn publish_key(stream_id: Option<&str>) -> Result<&str, StreamIdError> {
    let id = stream_id.unwrap_or_default();
    if id.is_empty() {
        return Err(StreamIdError::Missing);
    }
    let Some(pairs) = id.strip_prefix(ACCESS_CONTROL_PREFIX) else {
        return Ok(id);
    };
    let (mut resource, mut mode, mut connection_type) = (None, "request", "stream");
    for pair in pairs.split(',') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| StreamIdError::Malformed(redact(pair)))?;
        match key {
            RESOURCE => resource = Some(value),
            MODE => mode = value,
            TYPE => connection_type = value,
            // u (user), h (host), s (session) and custom keys say nothing we act on.
            _ => {}
        }
    }
    if mode != "publish" {
        return Err(StreamIdError::Mode(mode.to_string()));
    }
    if connection_type != "stream" {
        return Err(StreamIdError::Type(connection_type.to_string()));
    }
    resource
        .filter(|r| !r.is_empty())
        .ok_or(StreamIdError::NoResource)
}

/// A malformed pair may hold a stream key (`r` written without `=`): log only its length.
fn redact(pair: &str) -> String {
    format!("<{} bytes>", pair.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_stream_id_is_the_key() {
        assert_eq!(publish_key(Some("fl_live_abc")), Ok("fl_live_abc"));
    }

    #[test]
    fn access_control_publish() {
        assert_eq!(
            publish_key(Some("#!::r=fl_live_abc,m=publish")),
            Ok("fl_live_abc")
        );
        // Order, other standard keys and t=stream do not matter.
        assert_eq!(
            publish_key(Some("#!::u=studio,m=publish,t=stream,r=fl_live_abc,s=42")),
            Ok("fl_live_abc")
        );
    }

    #[test]
    fn anything_but_publish_is_refused() {
        // The access-control default mode is `request`.
        assert_eq!(
            publish_key(Some("#!::r=key")),
            Err(StreamIdError::Mode("request".into()))
        );
        assert_eq!(
            publish_key(Some("#!::r=key,m=request")),
            Err(StreamIdError::Mode("request".into()))
        );
        assert_eq!(
            publish_key(Some("#!::r=key,m=bidirectional")),
            Err(StreamIdError::Mode("bidirectional".into()))
        );
        assert_eq!(
            publish_key(Some("#!::r=key,m=publish,t=file")),
            Err(StreamIdError::Type("file".into()))
        );
    }

    #[test]
    fn missing_or_malformed() {
        assert_eq!(publish_key(None), Err(StreamIdError::Missing));
        assert_eq!(publish_key(Some("")), Err(StreamIdError::Missing));
        assert_eq!(
            publish_key(Some("#!::m=publish")),
            Err(StreamIdError::NoResource)
        );
        assert_eq!(
            publish_key(Some("#!::r=,m=publish")),
            Err(StreamIdError::NoResource)
        );
        let err = publish_key(Some("#!::fl_live_secret,m=publish")).unwrap_err();
        assert_eq!(err, StreamIdError::Malformed("<14 bytes>".into()));
        assert!(!err.to_string().contains("secret"));
    }
}
