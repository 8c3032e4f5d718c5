"""A chat service's webhook endpoint as its own process, so a test can SIGSTOP it (a hung receiver:
the kernel still accepts connections, nothing answers) and SIGCONT it later.

Usage: python receiver_proc.py PORT SECRET_FILE LOG_FILE
Verifies every signature with the secret in SECRET_FILE (read when it appears) and appends one JSON
line per verified event to LOG_FILE: event id, message id, revision, action and arrival time.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pipeline.signing import SignatureError, verify

PORT, SECRET_FILE, LOG_FILE = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
log = LOG_FILE.open("a", buffering=1)


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, as a real chat service's web server does: with HTTP/1.0 every event would open
    # a new connection, and the bench would measure TCP set-up rather than delivery.
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        secret = SECRET_FILE.read_text().strip() if SECRET_FILE.exists() else ""
        try:
            verify(secret, dict(self.headers.items()), body)
        except SignatureError as exc:
            reason = str(exc).encode()
            self.send_response(401)
            self.send_header("Content-Length", str(len(reason)))
            self.end_headers()
            self.wfile.write(reason)
            return
        event = json.loads(body)
        log.write(json.dumps({
            "event_id": event["event_id"], "message_id": event["decision"]["message_id"],
            "revision": event["revision"], "action": event["decision"]["action"], "at": time.time(),
        }) + "\n")
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


ThreadingHTTPServer.request_queue_size = 128
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
