#!/usr/bin/env python3
"""Listens to the LSD multicast group (BEP 14, 239.192.152.143:6771) on one interface and
prints every datagram, one JSON object per line on stdout, for the tests to inspect what each
client announces (or that it announces nothing):

  {"event":"ready"}
  {"event":"datagram","from":"IP:PORT","headers":{"port":"6881","infohash":[...],...},"len":N}

Usage: lsd_listen.py --interface 10.205.1.3 [--duration 60]
Run it inside the test's network namespace. It only listens; it never sends.
"""

import argparse
import json
import socket
import struct
import sys
import time

GROUP = "239.192.152.143"
PORT = 6771


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interface", required=True)
    p.add_argument("--duration", type=float, default=60.0)
    args = p.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", PORT))
    mreq = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton(args.interface))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    s.settimeout(0.5)
    print(json.dumps({"event": "ready"}), flush=True)
    deadline = time.time() + args.duration
    while time.time() < deadline:
        try:
            data, (ip, port) = s.recvfrom(2048)
        except socket.timeout:
            continue
        headers = {"infohash": []}
        lines = data.decode("latin-1").replace("\r\n", "\n").split("\n")
        for line in lines[1:]:
            if not line:
                break
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "infohash":
                headers["infohash"].append(value.lower())
            else:
                headers[name] = value
        print(json.dumps({"event": "datagram", "from": "%s:%d" % (ip, port), "request": lines[0],
                          "headers": headers, "len": len(data)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
