"""``ausm app`` in a real browser: the server as a subprocess, headless Chromium through selenium, a click on
the swan of blackswan.mp4, Track, the palette zip downloaded by the browser, and its masks compared with
``ausm segment --prompt-point x,y --frame 0 --obj-id 1`` for the same click (first 10 frames).

Set ``AUSM_APP_SCREENSHOT=docs/img/app.png`` to save the screenshot of the README.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED, needs_shared, subprocess_env

VIDEO = SHARED / "blackswan_mp4__Segment-and-Track-Anything" / "assets" / "blackswan.mp4"
FRAMES = 10
SWAN = (300, 300)  # a pixel on the swan's body in frame 0 (854x480)

pytest.importorskip("fastapi", reason="the app extra is not installed (pip install -e '.[app]')")
selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    needs_shared,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="no chromium / chromedriver (Debian: apt-get install chromium chromium-driver)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """``ausm app blackswan.mp4 --max-frames 10`` on a free loopback port; yields its URL."""
    port = _free_port()
    env = {**subprocess_env(), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "ausm", "app", str(VIDEO), "--max-frames", str(FRAMES),
                             "--port", str(port), "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        line = proc.stdout.readline()
        assert url in line, line
        for _ in range(300):
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,900", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, cond, timeout: float, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: cond(d), message=what)


def _page_ready(driver) -> bool:
    return driver.execute_script(
        "return !!(ui.state && ui.state.video && !ui.state.task && ui.img && ui.frameShown === 0)")


def _click_source_pixel(driver, x: int, y: int) -> None:
    """Click the centre of source pixel (x, y) of the frame shown on the canvas."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "view")
    w, h = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", canvas)
    cx, cy = (x + 0.5) * w / 854, (y + 0.5) * h / 480
    ActionChains(driver).move_to_element_with_offset(canvas, int(round(cx - w / 2)), int(round(cy - h / 2))).click().perform()


def _drag_source_box(driver, p0, p1) -> None:
    """Drag from source pixel p0 to p1 on the canvas."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "view")
    w, h = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", canvas)
    off = [(int(round((x + 0.5) * w / 854 - w / 2)), int(round((y + 0.5) * h / 480 - h / 2))) for x, y in (p0, p1)]
    chain = ActionChains(driver).move_to_element_with_offset(canvas, *off[0]).click_and_hold()
    chain.move_to_element_with_offset(canvas, (off[0][0] + off[1][0]) // 2, (off[0][1] + off[1][1]) // 2)
    chain.move_to_element_with_offset(canvas, *off[1]).release().perform()


def _cli_masks(tmp_path: Path, x: int, y: int) -> Path:
    out = tmp_path / "cli"
    subprocess.run([sys.executable, "-m", "ausm", "segment", str(VIDEO), "--prompt-point", f"{x},{y}", "--frame", "0",
                    "--obj-id", "1", "--max-frames", str(FRAMES), "--out", str(out), "--no-overlay", "--quiet"],
                   check=True, env=subprocess_env(), timeout=300)
    return out


def test_click_track_download_matches_cli(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server)
    _wait(browser, _page_ready, 60, "the page shows frame 0 of the video")
    _click_source_pixel(browser, *SWAN)
    _wait(browser, lambda d: d.execute_script("return ui.state.prompts.length === 1 && ui.frameShown === 0 && "
                                              "ui.img && Number(canvas.dataset.version) === ui.state.view_version"),
          60, "the click's mask is shown")
    prompts = browser.execute_script("return ui.state.prompts")
    assert prompts[0]["frame"] == 0 and prompts[0]["obj_id"] == 1 and prompts[0]["labels"] == [1]
    x, y = (int(v) for v in prompts[0]["points"][0])
    assert abs(x - SWAN[0]) <= 1 and abs(y - SWAN[1]) <= 1  # the pixel that was clicked

    # a second tab is a separate session: no video state, prompts or results leak into it
    first, first_sid = browser.current_window_handle, browser.execute_script("return ui.state.sid")
    browser.switch_to.new_window("tab")
    browser.get(server)
    _wait(browser, _page_ready, 60, "the second tab shows frame 0")
    assert browser.execute_script("return ui.state.prompts.length") == 0
    assert browser.execute_script("return ui.state.sid") != first_sid
    assert browser.find_elements(By.CSS_SELECTOR, "#objects li") == []
    browser.find_element(By.ID, "tool-box").click()  # a box dragged in this tab stays in this tab
    _drag_source_box(browser, (150, 60), (520, 390))
    _wait(browser, lambda d: d.execute_script("return ui.state.prompts.length === 1"), 60, "the box is a prompt")
    box = browser.execute_script("return ui.state.prompts[0]")
    assert box["kind"] == "box" and all(abs(a - b) <= 2 for a, b in zip(box["box"], (150, 60, 521, 391))), box
    browser.close()
    browser.switch_to.window(first)
    assert browser.execute_script("return ui.state.prompts") == prompts

    browser.find_element(By.ID, "track").click()
    _wait(browser, lambda d: d.find_element(By.ID, "status").text == "tracked", 120, "tracking finishes")
    _wait(browser, lambda d: d.execute_script("return ui.frameShown === ui.frame && "
                                              "Number(canvas.dataset.version) === ui.state.view_version"),
          30, "the last tracked frame is shown")
    assert browser.execute_script("return ui.frame") == FRAMES - 1  # live preview followed the run
    shot = os.environ.get("AUSM_APP_SCREENSHOT")
    if shot:  # a 256-colour PNG keeps the README's image small
        png = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
        png.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(shot, optimize=True)

    browser.find_element(By.ID, "dl-palette").click()
    zpath = browser.downloads / "masks_palette_png.zip"
    _wait(browser, lambda d: zpath.is_file() and not list(browser.downloads.glob("*.crdownload")), 30,
          "the browser downloads the palette zip")
    with zipfile.ZipFile(zpath) as z:
        app = {n: np.asarray(Image.open(io.BytesIO(z.read(n)))) for n in sorted(z.namelist())}

    cli = _cli_masks(tmp_path, x, y)
    names = sorted(p.name for p in cli.glob("*.png"))
    assert sorted(app) == names and len(names) == FRAMES
    agree = [float((app[n] == np.asarray(Image.open(cli / n))).mean()) for n in names]
    print(f"app vs CLI: equal pixels per frame min {min(agree):.6f}, mean {np.mean(agree):.6f}")
    assert min(agree) >= 0.999
    assert all((app[n] == 1).mean() > 0.03 for n in names)  # the swan is segmented on every frame
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert errors == [], errors  # no script errors and no failed requests in the page
