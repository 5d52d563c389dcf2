"""The import rules of ARCHITECTURE section 2, and the promise that importing `app` stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.config import PROJECT_ROOT


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]


def test_the_cli_operations_and_contracts_import_no_ray_spark_xgboost_or_mlflow() -> None:
    core = sorted(f"app.{p.stem}" for p in (PROJECT_ROOT / "app").glob("*.py") if p.stem != "__init__")
    core += sorted(f"app.operations.{p.stem}" for p in (PROJECT_ROOT / "app" / "operations").glob("*.py")
                   if p.stem != "__init__")
    probe = (
        f"import sys, app.cli.main, {', '.join(core)}; "
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'pyspark', 'xgboost', 'mlflow'}); "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_code_passes_the_linter() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run([str(ruff), "check", "."], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
