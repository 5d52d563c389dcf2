"""Every command given a bad argument, against the real stack: one line on stderr, a non-zero exit, never a
traceback. Bad values, bad dates, an unknown model version, a period with no data, a missing file, an unknown
command or option."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.config import Settings
from streaming.simulator import Simulator, SimulatorConfig
from tests.helpers import riskray

from .served_world import World

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def transactions_file(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = next(iter(Simulator(SimulatorConfig(seed=3, customers=50, merchants=20)).backfill(
        datetime(2026, 5, 1, tzinfo=UTC), 1)))
    path = tmp_path_factory.mktemp("cli") / "transactions.parquet"
    frame.drop(columns="scenario").to_parquet(path)
    return path


def _mistakes(data: Path, tmp: Path) -> list[tuple[list[str], str]]:
    """(arguments, what the one line must say)."""
    out = str(tmp / "scores.parquet")
    return [
        (["simulate", "--days", "0"], "Invalid value for '--days'"),
        (["simulate", "--mode", "sideways"], "Invalid value for '--mode'"),
        (["simulate", "--mode", "backfill", "--days", "1", "--out", str(tmp / "x.txt")], ".parquet or .csv"),
        (["simulate", "--scenario", "nonsense"], "expected NAME=SHARE"),
        (["simulate", "--drift-at", "next tuesday"], "Invalid value for '--drift-at'"),
        (["train", "--since", "2026-02-30"], "Invalid value for '--since'"),
        (["train", "--from-file", str(tmp / "missing.parquet")], "missing.parquet"),
        (["train", "--since", "2031-01-01", "--until", "2031-01-02"], "no transactions between"),  # no data
        (["promote", "999999"], "999999"),
        (["score", "--from-file", str(data), "--since", "2026-05-01", "--model", "999999", "--out", out], "999999"),
        (["score", "--from-file", str(data), "--since", "2031-01-01", "--out", out], "no transactions"),
        (["score", "--from-file", str(tmp / "missing.parquet"), "--since", "2026-05-01", "--out", out], "missing"),
        (["compare", "--challenger", "999999", "--champion", "999998"], "999999"),
        (["compare", "--metric", "accuracy"], "Invalid value for '--metric'"),
        (["drift", "--as-of", "yesterday"], "Invalid value for '--as-of'"),
        (["demo", "--today", "2026-13-01"], "Invalid value for '--today'"),
        (["stream", "nonsense"], "No such command 'nonsense'"),
        (["serve", "deploy", "--replicas", "-1"], "--replicas"),
        (["cluster", "render", "--overlay", "nope"], "No such option: --overlay"),
        (["monitor", "snapshot", "--out", str(tmp / "no" / "such" / "dir" / "x.png"), "--hours", "0"], "--hours"),
    ]


def test_every_command_given_a_bad_argument_says_so_in_one_line_without_a_traceback(
    served_world: World, transactions_file: Path, tmp_path: Path
) -> None:
    """In the served world, so a model is registered and 'an unknown version' is one among known ones."""
    from concurrent.futures import ThreadPoolExecutor

    mistakes = _mistakes(transactions_file, tmp_path)
    with ThreadPoolExecutor(max_workers=4) as pool:  # independent processes: the CPUs stay busy during start-up
        results = list(pool.map(lambda case: riskray(*case[0], timeout=300), mistakes))
    problems = []
    for (args, expected), result in zip(mistakes, results, strict=True):
        said = result.stderr.strip().splitlines()
        if (result.returncode == 0 or "Traceback" in result.stdout + result.stderr or len(said) != 1
                or expected not in said[0]):
            problems.append(f"riskray {' '.join(args)} -> exit {result.returncode}, stderr {result.stderr[-600:]!r}")
    assert not problems, "\n".join(problems)
