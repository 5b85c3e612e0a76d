"""The `gateway` command: serve, keys new, config check."""

from __future__ import annotations

import argparse
import copy
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.capacity import describe as describe_capacity
from gateway.capacity import nofile_limits, raise_nofile
from gateway.policy import rules_for
from gateway.settings import ConfigError, GatewayConfig, build_settings, read_config
from gateway.tuning import tune_malloc

DEFAULT_CONFIG = "config/gateway.yaml"
KEY_PREFIX = "gwk_"
IDLE_SECONDS = 5  # an idle keep-alive connection is closed after this (uvicorn's default)


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG)


def _fail(message: str) -> int:
    print(f"gateway: {message}", file=sys.stderr)
    return 2


def new_key() -> str:
    """A fresh random gateway key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def cmd_keys_new(args: argparse.Namespace) -> int:
    # Here, not at the top: `serve` spawns its workers sooner without the auth stack (JWT,
    # cryptography, starlette) loaded first in the parent.
    from gateway.auth import key_digest

    key = new_key()
    print(f"key (shown once, give it to {args.user}): {key}")
    print("add to principals in the config:")
    entry = f'user: "{args.user}", team: "{args.team}", role: {args.role}'
    print(f'  - {{{entry}, key_sha256: "{key_digest(key)}"}}')
    return 0


def _print_upstream(config: GatewayConfig) -> None:
    """Where variations go and, for the edits adapter, with which model at what price."""
    upstream = config.upstream
    print(f"upstream: {upstream.adapter} adapter, {upstream.base_url}")
    edits = upstream.edits
    if upstream.adapter == "edits" and edits is not None:
        priced = "high" if edits.quality == "auto" else edits.quality
        reserve = edits.prices[edits.model].image[priced]
        print(
            f"  model {edits.model}, quality {edits.quality}: reserves {reserve:g} USD per "
            "image, settled to the reported usage"
        )


def _print_policy(config: GatewayConfig) -> None:
    for principal in config.principals:
        print(f"{principal.user} (team {principal.team}, role {principal.role}):")
        rules = rules_for(config.quotas, principal.user, principal.team)
        for scope, subject, rule in rules:
            print(f"  {scope:<4} {subject:<16} {rule.unit:<8} {rule.limit:>10g} per {rule.window}")
        if not rules:
            print("  no quota rules: unlimited")
    _print_other_sources(config)


def _print_other_sources(config: GatewayConfig) -> None:
    """Callers the config does not list: who vouches for them, and which rules they get."""
    sources = []
    if config.identity.jwt is not None:
        sources.append(f"SSO tokens issued by {config.identity.jwt.issuer}")
    if config.identity.trusted_header is not None:
        proxies = ", ".join(config.identity.trusted_header.proxies)
        sources.append(f"trusted headers from {proxies}")
    if sources:
        print(f"other users ({'; '.join(sources)}):")
        print("  the default rules (or their quotas.users entry), plus their team's pool")


def cmd_config_check(args: argparse.Namespace) -> int:
    path = _config_path(args)
    try:
        config = read_config(path)
        settings = build_settings(config, os.environ)
    except ConfigError as exc:
        return _fail(f"{path}: invalid configuration\n{exc}")
    print(f"{path}: ok")
    for warning in settings.warnings:
        print(f"gateway: warning: {warning}", file=sys.stderr)
    _print_upstream(config)
    nofile = nofile_limits()
    print(f"served here, {describe_capacity(config, nofile.now if nofile else None)}")
    _print_policy(config)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn  # imported here so that `keys` and `config` stay fast

    path = _config_path(args)
    env = dict(os.environ)
    env["GATEWAY_CONFIG"] = str(path)
    env.setdefault("GATEWAY_PUBLIC_URL", f"http://{args.host}:{args.port}")
    if args.demo_key and not env.get("GATEWAY_DEMO_KEY"):
        env["GATEWAY_DEMO_KEY"] = new_key()
    try:
        settings = build_settings(read_config(path), env)
    except ConfigError as exc:
        return _fail(f"{path}: invalid configuration\n{exc}")
    if args.workers > 1 and settings.redis_url is None:
        return _fail(
            f"--workers {args.workers} needs a shared store: set "
            f"{settings.config.store.redis_url_env} to a Redis URL "
            "(the in-process store serves one process only)"
        )
    for warning in settings.warnings:
        print(f"gateway: warning: {warning}", file=sys.stderr)
    metrics_dir = None
    if args.workers > 1 and not env.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers write their counters here; /metrics in any worker adds them all up.
        metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    tune_malloc(env)
    _say_capacity(settings.config)
    os.environ.update(env)  # the workers build their settings from this environment
    if settings.demo_key:
        print(f"demo key: {settings.demo_key.get_secret_value()}", flush=True)
    try:
        uvicorn.run(
            "gateway.app:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=settings.config.limits.shutdown_grace_seconds,
            # The head's size and timeout are guarded in front of the parser.
            http="gateway.protocol:GuardedHttpToolsProtocol",
            timeout_keep_alive=IDLE_SECONDS,
            # Callers arriving at once wait in the kernel's queue, not in SYN retries.
            backlog=max(2048, settings.config.limits.max_concurrent_requests or 0),
            log_config=logging_config(),
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _say_capacity(config: GatewayConfig) -> None:
    """Raise the open-file limit (workers inherit it) and say what a process can hold."""
    nofile = raise_nofile()
    if nofile is not None and nofile.now > nofile.was:
        print(f"gateway: open files limit raised from {nofile.was:,} to {nofile.now:,}")
    print(f"gateway: {describe_capacity(config, nofile.now if nofile else None)}", flush=True)


def logging_config() -> dict[str, Any]:
    """uvicorn's logging, plus the gateway's: JSON access lines as they are, others prefixed."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["gateway"] = {"format": "%(levelname)s %(name)s: %(message)s"}
    config["formatters"]["json_lines"] = {"format": "%(message)s"}
    config["handlers"]["gateway"] = {
        "class": "logging.StreamHandler",
        "formatter": "gateway",
        "stream": "ext://sys.stderr",
    }
    config["handlers"]["gateway_access"] = {
        "class": "logging.StreamHandler",
        "formatter": "json_lines",
        "stream": "ext://sys.stdout",
    }
    config["loggers"]["gateway"] = {"handlers": ["gateway"], "level": "INFO", "propagate": False}
    config["loggers"]["gateway.access"] = {
        "handlers": ["gateway_access"],
        "level": "INFO",
        "propagate": False,
    }
    return dict(config)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config", help=f"config file (default $GATEWAY_CONFIG or {DEFAULT_CONFIG})"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--demo-key",
        action="store_true",
        help="sandbox only: accept a demo key ($GATEWAY_DEMO_KEY, or a fresh one) and print it",
    )
    serve.set_defaults(handler=cmd_serve)

    keys = commands.add_parser("keys", help="manage keys").add_subparsers(
        dest="action", required=True
    )
    new = keys.add_parser("new", help="print a fresh key and its config entry")
    new.add_argument("--user", required=True)
    new.add_argument("--team", required=True)
    new.add_argument("--role", choices=("user", "admin"), default="user")
    new.set_defaults(handler=cmd_keys_new)

    config = commands.add_parser("config", help="configuration").add_subparsers(
        dest="action", required=True
    )
    check = config.add_parser("check", help="validate the config, print the policy per user")
    check.add_argument("--config")
    check.set_defaults(handler=cmd_config_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gateway` command."""
    args = _parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
