"""Shared test fixtures. Tests run torch on one thread: on 2 cores, contended threads are far slower."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from disentkit.testing import IdentityDataset

torch.set_num_threads(1)
os.environ.setdefault("DISENTKIT_TEST", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real reference pixels); tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (reference pixels are only on the team's machines)")
    return SHARED_DATA


@pytest.fixture
def identity_dataset() -> IdentityDataset:
    return IdentityDataset()


@pytest.fixture
def tiny_run(tmp_path_factory) -> Path:
    """A β-VAE trained for a few steps once per session (shared by CLI/eval/report tests)."""
    from disentkit.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("runs") / "tiny"
    fit(TrainConfig(steps=30, batch_size=16, out=str(out), log_every=10, threads=1, progress=False,
                    seed=3, val_fraction=0.001, val_every=15, val_batches=2, hparams={"beta": 4.0}))
    return out


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@dataclass
class Page:
    """A page as headless Chromium saw it: the DOM after its scripts ran, its console messages, a screenshot."""

    dom: str
    console: list[str]
    screenshot: Path

    def section_ids(self) -> set[str]:
        """The ids of the page's ``<section>`` and ``<header>`` elements."""
        return set(re.findall(r'<(?:section|header)[^>]* id="([^"]+)"', self.dom))

    def status(self) -> dict[str, int]:
        """What the pages' status script counted: images ``ok`` and ``broken``, script ``errors``."""
        tag = re.search(r'<span id="status"[^>]*>', self.dom)
        assert tag, "no #status in the page"
        return {k: int(v) for k, v in re.findall(r'data-(ok|broken|errors)="(\d+)"', tag.group(0))}


def _chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def open_page(html: Path, tmp: Path, window: str = "1200,3000") -> Page:
    """Load ``html`` in headless Chromium (skip when there is none): the dumped DOM, the console messages
    the page logged (Chromium 156 logs every level, errors and uncaught exceptions included, as
    ``INFO:CONSOLE``, so any message counts), and a screenshot ``tmp/<page>.png``."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    uri = html.resolve().as_uri()
    dom = _chromium(["--enable-logging=stderr", "--v=1", "--dump-dom", uri], tmp)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    shot = tmp / f"{html.stem}.png"
    res = _chromium([f"--window-size={window}", f"--screenshot={shot}", uri], tmp)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    return Page(dom.stdout, console, shot)


@pytest.fixture
def browser(tmp_path) -> Callable[..., Page]:
    """:func:`open_page` into this test's tmp folder (the test skips at the call when Chromium is absent)."""
    return lambda html, **kw: open_page(html, tmp_path, **kw)


def flatten_codes(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


np.seterr(all="raise")
