#!/usr/bin/env python3
"""A small private DHT of libtorrent nodes for kadswarm's crawl tests, in one process.

Starts --count libtorrent sessions, session i bound to 127.0.(--first + i).1 (each its own /24,
so no per-network limit of a crawler lumps them together), links each to a few others with
add_dht_node, and has random sessions announce --torrents random info-hashes (1 to 3
announcers each) every --interval seconds. libtorrent answers BEP 51 sample_infohashes and
BEP 33 scrapes; its sample is refreshed every --sample-interval seconds instead of the default
six hours, so that torrents announced after the start show up in samples within the test.

Reports JSON objects, one per line on stdout:

  {"event":"ready","nodes":["IP:P",...]}                     every session listens
  {"event":"torrents","torrents":[{"info_hash":HEX,"announcers":["IP:P",...]},...]}
  {"event":"dht_nodes","counts":[N,...]}                     routing table sizes
  {"event":"error","message":TEXT}

Never contacts a public router; runs until --duration seconds have passed or it is killed.
"""

import argparse
import random
import sys
import time

import libtorrent as lt

from lt_common import count_nodes, emit, settings


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--first", type=int, required=True,
                   help="third octet of the first session's address 127.0.N.1")
    p.add_argument("--count", type=int, default=30, help="number of sessions")
    p.add_argument("--torrents", type=int, default=20, help="info-hashes to announce")
    p.add_argument("--seed", type=int, default=1, help="seed of the random choices")
    p.add_argument("--interval", type=float, default=3.0,
                   help="seconds between announces and stats lines")
    p.add_argument("--sample-interval", type=int, default=5,
                   help="dht_sample_infohashes_interval of every session (seconds)")
    p.add_argument("--duration", type=float, default=120.0, help="exit after this many seconds")
    args = p.parse_args()
    if not 1 <= args.count or args.first + args.count > 255:
        p.error("sessions must fit in 127.0.1.1 .. 127.0.254.1")
    return args


def make_session(ip, sample_interval):
    config = settings(ip, 0, dht=True)
    config.update({
        "max_retry_port_bind": 0,
        "dht_sample_infohashes_interval": sample_interval,
        "alert_mask": int(lt.alert_category.dht | lt.alert_category.status
                          | lt.alert_category.error),
    })
    return lt.session(config)


def main():
    args = parse_args()
    rng = random.Random(args.seed)
    ips = ["127.0.%d.1" % (args.first + i) for i in range(args.count)]
    sessions = [make_session(ip, args.sample_interval) for ip in ips]
    ports = [None] * args.count
    counts = [0] * args.count

    def drain():
        for i, ses in enumerate(sessions):
            for a in ses.pop_alerts():
                if isinstance(a, lt.listen_succeeded_alert):
                    if a.socket_type == lt.socket_type_t.udp and ports[i] is None:
                        ports[i] = a.port
                elif isinstance(a, lt.listen_failed_alert):
                    emit({"event": "error", "message": a.message()})
                elif isinstance(a, lt.dht_stats_alert):
                    counts[i] = count_nodes(a)

    deadline = time.monotonic() + args.duration
    while None in ports:
        if time.monotonic() > deadline:
            emit({"event": "error", "message": "sessions did not all start listening"})
            return 1
        time.sleep(0.05)
        drain()
    addrs = ["%s:%d" % (ip, port) for ip, port in zip(ips, ports)]

    # Neighbours on a ring plus two random contacts: connected, but not everyone knows everyone.
    contacts = []
    for i in range(args.count):
        mine = {(i + 1) % args.count, (i - 1) % args.count}
        while len(mine) < min(4, args.count - 1):
            j = rng.randrange(args.count)
            if j != i:
                mine.add(j)
        contacts.append(sorted(mine))

    torrents = []
    for _ in range(args.torrents):
        ih = bytes(rng.randrange(256) for _ in range(20))
        announcers = rng.sample(range(args.count), min(args.count, rng.randint(1, 3)))
        torrents.append((ih, announcers))
    emit({"event": "ready", "nodes": addrs})
    emit({"event": "torrents", "torrents": [
        {"info_hash": ih.hex(), "announcers": [addrs[i] for i in who]} for ih, who in torrents]})

    next_tick = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        drain()
        if time.monotonic() < next_tick:
            continue
        next_tick = time.monotonic() + args.interval
        for i, ses in enumerate(sessions):
            # Again each time: a contact that timed out early gets another chance.
            for j in contacts[i]:
                ses.add_dht_node((ips[j], ports[j]))
            ses.post_dht_stats()
        for ih, who in torrents:
            for i in who:
                sessions[i].dht_announce(lt.sha1_hash(ih), ports[i], 0)
        emit({"event": "dht_nodes", "counts": list(counts)})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
