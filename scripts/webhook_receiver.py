"""A subscriber for the black-box subscription tests (tests/it/subscriptions.rs): an HTTP
server on 127.0.0.1 that records every POST it gets (headers and raw body) and checks each one
with the Standard Webhooks project's own Python library (`standardwebhooks`, pinned in
tests/requirements.txt), not with SyncRoot's code.

It prints `PORT <n>` on its first line, then serves until stdin closes (the test's end).

Control routes (JSON):
  PUT  /__control/mode      {"mode": "ok" | "fail"}  answer deliveries 204, or 500 for now on
  POST /__control/verify    {"secret": "whsec_..."}  every recorded request, oldest first, as
      {"id", "timestamp", "signature", "raw" (the body as received), "status" (what it was
      answered), "verified" (bool), "error", "body" (parsed, when verified)}
      checked now with that secret
Any other POST is a delivery.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

LOCK = threading.Lock()
RECEIVED = []
STATE = {"mode": "ok"}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _read(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length)

    def _answer(self, status, payload=None):
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        body = json.loads(self._read() or b"{}")
        if self.path == "/__control/mode" and body.get("mode") in ("ok", "fail"):
            with LOCK:
                STATE["mode"] = body["mode"]
            return self._answer(200, STATE)
        return self._answer(404)

    def do_POST(self):
        raw = self._read()
        if self.path == "/__control/verify":
            return self._answer(200, verify(json.loads(raw)["secret"]))
        with LOCK:
            status = 204 if STATE["mode"] == "ok" else 500
            RECEIVED.append({"headers": dict(self.headers.items()), "raw": raw, "status": status})
        self._answer(status)


def verify(secret):
    out = []
    with LOCK:
        received = list(RECEIVED)
    for r in received:
        headers = {k.lower(): v for k, v in r["headers"].items()}
        entry = {
            "id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "signature": headers.get("webhook-signature"),
            "raw": r["raw"].decode("utf-8", "replace"),
            "status": r["status"],
            "verified": False,
            "error": None,
            "body": None,
        }
        try:
            entry["body"] = Webhook(secret).verify(r["raw"], headers)
            entry["verified"] = True
        except Exception as e:  # the library's verification error, or a body that is not JSON
            entry["error"] = f"{type(e).__name__}: {e}"
        out.append(entry)
    return out


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
