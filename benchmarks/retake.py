"""Retake the documentation's pictures: the playground screenshot (docs/playground.png) and the
benchmark plots the docs show (benchmarks/results/*/*.png, with their JSON).

    .venv/bin/python benchmarks/retake.py playground     # ~2 minutes: the embedded pair in headless chromium
    .venv/bin/python benchmarks/retake.py plots          # reruns the three benchmarks behind the plots (long)
    .venv/bin/python benchmarks/retake.py all

The screenshot shows the answer's tokens/s, so it refuses to run on a busy machine (1-minute load
average above the core count) unless --force: a loaded machine makes the page say "0.2 tok/s".
The playground runs in Debian's chromium + chromium-driver (.ci/install-browser), driven by selenium
as tests/test_playground.py does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "playground.png"
PROMPT = "Give three tips for sleeping well."
# The commands whose plots the docs show (docs/benchmarks.md has each beside its table).
PLOTS = [
    ["bench", "--compare", "--prompts", "8", "--max-new-tokens", "128", "--dtype", "float32", "--out", "benchmarks/results/compare"],
    ["bench", "--compare", "--prompts", "8", "--max-new-tokens", "128", "--dtype", "bfloat16", "--out", "benchmarks/results/compare-bf16"],
    ["bench", "--batch", "1,4,16", "--max-new-tokens", "48", "--gamma", "0.4", "--dtype", "float32", "--out", "benchmarks/results/cpu-embedded"],
]


def browser(width: int = 1200, height: int = 800):
    """Headless chromium through selenium (Debian's chromium + chromedriver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        raise SystemExit("no chromium + chromedriver: run .ci/install-browser (root, apt)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def screenshot(driver, page_url: str, out: Path, prompt: str = PROMPT, gamma: float = 0.4, max_tokens: int = 64, timeout: float = 600) -> Path:
    """Ask the playground at `page_url` one question, nudged beside the base alone, and save the page
    once both answers are done (the window fitted to the page's height)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page_url)
    WebDriverWait(driver, 30).until(lambda d: d.find_element("id", "model").text.strip())
    driver.execute_script(
        """const [prompt, gamma, tokens] = arguments;
        document.getElementById('prompt').value = prompt;
        const g = document.getElementById('gamma'); g.value = gamma; g.dispatchEvent(new Event('input'));
        document.getElementById('max-tokens').value = tokens;""",
        prompt, str(gamma), str(max_tokens),
    )
    if not driver.find_element("id", "alone").is_displayed():
        driver.find_element("id", "base-alone").click()
    driver.find_element("id", "run").click()
    WebDriverWait(driver, timeout).until(lambda d: all(d.find_element("id", c).get_attribute("data-done") == "true" for c in ("nudged", "alone")))
    size = driver.get_window_size()
    driver.set_window_size(size["width"], driver.execute_script("return document.documentElement.scrollHeight"))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if not driver.save_screenshot(str(out)):
            raise RuntimeError(f"the browser could not write {out}")
    finally:
        driver.set_window_size(size["width"], size["height"])
    return out


def busy() -> str | None:
    """Why the machine is too busy for a screenshot that shows tokens/s, or None."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    return f"load average {load:.1f} on {cores} cores" if load > cores else None


def retake_playground(force: bool) -> None:
    if (why := busy()) and not force:
        raise SystemExit(f"not retaking the screenshot: {why} (the page would show a loaded machine's tokens/s; --force overrides)")
    from nudging import Nudger
    from nudging.serving import create_app, serve_in_thread

    driver = browser()
    try:
        with serve_in_thread(create_app(Nudger.default())) as url:
            print("wrote", screenshot(driver, url.removesuffix("/v1") + "/", SCREENSHOT))
    finally:
        driver.quit()


def retake_plots() -> None:
    nudging = [sys.executable, "-m", "nudging.cli"]
    for args in PLOTS:
        print("$ nudging", " ".join(args), flush=True)
        subprocess.run([*nudging, *args], cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["playground", "plots", "all"])
    parser.add_argument("--force", action="store_true", help="take the screenshot even on a busy machine")
    args = parser.parse_args(argv)
    if args.what in ("playground", "all"):
        retake_playground(args.force)
    if args.what in ("plots", "all"):
        retake_plots()


if __name__ == "__main__":
    main()
