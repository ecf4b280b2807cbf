use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;

use crate::clock::now as t0;

fn a(n: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 190, 1], 6000 + n))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Dials everything ready now, in the order the list hands it out.
fn drain(list: &mut PeerList, now: Instant) -> Vec<SocketAddr> {
    std::iter::from_fn(|| list.next(now, |_| true)).take(10_000).collect()
}

#[test]
fn backoff_doubles_from_30_seconds_up_to_30_minutes() {
    assert_eq!(backoff(1), secs(30));
    assert_eq!(backoff(2), secs(60));
    assert_eq!(backoff(3), secs(120));
    assert_eq!(backoff(6), secs(960));
    assert_eq!(backoff(7), secs(30 * 60));
    assert_eq!(backoff(u32::MAX), secs(30 * 60));
}

#[test]
fn port_zero_unspecified_and_our_own_address_are_ignored() {
    let now = t0();
    let mut list = PeerList::new(vec![a(1)]);
    assert!(!list.add(PeerSource::Dht, a(1), now));
    assert!(!list.add(PeerSource::Pex, SocketAddr::from(([127, 0, 190, 2], 0)), now));
    assert!(!list.add(PeerSource::Pex, SocketAddr::from(([0, 0, 0, 0], 6881)), now));
    assert!(list.is_empty());
    assert_eq!(list.source_counts(), SourceCounts::default());
}

#[test]
fn an_address_from_two_sources_is_one_entry_counted_for_both() {
    let now = t0();
    let mut list = PeerList::new(Vec::new());
    assert!(list.add(PeerSource::Dht, a(1), now));
    assert!(!list.add(PeerSource::Pex, a(1), now));
    assert!(!list.add(PeerSource::Dht, a(1), now));
    list.add(PeerSource::Dht, a(2), now);
    let c = list.source_counts();
    assert_eq!((c.get(PeerSource::Dht), c.get(PeerSource::Pex), c.get(PeerSource::Lsd), c.known), (2, 1, 0, 2));
    let names: Vec<(&str, usize)> = c.iter().map(|(s, n)| (s.name(), n)).collect();
    assert_eq!(names, [("peer", 0), ("magnet", 0), ("lsd", 0), ("pex", 1), ("dht", 2), ("incoming", 0)]);
    // Dialled once, not twice.
    assert_eq!(drain(&mut list, now).len(), 2);
    list.check_invariants();
}

#[test]
fn good_before_new_before_failed_and_new_ones_by_source() {
    let now = t0();
    let mut list = PeerList::new(Vec::new());
    for (i, s) in [PeerSource::Dht, PeerSource::Pex, PeerSource::Lsd, PeerSource::Magnet, PeerSource::Manual]
        .into_iter()
        .enumerate()
    {
        list.add(s, a(i as u16), now);
    }
    list.add(PeerSource::Dht, a(10), now);
    list.add(PeerSource::Dht, a(11), now);
    // a(10) worked and left; a(11) failed once.
    assert_eq!(list.next(now, |x| x == a(10)), Some(a(10)));
    list.on_connected(a(10));
    list.on_disconnected(a(10), now);
    assert_eq!(list.next(now, |x| x == a(11)), Some(a(11)));
    list.on_failed(a(11), now);
    let later = now + secs(31);
    assert_eq!(drain(&mut list, later), [a(10), a(4), a(3), a(2), a(1), a(0), a(11)]);
}

#[test]
fn failed_ones_come_fewest_failures_first() {
    let now = t0();
    let mut list = PeerList::new(Vec::new());
    list.add(PeerSource::Dht, a(1), now);
    list.add(PeerSource::Dht, a(2), now);
    for _ in 0..2 {
        assert_eq!(list.next(now + secs(10_000), |x| x == a(1)), Some(a(1)));
        list.on_failed(a(1), now);
    }
    assert_eq!(list.next(now, |x| x == a(2)), Some(a(2)));
    list.on_failed(a(2), now);
    assert_eq!(drain(&mut list, now + secs(3600)), [a(2), a(1)]);
}

#[test]
fn an_address_in_backoff_is_not_dialled() {
    let now = t0();
    let mut list = PeerList::new(Vec::new());
    list.add(PeerSource::Manual, a(1), now);
    let mut t = now;
    for n in 1..=12 {
        assert_eq!(list.next(t, |_| true), Some(a(1)), "failure {n}");
        list.on_failed(a(1), t);
        let wait = backoff(n);
        assert_eq!(list.next(t + wait - secs(1), |_| true), None, "dialled during backoff {n}");
        t += wait;
    }
    // A `--peer` is never given up on, only waited for.
    assert!(list.contains(a(1)));
}

#[test]
fn an_address_failing_eight_times_is_given_up_and_not_taken_back_soon() {
    let now = t0();
    let mut list = PeerList::new(Vec::new());
    list.add(PeerSource::Dht, a(1), now);
    let mut t = now;
    for n in 1..=MAX_FAILURES {
        assert!(list.contains(a(1)), "still there before failure {n}");
        assert_eq!(list.next(t, |_| true), Some(a(1)));
        list.on_failed(a(1), t);
        t += backoff(n);
    }
    assert!(!list.contains(a(1)));
    assert_eq!(list.source_counts().get(PeerSource::Dht), 0);
    // The DHT offering it again an hour later does not restart its backoff...
    assert!(!list.add(PeerSource::Dht, a(1), t + secs(3600)));
    // ...but the user naming it does.
    assert!(list.add(PeerSource::Manual, a(1), t + secs(3600)));
    list.check_invariants();
}

#[test]
fn a_peer_that_left_is_redialled_after_the_pause_and_first() {
    let now = t0();
    let mut list = PeerList::new(Vec::new());
    list.add(PeerSource::Dht, a(1), now);
    assert_eq!(list.next(now, |_| true), Some(a(1)));
    list.on_connected(a(1));
    assert_eq!(list.next(now, |_| true), None, "not dialled while connected");
    list.add(PeerSource::Dht, a(2), now);
    list.on_disconnected(a(1), now + secs(100));
    assert_eq!(drain(&mut list, now + secs(100)), [a(2)]);
    list.on_failed(a(2), now + secs(100));
    assert_eq!(list.next(now + secs(129), |_| true), None);
    assert_eq!(drain(&mut list, now + secs(130)), [a(1), a(2)]);
}

#[test]
fn unusable_addresses_are_skipped_not_consumed() {
    let now = t0();
    let mut list = PeerList::new(Vec::new());
    list.add(PeerSource::Manual, a(1), now);
    list.add(PeerSource::Dht, a(2), now);
    assert_eq!(list.next(now, |x| x != a(1)), Some(a(2)));
    assert_eq!(list.next(now, |_| true), Some(a(1)));
    assert_eq!(list.dialling(), 2);
}

#[test]
fn incoming_tcp_addresses_are_counted_but_not_dialled() {
    let now = t0();
    let mut list = PeerList::new(Vec::new());
    list.add_incoming(a(1), now, false);
    list.add_incoming(a(2), now, true);
    assert_eq!(list.source_counts().get(PeerSource::Incoming), 2);
    assert_eq!(list.next(now, |_| true), None, "connected now");
    list.on_disconnected(a(1), now);
    list.on_disconnected(a(2), now);
    // The uTP one came from the peer's listen socket; the TCP one from an ephemeral port.
    assert_eq!(drain(&mut list, now + REDIAL_AFTER), [a(2)]);
    // Once a real source names the TCP one, it is worth a dial.
    list.add(PeerSource::Pex, a(1), now);
    assert_eq!(drain(&mut list, now + REDIAL_AFTER), [a(1)]);
    list.check_invariants();
}

#[test]
fn a_peer_of_another_swarm_is_dropped_unless_manual() {
    let now = t0();
    let mut list = PeerList::new(Vec::new());
    list.add(PeerSource::Dht, a(1), now);
    list.add(PeerSource::Manual, a(2), now);
    assert_eq!(drain(&mut list, now).len(), 2);
    list.on_unwanted(a(1), now);
    list.on_unwanted(a(2), now);
    assert!(!list.contains(a(1)));
    assert!(list.contains(a(2)));
    assert_eq!(list.next(now + backoff(1), |_| true), Some(a(2)));
    assert!(!list.add(PeerSource::Dht, a(1), now + secs(60)));
}

#[test]
fn the_list_stays_bounded_and_keeps_good_and_manual_addresses() {
    let now = t0();
    let mut list = PeerList::new(Vec::new());
    list.add(PeerSource::Manual, a(0), now);
    list.add(PeerSource::Dht, a(1), now);
    assert_eq!(list.next(now, |x| x == a(1)), Some(a(1)));
    list.on_connected(a(1));
    list.on_disconnected(a(1), now);
    for i in 0..5000u32 {
        let addr = SocketAddr::from(([127, 0, 191, (i % 250) as u8 + 1], 7000 + (i / 250) as u16));
        list.add(PeerSource::Dht, addr, now + Duration::from_millis(u64::from(i)));
    }
    assert_eq!(list.len(), MAX_ADDRESSES);
    assert!(list.contains(a(0)) && list.contains(a(1)));
    // The freshest strangers were kept.
    assert!(list.contains(SocketAddr::from(([127, 0, 191, 250], 7019))));
    assert!(!list.contains(SocketAddr::from(([127, 0, 191, 1], 7000))));
    assert_eq!(list.source_counts().get(PeerSource::Dht), MAX_ADDRESSES - 1);
    list.check_invariants();
}

#[test]
fn eviction_takes_the_most_failed_first() {
    let now = t0();
    let mut list = PeerList::with_capacity(Vec::new(), 3);
    for i in 1..=3 {
        list.add(PeerSource::Dht, a(i), now);
    }
    for (addr, fails) in [(a(1), 1), (a(2), 3)] {
        for _ in 0..fails {
            assert_eq!(list.next(now + secs(100_000), |x| x == addr), Some(addr));
            list.on_failed(addr, now);
        }
    }
    assert!(list.add(PeerSource::Dht, a(4), now));
    assert!(!list.contains(a(2)), "three failures went first");
    assert!(list.add(PeerSource::Dht, a(5), now));
    assert!(!list.contains(a(1)));
    // a(2) was evicted in backoff: offering it again before that ends changes nothing.
    assert!(!list.add(PeerSource::Dht, a(2), now + secs(10)));
    list.check_invariants();
}

#[test]
fn a_full_list_of_live_and_good_peers_refuses_strangers() {
    let now = t0();
    let mut list = PeerList::with_capacity(Vec::new(), 2);
    list.add(PeerSource::Manual, a(1), now);
    list.add_incoming(a(2), now, true);
    assert!(!list.add(PeerSource::Dht, a(3), now));
    assert_eq!(list.len(), 2);
}

#[test]
fn past_incoming_tcp_connections_make_room_for_strangers() {
    let now = t0();
    let mut list = PeerList::with_capacity(Vec::new(), 2);
    list.add(PeerSource::Dht, a(1), now);
    list.add_incoming(a(2), now, false);
    list.on_disconnected(a(2), now);
    assert!(list.add(PeerSource::Dht, a(3), now + secs(1)));
    assert!(list.contains(a(1)) && list.contains(a(3)) && !list.contains(a(2)));
    assert_eq!(list.source_counts().get(PeerSource::Incoming), 0);
}

/// One step of a random workload.
#[derive(Debug, Clone)]
enum Op {
    Add(usize, u16),
    Incoming(u16, bool),
    Next(bool),
    Fail(usize),
    Unwanted(usize),
    Connect(usize),
    Disconnect(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6usize, 0..24u16).prop_map(|(s, n)| Op::Add(s, n)),
        1 => (0..24u16, any::<bool>()).prop_map(|(n, d)| Op::Incoming(n, d)),
        4 => any::<bool>().prop_map(Op::Next),
        3 => any::<usize>().prop_map(Op::Fail),
        1 => any::<usize>().prop_map(Op::Unwanted),
        2 => any::<usize>().prop_map(Op::Connect),
        2 => any::<usize>().prop_map(Op::Disconnect),
        3 => (0..2000u64).prop_map(Op::Advance),
    ]
}

fn pick(set: &HashSet<SocketAddr>, i: usize) -> Option<SocketAddr> {
    let mut v: Vec<_> = set.iter().copied().collect();
    v.sort();
    (!v.is_empty()).then(|| v[i % v.len()])
}

proptest! {
    /// Whatever the sources say and the dials do, the list never exceeds its bound, its counts
    /// match its entries, and it never hands out an address before the backoff that address
    /// earned (a model tracks each address's failures and earliest next dial).
    #[test]
    fn never_dials_in_backoff_never_exceeds_the_bound(ops in proptest::collection::vec(op(), 1..300)) {
        let start = t0();
        let mut now = start;
        let mut list = PeerList::with_capacity(vec![a(23)], 8);
        let mut dialling = HashSet::new();
        let mut connected = HashSet::new();
        let mut failures: HashMap<SocketAddr, u32> = HashMap::new();
        let mut allowed_at: HashMap<SocketAddr, Instant> = HashMap::new();
        for op in ops {
            match op {
                Op::Add(s, n) => {
                    // The user naming an address it had given up on starts it afresh.
                    if PeerSource::ALL[s] == PeerSource::Manual && !list.contains(a(n)) {
                        allowed_at.remove(&a(n));
                    }
                    list.add(PeerSource::ALL[s], a(n), now);
                }
                Op::Incoming(n, dialable) => {
                    if !dialling.contains(&a(n)) && !connected.contains(&a(n)) {
                        list.add_incoming(a(n), now, dialable);
                        if list.contains(a(n)) {
                            connected.insert(a(n));
                        }
                    }
                }
                Op::Next(veto) => {
                    if let Some(got) = list.next(now, |x| !veto || x.port() % 3 != 0) {
                        prop_assert!(!veto || got.port() % 3 != 0, "a vetoed address was handed out");
                        prop_assert!(!dialling.contains(&got) && !connected.contains(&got), "{got} is busy");
                        prop_assert_ne!(got, a(23));
                        if let Some(t) = allowed_at.get(&got) {
                            prop_assert!(now >= *t, "{got} dialled {:?} early", *t - now);
                        }
                        dialling.insert(got);
                    }
                }
                Op::Fail(i) | Op::Unwanted(i) => {
                    if let Some(x) = pick(&dialling, i) {
                        dialling.remove(&x);
                        let f = failures.entry(x).or_insert(0);
                        *f += 1;
                        allowed_at.insert(x, now + backoff(*f));
                        if matches!(op, Op::Fail(_)) {
                            list.on_failed(x, now);
                        } else {
                            list.on_unwanted(x, now);
                        }
                    }
                }
                Op::Connect(i) => {
                    if let Some(x) = pick(&dialling, i) {
                        dialling.remove(&x);
                        connected.insert(x);
                        failures.remove(&x);
                        list.on_connected(x);
                    }
                }
                Op::Disconnect(i) => {
                    if let Some(x) = pick(&connected, i) {
                        connected.remove(&x);
                        failures.remove(&x);
                        allowed_at.insert(x, now + REDIAL_AFTER);
                        list.on_disconnected(x, now);
                    }
                }
                Op::Advance(s) => now += Duration::from_secs(s),
            }
            list.check_invariants();
            prop_assert_eq!(list.dialling(), dialling.len());
            // Gone from the list: it comes back (if at all) with a clean record, but its
            // earned wait still holds through the refusal memory.
            failures.retain(|x, _| list.contains(*x));
        }
    }
}
