"""Apps the port tests and bench/relay.ts run inside a computer (and, for the
bench's baseline, on the host), one per port, standard library only.

  8000  static files from $APPS_DIR/www
  8001  upload sink: POST answers the body's length and sha256 and the request
        head; GET /headers the head; GET /blob?bytes=N streams N bytes;
        GET /served the bytes of files 8000 has written into its sockets so far
  8002  server-sent events: one event, then the next only once $APPS_DIR/sse-go
        exists; /ticks?n=N&ms=M sends N events M ms apart, each its send time
  8003  a page that opens a WebSocket back to its own host, and /ws, a WebSocket echo

APPS_PORTS (four ports, comma-separated) and APPS_DIR (default /tmp) move them.
"""

import base64
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from functools import partial
from urllib.parse import parse_qs, urlparse
from http.server import SimpleHTTPRequestHandler, BaseHTTPRequestHandler, ThreadingHTTPServer


DIR = os.environ.get("APPS_DIR", "/tmp")
PORTS = [int(p) for p in os.environ.get("APPS_PORTS", "8000,8001,8002,8003").split(",")]


class Quiet:
    def log_message(self, *args):
        pass


# Bytes of files the static server has handed to its sockets: a reader that stops
# must hold the app back, which the tests see here rather than in anyone's memory.
served = 0
served_lock = threading.Lock()


class Static(Quiet, SimpleHTTPRequestHandler):
    def copyfile(self, source, outputfile):
        global served
        while True:
            piece = source.read(64 * 1024)
            if not piece:
                return
            outputfile.write(piece)
            with served_lock:
                served += len(piece)


class Sink(Quiet, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def head_json(self):
        return {"method": self.command, "path": self.path, "headers": [[k, v] for k, v in self.headers.items()]}

    def reply(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/blob"):
            n = int(parse_qs(urlparse(self.path).query).get("bytes", ["0"])[0])
            block = os.urandom(1 << 20)
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(n))
            self.end_headers()
            while n > 0:
                piece = block[: min(n, len(block))]
                self.wfile.write(piece)
                n -= len(piece)
            return
        if self.path == "/served":
            return self.reply({"bytes": served})
        self.reply(self.head_json())

    def do_POST(self):
        h = hashlib.sha256()
        n = 0
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                left = size
                while left:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    h.update(chunk)
                    n += len(chunk)
                    left -= len(chunk)
                self.rfile.readline()
        else:
            left = int(self.headers.get("content-length", "0"))
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
                left -= len(chunk)
        self.reply({**self.head_json(), "bytes": n, "sha256": h.hexdigest()})

    do_PUT = do_POST


TICKS_PAGE = b"""<!doctype html><html><body><script>
window.lat = []; window.done = false;
const es = new EventSource('/ticks?QUERY');
es.onmessage = (e) => window.lat.push(Date.now() - Number(e.data));
es.onerror = () => { window.done = true; es.close(); };
</script></body></html>"""


class Events(Quiet, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/page"):
            # A page that measures how late each tick reaches the browser (same clock as the app's).
            page = TICKS_PAGE.replace(b"QUERY", urlparse(self.path).query.encode())
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.end_headers()
        if self.path.startswith("/ticks"):
            q = parse_qs(urlparse(self.path).query)
            for i in range(int(q.get("n", ["100"])[0])):
                self.wfile.write(f"id: {i}\ndata: {time.time() * 1000:.3f}\n\n".encode())
                self.wfile.flush()
                time.sleep(float(q.get("ms", ["20"])[0]) / 1000)
            self.close_connection = True
            return
        self.wfile.write(b"id: 1\ndata: first\n\n")
        self.wfile.flush()
        while not os.path.exists(os.path.join(DIR, "sse-go")):
            time.sleep(0.02)
        self.wfile.write(b"id: 2\ndata: second\n\n")
        self.wfile.flush()
        self.close_connection = True


PAGE = b"""<!doctype html><html><body><p id="out">waiting</p><script>
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
ws.onopen = () => ws.send('ping from the page');
ws.onmessage = (e) => { document.getElementById('out').textContent = 'echo: ' + e.data; };
ws.onerror = () => { document.getElementById('out').textContent = 'socket error'; };
</script></body></html>"""


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def send_frame(sock, opcode, payload):
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    sock.sendall(head + payload)


class Socket(Quiet, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path != "/ws":
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)
            return
        key = self.headers.get("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101)
        self.send_header("upgrade", "websocket")
        self.send_header("connection", "Upgrade")
        self.send_header("sec-websocket-accept", accept)
        protocols = [p.strip() for p in self.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        if protocols:
            self.send_header("sec-websocket-protocol", protocols[-1])
        self.end_headers()
        self.wfile.flush()
        sock = self.connection
        message, first_op = b"", None
        try:
            while True:
                b0, b1 = recv_exact(sock, 2)
                op, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    n = struct.unpack(">H", recv_exact(sock, 2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", recv_exact(sock, 8))[0]
                mask = recv_exact(sock, 4) if b1 & 0x80 else b"\0\0\0\0"
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(recv_exact(sock, n))) if n else b""
                if op == 8:
                    send_frame(sock, 8, data[:2] or struct.pack(">H", 1000))
                    return
                if op == 9:
                    send_frame(sock, 10, data)
                    continue
                if op in (1, 2):
                    first_op, message = op, data
                elif op == 0:
                    message += data
                if b0 & 0x80:
                    send_frame(sock, first_op, message)
        except (EOFError, OSError):
            return
        finally:
            self.close_connection = True


def serve(port, handler):
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("0.0.0.0", port), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()


os.makedirs(os.path.join(DIR, "www"), exist_ok=True)
serve(PORTS[0], partial(Static, directory=os.path.join(DIR, "www")))
serve(PORTS[1], Sink)
serve(PORTS[2], Events)
serve(PORTS[3], Socket)
open(os.path.join(DIR, "apps.ready"), "w").write("ok")
threading.Event().wait()
