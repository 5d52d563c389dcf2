"""What every request passes before the API reads it: the body-size bound (413) and, when keys are configured,
the API key (401). ASGI middleware outside the fast path and FastAPI, so both are guarded by the same code.

Only the scoring and labelling endpoints need a key: ``/health`` is for probes and ``/metrics`` for Prometheus
(in Kubernetes a NetworkPolicy limits who reaches them), ``/docs`` and ``/openapi.json`` describe the API. Keys are
compared in constant time, every configured key each time, so neither a key's prefix nor its position shows in
the timing.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings, get_settings
from serve_deployments.fast_path import route_path

KEYED_PATHS = frozenset({"/predict", "/predict/batch", "/labels", "/lists", "/lists/remove"})
API_KEY_SCHEME = "ApiKey"  # pragma: allowlist secret


def configured_keys(settings: Settings) -> list[bytes]:
    if settings.serve_api_keys is None:
        return []
    return [key.strip().encode() for key in settings.serve_api_keys.get_secret_value().split(",") if key.strip()]


def key_is_valid(offered: bytes | None, keys: list[bytes]) -> bool:
    if offered is None:
        return False
    valid = False
    for key in keys:  # no early exit: the time taken does not depend on which key matched
        valid |= hmac.compare_digest(offered, key)
    return valid


class RequestGuard:
    """``app.add_middleware(RequestGuard)`` last, so it is the outermost layer. Settings are read at the first
    request: Serve builds the app where it imports the module, the replica's environment is what counts."""

    def __init__(self, app: ASGIApp, settings: Settings | None = None) -> None:
        self.app = app
        self._settings = settings
        self._keys: list[bytes] | None = None
        self._key_header = b""

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    @property
    def keys(self) -> list[bytes]:
        """The configured keys, parsed once (not per request) with the header they come in."""
        if self._keys is None:
            self._key_header = self.settings.serve_api_key_header.lower().encode()
            self._keys = configured_keys(self.settings)
        return self._keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.settings
        keys = self.keys
        if keys and route_path(scope) in KEYED_PATHS:
            offered = _header(scope, self._key_header)
            if not key_is_valid(offered, keys):
                problem = "missing" if offered is None else "invalid"
                await _reply(send, 401, f"{problem} API key: send a valid key in the {settings.serve_api_key_header}"
                                        " header", [(b"www-authenticate", settings.serve_api_key_header.encode())])
                return
        limit = settings.serve_max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reply(send, 413, f"request body of {int(declared)} bytes is above the bound of {limit} bytes")
            return
        body = _BoundedBody(receive, send, limit)
        await self.app(scope, body.receive, body.send)


class _BoundedBody:
    """Stops a body without a (truthful) content-length at ``limit`` bytes: the client gets 413, the app sees a
    disconnect, and whatever the app sends after that is dropped (the client has its answer)."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive, self._send, self._limit = receive, send, limit
        self._seen = 0
        self.replied = False

    async def receive(self) -> Message:
        if self.replied:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                self.replied = True
                await _reply(self._send, 413, f"request body above the bound of {self._limit} bytes")
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if not self.replied:
            await self._send(message)


async def _reply(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = orjson.dumps({"detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def document(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The OpenAPI schema says what the guard does: 413 on every body, and with keys the scheme, 401 and the
    security requirement on the keyed operations."""
    too_large = {"description": f"body above {settings.serve_max_body_bytes} bytes (or a batch above its bound)"}
    keyed = bool(configured_keys(settings))
    if keyed:
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[API_KEY_SCHEME] = {
            "type": "apiKey", "in": "header", "name": settings.serve_api_key_header}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if "requestBody" in operation:
                operation.setdefault("responses", {})["413"] = too_large
                operation["responses"]["400"] = {"description": "a body that cannot be decoded (not UTF-8)"}
            if keyed and path in KEYED_PATHS:
                operation["security"] = [{API_KEY_SCHEME: []}]
                operation["responses"]["401"] = {"description": "missing or invalid API key"}
    return schema
