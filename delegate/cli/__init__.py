"""The `delegate` command (also `python -m delegate`): `main` is its click group.

One module per command group, the display code beside them:

- `_app`: the group, its global options (`--debug`, `--log-json`) and the one error policy;
- `tokens`: `tokens`; `files`: `validate`, `schema`; `run`: `run`, `plan`; `runs`: `runs`,
  `show`, `resume`; `eval`: `eval`;
- `_guard`: pipe-safe streams, stop signals, bounded options; `_stores`: the store a command
  uses (the home store without `--db`) and its checks;
- `_format`, `_live`, `_summary`, `_stored`, `_preview`: what the commands show.

Commands import what they need inside their function, so `delegate --help` never pays for
litellm, SQLAlchemy or rich. Nothing in delegate imports this package.
"""

from __future__ import annotations

from delegate.cli._app import main

__all__ = ["main"]
