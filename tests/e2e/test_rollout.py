"""Health, rollouts and batch across real daemons (issue 4's done-means)."""

from __future__ import annotations

import itertools
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.builders import deployment, job, web_app
from tests.e2e.test_cluster import CLUSTER, Cluster
from tests.helpers import Periodic, git, wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.push("cluster.yaml", CLUSTER % "[]")
    yield c
    c.close()


class ReadySampler(Periodic):
    """Counts containers of a workload that answer HTTP 200 on 8080, every 0.25 s."""

    period = 0.25

    def __init__(self, c: Cluster, workload: str):
        super().__init__()
        self.c, self.workload = c, workload
        self.samples: list[int] = []

    def sample(self) -> None:
        self.samples.append(self.ready_now())

    def ready_now(self) -> int:
        n = 0
        for r in self.c.containers(f"gitops.name={self.workload}"):
            ip = next(iter(r["NetworkSettings"]["Networks"].values()))["IPAddress"]
            try:
                with urllib.request.urlopen(f"http://{ip}:8080/index.html", timeout=0.5) as resp:
                    n += resp.status == 200
            except OSError:
                pass
        return n


def start_all(c: Cluster) -> list[str]:
    """Start nodes a, b and c and wait until each sees all three live."""
    nodes = [c.name(x) for x in "abc"]
    for short in "abc":
        c.start(short)
    wait_for(lambda: all(c.status(n).get("liveNodes") == nodes for n in nodes), timeout=30, interval=0.5,
             what="all nodes see each other")  # fmt: skip
    return nodes


def rows(c: Cluster, nodes: list[str], workload: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for n in nodes:
        for r in c.status(n).get("workloads") or []:  # type: ignore[union-attr]
            if not workload or r["name"] == workload:
                out.append({**r, "node": n})
    return out


def spec_hash_of(c: Cluster, workload: str) -> set[str]:
    return {r["Labels"]["gitops.spec-hash"] for r in c.containers(f"gitops.name={workload}")}


def test_rolling_update_keeps_readiness_then_halts_and_reverts(cluster3: Cluster) -> None:
    c = cluster3
    nodes = [c.name(x) for x in "abc"]
    c.push("apps/web.yaml", web_app("web", "v1", deadline_s=8))
    for short in "abc":
        c.start(short)
    sampler = ReadySampler(c, "web")
    wait_for(lambda: sampler.ready_now() == 6 and len(spec_hash_of(c, "web")) == 1 and
             all(c.status(n).get("liveNodes") == nodes for n in nodes), timeout=90, interval=0.5,
             what="6 ready replicas on v1")  # fmt: skip
    (v1,) = spec_hash_of(c, "web")
    v1_ids = {r["Id"] for r in c.client.api.containers(filters={"label": ["gitops.name=web"], "status": "running"})}

    # 1. A new env value: never below 6 - maxUnavailable (= 5) ready, all on the new spec at the end.
    with ReadySampler(c, "web") as s:
        c.push("apps/web.yaml", web_app("web", "v2", deadline_s=8))
        wait_for(lambda: len(spec_hash_of(c, "web")) == 1 and spec_hash_of(c, "web") != {v1}
                 and sampler.ready_now() == 6, timeout=120, interval=0.5, what="all 6 on v2")  # fmt: skip
    assert min(s.samples) >= 5, s.samples
    (v2,) = spec_hash_of(c, "web")
    v2_ids = {r["Id"] for r in c.client.api.containers(filters={"label": ["gitops.name=web"], "status": "running"})}
    assert not (v1_ids & v2_ids)

    # 2. A spec whose readiness never passes halts at the deadline; old containers keep serving.
    with ReadySampler(c, "web") as s:
        c.push("apps/web.yaml", web_app("web", "v3", ready_path="/missing", deadline_s=8))
        failed = wait_for(
            lambda: [r for r in rows(c, nodes, "web") if r.get("reason") == "RolloutFailed"], timeout=60,
            interval=0.5, what="RolloutFailed reported",
        )  # fmt: skip
        time.sleep(4)
    assert min(s.samples) >= 5, s.samples
    assert "not ready within 8s" in str(failed[0]["message"]) and "probe" in str(failed[0]["message"])
    still_v2 = v2_ids & {r["Id"] for r in c.client.api.containers(filters={"label": ["gitops.name=web"]})}
    # At most maxSurge + maxUnavailable (2 + 1) replicas were touched by the broken spec.
    assert len(still_v2) >= 6 - 3, "the halted rollout must not go past its budget"
    assert sampler.ready_now() == 6

    # 3. git revert: back to v2 everywhere; replicas that never changed were not restarted.
    c.work.revert()
    git(c.work.path, "push", "-q", "-f", str(c.bare), "main")
    wait_for(lambda: spec_hash_of(c, "web") == {v2} and sampler.ready_now() == 6, timeout=60, interval=0.5,
             what="all ready on v2 after revert")  # fmt: skip
    now_ids = {r["Id"] for r in c.client.api.containers(filters={"label": ["gitops.name=web"], "status": "running"})}
    assert still_v2 <= now_ids


def test_crash_loop_backs_off(cluster3: Cluster) -> None:
    c = cluster3
    node = c.name("a")
    crash = deployment("crash", 1, engine=True, command=["sh", "-c", "exit 1"])
    c.push("apps/crash.yaml", crash)
    # Time scale 0.2: the 10, 20, 40 s gaps become 2, 4, 8 s.
    d = c.start("a")
    d.kill(9)
    d.env["GITOPS_BACKOFF_SCALE"] = "0.2"
    d.start()
    starts: list[str] = []

    def observe() -> bool:
        for r in c.client.api.containers(all=True, filters={"label": [f"gitops.node={node}"]}):
            started = c.client.api.inspect_container(r["Id"])["State"]["StartedAt"]
            if started and not started.startswith("0001") and started not in starts:
                starts.append(started)
        return len(starts) >= 5

    wait_for(observe, timeout=40, interval=0.1, what="5 starts")
    from datetime import datetime

    times = [datetime.fromisoformat(s[:26].rstrip("Z")) for s in starts]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    # First restart at once, then 2, 4, 8 s (plus pass latency).
    assert gaps[0] < 1.5, gaps
    for expected, got in zip([2, 4, 8], gaps[1:], strict=False):
        assert expected - 0.3 <= got <= expected + 1.5, gaps
    st = wait_for(lambda: [r for r in rows(c, [node], "crash") if r.get("reason") == "CrashLoopBackOff"],
                  timeout=20, interval=0.3, what="CrashLoopBackOff in status")  # fmt: skip
    assert int(str(st[0]["restarts"])) >= 3


def batch(version: str) -> str:
    """A Job of 3 completions, 2 at a time, each about a second long."""
    command = ["sh", "-c", f"sleep 1; echo done {version}"]
    return job("batch", engine=True, command=command, spec="completions: 3\nparallelism: 2")


def test_job_completions_once_cluster_wide(cluster3: Cluster) -> None:
    c = cluster3
    nodes = start_all(c)
    c.push("jobs/batch.yaml", batch("v1"))

    def succeeded() -> set[int]:
        return {int(str(r["replica"])) for r in rows(c, nodes, "batch") if r["state"] == "succeeded"}

    wait_for(lambda: succeeded() == {0, 1, 2}, timeout=60, interval=0.5, what="3 completions")
    runs = c.containers("gitops.name=batch", all_=True)
    assert len(runs) == 3 and all("Exited (0)" in r["Status"] for r in runs)

    # Restart every daemon: nothing reruns.
    for n in nodes:
        c.daemons[n].kill(9)
    for n in nodes:
        c.daemons[n].start()
    time.sleep(6)
    again = c.containers("gitops.name=batch", all_=True)
    assert {r["Id"] for r in again} == {r["Id"] for r in runs}
    assert succeeded() == {0, 1, 2}

    # A new spec runs it again.
    c.push("jobs/batch.yaml", batch("v2"))
    wait_for(
        lambda: len([r for r in c.containers("gitops.name=batch", all_=True) if "Exited (0)" in r["Status"]
                     and r["Labels"]["gitops.spec-hash"] not in {x["Labels"]["gitops.spec-hash"] for x in runs}]) == 3,
        timeout=60, interval=0.5, what="3 runs of the new spec",
    )  # fmt: skip
    wait_for(lambda: succeeded() == {0, 1, 2} and all(
        r["specHash"] not in {x["Labels"]["gitops.spec-hash"] for x in runs}
        for r in rows(c, nodes, "batch") if r["state"] == "succeeded"
    ), timeout=20, interval=0.5, what="status shows 3 succeeded at the new spec")  # fmt: skip


# Every 3 s, keeping all the runs this test looks at.
CRON = job(
    "tick",
    kind="CronJob",
    engine=True,
    command=["sh", "-c", "echo tick"],
    spec='schedule: "*/3 * * * * *"\nsuccessfulJobsHistoryLimit: 10',
)


def test_cronjob_one_run_per_slot_over_three_nodes(cluster3: Cluster) -> None:
    c = cluster3
    nodes = start_all(c)
    c.push("jobs/tick.yaml", CRON)
    seen: dict[str, set[str]] = {}

    def runs() -> dict[str, set[str]]:
        for r in c.containers("gitops.kind=CronJob", all_=True):
            seen.setdefault(r["Labels"]["gitops.name"], set()).add(r["Labels"]["gitops.node"])
        return seen

    # Three consecutive slots after the first one seen (which may have been cut by the push).
    wait_for(lambda: len(runs()) >= 4, timeout=40, interval=0.2, what="4 runs")
    time.sleep(1)
    runs()
    slots = sorted(int(name.rsplit("-", 1)[1]) for name in seen)
    assert all(b - a == 3 for a, b in itertools.pairwise(slots[:4])), slots
    assert all(len(where) == 1 for where in seen.values()), seen
    finished = wait_for(
        lambda: [r for r in rows(c, nodes, "") if r.get("cronjob") == "tick" and r["state"] == "succeeded"],
        timeout=15, interval=0.5, what="runs reported succeeded",
    )  # fmt: skip
    assert all(str(r["slot"]) for r in finished)
