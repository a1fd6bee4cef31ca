"""The command line: each module parses one group of commands, calls the library, prints."""

from sparsebench.cli import deploy, federate, results, sweep, train, use  # noqa: F401  (they register)
from sparsebench.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
