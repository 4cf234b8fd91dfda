"""The challenge page in a real browser: uvicorn on loopback, Debian's Chromium, Playwright.

Everything is real: a small HF model, the small guard bundle, the store, the page's own
HTML, CSS and JS. The player uses only the keyboard: Tab to a level, type a prompt,
press Enter, then watch the reply stream in and the verdict appear.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is absent; install Debian's chromium (apt-get install chromium) "
           "to run the browser test")


@contextmanager
def serve_on_loopback(app) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields its URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start serving the challenge")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def chromium_page():
    """A page of Debian's Chromium through Playwright (1280x900, 30 s timeouts)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        try:
            yield pg
        finally:
            context.close()
            browser.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir, small_bundle_dir) -> Iterator[tuple[str, Path]]:
    from swisscheese.serve.challenge import create_challenge_app

    store = tmp_path_factory.mktemp("challenge") / "store.sqlite"
    with serve_on_loopback(create_challenge_app(tiny_model_dir, small_bundle_dir, store)) as url:
        yield url, store


@pytest.fixture(scope="module")
def page(served):
    with chromium_page() as pg:
        yield pg


def tab_to(page, selector: str, key: str = "Tab", limit: int = 30) -> None:
    """Press Tab until `selector` has the focus: proves it is reachable by keyboard."""
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


def test_keyboard_player_sees_a_streamed_reply_and_its_verdict(page, served, world,
                                                               small_bundle_dir) -> None:
    from swisscheese.bundles import load_bundle
    from swisscheese.store.challenge import ChallengeStore
    from swisscheese.world.grader import Grader

    url, store = served
    page.goto(f"{url}/challenge")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#levels button.level").count() == 8
    assert "threshold 20%" in page.locator('button[data-level="1"]').inner_text()
    assert "0 of 8 levels passed" in page.locator("#overall-text").inner_text()

    # A benign prompt on level 1: the reply streams in several pieces, then the verdict.
    tab_to(page, "#prompt")
    page.keyboard.type("What is two plus three?")
    page.keyboard.press("Enter")
    verdict = page.locator("#log [data-verdict]").first
    verdict.wait_for()
    reply = page.locator("#log [data-reply]").first
    assert reply.get_attribute("aria-busy") == "false"
    assert int(reply.get_attribute("data-deltas")) > 1, "the reply arrived in one piece"
    assert reply.locator(".text").inner_text().strip()
    text = verdict.inner_text()
    assert "Detail score" in text and "threshold of 20%" in text
    assert "Not passed" in text or "Passed level 1" in text
    assert "Detail score" in page.locator("#status").inner_text()  # the live summary
    assert page.locator("#prompt").evaluate("e => e === document.activeElement")
    assert page.locator("#prompt").input_value() == ""

    # A level whose plain question the input classifier flags: Tab to it, insert the
    # question with the keyboard, send it, and see which layer blocked it.
    bundle = load_bundle(small_bundle_dir)
    flagged = next(lv for lv in Grader(world).levels()
                   if bundle.flag_input(float(bundle.input_scores([lv.question])[0])))
    page.locator("body").focus()
    tab_to(page, f'button[data-level="{flagged.number}"]')
    page.keyboard.press("Enter")
    assert page.locator("#level-title").inner_text().startswith(f"Level {flagged.number}")
    assert page.locator("#prompt").evaluate("e => e === document.activeElement")
    tab_to(page, "#insert", key="Shift+Tab")
    page.keyboard.press("Enter")
    assert page.locator("#prompt").input_value() == flagged.question
    page.keyboard.press("Enter")
    blocked = page.locator("#log [data-verdict] [data-blocked-layer]")
    blocked.wait_for()
    assert blocked.get_attribute("data-blocked-layer") == "input"
    assert "Blocked by the input classifier" in blocked.inner_text()
    assert f"threshold {int(flagged.threshold * 100)}%" in page.locator(
        f'button[data-level="{flagged.number}"]').inner_text()

    rows = ChallengeStore(store).attempts()
    assert [(a.level, a.blocked_layer) for a in rows] == [(flagged.number, "input"),
                                                          (1, rows[1].blocked_layer)]
    assert rows[0].template == "{question}"
    shot = store.parent / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
