"""Every Python block of the README runs as written, so the front page cannot rot: the quickstart is
examples/quickstart.py verbatim (tests/test_real_pair.py runs it on the real pair); blocks that talk
to `nudging serve` run against one started here; the vLLM block needs a remote server and two large
models, so it is compiled and its imports resolved (tests/test_vllm.py runs those calls against a
real vLLM); every other block runs with `Nudger.default()` (and so `ChatNudging.default()`,
`NudgingLLM.default()`) over a tiny random pair: the API as written, not the answers' quality."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
from nudging import Nudger

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.M | re.S)
QUICKSTART = (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")
SERVER_URL = "http://127.0.0.1:8000/v1"


def kind(code: str) -> str:
    if code == QUICKSTART:
        return "example"
    if "gpu-host" in code:
        return "remote"
    return "server" if SERVER_URL in code else "run"


@pytest.fixture(scope="module")
def tiny_default(tokenizers):
    from tiny_models import tiny_pair

    models = tiny_pair("cross")
    return lambda cls, config=None, **kwargs: Nudger(*models, config=config)


def test_the_readme_has_its_quickstarts():
    assert [kind(code) for code in BLOCKS].count("example") == 1, "the Python quickstart must be examples/quickstart.py verbatim"
    assert {"run", "server", "remote"} <= {kind(code) for code in BLOCKS}


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, tiny_default, monkeypatch, capsys):
    code = BLOCKS[index]
    compiled = compile(code, f"README.md python block {index + 1}", "exec")
    if kind(code) == "example":
        return  # tests/test_real_pair.py runs examples/quickstart.py
    if kind(code) == "remote":
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                assert all(hasattr(module, alias.name) for alias in node.names), ast.unparse(node)
        return
    monkeypatch.setattr(Nudger, "default", classmethod(tiny_default))
    if kind(code) == "server":
        from nudging.serving import create_app, serve_in_thread

        with serve_in_thread(create_app(Nudger.default())) as url:
            exec(compile(code.replace(SERVER_URL, url), compiled.co_filename, "exec"), {"__name__": "__main__"})
    else:
        exec(compiled, {"__name__": "__main__"})
    assert capsys.readouterr().out.strip(), "the block printed nothing"
