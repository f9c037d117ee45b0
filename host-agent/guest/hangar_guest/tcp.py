"""TCP connections inside the computer for the relay: ops tcp_open, tcp_send,
tcp_ack, tcp_shutdown and tcp_close; events tcp_data, tcp_end and tcp_closed
(schema/guest.ts, TCP).

The guest connects to a port of this computer (127.0.0.1, then ::1) and
carries the bytes over its one channel to the host, so it works the same over
a unix socket and over virtio-serial. Flow control both ways:
  - app -> host: at most `window` bytes beyond the host's last tcp_ack are
    sent; then the socket is not read, so a slow client holds back the app;
  - host -> app: each tcp_send is answered once its bytes are in the socket
    (answers wait while the socket's send buffer is full), and the host keeps
    at most a window unanswered.
A connection belongs to the host connection that opened it and is closed
(abortively) when that host connection goes away.
"""

import asyncio
import socket
import struct

from .common import GuestError

CONNECT_TIMEOUT_S = 10
MAX_CONNS = 1024


class TcpConn(asyncio.Protocol):
    def __init__(self, owner, conn_id, window):
        self.owner = owner  # the host Connection
        self.id = conn_id
        self.window = window
        self.transport = None
        self.sent = 0
        self.acked = 0
        self.reading_paused = False
        self.write_paused = False
        self.waiting_answers = []  # request ids answered once the send buffer drains
        self.closed = False

    # -------------------------------------------------- asyncio callbacks

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.owner.send_event({"ev": "tcp_data", "conn": self.id, "offset": self.sent}, data)
        self.sent += len(data)
        self._flow()

    def eof_received(self):
        self.owner.send_event({"ev": "tcp_end", "conn": self.id})
        return True  # keep our side open: the host may still send (half-close)

    def pause_writing(self):
        self.write_paused = True

    def resume_writing(self):
        self.write_paused = False
        answers, self.waiting_answers = self.waiting_answers, []
        for req_id in answers:
            self.owner.reply(req_id, {})

    def connection_lost(self, exc):
        if self.closed:
            return
        self.closed = True
        conns(self.owner).pop(self.id, None)
        error = None if exc is None else str(exc) or type(exc).__name__
        header = {"ev": "tcp_closed", "conn": self.id}
        if error:
            header["error"] = error
        self.owner.send_event(header)
        for req_id in self.waiting_answers:
            self.owner.reply_error(req_id, "FAILED", "the connection closed")
        self.waiting_answers = []

    # -------------------------------------------------- host requests

    def send(self, req_id, payload):
        self.transport.write(payload)
        if self.write_paused:
            self.waiting_answers.append(req_id)
        else:
            self.owner.reply(req_id, {})

    def ack(self, offset):
        if offset < self.acked or offset > self.sent:
            raise GuestError("BAD_REQUEST", f"ack {offset} outside 0..{self.sent}")
        self.acked = offset
        self._flow()

    def shutdown(self):
        if self.transport.can_write_eof():
            self.transport.write_eof()

    def close(self, reset):
        if reset:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER with a zero timeout makes close() send an RST.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
        else:
            self.transport.close()

    def _flow(self):
        full = self.sent - self.acked >= self.window
        if full and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        elif not full and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()


def conns(owner):
    """The TCP connections a host connection opened; closed with it."""
    table = getattr(owner, "tcp_conns", None)
    if table is None:
        table = owner.tcp_conns = {}
        owner.on_lost.append(lambda: [c.close(True) for c in list(table.values())])
    return table


def find(conn, req):
    c = conns(conn).get(req["conn"])
    if not isinstance(c, TcpConn):
        raise GuestError("NOT_FOUND", f"no connection {req['conn']}")
    return c


class Pending:
    """A connection still being made: what the host sends meanwhile waits here, in order.

    The host need not wait for tcp_open's answer before it writes (an HTTP
    request follows its open at once), which saves a round trip per request.
    """

    def __init__(self):
        self.ops = []  # (op, request id, payload)
        self.cancelled = False

    def queue(self, op, req_id, payload=b""):
        self.ops.append((op, req_id, payload))

    def close(self, reset):
        self.cancelled = True


async def _connect(guest, conn, req_id, conn_id, port, window, pending):
    loop = guest.loop
    last = None
    for host in ("127.0.0.1", "::1"):
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: TcpConn(conn, conn_id, window), host, port), CONNECT_TIMEOUT_S
            )
        except asyncio.TimeoutError:
            return _fail(conn, conn_id, req_id, pending, "TIMEOUT", f"connecting to port {port} timed out")
        except OSError as e:
            last = e
            continue
        if pending.cancelled or conns(conn).get(conn_id) is not pending or conn.transport is None or conn.transport.is_closing():
            proto.close(True)  # the host gave up (or went away) meanwhile
            return
        conns(conn)[conn_id] = proto
        conn.reply(req_id, {})
        for op, rid, payload in pending.ops:
            if op == "send":
                proto.send(rid, payload)
            elif op == "shutdown":
                proto.shutdown()
                conn.reply(rid, {})
        return
    code = "REFUSED" if isinstance(last, ConnectionRefusedError) else "FAILED"
    _fail(conn, conn_id, req_id, pending, code, f"connecting to port {port} failed: {last}")


def _fail(conn, conn_id, req_id, pending, code, message):
    if conns(conn).get(conn_id) is pending:
        conns(conn).pop(conn_id, None)
    conn.reply_error(req_id, code, message)
    for _, rid, _ in pending.ops:
        conn.reply_error(rid, "FAILED", "the connection did not open")


def handle_tcp_open(guest, conn, req_id, req, payload):
    conn_id = req["conn"]
    port = int(req["port"])
    window = int(req["window"])
    if not 0 < port < 65536 or window < 16384:
        raise GuestError("BAD_REQUEST", "bad port or window")
    table = conns(conn)
    if conn_id in table:
        raise GuestError("BAD_REQUEST", f"connection {conn_id} exists")
    if len(table) >= MAX_CONNS:
        raise GuestError("BUSY", f"too many connections ({MAX_CONNS})")
    pending = table[conn_id] = Pending()
    guest.loop.create_task(_connect(guest, conn, req_id, conn_id, port, window, pending))


def handle_tcp_send(guest, conn, req_id, req, payload):
    c = conns(conn).get(req["conn"])
    if isinstance(c, Pending):
        c.queue("send", req_id, payload)
    else:
        find(conn, req).send(req_id, payload)


def handle_tcp_shutdown(guest, conn, req_id, req, payload):
    c = conns(conn).get(req["conn"])
    if isinstance(c, Pending):
        return c.queue("shutdown", req_id)
    find(conn, req).shutdown()
    conn.reply(req_id, {})


def handle_tcp_ack(guest, conn, req_id, req, payload):
    find(conn, req).ack(int(req["offset"]))
    conn.reply(req_id, {})


def handle_tcp_close(guest, conn, req_id, req, payload):
    c = conns(conn).pop(req["conn"], None)
    if c is not None:
        c.close(bool(req.get("reset")))
    conn.reply(req_id, {})


HANDLERS = {
    "tcp_open": handle_tcp_open,
    "tcp_send": handle_tcp_send,
    "tcp_ack": handle_tcp_ack,
    "tcp_shutdown": handle_tcp_shutdown,
    "tcp_close": handle_tcp_close,
}
