"""Agent tools named in a workflow file by import path, `package.module:function`.

A tool comes from a module in the workflow file's folder or from an installed package (the
entries of `sys.path`, except the current directory). `tool_problem` checks a path without
importing anything, so validating a file runs none of its code: it finds the module's file and,
for Python source, reads it to see that it defines the function. `import_tool` imports it, when
the workflow is compiled to run.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from delegate.errors import ConfigError, did_you_mean

__all__ = ["import_tool", "tool_problem"]


def _search_path(base_dir: Path) -> list[str]:
    return [str(base_dir.resolve()), *(entry for entry in sys.path if entry not in ("", "."))]


def _module_origin(module: str, base_dir: Path) -> str | None:
    """Where `module` would be imported from ("built-in" for one compiled into Python), or None."""
    if module in sys.builtin_module_names:
        return "built-in"
    loaded = sys.modules.get(module)
    if loaded is not None:  # imported already, perhaps under a name of its own (os.path)
        return getattr(loaded, "__file__", None) or "built-in"
    parts = module.split(".")
    spec = importlib.machinery.PathFinder.find_spec(parts[0], _search_path(base_dir))
    for depth in range(2, len(parts) + 1):
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(
            ".".join(parts[:depth]), list(spec.submodule_search_locations)
        )
    if spec is None:
        return None
    return spec.origin or "namespace package"


def _bound_names(body: Iterable[ast.stmt]) -> set[str] | None:
    """Names a module body binds at the top level; None when it cannot be known (`import *`)."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.If | ast.Try | ast.With):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [handler.body for handler in getattr(node, "handlers", [])]
            for block in blocks:
                inner = _bound_names(block)
                if inner is None:
                    return None
                names |= inner
    return names


def tool_problem(path: str, base_dir: Path) -> str | None:
    """Why the tool `path` cannot be imported, or None when it can be found. Imports nothing.

    Args:
        path: `package.module:function`.
        base_dir: the folder of the workflow file, searched before the installed packages.
    """
    module, _, function = path.partition(":")
    origin = _module_origin(module, base_dir)
    if origin is None:
        return (
            f"tool {path!r}: no module {module!r} in the workflow's folder or the installed "
            "packages; check the spelling, put the module next to the workflow file, or install "
            "its package"
        )
    if not origin.endswith(".py"):
        return None  # compiled or built-in: its names are known only once imported
    try:
        tree = ast.parse(Path(origin).read_text(encoding="utf-8"), origin)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        return f"tool {path!r}: cannot read module {module!r} ({origin}): {exc}"
    names = _bound_names(tree.body)
    if names is None or function in names or "__getattr__" in names:
        return None
    public = sorted(name for name in names if not name.startswith("_"))
    return (
        f"tool {path!r}: module {module!r} ({origin}) defines no {function!r}"
        f"{did_you_mean(function, public)}"
    )


def import_tool(path: str, base_dir: Path) -> Callable[..., Any]:
    """Import the tool `package.module:function`, looking in `base_dir` first.

    `base_dir` is put at the front of `sys.path` (once) so the module's own imports work too.

    Raises:
        ConfigError: the module does not import, or has no such callable.
    """
    module_name, _, function = path.partition(":")
    folder = str(base_dir.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error of the module's own code
        raise ConfigError(
            f"tool {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    found: Callable[..., Any] | None = getattr(module, function, None)
    if found is None or not callable(found):
        raise ConfigError(
            f"tool {path!r}: module {module_name!r} has no function {function!r}"
            f"{did_you_mean(function, [n for n in dir(module) if not n.startswith('_')])}"
        )
    return found
