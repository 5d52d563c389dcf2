"""The soak (`make soak`): five minutes of /predict at 80 % of the serving capacity, while the stream runs, on the
local stack in a world of its own (benchmarks/soak.env).

Steps, a line each: a fresh soak world; a model trained on a pinned simulated history (no search) and served; the
same history streamed into the store; the streaming job left running with the simulator producing live traffic;
the capacity, measured the serving benchmark's way (closed loop, /predict, concurrency 8) but beside the running
stream, since on two cores the stream takes a share the serving benchmark's figure does not leave; the unloaded
latency (20 requests/s); then the soak itself, open loop (each request sent at its scheduled time, its latency
counted from then: a stall cannot hide by lowering the rate). It passes when no request failed, its p99 is within
2x the unloaded p99 and the predictions table holds exactly one row per answered request.

    make soak                       # SOAK_ARGS="--minutes 1" for a short run
    python benchmarks/soak.py --capacity 1513 --minutes 5   # a fixed capacity (the serving benchmark's, say)
    make soak SOAK_ARGS="--ab-shares 1024 --ab-rounds 4"    # the stream's CPU weight, A/B in one stack
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import db  # noqa: E402
from app.config import Settings, get_settings  # noqa: E402
from app.cpu_weight import BackgroundGroup  # noqa: E402
from app.operations import world  # noqa: E402
from streaming.simulator import Simulator, SimulatorConfig  # noqa: E402
from streaming.sinks import KafkaSink  # noqa: E402

PY = sys.executable
RISKRAY = str(Path(PY).parent / "riskray")
SEED = 20261205
CAPACITY_CONCURRENCY = 8  # the serving benchmark's capacity figure: Serve (HAProxy) /predict at concurrency 8
console = Console(width=160)


def say(step: str) -> None:
    console.print(f"[bold]soak[/bold] {datetime.now(UTC):%H:%M:%S} {step}")


def riskray(*args: str, timeout: float = 900) -> str:
    result = subprocess.run([RISKRAY, *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(f"riskray {' '.join(args)} failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return result.stdout


def soak_ids(count: int, block: int) -> list[uuid.UUID]:
    """Transaction ids of one phase, in a range of their own (rows are counted by it)."""
    return [uuid.UUID(int=(SEED << 64) + (block << 40) + i, version=4) for i in range(count)]


def id_range(block: int) -> tuple[str, str]:
    low, high = (SEED << 64) + (block << 40), (SEED << 64) + ((block + 1) << 40) - 1
    return str(uuid.UUID(int=low, version=4)), str(uuid.UUID(int=high, version=4))


def write_bodies(path: Path, history: pd.DataFrame, count: int, block: int) -> None:
    customers = history["customer_id"].to_numpy()
    merchants = history["merchant_id"].to_numpy()
    amounts = history["amount"].to_numpy()
    with path.open("wb") as out:
        for i, transaction_id in enumerate(soak_ids(count, block)):
            j = (i * 7919) % len(history)
            out.write(orjson.dumps({"amount": float(amounts[j]), "merchant_id": int(merchants[j]),
                                    "customer_id": int(customers[j]), "transaction_id": str(transaction_id),
                                    "country": "DE", "device_type": "web", "currency": "EUR"}) + b"\n")


def load(url: str, bodies: Path, rate: float, seconds: float, connections: int, warmup: float = 0) -> dict:
    """Open loop at `rate` requests/s; rate 0 is closed loop (as fast as `connections` go: the capacity)."""
    out = subprocess.run([PY, str(ROOT / "benchmarks" / "load_client.py"), "--url", url, "--bodies", str(bodies),
                          "--concurrency", str(connections), "--duration", str(seconds), "--rate", str(rate),
                          "--warmup", str(warmup)],
                         capture_output=True, text=True, timeout=seconds + 300)
    if out.returncode != 0:
        raise SystemExit(f"load client failed: {out.stderr[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def logged(block: int, wait_for: int, timeout_s: float = 120) -> int:
    """Prediction rows of one phase once the log has caught up (or the timeout passed)."""
    low, high = id_range(block)
    deadline = time.monotonic() + timeout_s
    while True:
        with db.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM predictions WHERE transaction_id BETWEEN %s AND %s", (low, high))
            rows = int(cur.fetchone()[0])
        if rows >= wait_for or time.monotonic() > deadline:
            return rows
        time.sleep(2)


def compare_shares(settings: Settings, url: str, history: pd.DataFrame, work: Path, rate: float,
                   args: argparse.Namespace, unloaded: dict) -> None:
    """Blocks at ``rate``, the background group's cpu.shares alternating (ABBA...) between the configured value and
    ``args.ab_shares``; the medians per value in a table and a JSON report."""
    group = BackgroundGroup(settings)
    if not group.ensure():
        raise SystemExit(f"no background CPU group to vary: {group.unavailable}")
    values = [settings.background_cpu_shares, args.ab_shares]
    runs: dict[int, list[dict]] = {v: [] for v in values}
    for r in range(args.ab_rounds):
        for shares in values if r % 2 == 0 else values[::-1]:
            group.set_shares(shares)
            say(f"round {r + 1}: {args.ab_seconds:g} s at {rate:,.0f} req/s, the stream's cpu.shares {shares}")
            bodies = work / f"ab-{r}-{shares}.jsonl"
            block = 10 + 2 * r + (shares != values[0])  # ids of their own per block
            write_bodies(bodies, history, int(rate * args.ab_seconds * 1.05) + 1000, block=block)
            runs[shares].append(load(url, bodies, rate, args.ab_seconds, args.connections))
    group.set_shares(values[0])
    riskray("stream", "stop")
    table = Table(title=f"the stream's CPU weight: /predict open loop at {rate:,.0f} req/s, {args.connections} "
                        f"connections, streaming {args.stream_rate:g} tx/s; {args.ab_rounds} blocks of "
                        f"{args.ab_seconds:g} s each, alternating (medians; unloaded p99 {unloaded['p99_ms']:.1f} ms)")
    for column in ("cpu.shares", "blocks", "achieved req/s", "errors", "p50 ms", "p95 ms", "p99 ms", "p99 / unloaded",
                   "p99 of each block"):
        table.add_column(column, justify="right")
    median = statistics.median
    for shares, results in runs.items():
        p99 = median(x["p99_ms"] for x in results)
        table.add_row(f"{shares}", f"{len(results)}", f"{median(x['rps'] for x in results):,.0f}",
                      f"{sum(x['errors'] for x in results):,}", f"{median(x['p50_ms'] for x in results):.1f}",
                      f"{median(x['p95_ms'] for x in results):.1f}", f"{p99:.1f}",
                      f"{p99 / unloaded['p99_ms']:.2f}x", " / ".join(f"{x['p99_ms']:.0f}" for x in results))
    console.print(table)
    out = settings.state_dir / "soak" / f"shares-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rate": rate, "unloaded": unloaded, "runs": {str(k): v for k, v in runs.items()}},
                              indent=2))
    console.print(f"report: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=float, default=None, help="req/s to take 80 %% of (default: measured "
                        "beside the running stream, closed loop at concurrency 8 for 30 s)")
    parser.add_argument("--share", type=float, default=0.8, help="of the capacity")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--stream-rate", type=float, default=100, help="simulated transactions/s while soaking")
    parser.add_argument("--ab-shares", type=int, default=None, metavar="SHARES",
                        help="instead of one soak: blocks at the soak's rate, the stream's CPU group "
                             "(app/cpu_weight.py) alternating between its configured cpu.shares and SHARES, in one "
                             "stack at the same moment (a noisy machine drifts between separate runs)")
    parser.add_argument("--ab-rounds", type=int, default=3)
    parser.add_argument("--ab-seconds", type=float, default=60)
    args = parser.parse_args()
    settings = get_settings()
    if not settings.postgres_db.startswith("riskray_soak"):
        raise SystemExit("the soak runs in its own world: `make soak` (benchmarks/soak.env), never the dev store")
    url = f"http://{settings.ray_host}:{settings.serve_port}/predict"
    soak_s = args.minutes * 60

    say("a fresh soak world (database, topics, registered model)")
    world.reset(settings, airflow=False)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    simulator = Simulator(SimulatorConfig(seed=SEED, customers=2000, merchants=400))
    history = pd.concat(list(simulator.backfill(end - timedelta(days=4), 4)), ignore_index=True)
    history = history[history["timestamp"] < pd.Timestamp(end)].drop(columns="scenario")
    history = history.sort_values("timestamp", ignore_index=True)
    work = Path(tempfile.mkdtemp(prefix="riskray-soak-"))
    history.to_parquet(work / "history.parquet")
    say(f"training on {len(history):,} simulated transactions (no search) and serving the model")
    riskray("train", "--from-file", str(work / "history.parquet"), "--trials", "0")
    riskray("promote")
    riskray("serve", "deploy")
    say("streaming the same history into the store")
    riskray("stream", "start")
    sink = KafkaSink(settings)
    sink.write(history)
    sink.flush(300)
    deadline = time.monotonic() + 600
    while True:
        with db.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM transactions")
            stored = int(cur.fetchone()[0])
        if stored >= len(history):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the stream stored {stored:,} of {len(history):,} transactions in 10 minutes")
        time.sleep(3)
    live_s = soak_s + 180
    say(f"the simulator produces {args.stream_rate:g} transactions/s while the stream runs")
    producer = subprocess.Popen([RISKRAY, "simulate", "--mode", "live", "--rate", str(args.stream_rate),
                                 "--duration", str(live_s), "--seed", str(SEED + 1), "--customers", "2000",
                                 "--merchants", "400"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        time.sleep(10)
        capacity = None
        if args.capacity is None:
            say(f"capacity: 30 s closed loop at concurrency {CAPACITY_CONCURRENCY} (after 20 s of warm-up), beside "
                "the stream")
            capacity_bodies = work / "capacity.jsonl"
            write_bodies(capacity_bodies, history, 20_000, block=3)
            # the warm-up lets Serve's autoscaler add its second replica before the measured 30 s
            capacity = load(url, capacity_bodies, 0, 30, CAPACITY_CONCURRENCY, warmup=20)
            if capacity["errors"]:
                raise SystemExit(f"the capacity run failed {capacity['errors']:,} requests")
            args.capacity = capacity["rps"]
        rate = args.capacity * args.share
        say("unloaded: 30 s at 20 requests/s")
        unloaded_bodies = work / "unloaded.jsonl"
        write_bodies(unloaded_bodies, history, 20 * 40, block=1)
        unloaded = load(url, unloaded_bodies, 20, 30, 2)
        if args.ab_shares is not None:
            compare_shares(settings, url, history, work, rate, args, unloaded)
            return
        say(f"soak: {args.minutes:g} min at {rate:,.0f} requests/s ({args.share:.0%} of {args.capacity:,.0f})")
        soak_bodies = work / "soak.jsonl"
        write_bodies(soak_bodies, history, int(rate * soak_s * 1.05) + 1000, block=2)
        soaked = load(url, soak_bodies, rate, soak_s, args.connections)
    finally:
        os.killpg(producer.pid, signal.SIGTERM)
        producer.wait(timeout=60)
    say("counting the prediction rows of the answered requests")
    answered = {"unloaded": unloaded["requests"] - unloaded["errors"], "soak": soaked["requests"] - soaked["errors"]}
    rows = {"unloaded": logged(1, answered["unloaded"]), "soak": logged(2, answered["soak"])}
    riskray("stream", "stop")
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM transactions")
        streamed = int(cur.fetchone()[0]) - len(history)

    table = Table(title=f"soak: /predict open loop, {args.connections} connections, streaming "
                        f"{args.stream_rate:g} tx/s ({streamed:,} live transactions stored)")
    for column in ("phase", "target req/s", "achieved req/s", "requests", "errors", "reconnects", "p50 ms", "p95 ms",
                   "p99 ms", "max ms", "prediction rows"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    if capacity is not None:
        table.add_row(f"capacity (closed loop, {CAPACITY_CONCURRENCY} connections)", "-", f"{capacity['rps']:,.0f}",
                      f"{capacity['requests']:,}", f"{capacity['errors']:,}", "-", f"{capacity['p50_ms']:.1f}",
                      f"{capacity['p95_ms']:.1f}", f"{capacity['p99_ms']:.1f}", "-", "(not counted)")
    for phase, result in (("unloaded", unloaded), ("soak", soaked)):
        table.add_row(phase, f"{result['target_rps']:,.0f}", f"{result['rps']:,.0f}", f"{result['requests']:,}",
                      f"{result['errors']:,}", f"{result['reconnects']:,}", f"{result['p50_ms']:.1f}",
                      f"{result['p95_ms']:.1f}",
                      f"{result['p99_ms']:.1f}", f"{result['max_ms']:.0f}", f"{rows[phase]:,}")
    console.print(table)
    ratio = soaked["p99_ms"] / unloaded["p99_ms"]
    checks = {
        "no request failed": soaked["errors"] == 0 and unloaded["errors"] == 0,
        f"p99 within 2x the unloaded p99 ({ratio:.2f}x)": ratio <= 2.0,
        "one prediction row per answered request": rows == answered,
        f"the achieved rate held ({soaked['rps']:,.0f} of {rate:,.0f} req/s)": soaked["rps"] >= 0.97 * rate,
    }
    for check, ok in checks.items():
        console.print(f"  {'PASS' if ok else 'FAIL'}  {check}")
    report = {"at": datetime.now(UTC).isoformat(), "capacity": args.capacity, "share": args.share,
              "capacity_run": capacity,
              "unloaded": unloaded, "soak": soaked, "answered": answered, "rows": rows, "streamed": streamed,
              "p99_ratio": ratio, "checks": checks}
    out = settings.state_dir / "soak" / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    console.print(f"report: {out}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
