"""nginx as a reference reverse proxy in front of the fake upstream: what a proxy costs
when it does nothing but relay.

Our own instance, never the system's: a generated config in the work directory (pid file,
logs and temp paths there too), one worker process, `daemon off` so that it stays our child
and its CPU is measured like the gateway's. Uploads are buffered in memory (as the gateway
buffers them) and upstream connections are kept alive, as a tuned production nginx would.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

from bench import procs

CONFIG = """\
{user}{single}worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-temp/body;
    proxy_temp_path {work}/nginx-temp/proxy;
    fastcgi_temp_path {work}/nginx-temp/fastcgi;
    uwsgi_temp_path {work}/nginx-temp/uwsgi;
    scgi_temp_path {work}/nginx-temp/scgi;
    client_max_body_size 8m;
    client_body_buffer_size 8m;
    keepalive_requests 1000000;
    upstream fake {{
        server 127.0.0.1:{upstream_port};
        keepalive 512;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


def find_nginx() -> str | None:
    """The nginx executable (PATH, then the Debian location outside a user's PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def write_config(work: Path, port: int, upstream_port: int, single: bool = False) -> Path:
    """The config file for an instance on `port` proxying to the fake upstream; `single`:
    one process, no master (what callgrind can count as one process)."""
    (work / "nginx-temp").mkdir(parents=True, exist_ok=True)
    # Run as root, nginx would hand its worker to `nobody`, who cannot use the work directory.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    path = work / ("nginx-single.conf" if single else "nginx.conf")
    text = CONFIG.format(
        user=user,
        single="master_process off;\n" if single else "",
        work=work.resolve(),
        port=port,
        upstream_port=upstream_port,
    )
    path.write_text(text.replace("nginx.pid", "nginx-single.pid") if single else text)
    return path


def start_nginx(
    binary: str, port: int, upstream_port: int, work: Path, wrap: procs.Wrap | None = None
) -> procs.Popen:
    """nginx on 127.0.0.1:`port`, ready (a request through it to the upstream answered 200);
    with `wrap` (bench.counts), one process without a master, inside `wrap`'s command."""
    config = write_config(work, port, upstream_port, single=wrap is not None)
    wrap = wrap or procs.Wrap()
    log = work / f"nginx{wrap.suffix}.log"
    command = [binary, "-e", str(work.resolve() / "nginx-error.log"), "-c", str(config.resolve())]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*wrap.prefix, *command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={**os.environ, **dict(wrap.env)},
        )
    procs.wait_ready(proc, f"http://127.0.0.1:{port}/healthz", log, wrap.ready_s)
    return proc
