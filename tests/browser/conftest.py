"""Browser fixtures: Debian's Chromium driven by Playwright (sync API) against the live server,
a real django-q2 cluster process, and a directory for screenshots.

Chromium is launched from ``/usr/bin/chromium`` (``scripts/ensure-chromium.sh`` installs it
from Debian's packages): Playwright never downloads a browser. Without it the browser tests
skip, unless ``HAILUO_REQUIRE_BROWSER=1`` (``make test`` sets it), which turns that into an error.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from tests.conftest import qcluster_process

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]

_SCREENSHOTS: list[Path] = []


def _browser_missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (scripts/ensure-chromium.sh installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (scripts/bootstrap.sh --test)"
    return None


def pytest_collection_modifyitems(config, items):
    browser_items = [item for item in items if "browser" in item.keywords]
    if not browser_items:
        return
    missing = _browser_missing()
    if missing is None:
        return
    if os.environ.get("HAILUO_REQUIRE_BROWSER") == "1":
        raise pytest.UsageError(f"HAILUO_REQUIRE_BROWSER=1 but {missing}")
    skip = pytest.mark.skip(reason=f"no browser: {missing}")
    for item in browser_items:
        item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if _SCREENSHOTS:
        terminalreporter.write_sep("-", "browser screenshots")
        for path in _SCREENSHOTS:
            terminalreporter.write_line(str(path))


@pytest.fixture
def browser(django_db_setup):
    """Chromium, for one test.

    Playwright's sync API keeps an asyncio loop running in this thread while it is started:
    Django's async-safety check is relaxed for that time, and Django hands out other
    connection objects then (asgiref's context-local storage). So the browser lives inside
    one test only, after pytest-django has prepared the database (serialized rollback
    restores the price rules with the original connection) and is gone before it flushes,
    and the connections opened meanwhile are closed here.
    """
    from django.db import connections
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()
                connections.close_all()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_page(browser, live_server):
    """``new_page(**context_options)``: a fresh browser context (its own cookies) and page.
    Uncaught JavaScript errors on any page fail the test."""
    contexts, errors = [], []

    def make(**options):
        context = browser.new_context(base_url=live_server.url, viewport=options.pop("viewport", {"width": 1366, "height": 900}), **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    """Where the run saves its screenshots (``HAILUO_SCREENSHOT_DIR`` or a temp dir); the
    paths are listed at the end of the run."""
    wanted = os.environ.get("HAILUO_SCREENSHOT_DIR")
    path = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def screenshot(screenshot_dir):
    """``screenshot(page, name, full_page=False, animations="disabled")``: save ``name.png``."""

    def take(page, name: str, *, full_page: bool = False, animations: str = "disabled") -> Path:
        path = screenshot_dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page, animations=animations, caret="hide")
        _SCREENSHOTS.append(path)
        return path

    return take


@pytest.fixture
def login(live_server):
    """``login(page, email, password)``: log in through the login form, as a person would."""

    def go(page, email: str, password: str, *, next_url: str = ""):
        page.goto("/accounts/login/" + (f"?next={next_url}" if next_url else ""))
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/accounts/login/" not in url)

    return go


def png_bytes(width: int, height: int, color=(40, 90, 200)) -> bytes:
    """A PNG made with Pillow: a gradient, so the preview and the provider see a real image."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), color)
    draw = ImageDraw.Draw(image)
    for x in range(0, width, max(width // 16, 1)):
        draw.rectangle([x, 0, x + width // 32, height], fill=(255, 200 - (x * 150 // width), 60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def settled(page) -> None:
    """Wait until htmx has swapped and processed what it loaded (a control clicked earlier
    would have no htmx behaviour yet)."""
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-added, .htmx-settling, .htmx-swapping')"
    )


# --- the server side: media, public base URL, a django-q2 cluster --------------------------
@pytest.fixture
def public_base_url(settings, live_server):
    """Callbacks and uploaded images point at the live server."""
    settings.HAILUO_PUBLIC_BASE_URL = live_server.url
    return live_server.url


@pytest.fixture
def qcluster(live_server, media_root, public_base_url, tmp_path):
    """A real django-q2 cluster (workers + scheduler) in its own process, on the test database,
    sending provider callbacks to the live server (as tests/test_e2e.py does)."""
    with qcluster_process(public_base_url=live_server.url, media_root=media_root, log_path=tmp_path / "qcluster.log") as proc:
        yield proc
