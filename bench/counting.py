"""Counting at the wire, the same way for every contender: an HTTP proxy in front of the moto server that names each
S3 request's operation and counts the object bytes that pass through it, and a TCP proxy in front of PostgreSQL
that counts round trips (a client's send that the server answers).

Both run in threads of the harness's own process, so the contenders (separate processes) pay the same small
proxy hop and nothing else.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REPORTS = "mediacanon-reports/"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "expect"}
# operations and what S3 bills for them (https://aws.amazon.com/s3/pricing/, S3 Standard, us-east-1)
WRITES = {
    "PutObject", "CopyObject", "UploadPart", "UploadPartCopy", "CreateMultipartUpload", "CompleteMultipartUpload",
    "DeleteObject", "DeleteObjects", "PutObjectTagging", "CreateBucket", "AbortMultipartUpload",
}  # fmt: skip
FREE = {"DeleteObject", "DeleteObjects", "AbortMultipartUpload"}  # DELETE requests are free
TIER1 = {"PutObject", "CopyObject", "UploadPart", "UploadPartCopy", "CreateMultipartUpload", "CompleteMultipartUpload",
         "PutObjectTagging", "CreateBucket", "ListObjectsV2", "ListObjects", "ListBuckets", "ListObjectVersions"}  # fmt: skip
PRICE_TIER1 = 0.005 / 1000  # PUT, COPY, POST, LIST
PRICE_TIER2 = 0.0004 / 1000  # GET, HEAD and all other


def _bucket_get(query: dict[str, list[str]]) -> str:
    """The operation of a GET on a bucket (no key): a listing or one of the bucket's subresources."""
    if query.get("list-type") == ["2"]:
        return "ListObjectsV2"
    if "versions" in query:
        return "ListObjectVersions"
    sub = next((q for q in ("location", "versioning", "tagging", "policy", "acl") if q in query), None)
    return f"GetBucket:{sub}" if sub else "ListObjects"


def _head(key: str, query: dict[str, list[str]], copy: bool) -> tuple[str, str]:
    return ("HeadObject" if key else "HeadBucket"), key


def _get(key: str, query: dict[str, list[str]], copy: bool) -> tuple[str, str]:
    if not key:
        return _bucket_get(query), ""
    if "tagging" in query:
        return "GetObjectTagging", key
    return "GetObject", key


def _put(key: str, query: dict[str, list[str]], copy: bool) -> tuple[str, str]:
    if not key:
        return "CreateBucket", ""
    if "tagging" in query:
        return "PutObjectTagging", key
    if "partNumber" in query:
        return ("UploadPartCopy" if copy else "UploadPart"), key
    return ("CopyObject" if copy else "PutObject"), key


def _post(key: str, query: dict[str, list[str]], copy: bool) -> tuple[str, str]:
    if "delete" in query:
        return "DeleteObjects", ""
    if "uploads" in query:
        return "CreateMultipartUpload", key
    if "uploadId" in query:
        return "CompleteMultipartUpload", key
    return "Post", key


def _delete(key: str, query: dict[str, list[str]], copy: bool) -> tuple[str, str]:
    return ("AbortMultipartUpload" if "uploadId" in query else "DeleteObject" if key else "DeleteBucket"), key


# the operation of a request by its method: each takes (key, query, whether it names a copy source)
_BY_METHOD: dict[str, Callable[[str, dict[str, list[str]], bool], tuple[str, str]]] = {
    "HEAD": _head,
    "GET": _get,
    "PUT": _put,
    "POST": _post,
    "DELETE": _delete,
}


def operation(method: str, path: str, query: dict[str, list[str]], headers: Any) -> tuple[str, str]:
    """(S3 operation, object key) of a path-style request."""
    parts = unquote(path).lstrip("/").split("/", 1)
    key = parts[1] if len(parts) > 1 else ""
    if not parts[0]:
        return "ListBuckets", ""
    copy = "x-amz-copy-source" in headers
    by_method = _BY_METHOD.get(method)
    if by_method is None:
        return method, key
    return by_method(key, query, copy)


@dataclass
class S3Tally:
    operations: Counter[str] = field(default_factory=Counter)
    object_bytes: int = 0  # object data through the client: PutObject/UploadPart bodies, GetObject bodies (media)
    report_bytes: int = 0  # the same for mediacanon's reports (under mediacanon-reports/)
    wire_bytes: int = 0  # every request and response body, XML included

    def minus(self, before: S3Tally) -> S3Tally:
        return S3Tally(
            self.operations - before.operations,
            self.object_bytes - before.object_bytes,
            self.report_bytes - before.report_bytes,
            self.wire_bytes - before.wire_bytes,
        )


class S3CountingProxy:
    """An HTTP/1.1 proxy to `upstream` (the moto server) that tallies every S3 request passing through it."""

    def __init__(self, upstream: str) -> None:
        parsed = urlsplit(upstream)
        self._host, self._port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self._lock = threading.Lock()
        self._tally = S3Tally()
        self._server: ThreadingHTTPServer | None = None

    def snapshot(self) -> S3Tally:
        with self._lock:
            t = self._tally
            return S3Tally(Counter(t.operations), t.object_bytes, t.report_bytes, t.wire_bytes)

    def _record(self, op: str, key: str, sent: int, received: int, data: int) -> None:
        with self._lock:
            self._tally.operations[op] += 1
            self._tally.wire_bytes += sent + received
            if key.startswith(REPORTS):
                self._tally.report_bytes += data
            else:
                self._tally.object_bytes += data

    def start(self) -> str:
        # a handler class of this proxy's own: its upstream and tally, and the upstream connections of its threads
        handler = type("Handler", (_CountingHandler,), {"proxy": self, "local": threading.local()})
        # a listen backlog for the workers' copy threads (socketserver's default of 5 refuses connections under load)
        server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 1024})
        self._server = server_class(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _CountingHandler(BaseHTTPRequestHandler):
    """Forwards each request to the proxy's upstream over a kept-alive connection of the thread's own, and tallies it."""

    protocol_version = "HTTP/1.1"
    proxy: S3CountingProxy  # set by S3CountingProxy.start, on a subclass of its own
    local: threading.local  # the thread's upstream connection, `conn`

    def log_message(self, *args: Any) -> None:
        pass

    def _upstream(self) -> http.client.HTTPConnection:
        if getattr(self.local, "conn", None) is None:
            self.local.conn = http.client.HTTPConnection(self.proxy._host, self.proxy._port, timeout=900)
        return self.local.conn  # type: ignore[no-any-return]

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _exchange(self, body: bytes, headers: dict[str, str]) -> tuple[http.client.HTTPResponse, bytes]:
        """The upstream's response to the request, and its body."""
        for attempt in (1, 2):  # a kept-alive upstream connection the server closed: reconnect once
            conn = self._upstream()
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        return resp, data

    def _carried(self, op: str, body: bytes, status: int, data: bytes) -> int:
        """The object data the request carried: an upload's body, a successful download's."""
        if op in ("PutObject", "UploadPart"):
            return int(self.headers.get("x-amz-decoded-content-length") or len(body))
        if op == "GetObject" and status < 300:
            return len(data)
        return 0

    def _reply(self, resp: http.client.HTTPResponse, data: bytes) -> None:
        self.send_response_only(resp.status, resp.reason)
        for name, value in resp.getheaders():
            if name.lower() in HOP_BY_HOP or (name.lower() == "content-length" and self.command != "HEAD"):
                continue
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def _forward(self) -> None:
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        resp, data = self._exchange(body, headers)
        split = urlsplit(self.path)
        op, key = operation(self.command, split.path, parse_qs(split.query, keep_blank_values=True), self.headers)
        self.proxy._record(op, key, len(body), len(data), self._carried(op, body, resp.status, data))
        self._reply(resp, data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


class PgRoundTripProxy:
    """A TCP proxy to PostgreSQL that counts round trips: each time the server answers after the client has sent."""

    def __init__(self, unix_socket: Path | None = None, host: str = "127.0.0.1", port: int = 5432) -> None:
        self._unix, self._host, self._port = unix_socket, host, port
        self._lock = threading.Lock()
        self.round_trips = 0
        self.connections = 0
        self._listener: socket.socket | None = None

    def _connect_upstream(self) -> socket.socket:
        if self._unix is not None:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(str(self._unix))
            return upstream
        return socket.create_connection((self._host, self._port))

    def start(self) -> int:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()
        return int(self._listener.getsockname()[1])

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = self._connect_upstream()
            with self._lock:
                self.connections += 1
            state = {"sent": False}
            state_lock = threading.Lock()
            threading.Thread(target=self._pump, args=(client, upstream, state, state_lock, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, state, state_lock, False), daemon=True).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, state: dict[str, bool], lock: threading.Lock, from_client: bool
    ) -> None:
        try:
            while data := src.recv(65536):
                with lock:
                    if from_client:
                        state["sent"] = True
                    elif state["sent"]:
                        state["sent"] = False
                        with self._lock:
                            self.round_trips += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()


def cost_usd(operations: Counter[str]) -> float:
    """What the requests cost on S3 Standard (us-east-1), DELETEs free."""
    tier1 = sum(n for op, n in operations.items() if op in TIER1)
    tier2 = sum(n for op, n in operations.items() if op not in TIER1 and op not in FREE)
    return tier1 * PRICE_TIER1 + tier2 * PRICE_TIER2


def reads_and_writes(operations: Counter[str]) -> tuple[int, int]:
    writes = sum(n for op, n in operations.items() if op in WRITES)
    return sum(operations.values()) - writes, writes
