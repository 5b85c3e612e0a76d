"""`gateway serve`: the config checked, the process prepared, then uvicorn with the gateway's
HTTP protocol and one app per worker (`gateway.app:app_from_env`)."""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
from typing import Any

from gateway.auth.keys import new_key
from gateway.server.allocator import tune_malloc
from gateway.server.capacity import describe, raise_nofile
from gateway.server.preflight import (
    DEFAULT_CONFIG,
    base_url,
    config_path,
    fail,
    listen_problem,
    public_url_warning,
    refuse,
)
from gateway.settings.build import Settings, build_settings
from gateway.settings.config import ConfigError, GatewayConfig, read_config
from gateway.settings.environment import DEMO_ADMIN_KEY, DEMO_KEY, PUBLIC_URL

# How long an idle keep-alive connection stays open. Longer than the load balancer's own
# upstream keepalive_timeout (config/nginx.conf): the side that closes an idle connection
# must be nginx, or it may send a POST down a connection the gateway is closing, and nginx
# never retries a POST it has sent (the caller gets a 502).
KEEP_ALIVE_SECONDS = 40


def serve(args: argparse.Namespace) -> int:
    """Check the config and the address, prepare the process, then run uvicorn; exit 2 with
    the reason when it cannot start as asked."""
    path = config_path(args.config)
    env = _environment(args, str(path))
    try:
        settings = build_settings(read_config(path), env)
    except ConfigError as exc:
        return refuse(path, exc)
    problem = _cannot_start(args, settings) or _redis_problem(settings)
    if problem:
        return fail(problem)
    _warn(args, settings)
    metrics_dir = _metrics_dir(args, env)
    tune_malloc(env)
    _say_capacity(settings.config)
    os.environ.update(env)  # the workers build their settings from this environment
    _say_demo_keys(settings, settings.public_url or base_url(args.host, args.port))
    try:
        _run(args, settings)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _environment(args: argparse.Namespace, path: str) -> dict[str, str]:
    """The environment the workers will read: this one, with the config path, the public URL
    (default: the serve address) and, with --demo-key, the demo keys."""
    env = dict(os.environ)
    env["GATEWAY_CONFIG"] = path
    env.setdefault(PUBLIC_URL, base_url(args.host, args.port))
    if args.demo_key:
        for name in (DEMO_KEY, DEMO_ADMIN_KEY):
            env[name] = env.get(name) or new_key()
    return env


def _cannot_start(args: argparse.Namespace, settings: Settings) -> str | None:
    """Why serve cannot start as asked, or None."""
    if args.workers > 1 and settings.redis_url is None:
        return (
            f"--workers {args.workers} needs a shared store: set "
            f"{settings.config.store.redis_url_env} to a Redis URL "
            "(the in-process store serves one process only)"
        )
    return listen_problem(args.host, args.port)


def _redis_problem(settings: Settings) -> str | None:
    """Why a configured Redis cannot serve (a wrong topology, refused credentials, a
    certificate that does not verify), in one line, or None: checked here, before uvicorn,
    so that the refusal is that line and not a worker's traceback."""
    import asyncio

    from gateway.lifespan import verify_redis
    from gateway.store.topology import TopologyError

    try:
        asyncio.run(verify_redis(settings))
    except TopologyError as exc:
        return str(exc)
    return None


def _warn(args: argparse.Namespace, settings: Settings) -> None:
    unreachable = public_url_warning(settings.config, args.host, args.port, os.environ)
    for warning in (*settings.warnings, *([unreachable] if unreachable else [])):
        print(f"gateway: warning: {warning}", file=sys.stderr)


def _metrics_dir(args: argparse.Namespace, env: dict[str, str]) -> str | None:
    """With several workers, where they write their counters (/metrics in any worker adds
    them all up); None when there is one, or the operator chose a directory."""
    if args.workers <= 1 or env.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    return metrics_dir


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
    print(f"gateway: {describe(config, nofile.now if nofile else None)}", flush=True)


def _run(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn  # imported here so that `keys` and `config` stay fast

    limits = settings.config.limits
    uvicorn.run(
        "gateway.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=limits.shutdown_grace_seconds,
        # The head's size and timeout are guarded in front of the parser.
        http="gateway.server.protocol:ReceivingProtocol",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # Callers arriving at once wait in the kernel's queue, not in SYN retries.
        backlog=max(2048, limits.max_concurrent_requests or 0),
        log_config=logging_config(),
    )


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


def add_command(commands: Any) -> None:
    """`serve` among the `gateway` commands."""
    serve_command = commands.add_parser("serve", help="run the gateway")
    serve_command.add_argument(
        "--config", help=f"config file (default $GATEWAY_CONFIG or {DEFAULT_CONFIG})"
    )
    serve_command.add_argument("--host", default="127.0.0.1")
    serve_command.add_argument("--port", type=int, default=8080)
    serve_command.add_argument("--workers", type=int, default=1)
    serve_command.add_argument(
        "--demo-key",
        action="store_true",
        help="sandbox only: accept a demo key and a local demo admin key ($GATEWAY_DEMO_KEY, "
        "$GATEWAY_DEMO_ADMIN_KEY, or fresh ones) and print them",
    )
    serve_command.set_defaults(handler=serve)
