"""The web app in a real browser: `hfmem serve` started as a subprocess on 127.0.0.1, driven by Playwright with
Debian's chromium (/usr/bin/chromium; playwright's own browser download is never used). The numbers the page
renders are compared with ``hfmem.api``'s, computed here in the test process.

Slow: it imports gradio in the server and starts a browser. ``HFMEM_DOCS_SCREENSHOT=1`` also saves the
screenshot to docs/web-app.png (the README's picture of the app).
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
URL_LINE = re.compile(r"hfmem serve: (http://127\.0\.0\.1:\d+/)")
SERVER_START_S = 120  # gradio's import and the app's build on a busy 2-core machine


SERVER_COMMAND = [sys.executable, "-c", "from hfmem.cli import main; main(['serve', '--port', '0'])"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("gradio")
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):  # .ci/run installs it: a CI run without it is a broken install, not a skip
            pytest.fail("Debian's chromium (/usr/bin/chromium) is not installed; .ci/run installs it with apt-get")
        pytest.skip("Debian's chromium (/usr/bin/chromium) is not installed (apt-get install chromium)")
    home = tmp_path_factory.mktemp("serve-home")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HFMEM_HOME=str(home / "hfmem"), HFMEM_HUB_RECHECK_S="0",
               GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env.pop("HFMEM_DEBUG", None)
    log = open(home / "stderr.txt", "w+")
    proc = subprocess.Popen(SERVER_COMMAND, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        deadline = time.monotonic() + SERVER_START_S
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.25)
            log.seek(0)
            m = URL_LINE.search(log.read())
            url = m.group(1) if m else None
        log.seek(0)
        assert url, f"no URL line from hfmem serve: {log.read()[-2000:]}"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        profile = tempfile.mkdtemp(prefix="hfmem-chromium-")
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def page(browser):
    pg = browser.new_page()
    try:
        yield pg
    finally:
        pg.close()


def _expected_bytes(model="Qwen/Qwen3-8B", gpu="RTX-4090", context=8192) -> list[int]:
    """The component column the serving tab shows, from the API in this process: every component, then the
    peak allocated, peak reserved and device total (per GPU)."""
    from hfmem import Options, api

    e = api.infer(model, Options(offline=True), gpu=gpu, context=context).estimate
    return [*e.components.values(), e.peak_allocated_bytes, e.peak_reserved_bytes, e.device_total_bytes]


def _rendered_bytes(page) -> list[int]:
    page.wait_for_selector("#serve-tables #serve-components td.bytes", timeout=60_000)
    return [int(c.get_attribute("data-bytes")) for c in page.locator("#serve-components td.bytes").all()]


def _field(page, elem_id):
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first


def test_serving_numbers_typed_in_equal_the_api_s(server, page, tmp_path):
    page.goto(server)
    page.get_by_role("tab", name="Serving").click()
    _field(page, "serve-model").fill("Qwen/Qwen3-8B")
    _field(page, "serve-context").fill("8192")
    gpu = _field(page, "serve-gpu")
    gpu.click()
    gpu.fill("RTX-4090")
    page.get_by_role("option", name="RTX-4090", exact=True).click()
    page.locator("#serve-run").click()
    assert _rendered_bytes(page) == _expected_bytes()
    link = _field(page, "serve-link")
    page.wait_for_function("() => document.querySelector('#serve-link textarea, #serve-link input').value",
                           timeout=30_000)
    assert link.input_value().startswith(server + "?tab=serve&")
    assert "context=8192" in link.input_value() and "gpu=RTX-4090" in link.input_value()

    # a screenshot of the answer (plot included when it is drawn): a real image, not a blank page
    # the matplotlib figure arrives as an <img> once drawn (an empty gr.Plot shows only an icon's <svg>)
    page.wait_for_function("() => { const im = document.querySelector('#serve-plot img');"
                           " return im !== null && im.complete && im.naturalWidth > 0; }", timeout=60_000)
    shot = tmp_path / "web-app.png"
    page.screenshot(path=str(shot), full_page=True)
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size[0] == 1280 and im.size[1] >= 900  # the viewport's width; the full page is at least as tall
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50  # text, tables, a plot: many colours, not one fill
        assert max(count for count, _ in colours) < im.size[0] * im.size[1]
    if os.environ.get("HFMEM_DOCS_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "web-app.png").write_bytes(shot.read_bytes())


def test_a_share_link_fills_the_inputs_and_answers_on_load(server, page):
    page.goto(server + "?tab=serve&model=Qwen%2FQwen3-8B&context=8192&gpu=RTX-4090")
    assert _rendered_bytes(page) == _expected_bytes()
    assert _field(page, "serve-model").input_value() == "Qwen/Qwen3-8B"
    assert _field(page, "serve-context").input_value() == "8192"
    assert _field(page, "serve-gpu").input_value() == "RTX-4090"
    assert page.get_by_role("tab", name="Serving").get_attribute("aria-selected") == "true"


def test_an_error_is_the_cli_s_line(server, page):
    # the independent source: what `hfmem infer` prints on stderr for the same model
    run = subprocess.run([sys.executable, "-c", "from hfmem.cli import main; main(['infer', 'not a model id!!'])"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env=dict(os.environ, HF_HUB_OFFLINE="1"))
    expected = run.stderr.strip()
    assert run.returncode == 2 and expected.startswith("hfmem: error: ")
    page.goto(server)
    page.get_by_role("tab", name="Serving").click()
    _field(page, "serve-model").fill("not a model id!!")
    page.locator("#serve-run").click()
    page.wait_for_function("() => document.querySelector('#serve-error textarea, #serve-error input').value",
                           timeout=60_000)
    assert _field(page, "serve-error").input_value() == expected
    assert "Traceback" not in page.content()


def test_the_calculator_link_shows_the_api_s_table(server, page):
    from hfmem import Options, api

    page.goto(server + "?tab=calc&models=baichuan-inc%2FBaichuan-7B")
    page.wait_for_selector("#calc-tables td.bytes", timeout=60_000)
    cells = [c.get_attribute("data-bytes") for c in page.locator("#calc-table-0 tbody td.bytes").all()]
    rows = api.analyze("baichuan-inc/Baichuan-7B", Options(offline=True)).table().rows
    expected = [str(v) for r in rows for v in (r.largest_layer_bytes, r.total_bytes, r.training_adam_bytes)
                if v is not None]
    assert cells == expected
    # the Model Memory Calculator's published float32 "Total Size" for Baichuan-7B (its own example, on
    # huggingface.co/spaces/hf-accelerate/model-memory-usage): 26.08 GB
    first_row = page.locator("#calc-table-0 tbody tr").first.locator("td").all_inner_texts()
    assert first_row[0] == "float32" and first_row[3] == "26.08 GB"
    assert _field(page, "calc-models").input_value() == "baichuan-inc/Baichuan-7B"
