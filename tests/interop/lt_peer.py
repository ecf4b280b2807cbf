#!/usr/bin/env python3
"""A libtorrent peer (seeder or leecher) for kadswarm's download interoperability tests.

One libtorrent session bound to an explicit loopback address; it reports what
happens as JSON objects, one per line on stdout:

  {"event":"ready","port":P}                            the session listens
  {"event":"torrent","info_hash":HEX,"magnet":URI}      the torrent was added
  {"event":"status","state":S,"progress":F,"peers":N,"upload":B,"download":B,
   "utp_peers":N,"from_peers":{"IP:PORT":B,...}}
  {"event":"finished"}                                  every piece is here
  {"event":"error","message":TEXT}

Seeding:   lt_peer.py --bind 127.0.5.1:0 --seed DIR_OR_FILE [--piece-size N]
Leeching:  lt_peer.py --bind 127.0.6.1:0 --magnet URI --save DIR [--peer IP:PORT]

--transport tcp (the default), utp or any: which peer connections libtorrent makes and
accepts (uTP, BEP 29, on its UDP port next to the DHT). --upload-limit and --download-limit
hold the torrent to so many bytes per second. --unchoke-slots sets the session's
unchoke_slots_limit (-1: every interested peer is unchoked); --torrent-out writes the
seeded torrent's .torrent file.

No public router is ever contacted: the DHT only knows the --dht-node contacts.
The process runs until --duration seconds pass or it is killed.
"""

import argparse
import os
import sys

import libtorrent as lt

from lt_common import emit, host_port, make_torrent, settings, watch


# peer_info::utp_socket (libtorrent 2.x), not exported by the Python bindings.
UTP_SOCKET_FLAG = 1 << 17


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bind", type=host_port, required=True)
    p.add_argument("--dht-node", type=host_port, action="append", default=[])
    p.add_argument("--seed", help="file or directory to seed")
    p.add_argument("--piece-size", type=int, default=0)
    p.add_argument("--magnet", help="magnet URI to download")
    p.add_argument("--save", help="where --magnet downloads go")
    p.add_argument("--peer", type=host_port, action="append", default=[])
    p.add_argument("--upload-limit", type=int, default=0, help="bytes/s for this torrent")
    p.add_argument("--download-limit", type=int, default=0, help="bytes/s for this torrent")
    p.add_argument("--transport", choices=["tcp", "utp", "any"], default="tcp")
    p.add_argument("--unchoke-slots", type=int, help="unchoke_slots_limit (default: libtorrent's 8)")
    p.add_argument("--torrent-out", help="with --seed: write the .torrent file here")
    p.add_argument("--duration", type=float, default=300.0)
    args = p.parse_args()
    if bool(args.seed) == bool(args.magnet):
        p.error("give exactly one of --seed and --magnet")
    if args.magnet and not args.save:
        p.error("--magnet needs --save")

    config = settings(args.bind[0], args.bind[1], dht=True, transport=args.transport)
    if args.unchoke_slots is not None:
        config["unchoke_slots_limit"] = args.unchoke_slots
    ses = lt.session(config)
    for node in args.dht_node:
        ses.add_dht_node(node)
    emit({"event": "ready", "port": ses.listen_port()})

    atp = lt.add_torrent_params()
    if args.seed:
        ti = make_torrent(args.seed, args.piece_size, args.torrent_out)
        atp.ti = ti
        atp.save_path = os.path.dirname(os.path.abspath(args.seed))
        magnet = lt.make_magnet_uri(ti)
    else:
        atp = lt.parse_magnet_uri(args.magnet)
        atp.save_path = args.save
        magnet = args.magnet
    if args.upload_limit:
        atp.upload_limit = args.upload_limit
    if args.download_limit:
        atp.download_limit = args.download_limit
    handle = ses.add_torrent(atp)
    emit({"event": "torrent", "info_hash": str(handle.info_hash()), "magnet": magnet})
    for peer in args.peer:
        handle.connect_peer(peer)

    for st, due in watch(handle, args.duration):
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.torrent_error_alert) or isinstance(alert, lt.file_error_alert):
                emit({"event": "error", "message": alert.message()})
        if due:
            peers = handle.get_peer_info()
            emit({
                "event": "status",
                "state": str(st.state),
                "progress": st.progress,
                "peers": st.num_peers,
                "upload": st.all_time_upload,
                "download": st.all_time_download,
                "utp_peers": sum(1 for p in peers if int(p.flags) & UTP_SOCKET_FLAG),
                # Payload bytes from each connected peer, by its address.
                "from_peers": {"%s:%d" % tuple(p.ip): p.total_download for p in peers},
            })
    return 0


if __name__ == "__main__":
    sys.exit(main())
