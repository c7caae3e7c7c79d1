"""`python -m delegate`: the same command as `delegate`."""

from delegate.cli import main

if __name__ == "__main__":
    main(prog_name="delegate")
