"""Settings: precedence, validation errors, and config.example.toml kept in sync."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from proxy.config import Settings, example_toml, load_settings
from proxy.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_match_the_contract() -> None:
    settings = load_settings(environ={})
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8787
    assert settings.store.db == "./relaylog.db"
    assert settings.upstream.url == "https://api.openai.com/v1"
    assert settings.feedback.wait_ms == 2000


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    config = tmp_path / "relaylog.toml"
    config.write_text('[server]\nport = 1111\nhost = "127.0.0.2"\n[store]\ndb = "file.db"\n')
    env = {"RELAYLOG_SERVER_PORT": "2222", "RELAYLOG_STORE_DB": "env.db"}
    settings = load_settings(str(config), {"db": "flag.db"}, env)
    assert settings.store.db == "flag.db"
    assert settings.server.port == 2222
    assert settings.server.host == "127.0.0.2"
    assert settings.upstream.read_timeout_s == 600.0


def test_config_file_from_environment_and_list_values(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[auth]\nproxy_keys = ["from-file"]\n')
    env = {"RELAYLOG_CONFIG": str(config), "RELAYLOG_FEEDBACK_CORS_ORIGINS": "https://a, https://b"}
    settings = load_settings(environ=env)
    assert [k.get_secret_value() for k in settings.auth.proxy_keys] == ["from-file"]
    assert settings.feedback.cors_origins == ["https://a", "https://b"]


def test_secrets_are_not_shown_in_reprs() -> None:
    settings = load_settings(environ={"RELAYLOG_UPSTREAM_API_KEY": "sk-very-secret"})
    assert settings.upstream.api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in settings.model_dump_json()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[server]\nport = 99999\n", "server.port"),
        ("[server]\nprot = 1\n", "server.prot"),
        ("[nope]\nx = 1\n", "nope"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(str(config), environ={})


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(str(tmp_path / "absent.toml"), environ={})


def test_example_file_lists_every_setting_with_its_default() -> None:
    text = (ROOT / "config.example.toml").read_text()
    assert text == example_toml(), "regenerate config.example.toml from proxy.config.example_toml()"
    parsed = tomllib.loads(text)
    assert Settings.model_validate(parsed) == Settings()
    for section, info in Settings.model_fields.items():
        model = info.annotation
        assert isinstance(model, type)
        assert set(parsed[section]) == set(model.model_fields)
        for name, field in model.model_fields.items():
            assert field.description, f"{section}.{name} needs a description"


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for section, info in Settings.model_fields.items():
        model = info.annotation
        assert isinstance(model, type)
        for name in model.model_fields:
            assert f"`{section}.{name}`" in readme, f"README lacks {section}.{name}"


@pytest.mark.parametrize(
    ("url", "needle"),
    [("https://user:sk-x@api.example.com/v1", "credentials"), ("ftp://files.example.com", "http")],
)
def test_upstream_url_must_be_plain_http(url: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(flags={"upstream": url}, environ={})
