#!/usr/bin/env python3
"""A libtorrent peer for kadswarm's peer exchange (BEP 11, ut_pex) interoperability tests.

One libtorrent session on an explicit loopback address with every other way of finding
peers switched off (no DHT, no LSD, no UPnP/NAT-PMP, no trackers), so a peer it talks to that
it was not told about by --peer can only have come from peer exchange. It reports on stdout,
one JSON object a line:

  {"event":"ready","port":P}                         the session listens on --bind IP, port P
  {"event":"torrent","info_hash":HEX,"magnet":URI}   the torrent was added
  {"event":"peers","peers":[{"addr":"IP:PORT","source":N,"pex":B,"outgoing":B,
                             "seed":B,"local":"IP:PORT","client":TEXT}, ...]}
                                                     the connected peers, whenever the set
                                                     (or a peer's source) changes; also a
                                                     one-peer list (source 0, no "local") for
                                                     each connection libtorrent accepts or
                                                     makes, so that a peer connected for less
                                                     than one poll is still seen
  {"event":"status","state":S,"progress":F,"peers":N,"upload":B,"download":B}   twice a second
  {"event":"finished"}                               every piece is here
  {"event":"error","message":TEXT}

`source` is libtorrent's peer_info.source bit set: 0x1 tracker, 0x2 DHT, 0x4 PEX, 0x8 LSD,
0x10 resume data, 0x20 incoming connection. `addr` is the peer's remote endpoint: for a
connection we made, the listen address we dialled (for a PEX-learned peer, the address the
PEX message carried).

Seeding:   lt_pex.py --bind 127.0.200.1:0 --seed DIR_OR_FILE [--torrent-out FILE]
Leeching:  lt_pex.py --bind 127.0.201.1:0 (--magnet URI | --torrent FILE) --save DIR
Options:   --peer IP:PORT (repeatable; connect_peer), --upload-limit/--download-limit B/s for
           the torrent, --no-pex (the torrent's disable_pex flag: sends no ut_pex messages
           and ignores those it gets), --transport tcp|utp|any, --duration SECS.

What libtorrent's ut_pex does (src/ut_pex.cpp, 2.x), which the tests rely on:
- every connection ticks once a second; its first message (the full list) goes out on the
  first tick after the extension handshake at which the torrent has at least 2 peers, spaced
  from other connections' messages by min(max(60 s / peers, 100 ms), 3 s); later ones (the
  diff) at most once a minute.
- listed: connected peers past the handshake that we dialled (at the dialled address), or
  that dialled us and sent their listen port `p` in the extension handshake (ip + p);
  libtorrent itself sends `p` only on connections it makes.
- private torrents have no ut_pex at all; a second message sooner than 60 s after the
  sixth-last one disconnects the sender.
Two libtorrent seeds close their connection, so a peer meant to keep advertising another
must stay a leecher (--download-limit).
"""

import argparse
import os
import sys

import libtorrent as lt

from lt_common import emit, host_port, make_torrent, settings, watch


def endpoint(ep):
    host, port = ep
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def peer_list(handle):
    out = []
    for p in handle.get_peer_info():
        source = int(p.source)
        out.append({
            "addr": endpoint(p.ip),
            "local": endpoint(p.local_endpoint()),
            "source": source,
            "pex": bool(source & int(lt.peer_info.pex)),
            "outgoing": bool(int(p.flags) & int(lt.peer_info.outgoing_connection)),
            "seed": bool(int(p.flags) & int(lt.peer_info.seed)),
            "client": p.client.decode("utf-8", "replace") if isinstance(p.client, bytes) else str(p.client),
        })
    out.sort(key=lambda e: e["addr"])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bind", type=host_port, required=True)
    p.add_argument("--seed", help="file or directory to seed")
    p.add_argument("--piece-size", type=int, default=0)
    p.add_argument("--torrent-out", help="with --seed: write the .torrent here")
    p.add_argument("--magnet", help="magnet URI to download")
    p.add_argument("--torrent", help=".torrent file to download")
    p.add_argument("--save", help="where downloads go")
    p.add_argument("--peer", type=host_port, action="append", default=[])
    p.add_argument("--upload-limit", type=int, default=0, help="bytes/s for this torrent")
    p.add_argument("--download-limit", type=int, default=0, help="bytes/s for this torrent")
    p.add_argument("--no-pex", action="store_true", help="set the torrent's disable_pex flag")
    p.add_argument("--transport", choices=["tcp", "utp", "any"], default="tcp")
    p.add_argument("--duration", type=float, default=300.0)
    args = p.parse_args()
    if sum(1 for x in (args.seed, args.magnet, args.torrent) if x) != 1:
        p.error("give exactly one of --seed, --magnet and --torrent")
    if not args.seed and not args.save:
        p.error("--magnet and --torrent need --save")

    pack = settings(args.bind[0], args.bind[1], transport=args.transport)
    # Connection alerts too: a peer that downloads everything in 50 ms can come and go
    # between two polls of the peer list, and the tests must still see that it connected.
    pack["alert_mask"] = pack["alert_mask"] | lt.alert_category.peer | lt.alert_category.connect
    ses = lt.session(pack)
    emit({"event": "ready", "port": ses.listen_port()})

    if args.seed:
        atp = lt.add_torrent_params()
        atp.ti = make_torrent(args.seed, args.piece_size, args.torrent_out)
        atp.save_path = os.path.dirname(os.path.abspath(args.seed))
        magnet = lt.make_magnet_uri(atp.ti)
    elif args.torrent:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(args.torrent)
        atp.save_path = args.save
        magnet = lt.make_magnet_uri(atp.ti)
    else:
        atp = lt.parse_magnet_uri(args.magnet)
        atp.save_path = args.save
        magnet = args.magnet
    if args.upload_limit:
        atp.upload_limit = args.upload_limit
    if args.download_limit:
        atp.download_limit = args.download_limit
    if args.no_pex:
        atp.flags |= lt.torrent_flags.disable_pex
    handle = ses.add_torrent(atp)
    emit({"event": "torrent", "info_hash": str(handle.info_hash()), "magnet": magnet})
    for peer in args.peer:
        handle.connect_peer(peer)

    last_peers = None
    for st, due in watch(handle, args.duration):
        for alert in ses.pop_alerts():
            if isinstance(alert, (lt.torrent_error_alert, lt.file_error_alert)):
                emit({"event": "error", "message": alert.message()})
            elif isinstance(alert, (lt.incoming_connection_alert, lt.peer_connect_alert)):
                outgoing = isinstance(alert, lt.peer_connect_alert)
                peer = {"addr": endpoint(alert.endpoint), "source": 0, "pex": False, "outgoing": outgoing,
                        "seed": False, "client": ""}
                emit({"event": "peers", "peers": [peer]})
        peers = peer_list(handle)
        # Only what identifies a peer and how it was found; rates and the like would make
        # every sample differ.
        key = [(e["addr"], e["source"], e["outgoing"], e["seed"]) for e in peers]
        if key != last_peers:
            last_peers = key
            emit({"event": "peers", "peers": peers})
        if due:
            emit({
                "event": "status",
                "state": str(st.state),
                "progress": st.progress,
                "peers": st.num_peers,
                "upload": st.all_time_upload,
                "download": st.all_time_download,
            })
    return 0


if __name__ == "__main__":
    sys.exit(main())
