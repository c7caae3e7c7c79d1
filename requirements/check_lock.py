"""Fail when the venv holds a dependency of delegate[dev] that the lock file does not pin.

`make venv` installs with the lock as constraints (`pip install -c requirements/dev.lock`), so a
requirement added to pyproject.toml without `make lock` would be installed at whatever release is
newest that day: exactly what the lock is there to prevent. This walks the installed requirements
of delegate[dev] and compares each with its pin.

Usage: python requirements/check_lock.py requirements/dev.lock
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")


def pins(lock: Path) -> dict[str, str]:
    """The `name==version` lines of the lock, by canonical name."""
    found: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            found[canonicalize_name(match[1])] = match[2]
    return found


def installed_closure(root: str, extras: set[str]) -> dict[str, str]:
    """Installed version of every distribution `root[extras]` needs, transitively."""
    versions: dict[str, str] = {}
    todo: list[tuple[str, set[str]]] = [(root, extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        key = (canonicalize_name(name), frozenset(wanted))
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(name)
        for text in dist.requires or []:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate(env) for env in environments):
                continue
            dep = canonicalize_name(requirement.name)
            versions[dep] = metadata.version(requirement.name)
            todo.append((requirement.name, set(requirement.extras)))
    versions.pop(canonicalize_name(root), None)
    return versions


def main(lock: Path) -> int:
    pinned = pins(lock)
    problems = [
        f"{name} {version} is installed but the lock "
        + (f"pins {pinned[name]}" if name in pinned else "does not pin it")
        for name, version in sorted(installed_closure("delegate", {"dev"}).items())
        if pinned.get(name) != version
    ]
    if problems:
        print(f"{lock} does not match pyproject.toml:", *problems, sep="\n  ", file=sys.stderr)
        print("run `make lock` and commit the lock file", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
