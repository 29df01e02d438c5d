"""A network the tests can cut: a client process in its own network namespace, joined to this
one by a veth pair, and a drop that discards every packet both ways (a `blackhole` qdisc on
each end) while the interfaces stay up, as a Wi-Fi dropout or a pulled cable upstream does.

Needs root (CAP_NET_ADMIN) and `ip`/`tc` from iproute2; `unavailable()` says why not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass


def _ip(*args: str, ns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", ns] if ns else []
    subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=30)


def unavailable() -> str | None:
    """None when a namespace, a veth pair and a blackhole qdisc can be made here; else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "`ip` and `tc` (iproute2) are not installed"
    try:
        with Netns(subnet=254):
            pass
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot make a network namespace here: {exc}"
    return None


@dataclass
class Netns:
    """`with Netns() as net:` a namespace `net.name` whose only way out is `net.host_ip`."""

    subnet: int = 0

    def __post_init__(self) -> None:
        tag = f"{os.getpid() % 100000}{self.subnet}"
        self.name = f"hs{tag}"
        self.host_side, self.client_side = f"hs{tag}a", f"hs{tag}b"
        third = (os.getpid() + self.subnet) % 250
        self.host_ip, self.client_ip = f"10.213.{third}.1", f"10.213.{third}.2"
        self.dropped = False

    def __enter__(self) -> Netns:
        try:
            _ip("ip", "netns", "add", self.name)
            _ip(
                "ip",
                "link",
                "add",
                self.host_side,
                "type",
                "veth",
                "peer",
                "name",
                self.client_side,
            )
            _ip("ip", "link", "set", self.client_side, "netns", self.name)
            _ip("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_side)
            _ip("ip", "link", "set", self.host_side, "up")
            _ip("ip", "addr", "add", f"{self.client_ip}/30", "dev", self.client_side, ns=self.name)
            _ip("ip", "link", "set", self.client_side, "up", ns=self.name)
            _ip("ip", "link", "set", "lo", "up", ns=self.name)
            _ip("tc", "qdisc", "add", "dev", self.host_side, "root", "blackhole")  # works?
            _ip("tc", "qdisc", "del", "dev", self.host_side, "root")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[str]:
        """A process inside the namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kwargs)  # type: ignore[call-overload]

    def drop(self) -> None:
        """Every packet between the namespace and here is discarded, both ways."""
        _ip("tc", "qdisc", "add", "dev", self.host_side, "root", "blackhole")
        _ip("tc", "qdisc", "add", "dev", self.client_side, "root", "blackhole", ns=self.name)
        self.dropped = True

    def restore(self) -> None:
        _ip("tc", "qdisc", "del", "dev", self.host_side, "root")
        _ip("tc", "qdisc", "del", "dev", self.client_side, "root", ns=self.name)
        self.dropped = False

    def close(self) -> None:
        for argv in (["ip", "link", "del", self.host_side], ["ip", "netns", "del", self.name]):
            subprocess.run(argv, capture_output=True, timeout=30)
