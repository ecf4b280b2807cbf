#!/usr/bin/env python3
"""A libtorrent 2.1 peer that finds others by local service discovery (BEP 14) alone.

No DHT, no trackers, no peers given: LSD multicast on the interface of --bind is the only way
it learns of anyone. Run it inside a network namespace of the test. JSON objects, one per line
on stdout:

  {"event":"ready","port":P}                         the session listens
  {"event":"torrent","info_hash":HEX,"magnet":URI}   the torrent was added
  {"event":"lsd_peer","peer":"IP:PORT"}             libtorrent heard an announce for it
  {"event":"status","progress":F,"peers":N,"peer_addrs":[...]}
  {"event":"finished"}                               every piece is here

Seeding:   lt_lsd.py --bind 10.205.1.1:6881 --seed DIR_OR_FILE [--no-outgoing]
Leeching:  lt_lsd.py --bind 10.205.1.2:6881 --magnet URI --save DIR [--no-incoming]
Magnet:    lt_lsd.py --print-magnet DIR_OR_FILE   (the seeder's torrent, made the same way)

--no-outgoing: never dial (peers must connect to us, so they must have heard our announce);
--no-incoming: never accept (we must dial, so we must have heard theirs).
LT_DEBUG=1 in the environment adds libtorrent's own LSD log lines as "debug" events.

libtorrent 2.1 announces a hybrid (v1+v2) torrent's v1 info-hash once per round (at start,
then every local_service_announce_interval, 5 min): the v2 announce that follows takes over
the one retry timer, so only the truncated v2 hash is repeated. It does not answer announces.
"""

import argparse
import os
import re
import sys

import libtorrent as lt

from lt_common import emit, host_port, make_torrent, settings, watch


LSD_PEER = re.compile(r"peer (\S+): received peer from local service discovery")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bind", help="IP:PORT")
    p.add_argument("--print-magnet", metavar="PATH", help="print the magnet of PATH's torrent and exit")
    p.add_argument("--seed")
    p.add_argument("--magnet")
    p.add_argument("--save")
    p.add_argument("--no-incoming", action="store_true")
    p.add_argument("--no-outgoing", action="store_true")
    p.add_argument("--duration", type=float, default=120.0)
    args = p.parse_args()
    if args.print_magnet:
        emit({"event": "magnet", "magnet": lt.make_magnet_uri(make_torrent(args.print_magnet))})
        return 0
    if not args.bind:
        p.error("--bind is required")
    if bool(args.seed) == bool(args.magnet):
        p.error("give exactly one of --seed and --magnet")

    host, port = host_port(args.bind)
    config = settings(host, port, lsd=True)
    config.update({
        "enable_incoming_tcp": not args.no_incoming,
        "enable_incoming_utp": not args.no_incoming,
        "enable_outgoing_tcp": not args.no_outgoing,
        "enable_outgoing_utp": not args.no_outgoing,
    })
    if os.environ.get("LT_DEBUG"):
        config["alert_mask"] = lt.alert_category.all
    else:
        config["alert_mask"] = lt.alert_category.error | lt.alert_category.status | lt.alert_category.peer
    ses = lt.session(config)
    emit({"event": "ready", "port": ses.listen_port()})

    if args.seed:
        ti = make_torrent(args.seed)
        atp = lt.add_torrent_params()
        atp.ti = ti
        atp.save_path = os.path.dirname(os.path.abspath(args.seed))
        magnet = lt.make_magnet_uri(ti)
    else:
        atp = lt.parse_magnet_uri(args.magnet)
        atp.save_path = args.save
        magnet = args.magnet
    handle = ses.add_torrent(atp)
    emit({"event": "torrent", "info_hash": str(handle.info_hash()), "magnet": magnet})

    for st, due in watch(handle, args.duration):
        for alert in ses.pop_alerts():
            # The bindings have no lsd_peer_alert class: the peer is only in the message,
            # "<torrent> peer IP:PORT: received peer from local service discovery".
            found = LSD_PEER.search(alert.message()) if alert.what() == "lsd_peer" else None
            if found:
                emit({"event": "lsd_peer", "peer": found.group(1)})
            elif os.environ.get("LT_DEBUG") and "LSD" in alert.message():
                emit({"event": "debug", "message": alert.message()})
            elif alert.category() & lt.alert_category.error:
                emit({"event": "error", "message": alert.message()})
        if due:
            addrs = ["%s:%d" % p.ip for p in handle.get_peer_info()]
            emit({"event": "status", "progress": st.progress, "peers": st.num_peers, "peer_addrs": addrs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
