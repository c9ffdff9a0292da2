#!/usr/bin/env python3
"""A small grpcio client for weft-testapp's ``weft.testapp.Echo`` service.

Messages are raw bytes (no generated stubs, no protobuf). Used by tests to call the testapp
directly or THROUGH proxies, so the interface is stable:

    grpc_client.py TARGET METHOD MESSAGE [--count N] [--expect-status CODE]
                   [--authority AUTH] [--metadata KEY=VALUE]... [--timeout SECONDS]

TARGET      host:port to connect to (plaintext HTTP/2).
METHOD      Unary, ServerStream or BidiStream (in weft.testapp.Echo), or a full path such as
            /weft.testapp.Echo/Nope. A path ending in ServerStream is called server-streaming,
            one ending in BidiStream bidi-streaming, anything else unary.
MESSAGE     the request message, sent as UTF-8 bytes.
--count     ServerStream: sent as x-stream-count metadata and the number of echoes expected
            (default 3). BidiStream: how many times MESSAGE is sent and echoed (default 1).
--expect-status  status name (OK, UNIMPLEMENTED, ...) or number; default OK.
--authority the :authority to send (grpc.default_authority channel option).
--metadata  extra request metadata, repeatable (e.g. x-testapp-grpc-status=5).
--timeout   call deadline in seconds (default 10).

Output: one ``message: ...`` line per received message, then ``status: NAME (N)``,
``details: ...`` and one ``trailer: key: value`` line per trailing metadata entry.
Exit status: 0 when the call ended with the expected status (and, when OK is expected, every
received message equals MESSAGE and their number is as expected), 1 otherwise, 2 on usage
errors.
"""

import argparse
import sys

import grpc

SERVICE = "/weft.testapp.Echo/"


def parse_status(text):
    """A grpc.StatusCode from a name (case-insensitive) or a number."""
    for code in grpc.StatusCode:
        if text.upper() == code.name or text == str(code.value[0]):
            return code
    raise argparse.ArgumentTypeError(f"unknown gRPC status {text!r}")


def parse_metadata(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"metadata {text!r} must be KEY=VALUE")
    return (key.lower(), value)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def call(args):
    """Performs the call; returns (messages, code, details, trailing_metadata, expected_count)."""
    path = args.method if args.method.startswith("/") else SERVICE + args.method
    message = args.message.encode("utf-8")
    metadata = list(args.metadata)
    options = []
    if args.authority:
        options.append(("grpc.default_authority", args.authority))

    messages = []
    with grpc.insecure_channel(args.target, options=options) as channel:
        if path.endswith("ServerStream"):
            expected = 3 if args.count is None else args.count
            if args.count is not None:
                metadata.append(("x-stream-count", str(args.count)))
            stub = channel.unary_stream(
                path, request_serializer=None, response_deserializer=None
            )
            rpc = stub(message, metadata=metadata, timeout=args.timeout)
            try:
                for received in rpc:
                    messages.append(received)
            except grpc.RpcError:
                pass
            return messages, rpc.code(), rpc.details(), rpc.trailing_metadata(), expected
        if path.endswith("BidiStream"):
            expected = 1 if args.count is None else args.count
            stub = channel.stream_stream(
                path, request_serializer=None, response_deserializer=None
            )
            rpc = stub(iter([message] * expected), metadata=metadata, timeout=args.timeout)
            try:
                for received in rpc:
                    messages.append(received)
            except grpc.RpcError:
                pass
            return messages, rpc.code(), rpc.details(), rpc.trailing_metadata(), expected
        stub = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            response, rpc = stub.with_call(message, metadata=metadata, timeout=args.timeout)
            messages.append(response)
            return messages, rpc.code(), rpc.details(), rpc.trailing_metadata(), 1
        except grpc.RpcError as error:
            return messages, error.code(), error.details(), error.trailing_metadata(), 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target")
    parser.add_argument("method")
    parser.add_argument("message")
    parser.add_argument("--count", type=positive_int)
    parser.add_argument("--expect-status", type=parse_status, default=grpc.StatusCode.OK)
    parser.add_argument("--authority")
    parser.add_argument("--metadata", type=parse_metadata, action="append", default=[])
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()

    messages, code, details, trailing, expected_count = call(args)
    for received in messages:
        print("message: " + received.decode("utf-8", errors="backslashreplace"))
    print(f"status: {code.name} ({code.value[0]})")
    print(f"details: {details or ''}")
    for key, value in trailing or ():
        print(f"trailer: {key}: {value}")
    sys.stdout.flush()

    problems = []
    if code != args.expect_status:
        problems.append(f"status {code.name}, expected {args.expect_status.name}")
    if args.expect_status == grpc.StatusCode.OK:
        if len(messages) != expected_count:
            problems.append(f"{len(messages)} messages, expected {expected_count}")
        wrong = [m for m in messages if m != args.message.encode("utf-8")]
        if wrong:
            problems.append(f"{len(wrong)} messages differ from the request message")
    if problems:
        print("MISMATCH: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
