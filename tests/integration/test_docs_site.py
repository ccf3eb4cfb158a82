"""The built documentation site as a reader meets it, in headless Chromium: the start page and
one guide render with their navigation (MkDocs Material's pages, opened from the files)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_web_ui import CHROMIUM, page_text
from tests.unit.test_docs import REPO

pytestmark = pytest.mark.integration


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (apt-get install -y "
                    "chromium; .ci/run installs it when run as root)")
def test_the_start_page_and_a_guide_render_with_their_navigation(tmp_path: Path):
    site = tmp_path / "site"
    subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict",
                    "--site-dir", str(site)], cwd=REPO, check=True, capture_output=True,
                   env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=600)
    for page, words in (("index.html", ("What each release claims", "Getting started",
                                        "Writing a profile", "Command line")),
                        ("guides/profile/index.html", ("Writing a profile", "Column kinds",
                                                       "Differential privacy"))):
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                              f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom",
                              (site / page).as_uri()], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        text = page_text(dom)
        assert all(w in text for w in words), (page, [w for w in words if w not in text])
