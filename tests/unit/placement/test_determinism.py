"""Every process computes the same assignment: hash seeds and input order do not matter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from gitops.placement import ALGORITHM_VERSION, _exponential, _mix

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import random, sys
from tests.builders import node, workload
from gitops.placement import place

build, order = random.Random(7), random.Random(int(sys.argv[1]))
nodes = [node(f"n{i:03d}", cpu=build.choice((2000, 4000, 8000)), mem=build.choice((4096, 16384)),
              gpus=build.choice((0, 0, 0, 4)), labels={"zone": build.choice("abc")}) for i in range(150)]
ws = [workload(f"w{i:03d}", replicas=build.randint(0, 12), cpu=build.choice((50, 200, 500, 1500)),
               mem=build.choice((64, 256, 1024)), gpus=build.choice((0,) * 9 + (1,)),
               kind=build.choice(("Deployment",) * 6 + ("Job", "DaemonSet", "CronJob")),
               selector=build.choice(({},) * 4 + ({"zone": "a"},)), host_port=build.choice((None,) * 9 + (80,)))
      for i in range(120)]
first = place(ws, nodes)
prev = first.owners()
half = dict(list(prev.items())[: len(prev) // 2])
order.shuffle(ws)
order.shuffle(nodes)
live = [n.name for n in nodes if n.name != "n007"]
second = place(ws, [n for n in nodes if n.name != "n007"], half)
print(first.digest("r1", [n.name for n in nodes]), second.digest("r2", live))
"""


def _digest(hash_seed: str, order_seed: int) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(order_seed)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def test_same_digest_in_every_process() -> None:
    digests = {_digest(seed, order) for seed, order in (("0", 1), ("1", 2), ("4242", 3), ("random", 4))}
    assert len(digests) == 1


def test_exponential_matches_log_and_is_exact_ops_only() -> None:
    rng = np.random.default_rng(3)
    h = rng.integers(0, 2**63, size=20_000, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    u = ((h >> np.uint64(12)).astype(np.float64) + 0.5) * 2.0**-52
    got = _exponential(h)
    assert np.all(got > 0)
    assert np.max(np.abs(got + np.log(u)) / -np.log(u)) < 1e-7


def test_pinned_bits() -> None:
    """Golden values: if these change, placements change, so ALGORITHM_VERSION must too."""
    fixed = np.array([0, 2**63, 2**64 - 1, 12345678901234567], dtype=np.uint64)
    assert [x.hex() for x in _exponential(fixed).tolist()] == [
        "0x1.25e4f7b111754p+5",
        "0x1.62e42f9721081p-1",
        "0x1.0000000000000p-53",
        "0x1.d3cc2d9b96c6ep+2",
    ]
    assert [hex(x) for x in _mix(fixed).tolist()] == [
        "0x0",
        "0x25c26ea579cea98a",
        "0xb4d055fcf2cbbd7b",
        "0x790a7264e27c80ff",
    ]
    assert ALGORITHM_VERSION == "hrw-quota-sticky/5"
