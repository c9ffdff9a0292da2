#!/usr/bin/env python3
"""WebSocket echo round-trip through an explicit HTTP proxy, for weft-proxy's tests.

    ws_echo.py PROXY TARGET [--rounds N] [--timeout SECONDS]

Opens a TCP connection to PROXY (host:port, e.g. a weft-proxy outbound listener) and performs
the WebSocket handshake for ws://TARGET/ws over it (Host: TARGET, origin-form request line), the
way curl talks to a plain HTTP proxy for a non-CONNECT request. Then sends N rounds of text and
binary messages of varied sizes (including some larger than one TCP segment and than the
proxies' read buffers) and checks each echo, one message at a time.

Output: ``header: NAME: VALUE`` for each handshake response header, one ``echo: KIND LEN`` line
per echoed message, then ``ok: N messages``. Exit status 0 when every echo matched, 1 otherwise.
"""

import argparse
import socket
import sys

from websockets.sync.client import connect


def messages(rounds):
    """Deterministic text and binary messages of varied sizes."""
    for i in range(rounds):
        yield f"text {i}: héllo wörld ✓ " * (1 + i * 3)
        yield bytes((i * 7 + j) % 256 for j in range(1 + i * 1000))
    # One large message of each kind: spans many frames and socket reads.
    yield "large text " + "x" * 300_000
    yield bytes(j % 253 for j in range(1_000_000))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("proxy")
    parser.add_argument("target")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()

    host, _, port = args.proxy.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=args.timeout)
    count = 0
    with connect(
        f"ws://{args.target}/ws",
        sock=sock,
        open_timeout=args.timeout,
        close_timeout=args.timeout,
        max_size=None,
        compression=None,
    ) as ws:
        for name, value in ws.response.headers.raw_items():
            print(f"header: {name.lower()}: {value}")
        for sent in messages(args.rounds):
            ws.send(sent)
            got = ws.recv(timeout=args.timeout)
            kind = "text" if isinstance(sent, str) else "binary"
            if type(got) is not type(sent) or got != sent:
                print(
                    f"MISMATCH: sent {kind} of {len(sent)}, got {type(got).__name__} "
                    f"of {len(got)}",
                    file=sys.stderr,
                )
                return 1
            print(f"echo: {kind} {len(sent)}")
            count += 1
    print(f"ok: {count} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
