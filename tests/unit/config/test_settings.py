"""Settings: defaults, CO_* variables, and the production refusal."""

from __future__ import annotations

import pytest

from cryptoorchestrator.api.app import create_app
from cryptoorchestrator.config.settings import DEFAULT_SECRET_KEY, Environment, Settings
from cryptoorchestrator.core.errors import ConfigurationError
from cryptoorchestrator.security.encryption import generate_key

GOOD_SECRET = "x" * 48


def production(**overrides) -> Settings:
    values = {
        "env": Environment.PRODUCTION,
        "secret_key": GOOD_SECRET,
        "encryption_keys": [generate_key()],
        "database_url": "sqlite+aiosqlite:///:memory:",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def test_environment_variables_are_read(monkeypatch, tmp_path):
    monkeypatch.setenv("CO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CO_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("CO_ENCRYPTION_KEYS", "k1,k2")
    monkeypatch.setenv("CO_REDIS_URL", "redis://127.0.0.1:6379/0")
    settings = Settings(_env_file=None)
    assert settings.data_dir == tmp_path
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert [k.get_secret_value() for k in settings.encryption_keys] == ["k1", "k2"]
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert (
        settings.resolved_database_url
        == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'cryptoorchestrator.db'}"
    )


def test_env_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CO_PORT=9123\nCO_LOG_LEVEL=DEBUG\n")
    settings = Settings()
    assert settings.port == 9123 and settings.log_level == "DEBUG"


def test_secrets_are_not_shown_in_repr():
    settings = production()
    assert GOOD_SECRET not in repr(settings)


def test_development_starts_with_defaults():
    Settings(_env_file=None).check_startup()


def test_production_with_real_secrets_starts():
    production().check_startup()
    create_app(production())


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"secret_key": DEFAULT_SECRET_KEY}, "CO_SECRET_KEY"),
        ({"secret_key": ""}, "CO_SECRET_KEY"),
        ({"secret_key": "short"}, "CO_SECRET_KEY"),
        ({"encryption_keys": []}, "CO_ENCRYPTION_KEYS"),
        ({"cors_origins": ["*"], "cors_allow_credentials": True}, "CO_CORS_ORIGINS"),
        ({"debug": True}, "CO_DEBUG"),
    ],
)
def test_production_refuses_unsafe_configuration(overrides, fragment):
    settings = production(**overrides)
    with pytest.raises(ConfigurationError) as caught:
        settings.check_startup()
    assert any(fragment in problem for problem in caught.value.details["problems"])
    with pytest.raises(ConfigurationError):
        create_app(settings)


def test_wildcard_cors_without_credentials_is_allowed():
    production(cors_origins=["*"], cors_allow_credentials=False).check_startup()
