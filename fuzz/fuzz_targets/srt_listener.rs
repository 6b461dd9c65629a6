//! Datagrams from anyone to the SRT port: srt-protocol's listener state machine (as
//! srt-tokio drives it) and, once a handshake opens a connection, that connection.
//!
//! Input: a sequence of records `[source, answer, len_hi, len_lo, bytes…]`. `source`
//! picks one of four caller addresses; `answer` is how the access check answers a
//! request from it (accept without keys, accept with a passphrase at a key length,
//! reject). Invariants: no panic; the listener only asks about, opens or rejects
//! sessions of addresses that sent something; an open connection handles the rest of
//! its caller's datagrams and its timers.
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use srt_protocol::connection::{DuplexConnection, Input as ConnectionInput};
use srt_protocol::listener::{
    AccessControlResponse, Action, Input, MultiplexListener, NextInputContext, SessionId,
};
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{Packet, RejectReason, ServerRejectReason};
use srt_protocol::settings::{ConnInitSettings, KeySettings};

fn source(byte: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + (byte % 4)], 5000))
}

fn answer(byte: u8) -> AccessControlResponse {
    let key = |key_size| {
        Some(KeySettings {
            key_size,
            passphrase: Passphrase::try_from("a passphrase of the event".to_string()).unwrap(),
        })
    };
    match byte % 5 {
        0 => AccessControlResponse::Accepted(None),
        1 => AccessControlResponse::Accepted(key(KeySize::Unspecified)),
        2 => AccessControlResponse::Accepted(key(KeySize::AES128)),
        3 => AccessControlResponse::Accepted(key(KeySize::AES256)),
        _ => AccessControlResponse::Rejected(RejectReason::Server(
            ServerRejectReason::Unauthorized,
        )),
    }
}

struct Harness {
    now: Instant,
    listener: MultiplexListener,
    answers: HashMap<SessionId, AccessControlResponse>,
    seen: Vec<SessionId>,
    open: HashMap<SessionId, DuplexConnection>,
    /// Access-check answers not delivered yet (srt-tokio delivers them when idle).
    pending: Vec<(SessionId, AccessControlResponse)>,
}

impl Harness {
    /// Runs the listener until it waits for input, as srt-tokio's listener task does.
    fn drive(&mut self, mut input: Input) {
        for _ in 0..64 {
            let action = self.listener.handle_input(self.now, input);
            let next = NextInputContext::for_action(&action);
            input = match action {
                Action::Close => return,
                Action::WaitForInput => match self.pending.pop() {
                    Some(answer) => Input::AccessResponse(Some(answer)),
                    None => return,
                },
                Action::SendPacket(_) | Action::UpdateStatistics(_) => next.input_from(Ok::<(), ()>(())),
                Action::RequestAccess(id, _) => {
                    assert!(self.seen.contains(&id), "asked about {id:?} unprompted");
                    let response = self
                        .answers
                        .remove(&id)
                        .unwrap_or(AccessControlResponse::Dropped);
                    self.pending.push((id, response));
                    next.input_from(Ok::<(), ()>(()))
                }
                Action::RejectConnection(id, _) => {
                    assert!(self.seen.contains(&id), "rejected {id:?} unprompted");
                    next.input_from(Ok::<(), ()>(()))
                }
                Action::OpenConnection(id, connection) => {
                    assert!(self.seen.contains(&id), "opened {id:?} unprompted");
                    let (_, connection) = *connection;
                    self.open.insert(id, DuplexConnection::new(connection));
                    next.input_from(Ok::<(), ()>(()))
                }
                Action::DelegatePacket(id, packet) => {
                    if let Some(connection) = self.open.get_mut(&id) {
                        connection.handle_packet_input(self.now, Ok(packet));
                        Self::drain(connection, self.now);
                    }
                    next.input_from(Ok::<(), ()>(()))
                }
                Action::DropConnection(id) => {
                    self.open.remove(&id);
                    next.input_from(Ok::<(), ()>(()))
                }
            };
        }
    }

    /// What a connection's task does after each input: send, deliver, tick.
    fn drain(connection: &mut DuplexConnection, now: Instant) {
        while connection.next_packet(now).is_some() {}
        while connection.next_data(now).is_some() {}
        let _ = connection.handle_input(now, ConnectionInput::Timer);
        let _ = connection.check_timers(now);
    }
}

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let local = SocketAddr::from(([10, 0, 0, 100], 9000));
    let mut harness = Harness {
        now: start,
        listener: MultiplexListener::new(start, local, ConnInitSettings::default()),
        answers: HashMap::new(),
        seen: Vec::new(),
        open: HashMap::new(),
        pending: Vec::new(),
    };
    let mut rest = data;
    while let [from, answer_byte, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;
        let from = source(*from);
        let id = SessionId(from);
        if !harness.seen.contains(&id) {
            harness.seen.push(id);
        }
        harness.answers.insert(id, answer(*answer_byte));
        harness.now += Duration::from_millis(u64::from(*answer_byte) * 4);
        let mut buf = Bytes::copy_from_slice(datagram);
        let parsed = Packet::parse(&mut buf, false).map(|packet| (packet, from));
        harness.drive(Input::Packet(parsed.map_err(Into::into)));
        harness.drive(Input::Timer);
    }
    // Time passes: pending sessions expire, connections time out.
    harness.now += Duration::from_secs(120);
    harness.drive(Input::Timer);
    let now = harness.now;
    for connection in harness.open.values_mut() {
        Harness::drain(connection, now);
    }
});
