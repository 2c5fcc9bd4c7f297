"""The documentation site builds strictly (mkdocs --strict: a broken link, a missing page or an
unresolved docstring reference fails), offline, and the configuration page lists every field."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from nudging import NudgingConfig

ROOT = Path(__file__).resolve().parents[1]


def test_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed (pip install -e '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WARNING" not in out.stderr, out.stderr
    site = tmp_path / "site"
    assert (site / "api" / "nudging" / "index.html").read_text().count('id="nudging.Nudger.generate"') == 1
    for plot in ROOT.glob("benchmarks/**/*.png"):
        assert (site / plot.relative_to(ROOT)).is_file(), plot


def test_configuration_page_lists_every_field():
    rows = set(re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "configuration.md").read_text(), flags=re.M))
    fields = {f.name for f in dataclasses.fields(NudgingConfig)}
    assert fields - rows == set(), "fields missing from docs/configuration.md"
    assert rows - fields == set(), "rows for fields NudgingConfig does not have"
