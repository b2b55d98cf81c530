"""Real Redis and PostgreSQL servers for tests: each runs from the Debian binaries on a free
loopback port with its files in a temporary directory, and is always stopped and removed.

PostgreSQL's `initdb` and `postgres` refuse to run as root; as root they run as the `postgres`
system user (the Debian package creates it) on a directory that user owns."""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.service import free_port

START_TIMEOUT_S = 30.0


def redis_binary() -> str | None:
    return shutil.which("redis-server")


def postgres_bin_dir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _wait_port(port: int, process: subprocess.Popen | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class RedisServer:
    """`redis-server` without persistence: a restart loses every key, like a real crash of an
    unpersisted Redis."""

    def __init__(self, replica_of: int | None = None, cluster_dir: str | None = None) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="chorus-redis-")
        self.process: subprocess.Popen | None = None
        self.replica_of = replica_of  # a master's port: this one replicates it
        # A node of a Redis Cluster keeps its view of the cluster in this directory (so a
        # restarted node rejoins with its slots) and dies with the test process.
        self.cluster_dir = cluster_dir
        self.cluster_port = free_port() if cluster_dir else None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # The port may still be held for a moment by the process just killed.
        deadline = time.monotonic() + START_TIMEOUT_S
        replication = ["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else []
        cluster = []
        if self.cluster_dir:
            conf = os.path.join(self.cluster_dir, f"nodes-{self.port}.conf")
            # The cluster bus port must be free too: by default it is port + 10000, which
            # may be taken or beyond 65535 for a port from the ephemeral range.
            cluster = ["--cluster-enabled", "yes", "--cluster-config-file", conf,
                       "--cluster-port", str(self.cluster_port)]  # fmt: skip
        while True:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", self.dir,
                    "--loglevel", "warning",
                    *replication,
                    *cluster,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if self.cluster_dir else None,
            )  # fmt: skip
            try:
                _wait_port(self.port, self.process, 10)
                return
            except RuntimeError:
                self.kill()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the crash of a Redis server (every key is lost)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterServer:
    """A Redis Cluster of three masters (no replicas), each a `RedisServer` on a free port, all
    covering the 16384 slots between them. Its nodes die with the test process even if it is
    killed without running its finalizers."""

    MASTERS = 3

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="chorus-redis-cluster-")
        self.nodes = [RedisServer(cluster_dir=self.dir) for _ in range(self.MASTERS)]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports) + "/"

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.start()
            result = subprocess.run(
                ["redis-cli", "--cluster", "create",
                 *(f"127.0.0.1:{port}" for port in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if result.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {result.stdout}")
            self.wait_ok()
        except BaseException:
            self.close()
            raise

    def wait_ok(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until every node says `cluster_state:ok` (all slots assigned and reachable)."""
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while "cluster_state:ok" not in self._cluster_info(port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster is not ok after {timeout} s (port {port})")
                time.sleep(0.05)

    @staticmethod
    def _cluster_info(port: int) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(port), "cluster", "info"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return result.stdout

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGKILL when the thread that started it
    dies, so start cluster nodes from the main thread (it lives as long as the test process)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class SentinelServer:
    """A Redis Sentinel watching the master at 127.0.0.1:`master_port` as `name`, tuned to fail
    over within seconds (quorum 1: the only sentinel decides)."""

    def __init__(self, master_port: int, name: str = "chorus") -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        self.binary = binary
        self.name = name
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="chorus-sentinel-")
        self.conf = os.path.join(self.dir, "sentinel.conf")
        with open(self.conf, "w") as conf:  # the sentinel rewrites it: a file of its own
            conf.write(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {name} 127.0.0.1 {master_port} 1\n"
                f"sentinel down-after-milliseconds {name} 1000\n"
                f"sentinel failover-timeout {name} 5000\n"
            )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, self.conf, "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, self.process, 10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A throw-away PostgreSQL cluster (fsync off: it is for tests) with trust authentication
    for the `postgres` role on 127.0.0.1 only."""

    def __init__(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
        self.bin = bin_dir
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="chorus-pg-")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "server.log")
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}\n{result.stderr}\n{self._log()}")

    def _log(self) -> str:
        with contextlib.suppress(OSError), open(self.log) as file:
            return file.read()[-4000:]
        return ""

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", options,
                  "start")  # fmt: skip
        _wait_port(self.port, None, START_TIMEOUT_S)

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session (a clean restart); `immediate` is a crash."""
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.SubprocessError):
            self._kill_by_pidfile()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_by_pidfile(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(self.data, "postmaster.pid")) as file:
                pid = int(file.readline())
            os.kill(pid, signal.SIGKILL)

    # databases ------------------------------------------------------------------------

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        name = name or "t_" + uuid.uuid4().hex[:16]
        args = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        if template:
            args += ["-T", template]
        self._run("createdb", *args, name)
        return name
