"""How a process joins this machine's Ray head: the environment it needs before it first imports Ray.

Shared by the head's launcher (``app.operations.ray_head``), the CLI and the lifecycle packages that start or join
Ray (training, scoring), so the rule lives here, below all of them."""

from __future__ import annotations

from app.config import Settings

# Ray's single-machine switch (named for macOS and Windows, where it is the default): the node's IP stays the loopback
# address it was given, so every port Ray opens listens on loopback only. A process that connects to this head must
# run with it too: otherwise it resolves 127.0.0.1 to the machine's IP, where GCS is not.
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def local_only(settings: Settings) -> bool:
    return settings.ray_host in ("127.0.0.1", "localhost", "::1")


def client_environment(settings: Settings) -> dict[str, str]:
    """What a process needs in its environment, before it imports Ray, to join the local head."""
    return {LOCAL_ONLY_ENV: "0"} if local_only(settings) else {}
