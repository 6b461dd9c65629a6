#![no_main]

use floodlight_media::transport::{Decoder, Message};
use libfuzzer_sys::fuzz_target;

// Arbitrary bytes from a peer: the decoder errors or yields messages, never panics, and
// every message it yields encodes (without error) to bytes that decode to the same message.
fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(1 << 16);
    // Fed in two pieces, as reads split a stream.
    let (a, b) = data.split_at(data.len() / 2);
    for piece in [a, b] {
        decoder.extend(piece);
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => {
                    let mut again = Decoder::new(1 << 17);
                    // What was decoded fits the format, so it encodes.
                    let bytes = message.to_bytes().expect("a decoded message re-encodes");
                    again.extend(&bytes);
                    let decoded: Option<Message> = again.next_message().expect("re-decodes");
                    // NaN frame rates are the one value not equal to itself.
                    if format!("{message:?}").contains("NaN") {
                        continue;
                    }
                    assert_eq!(decoded, Some(message));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
