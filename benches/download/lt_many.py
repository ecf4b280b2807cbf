#!/usr/bin/env python3
"""Many libtorrent sessions in one process, for the many-peer scenarios of the download bench.

Session i listens on, and dials from, 127.0.(--first + i).1 (one /24 each, so no per-IP or
per-network rule of the peer under test lumps them together). DHT, LSD, UPnP and NAT-PMP are
off; nothing leaves loopback. Reports JSON objects, one per line on stdout:

  {"event":"ready","peers":["IP:PORT",...]}        every session listens
  {"event":"torrent","magnet":URI}                 (--seed) the torrent every session seeds
  {"event":"seeding"}                              (--seed) every session has checked its files
  {"event":"finished","i":I}                       (--torrent) session I has every piece
  {"event":"all_finished","downloaded":[B,...]}    (--torrent) every session is done; payload
                                                   bytes each session received
  {"event":"error","message":TEXT}

Seeding:  lt_many.py --first 10 --count 30 --seed DIR [--piece-size N]
          (every session seeds the same files in place)
Leeching: lt_many.py --first 10 --count 30 --torrent FILE --save DIR --peer IP:PORT
          (session I saves into DIR/I; sessions run without extensions, so no peer exchange:
          each knows the --peer alone, and every byte comes from it)

The sessions share the process's threads for Python but each has its own network thread; disk
I/O threads are cut to 2 per session (30 sessions x the default 10 is 300 threads). Runs until
--duration seconds pass or it is killed.
"""

import argparse
import os
import sys
import time

import libtorrent as lt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "interop"))
from lt_common import emit, host_port, make_torrent, settings  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--first", type=int, required=True, help="third octet of session 0's 127.0.N.1")
    p.add_argument("--count", type=int, default=30)
    p.add_argument("--seed", help="file or directory every session seeds")
    p.add_argument("--piece-size", type=int, default=0)
    p.add_argument("--torrent", help=".torrent file every session downloads")
    p.add_argument("--save", help="with --torrent: session I saves into SAVE/I")
    p.add_argument("--peer", type=host_port, action="append", default=[])
    p.add_argument("--transport", choices=["tcp", "utp", "any"], default="tcp")
    p.add_argument("--duration", type=float, default=1800.0)
    args = p.parse_args()
    if bool(args.seed) == bool(args.torrent):
        p.error("give exactly one of --seed and --torrent")
    if args.torrent and not args.save:
        p.error("--torrent needs --save")
    if args.count < 1 or args.first + args.count > 255:
        p.error("sessions must fit in 127.0.1.1 .. 127.0.254.1")

    ips = ["127.0.%d.1" % (args.first + i) for i in range(args.count)]
    sessions = []
    for ip in ips:
        config = settings(ip, 0, transport=args.transport)
        config.update({"aio_threads": 2, "max_retry_port_bind": 0})
        # Seeders keep the default plugins: the downloader under test fetches the metadata
        # (ut_metadata). Leechers get none: without ut_pex they never learn of each other.
        flags = lt.session_flags_t.add_default_plugins if args.seed else 0
        sessions.append(lt.session(config, flags))
    emit({"event": "ready", "peers": ["%s:%d" % (ip, s.listen_port()) for ip, s in zip(ips, sessions)]})

    if args.seed:
        ti = make_torrent(args.seed, args.piece_size)
        save = os.path.dirname(os.path.abspath(args.seed))
        emit({"event": "torrent", "magnet": lt.make_magnet_uri(ti)})
    else:
        ti = lt.torrent_info(args.torrent)
    handles = []
    for i, ses in enumerate(sessions):
        atp = lt.add_torrent_params()
        atp.ti = ti
        if args.seed:
            atp.save_path = save
            # The files were just hashed by make_torrent: N sessions re-checking them would
            # hash N times the payload before the first byte is served.
            atp.flags |= lt.torrent_flags.seed_mode
        else:
            atp.save_path = os.path.join(args.save, str(i))
            os.makedirs(atp.save_path, exist_ok=True)
        h = ses.add_torrent(atp)
        for peer in args.peer:
            h.connect_peer(peer)
        handles.append(h)

    done = [False] * len(handles)
    announced = False
    deadline = time.monotonic() + args.duration
    while time.monotonic() < deadline:
        for ses in sessions:
            for alert in ses.pop_alerts():
                if isinstance(alert, (lt.torrent_error_alert, lt.file_error_alert, lt.listen_failed_alert)):
                    emit({"event": "error", "message": alert.message()})
        for i, h in enumerate(handles):
            if not done[i] and h.status().is_seeding:
                done[i] = True
                if args.torrent:
                    emit({"event": "finished", "i": i})
        if all(done) and not announced:
            announced = True
            if args.seed:
                emit({"event": "seeding"})
            else:
                emit({"event": "all_finished",
                      "downloaded": [h.status().total_payload_download for h in handles]})
        time.sleep(0.02)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
