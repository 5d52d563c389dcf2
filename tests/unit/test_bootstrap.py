from __future__ import annotations

import os
import subprocess
from pathlib import Path

from app.config import PROJECT_ROOT

BOOTSTRAP = PROJECT_ROOT / "cluster" / "local" / "bootstrap.sh"


def test_bootstrap_without_java_stops_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "RISKRAY_JAVA_BIN": "/nonexistent/java", "RISKRAY_STATE_DIR": str(tmp_path)}
    result = subprocess.run(["bash", str(BOOTSTRAP)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "bootstrap: Java 17+ is required for Kafka and Spark but '/nonexistent/java' was not found "
        "(apt-get install openjdk-17-jre-headless, or set RISKRAY_JAVA_BIN)"
    ]
