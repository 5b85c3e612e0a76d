"""Real Redis topologies on loopback: a 3-primary/3-replica Cluster and a Sentinel group.

Both are started from the same redis-server binary the suite already uses, in throwaway
directories, with failure detection tuned to about a second so a failover fits in a test.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from support.servers import STARTUP_SECONDS, RedisServer, free_port, redis_server_binary

SLOTS = 16384
SERVICE = "gw-state"


def _until(check: object, what: str, seconds: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not reached in {seconds} s")


class RedisClusterGroup:
    """Three primaries, each with one replica; node timeout 1 s, so a primary that dies is
    replaced by its replica within a few seconds."""

    def __init__(self, workdir: Path, primaries: int = 3) -> None:
        options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        options += ["--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0"]
        # The bus port is explicit: the default (port + 10000) may not exist for a high port.
        self.bus_ports = [free_port() for _ in range(2 * primaries)]
        self.nodes = [
            RedisServer(workdir / f"node-{i}", extra=[*options, "--cluster-port", str(bus)])
            for i, bus in enumerate(self.bus_ports)
        ]
        self.primaries = primaries

    @property
    def url(self) -> str:
        """Two startup nodes, as a deployment lists a few: any one that answers will do."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def start(self) -> RedisClusterGroup:
        for node in self.nodes:
            node.start()
        first = self.nodes[0]
        share = SLOTS // self.primaries
        for i, node in enumerate(self.nodes[: self.primaries]):
            end = SLOTS - 1 if i == self.primaries - 1 else (i + 1) * share - 1
            with node.client() as client:
                client.execute_command("CLUSTER ADDSLOTSRANGE", i * share, end)
        for node in self.nodes[1:]:
            with node.client() as client:
                client.execute_command("CLUSTER MEET", "127.0.0.1", first.port, self.bus_ports[0])
        _until(lambda: all(self._known(n) == len(self.nodes) for n in self.nodes), "cluster meet")
        for primary, replica in zip(self.nodes, self.nodes[self.primaries :], strict=False):
            with primary.client() as client:
                primary_id = client.execute_command("CLUSTER MYID").decode()
            with replica.client() as client:
                client.execute_command("CLUSTER REPLICATE", primary_id)
        _until(self._healthy, "cluster_state:ok with every replica in sync")
        return self

    def _known(self, node: RedisServer) -> int:
        with node.client() as client:
            return len(client.execute_command("CLUSTER NODES"))

    def _healthy(self) -> bool:
        for node in self.nodes:
            if node.proc is None:
                continue
            with node.client() as client:
                if client.execute_command("CLUSTER INFO")["cluster_state"] != "ok":
                    return False
                replication = client.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
        return True

    def owner(self, key: str) -> RedisServer:
        """The node that serves `key`'s slot now."""
        live = next(n for n in self.nodes if n.proc is not None)
        with live.client() as client:
            slot = client.execute_command("CLUSTER KEYSLOT", key)
            for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    port = int(primary[1])
        return next(n for n in self.nodes if n.port == port)

    def primary_clients(self) -> list[redis.Redis]:
        """A client to each live primary (close them after use)."""
        clients = []
        for node in self.nodes:
            if node.proc is None:
                continue
            client = node.client()
            if client.info("replication")["role"] == "master":
                clients.append(client)
            else:
                client.close()
        return clients

    def wipe(self, pattern: str) -> None:
        """Delete every key matching `pattern` on every primary."""
        for client in self.primary_clients():
            with client:
                for key in list(client.scan_iter(match=pattern, count=1000)):
                    client.delete(key)

    def kill_owner(self, key: str) -> None:
        """Kill the primary serving `key`, and wait until its replica has taken over."""
        dead = self.owner(key)
        dead.kill()
        _until(lambda: self.owner(key) is not dead and self._healthy(), "a cluster failover")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class Sentinel:
    """One `redis-server --sentinel` process, watching the group's primary."""

    def __init__(self, workdir: Path, primary_port: int) -> None:
        self.port, self.workdir = free_port(), workdir
        self.config = workdir / "sentinel.conf"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 4000\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sentinel:
        self.proc = subprocess.Popen(
            [redis_server_binary(), str(self.config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


class SentinelGroup:
    """A primary, its replica and three Sentinels (quorum 2) that fail over in ~2-4 s."""

    def __init__(self, workdir: Path) -> None:
        self.primary = RedisServer(workdir / "primary")
        self.replica = RedisServer(
            workdir / "replica", extra=["--replicaof", "127.0.0.1", str(self.primary.port)]
        )
        self.sentinels = [Sentinel(workdir / f"sentinel-{i}", self.primary.port) for i in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self) -> SentinelGroup:
        self.primary.start()
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.start()
        _until(self._watching, "Sentinels that know the replica and each other")
        return self

    def _watching(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                if len(client.sentinel_slaves(SERVICE)) != 1:
                    return False
                if len(client.sentinel_sentinels(SERVICE)) != len(self.sentinels) - 1:
                    return False
        return True

    def current_primary(self) -> RedisServer:
        """The server the Sentinels name as the primary now."""
        with self.sentinels[0].client() as client:
            _, port = client.sentinel_get_master_addr_by_name(SERVICE)
        return self.primary if int(port) == self.primary.port else self.replica

    def primary_clients(self) -> list[redis.Redis]:
        """A client to the current primary (close it after use)."""
        return [self.current_primary().client()]

    def wipe(self, pattern: str) -> None:
        """Delete every key matching `pattern` on the current primary."""
        with self.current_primary().client() as client:
            for key in list(client.scan_iter(match=pattern, count=1000)):
                client.delete(key)

    def kill_owner(self, key: str) -> None:
        """Kill the primary (whatever `key`), and wait until the Sentinels promoted the replica."""
        dead = self.current_primary()
        dead.kill()
        _until(lambda: self.current_primary() is not dead, "a Sentinel failover")

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in (self.replica, self.primary):
            server.stop()
