"""mkdocs hook: the plots live beside their results in benchmarks/ (each written by the command that
measures it); the site takes them from there, so a page links `results/compare/compare.png` and no
copy of a plot can go stale."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
PLOTS = ROOT / "benchmarks"


def on_files(files: Files, config) -> Files:
    """Add every committed plot under benchmarks/ as a site file at the same relative path."""
    for png in sorted(PLOTS.rglob("*.png")):
        files.append(File.generated(config, str(png.relative_to(ROOT)), abs_src_path=str(png)))
    return files
