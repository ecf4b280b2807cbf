#!/usr/bin/env python3
"""Plays a sender of unicast LSD announces (BEP 14 BT-SEARCH) to one listener, from several of
this host's source addresses, and reports which of them the listener then dials. Each source
announces a TCP port of its own, listened on at that source address, so a connection to it
says the announce from that source was accepted. One JSON object per line on stdout:

  {"event":"ready"}
  {"event":"dialed","source":"IP","port":N}
  {"event":"finished"}

Usage: lsd_probe.py --to 10.205.6.1 --infohash HEX --source 10.206.6.2:7000
                    --source 10.205.6.2:7001 [--duration 15]
Sources are announced in the order given, three times each, one a second; the probe stops
--duration seconds after the last announce, or as soon as every source was dialed.
"""

import argparse
import json
import select
import socket
import time

PORT = 6771


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--to", required=True)
    p.add_argument("--infohash", required=True)
    p.add_argument("--source", action="append", required=True)
    p.add_argument("--duration", type=float, default=15.0)
    args = p.parse_args()
    listeners = {}
    senders = []
    for src in args.source:
        ip, port = src.rsplit(":", 1)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((ip, int(port)))
        t.listen(16)
        t.setblocking(False)
        listeners[t] = (ip, int(port))
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((ip, 0))
        senders.append((u, int(port)))
    print(json.dumps({"event": "ready"}), flush=True)
    dialed = set()

    def accept(timeout):
        ready, _, _ = select.select(list(listeners), [], [], timeout)
        for t in ready:
            try:
                conn, _ = t.accept()
                conn.close()
            except BlockingIOError:
                continue
            if t not in dialed:
                dialed.add(t)
                ip, port = listeners[t]
                print(json.dumps({"event": "dialed", "source": ip, "port": port}), flush=True)

    for u, port in senders:
        msg = (
            "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\n"
            f"Port: {port}\r\nInfohash: {args.infohash}\r\ncookie: probe{port}\r\n\r\n\r\n"
        ).encode()
        for _ in range(3):
            u.sendto(msg, (args.to, PORT))
            accept(1.0)
    deadline = time.time() + args.duration
    while time.time() < deadline and len(dialed) < len(listeners):
        accept(0.5)
    print(json.dumps({"event": "finished"}), flush=True)


if __name__ == "__main__":
    main()
