"""Who may do what: the admin endpoint's bearer token and Host check, feedback credentials.

Without an admin token (``$OPSNB_ADMIN_TOKEN`` or ``--admin-token-file``) the admin endpoint is
off (404). With one, ``POST /admin/reload`` needs ``Authorization: Bearer <token>`` (compared in
constant time), a ``Host`` header naming this server (a DNS-rebinding page sends its own name)
and, like every POST, ``Content-Type: application/json`` (a cross-site form can only send
``text/plain``, ``multipart/form-data`` or ``application/x-www-form-urlencoded``: 415).

``/feedback`` is open while no token is configured; once one is, it needs the feedback token
(``$OPSNB_FEEDBACK_TOKEN``) or the admin token. The first label of a request stands; only the
admin token may replace it.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import Scope

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def host_name(value: str) -> str:
    """The host part of a ``Host`` header (port and IPv6 brackets removed), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Access:
    """The configured credentials and the host names admin requests must carry.

    Args:
        admin_token: the admin bearer token (None: admin endpoint off).
        feedback_token: the bearer token ``/feedback`` requires (None: the admin token only,
            or open when neither is set).
        hosts: host names accepted in the ``Host`` header of admin requests.
    """

    def __init__(
        self, admin_token: str | None, feedback_token: str | None, hosts: Iterable[str]
    ) -> None:
        self.admin_token = admin_token or None
        self.feedback_token = feedback_token or None
        self.hosts = frozenset(host_name(h) for h in hosts)

    @staticmethod
    def _bearer(scope: Scope) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return token.strip() if scheme.lower() == b"bearer" else None
        return None

    @staticmethod
    def _matches(token: bytes | None, expected: str | None) -> bool:
        if token is None or expected is None:
            return False
        return hmac.compare_digest(token, expected.encode())

    def is_admin(self, scope: Scope) -> bool:
        """The request carries the admin token."""
        return self._matches(self._bearer(scope), self.admin_token)

    def may_give_feedback(self, scope: Scope) -> bool:
        """Open when no token is configured; else the feedback or the admin token."""
        if self.admin_token is None and self.feedback_token is None:
            return True
        token = self._bearer(scope)
        return self._matches(token, self.feedback_token) or self._matches(token, self.admin_token)

    def host_ok(self, scope: Scope) -> bool:
        """The ``Host`` header names this server."""
        for name, value in scope["headers"]:
            if name == b"host":
                return host_name(value.decode("latin-1")) in self.hosts
        return False

    def admin_refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """Why an admin request is refused -- (status, error, message) -- or None to go on."""
        if self.admin_token is None:
            return (
                404,
                "admin_off",
                "the admin endpoint is off: start the server with $OPSNB_ADMIN_TOKEN set or "
                "--admin-token-file",
            )
        if not self.host_ok(scope):
            return (
                403,
                "forbidden",
                "the Host header does not name this server; admin requests must be sent to "
                f"one of {', '.join(sorted(self.hosts))} (--allowed-host adds names)",
            )
        if not self.is_admin(scope):
            return (
                401,
                "unauthorized",
                "admin requests need the header 'Authorization: Bearer <admin token>'",
            )
        return None
