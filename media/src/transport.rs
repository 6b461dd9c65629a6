//! The internal media transport between ingest and a transcoder (issue 4): a compact,
//! versioned, length-prefixed framing of a stream's `StreamEvent`s over TCP, carrying the
//! stream's identity and the last MSN so a transcoder taking over continues the numbering.
//! Sans-IO: encode to bytes, decode from bytes.
