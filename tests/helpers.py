"""Running the `riskray` command as a user does: a subprocess, its exit code and what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RISKRAY = Path(sys.executable).parent / "riskray"


def riskray(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RISKRAY), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})
