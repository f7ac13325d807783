"""The demo app in a real browser: headless Chromium driven by Selenium against
``python -m resnet9.app`` in a subprocess (a tiny trained model, a tiny test set). Uploading a
PNG shows predict's top-1 class; Grad-CAM shows an overlay; opening the misclassified section
fills its gallery; a text file gets predict's one-line message; the page loads nothing from the
internet.

Needs Debian's ``chromium`` and ``chromium-driver`` (apt) and gradio: skipped where absent,
failed in CI. A screenshot after a prediction with Grad-CAM goes to the test's temporary folder;
``RESNET9_APP_SCREENSHOT=docs/app/screenshot.png`` also writes it there, and
``RESNET9_APP_MODEL=data/model.pt`` serves that model instead of the tiny one (how
docs/app/screenshot.png was made: the tiny model's predictions are meaningless).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, colour_arrays, free_port, serve, subprocess_env
from resnet9 import app, paths

pytestmark = pytest.mark.slow
WINDOW = (1280, 880)  # pixels: the whole page, gallery closed, in one screenshot
WAIT_S = 120  # for anything on the page; generous for a loaded 2-core machine


def _need(what: str, found: bool) -> None:
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing; CI must install it (see the module docstring)")
        pytest.skip(f"{what} is absent (the browser test needs it)")


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    """The app on a free port, serving ``RESNET9_APP_MODEL`` or the tiny model, with 40
    synthetic test images; yields its URL once it prints it (an event; at most 300 s)."""
    _need("gradio", _importable("gradio"))
    work = tmp_path_factory.mktemp("app")
    x, y = colour_arrays(40, seed=1)
    np.savez(work / "test.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    port = free_port()
    model = work / paths.MODEL_FILE  # where the app looks by default; the page shows this path
    model.parent.mkdir(parents=True)
    shutil.copy(os.environ.get("RESNET9_APP_MODEL") or request.getfixturevalue("tiny_model"),
                model)
    command = [sys.executable, "-m", "resnet9.app", "--model", str(paths.MODEL_FILE), "--port",
               str(port), "--test-data", "test.npz", "--gallery-images", "40", "--device", "cpu"]
    env = subprocess_env(OMP_NUM_THREADS="1", HOME=str(work))
    with serve(command, work, env) as url:
        yield {"url": url, "model": model, "work": work}


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium showing :data:`WINDOW` pixels of page, driven through Debian's
    chromedriver (named explicitly: Selenium Manager would otherwise go online for one)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    _need("chromium", bool(chromium))
    _need("chromedriver (Debian: chromium-driver)", bool(driver))
    _need("selenium", _importable("selenium"))
    os.environ.setdefault("SE_AVOID_STATS", "true")  # no usage statistics sent by Selenium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    # the window's size includes (headless) browser chrome: fix the page's own size instead
    chrome.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})
    yield chrome
    chrome.quit()


def _wait(browser, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S).until(lambda b: condition(b))


def _open(browser, server) -> None:
    from selenium.webdriver.common.by import By

    browser.get(server["url"])
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))


def _upload(browser, path: Path) -> None:
    from selenium.webdriver.common.by import By

    for clear in browser.find_elements(By.CSS_SELECTOR, "#upload button[aria-label=Clear]"):
        clear.click()  # a file is shown: its drop zone (and input) come back once cleared
    # the input is hidden behind Gradio's drop zone; chromedriver still sets its files
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))[0] \
        .send_keys(str(path))


def _top1(browser) -> str:
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, "#label [data-testid=label-output-value]")
    return found[0].text if found else ""


def _predict_top1(model: Path, image: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "resnet9.predict", str(image), "--model",
                           str(model), "--device", "cpu", "--json"], capture_output=True,
                          text=True, timeout=300, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["predictions"][0]["top_k"][0]["class"]


def test_an_uploaded_png_shows_predicts_top_class(server, browser, tmp_path):
    image = tmp_path / "upload.png"
    Image.fromarray(colour_arrays(3, seed=2)[0][2]).resize((50, 40)).save(image)
    _open(browser, server)
    _upload(browser, image)
    _wait(browser, _top1)
    assert _top1(browser) == _predict_top1(server["model"], image)
    # offline: every resource the page loaded came from the app itself
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(server["url"]) for u in urls), urls


def test_gradcam_shows_an_overlay(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    _open(browser, server)
    example = app.EXAMPLES_DIR / "horse.png"
    _upload(browser, example)
    _wait(browser, _top1)
    assert not browser.find_elements(By.CSS_SELECTOR, "#overlay img")
    browser.find_element(By.CSS_SELECTOR, "#gradcam input[type=checkbox]").click()
    overlay = _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#overlay img"))[0]
    _wait(browser, lambda b: overlay.get_attribute("naturalWidth") not in (None, "0"))
    assert int(overlay.get_attribute("naturalWidth")) == app.SHOW_PX
    assert _top1(browser) == _predict_top1(server["model"], example)
    shot = tmp_path / "screenshot.png"
    assert browser.save_screenshot(str(shot))
    assert Image.open(shot).size == WINDOW
    if os.environ.get("RESNET9_APP_SCREENSHOT"):
        target = ROOT / os.environ["RESNET9_APP_SCREENSHOT"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)


def test_the_misclassified_gallery_fills(server, browser):
    from selenium.webdriver.common.by import By

    _open(browser, server)
    # Opening the section is the only click: it loads the gallery (issue 32).
    browser.find_element(By.CSS_SELECTOR, "#misclassified button").click()
    images = _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#gallery img"))
    source = browser.find_element(By.ID, "gallery-source").text
    assert "of 40 test images misclassified" in source and "test.npz" in source
    wrong = int(source.split(" of ")[0].replace(",", ""))
    assert len(images) == min(wrong, app.GALLERY_SHOWN) > 0
    captions = browser.find_element(By.ID, "gallery").text
    assert " / " in captions


def test_a_text_file_gets_predicts_message(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    notes = tmp_path / "notes.txt"
    notes.write_text("these are not pixels\n")
    _open(browser, server)
    _upload(browser, notes)
    message = _wait(browser, lambda b: b.find_element(By.ID, "message").text)
    assert "notes.txt" in message and "not an image" in message, message
    assert _top1(browser) == ""
    _upload(browser, app.EXAMPLES_DIR / "cat.png")  # the app is still serving
    _wait(browser, _top1)
    assert browser.find_element(By.ID, "message").text == ""
