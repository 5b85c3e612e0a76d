"""The `gateway` command: serve, keys, quotas, models, usage, config check."""

# Each plane adds its own commands (server/, admin/); this module only dispatches.

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.admin import cli, models_cli
from gateway.server import preflight, serve


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_command(commands)
    cli.add_commands(commands)  # keys, quotas, usage
    models_cli.add_commands(commands)  # models
    preflight.add_command(commands)  # config check
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gateway` command."""
    args = _parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
