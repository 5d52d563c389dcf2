"""The one settings object of riskray.

Every host, port, path, topic and secret is a field here, read from environment variables prefixed
``RISKRAY_`` (for example ``RISKRAY_POSTGRES_PORT=25432``) or from a ``.env`` file in the working directory.
Defaults are loopback addresses on ports chosen not to clash with system services (PostgreSQL 5432,
Kafka 9092, MLflow 5000) nor with Ray's default worker-port range (10002-19999).

Read settings through :func:`get_settings` when a function runs, never at import time.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, computed_field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "RISKRAY_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    # --- paths -------------------------------------------------------------------------------------------
    state_dir: Path = Field(
        default=PROJECT_ROOT / ".riskray",
        description="Data directories, logs, jars, checkpoints; ignored by git.",
    )
    java_bin: str = Field(default="java", description="Java 17+ for Kafka and Spark.")
    postgres_bin_dir: Path | None = Field(
        default=None, description="PostgreSQL server binaries; found under /usr/lib/postgresql when unset."
    )
    postgres_os_user: str = Field(
        default="postgres", description="OS user that runs the PostgreSQL server when riskray runs as root."
    )

    # --- PostgreSQL ----------------------------------------------------------------------------------------
    postgres_host: str = "127.0.0.1"
    postgres_port: int = Field(default=25432, ge=1, le=65535)
    postgres_user: str = "riskray"
    postgres_password: SecretStr = SecretStr("riskray")
    postgres_db: str = "riskray"
    postgres_pool_min: int = Field(default=1, ge=0)
    postgres_pool_max: int = Field(default=20, ge=1)
    postgres_pool_wait_s: float = Field(
        default=5.0, gt=0, description="A caller waits this long for a free pooled connection, then gets an error")
    postgres_connect_timeout_s: int = Field(default=5, ge=1)
    store_transactions_retention_days: int = Field(
        default=180, ge=1, description="`riskray db maintain` drops the day partitions of `transactions` older "
                                       "than this (refused below the minimum the label horizon, the accuracy window, "
                                       "training and its history windows need: docs/store-retention.md)")
    store_predictions_retention_days: int = Field(
        default=90, ge=1, description="`riskray db maintain` drops the day partitions of `predictions` older "
                                      "than this (refused below the accuracy and drift windows)")
    store_partitions_ahead_days: int = Field(
        default=3, ge=1, description="`riskray db maintain` keeps this many days' partitions made ahead of today")

    # --- Kafka ---------------------------------------------------------------------------------------------
    kafka_host: str = "127.0.0.1"
    kafka_port: int = Field(default=29092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=29093, ge=1, le=65535)
    kafka_topic: str = "transactions"
    kafka_dlq_topic: str = "transactions.dlq"
    kafka_labels_topic: str = Field(default="labels", description="Label events (app.schemas.LabelEvent)")
    kafka_labels_dlq_topic: str = "labels.dlq"
    kafka_labels_partitions: int = Field(default=3, ge=1, description="Label events are ~1/10 of the transactions")
    kafka_partitions: int = Field(default=12, ge=1)
    kafka_retention_days: int = Field(default=7, ge=1)
    kafka_heap_mb: int = Field(default=512, ge=128)

    # --- Ray -----------------------------------------------------------------------------------------------
    ray_host: str = "127.0.0.1"
    ray_gcs_port: int = Field(default=26379, ge=1, le=65535)
    ray_dashboard_port: int = Field(default=8265, ge=1, le=65535)
    ray_client_port: int = Field(default=26001, ge=1, le=65535)
    ray_dashboard_agent_port: int = Field(default=26365, ge=1, le=65535)
    ray_metrics_export_port: int = Field(default=26080, ge=1, le=65535)
    ray_num_cpus: int | None = Field(default=None, ge=1, description="CPUs the head offers; all when unset.")
    ray_object_store_mb: int = Field(default=2048, ge=128)
    serve_port: int = Field(default=8000, ge=1, le=65535)
    serve_high_throughput: bool = Field(
        default=True, description="Ray Serve's HAProxy ingress + throughput-optimized mode (set on the Ray head)."
    )
    serve_drain_s: float | None = Field(
        default=None, ge=0, description="How long a stopping Serve replica keeps draining before it goes (set on the "
                                        "Ray head; unset: Ray's 30 s, room for HAProxy to stop sending to it). The "
                                        "tests' scratch world, which stops replicas with no traffic, uses 5 s.")
    serve_haproxy_stats_port: int = Field(default=28404, ge=1, le=65535)
    serve_haproxy_metrics_port: int = Field(default=29101, ge=1, le=65535)
    serve_haproxy_threads: int = Field(
        default=1, ge=1, description="HAProxy threads on the local Ray head (Ray's default 4 contends on 2 cores)."
    )
    serve_max_batch: int = Field(default=1000, ge=1, description="Largest /predict/batch; more answers 413.")
    serve_max_body_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="Largest request body; more answers 413 before it is read.")
    serve_api_keys: SecretStr | None = Field(
        default=None, description="Comma-separated API keys (several: rotation); set, /predict and /predict/batch "
                                  "answer 401 without one of them in the key header. /health stays open.")
    serve_api_key_header: str = Field(default="X-API-Key", pattern=r"^[A-Za-z0-9-]+$")
    serve_store_timeout_ms: int = Field(default=50, ge=1, description="Feature-store read budget per request.")
    serve_store_timeout_per_row_ms: float = Field(
        default=0.5, ge=0, description="Added to the read budget per transaction of a batch (a row costs ~0.1 ms)."
    )
    serve_batch_max_size: int = Field(
        default=32, ge=1, description="Most concurrent /predict requests a replica scores as one batch."
    )
    serve_batch_concurrency: int = Field(
        default=1, ge=1, description="Batches a replica scores at once (a second overlaps the first's store read)."
    )
    serve_feature_cache_ttl_s: float = Field(default=1.0, ge=0, description="Online history cache; 0 = off.")
    serve_report_cache_s: float = Field(
        default=10.0, gt=0, description="How long /metrics reuses the latest monitoring report's gauges before it "
                                        "reads the report again")
    serve_store_retry_s: float = Field(
        default=5.0, gt=0, description="After a store failure, answer degraded for this long before trying again."
    )
    serve_lists_refresh_s: float = Field(
        default=2.0, gt=0, description="How often a replica re-reads the allow/deny lists (a change applies within it)."
    )
    serve_log_buffer: int = Field(default=20_000, ge=1, description="Predictions waiting to be written; more drop.")
    serve_log_flush_rows: int = Field(default=1_000, ge=1)
    serve_log_flush_s: float = Field(default=1.0, gt=0)
    serve_log_spool: bool = Field(
        default=True, description="Predictions reach local disk before their answers leave, so a killed replica "
                                  "loses none (the next replica to start writes them)")
    serve_log_spool_work_dir: Path | None = Field(
        default=None, description="Where the spool lives; default: the state folder's serve-spool/, per database")

    # --- MLflow --------------------------------------------------------------------------------------------
    mlflow_host: str = "127.0.0.1"
    mlflow_port: int = Field(default=25000, ge=1, le=65535)
    mlflow_db: str = "mlflow"
    registered_model_name: str = "riskray-fraud"
    mlflow_experiment: str = "riskray-fraud"

    compare_days: float = Field(
        default=7, gt=0, description="`riskray compare`: the held-out period, the latest N days with matured labels")
    promotion_metric: Literal["roc_auc", "average_precision", "backtest_cost"] = Field(
        default="roc_auc", description="What the challenger must beat the champion on to be promoted; backtest_cost: "
                                       "the cost a day of its outcomes on the held-out period (lower wins)")
    promotion_margin: float = Field(
        default=0.005, ge=-1, le=1, description="... by at least this much (0: a tie promotes); for backtest_cost "
                                                "a relative saving (0.005: 0.5 % cheaper)")

    # --- Airflow (`riskray stack up --with airflow`) -------------------------------------------------------
    airflow_host: str = "127.0.0.1"
    airflow_port: int = Field(default=28080, ge=1, le=65535, description="Airflow's api-server (UI and REST API)")
    airflow_db: str = Field(default="airflow", description="Airflow's metadata database on the stack's PostgreSQL")
    airflow_work_dir: Path | None = Field(
        default=None, description="AIRFLOW_HOME (logs, generated secrets); default: the state folder's airflow/")
    airflow_admin_user: str = "admin"
    airflow_dag_schedule: str = Field(
        default="0 2 * * *", description="Cron of the retraining DAG; empty: triggered runs only (tests, demo)")
    airflow_admin_password: SecretStr | None = Field(
        default=None, description="The admin login's password; unset: generated once into AIRFLOW_HOME")

    # --- Kubernetes (`riskray cluster up`: a local control plane, kwok nodes, the KubeRay operator) -----------
    kube_host: str = Field(default="127.0.0.1", description="every control-plane component listens here only (a "
                                                            "loopback address)")
    kube_work_dir: Path | None = Field(
        default=None, description="etcd's data, PKI, tokens, kubeconfigs; default: the state folder's kubernetes/")
    kube_apiserver_port: int = Field(default=26443, ge=1, le=65535)
    kube_etcd_port: int = Field(default=22379, ge=1, le=65535)
    kube_etcd_peer_port: int = Field(default=22380, ge=1, le=65535)
    kube_controller_manager_port: int = Field(default=20257, ge=1, le=65535)
    kube_scheduler_port: int = Field(default=20259, ge=1, le=65535)
    kwok_port: int = Field(default=20260, ge=1, le=65535)
    kuberay_metrics_port: int = Field(default=20261, ge=1, le=65535)
    kuberay_health_port: int = Field(default=20262, ge=1, le=65535)
    prometheus_operator_port: int = Field(default=20263, ge=1, le=65535)
    tools_cache: Path = Field(
        default_factory=lambda: Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "riskray",
        description="Built tools shared by every checkout (the control plane's binaries, from the Go module proxy)")

    # --- monitoring --------------------------------------------------------------------------------------
    monitoring_work_dir: Path | None = Field(
        default=None, description="Prometheus/Alertmanager data and configs, received alerts, plots; default: the "
                                  "state folder's monitoring/")
    monitoring_host: str = Field(default="127.0.0.1", description="Prometheus, Alertmanager, exporter, receiver")
    prometheus_port: int = Field(default=29090, ge=1, le=65535)
    alertmanager_port: int = Field(default=29095, ge=1, le=65535)
    alert_webhook_port: int = Field(
        default=29096, ge=1, le=65535, description="The local receiver that logs alerts when no URL is set.")
    alert_slack_webhook_url: SecretStr | None = Field(
        default=None, description="Slack incoming webhook for warnings; unset: the local receiver logs them.")
    alert_pagerduty_routing_key: SecretStr | None = Field(
        default=None, description="PagerDuty Events API v2 routing key for critical alerts; unset: logged locally.")
    alert_pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    drift_psi_warn: float = Field(default=0.1, gt=0, description="PSI above this: a feature has drifted (warn).")
    drift_psi_act: float = Field(default=0.25, gt=0, description="PSI above this: retrain (act; the alert rule).")
    drift_window_days: float = Field(
        default=7, gt=0, description="`riskray drift` compares the inputs served in the last N days (whole weeks "
                                     "keep weekday inputs comparable with training)")
    accuracy_window_days: float = Field(
        default=30, gt=0, description="Realised AUC over predictions of the last N days whose labels have matured")
    accuracy_max_drop: float = Field(
        default=0.05, gt=0, lt=1, description="Retrain when realised AUC falls more than this share under the "
                                              "champion's training AUC")
    accuracy_min_positives: int = Field(
        default=10, ge=1, description="Fewer labelled frauds than this in the window: AUC is 'not enough data'")
    accuracy_bootstrap: int = Field(default=200, ge=0, description="Bootstrap resamples of the AUC interval")
    accuracy_min_maturity: float = Field(
        default=0.8, gt=0, le=1, description="A prediction cohort (a day) whose frauds are known to less than this "
                                             "share (the label maturity curve at its age) is 'not mature': no "
                                             "realised number, and the retraining check does not read it")
    label_horizon_days: float = Field(
        default=90, gt=0, description="The label maturity curve counts the frauds reported within N days of their "
                                      "transaction, measured on transactions at least that old")
    review_capacity_per_day: int = Field(
        default=100, ge=1, description="Reviews a day the fraud team can do: precision at capacity is the share of "
                                       "frauds among a day's this many highest-scored transactions, and the "
                                       "decision thresholds send at most this many a day to review")
    cost_fraud_loss_share: float = Field(
        default=1.0, gt=0, le=1, description="The share of a missed fraud's amount that is lost (after recoveries)")
    cost_review: float = Field(default=5.0, ge=0, description="The cost of one analyst review")
    cost_decline_legit: float = Field(
        default=25.0, ge=0, description="The cost of declining one legitimate transaction (lost margin and trust)")
    calibration_max_ece_share: float = Field(
        default=0.2, ge=0, description="Calibrate a trained model (Platt scaling, fitted on validation) when its "
                                       "expected calibration error on validation is over this share of the "
                                       "validation fraud rate (an absolute ECE is small whatever the model when "
                                       "most scores are near 0)")
    prometheus_scrape_interval_s: int = Field(default=15, ge=1, description="Scrape and rule evaluation interval")
    prometheus_retention: str = Field(default="7d", description="How long the local Prometheus keeps samples")
    alert_rule_for_s: int | None = Field(
        default=None, ge=0, description="When set, every alert rule's `for:` in the local Prometheus lasts this many "
                                        "seconds (the tests' scratch world: alerts fire in seconds); unset: the "
                                        "durations of monitoring/prometheus/rules.yml, which promtool's tests pin")
    alert_group_wait_s: int = Field(
        default=10, ge=0, description="Alertmanager's group_wait: how long a new alert group waits for more alerts "
                                      "before its first notification")
    alert_group_interval_s: int = Field(
        default=60, ge=1, description="Alertmanager's group_interval: how long a group that has notified waits "
                                      "before it notifies its new alerts")
    exporter_port: int = Field(
        default=29097, ge=1, le=65535, description="riskray's own exporter (stream lag, freshness, prediction log)")

    # --- features and training -----------------------------------------------------------------------------
    label_delay_days: int = Field(
        default=7, ge=0, description="How old a fraud label must be before features may use it (chargeback delay)."
    )
    label_maturity_days: int | None = Field(
        default=None, ge=0, description="A training period's labels are read this many days after it ends; a "
                                        "transaction without a label by then is legitimate. Unset: the label delay")
    train_days: int = Field(default=30, ge=1, description="Labelled transactions of the last N days train a model.")
    train_workers: int = Field(default=2, ge=1, description="Ray Train workers of the final, distributed fit.")
    train_cpus_per_worker: float = Field(
        default=0.9, gt=0, description="Ray CPUs per training worker and Tune trial; 0.9 leaves the Serve replicas "
                                       "(0.1 each) room on a 2-CPU head. XGBoost threads = max(1, int(this)).")
    train_health_check_s: float = Field(
        default=0.25, gt=0, description="How often Ray Train's controller polls its workers (Ray's default 2 s): a "
                                        "finished or failed fit is noticed within about twice this.")
    tune_trials: int = Field(default=8, ge=0, description="0: the original design's parameters, no search")
    tune_max_concurrent: int = Field(default=2, ge=1, description="Tune trials at once; each runs a 5-fold CV.")
    cv_folds: int = Field(default=5, ge=2)
    score_parallel_above_rows: int = Field(
        default=500_000, ge=0, description="`riskray score`: more rows than this are scored by a Ray Data actor pool "
                                           "(below it Ray's start-up costs more than it saves)")
    cv_scheme: Literal["time", "stratified"] = Field(
        default="time", description="time: each fold validates on a later period than it trains on (label delay "
                                    "between them); stratified: random folds, which leak the future")
    cv_gap_days: float | None = Field(
        default=None, ge=0, description="Time folds: days between a fold's training and validation rows; unset: the "
                                        "label delay (labels younger than it are unknown when a model is trained), "
                                        "shortened to half of fold 1's first block in a period too short for it")
    train_split: Literal["time", "stratified"] = Field(
        default="time", description="time: test on the latest part of the period; stratified: a random part")
    train_seed: int = Field(default=7, description="Seeds the split, the folds and the search.")
    training_work_dir: Path | None = Field(
        default=None, description="Stage files of `riskray train`; default: the state folder's training/.")

    # --- Spark ---------------------------------------------------------------------------------------------
    spark_master: str = Field(
        default="local[2]", description="Empty: the job was submitted by spark-submit (Kubernetes), which sets it")
    spark_driver_memory: str = "1g"
    spark_driver_java_options: str = Field(
        default="", description="Extra JVM options of the local Spark driver (spark.driver.extraJavaOptions; the "
                                "tests' scratch world sets one: docs/tests.md#worlds)")
    stream_trigger_seconds: float = Field(default=1.0, gt=0)
    stream_watermark_seconds: int = Field(default=10, ge=0)
    stream_window_seconds: int = Field(default=60, ge=1)
    stream_max_offsets_per_trigger: int = Field(default=200_000, ge=1)
    stream_fetch_max_wait_ms: int = Field(
        default=20, ge=0, description="The Kafka consumer's fetch.max.wait.ms in the stream's Spark tasks: a "
                                      "micro-batch reads only offsets that exist (docs/streaming.md#spark-job)")
    stream_labels_trigger_seconds: float = Field(
        default=5.0, gt=0, description="The labels query's trigger: a label is needed in minutes, not seconds, and "
                                       "fewer, larger batches leave the transactions' queries the CPU")
    stream_query_prefix: str = Field(default="transactions", description="Names the queries and their checkpoints.")
    stream_priority: Literal["idle", "nice", "normal"] = Field(
        default="idle", description="The local stream job's CPU priority: idle (SCHED_IDLE: only CPU nothing else "
        "wants), nice (nice 10) or normal (the API's)")
    background_cpu_shares: int = Field(
        default=2, ge=0, le=262144, description="cpu.shares of the local stack's background CPU group (the stream "
        "job and the database sessions writing its batches; app/cpu_weight.py): 1024 is a normal process's, 2 the "
        "least; 0: no group")
    cpu_cgroup_root: Path = Field(default=Path("/sys/fs/cgroup/cpu"),
                                  description="Where cgroup v1's cpu controller is mounted.")

    @field_validator("kube_host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        import ipaddress

        try:
            loopback = ipaddress.ip_address(value).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"{value!r} is not a loopback IP address: the local control plane admits anyone who "
                             "reaches it as far as its tokens allow, so it listens on loopback only")
        return value

    @field_validator("training_work_dir", "monitoring_work_dir", "airflow_work_dir", "serve_log_spool_work_dir",
                     "kube_work_dir")
    @classmethod
    def _from_project_root(cls, value: Path | None) -> Path | None:
        # a Ray job runs in a working directory of its own: a relative path means the checkout's
        return value if value is None or value.is_absolute() else PROJECT_ROOT / value

    # --- derived -------------------------------------------------------------------------------------------
    @computed_field  # type: ignore[prop-decorator]
    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"

    @property
    def kafka_topics(self) -> tuple[str, ...]:
        """The world's topics: transactions, labels, and their dead-letter topics."""
        return (self.kafka_topic, self.kafka_dlq_topic, self.kafka_labels_topic, self.kafka_labels_dlq_topic)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ray_dashboard_url(self) -> str:
        return f"http://{self.ray_host}:{self.ray_dashboard_port}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mlflow_tracking_uri(self) -> str:
        return f"http://{self.mlflow_host}:{self.mlflow_port}"

    def postgres_dsn(self, database: str | None = None) -> str:
        """libpq keyword DSN (psycopg2); the password never appears in logs because callers don't log it."""
        return (
            f"host={self.postgres_host} port={self.postgres_port} dbname={database or self.postgres_db} "
            f"user={self.postgres_user} password={self.postgres_password.get_secret_value()} "
            f"connect_timeout={self.postgres_connect_timeout_s}"
        )

    def postgres_url(self, database: str | None = None, driver: str = "postgresql+psycopg2") -> str:
        """SQLAlchemy URL (Alembic, MLflow backend store)."""
        password = quote(self.postgres_password.get_secret_value(), safe="")
        return (
            f"{driver}://{quote(self.postgres_user, safe='')}:{password}@{self.postgres_host}:"
            f"{self.postgres_port}/{database or self.postgres_db}"
        )

    # --- state-folder layout -------------------------------------------------------------------------------
    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def jars_dir(self) -> Path:
        return self.state_dir / "jars"

    @property
    def checkpoints_dir(self) -> Path:
        return self.state_dir / "checkpoints"

    @property
    def monitoring_dir(self) -> Path:
        """Prometheus and Alertmanager data, their rendered configs, received alerts, plots."""
        return self.monitoring_work_dir or self.state_dir / "monitoring"

    @property
    def serve_spool_dir(self) -> Path:
        """The prediction log's spool, one per database: a world's rows are only ever written to its own store."""
        return (self.serve_log_spool_work_dir or self.state_dir / "serve-spool") / self.postgres_db

    @property
    def airflow_home(self) -> Path:
        return self.airflow_work_dir or self.state_dir / "airflow"

    @property
    def kube_home(self) -> Path:
        return self.kube_work_dir or self.state_dir / "kubernetes"

    @property
    def airflow_venv(self) -> Path:
        """Airflow's own environment (cluster/local/airflow/uv.lock), made by the bootstrap."""
        return self.state_dir / "airflow-venv"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.airflow_host}:{self.airflow_port}"

    @property
    def prometheus_bin_dir(self) -> Path:
        """Debian's prometheus, promtool, prometheus-alertmanager and amtool, unpacked by the bootstrap."""
        return self.state_dir / "tools" / "prometheus" / "usr" / "bin"

    @property
    def training_dir(self) -> Path:
        """Training snapshot, model and reports (DVC outputs; dvc.yaml names the same default paths)."""
        return self.training_work_dir or self.state_dir / "training"


class SettingsError(ValueError):
    """A setting from the environment is invalid; the message names the variable."""


def describe_validation_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        value = item.get("input")
        problems.append(f"{ENV_PREFIX}{field.upper()}={value!r}: {item['msg']}")
    return "invalid setting " + "; ".join(problems)


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment. Raises SettingsError naming the bad variable."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None
