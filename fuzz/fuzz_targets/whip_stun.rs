//! The WHIP STUN shim (`ingest/src/whip/stun.rs`, `add_missing_priority`): every datagram a
//! WHIP publisher sends to the media port passes through it before str0m, and it re-signs
//! authentic Binding requests that lack PRIORITY (FFmpeg 8's).
//!
//! Input: `[flags, attributes…]`. The harness builds a Binding request around the
//! attribute bytes (header with the right length, unless flags say to lie or to use the
//! attribute bytes as the whole datagram), then, as flags say, appends a
//! MESSAGE-INTEGRITY signed with the session's password (or with another one) and a
//! FINGERPRINT. Invariants: no panic; a request is only re-signed when its integrity
//! verifies with the session's password (never for another password, nor for a request
//! that already has PRIORITY); a well-formed authentic request without PRIORITY always is;
//! the output keeps the header's type and transaction and the attributes before
//! MESSAGE-INTEGRITY, then PRIORITY (peer-reflexive), MESSAGE-INTEGRITY that verifies
//! and a correct FINGERPRINT, its length field is right, the shim leaves it alone the
//! second time, and str0m, if it parses it, sees that PRIORITY and verifies it.
#![no_main]

use std::sync::OnceLock;

use floodlight_ingest::fuzzing::{PEER_REFLEXIVE_PRIORITY, add_missing_priority};
use libfuzzer_sys::fuzz_target;
use str0m::crypto::Sha1HmacProvider;
use str0m::ice::StunMessage;

const PASSWORD: &[u8] = b"floodlightfuzzpassword0123456789";
const OTHER_PASSWORD: &[u8] = b"not-the-session-password";
const TRANSACTION: [u8; 12] = *b"fuzztransact";
const MESSAGE_INTEGRITY: u16 = 0x0008;
const PRIORITY: u16 = 0x0024;
const FINGERPRINT: u16 = 0x8028;

fn hmac() -> &'static dyn Sha1HmacProvider {
    static PROVIDER: OnceLock<&'static dyn Sha1HmacProvider> = OnceLock::new();
    *PROVIDER.get_or_init(|| {
        let provider = Box::leak(Box::new(str0m::crypto::from_feature_flags()));
        provider.sha1_hmac_provider
    })
}

fn set_length(message: &mut [u8], len: usize) {
    message[2..4].copy_from_slice(&(len as u16).to_be_bytes());
}

fn fingerprint(message: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(message) ^ 0x5354_554e
}

/// Walks attributes as RFC 8489 §14 lays them out: `Some(has PRIORITY)` when they tile the
/// bytes exactly and none is a 20-byte MESSAGE-INTEGRITY, `None` otherwise.
fn walk(attributes: &[u8]) -> Option<bool> {
    let (mut offset, mut priority) = (0, false);
    while offset < attributes.len() {
        if offset + 4 > attributes.len() {
            return None;
        }
        let kind = u16::from_be_bytes([attributes[offset], attributes[offset + 1]]);
        let len = usize::from(u16::from_be_bytes([
            attributes[offset + 2],
            attributes[offset + 3],
        ]));
        match kind {
            PRIORITY => priority = true,
            MESSAGE_INTEGRITY if len == 20 => return None,
            _ => {}
        }
        offset += 4 + len.next_multiple_of(4);
    }
    (offset == attributes.len()).then_some(priority)
}

fn check_output(packet: &[u8], out: &[u8]) {
    let n = out.len();
    assert!(n >= 20 + 8 + 24 + 8, "output too short: {n}");
    assert_eq!(out[..2], [0, 1], "not a Binding request");
    assert_eq!(out[4..20], packet[4..20], "cookie or transaction changed");
    assert_eq!(usize::from(u16::from_be_bytes([out[2], out[3]])), n - 20);
    // Attributes before MESSAGE-INTEGRITY are kept as they came.
    let kept = n - 40;
    assert_eq!(out[20..kept], packet[20..kept]);
    assert_eq!(out[kept..kept + 4], [0x00, 0x24, 0x00, 0x04]);
    assert_eq!(out[kept + 4..kept + 8], PEER_REFLEXIVE_PRIORITY.to_be_bytes());
    let integrity = n - 32;
    assert_eq!(out[integrity..integrity + 4], [0x00, 0x08, 0x00, 0x14]);
    let mut covered = out[..integrity].to_vec();
    set_length(&mut covered, integrity + 24 - 20);
    let mac = hmac().sha1_hmac(PASSWORD, &[&covered]);
    assert_eq!(out[integrity + 4..integrity + 24], mac, "MESSAGE-INTEGRITY does not verify");
    assert_eq!(out[n - 8..n - 4], [0x80, 0x28, 0x00, 0x04]);
    assert_eq!(out[n - 4..], fingerprint(&out[..n - 8]).to_be_bytes());
    // It has PRIORITY now: the shim passes it on untouched.
    assert!(add_missing_priority(out, PASSWORD, hmac()).is_none());
    if let Ok(message) = StunMessage::parse(out) {
        assert_eq!(message.prio(), Some(PEER_REFLEXIVE_PRIORITY));
        assert!(message.verify(PASSWORD, |k, p| hmac().sha1_hmac(k, p)));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, attributes)) = data.split_first() else {
        return;
    };
    let raw = flags & 0x80 != 0;
    let packet = if raw {
        // The datagram as it came: no header built, no signature.
        attributes.to_vec()
    } else {
        let sign = flags & 1 != 0;
        let other_password = flags & 2 != 0;
        let with_fingerprint = flags & 4 != 0;
        let lie = flags & 8 != 0;
        let not_binding = flags & 16 != 0;
        let mut packet = vec![0, if not_binding { 0x11 } else { 1 }, 0, 0];
        packet.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        packet.extend_from_slice(&TRANSACTION);
        packet.extend_from_slice(attributes);
        if sign {
            let len = packet.len();
            set_length(&mut packet, len + 24 - 20);
            let password = if other_password { OTHER_PASSWORD } else { PASSWORD };
            let mac = hmac().sha1_hmac(password, &[&packet]);
            packet.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
            packet.extend_from_slice(&20u16.to_be_bytes());
            packet.extend_from_slice(&mac);
        }
        if with_fingerprint {
            let len = packet.len();
            set_length(&mut packet, len + 8 - 20);
            let crc = fingerprint(&packet);
            packet.extend_from_slice(&FINGERPRINT.to_be_bytes());
            packet.extend_from_slice(&4u16.to_be_bytes());
            packet.extend_from_slice(&crc.to_be_bytes());
        }
        let len = packet.len();
        set_length(&mut packet, len - 20);
        if lie {
            packet[3] ^= 4;
        }
        let fixed = add_missing_priority(&packet, PASSWORD, hmac());
        let well_formed = sign && !lie && !not_binding && len - 20 <= usize::from(u16::MAX);
        match (walk(attributes), fixed.is_some()) {
            // Authentic, well formed, no PRIORITY: re-signed, always.
            (Some(false), fixed) if well_formed && !other_password => {
                assert!(fixed, "an authentic request without PRIORITY was not re-signed")
            }
            (Some(true), true) => panic!("a request with PRIORITY was re-signed"),
            (_, true) if !sign || other_password || lie || not_binding => {
                panic!("re-signed a request that is not authentic (flags {flags:#04x})")
            }
            _ => {}
        }
        if let Some(out) = &fixed {
            check_output(&packet, out);
        }
        return;
    };
    if let Some(out) = add_missing_priority(&packet, PASSWORD, hmac()) {
        check_output(&packet, &out);
    }
});
