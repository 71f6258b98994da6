#!/usr/bin/env python3
"""A loopback proxy that puts faults between a client and a server, for tests (and by hand).

throttle  Terminates TLS with a certificate the client trusts (the local cluster's API server's own,
          which names 127.0.0.1), answers one request in EVERY with 429, a Retry-After header and a
          Kubernetes Status, and forwards the others to the real server over TLS: WebSocket upgrades
          (exec streams: after the 101 the bytes go both ways untouched) and long watches and log
          follows (streamed as they come, never buffered whole). The client's Authorization header goes
          with each request, so token users (a ServiceAccount's token) keep their identity; a client
          certificate cannot be forwarded (the proxy holds no user's key): such users reach the server
          anonymous, which is why only token users are supported.
blackhole A plain TCP relay (no TLS termination) that forgets a connection idle for IDLE seconds (no
          byte either way), as a load balancer that dropped the flow: from then on nothing more is
          relayed in either direction, and neither side gets a FIN or a RST. What each side sends
          afterwards fills the proxy's socket buffers (then the sender's), unread; the kernel still
          acknowledges what lands in them, so TCP keepalive does not notice: only the application's
          own pings and timeouts can.

As a program:

    tests/faultproxy.py throttle --upstream https://10.250.0.1:6443 --ca ca.crt --cert api.crt --key api.key
    tests/faultproxy.py blackhole --upstream 10.250.0.1:6443 --idle 60

prints `listening on HOST:PORT` and, when stopped (Ctrl-C, SIGTERM), what it counted as JSON.
From a test: `with ThrottleProxy(...) as proxy:` (or start() and stop()), then proxy.port and
proxy.stats(). The proxy runs its own asyncio loop in a daemon thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import sys
import threading
import time
from urllib.parse import urlsplit

HEAD_LIMIT = 64 * 1024  # bytes of a request's or response's head
COPY = 64 * 1024


class ProxyError(Exception):
    pass


class _Proxy:
    """A listening socket served by an asyncio loop in a thread of its own."""

    def __init__(self, listen=("127.0.0.1", 0)):
        self.listen = listen
        self.host, self.port = None, None
        self._loop = None
        self._server = None
        self._thread = None
        self._lock = threading.Lock()
        self._counts = {}
        self._writers = set()

    # ------------------------------------------------------------ life

    def start(self):
        ready = threading.Event()
        failed = []

        def run():
            self._loop = asyncio.new_event_loop()
            try:
                self._server = self._loop.run_until_complete(self._serve())
                self.host, self.port = self._server.sockets[0].getsockname()[:2]
            except Exception as e:  # noqa: BLE001 - said to the caller of start()
                failed.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise ProxyError(f"cannot listen on {self.listen[0]}:{self.listen[1]}: {failed[0]}")
        return self

    def stop(self):
        """Stop listening and close every connection (with a FIN: the faults are over)."""
        if self._loop is None or self._loop.is_closed():
            return

        async def shut():
            self._server.close()
            for w in list(self._writers):
                if w.transport is not None:
                    w.transport.abort()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------ counting

    def count(self, key, n=1):
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def stats(self):
        """What the proxy counted so far: {name: number}. throttle: requests, throttled (429s answered),
        upgrades (101s piped), broken (connections that ended in an error: a peer gone mid-message,
        as a client's exit leaves its watch); blackhole: connections, bytes, dropped (forgotten)."""
        with self._lock:
            return dict(self._counts)

    def _track(self, writer):
        self._writers.add(writer)

    def _untrack(self, writer):
        self._writers.discard(writer)
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - closing what may already be gone
            pass

    async def _serve(self):
        raise NotImplementedError


# ---------------------------------------------------------------- throttle

class ThrottleProxy(_Proxy):
    """HTTPS in, HTTPS out; one request in `every` answered 429 with Retry-After `retry_after`."""

    def __init__(self, upstream, server_context, upstream_context, every=5, retry_after=1,
                 listen=("127.0.0.1", 0), upstream_hostname=None):
        super().__init__(listen)
        parts = urlsplit(upstream)
        if parts.scheme != "https" or not parts.hostname:
            raise ProxyError(f"the upstream must be an https:// URL, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 443)
        self.upstream_hostname = upstream_hostname or parts.hostname
        self.server_context = server_context
        self.upstream_context = upstream_context
        self.every = every
        self.retry_after = retry_after
        self._seq = 0
        self.throttled = []  # (method, path) of each request answered 429

    @classmethod
    def from_files(cls, upstream, ca, cert, key, **kw):
        """A proxy serving cert/key (PEM files) and trusting the upstream by the CA file."""
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(cert, key)
        server.set_alpn_protocols(["http/1.1"])  # no HTTP/2: the relay reads HTTP/1.1
        client = ssl.create_default_context(cafile=ca)
        client.set_alpn_protocols(["http/1.1"])
        return cls(upstream, server, client, **kw)

    async def _serve(self):
        return await asyncio.start_server(self._client, self.listen[0], self.listen[1], ssl=self.server_context,
                                          limit=HEAD_LIMIT)

    def _throttle_next(self):
        with self._lock:
            self._seq += 1
            return self.every > 0 and self._seq % self.every == 0

    async def _client(self, reader, writer):  # noqa: C901 - one HTTP connection read top to bottom: requests, then a piped upgrade
        self._track(writer)
        up_reader = up_writer = None
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                method, target, version, headers = _parse_request(head)
                self.count("requests")
                body = await _read_request_body(reader, headers)
                if self._throttle_next():
                    self.count("throttled")
                    with self._lock:
                        self.throttled.append((method, target.split("?")[0]))
                    writer.write(self._too_many())
                    await writer.drain()
                    if _wants_close(version, headers):
                        return
                    continue
                if up_writer is None or up_writer.is_closing():
                    up_reader, up_writer = await asyncio.open_connection(
                        *self.upstream, ssl=self.upstream_context, server_hostname=self.upstream_hostname,
                        limit=HEAD_LIMIT)
                    self._track(up_writer)
                up_writer.write(head + body)
                await up_writer.drain()
                rhead = await _read_head(up_reader)
                if rhead is None:
                    self.count("upstream_closed")
                    return
                status, rheaders = _parse_response(rhead)
                writer.write(rhead)
                await writer.drain()
                if status == 101:
                    self.count("upgrades")
                    await _pipe_both(reader, writer, up_reader, up_writer)
                    return
                keep = await _relay_response_body(up_reader, writer, method, status, rheaders)
                if not keep or _wants_close(version, headers) or _wants_close("HTTP/1.1", rheaders):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError, ValueError):
            self.count("broken")
        except asyncio.CancelledError:
            pass  # the proxy stops: the connection ends here, not as an error of asyncio's
        finally:
            if up_writer is not None:
                self._untrack(up_writer)
            self._untrack(writer)

    def _too_many(self):
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": "Too many requests, please try again later (womm's fault proxy).",
                  "reason": "TooManyRequests", "details": {"retryAfterSeconds": self.retry_after}, "code": 429}
        body = json.dumps(status).encode()
        return (f"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
                f"Retry-After: {self.retry_after}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def _read_head(reader):
    """The bytes of a message's head, its blank line included; None at a clean end before one."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise
    except asyncio.LimitOverrunError:
        raise ValueError("a message head too long") from None


def _headers(lines):
    headers = {}
    for line in lines:
        if b":" in line:
            name, value = line.split(b":", 1)
            key = name.strip().decode("latin-1").lower()
            value = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _parse_request(head):
    lines = head.split(b"\r\n")
    method, target, version = lines[0].decode("latin-1").split(" ", 2)
    return method, target, version, _headers(lines[1:])


def _parse_response(head):
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    return status, _headers(lines[1:])


def _wants_close(version, headers):
    connection = headers.get("connection", "").lower()
    return "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)


def _chunked(headers):
    return "chunked" in headers.get("transfer-encoding", "").lower()


async def _read_request_body(reader, headers):
    """A request's body, as it came (chunked bodies with their framing)."""
    if _chunked(headers):
        out = bytearray()
        async for piece in _chunks(reader):
            out += piece
        return bytes(out)
    return await reader.readexactly(int(headers.get("content-length") or 0))


async def _chunks(reader):
    """The raw pieces of a chunked body, its framing included, as each chunk arrives."""
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            trailer = line
            while True:  # trailers, then the empty line
                t = await reader.readuntil(b"\r\n")
                trailer += t
                if t == b"\r\n":
                    break
            yield trailer
            return
        yield line + await reader.readexactly(size + 2)


async def _relay_response_body(reader, writer, method, status, headers):
    """Copy a response's body as it comes; whether the connection can carry another request."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return True
    if _chunked(headers):
        async for piece in _chunks(reader):
            writer.write(piece)
            await writer.drain()
        return True
    if "content-length" in headers:
        left = int(headers["content-length"])
        while left:
            data = await reader.read(min(left, COPY))
            if not data:
                raise ConnectionError("the upstream closed mid-body")
            writer.write(data)
            await writer.drain()
            left -= len(data)
        return True
    while data := await reader.read(COPY):  # until the upstream closes
        writer.write(data)
        await writer.drain()
    return False


async def _copy(reader, writer, on_data=None, dropped=None):
    """Copy until the reader ends; stops (and reads no more) once `dropped` is set."""
    while True:
        data = await reader.read(COPY)
        if not data:
            return
        if dropped is not None and dropped.is_set():
            await asyncio.Event().wait()  # forgotten: read no more, write nothing, close nothing
        if on_data:
            on_data(len(data))
        writer.write(data)
        await writer.drain()


async def _pipe_both(a_reader, a_writer, b_reader, b_writer):
    """Bytes both ways until either side ends (a WebSocket after its 101)."""
    tasks = [asyncio.ensure_future(_copy(a_reader, b_writer)), asyncio.ensure_future(_copy(b_reader, a_writer))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


# ---------------------------------------------------------------- blackhole

class BlackholeProxy(_Proxy):
    """A TCP relay that forgets a connection once it has been idle for `idle` seconds."""

    def __init__(self, upstream, idle=60.0, listen=("127.0.0.1", 0)):
        super().__init__(listen)
        host, _, port = upstream.rpartition(":")
        if not host or not port.isdigit():
            raise ProxyError(f"the upstream must be HOST:PORT, not {upstream!r}")
        self.upstream = (host.strip("[]"), int(port))
        self.idle = idle

    async def _serve(self):
        return await asyncio.start_server(self._client, self.listen[0], self.listen[1])

    async def _client(self, reader, writer):  # noqa: C901 - one HTTP connection read top to bottom: requests, then a piped upgrade
        self._track(writer)
        self.count("connections")
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self.count("upstream_refused")
            self._untrack(writer)
            return
        self._track(up_writer)
        last = [time.monotonic()]
        dropped = asyncio.Event()

        def seen(n):
            last[0] = time.monotonic()
            self.count("bytes", n)

        async def forget_when_idle():
            while True:
                left = last[0] + self.idle - time.monotonic()
                if left <= 0:
                    dropped.set()
                    self.count("dropped")
                    return
                await asyncio.sleep(left)

        watch = asyncio.ensure_future(forget_when_idle())
        tasks = [asyncio.ensure_future(_copy(reader, up_writer, seen, dropped)),
                 asyncio.ensure_future(_copy(up_reader, writer, seen, dropped))]
        try:
            # One side ending before the drop ends the other with it, as a relay does; after the
            # drop the copies wait forever, and the sockets stay open until the proxy stops.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if dropped.is_set():
                await asyncio.Event().wait()
        except (ConnectionError, OSError):
            self.count("broken")
        except asyncio.CancelledError:
            pass  # the proxy stops
        finally:
            watch.cancel()
            for t in tasks:
                t.cancel()
            self._untrack(up_writer)
            self._untrack(writer)


# ---------------------------------------------------------------- the program

def _address(text):
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text}")
    return host or "127.0.0.1", int(port)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="faultproxy", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("throttle", help="TLS in and out; one request in EVERY answered 429")
    t.add_argument("--upstream", required=True, help="https://HOST:PORT of the real server")
    t.add_argument("--ca", required=True, help="the CA that signed the upstream's certificate (PEM)")
    t.add_argument("--cert", required=True, help="this proxy's certificate (PEM), one the clients trust")
    t.add_argument("--key", required=True, help="its private key (PEM)")
    t.add_argument("--every", type=int, default=5, help="answer 429 to one request in EVERY (0: never)")
    t.add_argument("--retry-after", type=int, default=1, help="the 429's Retry-After, in seconds")
    b = sub.add_parser("blackhole", help="TCP relay that forgets connections idle for IDLE seconds")
    b.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    b.add_argument("--idle", type=float, default=60, help="seconds of silence before a connection is forgotten")
    for p in (t, b):
        p.add_argument("--listen", type=_address, default=("127.0.0.1", 0), help="HOST:PORT (default: a free port)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # before the address is out: a caller may stop us at once
        signal.signal(signum, lambda *_: stop.set())
    try:
        if args.mode == "throttle":
            proxy = ThrottleProxy.from_files(args.upstream, args.ca, args.cert, args.key, every=args.every,
                                             retry_after=args.retry_after, listen=args.listen)
        else:
            proxy = BlackholeProxy(args.upstream, args.idle, listen=args.listen)
        proxy.start()
    except (ProxyError, OSError, ssl.SSLError) as e:
        print(f"faultproxy: error: {e}", file=sys.stderr)
        return 1
    print(f"listening on {proxy.address}", flush=True)
    stop.wait()
    proxy.stop()
    print(json.dumps(proxy.stats()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
