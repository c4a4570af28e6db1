"""The search page in a real headless Chromium (Debian's package), driven by Playwright.

Type a query, see thumbnails load, open a photo, "more like this", drop an
image; on a phone-sized window nothing overflows sideways. With
CLIPSEARCH_SCREENSHOT=PATH the test also saves its screenshot there (the one in
docs/ comes from this).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
pytest.importorskip("playwright", reason="pip install '.[test]' installs playwright")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} missing: apt-get install chromium (.ci/run does)",
                allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

from search.web import Server  # noqa: E402

LOADED = "imgs => imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0)"


@pytest.fixture
def page(site: Server):  # noqa: ANN201
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1100, "height": 800})
        tab.set_default_timeout(30_000)
        tab.goto(site.url)
        yield tab
        browser.close()


def first_row_loaded(page) -> None:  # noqa: ANN001
    page.wait_for_selector("#results img")
    page.wait_for_function(f"() => ({LOADED})([...document.querySelectorAll("
                           "'#results figure:nth-child(-n+4) img')])")


def test_search_open_more_like_this_and_drop(page, photos: Path, tmp_path: Path) -> None:  # noqa: ANN001
    page.fill('input[name="q"]', "night")
    page.press('input[name="q"]', "Enter")
    first_row_loaded(page)
    assert page.locator("#results img").count() == 12
    shot = tmp_path / "screenshot.png"
    page.screenshot(path=str(shot))
    if os.environ.get("CLIPSEARCH_SCREENSHOT"):  # 256 colours: small enough to commit
        Image.open(shot).convert("RGB").quantize(256).save(os.environ["CLIPSEARCH_SCREENSHOT"],
                                                          optimize=True)

    first_alt = page.locator("#results img").first.get_attribute("alt")
    page.locator("#results figure").first.click()
    page.wait_for_selector("#view.open img")
    page.wait_for_function(f"() => ({LOADED})([...document.querySelectorAll('#view img')])")
    assert first_alt in page.locator("#view .path").inner_text()
    page.get_by_role("button", name="More like this").click()
    page.wait_for_selector("#view:not(.open)", state="attached")
    page.wait_for_function("alt => document.querySelector('#results img')?.alt === alt",
                           arg=first_alt)  # a photo is most like itself
    first_row_loaded(page)

    dropped = photos / "city" / "p04.jpg"
    payload = base64.b64encode(dropped.read_bytes()).decode()
    page.evaluate("""data => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "drop.jpg", {type: "image/jpeg"}));
        document.body.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer,
                                                           bubbles: true, cancelable: true}));
    }""", payload)
    page.wait_for_function("alt => document.querySelector('#results img')?.alt === alt",
                           arg=str(dropped))
    first_row_loaded(page)


def test_a_phone_sized_window_does_not_overflow(page) -> None:  # noqa: ANN001
    page.set_viewport_size({"width": 375, "height": 740})
    page.fill('input[name="q"]', "beach")
    page.press('input[name="q"]', "Enter")
    first_row_loaded(page)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def first_alt(page) -> str:  # noqa: ANN001
    return page.locator("#results img").first.get_attribute("alt")


def test_a_link_shows_its_results_and_back_restores_the_previous_search(
        page, site: Server, photos: Path) -> None:  # noqa: ANN001
    page.goto(site.url + "/?q=night&k=24")
    first_row_loaded(page)
    assert page.input_value('input[name="q"]') == "night"
    night = [page.locator("#results img").nth(i).get_attribute("alt") for i in range(12)]
    page.fill('input[name="q"]', "beach")
    page.fill('input[name="under"]', str(photos / "beach"))
    page.press('input[name="q"]', "Enter")
    page.wait_for_url("**/?q=beach*")
    page.wait_for_function("n => document.querySelectorAll('#results img').length === n", arg=6)
    assert all("/beach/" in page.locator("#results img").nth(i).get_attribute("alt")
               for i in range(6))
    page.go_back()
    page.wait_for_function("n => document.querySelectorAll('#results img').length === n", arg=12)
    assert [page.locator("#results img").nth(i).get_attribute("alt")
            for i in range(12)] == night
    assert page.input_value('input[name="q"]') == "night"
    page.reload()
    first_row_loaded(page)
    assert first_alt(page) == night[0]


def test_filters_live_in_the_url_and_reach_the_api(page, site: Server) -> None:  # noqa: ANN001
    page.goto(site.url + "/?q=night&after=2000-01-01&sort=taken")
    first_row_loaded(page)
    assert page.locator("#filters").get_attribute("open") is not None  # shown: some are set
    assert page.input_value('input[name="after"]') == "2000-01-01"
    assert page.input_value('select[name="sort"]') == "taken"
    page.fill('input[name="camera"]', "no such camera")
    page.press('input[name="q"]', "Enter")
    page.wait_for_url("**camera=no+such+camera*")
    page.wait_for_function("() => document.getElementById('status').textContent === "
                           "'no matches'")


def test_the_duplicates_view_shows_the_api_s_groups(page, site: Server, photos: Path,  # noqa: ANN001
                                                    open_library) -> None:  # noqa: ANN001
    import json
    import shutil
    import urllib.request

    # A byte copy, indexed while the server runs: at least one group to show.
    shutil.copy(photos / "beach" / "p01.png", photos / "city" / "copy of p01.png")
    open_library().index([str(photos)])
    with urllib.request.urlopen(site.url + "/api/duplicates") as answer:
        groups = json.load(answer)["groups"]
    assert any(len(g["members"]) == 2 for g in groups)
    page.click("#dups")
    page.wait_for_url("**/?view=duplicates")
    page.wait_for_function("() => !document.getElementById('status').textContent"
                           ".startsWith('looking')")
    assert page.locator(".group").count() == len(groups)
    assert page.locator(".group figure").count() == sum(len(g["members"]) for g in groups)
    assert page.locator(".group figure.keep").count() == len(groups)


def test_arrow_keys_walk_the_results_enter_opens_and_escape_closes(page) -> None:  # noqa: ANN001
    page.fill('input[name="q"]', "night")
    page.press('input[name="q"]', "Enter")
    first_row_loaded(page)
    page.locator("#status").click()  # out of the search box: keys now move through results
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    second = page.locator("#results figure.selected img").get_attribute("alt")
    assert second == page.locator("#results img").nth(1).get_attribute("alt")
    page.keyboard.press("Enter")
    page.wait_for_selector("#view.open img")
    assert second in page.locator("#view .path").inner_text()
    page.keyboard.press("Escape")
    page.wait_for_selector("#view:not(.open)", state="attached")
