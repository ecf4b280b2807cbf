#!/usr/bin/env python3
"""A libtorrent DHT node for kadswarm's interoperability tests.

Runs one libtorrent session bound to an explicit loopback address and reports
what it sees as JSON objects, one per line on stdout (flushed line by line):

  {"event":"ready","dht_port":P,"bind":"IP:P"}       the session listens
  {"event":"torrent","info_hash":HEX,"magnet":URI}   --seed-file was added
  {"event":"dht_nodes","count":N}                    routing table size
  {"event":"peers","info_hash":HEX,"peers":[...]}    a get_peers reply
  {"event":"announced","info_hash":HEX,"port":P}     an announce was sent
  {"event":"error","message":TEXT}                   something went wrong

The node never contacts a public router: dht_bootstrap_nodes is emptied and
only the --dht-node contacts are added (with add_dht_node, so that they enter
the routing table instead of being treated as routers). It runs until
--duration seconds have passed or it is killed.

Example:
  python3 lt_node.py --bind 127.0.3.1:0 --dht-node 127.0.2.1:6881 \\
      --get-peers 0123456789abcdef0123456789abcdef01234567
"""

import argparse
import os
import sys
import time

import libtorrent as lt

from lt_common import count_nodes, emit, host_port, settings


def info_hash(text):
    """Parse a 40-hex info-hash into a libtorrent sha1_hash."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 20:
        raise argparse.ArgumentTypeError("expected 40 hex digits, got %r" % text)
    return lt.sha1_hash(raw)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bind", type=host_port, required=True,
                   help="IP:PORT to listen on (TCP and UDP/DHT); port 0 picks one")
    p.add_argument("--dht-node", type=host_port, action="append", default=[],
                   help="a DHT contact to add to the routing table (repeatable)")
    p.add_argument("--seed-file", help="make a torrent of this file and seed it")
    p.add_argument("--get-peers", type=info_hash, action="append", default=[],
                   help="info-hash (hex) to look up periodically (repeatable)")
    p.add_argument("--announce", type=info_hash, action="append", default=[],
                   help="info-hash (hex) to announce periodically (repeatable)")
    p.add_argument("--announce-port", type=int, default=0,
                   help="port to announce (default: our listen port)")
    p.add_argument("--interval", type=float, default=3.0,
                   help="seconds between repeated lookups/announces/stats")
    p.add_argument("--duration", type=float, default=120.0,
                   help="exit after this many seconds")
    return p.parse_args()


def make_session(bind):
    host, port = bind
    config = settings(host, port, dht=True)
    config.update({
        "max_retry_port_bind": 0,
        "announce_to_all_trackers": False,
        "alert_mask": int(lt.alert_category.dht
                          | lt.alert_category.dht_operation
                          | lt.alert_category.status
                          | lt.alert_category.error
                          | lt.alert_category.stats),
    })
    return lt.session(config)


def seed(ses, path):
    """Create a v1 torrent of PATH, add it as a seed, return (hash, handle)."""
    path = os.path.abspath(path)
    ct = lt.create_torrent(lt.list_files(path), 16384, lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, os.path.dirname(path))
    ti = lt.torrent_info(lt.bdecode(lt.bencode(ct.generate())))
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = os.path.dirname(path)
    atp.flags = lt.torrent_flags.seed_mode
    handle = ses.add_torrent(atp)
    ih = ti.info_hashes().v1
    emit({"event": "torrent", "info_hash": str(ih),
          "magnet": lt.make_magnet_uri(ti)})
    return ih, handle


def handle_alerts(ses, listening):
    """Drain the alert queue; report what the tests care about."""
    for a in ses.pop_alerts():
        if isinstance(a, lt.dht_get_peers_reply_alert):
            peers = ["%s:%d" % (ip, port) for ip, port in a.peers()]
            emit({"event": "peers", "info_hash": str(a.info_hash),
                  "peers": sorted(set(peers))})
        elif isinstance(a, lt.dht_stats_alert):
            emit({"event": "dht_nodes", "count": count_nodes(a)})
        elif isinstance(a, lt.listen_succeeded_alert):
            if a.socket_type == lt.socket_type_t.udp and not listening:
                listening.append(a.port)
                emit({"event": "ready", "dht_port": a.port,
                      "bind": "%s:%d" % (a.address, a.port)})
        elif isinstance(a, lt.listen_failed_alert):
            emit({"event": "error", "message": a.message()})


def main():
    args = parse_args()
    ses = make_session(args.bind)
    for node in args.dht_node:
        ses.add_dht_node(node)

    seeded = None
    if args.seed_file:
        seeded = seed(ses, args.seed_file)

    listening = []
    deadline = time.monotonic() + args.duration
    next_tick = time.monotonic()
    while time.monotonic() < deadline:
        ses.wait_for_alert(200)
        handle_alerts(ses, listening)
        if time.monotonic() < next_tick or not listening:
            continue
        next_tick = time.monotonic() + args.interval
        # add the contacts again: a node that was not up yet on the first try
        # (or timed out) gets another chance to enter the routing table
        for node in args.dht_node:
            ses.add_dht_node(node)
        ses.post_dht_stats()
        if seeded is not None:
            seeded[1].force_dht_announce()
        for ih in args.get_peers:
            ses.dht_get_peers(ih)
        for ih in args.announce:
            port = args.announce_port or listening[0]
            ses.dht_announce(ih, port, 0)
            emit({"event": "announced", "info_hash": str(ih), "port": port})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
