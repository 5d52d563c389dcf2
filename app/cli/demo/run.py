"""`riskray demo`: the whole loop on this machine, phase by phase, then the report (app/cli/demo/report.py).

1 stack up (and the demo's world made fresh) · 2 history through Kafka -> Spark -> PostgreSQL · 3 the first champion
trained (Tune k-fold CV + Ray Train), promoted and served · 4 live traffic scored over HTTP, the nightly check after
each day · 5 the simulator's drift on, the nightly checks going on · 6 the retraining DAG triggered over Airflow's
REST API and followed, live traffic going on · 7 traffic served by the new champion · 8 the report. What the demo
started it stops again at the end (unless ``keep_running``) and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from app import job_results, model_artifact
from app.cli.demo.interrupts import INTERRUPTS
from app.cli.demo.plan import DemoPlan, Timeline, dag_conf, timeline, world_days
from app.config import Settings
from app.errors import UserError

PHASES = 8

class DemoError(UserError, RuntimeError):
    pass


@dataclass
class Started:
    """What this demo started (and so stops): the stack, or the parts of a running one it added."""

    stack: bool = False
    airflow: bool = False
    stream: bool = False
    serve: bool = False


@dataclass
class Phase:
    name: str
    seconds: float
    figure: str


@dataclass
class DemoState:
    """Everything the report needs, filled in phase by phase."""

    plan: DemoPlan
    line: Timeline
    run_dir: Path
    phases: list[Phase] = field(default_factory=list)
    history_produced: int = 0
    first_champion: dict[str, Any] = field(default_factory=dict)
    new_champion: str | None = None
    dag_run_id: str | None = None
    dag_state: str | None = None
    dag_tasks: list[Any] = field(default_factory=list)
    drift_report: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    backtest: dict[str, Any] | None = None  # training.backtest.Backtest of champion vs challenger, held out
    switch_event_time: datetime | None = None
    replay: Any = None  # streaming.replay.ReplayStats
    labels: Any = None  # streaming.label_feed.LabelFeed: the label events sent during the replay, the true frauds
    replay_chunks: list[tuple[datetime, dict[str, int]]] = field(default_factory=list)  # per step: answers by version
    daily: list[Any] = field(default_factory=list)  # app.reports.MonitoringReport: the nightly check of each live day


class Demo:
    def __init__(self, settings: Settings, plan: DemoPlan, run_dir: Path, console: Console,
                 keep_running: bool = False, today: datetime | None = None) -> None:
        today = (today or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=UTC)
        self.settings, self.plan, self.console, self.keep_running = settings, plan, console, keep_running
        self.state = DemoState(plan, timeline(plan, today, settings.label_delay_days), run_dir)
        self.started = Started()
        self.logs = run_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._child: subprocess.Popen[str] | None = None
        self._replay: Any = None
        self._traffic: threading.Thread | None = None
        self._traffic_error: BaseException | None = None

    # --- the run ---------------------------------------------------------------------------------------------
    def run(self) -> DemoState:
        finished = False
        try:
            self._phase(1, "stack", self.stack_up)
            days = self._world()
            self._phase(2, "history", lambda: self.history(days))
            self._phase(3, "champion", self.first_champion)
            source = self._chunks(days)
            self._phase(4, "live", lambda: self.live(source, self.state.line.drift_at, "same world"))
            self._phase(5, "drift", lambda: self.live(source, self.state.line.trigger_at, "drift on"))
            self._phase(6, "retraining", lambda: self.retraining(source))
            self._phase(7, "after", self.after_switch)
            self._phase(8, "report", self.report)
            finished = True
            return self.state
        finally:
            self._stop_traffic()
            if self._child is not None and self._child.poll() is None:
                self._child.kill()
            if not (finished and self.keep_running):
                self.stop_started()

    def _phase(self, number: int, name: str, body: Any) -> None:
        began = time.monotonic()
        INTERRUPTS.check()
        self.console.print(f"[bold][{number}/{PHASES}] {name:<10}[/bold] ...")
        figure = body()
        INTERRUPTS.check()
        took = time.monotonic() - began
        self.state.phases.append(Phase(name, took, figure))
        self.console.print(f"[bold][{number}/{PHASES}] {name:<10}[/bold] {figure}  [dim]({took:.0f} s)[/dim]")

    # --- 1: the stack and the world ------------------------------------------------------------------------
    def stack_up(self) -> str:
        from app.operations import airflow, manager, serving, supervisor, world
        from app.operations import stream as stream_program
        from app.operations.errors import StackError

        s, log = self.settings, self._log("stack")

        def say(line: str) -> None:  # each service reports as it starts: a swallowed interrupt is noticed soon
            INTERRUPTS.check()
            log(line)

        was_up = supervisor.is_running(s)
        airflow_up = was_up and supervisor.process_state(s, airflow.API_SERVER.name) == "RUNNING"
        self.started.stack = not was_up
        try:
            manager.up(s, echo=say)
        except StackError as error:
            raise DemoError(f"{error} (the demo runs in its own world, database {s.postgres_db}: a stack started "
                            "for another one cannot serve it)") from error
        if was_up:  # a running stack of this world: the demo's own programs go before their state is reset
            supervisor.stop(s, stream_program.NAME)
            with serving.ServeClient(s) as client, contextlib.suppress(serving.ServeError):
                client.shutdown()
        world.reset(s, airflow=not airflow_up)
        self.started.airflow = not airflow_up
        manager.up(s, echo=say, groups=(airflow.GROUP,))
        names = ", ".join(x.name for x in manager.SERVICES if x.group in (None, airflow.GROUP))
        return f"{'started' if self.started.stack else 'already up'}: {names}; world {s.postgres_db} made fresh"

    def _world(self) -> Iterator[pd.DataFrame]:
        from streaming.simulator import DriftConfig, Simulator, SimulatorConfig

        p, line = self.plan, self.state.line
        config = SimulatorConfig(seed=p.seed, customers=p.customers, merchants=p.merchants,
                                 drift=DriftConfig(at=line.drift_at, amount_factor=p.amount_factor))
        return Simulator(config).backfill(line.world_start, world_days(p))

    # --- 2: history --------------------------------------------------------------------------------------------
    def history(self, days: Iterator[pd.DataFrame]) -> str:
        from app.operations import stream as stream_program
        from app.operations import supervisor
        from streaming.sinks import KafkaSink

        sink = KafkaSink(self.settings)
        with self._bar(f"history {self.plan.history_days} days -> Kafka", self.plan.history_days) as advance:
            for _ in range(self.plan.history_days):
                frame = next(days)
                sink.write(frame)
                self.state.history_produced += len(frame)
                advance()
        sink.close()
        # the job starts after the history is in Kafka: its first micro-batch reads all of it, none of it late
        supervisor.start(self.settings, stream_program.NAME)
        self.started.stream = True
        produced = self.state.history_produced
        with self._bar("stream -> PostgreSQL (tiles)", produced) as advance:
            done = 0
            deadline = time.monotonic() + 900
            while (stored := self._tiled()) < produced:
                advance(stored - done)
                done = stored
                self._check_stream()
                if time.monotonic() > deadline:
                    raise DemoError(f"the stream stored {stored:,} of {produced:,} history rows in 15 minutes")
                time.sleep(1)
            advance(produced - done)
        return f"{produced:,} transactions of {self.plan.history_days} days -> Kafka -> Spark -> PostgreSQL"

    def _tiled(self) -> int:
        from app import db

        with db.connection(self.settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT coalesce(sum(transaction_count), 0) FROM features")
            return int(cur.fetchone()[0])

    def _check_stream(self) -> None:
        from app.operations import stream as stream_program
        from app.operations import supervisor

        state = supervisor.process_state(self.settings, stream_program.NAME)
        if state not in {"RUNNING", "STARTING"}:
            log = supervisor.log_path(self.settings, stream_program.NAME)
            raise DemoError(f"the streaming job is {state}; see {log}")

    # --- 3: the first champion -----------------------------------------------------------------------------
    def first_champion(self) -> str:
        from app.registry import Registry

        p, line = self.plan, self.state.line
        trained = self._riskray("train", ["train", "--since", _cli(line.train_start), "--until", _cli(line.live_start),
                                          "--trials", str(p.trials), "--folds", str(p.folds),
                                          "--cv-gap-days", f"{p.cv_gap_days:g}"])
        model = _result(trained, job_results.MODEL)
        version = str(model["version"])
        self._keep_training_plots(f"champion-v{version}")
        self._riskray("promote", ["promote", version])
        self._riskray("serve", ["serve", "deploy"])
        self.started.serve = True
        with Registry(self.settings) as registry:
            metrics = registry.run_metrics(registry.version(version))
        self.state.first_champion = {"version": version, **metrics}
        cv = metrics.get("cv_auc_mean")
        return (f"version {version}: Tune {p.trials} trial(s) x {p.folds}-fold CV"
                + (f" (CV AUC {cv:.3f})" if cv is not None else "")
                + f", test AUC {metrics.get('test_roc_auc', float('nan')):.3f}; "
                  f"promoted; Serve answers on {self._api_url()}")

    # --- 4, 5: live traffic --------------------------------------------------------------------------------
    def _chunks(self, days: Iterator[pd.DataFrame]) -> Iterator[tuple[pd.Timestamp, pd.DataFrame]]:
        from app.schemas import LabelEvent
        from streaming.label_delays import LabelDelayConfig
        from streaming.label_feed import LabelFeed
        from streaming.replay import Replay, chunks
        from streaming.sinks import KafkaSink

        s, p = self.settings, self.plan
        scale = p.label_time_scale(LabelDelayConfig().chargeback_limit_days)
        self.state.labels = LabelFeed(LabelDelayConfig(seed=p.seed, time_scale=scale),
                                      KafkaSink(s, s.kafka_labels_topic, LabelEvent))
        self._replay = Replay(s, self._api_url(), labels=self.state.labels)
        return chunks(days, p.chunk_minutes)

    def live(self, source: Iterator[tuple[pd.Timestamp, pd.DataFrame]], until: datetime, what: str) -> str:
        stats = self._replay.stats
        before = (stats.answered, stats.failed, stats.produced, self.state.labels.sent)
        steps = int((until - (stats.event_time or self.state.line.live_start)).total_seconds() // 60
                    // self.plan.chunk_minutes)
        began = time.monotonic()
        with self._bar(f"{what}: replay -> Kafka + /predict, /predict/batch", steps) as advance:
            self._replay.run(source, on_chunk=lambda s: (self._note_chunk(s), advance()), until=pd.Timestamp(until))
        answered, failed = stats.answered - before[0], stats.failed - before[1]
        took = time.monotonic() - began
        checks = self.daily_checks(until)
        return (f"{what}: {stats.produced - before[2]:,} transactions scored over HTTP ({answered:,} answered, "
                f"{failed} failed, {answered / took if took else 0:,.0f}/s), no label in them, "
                f"{self.state.labels.sent - before[3]:,} label events as they came; up to {until:%Y-%m-%d %H:%M}; "
                f"{checks}")

    def daily_checks(self, until: datetime) -> str:
        """The nightly check after each live day replayed up to ``until`` (`riskray drift --daily-from`: a
        one-day drift window, stored as the nightly run stores it), once the store holds what was served and
        reported by then."""
        from app.cli.demo.report import daily_row, wait_for_logged
        from monitoring.run import run_daily

        first = (self.state.daily[-1].as_of if self.state.daily else self.state.line.live_start) + timedelta(days=1)
        if first > until:
            return "no day ended"
        stored, sent = self._replay.wait_for_labels(), self.state.labels.sent
        if stored < sent:
            raise DemoError(f"the store holds {stored:,} of the {sent:,} label events sent after 120 s: is the "
                            "streaming job's labels query running? (`riskray stream status`)")
        logged, _ = wait_for_logged(self.settings, self._replay.stats.answered)
        if logged < self._replay.stats.answered:
            raise DemoError(f"the prediction log holds {logged:,} of the {self._replay.stats.answered:,} answers "
                            "after 60 s: the nightly check would judge a partial day")
        daily = self.settings.model_copy(update={"drift_window_days": 1.0})

        def say(report: Any) -> None:
            row = daily_row(report)
            self.console.print(f"      nightly check as of {row.as_of:%Y-%m-%d}: {row.verdict}; {row.accuracy}")

        done = run_daily(daily, first, until, say)
        self.state.daily += done
        acted = [r for r in done if r.retrain]
        return (f"{len(done)} nightly check(s): " + ("all quiet (no retrain)" if not acted else
                f"retrain from {acted[0].as_of:%Y-%m-%d} ({', '.join(acted[0].triggers)})"))

    def _note_chunk(self, stats: Any) -> None:
        self.state.replay_chunks.append((stats.event_time, dict(stats.by_version)))

    # --- 6: the retraining run -----------------------------------------------------------------------------
    def retraining(self, source: Iterator[tuple[pd.Timestamp, pd.DataFrame]]) -> str:
        from app.cli.demo.airflow_runs import AirflowRuns
        from app.registry import CHAMPION, Registry

        self._labels_known_at(self.state.line.as_of)
        self._start_traffic(source)
        runs = AirflowRuns(self.settings)
        try:
            runs.wait_for_dag()
            conf = dag_conf(self.plan, self.state.line, self.settings.label_delay_days,
                            self.settings.label_horizon_days)
            run_id = runs.trigger(conf)
            self.state.dag_run_id = run_id
            self.console.print(f"      triggered {run_id} over {self.settings.airflow_url}/api/v2 "
                               f"(as_of {conf['as_of']})")
            began = time.monotonic()

            def say(task: Any) -> None:
                self._check_traffic()
                self.console.print(f"      {task.task_id:<16} {task.state:<16} "
                                   f"{'' if task.duration is None else f'{task.duration:.0f} s'}  "
                                   f"[dim](+{time.monotonic() - began:.0f} s)[/dim]")

            self.state.dag_state = runs.follow(run_id, 45 * 60, say)
            self.state.dag_tasks = runs.tasks(run_id)
            states = {t.task_id: t.state for t in self.state.dag_tasks}
            if states.get("check_drift") == "success":
                self.state.drift_report = runs.xcom(run_id, "check_drift", "report")
            if states.get("evaluate") == "success":
                self.state.comparison = runs.xcom(run_id, "evaluate", "comparison")
        finally:
            runs.close()
        self._check_traffic()
        if self.state.dag_state != "success":
            raise DemoError(f"the retraining run {run_id} ended {self.state.dag_state}: {states}; see "
                            f"{self.settings.airflow_url}")
        with Registry(self.settings) as registry:
            champion = registry.by_alias(CHAMPION)
        self.state.new_champion = champion.version if champion else None
        if states.get("deploy") == "success":
            self._keep_training_plots(f"champion-v{self.state.new_champion}")
        path = " -> ".join(f"{t} {states.get(t)}" for t in ("check_drift", "retrain", "evaluate", "deploy", "validate"))
        return (f"run {run_id} {self.state.dag_state}: {path}; champion {self.state.first_champion['version']} -> "
                f"{self.state.new_champion}")

    def _labels_known_at(self, as_of: datetime) -> None:
        """The run judges as of ``as_of``, ahead of the replay's event time: the labels of the traffic so far that
        are reported by then go out now, and the store holds them before the run reads any (else what it reads
        would depend on how fast the traffic runs beside it)."""
        sent = self._replay.release_labels(pd.Timestamp(as_of))
        stored, total = self._replay.wait_for_labels(), self.state.labels.sent
        if stored < total:
            raise DemoError(f"the store holds {stored:,} of the {total:,} label events sent after 120 s: is the "
                            "streaming job's labels query running? (`riskray stream status`)")
        self.console.print(f"      {sent:,} label events reported by {as_of:%Y-%m-%d %H:%M} sent ahead of the "
                           f"traffic; the store holds all {total:,} sent so far")

    def _start_traffic(self, source: Iterator[tuple[pd.Timestamp, pd.DataFrame]]) -> None:
        def traffic() -> None:
            try:
                self._replay.run(source, on_chunk=self._note_chunk, min_chunk_seconds=self.plan.min_chunk_seconds)
            except BaseException as error:  # reported by the main thread
                self._traffic_error = error

        self._traffic = threading.Thread(target=traffic, name="live-traffic", daemon=True)
        self._traffic.start()

    def _check_traffic(self, running: bool = True) -> None:
        """The live traffic failed (or, with ``running``, ended before it was stopped): the demo stops."""
        if self._traffic_error is not None:
            raise DemoError(f"the live traffic stopped: {self._traffic_error}") from self._traffic_error
        if running and self._traffic is not None and not self._traffic.is_alive():
            raise DemoError("the live traffic ran out of simulated days before the retraining run ended")

    def _stop_traffic(self) -> None:
        """Idempotent: after the last step of live traffic, and again (a no-op) when the demo ends."""
        if self._replay is not None:
            self._replay.stop()
        if self._traffic is not None:
            self._traffic.join(timeout=120)
            self._traffic = None
        if self._replay is not None:
            self._replay.close()

    # --- 7: after the switch -------------------------------------------------------------------------------
    def after_switch(self) -> str:
        new = self.state.new_champion
        stats = self._replay.stats
        wanted = stats.chunks + self.plan.after_switch_chunks
        deadline = time.monotonic() + 600
        while stats.chunks < wanted:
            self._check_traffic()
            if time.monotonic() > deadline:
                raise DemoError("the live traffic made no progress after the switch")
            time.sleep(0.5)
        self._stop_traffic()
        self._check_traffic(running=False)
        self.state.switch_event_time = stats.first_answer_of.get(str(new))
        self.state.replay = stats
        return (f"{stats.by_version.get(str(new), 0):,} predictions answered by version {new} (model_version in every "
                f"answer); {stats.failed} requests failed in all")

    # --- 8: the report -------------------------------------------------------------------------------------
    def report(self) -> str:
        from app.cli.demo import report

        try:
            self._backtest()
        except (DemoError, OSError, ValueError) as error:  # the report still comes, its backtest check says why
            self.console.print(f"      [red]backtest failed[/red]: {error}")
        written = report.write(self.settings, self.state, self.console)
        return f"{written}"

    def _backtest(self) -> None:
        """The old champion and the challenger replayed over the run's held-out period (`riskray backtest`), as a
        team would before going live; after the traffic, so it does not compete with it."""
        cmp = self.state.comparison
        if not cmp or not cmp.get("champion"):
            return
        out = self.state.run_dir / "backtest"
        self._riskray("backtest", ["backtest", "--since", cmp["since"][:19], "--until", cmp["until"][:19],
                                   "--model", cmp["champion"]["version"], "--model", cmp["challenger"]["version"],
                                   "--out", str(out)])
        self.state.backtest = json.loads((out / "backtest.json").read_text())
        self.console.print(f"      backtest of v{cmp['champion']['version']} and v{cmp['challenger']['version']} "
                           f"on the held-out period: {out / 'backtest.md'}")

    # --- stopping ------------------------------------------------------------------------------------------
    def stop_started(self) -> None:
        from app.operations import airflow, manager, serving, supervisor
        from app.operations import stream as stream_program

        s, say = self.settings, self._log("stop")
        if not supervisor.is_running(s):
            return
        if self.started.stack:
            self.console.print("      stopping the stack the demo started ...")
            manager.down(s, echo=say)
            return
        if self.started.stream:
            supervisor.stop(s, stream_program.NAME)
        if self.started.serve:
            with serving.ServeClient(s) as client, contextlib.suppress(serving.ServeError):
                client.shutdown()
        if self.started.airflow:
            _stop_dag_jobs(s)
            manager.stop_group(s, airflow.GROUP, echo=say)

    # --- helpers -----------------------------------------------------------------------------------------------
    def _api_url(self) -> str:
        return f"http://{self.settings.ray_host}:{self.settings.serve_port}"

    def _log(self, name: str) -> Any:
        path = self.logs / f"{name}.log"

        def write(line: str) -> None:
            with path.open("a") as out:
                out.write(line + "\n")

        return write

    def _riskray(self, log_name: str, args: list[str]) -> str:
        """One `riskray` command, as a user runs it; its output into the run's logs; its output returned."""
        path = self.logs / f"{log_name}.log"
        riskray = Path(sys.executable).with_name("riskray")
        with path.open("a") as out:
            out.write(f"$ riskray {' '.join(args)}\n")
            out.flush()
            self._child = subprocess.Popen([str(riskray), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           text=True)
            lines = []
            assert self._child.stdout is not None
            for text in self._child.stdout:
                out.write(text)
                lines.append(text)
            code = self._child.wait()
            self._child = None
        if code != 0:
            tail = "".join(lines[-5:]).strip()
            raise DemoError(f"`riskray {' '.join(args)}` failed ({code}): {tail[-400:]}; see {path}")
        return "".join(lines)

    def _keep_training_plots(self, name: str) -> None:
        source = self.settings.training_dir / model_artifact.REPORT_DIR
        if source.is_dir():
            target = self.state.run_dir / name
            target.mkdir(parents=True, exist_ok=True)
            for png in source.glob("*.png"):
                shutil.copy(png, target / png.name)

    @contextlib.contextmanager
    def _bar(self, what: str, total: int) -> Iterator[Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("      {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=self.console, transient=True) as progress:
            task = progress.add_task(what, total=max(total, 1))
            yield lambda n=1: progress.advance(task, n)


def _cli(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _result(output: str, kind: str) -> dict[str, Any]:
    import json

    prefix = job_results.line(kind, "")
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    if not lines:
        raise DemoError(f"no `{prefix.strip()}` line in the command's output")
    return json.loads(lines[-1][len(prefix):])


def _stop_dag_jobs(settings: Settings) -> None:
    """Ray jobs the retraining DAG submitted that still run (an interrupted demo's): stopped with Airflow."""
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        jobs = httpx.get(f"{settings.ray_dashboard_url}/api/jobs/", timeout=10).json()
        for job in jobs:
            if job.get("status") in {"PENDING", "RUNNING"} and str(job.get("submission_id", "")).startswith("riskray"):
                httpx.post(f"{settings.ray_dashboard_url}/api/jobs/{job['submission_id']}/stop", timeout=10)
