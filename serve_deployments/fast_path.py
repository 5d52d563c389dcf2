"""A plain-ASGI fast path for the common request, `POST /predict` with a valid JSON body and no query string.

FastAPI's routing, dependency solving and body handling cost ~55 µs of CPU per request (in-process), where
a batched prediction costs little more; end to end the fast path raised Serve's /predict throughput by 20-48 %
(benchmarks/serving_benchmark.py). It validates with the same pydantic model and answers from the same handler.
Anything else, including every invalid body, goes on to FastAPI with its body replayed, so errors, `explain`,
`/docs` and the OpenAPI schema are FastAPI's, unchanged. Serve matches routes for its metrics on the FastAPI app's
routes, not through its middleware, so per-route request metrics are unaffected.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.schemas import PredictionRequest

PredictHandler = Callable[[PredictionRequest, float], Awaitable[dict[str, Any]]]
PATH = "/predict"
_JSON_HEADERS = [(b"content-type", b"application/json")]


class PredictFastPath:
    """ASGI middleware (``app.add_middleware(PredictFastPath)``); until the owner of the model calls `answer_with`,
    every request goes to FastAPI.

    The handler is per process, not per app: Serve runs the replica on an unpickled copy of the FastAPI app, which
    the replica's constructor cannot reach, and a process holds one replica (or one uvicorn worker).
    """

    handler: ClassVar[PredictHandler | None] = None
    headers: ClassVar[list[tuple[bytes, bytes]]] = []  # added to every answer (the replica that answered)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @classmethod
    def answer_with(cls, handler: PredictHandler | None, headers: dict[str, str] | None = None) -> None:
        cls.handler = handler
        cls.headers = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = PredictFastPath.handler
        if (handler is None or scope["type"] != "http" or scope["method"] != "POST" or route_path(scope) != PATH
                or scope["query_string"] or not _is_json(scope)):
            await self.app(scope, receive, send)
            return
        received = time.perf_counter()
        body = await _read_body(receive)
        if body is None:  # the client went away mid-body: nobody to answer
            return
        try:
            transaction = PredictionRequest.model_validate_json(body)
        except ValidationError:
            await self.app(scope, _replay(body, receive), send)
            return
        payload = orjson.dumps(await handler(transaction, received))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_JSON_HEADERS, *PredictFastPath.headers,
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def route_path(scope: Scope) -> str:
    """The path below the app's mount point (Serve's route prefix), as Starlette's router sees it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    return False


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands FastAPI the body already read, then passes on to the server's (a disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
