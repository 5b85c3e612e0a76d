"""What `gateway serve` checks before handing its address to uvicorn: that it can listen
there, and that the image URLs it will hand out can be opened by someone.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Mapping

from gateway.settings.config import GatewayConfig
from gateway.settings.environment import PUBLIC_URL


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
