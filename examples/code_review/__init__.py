"""The code review example: a static task graph built from a git diff (see README.md)."""
