"""Helpers for the media tests (test_browser.py, test_aiortc.py): a small cluster (2 signal-node
processes + redis-server on free loopback ports), headless Chromium through Selenium, bounded waits.

Requirements (missing ones skip the tests, or fail them when SIGNAL_REQUIRE_MEDIA=1, as CI should set):
- browser tests: Debian `chromium` and `chromium-driver` (or CHROMIUM_BIN / CHROMEDRIVER_BIN), PyPI `selenium`
- aiortc tests: PyPI `aiortc`

Chromium runs with a fake camera and microphone (`--use-fake-device-for-media-stream`, a moving test pattern
and a beep), permission prompts accepted (`--use-fake-ui-for-media-stream`), `--headless=new`, `--no-sandbox`.
With no STUN/TURN server its ICE candidates are host candidates on this machine's own addresses, which the
kernel delivers locally (nothing leaves the machine).
"""

import os
import shutil
import tempfile
import time
import uuid

import pytest

from cluster import Cluster
from conftest import SWIFT

REQUIRED = os.environ.get("SIGNAL_REQUIRE_MEDIA", "") == "1"
CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN") or shutil.which("chromedriver")
# How long a call may take to show frames on both sides (join → decoded frames), seconds.
MEDIA_TIMEOUT = float(os.environ.get("SIGNAL_MEDIA_TIMEOUT", "20"))

CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--window-size=1280,720",
    # Host candidates as real addresses rather than mDNS names (no multicast resolver needed).
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--metrics-recording-only",
]


def unavailable(reason):
    """Skip the test, or fail it when SIGNAL_REQUIRE_MEDIA=1."""
    if REQUIRED:
        pytest.fail(f"SIGNAL_REQUIRE_MEDIA=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def require_swift():
    if not SWIFT:
        pytest.skip("media tests run against the signal-node binary (SIGNAL_SERVER=swift)")


def require_browser():
    require_swift()
    try:
        import selenium  # noqa: F401
    except ImportError:
        unavailable("selenium is not installed (pip install selenium)")
    if not CHROMIUM or not CHROMEDRIVER:
        unavailable("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")


def require_aiortc():
    require_swift()
    try:
        import aiortc  # noqa: F401
    except ImportError:
        unavailable("aiortc is not installed (pip install aiortc)")


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(predicate, timeout, what, interval=0.1, detail=None):
    """Poll predicate() until it returns something truthy (returned); fail after `timeout` seconds with
    `what` and, if given, detail() (e.g. the page's log)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            extra = ""
            if detail is not None:
                try:
                    extra = "\n" + str(detail())
                except Exception as error:  # the detail is best effort
                    extra = f"\n(no detail: {error!r})"
            raise AssertionError(f"{what} not within {timeout}s (last: {last!r}){extra}")
        time.sleep(interval)


def start_cluster(mode="pattern", n=2):
    """n nodes on their own redis-server; the caller stops it."""
    return Cluster(mode, n=n).start()


# --------------------------------------------------------------------------------------------
# Browsers
# --------------------------------------------------------------------------------------------

class Browser:
    """One headless Chromium with its own profile, showing the demo page of one node."""

    def __init__(self, name):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.name = name
        self.profile = tempfile.mkdtemp(prefix=f"chromium-{name}-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROME_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.driver.set_page_load_timeout(15)
        self.driver.set_script_timeout(10)
        self.node = None
        self.console = []
        self.alive = True

    def open(self, node, room, join=True):
        """Load node's demo page with this browser's name and `room` (joined at once with join=True)."""
        from urllib.parse import urlencode

        self.node = node
        query = urlencode({"room": room, "name": self.name, **({"join": "1"} if join else {})})
        self.driver.get(f"{node.url}/?{query}")
        wait_until(lambda: self.js("return Boolean(window.demo)"), 10, f"{self.name}: window.demo",
                   detail=self.console_text)

    def js(self, script, *args):
        """Run script in the page (a returned promise is awaited by WebDriver)."""
        return self.driver.execute_script(script, *args)

    def stats(self):
        return self.js("return demo.stats()")

    def peers(self):
        return self.js("return demo.peerList()")

    def page_log(self):
        return "\n".join(self.js("return demo.log") or [])

    def collect_console(self):
        try:
            self.console.extend(self.driver.get_log("browser"))
        except Exception:
            pass
        return self.console

    def console_text(self):
        self.collect_console()
        lines = [f"{e.get('level')} {e.get('message')}" for e in self.console]
        return f"--- {self.name} console ---\n" + "\n".join(lines[-80:])

    def diagnostics(self):
        parts = []
        try:
            parts.append(f"--- {self.name} page log ---\n{self.page_log()}")
            parts.append(f"--- {self.name} peers ---\n{self.peers()!r}\n{self.stats()!r}")
        except Exception as error:
            parts.append(f"--- {self.name}: page not readable: {error!r}")
        parts.append(self.console_text())
        return "\n".join(parts)

    def errors(self):
        """Console errors other than the expected 404s of the optional config.js and ice-servers."""
        expected = ("/config.js", "/ice-servers")
        return [e for e in self.collect_console()
                if e.get("level") == "SEVERE" and not any(p in e.get("message", "") for p in expected)]

    def quit(self):
        if not self.alive:
            return
        self.alive = False
        try:
            self.collect_console()
            self.driver.quit()
        except Exception:
            pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Browsers:
    """Browsers started for one test, quit at teardown."""

    def __init__(self):
        self.made = []

    def new(self, name):
        browser = Browser(name)
        self.made.append(browser)
        return browser

    def diagnostics(self):
        return "\n".join(b.diagnostics() for b in self.made if b.alive)

    def quit_all(self):
        for browser in self.made:
            browser.quit()
