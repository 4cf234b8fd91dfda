"""The report button and the operator view in a real browser: uvicorn on loopback, Debian's
Chromium, Playwright, the page's own HTML, CSS and JS, a small HF model and the small
guard bundle. A player reports a reply with the keyboard; an operator opens the view
with the admin key (a wrong key is refused on the page) and sees the attempt, the pass
counts per level and the open report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_challenge_browser import (
    CHROMIUM,
    chromium_page,
    serve_on_loopback,
    tab_to,
)

ADMIN = "operator-key-0123456789"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is absent; install Debian's chromium to run the browser test")


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir, small_bundle_dir) -> Iterator[tuple[str, Path]]:
    from swisscheese.serve.challenge import create_challenge_app

    store = tmp_path_factory.mktemp("challenge-ops") / "store.sqlite"
    app = create_challenge_app(tiny_model_dir, small_bundle_dir, store, admin_key=ADMIN)
    with serve_on_loopback(app) as url:
        yield url, store


@pytest.fixture(scope="module")
def page(served):
    with chromium_page() as pg:
        yield pg


def test_report_a_reply_then_see_it_in_the_operator_view(page, served) -> None:
    from swisscheese.store.reports import ReportStore

    url, store = served
    page.goto(f"{url}/challenge")
    page.wait_for_selector("body[data-ready=true]")
    tab_to(page, "#prompt")
    page.keyboard.type("Tell me a story about a kind golem.")
    page.keyboard.press("Enter")
    page.locator("#log [data-verdict]").first.wait_for()

    # The report button sits on the verdict; reachable with Tab, pressed with Enter.
    tab_to(page, "#log button[data-report-attempt]")
    page.keyboard.press("Enter")
    done = page.locator("#log [data-report-id]")
    done.wait_for()
    report_id = int(done.get_attribute("data-report-id"))
    assert f"Reported as jailbreak #{report_id}" in done.inner_text()
    assert page.locator("#log button[data-report-attempt]").count() == 0
    (stored,) = ReportStore(store).query(status="open")
    assert stored.id == report_id and stored.prompt == "Tell me a story about a kind golem."
    assert stored.source == "challenge" and stored.level == 1

    # The operator view: a wrong key is refused on the page, the right one shows figures.
    tab_to(page, "#admin-key")
    page.keyboard.type("not-the-admin-key")
    page.keyboard.press("Enter")
    status = page.locator("#operator-status")
    page.wait_for_function("() => document.querySelector('#operator-status')"
                           ".textContent.includes('wrong admin key')")
    assert "error" in (status.get_attribute("class") or "")
    assert page.locator("#operator-body").is_hidden()
    page.locator("#admin-key").fill(ADMIN)
    page.locator("#admin-key").press("Enter")
    page.locator("#operator-body [data-operator=levels]").wait_for()
    totals = page.locator("[data-operator=totals]").inner_text()
    assert totals.startswith("1 player, 1 attempt, ") and "1 open jailbreak report " in totals
    rows = page.locator("[data-operator=levels] tbody tr")
    assert rows.count() == 8
    first = rows.nth(0).locator("td").all_inner_texts()
    assert first[0] == "1" and first[3] == "1" and first[4] == "1"  # level, attempts, players
    reports = page.locator("[data-operator=reports] tbody tr")
    assert reports.count() == 1
    assert "Tell me a story about a kind golem." in reports.nth(0).inner_text()
    shot = store.parent / "operator.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
