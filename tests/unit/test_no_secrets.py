"""No secret in the repository: Yelp's detect-secrets (all its detectors: cloud keys, tokens, private keys,
high-entropy strings, password assignments) over every tracked file. A line that only looks like one (a
test's fake password, the name of a Kubernetes Secret) says so with ``# pragma: allowlist secret``, visible where
it stands. The lockfiles are left out: their sha256 digests of published packages are high-entropy by design."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from app.config import PROJECT_ROOT

NOT_SCANNED = {"uv.lock", "cluster/local/airflow/uv.lock"}
DETECT_SECRETS = Path(sys.executable).parent / "detect-secrets"


def _scan(paths: list[str], cwd: Path) -> dict[str, list[dict]]:
    result = subprocess.run([str(DETECT_SECRETS), "scan", *paths], cwd=cwd, capture_output=True, text=True,
                            check=True, timeout=300)
    return json.loads(result.stdout)["results"]


def test_no_tracked_file_holds_a_secret() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    paths = [p for p in tracked if p not in NOT_SCANNED]
    assert len(paths) > 100
    found = _scan(paths, PROJECT_ROOT)
    assert not found, "secrets in tracked files:\n" + "\n".join(
        f"{path}:{item['line_number']}: {item['type']}" for path, items in found.items() for item in items)


def test_the_scan_finds_what_it_must(tmp_path: Path) -> None:
    planted = tmp_path / "settings.py"
    aws = 'aws_access_key_id = "AKIAIOSFODNN7EXAMPLE"\n'  # pragma: allowlist secret
    slack = f'slack = "https://hooks.slack.com/services/T00000000/B00000000/{"X" * 24}"\n'  # assembled at run time
    password = 'password = "hunter2-but-longer"\n'  # pragma: allowlist secret
    planted.write_text(aws + slack + password)
    found = _scan([planted.name], tmp_path)
    assert {item["type"] for item in found[planted.name]} >= {"AWS Access Key", "Slack Token", "Secret Keyword"}
