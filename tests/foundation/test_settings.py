"""Configuration comes from IMI_ variables; unsafe defaults are refused outside development."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.keys import generate_keys, sealing_private_key, sealing_public_key, security_code_key, signing_key
from shared.settings import Settings, UnsafeConfiguration


def test_the_embedded_default_needs_no_configuration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.broker_url == "memory://"
    assert settings.database_url("exchange") == f"sqlite+aiosqlite:///{tmp_path / 'var' / 'exchange.db'}"
    assert settings.port("registry") == 8001 and settings.port("retention") == 8004


def test_settings_are_read_from_imi_variables(monkeypatch):
    monkeypatch.setenv("IMI_BROKER_URL", "amqp://u:p@rabbit:5672/")
    monkeypatch.setenv("IMI_EXCHANGE_DATABASE_URL", "postgresql+asyncpg://x@db/exchange")
    monkeypatch.setenv("IMI_BUS_RETRY_DELAYS", "[1, 2.5]")
    monkeypatch.setenv("IMI_OUTBOX_RETENTION", "P3D")
    settings = Settings()
    assert settings.broker_url == "amqp://u:p@rabbit:5672/"
    assert settings.database_url("exchange") == "postgresql+asyncpg://x@db/exchange"
    assert settings.bus_retry_delays == [1.0, 2.5]
    assert settings.outbox_retention.days == 3


def test_production_refuses_the_memory_broker():
    with pytest.raises(UnsafeConfiguration, match="IMI_BROKER_URL"):
        Settings(environment="production", broker_url="memory://")


@pytest.mark.parametrize("url", [None, "sqlite+aiosqlite:///x.db"])
def test_production_refuses_a_service_without_its_postgresql_database(url):
    settings = Settings(environment="production", broker_url="amqp://rabbit/", exchange_database_url=url)
    with pytest.raises(UnsafeConfiguration, match="IMI_EXCHANGE_DATABASE_URL"):
        settings.database_url("exchange")


def test_a_service_needs_only_its_own_database_url():
    settings = Settings(
        environment="production", broker_url="amqp://rabbit/", exchange_database_url="postgresql+asyncpg://db/x"
    )
    assert settings.database_url("exchange") == "postgresql+asyncpg://db/x"


def test_production_refuses_smtp_credentials_over_an_unencrypted_connection():
    with pytest.raises(UnsafeConfiguration, match="IMI_SMTP_SECURITY"):
        Settings(environment="production", broker_url="amqp://r/", smtp_username="u", smtp_password="p")


def test_outside_development_keys_must_be_given_never_generated(tmp_path):
    settings = Settings(environment="test", broker_url="amqp://r/", data_dir=tmp_path)
    for load in (signing_key, sealing_public_key, sealing_private_key, security_code_key):
        with pytest.raises(UnsafeConfiguration, match="must be set"):
            load(settings)
    assert not (tmp_path / "keys").exists()


def test_development_generates_keys_once_and_keeps_them(tmp_path):
    settings = Settings(data_dir=tmp_path)
    first = signing_key(settings).public_key().public_bytes_raw()
    assert signing_key(settings).public_key().public_bytes_raw() == first
    assert (
        sealing_private_key(settings).public_key().public_bytes_raw() == sealing_public_key(settings).public_bytes_raw()
    )
    assert oct(Path(tmp_path / "keys" / "imi_signing_key.pem").stat().st_mode)[-3:] == "600"


def test_generated_keys_load_from_their_one_line_form(tmp_path):
    keys = {
        name.removeprefix("IMI_").lower(): pem.strip().replace("\n", "\\n") for name, pem in generate_keys().items()
    }
    settings = Settings(environment="production", broker_url="amqp://r/", data_dir=tmp_path, **keys)
    assert (
        sealing_private_key(settings).public_key().public_bytes_raw() == sealing_public_key(settings).public_bytes_raw()
    )
    signing_key(settings)
    assert len(security_code_key(settings)) == 32


def test_empty_optional_variables_mean_unset(monkeypatch):
    monkeypatch.setenv("IMI_SMTP_USERNAME", "")
    monkeypatch.setenv("IMI_REGISTRY_DATABASE_URL", "")
    settings = Settings()
    assert settings.smtp_username is None
    assert settings.database_url("registry").startswith("sqlite")


def test_a_broken_key_stops_the_registry_at_start_not_at_first_login(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from services.cli import app

    monkeypatch.setenv("IMI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IMI_SIGNING_KEY", "-----BEGIN PRIVATE KEY-----\\nbroken\\n-----END PRIVATE KEY-----")
    result = CliRunner().invoke(app, ["serve", "registry"])
    assert result.exit_code == 2
    assert "signing key is not usable" in result.output
