"""Real receivers on 127.0.0.1 for notification tests: a webhook (HTTP, in a thread) that
answers 200, 500 or never, a URL whose port nobody listens on, and a minimal SMTP server."""
from __future__ import annotations

import json
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional


def closed_port_url(path: str = "/hook/T0KEN-closed") -> str:
    """An http URL on 127.0.0.1 whose port was free a moment ago: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


class WebhookReceiver:
    """An HTTP server in a thread that records the JSON bodies POSTed to it.

    ``mode``: "ok" answers 200, "error" answers 500, "hang" reads the request and never
    answers (until the receiver stops). Use as a context manager.
    """

    def __init__(self, mode: str = "ok", path: str = "/services/T000/B000/s3cr3t-t0ken"):
        self.mode, self.path = mode, path
        self.messages: List[dict] = []
        self.paths: List[str] = []
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            """Records, then answers as the mode says."""

            def do_POST(self):  # pylint: disable=invalid-name
                """Record the body; answer per mode."""
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.paths.append(self.path)
                try:
                    receiver.messages.append(json.loads(body))
                except ValueError:
                    receiver.messages.append({"unparsed": body.decode("utf-8", "replace")})
                if receiver.mode == "hang":
                    receiver._release.wait(60)  # pylint: disable=protected-access
                    return
                status = 200 if receiver.mode == "ok" else 500
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"boom")

            def log_message(self, *args):  # pylint: disable=arguments-differ
                """Quiet: tests read what was received, not the access log."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """Where to POST."""
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def events(self) -> List[str]:
        """The ``event`` of each message received, in order."""
        return [message.get("event") for message in self.messages]

    def __enter__(self) -> "WebhookReceiver":
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


class SmtpReceiver:
    """A minimal SMTP server (RFC 5321's plain dialogue, no extensions) in a thread; records
    (sender, recipients, message text) of each mail. Use as a context manager."""

    def __init__(self):
        self.mails: List[tuple] = []
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            """One SMTP session."""

            def reply(self, line: str) -> None:
                """Send one reply line."""
                self.wfile.write((line + "\r\n").encode("ascii"))

            def handle(self):
                """Greet, then answer commands until QUIT."""
                self.reply("220 receiver ESMTP test")
                sender, recipients = "", []
                while True:
                    line = self.rfile.readline().decode("utf-8", "replace").rstrip("\r\n")
                    verb = line.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250 receiver")
                    elif verb == "MAIL":
                        sender, recipients = line.split(":", 1)[1].strip(" <>"), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(line.split(":", 1)[1].strip(" <>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        lines = []
                        while True:
                            data = self.rfile.readline().decode("utf-8", "replace")
                            if data in (".\r\n", ".\n", ""):
                                break
                            lines.append(data[1:] if data.startswith("..") else data)
                        receiver.mails.append((sender, recipients, "".join(lines)))
                        self.reply("250 OK queued")
                    elif verb == "QUIT" or not line:
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 OK")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._server.server_address[1]

    def __enter__(self) -> "SmtpReceiver":
        threading.Thread(target=self._server.serve_forever, args=(0.05,),
                         daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
