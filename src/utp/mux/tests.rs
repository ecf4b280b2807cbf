//! The connection table without sockets: SYNs, repeated SYNs, the accept backlog, RESETs for
//! unknown connection ids (and none for RESETs), garbage, the RESET queue under a full socket,
//! wake-ups of waiting streams.

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::*;

/// Records what the table sent; while `blocked` (a full socket) nothing is polled out.
#[derive(Default)]
struct Wire {
    sent: RefCell<Vec<(SocketAddr, Vec<u8>)>>,
    blocked: std::cell::Cell<bool>,
}

impl Wire {
    /// Polls out everything the table has to send, as the socket's owner task does.
    fn drain(&self, mux: &mut Mux, now: Instant) {
        if self.blocked.get() {
            return;
        }
        let mut out = Vec::new();
        // Bounded: a table of a few connections has a few windows' worth of packets.
        for _ in 0..100_000 {
            let Some(to) = mux.poll_transmit(now, &mut out) else { return };
            self.sent.borrow_mut().push((to, out.clone()));
        }
        panic!("the table never ran out of datagrams");
    }

    fn take(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut *self.sent.borrow_mut())
    }
    fn kinds(&self) -> Vec<PacketType> {
        self.take().iter().map(|(_, d)| Packet::parse(d).unwrap().header.kind).collect()
    }
}

/// Each call of the stream side or the input side followed by the owner draining the table, so
/// a test reads as a transcript: what went in, what came out.
trait Drive {
    fn feed(&mut self, now: Instant, from: SocketAddr, d: &[u8], wire: &Wire);
    fn flush_dirty(&mut self, now: Instant, wire: &Wire);
    fn handle_timeouts(&mut self, now: Instant, wire: &Wire);
    fn dial(&mut self, now: Instant, peer: SocketAddr, wire: &Wire) -> io::Result<Key>;
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Key>;
    fn poll_connected(&mut self, key: Key, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_read(
        &mut self,
        t: Instant,
        k: Key,
        cx: &mut Context<'_>,
        b: &mut [u8],
        w: &Wire,
    ) -> Poll<io::Result<usize>>;
    fn poll_write(&mut self, t: Instant, k: Key, cx: &mut Context<'_>, d: &[u8], w: &Wire) -> Poll<io::Result<usize>>;
    fn poll_shutdown(&mut self, t: Instant, k: Key, cx: &mut Context<'_>, w: &Wire) -> Poll<io::Result<()>>;
    fn drop_stream(&mut self, t: Instant, k: Key, w: &Wire);
}

fn poll<T>(v: Option<T>) -> Poll<T> {
    v.map_or(Poll::Pending, Poll::Ready)
}

impl Drive for Mux {
    fn feed(&mut self, now: Instant, from: SocketAddr, d: &[u8], wire: &Wire) {
        self.handle_datagram(now, from, d);
        wire.drain(self, now);
    }
    fn flush_dirty(&mut self, now: Instant, wire: &Wire) {
        wire.drain(self, now);
    }
    fn handle_timeouts(&mut self, now: Instant, wire: &Wire) {
        self.handle_timeout(now);
        wire.drain(self, now);
    }
    fn dial(&mut self, now: Instant, peer: SocketAddr, wire: &Wire) -> io::Result<Key> {
        let key = self.connect(now, peer);
        wire.drain(self, now);
        key
    }
    fn poll_accept(&mut self, _cx: &mut Context<'_>) -> Poll<Key> {
        poll(self.accept())
    }
    fn poll_connected(&mut self, key: Key, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll(self.connected(key))
    }
    fn poll_read(
        &mut self,
        t: Instant,
        k: Key,
        _cx: &mut Context<'_>,
        b: &mut [u8],
        w: &Wire,
    ) -> Poll<io::Result<usize>> {
        let r = self.read(k, b);
        w.drain(self, t);
        poll(r)
    }
    fn poll_write(&mut self, t: Instant, k: Key, _cx: &mut Context<'_>, d: &[u8], w: &Wire) -> Poll<io::Result<usize>> {
        let r = self.write(k, d);
        w.drain(self, t);
        poll(r)
    }
    fn poll_shutdown(&mut self, t: Instant, k: Key, _cx: &mut Context<'_>, w: &Wire) -> Poll<io::Result<()>> {
        let r = self.shutdown(k);
        w.drain(self, t);
        poll(r)
    }
    fn drop_stream(&mut self, t: Instant, k: Key, w: &Wire) {
        self.release(t, k);
        w.drain(self, t);
    }
}

fn peer(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], 6881))
}

fn packet(kind: PacketType, conn_id: u16, seq: u16) -> Vec<u8> {
    let h = Header { kind, conn_id, ts_us: 1, ts_diff_us: 0, wnd: 1 << 20, seq, ack: 0 };
    let mut out = Vec::new();
    encode(&h, None, &[], &mut out);
    out
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

fn start() -> Instant {
    crate::clock::now()
}

#[test]
fn a_syn_makes_one_connection_and_a_repeated_syn_does_not_make_another() {
    let (t, wire) = (start(), Wire::default());
    let mut mux = Mux::new(MuxConfig::default(), 1);
    mux.feed(t, peer(1), &packet(PacketType::Syn, 100, 7), &wire);
    assert_eq!(mux.stats().accepted, 1);
    assert_eq!(wire.kinds(), vec![PacketType::State], "the SYN is answered at once");
    mux.feed(t, peer(1), &packet(PacketType::Syn, 100, 7), &wire);
    mux.flush_dirty(t, &wire);
    assert_eq!(mux.stats().accepted, 1);
    assert_eq!(mux.stats().open, 1);
    // The same id from another address is another connection.
    mux.feed(t, peer(2), &packet(PacketType::Syn, 100, 7), &wire);
    assert_eq!(mux.stats().open, 2);
    let Poll::Ready(key) = mux.poll_accept(&mut cx()) else { panic!("a connection waits") };
    assert_eq!(key, (peer(1), 101), "we receive on the SYN's id + 1");
}

#[test]
fn the_backlog_and_the_connection_cap_refuse_with_a_reset() {
    let (t, wire) = (start(), Wire::default());
    let config = MuxConfig { accept_backlog: 2, max_connections: 3, reserved_for_dials: 0, ..MuxConfig::default() };
    let mut mux = Mux::new(config, 1);
    for id in 0..4u16 {
        mux.feed(t, peer(1), &packet(PacketType::Syn, id * 10, 1), &wire);
    }
    assert_eq!(wire.kinds(), vec![PacketType::State, PacketType::State, PacketType::Reset, PacketType::Reset]);
    assert_eq!(mux.stats().refused, 2);
    // Taking one from the backlog makes room there, but not under the cap.
    assert!(mux.poll_accept(&mut cx()).is_ready());
    mux.feed(t, peer(1), &packet(PacketType::Syn, 500, 1), &wire);
    assert_eq!(wire.kinds(), vec![PacketType::State]);
    mux.feed(t, peer(1), &packet(PacketType::Syn, 600, 1), &wire);
    assert_eq!(wire.kinds(), vec![PacketType::Reset]);
}

#[test]
fn not_accepting_refuses_every_syn() {
    let (t, wire) = (start(), Wire::default());
    let mut mux = Mux::new(MuxConfig { accept_incoming: false, ..MuxConfig::default() }, 1);
    mux.feed(t, peer(1), &packet(PacketType::Syn, 9, 1), &wire);
    let sent = wire.take();
    assert_eq!(sent.len(), 1);
    let reset = Packet::parse(&sent[0].1).unwrap();
    assert_eq!((reset.header.kind, reset.header.conn_id), (PacketType::Reset, 9));
    assert_eq!(mux.stats().open, 0);
}

#[test]
fn unknown_ids_get_a_rate_limited_reset_and_resets_get_nothing() {
    let (t, wire) = (start(), Wire::default());
    let mut mux = Mux::new(MuxConfig { resets_per_sec: 3, ..MuxConfig::default() }, 1);
    for kind in [PacketType::Data, PacketType::State, PacketType::Fin] {
        mux.feed(t, peer(1), &packet(kind, 1234, 55), &wire);
    }
    let sent = wire.take();
    assert_eq!(sent.len(), 3);
    for (to, d) in sent {
        let p = Packet::parse(&d).unwrap();
        assert_eq!((to, p.header.kind, p.header.conn_id, p.header.ack), (peer(1), PacketType::Reset, 1234, 55));
    }
    // The budget of this second is spent.
    mux.feed(t, peer(1), &packet(PacketType::Data, 1, 1), &wire);
    assert!(wire.take().is_empty());
    assert_eq!(mux.stats().resets_suppressed, 1);
    // A RESET for nobody is never answered, whatever the budget.
    let later = t + Duration::from_secs(2);
    mux.feed(later, peer(1), &packet(PacketType::Reset, 1, 1), &wire);
    assert!(wire.take().is_empty());
    // And the budget comes back.
    mux.feed(later, peer(1), &packet(PacketType::Data, 1, 1), &wire);
    assert_eq!(wire.kinds(), vec![PacketType::Reset]);
    assert_eq!(mux.stats().unknown, 6);
}

#[test]
fn garbage_is_counted_and_dropped() {
    let (t, wire) = (start(), Wire::default());
    let mut mux = Mux::new(MuxConfig::default(), 1);
    let mut bad_ext = packet(PacketType::Data, 1, 1);
    bad_ext[1] = 1; // claims a SACK that is not there
    for d in [&b""[..], b"\x01", b"\x41\x00\x00", &[0x51; 30], &[0x02; 20], &bad_ext] {
        mux.feed(t, peer(1), d, &wire);
    }
    assert_eq!(mux.stats().unparseable, 6);
    assert!(wire.take().is_empty());
}

#[test]
fn a_reset_through_our_send_id_reaches_the_connection() {
    let (t, wire) = (start(), Wire::default());
    let mut mux = Mux::new(MuxConfig::default(), 1);
    // Incoming: we receive on 101 and send on 100; libutp may reset us with 100.
    mux.feed(t, peer(1), &packet(PacketType::Syn, 100, 7), &wire);
    let Poll::Ready(key) = mux.poll_accept(&mut cx()) else { panic!() };
    mux.feed(t, peer(1), &packet(PacketType::Reset, 100, 1), &wire);
    let mut buf = [0u8; 16];
    match mux.poll_read(t, key, &mut cx(), &mut buf, &wire) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected a reset, got {other:?}"),
    }
}

#[test]
fn a_full_socket_keeps_answers_in_the_table_and_caps_the_resets() {
    let (t, wire) = (start(), Wire::default());
    // Room for three 20-byte RESETs.
    let mut mux = Mux::new(MuxConfig { queue_bytes: 60, ..MuxConfig::default() }, 1);
    wire.blocked.set(true);
    mux.feed(t, peer(1), &packet(PacketType::Syn, 100, 7), &wire);
    for id in 0..5u16 {
        mux.feed(t, peer(2), &packet(PacketType::Data, id, 7), &wire);
    }
    assert!(mux.has_transmit(), "the owner is told there is something to send");
    assert_eq!(mux.stats().queue_drops, 2, "RESETs beyond the cap are dropped and counted");
    wire.blocked.set(false);
    mux.flush_dirty(t, &wire);
    let sent = wire.take();
    let to: Vec<SocketAddr> = sent.iter().map(|(to, _)| *to).collect();
    assert_eq!(to, vec![peer(2), peer(2), peer(2), peer(1)], "RESETs first, then the SYN's answer");
    assert!(!mux.has_transmit());
}

#[test]
fn a_waiting_reader_is_named_once_when_data_arrives() {
    let t = start();
    let (wa, wb) = (Wire::default(), Wire::default());
    let (mut a, mut b) = (Mux::new(MuxConfig::default(), 1), Mux::new(MuxConfig::default(), 2));
    let ka = a.dial(t, peer(2), &wa).unwrap();
    assert!(a.poll_connected(ka, &mut cx()).is_pending());
    pump(t, &mut a, &wa, &mut b, &wb);
    assert_eq!(a.poll_wake(), Some(Wake::Write(ka)), "the handshake ended");
    assert_eq!(b.poll_wake(), None, "nobody waited for the connection");
    let kb = b.accept().expect("accepted");
    let mut buf = [0u8; 16];
    assert!(b.poll_read(t, kb, &mut cx(), &mut buf, &wb).is_pending());
    assert!(matches!(a.poll_write(t, ka, &mut cx(), b"hi", &wa), Poll::Ready(Ok(2))));
    pump(t, &mut a, &wa, &mut b, &wb);
    assert_eq!(b.poll_wake(), Some(Wake::Read(kb)));
    assert_eq!(b.poll_wake(), None, "one wake per wait");
    assert!(matches!(b.poll_read(t, kb, &mut cx(), &mut buf, &wb), Poll::Ready(Ok(2))));
}

#[test]
fn a_dropped_connect_resets_and_leaves_the_table() {
    let (t, wire) = (start(), Wire::default());
    let mut mux = Mux::new(MuxConfig::default(), 1);
    let key = mux.dial(t, peer(3), &wire).unwrap();
    assert_eq!(wire.kinds(), vec![PacketType::Syn]);
    assert!(mux.poll_connected(key, &mut cx()).is_pending());
    mux.drop_stream(t, key, &wire);
    assert_eq!(wire.kinds(), vec![PacketType::Reset]);
    assert_eq!(mux.stats().open, 0);
}

#[test]
fn a_refused_connect_fails() {
    let (t, wire) = (start(), Wire::default());
    let mut mux = Mux::new(MuxConfig::default(), 1);
    let key = mux.dial(t, peer(3), &wire).unwrap();
    let syn = Packet::parse(&wire.take()[0].1).unwrap().header;
    // The answer to a SYN we do not want: a RESET on the SYN's id.
    mux.feed(t, peer(3), &packet(PacketType::Reset, syn.conn_id, 0), &wire);
    let mut fut = pin!(std::future::poll_fn(|cx| mux.poll_connected(key, cx)));
    match fut.as_mut().poll(&mut cx()) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn loopback_is_told_apart() {
    assert!(is_loopback("127.3.4.5".parse().unwrap()));
    assert!(is_loopback("::1".parse().unwrap()));
    assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!is_loopback("10.0.0.1".parse().unwrap()));
    assert!(!is_loopback("2001:db8::1".parse().unwrap()));
}

proptest::proptest! {
    /// Any sequence of datagrams, well-formed headers with random fields or plain noise,
    /// from a few addresses: nothing panics, caps hold, timers can run.
    #[test]
    fn random_datagrams_never_panic(
        datagrams in proptest::collection::vec(
            (0u8..3, 0u8..6, proptest::prelude::any::<u16>(), proptest::prelude::any::<u16>(),
             proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)),
            1..200,
        )
    ) {
        let (t, wire) = (start(), Wire::default());
        let config = MuxConfig { max_connections: 8, reserved_for_dials: 2, accept_backlog: 4, ..MuxConfig::default() };
        let mut mux = Mux::new(config, 7);
        for (i, (from, kind, id, seq, tail)) in datagrams.into_iter().enumerate() {
            let now = t + Duration::from_millis(i as u64 * 37);
            let mut d = if kind < 5 {
                let kind = [PacketType::Data, PacketType::Fin, PacketType::State, PacketType::Reset, PacketType::Syn][kind as usize];
                packet(kind, id % 4, seq)
            } else {
                Vec::new()
            };
            d.extend_from_slice(&tail);
            mux.feed(now, peer(from), &d, &wire);
            mux.flush_dirty(now, &wire);
            if i % 16 == 0 {
                mux.handle_timeouts(now, &wire);
                let _ = mux.poll_accept(&mut cx());
            }
            proptest::prop_assert!(mux.stats().open <= 8);
            wire.take();
        }
    }
}

/// Delivers what each side sent to the other until both are quiet (bounded).
fn pump(t: Instant, a: &mut Mux, wa: &Wire, b: &mut Mux, wb: &Wire) {
    for _ in 0..100 {
        let (to_b, to_a) = (wa.take(), wb.take());
        if to_b.is_empty() && to_a.is_empty() {
            return;
        }
        for (_, d) in to_b {
            b.feed(t, peer(1), &d, wb);
        }
        b.flush_dirty(t, wb);
        for (_, d) in to_a {
            a.feed(t, peer(2), &d, wa);
        }
        a.flush_dirty(t, wa);
    }
    panic!("the two sides never went quiet");
}

#[test]
fn a_shutdown_whose_fin_was_acked_stays_done_when_the_peer_resets_later() {
    let t = start();
    let (wa, wb) = (Wire::default(), Wire::default());
    let (mut a, mut b) = (Mux::new(MuxConfig::default(), 1), Mux::new(MuxConfig::default(), 2));
    let ka = a.dial(t, peer(2), &wa).unwrap();
    pump(t, &mut a, &wa, &mut b, &wb);
    let Poll::Ready(kb) = b.poll_accept(&mut cx()) else { panic!("no connection accepted") };
    assert!(matches!(a.poll_connected(ka, &mut cx()), Poll::Ready(Ok(()))));
    assert!(matches!(a.poll_write(t, ka, &mut cx(), b"hello", &wa), Poll::Ready(Ok(5))));
    assert!(a.poll_shutdown(t, ka, &mut cx(), &wa).is_pending());
    pump(t, &mut a, &wa, &mut b, &wb);
    let mut buf = [0u8; 16];
    assert!(matches!(b.poll_read(t, kb, &mut cx(), &mut buf, &wb), Poll::Ready(Ok(5))));
    assert!(
        matches!(b.poll_shutdown(t, kb, &mut cx(), &wb), Poll::Ready(Ok(()))) || {
            pump(t, &mut a, &wa, &mut b, &wb);
            matches!(b.poll_shutdown(t, kb, &mut cx(), &wb), Poll::Ready(Ok(())))
        }
    );
    pump(t, &mut a, &wa, &mut b, &wb);
    // Both FINs are acked. The peer forgets the connection and answers a late packet of ours
    // (a window update, a keepalive) with a RESET before our writer looks at its shutdown again.
    a.feed(t, peer(2), &packet(PacketType::Reset, ka.1, 0), &wa);
    a.flush_dirty(t, &wa);
    assert!(
        matches!(a.poll_shutdown(t, ka, &mut cx(), &wa), Poll::Ready(Ok(()))),
        "our FIN was acked: the close succeeded whatever came after"
    );
    assert!(matches!(a.poll_read(t, ka, &mut cx(), &mut buf, &wa), Poll::Ready(Ok(0))), "and reading ends cleanly");
}

fn spoofed(i: u32) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881))
}

/// Runs the mux's timers every 100 ms from `*clock` to `until`.
fn run_timers(mux: &mut Mux, clock: &mut Instant, until: Instant, wire: &Wire) {
    while *clock < until {
        *clock = (*clock + Duration::from_millis(100)).min(until);
        mux.handle_timeouts(*clock, wire);
        wire.take();
    }
}

#[test]
fn a_syn_flood_from_spoofed_addresses_expires_fast_and_never_takes_the_dial_slots() {
    let (t, wire) = (start(), Wire::default());
    // Nobody accepts: the SYNs of spoofed addresses are never followed by anything.
    let config =
        MuxConfig { max_connections: 100, reserved_for_dials: 20, accept_backlog: 1000, ..MuxConfig::default() };
    let mut mux = Mux::new(config, 1);
    let mut clock = t;
    // 10 SYNs a second for 20 s from 200 addresses: they die before the next ones need room,
    // so the incoming share (80) never fills and nothing is refused.
    for i in 0..200u32 {
        let at = t + Duration::from_millis(u64::from(i) * 100);
        run_timers(&mut mux, &mut clock, at, &wire);
        mux.feed(at, spoofed(i), &packet(PacketType::Syn, i as u16, 1), &wire);
        assert!(mux.stats().open_incoming <= 60, "half-open connections pile up: {:?}", mux.stats());
    }
    assert_eq!(mux.stats().refused, 0);
    let end = clock + Duration::from_secs(6);
    run_timers(&mut mux, &mut clock, end, &wire);
    assert_eq!(mux.stats().open, 0, "every half-open connection expired within seconds");

    // 500 SYNs a second: the incoming share fills, and our dials still get the rest.
    for i in 0..1000u32 {
        let at = clock + Duration::from_millis(2);
        clock = at;
        mux.feed(at, spoofed(1000 + i), &packet(PacketType::Syn, i as u16, 1), &wire);
        wire.take();
    }
    assert_eq!(mux.stats().open_incoming, 80);
    for n in 0..20u32 {
        assert!(mux.dial(clock, spoofed(5000 + n), &wire).is_ok(), "dial {n} found no slot");
    }
    assert!(mux.dial(clock, spoofed(6000), &wire).is_err(), "the table is full");
    assert_eq!(mux.stats().open, 100);
}

#[test]
fn one_host_gets_a_few_half_open_and_a_bounded_number_of_connections() {
    let (t, wire) = (start(), Wire::default());
    let config = MuxConfig { max_per_ip: 12, max_half_open_per_ip: 4, accept_backlog: 1000, ..MuxConfig::default() };
    let mut mux = Mux::new(config, 1);
    let host = |port: u16| SocketAddr::from(([192, 0, 2, 7], port));
    let mut answers = Vec::new();
    for id in 0..10u16 {
        mux.feed(t, host(1000 + id), &packet(PacketType::Syn, id * 2, 1), &wire);
        answers.extend(wire.take());
    }
    // Other ports of the same address are the same host.
    assert_eq!(mux.stats().open, 4, "{:?}", mux.stats());
    assert_eq!(mux.stats().refused, 6);
    // Another host is not held back by this one.
    mux.feed(t, peer(9), &packet(PacketType::Syn, 1, 1), &wire);
    assert_eq!(mux.stats().open, 5);
    // Completed handshakes are no longer half-open; the total per host still binds.
    let complete = |mux: &mut Mux, answers: &mut Vec<(SocketAddr, Vec<u8>)>| {
        for (to, d) in answers.drain(..) {
            let h = Packet::parse(&d).unwrap().header;
            if h.kind != PacketType::State {
                continue;
            }
            let ack = Header {
                kind: PacketType::State,
                conn_id: h.conn_id.wrapping_add(1),
                ts_us: 1,
                ts_diff_us: 0,
                wnd: 1 << 20,
                seq: 2,
                ack: h.seq.wrapping_sub(1),
            };
            let mut out = Vec::new();
            encode(&ack, None, &[], &mut out);
            mux.feed(t, to, &out, &wire);
        }
        mux.flush_dirty(t, &wire);
    };
    complete(&mut mux, &mut answers);
    for round in 0..4u16 {
        for id in 0..4u16 {
            let id = 100 + round * 10 + id;
            mux.feed(t, host(2000 + id), &packet(PacketType::Syn, id * 2, 1), &wire);
            answers.extend(wire.take());
        }
        complete(&mut mux, &mut answers);
    }
    assert_eq!(mux.stats().open, 12 + 1, "{:?}", mux.stats());
    // An IPv6 host is one /64, however many addresses it uses.
    for i in 0..10u16 {
        let addr = SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, i, i, i, i)), 6881);
        mux.feed(t, addr, &packet(PacketType::Syn, 7, 1), &wire);
    }
    assert_eq!(mux.stats().open, 12 + 1 + 4);
}

#[test]
fn an_accepted_connection_holds_no_receive_buffer_until_data_arrives() {
    let (t, wire) = (start(), Wire::default());
    let mut mux = Mux::new(MuxConfig { accept_backlog: 1000, ..MuxConfig::default() }, 1);
    for i in 0..100u32 {
        mux.feed(t, spoofed(i), &packet(PacketType::Syn, 1, 1), &wire);
    }
    for i in 0..100u32 {
        let memory = mux.conn_stats((spoofed(i), 2)).unwrap().recv_memory;
        assert!(memory < 1024, "an idle connection holds {memory} bytes");
    }
}
