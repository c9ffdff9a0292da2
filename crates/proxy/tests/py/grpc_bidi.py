#!/usr/bin/env python3
"""Interleaved bidirectional gRPC streaming against weft-testapp's Echo service.

    grpc_bidi.py TARGET COUNT [--authority AUTH] [--timeout SECONDS]

Calls /weft.testapp.Echo/BidiStream on TARGET (plaintext HTTP/2) and, COUNT times, sends one
message and waits for its echo before sending the next. So the call only completes if every
hop forwards each request message and each response message as it arrives: a proxy that
buffered either stream until its end would leave the first wait hanging until the deadline.
Message sizes vary, up to larger than one HTTP/2 frame and than the default flow-control window.

Output: ``echo: I LEN`` per message, then ``status: NAME (N)`` and ``ok: COUNT interleaved``.
Exit status 0 when every echo matched in order and the call ended OK, 1 otherwise.
"""

import argparse
import queue
import sys

import grpc

METHOD = "/weft.testapp.Echo/BidiStream"


def message(i):
    size = [1, 10, 1000, 20_000, 100_000][i % 5]
    return (f"<{i}>".encode() * (size // 3 + 1))[:size]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target")
    parser.add_argument("count", type=int)
    parser.add_argument("--authority")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    options = []
    if args.authority:
        options.append(("grpc.default_authority", args.authority))
    outbox = queue.Queue()

    def requests():
        while True:
            item = outbox.get()
            if item is None:
                return
            yield item

    with grpc.insecure_channel(args.target, options=options) as channel:
        stub = channel.stream_stream(
            METHOD, request_serializer=None, response_deserializer=None
        )
        rpc = stub(requests(), timeout=args.timeout)
        try:
            for i in range(args.count):
                sent = message(i)
                outbox.put(sent)
                got = next(rpc)
                if got != sent:
                    print(
                        f"MISMATCH: message {i}: sent {len(sent)} bytes, got {len(got)}",
                        file=sys.stderr,
                    )
                    outbox.put(None)
                    rpc.cancel()
                    return 1
                print(f"echo: {i} {len(got)}")
            outbox.put(None)
            extra = list(rpc)
        except grpc.RpcError as error:
            outbox.put(None)
            print(
                f"FAILED: {error.code().name}: {error.details()}", file=sys.stderr
            )
            return 1
        except StopIteration:
            outbox.put(None)
            print(f"FAILED: stream ended early: {rpc.code()} {rpc.details()}", file=sys.stderr)
            return 1
        code = rpc.code()
        print(f"status: {code.name} ({code.value[0]})")
        if extra:
            print(f"MISMATCH: {len(extra)} unexpected extra messages", file=sys.stderr)
            return 1
        if code != grpc.StatusCode.OK:
            return 1
    print(f"ok: {args.count} interleaved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
