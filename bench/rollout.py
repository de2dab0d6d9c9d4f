"""Rolling update of 30 replicas over 3 nodes: ``git push`` -> every replica new and ready.

Run: PYTHONPATH=. .venv/bin/python bench/rollout.py [--replicas 30] [--app-sleep 1.0]

Three real ``gitops run`` daemons (interval 1 s, heartbeatSeconds 1, nodeTimeoutSeconds 10),
each with its own ``git daemon`` in front of one bare repository, as in tests/e2e. The
Deployment is tests/e2e/test_rollout.py's, ``web_app()`` of tests/builders.py (httpd on 8080
after a ``sleep``; readiness httpGet periodSeconds 1) with maxSurge 25% (-> 8, rounded up) and
maxUnavailable 25% (-> 7, rounded down).

Once all replicas run v1 and answer HTTP 200, a commit changes one env value and is pushed;
t0 is taken right before the push. Measured from the engine, not from status:

- rollout_s: t0 -> the first moment the engine lists exactly ``replicas`` running containers
  of the workload, every one with the new spec hash and every one having answered HTTP 200
  on 8080 (a tracker lists containers every 0.1 s and GETs each new one until it answers);
- min_ready_seen: fewest containers answering HTTP 200 in a sample, sampled every 0.25 s.

The floor is measured in the same run, just before the rollout: a bare ``docker run -d`` of
the same image, command and env, t0 before the CLI starts, t1 when it first answers HTTP 200
(polled every 50 ms); median of ``--floor-samples``. floor_s = waves x that median, with
waves = ceil(replicas / (maxSurge + maxUnavailable)). That floor is one container start per
wave, which a 2-core engine cannot reach (15 parallel starts take far longer than one), so it
is informational.

engine_floor_s, the goal's floor, is also measured in the same run, before the rollout: a
bare-engine script does the same rolling update on ``replicas`` containers of the same image,
command and env (Docker API, one client per thread, no daemon): each wave removes up to
maxUnavailable old containers, starts maxSurge + maxUnavailable new ones in parallel (never
more than replicas + maxSurge containers, never fewer than replicas - maxUnavailable
answering), waits until each new one answers HTTP 200, then removes the rest of the wave's
old ones; t0 to the last old one gone and every new one answering. Goal: rollout_s <= 1.25
x engine_floor_s + 2 x interval_s.

After the numbers, a timeline for the profile: per replica, when its node logged the ``run``
(the action completes), when the engine says the container started, when it first answered
200, when the node logged removing the old container; each node's passes; and each status
push (from the bare repository's refs) with how many replicas it reported ready on the new
spec. Ends with one JSON line: rollout_s, floor_s, engine_floor_s, interval_s,
min_ready_seen, desired.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
import docker.errors  # noqa: E402
import yaml  # noqa: E402

from tests.builders import TEST_IMAGE, web_app, web_app_command  # noqa: E402
from tests.e2e.test_cluster import Cluster  # noqa: E402
from tests.helpers import DOCKER_HOST, Periodic, git, wait_for  # noqa: E402

INTERVAL_S = 1.0  # Cluster.start() runs every daemon with --interval 1
TRACK_S = 0.1
SAMPLE_S = 0.25
FLOOR_POLL_S = 0.05
HTTP_TIMEOUT_S = 0.5
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

CLUSTER_YAML = """\
apiVersion: gitops/v1
kind: Cluster
metadata: {name: bench-rollout}
spec:
  heartbeatSeconds: 1
  nodeTimeoutSeconds: 10
"""


def manifest(version: str, replicas: int, sleep: float, surge: str, unavailable: str) -> str:
    """The web app of tests/e2e/test_rollout.py, httpd after ``sleep`` s, with the given rolling-update budget."""
    strategy = f"type: RollingUpdate\nrollingUpdate: {{maxSurge: {surge!r}, maxUnavailable: {unavailable!r}}}"
    return web_app("web", version, replicas, delay_s=sleep, strategy=strategy)


def resolve(value: str, replicas: int, round_up: bool) -> int:
    """An int-or-percent strategy value against the replica count, as Kubernetes rounds it."""
    if value.endswith("%"):
        x = replicas * float(value[:-1]) / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(value)


def answers(ip: str) -> bool:
    try:
        with NO_PROXY.open(f"http://{ip}:8080/index.html", timeout=HTTP_TIMEOUT_S) as resp:
            return resp.status == 200
    except OSError:
        return False


def ip_of(row: dict[str, Any]) -> str:
    nets = (row.get("NetworkSettings") or {}).get("Networks") or {}
    return next((n.get("IPAddress") or "" for n in nets.values()), "")


# -- floor -------------------------------------------------------------------------------


def floor_sample(c: Cluster, node: str, command: str) -> tuple[float, float]:
    """(docker run -d returned, first HTTP 200), both in seconds from before the CLI started."""
    args = ["docker", "run", "-d", "--label", f"gitops.node={node}", "--label", "bench=rollout-floor",
            "-e", "VERSION=floor", TEST_IMAGE, "sh", "-c", command]  # fmt: skip
    t0 = time.monotonic()
    cid = subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()
    t_run = time.monotonic() - t0
    try:
        ip = ""
        while True:
            ip = ip or ip_of(c.client.api.inspect_container(cid))
            if ip and answers(ip):
                return t_run, time.monotonic() - t0
            if time.monotonic() - t0 > 30:
                raise RuntimeError("floor container never answered HTTP 200")
            time.sleep(FLOOR_POLL_S)
    finally:
        c.client.api.remove_container(cid, force=True)


class EngineFloor:
    """The same rolling update done by a bare script against the engine (module docstring)."""

    def __init__(self, node: str, command: str, desired: int, surge: int, unavailable: int):
        self.node, self.command, self.desired = node, command, desired
        self.surge, self.unavailable = surge, unavailable
        self.local = threading.local()
        width = max(1, surge + unavailable, desired)
        self.pool = ThreadPoolExecutor(width)

    def api(self) -> docker.APIClient:
        if not hasattr(self.local, "api"):
            self.local.api = docker.APIClient(base_url=DOCKER_HOST, timeout=120)
        return self.local.api  # type: ignore[no-any-return]

    def start(self, version: str) -> str:
        """Create and start one container; return its id once it answers HTTP 200."""
        api = self.api()
        cid: str = api.create_container(
            TEST_IMAGE, ["sh", "-c", self.command], environment={"VERSION": version},
            labels={"gitops.node": self.node, "bench": "rollout-engine-floor"},
        )["Id"]  # fmt: skip
        api.start(cid)
        ip, t0 = "", time.monotonic()
        while not (ip := ip or ip_of(api.inspect_container(cid))) or not answers(ip):
            if time.monotonic() - t0 > 60:
                raise RuntimeError("engine floor container never answered HTTP 200")
            time.sleep(FLOOR_POLL_S)
        return cid

    def remove(self, cid: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.api().remove_container(cid, force=True)

    def measure(self) -> float:
        """Seconds for the rolling update from ``desired`` v1 containers (already answering) to as many v2."""
        old = list(self.pool.map(lambda _: self.start("floor-v1"), range(self.desired)))
        t0 = time.monotonic()
        started = 0
        removals = []
        while started < self.desired:
            n = min(self.surge + self.unavailable, self.desired - started)
            early, old = old[: self.unavailable], old[self.unavailable :]
            removals += [self.pool.submit(self.remove, cid) for cid in early]
            list(self.pool.map(lambda _: self.start("floor-v2"), range(n)))
            started += n
            late, old = old[: n - len(early)], old[n - len(early) :]
            removals += [self.pool.submit(self.remove, cid) for cid in late]
        for f in removals:
            f.result()
        return time.monotonic() - t0

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def remove_labelled(node: str) -> None:
    """Force-remove every container labelled ``gitops.node=<node>``, managed or not."""
    client = docker.DockerClient(base_url=DOCKER_HOST)
    try:
        for row in client.api.containers(all=True, filters={"label": [f"gitops.node={node}"]}):
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(row["Id"], force=True, v=True)
    finally:
        client.close()


# -- observation -------------------------------------------------------------------------


@dataclass
class Seen:
    node: str
    replica: int
    spec_hash: str
    ip: str
    first_seen: float
    first_200: float | None = None
    gone: float | None = None


class Tracker(Periodic):
    """Lists the workload's containers every 0.1 s; GETs new ones until they answer; notes status pushes."""

    def __init__(self, c: Cluster, nodes: list[str], desired: int, pool: ThreadPoolExecutor):
        self.c, self.nodes, self.desired, self.pool = c, nodes, desired, pool
        self.seen: dict[str, Seen] = {}
        self.pushes: list[tuple[float, str, str]] = []  # (t, node, status commit)
        self.new_hash: str | None = None
        self.done_at: float | None = None
        self.done = threading.Event()
        self._refs: dict[str, str] = {}
        super().__init__()

    def running(self) -> list[dict[str, Any]]:
        rows = self.c.client.api.containers(filters={"label": ["gitops.name=web"], "status": "running"})
        return [r for r in rows if r["Labels"].get("gitops.node", "").startswith(self.c.prefix)]

    def _ref(self, node: str) -> str:
        loose = self.c.bare / "refs" / "heads" / "gitops" / "status" / node
        with contextlib.suppress(OSError):
            return loose.read_text().strip()
        with contextlib.suppress(OSError):
            for line in (self.c.bare / "packed-refs").read_text().splitlines():
                if line.endswith(f" refs/heads/gitops/status/{node}"):
                    return line.split(" ", 1)[0]
        return ""

    period = TRACK_S

    def sample(self) -> None:
        self.step()

    def step(self) -> None:
        now = time.monotonic()
        rows = self.running()
        ids = {r["Id"] for r in rows}
        for r in rows:
            if r["Id"] not in self.seen:
                lab = r["Labels"]
                self.seen[r["Id"]] = Seen(lab["gitops.node"], int(lab["gitops.replica"]), lab["gitops.spec-hash"],
                                          ip_of(r), now)  # fmt: skip
        for cid, s in self.seen.items():
            if s.gone is None and cid not in ids:
                s.gone = now
        if self.new_hash is not None:
            new = self.new_hash
            todo = [s for cid, s in self.seen.items() if cid in ids and s.spec_hash == new and not s.first_200]
            for s, ok in zip(todo, self.pool.map(lambda s: bool(s.ip) and answers(s.ip), todo), strict=True):
                if ok:
                    s.first_200 = time.monotonic()
            live = [self.seen[i] for i in ids]
            if (self.done_at is None and len(live) == self.desired
                    and all(s.spec_hash == self.new_hash and s.first_200 for s in live)):  # fmt: skip
                self.done_at = time.monotonic()
                self.done.set()
        for n in self.nodes:
            ref = self._ref(n)
            if ref and ref != self._refs.get(n):
                self._refs[n] = ref
                self.pushes.append((now, n, ref))


class ReadySampler(Periodic):
    """Counts the workload's containers that answer HTTP 200 on 8080, every 0.25 s."""

    def __init__(self, tracker: Tracker, pool: ThreadPoolExecutor):
        self.tracker, self.pool = tracker, pool
        self.samples: list[tuple[float, int]] = []
        super().__init__()

    def ready_now(self) -> int:
        ips = [ip_of(r) for r in self.tracker.running()]
        return sum(self.pool.map(answers, [ip for ip in ips if ip]))

    period = SAMPLE_S

    def sample(self) -> None:
        self.samples.append((time.monotonic(), self.ready_now()))


# -- profile -----------------------------------------------------------------------------

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \w+ ([\w.]+): (.*)$")
ACTION = re.compile(r"^(run|remove|start|restart) (\S+)\[(\d+)\] \S*: (.*)$")
PASS = re.compile(r"^pass (\d+) at \w+: (\d+) action\(s\), ([\d.]+)s$")


def log_events(text: str, wall0: float, mono0: float) -> Iterable[tuple[float, str]]:
    """(monotonic time, message) of each daemon log line, converted from its local wall-clock stamp."""
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if m:
            wall = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000
            yield wall - wall0 + mono0, m.group(4)


def status_ready(c: Cluster, commit: str, spec_hash: str) -> tuple[int, int]:
    """(replicas ready on ``spec_hash``, replicas listed) in one pushed status record."""
    try:
        text = git(c.bare, "show", f"{commit}:status.yaml")
    except subprocess.CalledProcessError:
        return 0, 0
    rows = (yaml.safe_load(text) or {}).get("workloads") or []
    rows = [r for r in rows if r.get("name") == "web"]
    return sum(1 for r in rows if r.get("state") == "ready" and r.get("specHash") == spec_hash), len(rows)


def profile(c: Cluster, nodes: list[str], tracker: Tracker, t0: float, wall0: float, mono0: float, budget: int) -> None:
    new = tracker.new_hash or ""
    runs: dict[int, float] = {}
    removes: dict[int, float] = {}
    print("\nper-node passes after the push (t = seconds from push; the log stamps the pass end)")
    for n in nodes:
        passes = []
        for t, msg in log_events(c.daemons[n].output(), wall0, mono0):
            if t < t0 - 0.5:
                continue
            if (m := ACTION.match(msg)) and m.group(1) == "run" and m.group(2).endswith("/web"):
                runs[int(m.group(3))] = t - t0
            elif m and m.group(1) == "remove" and "replaced by spec" in m.group(4):
                removes[int(m.group(3))] = t - t0
            elif p := PASS.match(msg):
                took = float(p.group(3))
                passes.append(f"{t - took - t0:+.2f}..{t - t0:+.2f} ({p.group(2)} act)")
        print(f"  {n}: " + ", ".join(passes))
    print("\nper replica (t from push): run = node logged `docker run` done, started = engine StartedAt,")
    print("200 = first HTTP 200 seen by the tracker, rm-old = node logged removing the old container,")
    print("gone = old container no longer listed")
    print(f"  {'rep':>3}  {'node':<14} {'run':>6} {'started':>7} {'200':>6} {'rm-old':>6} {'gone':>6}  run->200")
    old_gone = {s.replica: s.gone for s in tracker.seen.values() if s.spec_hash != new and s.gone is not None}
    news = sorted((s for s in tracker.seen.values() if s.spec_hash == new), key=lambda s: s.replica)
    started: dict[int, float] = {}
    now_wall, now_mono = time.time(), time.monotonic()
    for cid, s in tracker.seen.items():
        if s.spec_hash != new:
            continue
        with contextlib.suppress(docker.errors.NotFound):
            st = c.client.api.inspect_container(cid)["State"]["StartedAt"]
            wall = datetime.fromisoformat(st[:26].rstrip("Z") + "+00:00").timestamp()
            started[s.replica] = wall - now_wall + now_mono - t0

    def f(x: float | None) -> str:
        return f"{x:6.2f}" if x is not None else "     -"

    for s in news:
        ready = s.first_200 - t0 if s.first_200 else None
        run = runs.get(s.replica)
        gap = f"{ready - run:5.2f}" if ready is not None and run is not None else "    -"
        g = old_gone.get(s.replica)
        print(f"  {s.replica:>3}  {s.node[-14:]:<14} {f(run)} {f(started.get(s.replica)):>7} {f(ready)} "
              f"{f(removes.get(s.replica))} {f(g - t0 if g else None)}  {gap}")  # fmt: skip
    # In flight as the engine sees it: started on the new spec, not yet answering HTTP 200.
    spans = [(started[s.replica], s.first_200 - t0) for s in news if s.replica in started and s.first_200]
    peak = max((sum(1 for a, b in spans if a <= t < b) for t, _ in spans), default=0)
    print(f"\nmost replicas in flight at once (engine: started, not yet answering 200): {peak}, budget {budget}")
    print("by index wave (the gate admits replicas in index order):")
    for lo in range(0, len(news), budget):
        wave = [s for s in news if lo <= s.replica < lo + budget]
        first_run = min((runs[s.replica] for s in wave if s.replica in runs), default=math.nan)
        last_200 = max((s.first_200 - t0 for s in wave if s.first_200), default=math.nan)
        last_gone = max((g - t0 for s in wave if (g := old_gone.get(s.replica))), default=math.nan)
        per_node = ", ".join(f"{n[-1]}:{sum(1 for s in wave if s.node == n)}" for n in nodes)
        print(f"  replicas {lo:>2}-{lo + len(wave) - 1:<2} ({per_node}): first run {first_run:5.2f}, "
              f"last 200 {last_200:5.2f}, last old gone {last_gone:5.2f}")  # fmt: skip
    print("\nstatus pushes (t from push; ready = replicas the node reports ready on the new spec / rows)")
    for t, n, commit in tracker.pushes:
        if t >= t0 - 0.2:
            ready, total = status_ready(c, commit, new)
            print(f"  {t - t0:+6.2f}  {n[-14:]:<14} ready {ready:>2}/{total}")


# -- main --------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--replicas", type=int, default=30)
    ap.add_argument("--app-sleep", type=float, default=1.0, help="seconds the container waits before httpd")
    ap.add_argument("--max-surge", default="25%")
    ap.add_argument("--max-unavailable", default="25%")
    ap.add_argument("--floor-samples", type=int, default=5)
    ap.add_argument("--no-profile", action="store_true", help="skip the per-replica timeline")
    args = ap.parse_args()

    desired = args.replicas
    surge = resolve(args.max_surge, desired, round_up=True)
    unavailable = resolve(args.max_unavailable, desired, round_up=False)
    waves = math.ceil(desired / max(1, surge + unavailable))
    command = web_app_command(args.app_sleep)

    def web(version: str) -> str:
        return manifest(version, desired, args.app_sleep, args.max_surge, args.max_unavailable)

    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp, ThreadPoolExecutor(16) as pool:
        c = Cluster(Path(tmp))
        c.prefix = "brollout" + uuid.uuid4().hex[:6]
        nodes = [c.name(x) for x in "abc"]
        floor_node = c.name("floor")
        try:
            c.push("cluster.yaml", CLUSTER_YAML)
            c.push("apps/web.yaml", web("v1"))
            for short in "abc":
                c.start(short)
            tracker = Tracker(c, nodes, desired, pool)
            sampler = ReadySampler(tracker, pool)
            wait_for(lambda: sampler.ready_now() == desired and len({r["Labels"]["gitops.spec-hash"]
                     for r in tracker.running()}) == 1, timeout=120, interval=0.5,
                     what=f"{desired} ready replicas on v1")  # fmt: skip
            wait_for(lambda: all(c.status(n).get("liveNodes") == nodes for n in nodes), timeout=30, interval=0.5,
                     what="every node sees the other two")  # fmt: skip
            setup_s = time.monotonic() - started
            print(f"setup: {desired} replicas ready on v1 after {setup_s:.1f} s", flush=True)

            floor = [floor_sample(c, floor_node, command) for _ in range(args.floor_samples)]
            one = statistics.median(t for _, t in floor)
            floor_s = waves * one
            print(f"floor: docker run -d + first 200: {', '.join(f'{t:.3f}' for _, t in floor)} s "
                  f"(docker run alone median {statistics.median(r for r, _ in floor):.3f} s)", flush=True)  # fmt: skip

            engine = EngineFloor(floor_node, command, desired, surge, unavailable)
            try:
                engine_floor_s = engine.measure()
            finally:
                engine.close()
                remove_labelled(floor_node)
            print(f"engine floor: the same {waves} wave(s) by a bare script: {engine_floor_s:.3f} s", flush=True)

            (v1,) = {r["Labels"]["gitops.spec-hash"] for r in tracker.running()}
            time.sleep(2 * INTERVAL_S)  # let the daemons go idle after the floor containers
            load_at_push = os.getloadavg()
            with tracker, sampler:
                c.work.put("apps/web.yaml", web("v2"))
                wall0, mono0 = time.time(), time.monotonic()
                t0 = mono0
                git(c.work.path, "push", "-q", "-f", str(c.bare), "main")
                # The new spec hash is whatever a new container of this workload carries.
                tracker.new_hash = wait_for(
                    lambda: next((s.spec_hash for s in list(tracker.seen.values()) if s.spec_hash != v1), None),
                    timeout=60, interval=0.05, what="a container on the new spec",
                )  # fmt: skip
                if not tracker.done.wait(timeout=150):
                    raise RuntimeError("rollout did not finish within 150 s")
                rollout_s = (tracker.done_at or 0.0) - t0
                time.sleep(0.5)  # a last couple of readiness samples after the end
            during = [n for t, n in sampler.samples if t >= t0]
            min_ready = min(during) if during else 0

            goal = 1.25 * engine_floor_s + 2 * INTERVAL_S
            load_after = os.getloadavg()
            print(f"\nrollout of {desired} replicas over {len(nodes)} nodes: maxSurge {surge}, maxUnavailable "
                  f"{unavailable} -> {waves} wave(s); app sleep {args.app_sleep:g} s, readiness period 1 s, "
                  f"daemon interval {INTERVAL_S:g} s")  # fmt: skip
            print(f"  {'metric':<16} {'goal':<26} {'measured':>10}  result")
            print(f"  {'-' * 16} {'-' * 26} {'-' * 10}  ------")
            print(f"  {'rollout_s':<16} {f'<= {goal:.2f} (1.25 eng + 2 int)':<26} {rollout_s:>10.2f}  "
                  f"{'PASS' if rollout_s <= goal else 'FAIL'}")  # fmt: skip
            print(f"  {'engine_floor_s':<16} {'bare script, same waves':<26} {engine_floor_s:>10.2f}")
            print(f"  {'floor_s':<16} {f'{waves} x {one:.3f} s':<26} {floor_s:>10.2f}")
            print(f"  {'min_ready_seen':<16} {f'>= {desired - unavailable} (maxUnavailable)':<26} {min_ready:>10}  "
                  f"{'PASS' if min_ready >= desired - unavailable else 'FAIL'}")  # fmt: skip
            print(
                f"  rollout / engine floor = {rollout_s / engine_floor_s:.2f} (goal <= 1.25 + 2 int), "
                f"rollout / floor = {rollout_s / floor_s:.2f}; readiness samples during rollout: {len(during)}"
            )
            print(f"  load average (1 min) before setup {load_before[0]:.2f}, at push {load_at_push[0]:.2f}, "
                  f"after {load_after[0]:.2f} on {os.cpu_count()} CPUs"
                  + ("  -- machine busy, timings noisy" if max(load_at_push[0], load_after[0]) > (os.cpu_count() or 1)
                     else ""))  # fmt: skip
            if not args.no_profile:
                profile(c, nodes, tracker, t0, wall0, mono0, max(1, surge + unavailable))
            print(f"\ntotal benchmark time {time.monotonic() - started:.0f} s", flush=True)
            print(json.dumps({"rollout_s": round(rollout_s, 3), "floor_s": round(floor_s, 3),
                              "engine_floor_s": round(engine_floor_s, 3),
                              "interval_s": INTERVAL_S, "min_ready_seen": min_ready, "desired": desired}))  # fmt: skip
            return 0 if rollout_s <= goal and min_ready >= desired - unavailable else 1
        finally:
            c.close()  # SIGKILLs the daemons, stops the git daemons, removes the nodes' containers
            remove_labelled(floor_node)


if __name__ == "__main__":
    sys.exit(main())
