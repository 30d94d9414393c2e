"""The API page renders in a browser with nothing from outside the service."""

from __future__ import annotations

import dataclasses
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Route, sync_playwright
from werkzeug.serving import make_server

from app import create_app
from app.config import Settings

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def served(tmp_path) -> Iterator[str]:
    """The app behind a real HTTP server on a free loopback port."""
    settings = dataclasses.replace(
        Settings.from_env(), data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'docs.db'}"
    )
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def test_the_docs_page_shows_the_operations_without_internet(served):
    outside: list[str] = []

    def only_the_service(route: Route) -> None:
        if route.request.url.startswith(served):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()
            page.route("**/*", only_the_service)
            page.goto(f"{served}/api/v1/docs")
            page.wait_for_selector(".opblock", timeout=60_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            title = page.locator(".information-container .title").inner_text()
        finally:
            browser.close()
    assert outside == []
    assert "Opsflow" in title
    assert any(path == "/api/v1/projects/{pid}/script-executions" for path in paths), paths
    assert "/api/v1/health" in paths


def test_the_page_s_files_are_served_publicly_and_unknown_ones_are_404(served):
    with urllib.request.urlopen(f"{served}/api/v1/docs/assets/swagger-ui-bundle.js") as response:
        assert response.status == 200
        assert "javascript" in response.headers["Content-Type"]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{served}/api/v1/docs/assets/../../app/config.py")
    assert missing.value.code == 404
