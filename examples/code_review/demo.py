"""The demo repository: a small shop package, before and after a change with four seeded bugs.

`sample/before/` is committed on `main`; `sample/after/` is committed on the branch `feature`,
which is checked out. `git diff main` in the repository is the change to review:

- `shop/users.py`: a SQL query built by string concatenation (critical);
- `shop/inventory.py`: an off-by-one, `range(1, len(prices) + 1)` (major);
- `shop/notify.py`: a coroutine called without `await` (major);
- `shop/reports.py`: a file opened and never closed (minor), with a debug print and a TODO.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["DEMO_BASE", "SAMPLE", "make_demo_repo"]

SAMPLE = Path(__file__).resolve().parent / "sample"
"""The before and after trees of the demo."""

DEMO_BASE = "main"
"""The revision the demo's change is reviewed against."""

# Fixed identity and dates, and no hooks or signing from the user's configuration: the demo's
# commits (and so its diff) are the same on every machine.
_GIT = [
    "git",
    "-c",
    "user.name=Demo Author",
    "-c",
    "user.email=author@example.com",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "init.defaultBranch=main",
]
_DATE = {"GIT_AUTHOR_DATE": "2026-01-05T09:00:00Z", "GIT_COMMITTER_DATE": "2026-01-05T09:00:00Z"}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        [*_GIT, "-C", str(repo), *args],
        check=True,
        capture_output=True,
        env={**os.environ, **_DATE},
        timeout=60,
    )


def _copy(tree: Path, repo: Path) -> None:
    for source in sorted(tree.rglob("*.py")):
        target = repo / source.relative_to(tree)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def make_demo_repo(directory: Path) -> Path:
    """Create the demo repository in `directory` (empty or missing) and return its path.

    Raises:
        FileExistsError: `directory` exists and is not empty.
        subprocess.CalledProcessError: a git command failed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty; give an empty or new directory")
    _git(directory, "init", "--quiet", "--initial-branch=main")
    _copy(SAMPLE / "before", directory)
    _git(directory, "add", "--all")
    _git(directory, "commit", "--quiet", "--message", "shop: users, inventory, reports, notify")
    _git(directory, "checkout", "--quiet", "-b", "feature")
    _copy(SAMPLE / "after", directory)
    _git(directory, "add", "--all")
    _git(
        directory,
        "commit",
        "--quiet",
        "--message",
        "Look users up by email, report against targets, alert on low stock",
    )
    return directory
