"""The playground page at `/`, in a real headless browser (Debian's chromium + chromium-driver,
installed by .ci/install-browser; driven by selenium): it loads, streams a nudged answer beside the
base alone, and highlights exactly the nudger's spans."""

from __future__ import annotations

import shutil

import pytest
from nudging import Nudger, NudgingConfig
from nudging.serving import create_app, serve_in_thread
from tiny_models import tiny_pair

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no chromium + chromedriver: run .ci/install-browser (root, apt) to install Debian's chromium and chromium-driver")

PROMPT = "Name a color."


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,800"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def pieces(driver, column: str) -> list[tuple[str, str]]:
    """The answer's elements as (text, source): one per run of text from the same model."""
    return [(el.get_attribute("textContent"), el.get_attribute("data-source")) for el in driver.find_elements("css selector", f"#{column} .answer > *")]


def test_playground_streams_and_highlights_the_nudgers_words(browser):
    from selenium.webdriver.support.ui import WebDriverWait

    nudger = Nudger(*tiny_pair("cross"), config=NudgingConfig(gamma=0.1, draft_tokens=4, max_new_tokens=8))
    messages = [{"role": "user", "content": PROMPT}]
    nudged = nudger.generate(messages, gamma=0.1, max_new_tokens=12)
    alone = nudger.generate(messages, gamma=0.0, max_new_tokens=12)
    assert {s.source for s in nudged.spans} == {"base", "nudger"}  # both write: highlighting is tested
    with serve_in_thread(create_app(nudger, model_name="tiny-nudging")) as url:
        browser.get(url.removesuffix("/v1") + "/")
        assert browser.title == "nudging playground"
        WebDriverWait(browser, 30).until(lambda d: "tiny-nudging" in d.find_element("id", "model").text)
        browser.execute_script(
            """const [prompt, gamma, tokens] = arguments;
            document.getElementById('prompt').value = prompt;
            const g = document.getElementById('gamma'); g.value = gamma; g.dispatchEvent(new Event('input'));
            document.getElementById('max-tokens').value = tokens;""",
            PROMPT, "0.1", "12",
        )
        assert browser.find_element("id", "gamma-value").text == "0.10"
        browser.find_element("id", "base-alone").click()
        assert browser.find_element("id", "alone").is_displayed()
        browser.find_element("id", "run").click()
        WebDriverWait(browser, 120).until(lambda d: all(d.find_element("id", c).get_attribute("data-done") == "true" for c in ("nudged", "alone")))
        assert pieces(browser, "nudged") == [(s.text, s.source) for s in nudged.spans]
        marks = browser.find_elements("css selector", "#nudged .answer mark.nudger")
        assert [m.get_attribute("textContent") for m in marks] == [s.text for s in nudged.spans if s.source == "nudger"]
        assert pieces(browser, "alone") == [(s.text, s.source) for s in alone.spans]
        assert not browser.find_elements("css selector", "#alone mark")
        stats = browser.find_element("css selector", "#nudged .stats").text
        assert stats.startswith(f"{nudged.stats.output_tokens} tokens · nudger wrote {100 * nudged.stats.nudge_share:.0f}%")
        assert f"stop: {nudged.stats.stop_reason}" in stats


def test_the_screenshot_script_saves_the_answered_page(browser, tmp_path):
    """benchmarks/retake.py (the docs' screenshot) drives the same page to both answers and saves it."""
    import importlib.util
    import struct
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("retake", Path(__file__).resolve().parents[1] / "benchmarks" / "retake.py")
    retake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(retake)
    nudger = Nudger(*tiny_pair("cross"), config=NudgingConfig(draft_tokens=4))
    with serve_in_thread(create_app(nudger, model_name="tiny-nudging")) as url:
        out = retake.screenshot(browser, url.removesuffix("/v1") + "/", tmp_path / "playground.png", prompt=PROMPT, gamma=0.1, max_tokens=8, timeout=120)
        assert browser.find_element("id", "nudged").get_attribute("data-done") == "true"
        assert browser.find_element("css selector", "#nudged .answer").text.strip()
    header = out.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert width > 0 and height > 0
