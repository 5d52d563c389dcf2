from __future__ import annotations

import pytest

from app.config import PROJECT_ROOT, Settings, SettingsError, get_settings


def test_defaults_are_loopback_and_avoid_system_ports() -> None:
    settings = Settings()
    assert settings.postgres_host == settings.kafka_host == settings.mlflow_host == "127.0.0.1"
    assert settings.postgres_port != 5432 and settings.kafka_port != 9092 and settings.mlflow_port != 5000
    ports = [settings.postgres_port, settings.kafka_port, settings.kafka_controller_port, settings.ray_gcs_port,
             settings.ray_dashboard_port, settings.ray_client_port, settings.mlflow_port, settings.serve_port]
    assert len(set(ports)) == len(ports)
    assert not any(10002 <= p <= 19999 for p in ports), "inside Ray's default worker-port range"


def test_state_folder_defaults_to_the_checkout() -> None:
    assert Settings().state_dir == PROJECT_ROOT / ".riskray"


def test_environment_overrides_with_the_documented_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKRAY_KAFKA_PORT", "39092")
    monkeypatch.setenv("RISKRAY_POSTGRES_PASSWORD", "s3cr%t")
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:39092"
    assert "s3cr%t" not in repr(settings)
    assert "s3cr%25t@" in settings.postgres_url()


def test_invalid_port_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKRAY_POSTGRES_PORT", "abc")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="RISKRAY_POSTGRES_PORT='abc'"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_pool_size_defaults_to_twenty() -> None:
    assert Settings().postgres_pool_max == 20
