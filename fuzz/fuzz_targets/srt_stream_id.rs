//! The stream ID an SRT caller sends in its handshake (SRTO_STREAMID), read as a publish
//! request (`ingest/src/srt/stream_id.rs`, `publish_key`).
//!
//! Input: the first byte's low bit says whether the handshake carried a stream ID at all;
//! the rest is the stream ID (UTF-8, invalid sequences replaced, as a caller's bytes reach
//! it as a `String`). Invariants: no panic; a key is a non-empty piece of the stream ID
//! itself; without the `#!::` prefix the key is the whole stream ID; with it, the key is
//! the last `r=` value, the last `m=` says `publish`, any `t=` says `stream`, and every
//! pair has a `=`; refusals match the syntax (`Missing` only for no or an empty ID, and a
//! malformed pair is reported by its length only, never by its text).
#![no_main]

use floodlight_ingest::fuzzing::{StreamIdError, publish_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let id = (flags & 1 == 0).then_some(text.as_ref());
    let result = publish_key(id);
    let id = id.unwrap_or_default();

    // The model: what the stream ID says, pair by pair (the last of a key wins).
    let pairs = id.strip_prefix("#!::");
    let model = pairs.map(|pairs| {
        let mut malformed = None;
        let (mut r, mut m, mut t) = (None, "request", "stream");
        for pair in pairs.split(',') {
            match pair.split_once('=') {
                None => {
                    malformed.get_or_insert(pair);
                }
                Some(("r", v)) if malformed.is_none() => r = Some(v),
                Some(("m", v)) if malformed.is_none() => m = v,
                Some(("t", v)) if malformed.is_none() => t = v,
                Some(_) => {}
            }
        }
        (malformed, r, m, t)
    });

    match result {
        Ok(key) => {
            assert!(!key.is_empty(), "empty key from {id:?}");
            // A piece of the stream ID, not a copy.
            let (start, end) = (id.as_ptr() as usize, id.as_ptr() as usize + id.len());
            assert!(
                key.as_ptr() as usize >= start && key.as_ptr() as usize + key.len() <= end,
                "the key does not borrow from the stream ID"
            );
            match model {
                None => assert_eq!(key, id),
                Some((malformed, r, m, t)) => {
                    assert!(malformed.is_none(), "accepted a malformed pair in {id:?}");
                    assert_eq!(Some(key), r, "not the last r= of {id:?}");
                    assert_eq!(m, "publish");
                    assert_eq!(t, "stream");
                    assert!(!key.contains(','));
                }
            }
        }
        Err(error) => {
            let message = error.to_string();
            match (&error, model) {
                (StreamIdError::Missing, _) => assert!(id.is_empty(), "{id:?} called missing"),
                (_, None) => panic!("plain stream ID {id:?} refused: {error:?}"),
                (StreamIdError::Malformed(what), Some((Some(pair), ..))) => {
                    // Redacted: a pair written without '=' may be the key itself, so
                    // only its length is told.
                    assert_eq!(*what, format!("<{} bytes>", pair.len()));
                    assert!(message.contains(what.as_str()));
                }
                (StreamIdError::Malformed(_), Some((None, ..))) => {
                    panic!("{id:?} called malformed")
                }
                (_, Some((Some(_), ..))) => panic!("{id:?} has a malformed pair, got {error:?}"),
                (StreamIdError::Mode(mode), Some((None, _, m, _))) => {
                    assert_eq!(mode, m);
                    assert_ne!(m, "publish");
                }
                (StreamIdError::Type(kind), Some((None, _, m, t))) => {
                    assert_eq!(m, "publish", "type checked before mode");
                    assert_eq!(kind, t);
                    assert_ne!(t, "stream");
                }
                (StreamIdError::NoResource, Some((None, r, m, t))) => {
                    assert_eq!((m, t), ("publish", "stream"));
                    assert!(r.is_none_or(str::is_empty), "{id:?} names a resource");
                }
                (other, _) => panic!("unexpected refusal {other:?}"),
            }
        }
    }
});
