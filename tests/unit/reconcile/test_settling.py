"""A fresh node settles from the moment its first record reaches Git, not from process start.

Nodes started together on a loaded host take seconds to import, clone and publish; counting
from process start let one node claim its peers' replicas before they had published at all.
Real git repository (a hook refuses status pushes), engine in memory.
"""

from __future__ import annotations

import time
from pathlib import Path

from gitops.config import Config
from gitops.gpu import DeclaredInventory
from gitops.reconcile.reconciler import Reconciler
from tests.builders import TEST_IMAGE, deployment
from tests.fakes import FakeRuntime
from tests.helpers import Repo

REFUSE = """#!/bin/sh
# Status pushes fail while the flag file exists, as when Git is slow or unreachable at start-up.
[ -e "$GIT_DIR/refuse-status" ] && exit 1
exit 0
"""


def test_settling_starts_with_the_first_published_record(repo: Repo, tmp_path: Path) -> None:
    hook = repo.path / ".git" / "hooks" / "pre-receive"
    hook.write_text(REFUSE)
    hook.chmod(0o755)
    flag = repo.path / ".git" / "refuse-status"
    flag.touch()
    repo.put("apps/web.yaml", deployment("web", 2, image=TEST_IMAGE))
    runtime = FakeRuntime(images={TEST_IMAGE})
    cfg = Config(repo=str(repo.path), node="n1", state_dir=tmp_path / "state", settle_seconds=0.5)
    rec = Reconciler(cfg, DeclaredInventory([]), runtime=runtime)
    try:
        # Longer than the settle time has passed since start, but nothing was ever published.
        time.sleep(0.6)
        report = rec.run_pass()
        assert not report.pushed and not runtime.requests
        assert report.plan.waiting and all("membership" in why for _, why in report.plan.waiting.values())
        flag.unlink()
        assert rec.run_pass().pushed and not runtime.requests, "settling had not begun before the first publish"
        time.sleep(0.6)
        rec.run_pass()
        assert len(runtime.requests) == 2
    finally:
        rec.close()
