"""The ops tests drive Chromium too: the browser fixture of tests/browser."""

from tests.browser.conftest import browser  # noqa: F401  (re-exported fixture)
