"""Serving benchmark: Ray Serve (high-throughput mode on and off) vs a bare uvicorn + FastAPI app running the
same request path (serve_deployments.predictor.Predictor: feature store read, model, prediction log, metrics).

    .venv/bin/python benchmarks/serving_benchmark.py --duration 10 --rounds 3

Needs the local stack (PostgreSQL, MLflow with a champion model). Each Serve mode gets its own Ray head (own
ports and temp dir, the mode's environment) with ``--replicas`` replicas of the riskray app (default 2); the
bare app runs under uvicorn with as many workers. Both score concurrent /predict calls together
(serve_deployments.batching.NaturalBatcher). A separate process (benchmarks/load_client.py) loads each in turn
at each concurrency, then /predict/batch at batch sizes 100 and 1,000. Requests name random customers and
merchants of the simulator's id range with the original schema's fields, so each one reads the feature store
(1 s TTL cache). The store is a scratch database seeded with the same history every run
(benchmarks/bench_store.py; ``--store dev`` reads the local stack's own), and the predictions are logged there.
Prints req/s and p50/p95/p99, the Serve/bare ratio, and batch predictions/s. Not a test: the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import db, local_paths  # noqa: E402
from app.config import Settings, get_settings  # noqa: E402
from app.operations import haproxy_loopback, ray_head  # noqa: E402
from app.operations.serving import deployment_options  # noqa: E402
from app.registry import Registry  # noqa: E402
from benchmarks.bench_store import BUSY_MERCHANT_EVERY, scratch_database, seed_history  # noqa: E402

console = Console(width=200)
CUSTOMERS, MERCHANTS = 5000, 1000  # the requests' id ranges, and the seeded store's
STORE_DB = "riskray_serve_bench"
PY = sys.executable
BIN = Path(PY).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bodies(path: Path, count: int, batch: int | None = None) -> Path:
    rng = random.Random(5)

    def one() -> dict:
        return {"amount": round(rng.lognormvariate(3.6, 0.8), 2), "merchant_id": rng.randint(1, MERCHANTS),
                "customer_id": rng.randint(1, CUSTOMERS), "transaction_count": rng.randint(0, 3),
                "avg_amount": round(rng.uniform(5, 90), 2), "country": "DE", "device_type": "pos",
                "currency": "EUR"}

    with path.open("w") as handle:
        for _ in range(count):
            handle.write(json.dumps([one() for _ in range(batch)] if batch else one()) + "\n")
    return path


def wait_http(url: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, json={"amount": 1.0, "merchant_id": 1, "customer_id": 1}, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} never answered")


# A/B switches a mode can carry, as `serve-ha+quiet-haproxy=1+serve-log-warning=0`: each names one per-request
# saving and sets it on (1) or off (0) whatever the product's default; a mode without it runs the product as it is.
LEVERS = {
    "client-header": "the load client sends x-request-disconnect-disabled: ?1",
    "haproxy-header": "HAProxy sets x-request-disconnect-disabled: ?1 on every request",
    "quiet-haproxy": "HAProxy logs only failed or abnormal requests (option dontlog-normal)",
    "serve-log-warning": "the deployment's logging_config.log_level is WARNING (no LogRecord per request)",
    "metrics-2s": "custom metrics reported every 2 s (RAY_metrics_report_interval_ms=2000) instead of Ray's 10 s",
    "haproxy-replay": "HAProxy replays a request whose replica closed without answering (retry-on empty-response)",
}


def parse_mode(mode: str) -> tuple[str, dict[str, bool], str | None]:
    """'serve-ha+quiet-haproxy=1' -> ('serve-ha', {'quiet-haproxy': True}, None); 'bare@fc7b641' -> ('bare', {},
    'fc7b641'): the server runs the code of that commit (a change side by side with the commit before it)."""
    mode, _, revision = mode.partition("@")
    base, *switches = mode.split("+")
    levers: dict[str, bool] = {}
    for switch in switches:
        name, _, value = switch.partition("=")
        if name not in LEVERS or value not in {"0", "1"}:
            raise SystemExit(f"unknown lever {switch!r} in mode {mode!r}: one of {', '.join(LEVERS)}, as NAME=0|1")
        levers[name] = value == "1"
    if base not in {"serve-ha", "serve-default", "bare"}:
        raise SystemExit(f"unknown mode {base!r}")
    if revision and _commit(revision) is None:
        raise SystemExit(f"unknown commit {revision!r} in mode {mode!r}@{revision}")
    return base, levers, revision or None


def _commit(revision: str) -> str | None:
    found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", "--short",
                            f"{revision}^{{commit}}"], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def source_tree(revision: str | None) -> Path:
    """The project's code at ``revision`` (a ``git archive`` in a temp folder, kept for the run), or this tree. The
    server's processes import riskray from there first (PYTHONPATH), the environment stays this one's."""
    if revision is None:
        return ROOT
    folder = Path(tempfile.gettempdir()) / f"riskray-bench-{_commit(revision)}"
    if not (folder / "serve_deployments").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def load(url: str, body_file: Path, concurrency: int, duration: float, headers: list[str] = ()) -> dict:
    out = subprocess.run([PY, str(ROOT / "benchmarks" / "load_client.py"), "--url", url, "--bodies", str(body_file),
                          "--concurrency", str(concurrency), "--duration", str(duration),
                          *(arg for header in headers for arg in ("--header", header))],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class RayServe:
    """A private Ray head with the riskray Serve app (``replicas`` replicas), high-throughput mode on or off."""

    def __init__(self, high_throughput: bool, version: str, replicas: int = 1,
                 levers: dict[str, bool] | None = None, tree: Path = ROOT) -> None:
        levers = levers or {}
        self.temp = Path(tempfile.mkdtemp(prefix="rrsb-", dir="/tmp"))
        self.port = free_port()
        self.gcs = free_port()
        # the stack's own Ray head environment (ray_head.environment), on a private state folder and ports
        self.settings = settings = get_settings().model_copy(update={
            "state_dir": self.temp, "serve_high_throughput": high_throughput,
            "serve_haproxy_stats_port": free_port(), "serve_haproxy_metrics_port": free_port()})
        ray_head.prepare(settings)
        env = {**os.environ, **ray_head.environment(settings), "RISKRAY_SERVE_PORT": str(self.port),
               "RISKRAY_RAY_METRICS_EXPORT_PORT": str(free_port())}
        if tree != ROOT:
            env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        for lever, variable in (("haproxy-header", haproxy_loopback.DISCONNECT_DISABLED_ENV),
                                ("quiet-haproxy", haproxy_loopback.QUIET_LOG_ENV)):
            if lever in levers:
                env[variable] = "1" if levers[lever] else "0"
        if "haproxy-replay" in levers:
            env[ray_head.SERVE_RETRY_ON_ENV] = ray_head.SERVE_RETRY_ON if levers["haproxy-replay"] else "conn-failure"
        if "metrics-2s" in levers:
            if levers["metrics-2s"]:
                env["RAY_metrics_report_interval_ms"] = "2000"
            else:
                env.pop("RAY_metrics_report_interval_ms", None)
        options = deployment_options()
        if "serve-log-warning" in levers:
            logging_config = dict(options.get("logging_config", {}))
            if levers["serve-log-warning"]:
                logging_config["log_level"] = "WARNING"
            else:
                logging_config.pop("log_level", None)
            options["logging_config"] = logging_config
        self.env = env
        self.head = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={self.gcs}",
             "--include-dashboard=false", f"--temp-dir={local_paths.ray_temp_dir(settings)}", "--num-cpus=2",
             f"--metrics-export-port={env['RISKRAY_RAY_METRICS_EXPORT_PORT']}", "--disable-usage-stats"],
            cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        script = (
            "import ray, time; from ray import serve; "
            f"ray.init(address='127.0.0.1:{self.gcs}'); "
            f"serve.start(http_options={{'host': '127.0.0.1', 'port': {self.port}}}); "
            "from serve_deployments.app import FraudDetector; "
            f"serve.run(FraudDetector.options(num_replicas={replicas}, **{options!r}, "
            f"user_config={{'champion': '{version}'}}).bind(), "
            "name='riskray', route_prefix='/', blocking=False); print('deployed', flush=True)"
        )
        time.sleep(5)
        deployed = subprocess.run([PY, "-c", script], cwd=tree, env=env, capture_output=True, text=True, timeout=300)
        if deployed.returncode != 0:
            self.close()
            raise RuntimeError(f"Serve deploy failed: {deployed.stderr.strip().splitlines()[-1:]}")
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(self.url + "/predict")

    def close(self) -> None:
        """Stop the head and every process it started: a replica and HAProxy were seen outliving a SIGINT to the
        head's process group and serving on, skewing the next mode's numbers."""
        try:
            family = psutil.Process(self.head.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        os.killpg(self.head.pid, signal.SIGINT)
        try:
            self.head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.head.pid, signal.SIGKILL)
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(family, timeout=10)
        ray_head.remove_sockets(self.settings)
        shutil.rmtree(self.temp, ignore_errors=True)


class Bare:
    def __init__(self, version: str, workers: int = 1, tree: Path = ROOT) -> None:
        self.port = free_port()
        env = {**os.environ, "RISKRAY_BENCH_MODEL": version}
        if tree != ROOT:
            env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.process = subprocess.Popen(
            [str(BIN / "uvicorn"), "benchmarks.bare_app:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--no-access-log", "--log-level", "warning", "--workers", str(workers)],
            cwd=tree, env=env, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(self.url + "/predict")

    def close(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--modes", nargs="+", default=["serve-ha", "serve-default", "bare"],
                        help="serve-ha, serve-default or bare, each optionally with A/B levers, e.g. "
                             "serve-ha+quiet-haproxy=0, and @COMMIT to run that commit's code (serve-ha@HEAD~1 "
                             "beside serve-ha: a change against the commit before it); levers: "
                             + "; ".join(f"{k}: {v}" for k, v in LEVERS.items()))
    parser.add_argument("--batches", type=int, nargs="*", default=[100, 1000],
                        help="/predict/batch sizes to load (none: single requests only)")
    parser.add_argument("--replicas", type=int, default=2,
                        help="Serve replicas and bare uvicorn workers (2 = the local config's maximum: one Python "
                             "process per core)")
    parser.add_argument("--distinct", type=int, default=100_000,
                        help="distinct request bodies. The default makes a body come back within the 1 s feature "
                             "cache's TTL for a few %% of requests at most, whatever the server's speed (with 5,000, "
                             "a faster server got more cache hits and so less store work); a few (e.g. 50) keep "
                             "the cache warm, so the store read leaves the request path and the serving overhead "
                             "shows")
    parser.add_argument("--store", choices=["seeded", "dev"], default="seeded",
                        help="seeded: a scratch database with the same history every run (default); dev: the "
                             "local stack's database as it is")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every mode this many times, in turn (every other round in reverse order), and "
                             "report each cell's median run")
    args = parser.parse_args()
    for mode in args.modes:
        parse_mode(mode)  # a misspelt lever fails now, not after the first mode's run
    settings = get_settings()
    with Registry(settings) as registry:
        champion = registry.by_alias("champion")
    if champion is None:
        raise SystemExit("no champion model: train and promote one first (riskray train; riskray promote)")
    if args.store == "seeded":
        store = scratch_database(settings, STORE_DB)
        counts = seed_history(store, CUSTOMERS, MERCHANTS)
        os.environ["RISKRAY_POSTGRES_DB"] = STORE_DB  # every server below reads and logs there
        console.print(f"store: {STORE_DB}, seeded with {counts['features']:,} card tiles and "
                      f"{counts['merchant_features']:,} merchant tiles (every {BUSY_MERCHANT_EVERY}th merchant a "
                      f"tile a minute), empty predictions table")
    else:
        console.print(f"store: the local stack's {settings.postgres_db}, as it is")
    work = Path(tempfile.mkdtemp(prefix="riskray-serve-bench-"))
    single = bodies(work / "single.jsonl", args.distinct)
    # as many distinct rows as single bodies: a batch file that comes round within the cache TTL measures hits
    batches = {size: bodies(work / f"batch{size}.jsonl", max(20, args.distinct // size), batch=size)
               for size in args.batches}
    rows: list[dict] = []
    for round_ in range(1, args.rounds + 1):
        # ABBA: every other round runs the modes in reverse, so no mode always follows another (the predictions
        # table grows through the run, and a mode that always comes later writes into a larger one)
        for mode in (args.modes if round_ % 2 else list(reversed(args.modes))):
            console.print(f"[bold]{mode}[/]: starting (round {round_} of {args.rounds})")
            rows.extend(run_mode(mode, champion.version, args, single, batches))
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    print_table(median_rows(rows), champion.version, args)
    if args.store == "seeded":
        print_outcomes(store)
    console.print(f"raw results (every round): {work / 'results.json'}")


def run_mode(mode: str, version: str, args: argparse.Namespace, single: Path, batches: dict[int, Path]) -> list[dict]:
    rows: list[dict] = []
    base, levers, revision = parse_mode(mode)
    headers = [f"{haproxy_loopback.DISCONNECT_DISABLED_HEADER}: ?1"] if levers.get("client-header") else []
    tree = source_tree(revision)
    server = (Bare(version, args.replicas, tree) if base == "bare"
              else RayServe(base == "serve-ha", version, args.replicas, levers, tree))
    try:
        for concurrency in args.concurrency:
            result = load(server.url + "/predict", single, concurrency, args.duration, headers)
            rows.append({"mode": mode, "kind": "predict", **result})
            console.print(f"  /predict c={concurrency}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
                          f"p95 {result['p95_ms']:.1f} ms, errors {result['errors']}")
        for size, body_file in batches.items():
            result = load(server.url + "/predict/batch", body_file, 2, args.duration, headers)
            rows.append({"mode": mode, "kind": f"batch{size}", **result, "pps": result["rps"] * size})
            console.print(f"  /predict/batch x{size}: {result['rps'] * size:,.0f} predictions/s, "
                          f"p50 {result['p50_ms']:.1f} ms, errors {result['errors']}")
    finally:
        server.close()
    return rows


def print_outcomes(store: Settings) -> None:
    """What the benchmark's answers decided (the logged predictions): reasons are computed for reviews and declines
    only, so their share is what the outcome path costs here."""
    with db.connection(store) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(outcome, 'none (code before outcomes)'), count(*) FROM predictions GROUP BY 1 "
                    "ORDER BY 2 DESC")
        counts = cur.fetchall()
    total = sum(n for _, n in counts) or 1
    console.print("outcomes of the logged answers: " + ", ".join(f"{o} {n / total:.2%}" for o, n in counts))


def median_rows(rows: list[dict]) -> list[dict]:
    """Per cell (mode, endpoint, concurrency), the round with the median req/s, in first-seen order: the machine's
    noise moves single runs by ±10-20 %."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["mode"], r["kind"], r["concurrency"]), []).append(r)
    return [sorted(runs, key=lambda r: r["rps"])[(len(runs) - 1) // 2] for runs in cells.values()]


def print_table(rows: list[dict], version: str, args: argparse.Namespace) -> None:
    rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    table = Table(title=f"Serving, model version {version}, {args.duration:.0f} s per cell{rounds}, "
                        f"{args.replicas} replica(s) / uvicorn worker(s), {args.distinct} distinct requests")
    for column in ("mode", "endpoint", "concurrency", "req/s", "predictions/s", "p50 ms", "p95 ms", "p99 ms",
                   "errors", "vs bare"):
        table.add_column(column, justify="left" if column in {"mode", "endpoint"} else "right")
    bare = {(r["kind"], r["concurrency"]): r for r in rows if r["mode"] == "bare"}
    for r in rows:
        base = bare.get((r["kind"], r["concurrency"]))
        ratio = f"{r['rps'] / base['rps']:.0%}" if base and r["mode"] != "bare" else ""
        size = 1 if r["kind"] == "predict" else int(r["kind"][5:])
        table.add_row(r["mode"], "/predict" if size == 1 else f"/predict/batch x{size}", str(r["concurrency"]),
                      f"{r['rps']:,.0f}", f"{r['rps'] * size:,.0f}", f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}",
                      f"{r['p99_ms']:.1f}", str(r["errors"]), ratio)
    console.print(table)


if __name__ == "__main__":
    main()
