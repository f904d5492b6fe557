"""The HTML pages' machinery: Jinja2 templates (``viz/templates/``, autoescaped) and pictures embedded as
base64 data URIs, so that a report is one self-contained file."""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from PIL import Image

from .images import png_bytes

MIME = {".gif": "image/gif", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass(frozen=True)
class Picture:
    """An image as a page embeds it: its data URI, alt text and display size (CSS pixels)."""

    src: str
    alt: str
    width: int
    height: int

    @property
    def nbytes(self) -> int:
        """Characters the data URI adds to the page."""
        return len(self.src)


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` of ``data``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def picture(source: str | Path | np.ndarray, alt: str, scale: float = 1.0, height: int | None = None) -> Picture:
    """A :class:`Picture` of an image file or an (H, W, 3) uint8 array (encoded as a palette PNG), shown at
    ``scale`` times its pixel size, or ``height`` CSS pixels high (pixel art scales crisply in class ``px``)."""
    if isinstance(source, np.ndarray):
        data, mime, (w, h) = png_bytes(source), "image/png", (source.shape[1], source.shape[0])
    else:
        path = Path(source)
        data, mime = path.read_bytes(), MIME.get(path.suffix.lower(), "image/png")
        with Image.open(path) as im:
            w, h = im.size
    if height is not None:
        scale = height / h
    return Picture(data_uri(data, mime), alt, round(w * scale), round(h * scale))


@functools.cache
def environment() -> jinja2.Environment:
    """The templates' environment: autoescape on, undefined names an error, the ``num`` filter."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("disentkit.viz", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = number
    return env


def number(value: Any, digits: int = 4) -> str:
    """A float with ``digits`` decimals; blank for None, as it is for anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    return f"{value:.{digits}f}"


def render(template: str, **context: Any) -> str:
    """The page ``template`` (a file in ``viz/templates/``) filled with ``context``."""
    return environment().get_template(template).render(**context)
