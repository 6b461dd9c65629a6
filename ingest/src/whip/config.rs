//! `[ingest.whip]` in floodlight.toml.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

/// `[ingest.whip]`: WHIP (RFC 9725) publishing, WebRTC from browsers, FFmpeg 8 and OBS 30+.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhipConfig {
    /// HTTP listener: `POST /whip/{event_id}` with the SDP offer, and the session
    /// resources (`DELETE` ends one).
    pub listen: SocketAddr,
    /// UDP ports for the sessions' ICE, DTLS and SRTP, `"first-last"`: each session takes
    /// one free port of the range, so the range bounds the sessions too. Open them in the
    /// firewall.
    pub udp_ports: PortRange,
    /// Addresses announced to publishers as ICE host candidates, e.g. the server's public
    /// address behind a 1:1 NAT; the sockets then bind all local addresses, and checks
    /// count as arriving at the first. Empty: the address the WHIP request arrived on
    /// (the publisher can evidently reach it), where the socket binds too.
    pub candidate_ips: Vec<IpAddr>,
    /// Sessions at once (negotiating or publishing); more are answered 503.
    pub max_sessions: usize,
    /// A session whose ICE and DTLS have not completed this long after the answer is
    /// ended.
    pub connect_timeout_secs: u64,
    /// A session that receives no packet for this long is ended (WebRTC senders check
    /// consent every few seconds, RFC 7675, so a live one is never this quiet).
    pub idle_timeout_secs: u64,
    /// Largest SDP offer accepted, bytes; larger gets 413.
    pub max_offer_bytes: usize,
    /// Asks the publisher for a keyframe (RTCP PLI, or FIR) once its last one is this old,
    /// so segments stay short: browsers otherwise send one every few minutes. Set it to
    /// `[transcoder] segment_target_ms`.
    pub keyframe_interval_ms: u64,
    /// Least time between two keyframe requests: an encoder needs a moment to answer one.
    pub keyframe_request_min_interval_ms: u64,
}

impl Default for WhipConfig {
    fn default() -> Self {
        WhipConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8070)),
            udp_ports: PortRange {
                first: 50_000,
                last: 50_199,
            },
            candidate_ips: vec![],
            max_sessions: 100,
            connect_timeout_secs: 10,
            idle_timeout_secs: 15,
            max_offer_bytes: 64 * 1024,
            keyframe_interval_ms: 2000,
            keyframe_request_min_interval_ms: 500,
        }
    }
}

/// An inclusive range of UDP ports, written `"first-last"` (`"50000-50199"`).
#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub(crate) fn len(self) -> usize {
        usize::from(self.last - self.first) + 1
    }
}

impl fmt::Debug for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let parse = |p: &str| p.trim().parse::<u16>().ok().filter(|&p| p > 0);
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (parse(a), parse(b)),
            None => (parse(&s), parse(&s)),
        };
        match (first, last) {
            (Some(first), Some(last)) if first <= last => Ok(PortRange { first, last }),
            _ => Err(format!(
                "{s:?} is not a UDP port range \"first-last\" with 1 <= first <= last <= 65535"
            )),
        }
    }
}

/// A configuration value that cannot work, named by its key.
#[derive(Debug, thiserror::Error)]
#[error("ingest.whip.{key}: {reason}")]
#[non_exhaustive]
pub struct InvalidWhipConfig {
    pub key: &'static str,
    pub reason: String,
}

impl WhipConfig {
    /// Rejects values that cannot work: zero limits and timeouts.
    pub fn validate(&self) -> Result<(), InvalidWhipConfig> {
        let positive = [
            ("max_sessions", self.max_sessions as u64),
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("max_offer_bytes", self.max_offer_bytes as u64),
            ("keyframe_interval_ms", self.keyframe_interval_ms),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(InvalidWhipConfig {
                key,
                reason: "must be at least 1".to_string(),
            });
        }
        Ok(())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub(crate) fn keyframe_interval(&self) -> Duration {
        Duration::from_millis(self.keyframe_interval_ms)
    }

    pub(crate) fn keyframe_request_min_interval(&self) -> Duration {
        Duration::from_millis(self.keyframe_request_min_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_refuse_nonsense() {
        let range = PortRange::try_from("40000-40009".to_string()).unwrap();
        assert_eq!((range.first, range.last, range.len()), (40000, 40009, 10));
        assert_eq!(format!("{range:?}"), "40000-40009");
        assert_eq!(PortRange::try_from("5000".to_string()).unwrap().len(), 1);
        for bad in ["", "0-10", "10-5", "a-b", "1-70000"] {
            assert!(PortRange::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
