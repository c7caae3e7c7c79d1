"""`import delegate` and `delegate --help` stay fast: they must not import heavy dependencies.

litellm alone takes seconds to import. Wall time is left to benchmarks (machines are noisy); what
is checked here is the cause, in a fresh interpreter: which modules got imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Imported only where the first real call is made, never by `import delegate`.
HEAVY = ("litellm", "openai", "sqlalchemy", "tiktoken", "aiohttp")
_HELP = """
from delegate.cli import main
try:
    main(["--help"], prog_name="delegate")
except SystemExit as exc:
    assert exc.code == 0, exc.code
"""

_REPORT = """
import json, sys
{setup}
roots = sorted({{name.partition(".")[0] for name in sys.modules}})
print(json.dumps(roots))
"""


def _roots_imported_by(setup: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", _REPORT.format(setup=setup)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    roots: list[str] = json.loads(result.stdout.splitlines()[-1])
    return set(roots)


def test_the_probe_sees_what_it_imports() -> None:
    # Guards the test itself: a probe that reported nothing would make the checks below vacuous.
    assert {"sqlalchemy", "click"} <= _roots_imported_by("import sqlalchemy, click")


def test_import_delegate_imports_nothing_heavy() -> None:
    roots = _roots_imported_by("import delegate")
    assert "delegate" in roots
    assert sorted(roots.intersection(HEAVY)) == []


def test_delegate_help_imports_nothing_heavy() -> None:
    roots = _roots_imported_by(_HELP)
    assert "click" in roots
    assert sorted(roots.intersection(HEAVY)) == []


def test_the_cli_adds_only_click_to_import_delegate() -> None:
    # Commands import what they need (rich, structlog, yaml, ...) when they run, not for --help.
    added = _roots_imported_by(_HELP) - _roots_imported_by("import delegate")
    assert sorted(added - set(sys.stdlib_module_names)) == ["click"]
