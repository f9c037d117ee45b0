"""The wire format and one host connection.

Frames of
    u32 BE header_len | u32 BE payload_len | JSON header | raw payload
over one byte stream, so the same code can serve a unix socket now and a
virtio-serial port in a VM later.
"""

import asyncio
import json
import struct

from .common import BOOT_ID, GUEST_VERSION, PROTOCOL, GuestError, log

PREFIX = struct.Struct(">II")
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 16 << 20


class Connection(asyncio.Protocol):
    """One host connection: frame parsing, request dispatch, event delivery with backpressure."""

    def __init__(self, guest):
        self.guest = guest
        self.buf = bytearray()
        self.transport = None
        self.paused = False
        self.attached = set()
        # Called when the host goes away (e.g. tcp.py closes the connections this host opened).
        self.on_lost = []

    def connection_made(self, transport):
        self.transport = transport
        self.guest.connections.add(self)
        self.send({"t": "hello", "protocol": PROTOCOL, "guest_version": GUEST_VERSION, "boot_id": BOOT_ID})

    def connection_lost(self, exc):
        self.guest.connections.discard(self)
        for proc in list(self.attached):
            proc.subscribers.discard(self)
        self.paused = False
        self.guest.update_pauses()
        self.attached.clear()
        for hook in self.on_lost:
            hook()

    def pause_writing(self):
        self.paused = True
        self.guest.update_pauses()

    def resume_writing(self):
        self.paused = False
        self.guest.update_pauses()

    def data_received(self, data):
        self.buf += data
        pos = 0
        # Parse every complete frame, then drop the consumed bytes once (not once per frame).
        while len(self.buf) - pos >= 8:
            hlen, plen = PREFIX.unpack_from(self.buf, pos)
            if hlen > MAX_HEADER or plen > MAX_PAYLOAD:
                log("frame too large; dropping connection")
                self.transport.close()
                return
            end = pos + 8 + hlen + plen
            if len(self.buf) < end:
                break
            header = bytes(self.buf[pos + 8:pos + 8 + hlen])
            payload = bytes(self.buf[pos + 8 + hlen:end])
            pos = end
            self.on_frame(header, payload)
            if self.transport.is_closing():
                return
        if pos:
            del self.buf[:pos]

    def on_frame(self, header_bytes, payload):
        try:
            header = json.loads(header_bytes)
            req_id = header["id"]
            op = header["op"]
        except (ValueError, KeyError, TypeError):
            log("malformed frame header; dropping connection")
            self.transport.close()
            return
        try:
            self.guest.handle(self, req_id, op, header, payload)
        except GuestError as e:
            self.reply_error(req_id, e.code, str(e))
        except (KeyError, TypeError, ValueError) as e:
            self.reply_error(req_id, "BAD_REQUEST", f"bad {op} request: {e!r}")
        except OSError as e:
            self.reply_error(req_id, "FAILED", f"{op} failed: {e}")

    def send(self, header, payload=b""):
        if self.transport is None or self.transport.is_closing():
            return
        h = json.dumps(header, separators=(",", ":")).encode()
        if payload:
            self.transport.writelines([PREFIX.pack(len(h), len(payload)), h, payload])
        else:
            self.transport.write(PREFIX.pack(len(h), 0) + h)

    def reply(self, req_id, data, payload=b""):
        self.send({"t": "res", "id": req_id, "ok": True, "data": data}, payload)

    def reply_error(self, req_id, code, message):
        self.send({"t": "res", "id": req_id, "ok": False, "error": {"code": code, "message": message}})

    def send_event(self, header, payload=b""):
        header["t"] = "evt"
        self.send(header, payload)
