"""The review page in a real browser: headless Chromium (Debian's, driven by Selenium through its chromedriver)
against the real ``sow-qwen3 review`` process and the real tritonserver on the tiny checkpoint.

Set SOW_QWEN3_REVIEW_SCREENSHOT=docs/review.png to keep the page's screenshot (README, "Fix what it flags").
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from support.browser import CHROMEDRIVER, CHROMIUM, review_folder, start_review
from support.infer import API_KEY

pytestmark = [
    pytest.mark.server,  # the review server asks the real tritonserver
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromium-driver (scripts/bootstrap.sh installs them)"),
]

WAIT_S = 60


@pytest.fixture()
def page(keyed_server, tmp_path):
    """The review page of the synthetic song's folder, open in headless Chromium; yields (driver, out folder)."""
    from support.browser import chromium

    manifest, out = review_folder(tmp_path / "catalogue")
    review = start_review([str(manifest), "--out-dir", str(out)], keyed_server.http_url, API_KEY)
    driver = chromium()
    try:
        driver.get(review.url + "#song=song")
        wait(driver, lambda d: d.execute_script("return document.querySelectorAll('#line-rows tr').length") == 10)
        yield driver, out
    finally:
        driver.quit()
        review.stop()


def wait(driver, condition, timeout: float = WAIT_S):
    """Poll ``condition`` until it holds; an element redrawn under it (stale) means: look again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def row_start(driver, index: int) -> float:
    return float(driver.execute_script(f"return document.querySelector('#line-rows tr[data-index=\"{index}\"]').dataset.start"))


def current_time(driver) -> float:
    return float(driver.execute_script("return document.getElementById('player').currentTime"))


def click_row(driver, index: int) -> None:
    wait(driver, lambda d: d.find_element("css selector", f'#line-rows tr[data-index="{index}"] td.text').click()
         or True)


def press(driver, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def chord(driver, modifier: str, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).key_down(modifier).send_keys(key).key_up(modifier).perform()


def saved_state(driver) -> str:
    return driver.find_element("id", "save-state").text


def test_the_page_loads_without_console_errors_and_draws_its_timeline(page):
    driver, _ = page
    wait(driver, lambda d: d.find_element("id", "verdict").text.lower() in ("review", "fail"))
    variance = driver.execute_script("""
        const canvas = document.getElementById('timeline');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const colours = new Set();
        for (let i = 0; i < data.length; i += 4 * 97) colours.add(data[i] << 16 | data[i + 1] << 8 | data[i + 2]);
        return colours.size;""")
    assert variance > 5, "the timeline canvas is blank"
    screenshot = driver.get_screenshot_as_png()
    assert len(screenshot) > 20_000  # a blank 1440x900 page compresses to a few KB
    if os.environ.get("SOW_QWEN3_REVIEW_SCREENSHOT"):
        Path(os.environ["SOW_QWEN3_REVIEW_SCREENSHOT"]).write_bytes(screenshot)
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_clicking_a_line_plays_from_the_lead_in(page):
    driver, _ = page
    click_row(driver, 8)
    start = row_start(driver, 8)
    wait(driver, lambda d: start - 1.5 - 0.05 <= current_time(d) < start)
    assert driver.execute_script("return !document.getElementById('player').paused")


def test_a_nudge_by_key_changes_the_line_and_after_save_the_file(page):
    driver, out = page
    click_row(driver, 4)
    before = row_start(driver, 4)
    from selenium.webdriver.common.keys import Keys

    press(driver, Keys.ARROW_RIGHT)
    wait(driver, lambda d: abs(row_start(d, 4) - (before + 0.1)) < 1e-6)
    chord(driver, Keys.SHIFT, Keys.ARROW_LEFT)  # -0.5 s
    wait(driver, lambda d: abs(row_start(d, 4) - (before - 0.4)) < 1e-6)
    chord(driver, Keys.CONTROL, "s")
    wait(driver, lambda d: saved_state(d) == "saved")
    document = json.loads((out / "song.json").read_text(encoding="utf-8"))
    assert document["lines"][4]["start"] == pytest.approx(before - 0.4, abs=0.0015)
    assert document["lines"][4]["edited"] is True
    assert (out / "song.orig.json").is_file()


def test_a_tap_sets_the_start_from_the_playback_position_and_undo_restores_it(page):
    driver, _ = page
    from selenium.webdriver.common.keys import Keys

    click_row(driver, 3)  # plays from line 3's lead-in; line 3 is selected
    old = row_start(driver, 3)
    wait(driver, lambda d: current_time(d) > old - 1.0)
    low = current_time(driver)
    press(driver, "t")
    high = current_time(driver)
    wait(driver, lambda d: row_start(d, 3) != old)
    assert low - 0.05 <= row_start(driver, 3) <= high + 0.05
    # The next line is selected (read in one script: the rows are redrawn when the live evidence comes back).
    wait(driver, lambda d: d.execute_script(
        "return document.querySelector('#line-rows tr[data-index=\"4\"]').classList.contains('selected')"))
    chord(driver, Keys.CONTROL, "z")
    wait(driver, lambda d: abs(row_start(d, 3) - old) < 1e-6)


def test_realign_of_a_flagged_run_shows_a_proposal_and_accept_puts_it_in(page):
    driver, _ = page
    from selenium.webdriver.common.keys import Keys

    click_row(driver, 4)  # flagged: its doubtful run is lines 4 and 5
    press(driver, "r")
    wait(driver, lambda d: d.find_element("id", "proposal").is_displayed())
    proposed = {int(row.get_attribute("data-index")): float(row.get_attribute("data-start"))
                for row in driver.find_elements("css selector", "#proposal-lines tr")}
    assert sorted(proposed) == [4, 5]
    old = row_start(driver, 4)
    press(driver, Keys.ENTER)
    wait(driver, lambda d: not d.find_element("id", "proposal").is_displayed())
    assert {index: row_start(driver, index) for index in proposed} == proposed
    if abs(proposed[4] - old) >= 0.001:
        chord(driver, Keys.CONTROL, "z")
        wait(driver, lambda d: abs(row_start(d, 4) - old) < 1e-6)


def test_a_save_that_cannot_be_written_shows_the_error_and_leaves_the_files(page):
    """song.lrc is made a folder: renaming the new LRC onto it fails even as root (a read-only mode would not
    stop root), after the new JSON and the .orig copy were renamed into place: they must be rolled back."""
    driver, out = page
    from selenium.webdriver.common.keys import Keys

    (out / "song.lrc").mkdir()
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    click_row(driver, 4)
    press(driver, Keys.ARROW_RIGHT)
    wait(driver, lambda d: not d.find_element("id", "save").get_attribute("disabled"))
    driver.find_element("id", "save").click()
    wait(driver, lambda d: d.find_element("id", "message").is_displayed())
    assert "Not saved" in driver.find_element("id", "message-text").text
    assert saved_state(driver) == "unsaved changes"  # the page keeps the changes to save again
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before
    shutil.rmtree(out / "song.lrc")
