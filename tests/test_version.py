"""One version: pyproject reads proxy.__version__, and the CLI and the OpenAPI document show it."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import pytest
from setuptools.config.pyprojecttoml import read_configuration

from proxy import __version__
from proxy.api.openapi import document
from proxy.cli import main

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_the_package_version_is_proxy_version() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    with warnings.catch_warnings():
        # setuptools calls its [tool.setuptools] support beta.
        warnings.simplefilter("ignore")
        configuration = read_configuration(PYPROJECT, expand=True)
    assert configuration["project"]["version"] == __version__


def test_cli_and_document_show_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"relaylog {__version__}"
    assert document()["info"]["version"] == __version__
