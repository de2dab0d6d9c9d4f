"""Service names: a dnsmasq per node answering NAME, NAME.NS, NAME.NS.svc and NAME.NS.svc.cluster.local.

dnsmasq (Debian ``dnsmasq-base``) reads the names from a hosts file this module rewrites,
and re-reads it on SIGHUP, so a new Service resolves in running containers without a
restart; every other name is forwarded to the host's resolvers. It listens on the node's
address at a port hashed from the node name, so nodes sharing a host never collide;
containers reach it at the DNS virtual IP, which the node's nftables table forwards there.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gitops.model import Service

log = logging.getLogger(__name__)

DNSMASQ = "dnsmasq"
DOMAIN = "cluster.local"
# The DNS virtual IP's offset in serviceCidr: inside the reserved low addresses, where Kubernetes puts kube-dns.
DNS_OFFSET = 10
_PORTS = range(20000, 30000)


def dns_ip(cidr: str) -> str:
    """The DNS virtual IP of a service range."""
    return str(ipaddress.IPv4Network(cidr).network_address + DNS_OFFSET)


def dns_port(node: str) -> int:
    """The port the node's dnsmasq listens on, hashed from its name."""
    digest = hashlib.sha256(node.encode()).digest()
    return _PORTS.start + int.from_bytes(digest[:4], "big") % len(_PORTS)


def search_domains(namespace: str) -> list[str]:
    """Kubernetes' search list for a pod of ``namespace``."""
    return [f"{namespace}.svc.{DOMAIN}", f"svc.{DOMAIN}", DOMAIN]


def hosts(
    services: Sequence[Service], ready: Collection[str] = (), resolved: Mapping[str, Sequence[str]] | None = None
) -> str:
    """The hosts file: each Service with a virtual IP under its names; a headless one under the virtual IPs
    of its ``ready`` replicas, each of which also answers as ``REPLICA.NAME`` (``web-0.web``); an ExternalName
    one under its target's addresses: a Service's of the cluster, else as ``resolved`` holds them."""
    lines = []
    own = {
        name: s.cluster_ip
        for s in services
        if s.type != "ExternalName" and not s.headless
        for name in (f"{s.name}.{s.namespace}.svc.{DOMAIN}", f"{s.name}.{s.namespace}.svc")
    }
    for s in sorted(services, key=lambda s: s.key):
        if s.type == "ExternalName":
            target = (s.external_name or "").rstrip(".")
            addresses = [own[target]] if target in own else (resolved or {}).get(target, ())
            lines += [f"{address} {_names(s.name, s.namespace)}" for address in addresses]
            continue
        if not s.headless:
            lines.append(f"{s.cluster_ip} {_names(s.name, s.namespace)}")
            continue
        for replica, ip in sorted(s.endpoint_ips.items()):
            if ip in ready:
                lines.append(f"{ip} {_names(s.name, s.namespace)} {_names(f'{replica}.{s.name}', s.namespace)}")
    return "".join(line + "\n" for line in lines)


def _names(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.{DOMAIN} {name}.{namespace}.svc {name}.{namespace}"


class DnsServer:
    """This node's dnsmasq: started when first needed, restarted if it died, stopped by ``stop``."""

    def __init__(self, node: str, address: str, state_dir: Path, binary: str = DNSMASQ) -> None:
        self.address = address
        self.port = dns_port(node)
        self.binary = binary
        self.hosts_file = state_dir / "services" / "hosts"
        self.pid_file = state_dir / "services" / "dnsmasq.pid"
        self._process: subprocess.Popen[bytes] | None = None
        self._written: str | None = None

    def serve(
        self,
        services: Sequence[Service],
        ready: Collection[str] = (),
        resolved: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Make dnsmasq answer for ``services`` (``hosts``); OSError or RuntimeError if it cannot run."""
        text = hosts(services, ready, resolved)
        if text != self._written:
            self.hosts_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.hosts_file.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.chmod(0o644)
            os.replace(tmp, self.hosts_file)
        if self._process is None or self._process.poll() is not None:
            self._start()
        elif text != self._written:
            self._process.send_signal(signal.SIGHUP)
        self._written = text

    def _stop_previous(self) -> None:
        """End a dnsmasq an earlier daemon of this node left behind (it was killed): it holds the port."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        # Only our own: a dnsmasq reading this node's hosts file, not a reused pid.
        if f"--addn-hosts={self.hosts_file}".encode() in cmdline.split(b"\0"):
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop dnsmasq if this process started it."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None

    def _start(self) -> None:
        self._stop_previous()
        argv = [
            self.binary,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-hosts",
            f"--addn-hosts={self.hosts_file}",
            f"--listen-address={self.address}",
            "--bind-interfaces",
            f"--port={self.port}",
            "--user=root",
            f"--pid-file={self.pid_file}",
            # Names of the cluster domain that are no Service are answered here, never forwarded.
            f"--local=/{DOMAIN}/",
            "--log-facility=-",
            "--quiet-dhcp",
        ]
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            code = self._process.wait(timeout=0.3)
        except subprocess.TimeoutExpired:
            log.info("services: dnsmasq serving on %s:%d", self.address, self.port)
            return
        self._process = None
        raise RuntimeError(f"dnsmasq exited with {code} (listen {self.address}:{self.port}); see the daemon's log")


class ExternalNames:
    """Addresses of ExternalName targets, looked up in the background so that a slow resolver never holds up
    a pass: a target's addresses are served from the pass after its lookup ends, and looked up again every
    ``refresh_s``. dnsmasq answers a CNAME only for a target it knows itself, never one from upstream."""

    def __init__(self, refresh_s: float = 30.0) -> None:
        self.refresh_s = refresh_s
        self._found: dict[str, tuple[str, ...]] = {}
        self._asked: dict[str, float] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="external-names")

    def addresses(self, names: Iterable[str], now: float) -> dict[str, tuple[str, ...]]:
        """The IPv4 addresses found so far for ``names``; starts a lookup for those not asked within ``refresh_s``."""
        wanted = set(names)
        with self._lock:
            for name in sorted(wanted):
                if name not in self._asked or now - self._asked[name] >= self.refresh_s:
                    self._asked[name] = now
                    self._pool.submit(self._lookup, name)
            return {name: found for name, found in self._found.items() if name in wanted}

    def stop(self) -> None:
        """Drop lookups not yet started; one in progress ends on its own."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _lookup(self, name: str) -> None:
        try:
            infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
            found = tuple(sorted({str(info[4][0]) for info in infos}))
        except OSError:
            found = ()
        with self._lock:
            self._found[name] = found
