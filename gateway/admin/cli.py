"""`gateway keys create|list|revoke|rotate`, `gateway quotas set|unset|show`, `gateway audit`,
`gateway usage export`: clients of a running gateway's admin API, so every change takes one
path and leaves one audit entry. The gateway is `--url` (or $GATEWAY_URL); the admin's own
key is read from $GATEWAY_ADMIN_KEY, never from the command line (where `ps` would show it).

Each command prints the API's JSON answer on standard output; a refusal, local or the
gateway's, exits 2 with one line on standard error. `gateway keys new` needs no gateway: it
prints a fresh key and the config entry to add.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from gateway.vocabulary import WINDOWS, check_name

ADMIN_KEY_ENV = "GATEWAY_ADMIN_KEY"
DEFAULT_URL = "http://127.0.0.1:8080"
_UNITS, _WINDOWS = ("requests", "images", "usd"), WINDOWS
RULE_FORM = (
    f"unit:window:limit, unit one of {', '.join(_UNITS)}, window one of {', '.join(_WINDOWS)}, "
    "limit a number >= 0 (e.g. images:day:500)"
)


def _fail(message: str) -> SystemExit:
    print(f"gateway: {message}", file=sys.stderr)
    return SystemExit(2)


def _query(**params: str | None) -> str:
    """`?a=1&b=2` of the parameters given, or nothing at all."""
    given = {name: value for name, value in params.items() if value is not None}
    return "?" + urlencode(given) if given else ""


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One admin API call; exits 2 with the gateway's error message if it refuses."""
    import httpx  # here: `serve` starts its workers without loading the HTTP client

    key = os.environ.get(ADMIN_KEY_ENV, "")
    if not key:
        raise _fail(f"set {ADMIN_KEY_ENV} to an admin key")
    url = (args.url or os.environ.get("GATEWAY_URL") or DEFAULT_URL).rstrip("/") + path
    try:
        response = httpx.request(
            method, url, json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            detail = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            detail = response.text[:200]
        raise _fail(f"{response.status_code} {detail}")
    return response.json()


def _print(value: Any) -> int:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def name_argument(value: str) -> str:
    """A --user or --team value, held to the one name rule (the config's and the API's);
    refused without a pasted secret said back."""
    from gateway.redaction import redact_keys

    try:
        return check_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(redact_keys(str(exc))) from None


def key_id_argument(value: str) -> str:
    """A key id of `keys revoke|rotate`; a key's secret given there is refused, unrepeated."""
    from gateway.redaction import looks_like_secret

    if looks_like_secret(value):
        raise argparse.ArgumentTypeError(
            "this is a key's secret, not its id (key_ and 16 hex digits): find the id with "
            "`gateway keys list`. The secret is now in your shell history and was in the "
            "process list: rotate that key."
        )
    return value


def keys_new(args: argparse.Namespace) -> int:
    """Print a fresh key once, and the principals entry (its SHA-256) for the config."""
    # Here, not at the top: `serve` spawns its workers sooner without the auth package
    # loaded first in the parent.
    from gateway.auth.keys import key_digest, new_key

    key = new_key()
    print(f"key (shown once, give it to {args.user}): {key}")
    print("add to principals in the config:")
    # JSON strings are YAML double-quoted scalars: a `\` or `"` in a name pastes as it is.
    entry = f"user: {json.dumps(args.user)}, team: {json.dumps(args.team)}, role: {args.role}"
    print(f'  - {{{entry}, key_sha256: "{key_digest(key)}"}}')
    return 0


def keys_create(args: argparse.Namespace) -> int:
    body = {"user": args.user, "team": args.team, "role": args.role, "note": args.note}
    if args.expires_at:
        body["expires_at"] = args.expires_at
    if args.new_team:
        body["new_team"] = True
    if args.existing_user:
        body["existing_user"] = True
    return _print(_call(args, "POST", "/admin/keys", body))


def keys_list(args: argparse.Namespace) -> int:
    return _print(_call(args, "GET", "/admin/keys" + _query(user=args.user, team=args.team)))


def keys_revoke(args: argparse.Namespace) -> int:
    return _print(_call(args, "DELETE", f"/admin/keys/{quote(args.id, safe='')}"))


def keys_rotate(args: argparse.Namespace) -> int:
    body = {"grace_seconds": args.grace_seconds}
    return _print(_call(args, "POST", f"/admin/keys/{quote(args.id, safe='')}/rotate", body))


def _rule(text: str) -> dict[str, Any]:
    """`unit:window:limit`, e.g. images:day:500."""
    unit, window, limit = [*text.split(":"), "", ""][:3]
    try:
        number = float(limit)
    except ValueError:
        number = -1.0
    if unit not in _UNITS or window not in _WINDOWS or number < 0 or text.count(":") != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {RULE_FORM}")
    return {"unit": unit, "window": window, "limit": number}


def _rule_text(rule: dict[str, Any]) -> str:
    return f"{rule['unit']}:{rule['window']}:{rule['limit']:g}"


def _subject(args: argparse.Namespace) -> tuple[str, str]:
    """The subject as said (`user alice`), and the admin path naming it (a `/` quoted)."""
    scope, name = ("user", args.user) if args.user else ("team", args.team)
    return f"{scope} {name}", f"/admin/quotas/{scope}s/{quote(name, safe='')}"


def quotas_set(args: argparse.Namespace) -> int:
    """Replace the subject's runtime rules as a whole, and say what that replaced."""
    who, path = _subject(args)
    answer = _call(args, "PUT", path, {"rules": args.rule})
    _print(answer)
    kept = {(rule["unit"], rule["window"]) for rule in answer["rules"]}
    dropped = [r for r in answer.get("replaced") or () if (r["unit"], r["window"]) not in kept]
    if dropped:
        gone = ", ".join(_rule_text(rule) for rule in dropped)
        print(
            f"gateway: replaced {who}'s runtime rules: {gone} no longer set (the config's rule "
            "of that unit and window applies again; give every rule to keep in one set)",
            file=sys.stderr,
        )
    return 0


def quotas_unset(args: argparse.Namespace) -> int:
    return _print(_call(args, "DELETE", _subject(args)[1]))


def quotas_show(args: argparse.Namespace) -> int:
    """GET /admin/quotas, kept to one user's or team's parts when one is named."""
    answer = _call(args, "GET", "/admin/quotas")
    if args.user is None and args.team is None:
        return _print(answer)
    scope, name = ("user", args.user) if args.user else ("team", args.team)
    return _print(
        {
            "principals": [p for p in answer["principals"] if p[scope] == name],
            "teams": [t for t in answer["teams"] if scope == "team" and t["team"] == name],
            "overrides": [
                o for o in answer["overrides"] if (o["scope"], o["subject"]) == (scope, name)
            ],
        }
    )


def audit(args: argparse.Namespace) -> int:
    query = _query(
        actor=args.actor, action=args.action, target=args.target, since=args.since,
        until=args.until, limit=args.limit, before=args.before,
    )  # fmt: skip
    return _print(_call(args, "GET", "/admin/audit" + query))


def usage_export(args: argparse.Namespace) -> int:
    """Write a month's books as CSV or JSON: to a file, or to standard output with `-`."""
    from gateway.quota.books import to_csv

    daily = args.period == "day"
    query = _query(month=args.month, by=args.by, period=args.period if daily else None)
    answer = _call(args, "GET", "/admin/usage" + query)
    if args.format == "csv":
        text = to_csv(answer["data"], args.by, daily, split=args.split)
    else:
        text = orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n"
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    per_day = "-per-day" if daily else ""
    output = args.output or f"usage-{args.month}-by-{args.by}{per_day}.{args.format}"
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc.strerror}") from None
    count = len(answer["data"])
    print(f"wrote {output} ({count} row{'' if count == 1 else 's'})")
    return 0


def _client(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--url", help=f"the gateway (default $GATEWAY_URL or {DEFAULT_URL})")
    return parser


def add_commands(commands: Any) -> None:
    """`keys`, `quotas set|unset|show`, `audit` and `usage export`, as top-level groups."""
    _add_key_commands(commands)
    _add_quota_commands(commands)
    _add_audit_command(commands)
    _add_usage_command(commands)


def _add_key_commands(commands: Any) -> None:
    """`keys new` (for the config), then `keys create|list|revoke|rotate` (at run time)."""
    keys = commands.add_parser("keys", help="manage keys").add_subparsers(
        dest="action", required=True
    )
    new = keys.add_parser("new", help="print a fresh key and its config entry")
    new.add_argument("--user", required=True, type=name_argument)
    new.add_argument("--team", required=True, type=name_argument)
    new.add_argument("--role", choices=("user", "admin"), default="user")
    new.set_defaults(handler=keys_new)
    create = _client(keys.add_parser("create", help="issue a key at run time (secret shown once)"))
    create.add_argument("--user", required=True, type=name_argument)
    create.add_argument("--team", required=True, type=name_argument)
    create.add_argument(
        "--new-team", action="store_true",
        help="open a team no config, runtime pool or key names yet (else refused)",
    )  # fmt: skip
    create.add_argument(
        "--existing-user", action="store_true",
        help="add a key for a user a config principal or another admin's keys hold (else refused)",
    )  # fmt: skip
    create.add_argument("--role", choices=("user", "admin"), default="user")
    create.add_argument("--expires-at", help="ISO 8601 UTC, e.g. 2027-01-01T00:00:00Z")
    create.add_argument("--note", default="")
    create.set_defaults(handler=keys_create)
    listing = _client(keys.add_parser("list", help="list runtime keys (no secrets)"))
    listing.add_argument("--user", type=name_argument)
    listing.add_argument("--team", type=name_argument)
    listing.set_defaults(handler=keys_list)
    revoke = _client(keys.add_parser("revoke", help="revoke a key by id"))
    revoke.add_argument("id", type=key_id_argument)
    revoke.set_defaults(handler=keys_revoke)
    rotate = _client(keys.add_parser("rotate", help="a new secret for a key"))
    rotate.add_argument("id", type=key_id_argument)
    rotate.add_argument("--grace-seconds", type=int, default=0, help="the old secret's overlap")
    rotate.set_defaults(handler=keys_rotate)


def _who(parser: argparse.ArgumentParser, required: bool) -> None:
    who = parser.add_mutually_exclusive_group(required=required)
    who.add_argument("--user", type=name_argument)
    who.add_argument("--team", type=name_argument)


def _add_quota_commands(commands: Any) -> None:
    quotas = commands.add_parser("quotas", help="runtime quota rules").add_subparsers(
        dest="action", required=True
    )
    change = "replace a user's or a team's runtime rules as a whole (and say what it replaced)"
    setting = _client(quotas.add_parser("set", help=change))
    _who(setting, required=True)
    setting.add_argument(
        "--rule", type=_rule, action="append", required=True,
        help=f"{RULE_FORM}; repeatable: the rules given are all the subject's runtime rules",
    )  # fmt: skip
    setting.set_defaults(handler=quotas_set)
    unset = _client(quotas.add_parser("unset", help="drop a user's or a team's runtime rules"))
    _who(unset, required=True)
    unset.set_defaults(handler=quotas_unset)
    show = _client(quotas.add_parser("show", help="the rules in force, used and left"))
    _who(show, required=False)
    show.set_defaults(handler=quotas_show)


def _add_audit_command(commands: Any) -> None:
    trail = _client(commands.add_parser("audit", help="the admin changes, newest first"))
    trail.add_argument("--actor")
    trail.add_argument("--action", help="key.create, key.revoke, key.rotate, quota.set, ...")
    trail.add_argument("--target", help="a key id, or user:<name> / team:<name>")
    trail.add_argument("--since", help="ISO 8601, e.g. 2026-11-01T00:00:00Z")
    trail.add_argument("--until", help="ISO 8601")
    trail.add_argument("--limit", help="1 to 500 (default 50)")
    trail.add_argument("--before", help="the next_before of the previous page")
    trail.set_defaults(handler=audit)


def _add_usage_command(commands: Any) -> None:
    usage = commands.add_parser("usage", help="usage for chargeback").add_subparsers(
        dest="action", required=True
    )
    export = _client(usage.add_parser("export", help="write a month's usage to a file"))
    export.add_argument("--month", required=True, help="YYYY-MM")
    export.add_argument("--by", choices=("team", "user"), default="team")
    export.add_argument(
        "--split", action="store_true", help="csv: a line per endpoint and model of each owner"
    )
    export.add_argument(
        "--period", choices=("month", "day"), default="month", help="day: a row per day"
    )
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument(
        "--output", help="file (default usage-<month>-by-<by>.<format>; - for standard output)"
    )
    export.set_defaults(handler=usage_export)
