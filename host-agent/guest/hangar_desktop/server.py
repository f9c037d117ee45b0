"""The control socket: 127.0.0.1:<port> inside the computer, reached from the API over the relay.

Frames as in the guest protocol (schema/desktop.ts is the contract):
    u32 BE header_len | u32 BE payload_len | JSON header | raw payload
The daemon speaks first with {"t": "hello"}; each {"t": "req", "id", "op", "args"}
gets one {"t": "res", "id", "ok", "data" | "error"}, a screenshot's PNG as the
payload. Requests on one connection are handled in order, so input sent in
order arrives in order.
"""

import json
import socket
import struct
import threading

from .actions import ActionError

PREFIX = struct.Struct(">II")
MAX_HEADER = 1 << 20
VERSION = "1.1.0"
PROTOCOL = {"major": 1, "minor": 1}


def log(*parts):
    print("hangar-desktop:", *parts, flush=True)


def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def send_frame(sock, header, payload=b""):
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    sock.sendall(PREFIX.pack(len(raw), len(payload)) + raw + payload)


def serve_connection(sock, desktop):
    try:
        send_frame(sock, {"t": "hello", "version": VERSION, "protocol": PROTOCOL})
        while True:
            prefix = read_exact(sock, 8)
            if prefix is None:
                return
            hlen, plen = PREFIX.unpack(prefix)
            if hlen > MAX_HEADER or plen != 0:
                return  # not our protocol (an HTTP request, say): hang up
            raw = read_exact(sock, hlen)
            if raw is None:
                return
            try:
                req = json.loads(raw)
                req_id, op, args = req["id"], req["op"], req.get("args", {})
                if not isinstance(op, str):
                    raise TypeError("op")
            except (ValueError, KeyError, TypeError):
                return
            try:
                data, payload = desktop.run(op, args)
                send_frame(sock, {"t": "res", "id": req_id, "ok": True, "data": data}, payload)
            except ActionError as e:
                error = {"code": e.code, "message": str(e)}
                if e.code == "NOT_READY":
                    error["retry_after"] = desktop.session.retry_after()
                send_frame(sock, {"t": "res", "id": req_id, "ok": False, "error": error})
            except Exception as e:  # a bug must cost one answer, not the daemon
                log(f"{op} failed: {e!r}")
                send_frame(sock, {"t": "res", "id": req_id, "ok": False, "error": {"code": "FAILED", "message": f"{op} failed: {e}"}})
    except OSError:
        return
    finally:
        try:
            sock.close()
        except OSError:
            pass


def serve(listener, desktop):
    """Accepts connections forever, one thread each."""
    while True:
        try:
            conn, _addr = listener.accept()
        except OSError as e:
            log(f"accept failed: {e}")
            continue
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve_connection, args=(conn, desktop), daemon=True).start()


def bind(port):
    """The listening socket, or None when the port is taken (another daemon runs)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    sock.listen(16)
    return sock
