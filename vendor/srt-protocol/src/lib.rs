// Floodlight patch: vendored third-party code; its own warnings are upstream's concern and
// would only bury ours (the published crate builds capped, as every registry crate does).
#![allow(warnings, clippy::all)]

pub mod access;
pub mod connection;
pub mod listener;
pub mod options;
pub mod packet;
pub mod protocol;
pub mod settings;
pub mod statistics;
