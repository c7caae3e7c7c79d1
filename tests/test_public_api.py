"""`delegate.__all__` is sorted and lists exactly the public names the package exposes."""

from __future__ import annotations

import types

import delegate


def test_all_is_sorted() -> None:
    assert delegate.__all__ == sorted(delegate.__all__)


def test_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(delegate).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # `from __future__ import annotations`
    }
    assert set(delegate.__all__) - {"__version__"} == public


def test_every_export_resolves() -> None:
    for name in delegate.__all__:
        assert getattr(delegate, name) is not None, name


def test_errors_share_one_base() -> None:
    errors = [
        getattr(delegate, name)
        for name in delegate.__all__
        if isinstance(getattr(delegate, name), type)
        and issubclass(getattr(delegate, name), Exception)
    ]
    assert len(errors) == 30
    assert all(issubclass(error, delegate.DelegateError) for error in errors)
