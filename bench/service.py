"""Services: latency through a virtual IP, endpoint propagation between nodes, programming 1,000 Services.

Run: python bench/service.py [--requests 300] [--interval 1]

- Latency: one busybox httpd replica published on the host address as the daemon publishes
  it; the benchmark (on the host) sends ``--requests`` HTTP GETs through a Service virtual
  IP (nftables DNAT as the daemon renders an endpoint of its own node) and as many straight
  to the container IP, interleaved, each on a new connection; p50/p99 of both.
- Propagation: two daemons at ``--interval``; a one-replica Deployment behind a Service.
  t0: the replica first answers on its published port (polled every 20 ms); t1: the *other*
  node's table first DNATs to it (``nft list table`` every 20 ms).
- Programming: allocate, render and apply 1,000 Services with 3 endpoints each.

Ends with one JSON line: latency_ratio_p50, endpoint_propagation_s, interval_s, program_1000_s.
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import tempfile
import time
from pathlib import Path

from _common import (
    TEST_IMAGE,
    DaemonProcess,
    Repo,
    bench_node,
    client,
    deployment,
    emit,
    fmt_s,
    percentile,
    remove_bench_containers,
    report_table,
    stop_daemon,
    wait_until,
)

from gitops.model import Service, ServicePort
from gitops.nodefacts import host_ip
from gitops.services import nft
from gitops.services.allocate import allocate, port_key
from tests.builders import service

HTTPD = ["sh", "-c", "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www"]
VIP = "10.96.250.250"


def get_s(address: str, port: int) -> float:
    """Seconds for one GET on a new connection."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection(address, port, timeout=5)
    conn.request("GET", "/")
    conn.getresponse().read()
    conn.close()
    return time.perf_counter() - started


def latency(requests: int) -> tuple[list[float], list[float]]:
    """(through the virtual IP, straight to the container) request times."""
    node = bench_node("svc-latency")
    engine = client()
    try:
        c = engine.containers.run(
            TEST_IMAGE, HTTPD, detach=True, labels={"gitops.node": node}, ports={"8080/tcp": (host_ip(),)}
        )
        c.reload()
        settings = c.attrs["NetworkSettings"]
        direct = settings["IPAddress"]
        published = int(settings["Ports"]["8080/tcp"][0]["HostPort"])
        # As the daemon renders an endpoint of its own node: the container's address, the published port as fallback.
        local = nft.Backend(host_ip(), published, f"{direct}/{settings['IPPrefixLen']}", 8080)
        svc = Service(
            name="web", file="-", cluster_ip=VIP, selector={"a": "b"}, ports=(ServicePort(port=80, target_port=8080),)
        )
        nft.apply(nft.render(node, [svc], {port_key(svc, svc.ports[0]): [local]}))
        wait_until(lambda: _answers(direct, 8080), 10, 0.05, "httpd")
        via, straight = [], []
        for _ in range(requests):
            via.append(get_s(VIP, 80))
            straight.append(get_s(direct, 8080))
        return via, straight
    finally:
        nft.remove(node)
        remove_bench_containers(node)
        engine.close()


def _answers(address: str, port: int) -> bool:
    try:
        get_s(address, port)
    except OSError:
        return False
    return True


def propagation(interval: float) -> float:
    """Seconds from a replica answering to the other node's table serving it."""
    nodes = [bench_node("svc-a"), bench_node("svc-b")]
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repo(Path(tmp) / "repo")
        repo.put("svc.yaml", service("web", ports="[{port: 80, targetPort: 8080}]"))
        daemons = [
            DaemonProcess(
                str(repo.path), n, Path(tmp) / n, Path(tmp) / f"{n}.log", interval, extra_args=["--address", host_ip()]
            )
            for n in nodes
        ]
        try:
            for d in daemons:
                d.start()
            web = deployment("web", 1, engine=True, command=HTTPD, container="""\
                ports: [{containerPort: 8080}]
                readinessProbe: {httpGet: {path: /index.html, port: 8080}, periodSeconds: 1}
                """)  # fmt: skip
            repo.put("web.yaml", web)
            engine = client()
            try:

                def published() -> tuple[str, int] | None:
                    for n in nodes:
                        for c in engine.containers.list(filters={"label": ["gitops.name=web", f"gitops.node={n}"]}):
                            ports = c.attrs["NetworkSettings"]["Ports"].get("8080/tcp") or []
                            if ports:
                                return n, int(ports[0]["HostPort"])
                    return None

                owner, port = wait_until(published, 60, 0.02, "the replica's published port")
            finally:
                engine.close()
            wait_until(lambda: _answers(host_ip(), port), 30, 0.02, "the replica answering")
            t0 = time.monotonic()
            other = next(n for n in nodes if n != owner)
            wait_until(lambda: f":{port}" in _table(other), 60, 0.02, "the other node serving it")
            return time.monotonic() - t0
        finally:
            for d in daemons:
                stop_daemon(d)
            for n in nodes:
                nft.remove(n)
                remove_bench_containers(n)


def _table(node: str) -> str:
    listed = subprocess.run(["nft", "list", "table", "ip", nft.table_name(node)], capture_output=True, text=True)
    return listed.stdout


def program_1000() -> float:
    """Seconds to allocate, render and apply 1,000 Services with 3 endpoints each."""
    node = bench_node("svc-program")
    services = [
        Service(
            namespace="bench",
            name=f"s{i}",
            file="-",
            selector={"a": "b"},
            ports=(ServicePort(port=80, target_port=8080),),
        )
        for i in range(1000)
    ]
    started = time.perf_counter()
    allocated, _ = allocate(services, "10.96.0.0/16")
    backends = {port_key(s, s.ports[0]): [nft.Backend(f"192.0.2.{k}", 32000 + k) for k in (1, 2, 3)] for s in allocated}
    nft.apply(nft.render(node, allocated, backends))
    took = time.perf_counter() - started
    nft.remove(node)
    return took


def main() -> None:
    """Run the three measurements and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    via, straight = latency(args.requests)
    ratio = percentile(via, 50) / percentile(straight, 50)
    spread = propagation(args.interval)
    programmed = program_1000()
    report_table(
        "Services",
        [
            (
                "p50 via virtual IP / direct",
                "",
                f"{fmt_s(percentile(via, 50))} / {fmt_s(percentile(straight, 50))}",
                None,
            ),
            (
                "p99 via virtual IP / direct",
                "",
                f"{fmt_s(percentile(via, 99))} / {fmt_s(percentile(straight, 99))}",
                None,
            ),
            ("latency ratio p50", "<= 1.1", f"{ratio:.2f}", ratio <= 1.1),
            ("endpoint propagation", f"<= {args.interval + 1:g} s", fmt_s(spread), spread <= args.interval + 1),
            ("program 1,000 Services", "", fmt_s(programmed), None),
        ],
    )
    emit(
        {
            "latency_ratio_p50": round(ratio, 3),
            "endpoint_propagation_s": round(spread, 3),
            "interval_s": args.interval,
            "program_1000_s": round(programmed, 3),
        }
    )


if __name__ == "__main__":
    main()
