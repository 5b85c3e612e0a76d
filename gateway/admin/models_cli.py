"""`gateway models show|set|unset` and `gateway models price set|unset`: the image models'
lists and prices through a running gateway's admin API (docs/models.md), like the other
admin commands: `--url` (or $GATEWAY_URL), the admin key from $GATEWAY_ADMIN_KEY, the API's
JSON answer on standard output, a refusal in one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.admin.cli import _call, _client, _fail, _print

DEFAULT_OPERATION = "edits"


def models_show(args: argparse.Namespace) -> int:
    return _print(_call(args, "GET", "/admin/models"))


def models_set(args: argparse.Namespace) -> int:
    """Replace the operation's list as a whole; say which models it no longer names."""
    path = f"/admin/models/lists/{quote(args.operation, safe='')}"
    answer = _call(args, "PUT", path, {"models": args.models})
    _print(answer)
    dropped = [m for m in answer.get("replaced") or () if m not in answer["models"]]
    if dropped:
        print(
            f"gateway: no longer in the {args.operation} list: {', '.join(dropped)}",
            file=sys.stderr,
        )
    return 0


def models_unset(args: argparse.Namespace) -> int:
    return _print(_call(args, "DELETE", f"/admin/models/lists/{quote(args.operation, safe='')}"))


def _price_file(name: str) -> Any:
    """A price table from a YAML (or JSON) file, or standard input for `-`."""
    import yaml  # here: only this command reads YAML

    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        return yaml.safe_load(text)
    except OSError as exc:
        raise _fail(f"cannot read {name}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise _fail(f"{name}: not valid YAML or JSON ({exc})") from None


def price_set(args: argparse.Namespace) -> int:
    body = _price_file(args.from_file)
    if not isinstance(body, dict):
        raise _fail(f"{args.from_file}: a price table is a mapping (docs/models.md)")
    return _print(_call(args, "PUT", f"/admin/models/prices/{quote(args.model, safe='')}", body))


def price_unset(args: argparse.Namespace) -> int:
    return _print(_call(args, "DELETE", f"/admin/models/prices/{quote(args.model, safe='')}"))


def add_commands(commands: Any) -> None:
    """`models show|set|unset` and `models price set|unset`."""
    models = commands.add_parser("models", help="the image models: lists and prices")
    actions = models.add_subparsers(dest="action", required=True)
    show = _client(actions.add_parser("show", help="lists, availability, shutdown dates, prices"))
    show.set_defaults(handler=models_show)
    setting = _client(actions.add_parser("set", help="an operation's model list, in order"))
    setting.add_argument("models", nargs="+", help="model ids, the preferred first")
    setting.add_argument("--operation", default=DEFAULT_OPERATION)
    setting.set_defaults(handler=models_set)
    unset = _client(actions.add_parser("unset", help="back to the config's model list"))
    unset.add_argument("--operation", default=DEFAULT_OPERATION)
    unset.set_defaults(handler=models_unset)
    prices = actions.add_parser("price", help="a model's price table").add_subparsers(
        dest="price_action", required=True
    )
    price = _client(prices.add_parser("set", help="a model's price table, from a file"))
    price.add_argument("model")
    price.add_argument(
        "--from", dest="from_file", required=True,
        help="a YAML or JSON file with the price table's keys (docs/models.md); - for stdin",
    )  # fmt: skip
    price.set_defaults(handler=price_set)
    drop = _client(prices.add_parser("unset", help="back to the config's price table"))
    drop.add_argument("model")
    drop.set_defaults(handler=price_unset)
