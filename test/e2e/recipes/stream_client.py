"""
The least client the streaming-exec page (spec/04-exec-stream.txt) describes,
in the shape its Python recipes use: client.exec.stream(computer_id, command=,
timeout=) yields events with .type and .data. Standard library only: POST for
a ticket, then read the ticket's Server-Sent Events line by line.
"""
import json
import urllib.request


class Event:
    def __init__(self, type, data):
        self.type = type
        self.data = data


class _Exec:
    def __init__(self, base_url, api_key):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def stream(self, computer_id, command, timeout=30):
        body = json.dumps({"command": command, "timeout": timeout}).encode()
        req = urllib.request.Request(
            f"{self.base_url}/api/v1/computers/{computer_id}/exec/stream",
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as res:
            ticket = json.load(res)
        stream = urllib.request.Request(self.base_url + ticket["stream_url"], headers={"Accept": "text/event-stream"})
        with urllib.request.urlopen(stream) as res:
            event, data = "message", []
            for raw in res:
                line = raw.decode("utf-8").rstrip("\n")
                if line == "":
                    if data:
                        yield Event(event, json.loads("\n".join(data)))
                    event, data = "message", []
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        event = value
                    elif field == "data":
                        data.append(value)


class Client:
    def __init__(self, base_url, api_key):
        self.exec = _Exec(base_url, api_key)
