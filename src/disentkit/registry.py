"""One small registry type for models, metrics and datasets: name -> entry, one wording for an unknown name.

Each entry registers itself in its own file (``@OBJECTIVES.register``, ``METRICS.register(spec)``,
``DATASETS.register(...)``), so adding one is one file: the packages import every module they contain.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Callable, Generic, TypeVar

from .errors import DisentkitError

T = TypeVar("T")


class UnknownName(DisentkitError, KeyError):
    """A name no registry entry has: a :class:`DisentkitError` (one line for users) and a ``KeyError``.

    Example:

        >>> from disentkit.metrics import METRICS
        >>> try:
        ...     METRICS["nig"]
        ... except KeyError as e:      # also a DisentkitError: the CLI prints it as one line
        ...     print(type(e).__name__, "-", e)
        UnknownName - unknown metric 'nig'; choose one of: beta_vae_score, ..., unsupervised or 'all' or 'extended'
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Mapping[str, T], Generic[T]):
    """A read-only mapping filled by :meth:`register`; ``registry[name]`` of an unknown name raises
    :class:`UnknownName` naming the registered choices (and ``hint``, e.g. where to see them).

    Example:

        >>> from disentkit.registry import Registry
        >>> colours = Registry("colour", "(see `colours list`)")
        >>> colours.register("#ff0000", name="red")
        '#ff0000'
        >>> @colours.register                  # a class decorator: the key is the entry's ``name``
        ... class Green:
        ...     name = "green"
        >>> sorted(colours), colours["red"], "blue" in colours
        (['green', 'red'], '#ff0000', False)
        >>> colours["blue"]
        Traceback (most recent call last):
        ...
        disentkit.registry.UnknownName: unknown colour 'blue'; choose one of: green, red (see `colours list`)
        >>> colours.unregister("green")
        >>> colours
        Registry(colour: red)
    """

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind, self.hint = kind, hint
        self._entries: dict[str, T] = {}

    def register(self, entry: T, name: str | None = None) -> T:
        """Add ``entry`` under ``name`` (default: its ``name`` attribute); returns it, so it works as a
        class decorator too."""
        key = name if name is not None else getattr(entry, "name")
        self._entries[key] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (e.g. one a test or a plugin registered for a while)."""
        self._entries.pop(name, None)

    def unknown(self, name: str) -> UnknownName:
        """The error for a name nobody registered."""
        return UnknownName(f"unknown {self.kind} '{name}'; choose one of: {', '.join(sorted(self._entries))}"
                           + (f" {self.hint}" if self.hint else ""))

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise self.unknown(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, default=None):  # type: ignore[override]
        return self._entries.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self._entries)})"


def import_all(package: str, path: list[str], skip: Callable[[str], bool] = lambda name: False) -> None:
    """Import every module of a package (each registers what it defines).

    A package's ``__init__`` calls it once, so that a new model, metric or dataset is one new file.

    Example:

        >>> import disentkit.metrics
        >>> from disentkit.registry import import_all
        >>> import_all("disentkit.metrics", disentkit.metrics.__path__)   # imported already: nothing new
        >>> "mig" in disentkit.metrics.METRICS
        True
    """
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        if not info.name.startswith("_") and not skip(info.name):
            importlib.import_module(f"{package}.{info.name}")
