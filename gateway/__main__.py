"""The `gateway` command: serve, keys, quotas, usage, config check."""

from __future__ import annotations

import argparse
import copy
import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import admin_cli
from gateway.capacity import describe as describe_capacity
from gateway.capacity import nofile_limits, raise_nofile
from gateway.config_report import (
    print_environment,
    print_other_sources,
    print_principals,
    print_quota_rules,
    print_upstream,
)
from gateway.environment import DEMO_ADMIN_KEY, DEMO_KEY, PUBLIC_URL, missing_required
from gateway.preflight import base_url, listen_problem, public_url_warning
from gateway.settings import (
    ConfigError,
    EnvironmentProblem,
    GatewayConfig,
    Settings,
    build_settings,
    check_redis_urls,
    config_warnings,
    read_config,
)
from gateway.tuning import tune_malloc

DEFAULT_CONFIG = "config/gateway.yaml"
# How long an idle keep-alive connection stays open. Longer than the load balancer's own
# upstream keepalive_timeout (config/nginx.conf): the side that closes an idle connection
# must be nginx, or it may send a POST down a connection the gateway is closing, and nginx
# never retries a POST it has sent (the caller gets a 502).
KEEP_ALIVE_SECONDS = 40
KEY_PREFIX = "gwk_"


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG)


def _fail(message: str) -> int:
    print(f"gateway: {message}", file=sys.stderr)
    return 2


def _refuse(path: Path, exc: ConfigError) -> int:
    """Exit 2 naming what is wrong: the variable of the environment, or the file's key."""
    if isinstance(exc, EnvironmentProblem):
        return _fail(str(exc))
    return _fail(f"{path}: invalid configuration\n{exc}")


def new_key() -> str:
    """A fresh random gateway key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def cmd_keys_new(args: argparse.Namespace) -> int:
    # Here, not at the top: `serve` spawns its workers sooner without the auth stack (JWT,
    # cryptography, starlette) loaded first in the parent.
    from gateway.auth.authenticator import key_digest

    key = new_key()
    print(f"key (shown once, give it to {args.user}): {key}")
    print("add to principals in the config:")
    # JSON strings are YAML double-quoted scalars: a `\` or `"` in a name pastes as it is.
    entry = f"user: {json.dumps(args.user)}, team: {json.dumps(args.team)}, role: {args.role}"
    print(f'  - {{{entry}, key_sha256: "{key_digest(key)}"}}')
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    path = _config_path(args)
    try:
        config = read_config(path)
        check_redis_urls(config, os.environ)
    except ConfigError as exc:
        return _refuse(path, exc)
    print(f"{path}: ok")
    for warning in config_warnings(config):
        print(f"gateway: warning: {warning}", file=sys.stderr)
    print_upstream(config)
    nofile = nofile_limits()
    print(f"served here, {describe_capacity(config, nofile.now if nofile else None)}")
    print_environment(config, os.environ)
    print_quota_rules(config)
    print_principals(config)
    print_other_sources(config)
    missing = missing_required(config, os.environ)
    if args.require_env and missing:
        return _fail(f"serve needs {', '.join(var.name for var in missing)} set")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn  # imported here so that `keys` and `config` stay fast

    path = _config_path(args)
    env = dict(os.environ)
    env["GATEWAY_CONFIG"] = str(path)
    env.setdefault(PUBLIC_URL, base_url(args.host, args.port))
    if args.demo_key:
        for name in (DEMO_KEY, DEMO_ADMIN_KEY):
            env[name] = env.get(name) or new_key()
    try:
        settings = build_settings(read_config(path), env)
    except ConfigError as exc:
        return _refuse(path, exc)
    if args.workers > 1 and settings.redis_url is None:
        return _fail(
            f"--workers {args.workers} needs a shared store: set "
            f"{settings.config.store.redis_url_env} to a Redis URL "
            "(the in-process store serves one process only)"
        )
    problem = listen_problem(args.host, args.port)
    if problem:
        return _fail(problem)
    unreachable = public_url_warning(settings.config, args.host, args.port, os.environ)
    for warning in (*settings.warnings, *([unreachable] if unreachable else [])):
        print(f"gateway: warning: {warning}", file=sys.stderr)
    metrics_dir = None
    if args.workers > 1 and not env.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers write their counters here; /metrics in any worker adds them all up.
        metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    tune_malloc(env)
    _say_capacity(settings.config)
    os.environ.update(env)  # the workers build their settings from this environment
    _say_demo_keys(settings, settings.public_url or base_url(args.host, args.port))
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
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            # Callers arriving at once wait in the kernel's queue, not in SYN retries.
            backlog=max(2048, settings.config.limits.max_concurrent_requests or 0),
            log_config=logging_config(),
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _say_demo_keys(settings: Settings, public_url: str) -> None:
    """The demo keys `--demo-key` accepts: one for the SDKs, one for the admin console."""
    if settings.demo_key:
        print(f"demo key: {settings.demo_key.get_secret_value()}", flush=True)
    if settings.demo_admin_key:
        print(f"demo admin key: {settings.demo_admin_key.get_secret_value()}")
        console = public_url.rstrip("/") + "/admin/console"
        print(f"  local only: it opens the admin console, {console}", flush=True)


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
    for json_logger in ("gateway.access", "gateway.audit"):
        config["loggers"][json_logger] = {
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
        help="sandbox only: accept a demo key and a local demo admin key ($GATEWAY_DEMO_KEY, "
        "$GATEWAY_DEMO_ADMIN_KEY, or fresh ones) and print them",
    )
    serve.set_defaults(handler=cmd_serve)

    keys = commands.add_parser("keys", help="manage keys").add_subparsers(
        dest="action", required=True
    )
    new = keys.add_parser("new", help="print a fresh key and its config entry")
    new.add_argument("--user", required=True, type=admin_cli.name_argument)
    new.add_argument("--team", required=True, type=admin_cli.name_argument)
    new.add_argument("--role", choices=("user", "admin"), default="user")
    new.set_defaults(handler=cmd_keys_new)
    admin_cli.add_key_commands(keys)  # the runtime ones, through a gateway's admin API
    admin_cli.add_commands(commands)

    config = commands.add_parser("config", help="configuration").add_subparsers(
        dest="action", required=True
    )
    check = config.add_parser(
        "check",
        help="validate the config (no secret needed), list the variables serve reads, "
        "print the policy",
    )
    check.add_argument("--config")
    check.add_argument(
        "--require-env",
        action="store_true",
        help="also exit 2 if a variable serve requires is unset (a deployment's pre-flight)",
    )
    check.set_defaults(handler=cmd_config_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gateway` command."""
    args = _parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
