"""Rendering of the local stack's configuration (no process is started here)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

from app import local_paths
from app.config import Settings
from app.operations import haproxy_loopback, kafka, manager, ray_head, stream, supervisor


def test_supervisor_config_has_every_service_and_escapes_percent(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, postgres_password="50%off")
    parser = configparser.RawConfigParser()
    parser.read_string(supervisor.render_config(settings, manager.programs(settings)))
    assert [s.removeprefix("program:") for s in parser.sections() if s.startswith("program:")] == [
        "postgres", "kafka", "ray", "mlflow", "exporter", "alerts", "alertmanager", "prometheus", "airflow-api",
        "airflow-scheduler", "airflow-dags", "airflow-triggerer", "kube-etcd", "kube-apiserver",
        "kube-controller-manager", "kube-scheduler", "kwok", "kuberay-operator", "prometheus-operator", "stream"]
    assert "50%%25off" in parser["program:mlflow"]["environment"]
    assert all(parser[f"program:{name}"]["autostart"] == "false" for name in ("postgres", "kafka"))
    assert parser["program:postgres"]["stopsignal"] == "INT"


def test_airflow_runs_on_loopback_with_its_secrets_and_connections_off_the_command_line(tmp_path: Path) -> None:
    import json

    from app.operations import airflow

    settings = Settings(state_dir=tmp_path, postgres_password="s3cret", airflow_db="af",  # pragma: allowlist secret
                        airflow_work_dir=tmp_path / "airflow")
    env = airflow.environment(settings)
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1" and env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(":25432/af")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(airflow.DAGS_DIR)
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == airflow.environment(settings)["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert oct((tmp_path / "airflow" / "jwt-secret").stat().st_mode & 0o777) == "0o600"
    ray = json.loads(env["AIRFLOW_CONN_RISKRAY_RAY"])
    assert (ray["host"], ray["port"]) == ("127.0.0.1", 8265)
    mlflow = json.loads(env["AIRFLOW_CONN_RISKRAY_MLFLOW"])
    assert mlflow["extra"] == {"registered_model": settings.registered_model_name}
    assert "AIRFLOW_CONN_RISKRAY_SLACK" not in env  # unset: the DAG posts nothing
    from pydantic import SecretStr

    with_slack = airflow.environment(settings.model_copy(
        update={"alert_slack_webhook_url": SecretStr("https://hooks.x/T/B")}))
    slack_url = "https://hooks.x/T/B"  # pragma: allowlist secret
    assert json.loads(with_slack["AIRFLOW_CONN_RISKRAY_SLACK"])["password"] == slack_url
    for component in airflow.COMPONENTS:
        command = " ".join(component.program(settings).command)
        assert "s3cret" not in command and str(settings.airflow_home) in command


def test_sockets_move_to_a_short_path_when_the_state_folder_is_deep(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 80)
    assert len(str(supervisor.socket_path(Settings(state_dir=deep)))) < 100
    assert local_paths.runtime_dir(Settings(state_dir=Path("/w/.riskray"))) == Path("/w/.riskray/run")
    ray_socket = local_paths.runtime_dir(Settings(state_dir=deep)) / "ray" / ("s" * 43) / "sockets" / "dash_MetricsHead"
    assert len(str(ray_socket)) <= 107


def test_kafka_broker_listens_on_loopback_only_and_never_auto_creates_topics(tmp_path: Path) -> None:
    props = kafka.server_properties(Settings(state_dir=tmp_path))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["auto.create.topics.enable"] == "false"


def test_kafka_cluster_ids_never_start_with_a_dash_the_storage_tool_would_read_as_an_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 0xF8 encodes to '-' as the first URL-safe base64 character.
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    cluster_id = kafka.new_cluster_id()
    assert cluster_id == "EAAAAAAAAAAAAAAAAAAAAA"


def test_transactions_have_twelve_partitions_labels_three_each_with_a_dead_letter_topic_kept_seven_days(
        tmp_path: Path) -> None:
    # the product's own names, not the tests' scratch topics in the environment
    defaults = {name: Settings.model_fields[name].default
                for name in ("kafka_topic", "kafka_dlq_topic", "kafka_labels_topic", "kafka_labels_dlq_topic")}
    transactions, dlq, labels, labels_dlq = kafka.topics(Settings(state_dir=tmp_path, **defaults))
    assert (transactions.name, transactions.num_partitions) == ("transactions", 12)
    assert (labels.name, labels.num_partitions) == ("labels", 3)
    assert {t.topic_configs["retention.ms"] for t in (transactions, dlq, labels, labels_dlq)} == {
        str(7 * 24 * 3600 * 1000)}
    assert (dlq.name, labels_dlq.name) == ("transactions.dlq", "labels.dlq")


def test_server_user_cannot_reach_a_checkout_inside_a_private_directory() -> None:
    import pwd
    import shutil
    import tempfile

    import pytest

    from app.operations.postgres import can_traverse

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres OS user on this machine")
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp itself is world-searchable; pytest's tmp_path is not
    try:
        base.chmod(0o755)
        private, opened = base / "private", base / "opened"
        private.mkdir(mode=0o700)
        opened.mkdir(mode=0o755)
        assert not can_traverse("postgres", private / "checkout" / ".riskray")
        assert can_traverse("root", private / "checkout")
        assert can_traverse("postgres", opened / "checkout")
    finally:
        shutil.rmtree(base)


def test_haproxy_stats_and_metrics_ports_move_to_loopback_and_named_binds_stay() -> None:
    # the bind lines of Ray's own template, with its Jinja expressions filled in
    template_binds = [line for line in HAPROXY_CONFIG_TEMPLATE.splitlines() if line.strip().startswith("bind ")]
    rendered = "\n".join(template_binds).replace("{{ config.metrics_port }}", "9101").replace(
        "{{ config.stats_port }}", "8404").replace("{{ config.frontend_host }}", "127.0.0.1").replace(
        "{{ config.frontend_port }}", "8000").replace("{{ config.grpc_frontend_host }}", "127.0.0.1").replace(
        "{{ config.grpc_frontend_port }}", "9000")
    moved = haproxy_loopback.bind_to_host(rendered, "127.0.0.1")
    assert "{{" not in rendered, "Ray's template binds something new: check it stays on loopback"
    assert {line.split()[1] for line in moved.splitlines()} == {"127.0.0.1:9101", "127.0.0.1:8404",
                                                                 "127.0.0.1:8000", "127.0.0.1:9000"}
    assert haproxy_loopback.bind_to_host("  bind 10.0.0.5:80 ssl\n", "127.0.0.1") == "  bind 10.0.0.5:80 ssl\n"


def test_haproxy_rewrites_quiet_the_success_log_and_mark_requests_disconnect_disabled_in_rays_own_template(
) -> None:
    env = {haproxy_loopback.BIND_HOST_ENV: "127.0.0.1"}
    assert haproxy_loopback.rewrite(HAPROXY_CONFIG_TEMPLATE, env) == haproxy_loopback.bind_to_host(
        HAPROXY_CONFIG_TEMPLATE, "127.0.0.1"), "both savings are off unless switched on"
    env |= {haproxy_loopback.QUIET_LOG_ENV: "1", haproxy_loopback.DISCONNECT_DISABLED_ENV: "1"}
    lines = haproxy_loopback.rewrite(HAPROXY_CONFIG_TEMPLATE, env).splitlines()
    # failures are still logged: dontlog-normal only drops successful, normal requests, in the defaults section
    assert lines[lines.index("    option httplog") + 1] == "    option dontlog-normal"
    assert lines.index("    option dontlog-normal") < lines.index("frontend http_frontend")
    # the header is set first thing in the HTTP frontend, before any rule routes the request
    assert lines[lines.index("frontend http_frontend") + 1] == (
        "    http-request set-header x-request-disconnect-disabled ?1")
    assert sum("x-request-disconnect-disabled" in line for line in lines) == 1


def test_haproxy_launcher_rewrites_the_config_then_runs_the_real_binary_with_the_same_arguments(
        tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text("listen stats\n  bind *:8404\n")
    real = tmp_path / "haproxy"  # stands in for HAProxy: records its arguments
    real.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'args'}\n")
    real.chmod(0o755)
    launcher = haproxy_loopback.write_launcher(tmp_path / "haproxy-loopback")
    env = {**os.environ, haproxy_loopback.REAL_BINARY_ENV: str(real), haproxy_loopback.BIND_HOST_ENV: "127.0.0.1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([str(launcher), "-db", "-f", str(config), "-sf", "42"], env=env, check=True, timeout=30)
    assert config.read_text() == "listen stats\n  bind 127.0.0.1:8404\n"
    assert (tmp_path / "args").read_text().split() == ["-db", "-f", str(config), "-sf", "42"]


def test_haproxy_sockets_live_in_the_state_folder_behind_a_short_link_that_teardown_removes(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    link = ray_head.haproxy_socket_dir(settings)
    ray_head.remove_sockets(settings)
    link.mkdir()  # a real folder, as stacks made before the sockets moved into the state folder
    try:
        ray_head.prepare_haproxy(settings)
        env = ray_head.serve_high_throughput_environment(settings)
        assert link.is_symlink() and link.resolve() == ray_head.haproxy_socket_home(settings).resolve()
        # the runtime folder: <state>/run, unless that is too long for the stack's own sockets
        assert ray_head.haproxy_socket_home(settings).is_relative_to(local_paths.runtime_dir(settings))
        # Ray nests the socket under the 56-character node id; HAProxy binds "<path>.<pid>.tmp" first
        nested = Path(env["RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"]).parent / ("n" * 56) / "metrics.sock.4194304.tmp"
        assert len(str(nested)) <= 107
        ray_head.remove_sockets(settings)
        assert not link.is_symlink() and not ray_head.haproxy_socket_home(settings).exists()
    finally:
        ray_head.remove_sockets(settings)
        shutil.rmtree(local_paths.runtime_dir(settings), ignore_errors=True)  # /tmp/riskray-<hash> for a deep tmp_path


@pytest.mark.parametrize(("priority", "policy", "niceness"), [
    ("idle", os.SCHED_IDLE, 0), ("nice", os.SCHED_OTHER, 10), ("normal", os.SCHED_OTHER, 0)])
def test_stream_job_runs_below_the_apis_cpu_priority_and_its_children_inherit_it(
        tmp_path: Path, priority: str, policy: int, niceness: int) -> None:
    # Ray runs Serve's replicas and HAProxy at nice 15, so a niced stream job still outranked them; SCHED_IDLE
    # ranks below every niceness. The JVM's threads and Spark's Python workers are its descendants.
    settings = Settings(state_dir=tmp_path, stream_priority=priority)
    command = stream.program(settings).command
    assert command[-2:] == ["-m", "streaming.spark_job"]
    child = "import os, subprocess, sys; print(os.sched_getscheduler(0), os.nice(0))"
    probe = [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"]
    out = subprocess.run([*command[:-3], *probe], capture_output=True, text=True, check=True, timeout=30)
    # relative to this process's own niceness, capped at 19 (make test runs the unit tests at nice 19)
    assert out.stdout.split() == [str(policy), str(min(os.nice(0) + niceness, 19))]


def test_the_serve_drain_setting_reaches_the_ray_head_and_unset_leaves_rays_default() -> None:
    assert ray_head.environment(Settings(serve_drain_s=5))["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "5"
    assert "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S" not in ray_head.environment(Settings(serve_drain_s=None))


def test_ray_trains_poll_of_its_workers_comes_from_the_settings() -> None:
    assert ray_head.environment(Settings(train_health_check_s=0.5))["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.5"


def test_the_control_plane_listens_on_loopback_only_with_rbac_and_tokens(tmp_path: Path) -> None:
    from app.operations import control_plane

    settings = Settings(state_dir=tmp_path, kube_work_dir=tmp_path / "kubernetes")
    commands = {c.name: " ".join(c.program(settings).command) for c in control_plane.COMPONENTS}
    api = commands["kube-apiserver"]
    assert "--bind-address=127.0.0.1" in api and "--authorization-mode=Node,RBAC" in api
    assert "--anonymous-auth=false" in api and "--service-account-signing-key-file=" in api
    assert "--token-auth-file=" in api and "--client-ca-file=" in api
    # etcd admits only the API server's client certificate: whoever reaches etcd owns the cluster
    etcd = commands["kube-etcd"]
    assert "--client-cert-auth" in etcd and "--listen-client-urls=https://127.0.0.1:" in etcd
    assert "--etcd-certfile=" in api and "--etcd-servers=https://" in api
    for name, command in commands.items():  # every address a component listens on is the loopback
        listen = [a for a in command.split() if a.startswith(("--bind-address", "--listen-", "--advertise-client",
                                                              "--server-address", "--metrics-addr",
                                                              "--health-probe", "-web.listen-address"))]
        assert listen and all("127.0.0.1" in a for a in listen), (name, listen)
    # the controller-manager and the scheduler as the identities Kubernetes' default RBAC binds, not as admins
    assert control_plane.USERS["system:kube-controller-manager"] == []
    assert control_plane.USERS["system:kube-scheduler"] == []


def test_the_api_server_serves_no_streaming_lists_which_etcd_3_4_cannot_back(tmp_path: Path) -> None:
    """Else a watch from resourceVersion 0 becomes a streaming list that ends in an error, over and over."""
    from app.operations import control_plane

    settings = Settings(state_dir=tmp_path, kube_work_dir=tmp_path / "kubernetes")
    assert "--feature-gates=WatchList=false" in control_plane.API_SERVER.program(settings).command
    manager = next(c for c in control_plane.COMPONENTS if c.name == "kube-controller-manager")
    assert "--feature-gates=WatchListClient=false" in manager.program(settings).command  # so it asks for none


def test_the_control_planes_credentials_are_private_and_its_kubeconfig_trusts_its_own_ca(tmp_path: Path) -> None:
    import yaml

    from app.operations import control_plane

    settings = Settings(state_dir=tmp_path, kube_work_dir=tmp_path / "kubernetes")  # not the scratch world's
    control_plane._pki(settings)
    control_plane._credentials(settings)
    pki = control_plane.home(settings) / "pki"
    for private in [f for f in control_plane.PKI_FILES if f.endswith(".key")] + ["tokens.csv"]:
        assert oct((pki / private).stat().st_mode & 0o777) == "0o600", private
    config = yaml.safe_load(control_plane.kubeconfig_path(settings).read_text())
    assert config["clusters"][0]["cluster"] == {"server": "https://127.0.0.1:26443",
                                                "certificate-authority": str(pki / "ca.crt")}
    assert oct(control_plane.kubeconfig_path(settings).stat().st_mode & 0o777) == "0o600"


def test_the_control_planes_versions_are_pinned_in_one_file_the_build_reads() -> None:
    from app.operations import control_plane

    versions = control_plane.versions()
    pins = {"KUBERNETES_VERSION", "KUBERAY_VERSION", "KWOK_VERSION", "PROMETHEUS_OPERATOR_VERSION", "PROMTOOL_VERSION"}
    assert set(versions) == pins | {"TOOLS_KEY"}
    build = (control_plane.VERSIONS_FILE.parent / "build.sh").read_text()
    assert all(f"${name}" in build for name in versions)  # the build uses every pin and the same cache folder
    assert all(versions[name].startswith("v") for name in pins)
    assert control_plane.tools_dir(Settings()).name == versions["TOOLS_KEY"]


def test_the_control_plane_refuses_a_host_beyond_loopback() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not a loopback IP address"):
        Settings(kube_host="0.0.0.0")
    assert Settings(kube_host="127.0.0.2").kube_host == "127.0.0.2"
