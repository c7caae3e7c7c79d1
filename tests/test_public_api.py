"""The public API: `delegate` and every public subpackage export through an `__all__` that is
sorted, complete and resolves (httpx's `tests/test_exported_members.py`); the errors share one
base; every blocking twin has the signature of its async original."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types
from typing import Any

import pytest

import delegate

PACKAGES = (
    "delegate",
    "delegate.agents",
    "delegate.cli",
    "delegate.evals",
    "delegate.memory",
    "delegate.observe",
    "delegate.orchestrator",
    "delegate.testing",
    "delegate.workflows",
)

# Public names a package holds on purpose without exporting them, each with the reason. Empty:
# a package imports what it exports, and keeps the rest behind an underscore.
NOT_EXPORTED: dict[str, dict[str, str]] = {}


def _isort_key(name: str) -> tuple[int, list[Any]]:
    """ruff's RUF022 order: SCREAMING_CASE constants, then CamelCase classes, then the rest;
    each group in natural order (`x2` before `x10`)."""
    group = 0 if len(name) > 1 and name.isupper() else 1 if name[:1].isupper() else 2
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return group, natural


def _public_names(module: types.ModuleType) -> set[str]:
    """What `module` holds under a public name: no submodules, no `from __future__` features."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and type(value).__module__ != "__future__"  # `from __future__ import annotations`
    }


@pytest.fixture(params=PACKAGES)
def package(request: pytest.FixtureRequest) -> types.ModuleType:
    return importlib.import_module(request.param)


def test_every_public_subpackage_is_checked() -> None:
    subpackages = {
        f"delegate.{info.name}"
        for info in pkgutil.iter_modules(delegate.__path__)
        if info.ispkg and not info.name.startswith("_")
    }
    assert subpackages == set(PACKAGES) - {"delegate"}


def test_all_is_sorted(package: types.ModuleType) -> None:
    assert package.__all__ == sorted(package.__all__, key=_isort_key)
    assert len(set(package.__all__)) == len(package.__all__)


def test_all_is_complete(package: types.ModuleType) -> None:
    exported = {name for name in package.__all__ if not name.startswith("_")}
    held_back = NOT_EXPORTED.get(package.__name__, {})
    assert exported | set(held_back) == _public_names(package)


def test_every_export_resolves(package: types.ModuleType) -> None:
    for name in package.__all__:
        assert getattr(package, name) is not None, f"{package.__name__}.{name}"


@pytest.mark.parametrize("name", ["delegate.agents", "delegate.orchestrator"])
def test_a_layer_exports_the_same_objects_as_delegate(name: str) -> None:
    layer = importlib.import_module(name)
    shared = set(layer.__all__) & set(delegate.__all__)
    assert shared
    assert [n for n in sorted(shared) if getattr(layer, n) is not getattr(delegate, n)] == []


def test_errors_share_one_base() -> None:
    errors = [
        getattr(delegate, name)
        for name in delegate.__all__
        if isinstance(getattr(delegate, name), type)
        and issubclass(getattr(delegate, name), Exception)
    ]
    assert len(errors) == 34
    assert all(issubclass(error, delegate.DelegateError) for error in errors)


def _twins() -> list[tuple[str, Any, str]]:
    """(class path, class, twin name) of every `*_sync` method of an exported class whose async
    original is there too."""
    found = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        for export in package.__all__:
            cls = getattr(package, export)
            if not isinstance(cls, type):
                continue
            for attribute in dir(cls):
                original = getattr(cls, attribute.removesuffix("_sync"), None)
                if attribute.endswith("_sync") and inspect.iscoroutinefunction(original):
                    found.append((f"{cls.__module__}.{cls.__qualname__}", cls, attribute))
    return sorted({(path, cls, twin) for path, cls, twin in found}, key=lambda t: (t[0], t[2]))


TWINS = _twins()


def test_the_twins_are_found() -> None:
    # Guards the test below: an empty list would make it pass vacuously.
    assert {(cls.__name__, twin) for _, cls, twin in TWINS} >= {
        ("Agent", "run_sync"),
        ("Orchestrator", "run_sync"),
        ("Orchestrator", "execute_sync"),
        ("Orchestrator", "resume_sync"),
    }


@pytest.mark.parametrize(("path", "cls", "twin"), TWINS, ids=[f"{p}.{t}" for p, _, t in TWINS])
def test_every_blocking_twin_has_the_signature_of_its_async_original(
    path: str, cls: type, twin: str
) -> None:
    original = twin.removesuffix("_sync")
    assert inspect.signature(getattr(cls, twin)) == inspect.signature(getattr(cls, original))
