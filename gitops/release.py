"""``gitops volume release``: record in the repository that a node's volume of a claim no longer pins its users.

The release is a ``gitops/v1 VolumeRelease`` document committed to the tracked branch, so every
node reads the same decision at the same revision: placement stops pinning the claim's users
to that node and, with the existing fencing rules, starts them elsewhere.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import yaml

from gitops.config import Config
from gitops.manifests import names

RELEASES_DIR = "volume-releases"


class ReleaseError(Exception):
    """The release could not be recorded; the message says why."""


def release_path(namespace: str, claim: str) -> str:
    """Where the command writes a claim's VolumeRelease, relative to the manifests' root."""
    return f"{RELEASES_DIR}/{namespace}.{claim}.yaml"


def release_document(namespace: str, claim: str, nodes: list[str]) -> str:
    """The VolumeRelease document releasing ``claim``'s volumes on ``nodes``."""
    doc = {
        "apiVersion": "gitops/v1",
        "kind": "VolumeRelease",
        "metadata": {"name": claim, "namespace": namespace},
        "spec": {"nodes": sorted(set(nodes))},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def parse_claim(text: str) -> tuple[str, str]:
    """``namespace/name`` or ``name`` (namespace ``default``); ValueError if either is no DNS label."""
    namespace, _, name = text.rpartition("/")
    namespace = namespace or "default"
    names.dns_label(namespace)
    names.dns_label(name)
    return namespace, name


def release(cfg: Config, claim: str, node: str) -> str:
    """Commit and push a VolumeRelease of ``claim`` (``namespace/name``) on ``node``; return the commit."""
    namespace, name = parse_claim(claim)
    with tempfile.TemporaryDirectory(prefix="gitops-release-") as tmp:
        work = Path(tmp)
        _git(work, "clone", "-q", "--branch", cfg.branch, cfg.repo, str(work / "repo"))
        repo = work / "repo"
        rel = str(Path(cfg.path) / release_path(namespace, name)) if cfg.path else release_path(namespace, name)
        target = repo / rel
        nodes = [node]
        if target.exists():
            old = yaml.safe_load(target.read_text()) or {}
            nodes += list(old.get("spec", {}).get("nodes", []))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(release_document(namespace, name, nodes))
        _git(repo, "add", rel)
        if not _git(repo, "status", "--porcelain"):
            raise ReleaseError(f"{namespace}/{name} is already released on {node} ({rel})")
        _git(repo, "commit", "-q", "-m", f"Release volume of PersistentVolumeClaim {namespace}/{name} on {node}")
        _git(repo, "push", "-q", "origin", f"HEAD:{cfg.branch}")
        return _git(repo, "rev-parse", "HEAD").strip()


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=120)
    except subprocess.CalledProcessError as e:
        raise ReleaseError(f"git {args[0]} failed: {e.stderr.strip()}") from e
    except subprocess.TimeoutExpired as e:
        raise ReleaseError(f"git {args[0]} timed out") from e
    return done.stdout
