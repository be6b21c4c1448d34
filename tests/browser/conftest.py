"""Browser tests: Playwright driving Debian's headless Chromium against a live MedVault.

Skipped, with the reason, when /usr/bin/chromium or Playwright is missing. Never downloads a
browser. Screenshots go to $MEDVAULT_SCREENSHOT_DIR when set (docs/screenshots/ is made so).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "accounts"))

from mvfixtures import *  # noqa: E402,F401,F403

CHROMIUM = Path("/usr/bin/chromium")
# Playwright's sync API runs an event loop in this thread; the Django ORM calls made by the
# test itself (fixtures, assertions) are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


# Module scope: Playwright's event loop is stopped before other test folders run.
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium); .ci/run installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e .[test])")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture
def mv_server(transactional_db):
    """A live MedVault that handles one request at a time.

    The test database is in-memory SQLite shared with this thread; concurrent requests on
    it fail with "table is locked" (a test artefact: the real server uses WAL files).
    """
    from django.core.servers.basehttp import WSGIServer
    from django.test.testcases import LiveServerThread
    from pytest_django.live_server_helper import LiveServer

    class SerialServer(WSGIServer):
        def __init__(self, *args, connections_override=None, **kwargs):
            super().__init__(*args, **kwargs)

    class SerialThread(LiveServerThread):
        server_class = SerialServer

    server = LiveServer("localhost", start=False)
    server.thread.__class__ = SerialThread
    server._live_server_modified_settings.enable()
    server.start()
    yield server
    server.stop()
    server._live_server_modified_settings.disable()


@pytest.fixture
def new_page(browser):
    contexts = []

    def make():
        # bypass_csp: Playwright's wait_for_function evaluates strings, which our CSP forbids.
        context = browser.new_context(viewport={"width": 1366, "height": 860}, bypass_csp=True)
        context.set_default_timeout(15000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


class Shots:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def __call__(self, page, name: str, full_page: bool = False) -> None:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(self.directory / f"{name}.png"), full_page=full_page)


@pytest.fixture
def shot():
    target = os.environ.get("MEDVAULT_SCREENSHOT_DIR")
    return Shots(Path(target) if target else None)
