"""The layout's rules hold: one-way layers, no import cycles, no framework in the engine, integrations
through `nudging`'s exports only (contracts in pyproject.toml), and no module over 400 lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert ", 0 broken" in out.stdout


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in [*ROOT.glob("core/**/*.py"), *ROOT.glob("integrations/**/*.py")] if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
