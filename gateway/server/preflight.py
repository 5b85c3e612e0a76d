"""What `gateway serve` checks before handing its address to uvicorn: that it can listen
there, and that the image URLs it will hand out can be opened by someone; and `gateway
config check`, a config's pre-flight before it is deployed (no secret needed).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.server.capacity import describe, nofile_limits
from gateway.server.online import OnlineProblem, check_online
from gateway.settings.build import check_redis_urls
from gateway.settings.config import (
    ConfigError,
    EnvironmentProblem,
    GatewayConfig,
    config_warnings,
    read_config,
)
from gateway.settings.environment import PUBLIC_URL, missing_required
from gateway.settings.report import (
    print_environment,
    print_other_sources,
    print_principals,
    print_quota_rules,
    print_upstream,
)

DEFAULT_CONFIG = "config/gateway.yaml"


def config_path(given: str | None) -> Path:
    """The config file: `--config`, else $GATEWAY_CONFIG, else the default."""
    return Path(given or os.environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG)


def fail(message: str) -> int:
    """Say why a command stops, and its exit code."""
    print(f"gateway: {message}", file=sys.stderr)
    return 2


def refuse(path: Path, exc: ConfigError) -> int:
    """Exit 2 naming what is wrong: the variable of the environment, or the file's key."""
    if isinstance(exc, EnvironmentProblem):
        return fail(str(exc))
    return fail(f"{path}: invalid configuration\n{exc}")


def _is_unspecified(host: str) -> bool:
    """True for the wildcard addresses (every interface), which no client can connect to."""
    try:
        return not host or ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False  # a host name: resolvable, presumably by callers too


def base_url(host: str, port: int) -> str:
    """`http://host:port`, with an IPv6 address in brackets."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


def public_url_warning(
    config: GatewayConfig, host: str, port: int, env: Mapping[str, str]
) -> str | None:
    """A warning when served image URLs would name a wildcard address (the default public URL
    is the serve address), or None. Only the sandbox and the edits adapter serve images."""
    serves_images = config.upstream.is_sandbox or config.upstream.adapter == "edits"
    if env.get(PUBLIC_URL) or not serves_images or not _is_unspecified(host):
        return None
    return (
        f"--host {host} listens on every interface, and {PUBLIC_URL} is unset: image URLs will "
        f"read {base_url(host, port)}/files/..., which no caller can open. Set {PUBLIC_URL} "
        "to the address callers use (e.g. http://gateway.internal:8080)"
    )


def listen_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on, with what to do about it, or None if it can.

    Binds the way uvicorn will (same family rule, SO_REUSEADDR) and lets go at once; a
    process that takes the port in between still gets uvicorn's own error.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is already in use (another gateway, or an earlier "
                    f"`make run` still running?): stop it, or pick another port, e.g. "
                    f"`make run PORT={port + 1}` or `gateway serve --port {port + 1}`"
                )
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def config_check(args: argparse.Namespace) -> int:
    """`gateway config check`: validate the config, then print what serve would read and do."""
    path = config_path(args.config)
    try:
        config = read_config(path)
        check_redis_urls(config, os.environ)
    except ConfigError as exc:
        return refuse(path, exc)
    print(f"{path}: ok")
    for warning in config_warnings(config):
        print(f"gateway: warning: {warning}", file=sys.stderr)
    print_upstream(config)
    nofile = nofile_limits()
    print(f"served here, {describe(config, nofile.now if nofile else None)}")
    print_environment(config, os.environ)
    print_quota_rules(config)
    print_principals(config)
    print_other_sources(config)
    missing = missing_required(config, os.environ)
    if args.require_env and missing:
        return fail(f"serve needs {', '.join(var.name for var in missing)} set")
    if args.online:
        try:
            print("\n".join(check_online(config, os.environ)))
        except OnlineProblem as exc:
            return fail(str(exc))
    return 0


def add_command(commands: Any) -> None:
    """`config check` among the `gateway` commands."""
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
    check.add_argument(
        "--online",
        action="store_true",
        help="also ask the upstream's /models whether it has each model of the list, and "
        "when each shuts down (exit 2 if it has none, or cannot be asked)",
    )
    check.set_defaults(handler=config_check)
