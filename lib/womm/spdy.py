"""The exec API's other transport: SPDY/3.1, as kubectl spoke it before WebSockets.

Why: the API server passes a SPDY exec through to the kubelet as bytes, but decodes every
message of a WebSocket exec and encodes it again as SPDY (Kubernetes 1.30 and later). Measured
on the test cluster (300 MB into `cat` through kubectl, both ways): the API server spent 2.2 to
2.5 ms of CPU per MB over SPDY against 7.3 to 8.5 over WebSocket; and the client masks nothing.

Only what an exec needs, the client's side: one connection upgraded with an HTTP request, a stream
per channel (error, stdin, stdout, stderr, resize) opened by SYN_STREAM and answered by SYN_REPLY,
data frames both ways, FIN for the end of stdin, PING. The server's header blocks are skipped,
never inflated: an exec needs none of them (so the protocol's zlib dictionary is not needed
either: ours are compressed without it, which its readers accept). No flow control: Kubernetes'
end (spdystream) has none, and our side reads all it is sent. An http:// proxy (the kubeconfig's
proxy-url) is asked for a CONNECT tunnel, as kubectl and websocket-client do: it carries bytes. A
proxy or a load balancer that cannot carry the upgrade answers otherwise than 101: womm.kube then
uses WebSocket (NotUpgraded).
"""

import re
import socket
import ssl
import struct
import threading
import time
import zlib
from urllib.parse import urlsplit

SYN_STREAM, SYN_REPLY, RST_STREAM, PING, GOAWAY = 1, 2, 3, 6, 7
FIN = 0x01
CONTROL = struct.Struct(">HHI")  # the control bit with the version, type, flags and length
DATA = struct.Struct(">II")  # stream id, flags and length
VERSION = 3
MAX_DATA = (1 << 24) - 1  # a frame's length has 24 bits
MAX_CONTROL = 1 << 16  # bytes of a control frame we read (an exec's are replies, pings and resets)
MAX_HEAD = 64 << 10  # bytes of the HTTP answer to the upgrade that are read
MAX_EARLY = 1 << 20  # bytes of data frames held while the streams are being opened
READ = 256 << 10
SEPARATE = 16 << 10  # bytes of data above which a frame's header goes to the socket in a write of its own
HANDSHAKES = 3  # TLS handshakes tried for one exec (CI saw the API server answer one with a decode_error alert)
PROTOCOL = "v4.channel.k8s.io"  # the exec's status on the error stream, as JSON; v5 is WebSocket's only


class Refused(Exception):
    """The upgrade was answered with something else than 101: (status, reason, headers, body)."""

    def __init__(self, status, reason, headers, body):
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.headers, self.body = status, reason, headers, body


class ProtocolError(OSError):
    """What came is not SPDY, the server refused a stream, or the connection ended within a frame."""


class NoAnswer(OSError):
    """The connection ended (or was reset) after the upgrade was asked, before any answer to it:
    what some proxies do with an upgrade they do not know."""


class Connection:
    """An exec's SPDY connection: send() and recv() by stream name, from any threads (one reader)."""

    def __init__(self, sock, streams, buffered=b""):
        self.sock = sock
        self.ids = {name: 1 + 2 * i for i, name in enumerate(streams)}  # the client's streams are odd
        self.names = {i: name for name, i in self.ids.items()}
        self.buf = bytearray(buffered)
        self.pos = 0
        self.lock = threading.Lock()
        self.pings = 1  # our pings' ids are odd; the server echoes them
        self.early = []  # data frames that came while the streams were being opened
        self.received = time.monotonic()  # when bytes last came (a frame's part too)
        self.headers = {}  # the upgrade's answer's, lower case
        self._pong = None  # an answer to the server's PING that waits for the sender's lock

    @classmethod
    def connect(cls, url, ssl_context, server_hostname, headers, streams, timeout, proxy=None):
        """Upgrade a connection to the API server for an exec (url: its https:// URL), and open its
        streams (names, in order: the first is the error stream); proxy: (host, port, its
        Proxy-Authorization or None), an http:// proxy to tunnel through. Raises Refused, or OSError."""
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        deadline = time.monotonic() + timeout
        where = (parts.hostname, parts.port or (443 if tls else 80))
        sock = _connection(where, timeout, proxy, tls and ssl_context, server_hostname or parts.hostname)
        try:
            lines = [f"POST {parts.path}?{parts.query} HTTP/1.1", f"Host: {parts.netloc}", "Connection: Upgrade",
                     "Upgrade: SPDY/3.1", f"X-Stream-Protocol-Version: {PROTOCOL}", "Content-Length: 0",
                     *(f"{k}: {v}" for k, v in headers.items())]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            status, reason, got, rest = _read_head(sock)
            if status != 101 or "spdy/3.1" not in got.get("upgrade", "").lower():
                raise Refused(status, reason, got, _read_body(sock, got, rest))
            conn = cls(sock, streams, rest)
            conn.headers = got
            conn._open(streams, deadline)
            sock.settimeout(None)
            return conn
        except BaseException:
            sock.close()
            raise

    def _open(self, streams, deadline):
        """Open each stream and wait for its reply (the server drops data sent on a stream before then),
        until the deadline at most."""
        deflate = zlib.compressobj()
        frames = []
        for name in streams:
            block = _headers({"streamtype": name})
            block = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
            body = struct.pack(">IIBB", self.ids[name], 0, 0, 0) + block
            frames.append(CONTROL.pack(0x8000 | VERSION, SYN_STREAM, len(body)) + body)
        self._send(b"".join(frames))
        waiting, early = set(self.ids.values()), 0
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the server did not open the exec's streams in time")
            self.sock.settimeout(left)
            frame = self.read()
            if frame is None:
                raise ProtocolError("the server ended the exec before it opened its streams")
            kind, stream, data, _ = frame
            if kind == SYN_REPLY:
                waiting.discard(stream)
            elif kind == RST_STREAM and stream in waiting:
                raise ProtocolError(f"the server refused the exec's {self.names[stream]} stream")
            elif kind == "data":
                early += len(data)
                if early > MAX_EARLY:
                    raise ProtocolError("the server sent data before it opened the exec's streams")
                self.early.append(frame)

    def read(self):
        """The next frame: ("data", stream id, bytes, fin), (control type, stream id or ping id, body, flags),
        or None at the connection's end. PINGs from the server are answered here."""
        if self.early:
            return self.early.pop(0)
        try:
            first, second = DATA.unpack(self._exact(DATA.size))
        except OSError:
            return None  # (within a frame, the connection's end is a ProtocolError)
        flags, length = second >> 24, second & 0xFFFFFF
        if not first & 0x80000000:
            return "data", first, self._exact(length), bool(flags & FIN)
        kind = first & 0xFFFF
        if length > MAX_CONTROL or (first >> 16) & 0x7FFF != VERSION:
            raise ProtocolError(f"not an exec's SPDY/3.1 (control frame {kind}, {length} bytes)")
        body = self._exact(length)
        ident = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF if len(body) >= 4 else 0
        if kind == PING and len(body) == 4 and not ident & 1:
            self._answer(CONTROL.pack(0x8000 | VERSION, PING, 4) + body)  # the server's
        return kind, ident, body, flags

    def _answer(self, pong):
        """Answer the server's PING without waiting for a sender blocked on full buffers (the reader must
        go on reading for them to drain); one answer waits at most, later ones replace it."""
        if self.lock.acquire(blocking=False):
            try:
                self.sock.sendall(pong)
            finally:
                self.lock.release()
            return
        waiting, self._pong = self._pong, pong
        if waiting is None:
            threading.Thread(target=self._answer_later, name="spdy pong", daemon=True).start()

    def _answer_later(self):
        with self.lock:
            pong, self._pong = self._pong, None
            try:
                self.sock.sendall(pong)
            except OSError:
                pass

    def _exact(self, n):
        while len(self.buf) - self.pos < n:
            if self.pos:
                del self.buf[:self.pos]
                self.pos = 0
            data = self.sock.recv(max(READ, n - len(self.buf)))
            if not data:
                raise ProtocolError("the connection ended")
            self.received = time.monotonic()
            self.buf += data
        with memoryview(self.buf) as view:
            out = bytes(view[self.pos:self.pos + n])
        self.pos += n
        return out

    def buffered(self):
        """Bytes read from the socket that make a whole frame not yet returned (a frame's part waits
        for the rest: reading it would not return), and those TLS decrypted that no one read."""
        buf, pos = self.buf, self.pos  # (the reader may move them meanwhile: an estimate)
        try:
            left = len(buf) - pos
            whole = left if left >= DATA.size + (DATA.unpack_from(buf, pos)[1] & 0xFFFFFF) else 0
        except struct.error:  # less than a frame's header (or the reader just took it)
            whole = 0
        return max(0, whole) + (self.sock.pending() if hasattr(self.sock, "pending") else 0)

    def send(self, name, data, fin=False, head=b""):
        """data (head before it, in the first frame) as the stream's data frames. A large piece goes
        to the socket as it is, after its frame's header: not copied into one more buffer."""
        stream, data, start = self.ids[name], memoryview(data), 0
        while True:
            piece = data[start:start + MAX_DATA - len(head)]
            start += len(piece)
            last = start >= len(data)
            header = DATA.pack(stream, ((FIN if fin and last else 0) << 24) | (len(head) + len(piece))) + head
            with self.lock:
                if len(piece) > SEPARATE:
                    self.sock.sendall(header)
                    self.sock.sendall(piece)
                else:
                    self.sock.sendall(header + piece)
            if last:
                return
            head = b""

    def ping(self):
        with self.lock:
            self.pings = (self.pings + 2) & 0x7FFFFFFF or 1
            ident = self.pings
        self._send(CONTROL.pack(0x8000 | VERSION, PING, 4) + struct.pack(">I", ident))

    def _send(self, data):
        with self.lock:
            self.sock.sendall(data)


def _connection(where, timeout, proxy, ssl_context, hostname):
    """A socket to where (host, port), through the proxy's tunnel if any, in TLS if ssl_context. A TLS
    handshake spoiled (not a certificate refused) is made again: nothing of the request was sent yet."""
    for left in range(HANDSHAKES - 1, -1, -1):
        sock = socket.create_connection(proxy[:2] if proxy else where, timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if proxy:
                _tunnel(sock, where, proxy[2])
            # (the plain socket is detached into the TLS one: that is the one to close)
            return ssl_context.wrap_socket(sock, server_hostname=hostname) if ssl_context else sock
        except ssl.SSLError as e:
            sock.close()
            if not left or isinstance(e, ssl.SSLCertVerificationError):
                raise
        except BaseException:
            sock.close()
            raise


def _tunnel(sock, where, authorization):
    """Ask the proxy on sock for a tunnel to where (host, port)."""
    host = f"[{where[0]}]" if ":" in where[0] else where[0]
    lines = [f"CONNECT {host}:{where[1]} HTTP/1.1", f"Host: {host}:{where[1]}"]
    if authorization:
        lines.append(f"Proxy-Authorization: {authorization}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    status, reason, _, rest = _read_head(sock)
    if status != 200 or rest:
        raise OSError(f"the proxy refused a tunnel to {host}:{where[1]} ({status} {reason})".rstrip())


def _headers(pairs):
    """A SPDY/3 header block, before compression."""
    out = [struct.pack(">I", len(pairs))]
    for name, value in pairs.items():
        for text in (name.encode(), value.encode()):
            out.append(struct.pack(">I", len(text)) + text)
    return b"".join(out)


def _read_head(sock):
    """(status, reason, {lower-case header: value}, bytes after the head) of an HTTP answer."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            data = sock.recv(READ)
        except ConnectionResetError:
            data = b""
        if not data:
            raise NoAnswer("the connection ended before the API server answered the exec")
        buf += data
        if len(buf) > MAX_HEAD and b"\r\n\r\n" not in buf[:MAX_HEAD + 4]:
            raise OSError("the API server's answer to the exec has no end of its headers")
    head, rest = buf.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    words = status_line.split(" ", 2)
    if len(words) < 2 or not words[0].startswith("HTTP/") or not re.fullmatch("[0-9]{3}", words[1]):
        raise OSError(f"the API server's answer to the exec is not HTTP: {status_line[:80]!r}")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(words[1]), words[2] if len(words) > 2 else "", headers, rest


def _read_body(sock, headers, rest):
    """The body of a refusal, as much as MAX_HEAD of it (by its Content-Length, else what came)."""
    try:
        length = min(int(headers.get("content-length", 0)), MAX_HEAD)
    except ValueError:
        length = 0
    body = rest
    if length <= len(body):
        return body[:MAX_HEAD]
    try:
        while len(body) < length:
            data = sock.recv(READ)
            if not data:
                break
            body += data
    except OSError:
        pass
    return body[:length]
