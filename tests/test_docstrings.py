"""Issue 16: every public name has a runnable example, the examples run, and ``help()`` lists the names.

A public name is one in the ``__all__`` of a package (and ``disentkit.load`` / ``disentkit.Model``). A class or
function carries its example in its own docstring, under an ``Example:`` or ``Examples:`` heading; a constant
or type alias (``METRICS``, ``DATASETS``, ``EncodeFn``, …) has no docstring of its own, so a module docstring of
its package shows it on a ``>>>`` line (``disentkit.metrics``' docstring uses ``METRICS``, ``SPECS`` and names
``EncodeFn``; ``disentkit.data``'s uses ``DATASETS``).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import pydoc
import re
import sys

import pytest

PACKAGES = ("disentkit.data", "disentkit.metrics", "disentkit.models", "disentkit.train", "disentkit.sweep",
            "disentkit.viz")
TOP_LEVEL = ("load", "Model")

#: the modules whose doctests run here; sweep.html and sweep.plots are left to their own tests
DOCTEST_PACKAGES = ("disentkit.data", "disentkit.metrics", "disentkit.models", "disentkit.train", "disentkit.sweep",
                    "disentkit.viz")
DOCTEST_SKIP = {"disentkit.sweep.html", "disentkit.sweep.plots"}
DOCTEST_EXTRA = ("disentkit.registry", "disentkit.errors", "disentkit.api", "disentkit.names")
#: modules that hold examples: a doctest run that finds none there means the examples went missing
WITH_EXAMPLES = {
    "disentkit.registry", "disentkit.errors", "disentkit.names", "disentkit.data", "disentkit.data.base", "disentkit.data.arrays",
    "disentkit.metrics", "disentkit.metrics.utils", "disentkit.metrics.measures", "disentkit.metrics.mig",
    "disentkit.metrics.sap", "disentkit.metrics.dci", "disentkit.metrics.modularity", "disentkit.metrics.irs",
    "disentkit.metrics.im", "disentkit.metrics.unsupervised", "disentkit.metrics.factor_vae_score",
    "disentkit.metrics.beta_vae_score", "disentkit.metrics.downstream", "disentkit.metrics.chen_mig", "disentkit.metrics.dci_es",
    "disentkit.metrics.infomec", "disentkit.metrics.udr", "disentkit.metrics.recombination",
    "disentkit.sweep", "disentkit.sweep.grid", "disentkit.sweep.validate",
    "disentkit.sweep.runner", "disentkit.models", "disentkit.models.base", "disentkit.models.custom",
    "disentkit.train.run", "disentkit.train.checkpoint", "disentkit.train.config", "disentkit.api",
    "disentkit.viz.images", "disentkit.viz.report",
}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

EXAMPLE = re.compile(r"^\s*>>> ", re.M)
HEADING = re.compile(r"^\s*Examples?\b[^\n]*:\s*$", re.M)   # "Example:", or "Example (5 steps):"


def _public_names() -> list[str]:
    names = []
    for pkg in PACKAGES:
        names += [f"{pkg}.{n}" for n in importlib.import_module(pkg).__all__]
    return names + [f"disentkit.{n}" for n in TOP_LEVEL]


def _case(qualname: str):
    return pytest.param(qualname, id=qualname)


def _module_docstrings(pkg: str) -> list[str]:
    """The docstrings of a package and of its imported modules."""
    return [m.__doc__ or "" for name, m in list(sys.modules.items())
            if m is not None and (name == pkg or name.startswith(pkg + "."))]


@pytest.mark.parametrize("qualname", [_case(q) for q in _public_names()])
def test_public_name_has_an_example(qualname: str) -> None:
    pkg, name = qualname.rsplit(".", 1)
    obj = getattr(importlib.import_module(pkg), name)
    if inspect.isclass(obj) or inspect.isroutine(obj):
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__   # its own, not a base's
        assert doc and EXAMPLE.search(doc), f"{qualname}'s docstring has no >>> example"
        assert HEADING.search(doc), f"{qualname}'s docstring has no 'Example:' / 'Examples:' section"
    else:  # a constant or a type alias: shown on a >>> line (or its ... continuation) of a module docstring
        word = re.compile(rf"^\s*(>>>|\.\.\.) .*\b{re.escape(name)}\b", re.M)
        assert any(word.search(d) for d in _module_docstrings(pkg)), (
            f"no module docstring of {pkg} uses {name} in a >>> example")


def _doctest_modules() -> list[str]:
    names = list(DOCTEST_EXTRA)
    for pkg in DOCTEST_PACKAGES:
        mod = importlib.import_module(pkg)
        names += [pkg] + [f"{pkg}.{i.name}" for i in pkgutil.iter_modules(mod.__path__)]
    return [n for n in names if n not in DOCTEST_SKIP]


@pytest.mark.parametrize("module", _doctest_modules())
def test_doctests_pass(module: str) -> None:
    mod = importlib.import_module(module)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in finder.find(mod, module, globs=vars(mod).copy()):
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} doctest examples of {module} failed (output above)"
    if module in WITH_EXAMPLES:
        assert attempted > 0, f"no doctest examples found in {module}"


def test_every_public_name_is_doctested() -> None:
    """The doctests above cover the modules where the packages define their public names."""
    for pkg in DOCTEST_PACKAGES:
        mod = importlib.import_module(pkg)
        for name in mod.__all__:
            obj = getattr(mod, name)
            home = getattr(obj, "__module__", pkg) if inspect.isclass(obj) or inspect.isroutine(obj) else pkg
            assert home in WITH_EXAMPLES, f"{pkg}.{name} is defined in {home}, whose doctests are not required"


@pytest.mark.parametrize("pkg", DOCTEST_PACKAGES)
def test_help_lists_the_public_names(pkg: str) -> None:
    """``help(disentkit.data)`` etc. (pydoc, driven by ``__all__``) shows every public name as an entry."""
    mod = importlib.import_module(pkg)
    page = pydoc.render_doc(mod, renderer=pydoc.plaintext)
    missing = [n for n in mod.__all__ if not re.search(rf"^    (class )?{re.escape(n)}\b", page, re.M)]
    assert not missing, f"help({pkg}) does not list {missing}"
