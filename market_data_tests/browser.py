"""A real browser for UI tests: Playwright driving Debian's Chromium (headless), which the
project's set-up (`make test`) installs when missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

CHROMIUM_ENV = "MARKET_DATA_CHROMIUM"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--no-first-run"]  # fmt: skip


def chromium_path() -> str:
    path = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise AssertionError(
            f"no Chromium at {path}: `make test` installs Debian's chromium "
            f"(apt-get install -y chromium), or set {CHROMIUM_ENV}"
        )
    return path


@contextmanager
def browser_page(shots: Path) -> Iterator[Page]:
    """A page of a headless Chromium; on a failure, a screenshot is left in ``shots``."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(30_000)
        # the UI's first-visit dialog (community, newsletter) can show at any moment: dismissed
        # whenever it stands in the way
        skip = page.get_by_role("button", name="Skip")
        page.add_locator_handler(skip, lambda: skip.click())
        try:
            yield page
        except BaseException:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
