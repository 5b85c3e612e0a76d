"""`gateway keys create|list|revoke|rotate`, `gateway quotas set|unset`, `gateway usage
export`: clients of a running gateway's admin API, so every change takes one path and
leaves one audit entry. The gateway is `--url` (or $GATEWAY_URL); the admin's own key is
read from $GATEWAY_ADMIN_KEY, never from the command line (where `ps` would show it).

`gateway keys new` needs no gateway: it prints a fresh key and the config entry to add.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from gateway.settings.types import check_name

ADMIN_KEY_ENV = "GATEWAY_ADMIN_KEY"
DEFAULT_URL = "http://127.0.0.1:8080"
_UNITS, _WINDOWS = ("requests", "images", "usd"), ("minute", "hour", "day", "month")


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One admin API call; exits 2 with the gateway's error message if it refuses."""
    import httpx  # here: `serve` starts its workers without loading the HTTP client

    key = os.environ.get(ADMIN_KEY_ENV, "")
    if not key:
        print(f"gateway: set {ADMIN_KEY_ENV} to an admin key", file=sys.stderr)
        raise SystemExit(2)
    url = (args.url or os.environ.get("GATEWAY_URL") or DEFAULT_URL).rstrip("/") + path
    try:
        response = httpx.request(
            method, url, json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        print(f"gateway: cannot reach {url}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            detail = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            detail = response.text[:200]
        print(f"gateway: {response.status_code} {detail}", file=sys.stderr)
        raise SystemExit(2)
    return response.json()


def keys_new(args: argparse.Namespace) -> int:
    """Print a fresh key once, and the principals entry (its SHA-256) for the config."""
    # Here, not at the top: `serve` spawns its workers sooner without the auth package
    # loaded first in the parent.
    from gateway.auth.keys import key_digest, new_key

    key = new_key()
    print(f"key (shown once, give it to {args.user}): {key}")
    print("add to principals in the config:")
    entry = f'user: "{args.user}", team: "{args.team}", role: {args.role}'
    print(f'  - {{{entry}, key_sha256: "{key_digest(key)}"}}')
    return 0


def _name_argument(value: str) -> str:
    """A --user or --team value, held to the rule the config applies to the printed entry."""
    try:
        return check_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print(value: Any) -> int:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def keys_create(args: argparse.Namespace) -> int:
    body = {"user": args.user, "team": args.team, "role": args.role, "note": args.note}
    if args.expires_at:
        body["expires_at"] = args.expires_at
    return _print(_call(args, "POST", "/admin/keys", body))


def keys_list(args: argparse.Namespace) -> int:
    from urllib.parse import urlencode

    query = urlencode({k: v for k, v in (("user", args.user), ("team", args.team)) if v})
    return _print(_call(args, "GET", f"/admin/keys?{query}")["data"])


def keys_revoke(args: argparse.Namespace) -> int:
    return _print(_call(args, "DELETE", f"/admin/keys/{args.id}"))


def keys_rotate(args: argparse.Namespace) -> int:
    body = {"grace_seconds": args.grace_seconds}
    return _print(_call(args, "POST", f"/admin/keys/{args.id}/rotate", body))


def _rule(text: str) -> dict[str, Any]:
    """`unit:window:limit`, e.g. images:day:500."""
    unit, window, limit = [*text.split(":"), "", ""][:3]
    try:
        number = float(limit)
    except ValueError:
        number = -1.0
    if unit not in _UNITS or window not in _WINDOWS or number < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected unit:window:limit, e.g. images:day:500"
        )
    return {"unit": unit, "window": window, "limit": number}


def _subject(args: argparse.Namespace) -> str:
    return f"/admin/quotas/users/{args.user}" if args.user else f"/admin/quotas/teams/{args.team}"


def quotas_set(args: argparse.Namespace) -> int:
    return _print(_call(args, "PUT", _subject(args), {"rules": args.rule}))


def quotas_unset(args: argparse.Namespace) -> int:
    return _print(_call(args, "DELETE", _subject(args)))


def usage_export(args: argparse.Namespace) -> int:
    from gateway.quota.books import to_csv

    answer = _call(args, "GET", f"/admin/usage?month={args.month}&by={args.by}")
    if args.format == "csv":
        text = to_csv(answer["data"], args.by)
    else:
        text = orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n"
    output = args.output or f"usage-{args.month}-by-{args.by}.{args.format}"
    Path(output).write_text(text, encoding="utf-8")
    print(f"wrote {output} ({len(answer['data'])} rows)")
    return 0


def _client(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--url", help=f"the gateway (default $GATEWAY_URL or {DEFAULT_URL})")
    return parser


def add_commands(commands: Any) -> None:
    """`keys`, `quotas` and `usage`, as top-level command groups."""
    _add_keys(commands)
    _add_quotas(commands)
    _add_usage(commands)


def _add_keys(commands: Any) -> None:
    """`keys new` (for the config), then `keys create|list|revoke|rotate` (at run time)."""
    keys = commands.add_parser("keys", help="manage keys").add_subparsers(
        dest="action", required=True
    )
    new = keys.add_parser("new", help="print a fresh key and its config entry")
    new.add_argument("--user", required=True, type=_name_argument)
    new.add_argument("--team", required=True, type=_name_argument)
    new.add_argument("--role", choices=("user", "admin"), default="user")
    new.set_defaults(handler=keys_new)
    create = _client(keys.add_parser("create", help="issue a key at run time (secret shown once)"))
    create.add_argument("--user", required=True)
    create.add_argument("--team", required=True)
    create.add_argument("--role", choices=("user", "admin"), default="user")
    create.add_argument("--expires-at", help="ISO 8601 UTC, e.g. 2027-01-01T00:00:00Z")
    create.add_argument("--note", default="")
    create.set_defaults(handler=keys_create)
    listing = _client(keys.add_parser("list", help="list runtime keys (no secrets)"))
    listing.add_argument("--user")
    listing.add_argument("--team")
    listing.set_defaults(handler=keys_list)
    revoke = _client(keys.add_parser("revoke", help="revoke a key by id"))
    revoke.add_argument("id")
    revoke.set_defaults(handler=keys_revoke)
    rotate = _client(keys.add_parser("rotate", help="a new secret for a key"))
    rotate.add_argument("id")
    rotate.add_argument("--grace-seconds", type=int, default=0, help="the old secret's overlap")
    rotate.set_defaults(handler=keys_rotate)


def _add_quotas(commands: Any) -> None:
    quotas = commands.add_parser("quotas", help="runtime quota rules").add_subparsers(
        dest="action", required=True
    )
    for verb, handler in (("set", quotas_set), ("unset", quotas_unset)):
        sub = _client(quotas.add_parser(verb, help=f"{verb} a user's or a team's runtime rules"))
        who = sub.add_mutually_exclusive_group(required=True)
        who.add_argument("--user")
        who.add_argument("--team")
        if verb == "set":
            sub.add_argument(
                "--rule", type=_rule, action="append", required=True,
                help="unit:window:limit, repeatable; replaces the subject's runtime rules",
            )  # fmt: skip
        sub.set_defaults(handler=handler)


def _add_usage(commands: Any) -> None:
    usage = commands.add_parser("usage", help="usage for chargeback").add_subparsers(
        dest="action", required=True
    )
    export = _client(usage.add_parser("export", help="write a month's usage to a file"))
    export.add_argument("--month", required=True, help="YYYY-MM")
    export.add_argument("--by", choices=("team", "user"), default="team")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--output", help="file (default usage-<month>-by-<by>.<format>)")
    export.set_defaults(handler=usage_export)
