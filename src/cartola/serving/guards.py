"""The model server's guards in front of the API: bearer-token authentication and load shedding.

Both are plain ASGI middlewares that answer before the app runs, so a refused request costs no
body read, no JSON parse and no thread of the pool:

* :class:`BearerAuth`: every path but :data:`OPEN_PATHS` needs ``Authorization: Bearer
  <token>``, compared in constant time; else ``401``. The token comes from
  ``$CARTOLA_SERVING_TOKEN`` or a file only its owner can read (:func:`read_token`), never
  from the command line (visible in ``ps``) and it is never logged.
* :class:`ShedLoad`: past ``max_inflight`` requests running in this worker, a new one gets
  ``503`` with ``Retry-After`` at once instead of a place in a queue whose wait grows with
  the load. Health checks and scrapes are never shed, so an overloaded server stays visible.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import os
import stat
from pathlib import Path
from typing import Dict, Optional

TOKEN_ENV = "CARTOLA_SERVING_TOKEN"
MIN_TOKEN_CHARS = 16
OPEN_PATHS = ("/health",)  # load balancers probe without credentials; it tells nothing else
UNSHED_PATHS = ("/health", "/metrics")
RETRY_AFTER_SECONDS = 1


class TokenError(ValueError):
    """No usable token: the message says what to do, never what the token is."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches: 127.0.0.0/8, ::1, ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_token(token_file: str = "") -> Optional[str]:
    """The serving token: ``$CARTOLA_SERVING_TOKEN``, else ``token_file`` (which must not be
    readable by group or others), else None. A token shorter than 16 characters is refused."""
    source = f"${TOKEN_ENV}"
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token and token_file:
        path = Path(token_file).expanduser()
        source = f"token file {path}"
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise TokenError(f"{source} is readable by others (mode "
                                 f"{stat.S_IMODE(mode):o}); chmod 600 it")
            token = path.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise TokenError(f"{source}: {err.strerror}") from None
    if not token:
        return None
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise TokenError(f"the token in {source} must be at least {MIN_TOKEN_CHARS} characters "
                         "without spaces; make one with: python -c \"import secrets; "
                         "print(secrets.token_urlsafe(32))\"")
    return token


def check_exposure(host: str, token: Optional[str]) -> None:
    """Refuse to listen beyond loopback without a token (TokenError)."""
    if token is None and not is_loopback(host):
        raise TokenError(f"--host {host} exposes the model beyond this machine: set "
                         f"${TOKEN_ENV} or --token-file (mode 600), or use --host 127.0.0.1")


async def send_error(send, status: int, message: str,
                     headers: Optional[Dict[str, str]] = None) -> None:
    """A complete JSON error answer, TF Serving's shape, straight to ASGI ``send``."""
    body = json.dumps({"error": message}).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BearerAuth:  # pylint: disable=too-few-public-methods
    """ASGI middleware: 401 unless the request carries the bearer token (paths in
    :data:`OPEN_PATHS` excepted)."""

    def __init__(self, app, token: str):
        self.app = app
        self._token = token.encode("utf-8")

    def _allowed(self, scope) -> bool:
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                # compare_digest: the time taken does not say how much of the token matched.
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(),
                                                                           self._token)
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        await send_error(send, 401, "missing or wrong bearer token: send 'Authorization: "
                         "Bearer <token>'", {"WWW-Authenticate": 'Bearer realm="cartola"'})


class ShedLoad:  # pylint: disable=too-few-public-methods
    """ASGI middleware: at most ``max_inflight`` requests run at once in this worker; the
    next ones get 503 with ``Retry-After`` (0 = no limit). One event loop runs every request,
    so a plain counter is exact."""

    def __init__(self, app, max_inflight: int):
        self.app = app
        self.max_inflight = max_inflight
        self.inflight = 0

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or not self.max_inflight
                or scope["path"] in UNSHED_PATHS):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            await send_error(send, 503, f"server busy: {self.inflight} requests in flight in "
                             f"this worker (--max-inflight); retry after "
                             f"{RETRY_AFTER_SECONDS} s",
                             {"Retry-After": str(RETRY_AFTER_SECONDS)})
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
