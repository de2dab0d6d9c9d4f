"""The Git adapter: a bare mirror in the state directory, driven by the git CLI.

Git runs as short-lived subprocesses (never a long-lived GitPython ``Repo``) so a
daemon that makes thousands of passes leaks neither processes nor file handles.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

HEAD_REF = "refs/gitops/head"
STATUS_PREFIX = "refs/gitops/status/"
STATUS_BRANCH_PREFIX = "refs/heads/gitops/status/"


class GitError(Exception):
    """A git command failed; fetch/push failures are temporary and retried."""


@dataclass(frozen=True)
class TreeEntry:
    """A file at a revision: its path (relative to the manifests path) and blob id."""

    path: str
    blob: str


def normalise_url(url: str) -> str:
    """Turn a local path into an absolute one so the mirror finds it from any cwd."""
    if "://" in url or (":" in url and not url.startswith("/") and "@" in url.split(":")[0]):
        return url
    return str(Path(url).expanduser().resolve())


class GitSource:
    """One tracked branch of one repository, mirrored under ``state_dir``."""

    def __init__(self, url: str, branch: str, subpath: str, state_dir: Path, timeout: float = 60.0):
        self.url = normalise_url(url)
        self.branch = branch
        self.subpath = subpath.strip("/")
        self.mirror = state_dir / "mirror.git"
        self.timeout = timeout
        self._env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=10"),
            "LC_ALL": "C",
        }

    def git(
        self, *args: str, stdin: bytes | None = None, check: bool = True, env: dict[str, str] | None = None
    ) -> bytes:
        """Run git in the mirror and return stdout."""
        try:
            proc = subprocess.run(
                ["git", "--git-dir", str(self.mirror), *args],
                input=stdin,
                capture_output=True,
                env={**self._env, **(env or {})},
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise GitError(f"git {args[0]} timed out after {self.timeout:.0f}s") from e
        if check and proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip().splitlines()
            raise GitError(f"git {args[0]}: {msg[-1] if msg else 'exit ' + str(proc.returncode)}")
        return proc.stdout

    def ensure_mirror(self) -> None:
        """Create the bare mirror and point it at the configured URL."""
        if not (self.mirror / "HEAD").exists():
            self.mirror.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["git", "init", "-q", "--bare", str(self.mirror)],
                check=True,
                capture_output=True,
                env=self._env,
            )
            self.git("config", "gc.auto", "0")
        self.git("config", "remote.origin.url", self.url)

    def fetch(self) -> str:
        """Fetch the tracked branch and all status branches; return the head commit.

        Refspecs are forced so force-pushes and rewritten history simply converge.
        """
        self.ensure_mirror()
        self.git(
            "fetch",
            "--quiet",
            "--no-tags",
            "--prune",
            "--force",
            "--no-write-fetch-head",
            "origin",
            f"+refs/heads/{self.branch}:{HEAD_REF}",
            f"+{STATUS_BRANCH_PREFIX}*:{STATUS_PREFIX}*",
        )
        return self.head()

    def head(self) -> str:
        """The last fetched head commit (works offline)."""
        return self.git("rev-parse", "--verify", "--quiet", HEAD_REF + "^{commit}").decode().strip()

    def has_head(self) -> bool:
        """Whether any revision was ever fetched."""
        return (self.mirror / "HEAD").exists() and bool(
            self.git("rev-parse", "--verify", "--quiet", HEAD_REF, check=False).strip()
        )

    def list_files(self, rev: str) -> list[TreeEntry]:
        """Every blob under the manifests path at ``rev``, path relative to that path."""
        args = ["ls-tree", "-r", "-z", "--full-tree", rev]
        if self.subpath:
            args += ["--", self.subpath + "/"]
        out: list[TreeEntry] = []
        prefix = self.subpath + "/" if self.subpath else ""
        for rec in self.git(*args).split(b"\0"):
            if not rec:
                continue
            meta, path = rec.split(b"\t", 1)
            mode, kind, blob = meta.decode().split()
            if kind == "blob" and mode != "120000":  # symlinks could point outside the repo
                out.append(TreeEntry(path.decode(errors="replace")[len(prefix) :], blob))
        return out

    def read_blobs(self, specs: Iterable[str]) -> dict[str, bytes]:
        """Contents of several objects (blob ids or ``rev:path``) in one ``cat-file --batch``."""
        wanted = list(dict.fromkeys(specs))
        if not wanted:
            return {}
        raw = self.git("cat-file", "--batch", stdin=("\n".join(wanted) + "\n").encode())
        out: dict[str, bytes] = {}
        pos = 0
        for spec in wanted:
            nl = raw.index(b"\n", pos)
            header = raw[pos:nl].decode(errors="replace").split()
            pos = nl + 1
            if len(header) < 3 or header[-1] == "missing":
                continue
            size = int(header[2])
            out[spec] = raw[pos : pos + size]
            pos += size + 1
        return out

    def path_history(self, rev: str, path: str, limit: int) -> list[str]:
        """Blob ids an earlier commit gave ``path`` (newest first, excluding ``rev``'s own)."""
        full = f"{self.subpath}/{path}" if self.subpath else path
        out = self.git(
            "log", "--format=", "--raw", "--no-abbrev", "--no-renames", f"-n{limit}", rev, "--", full
        ).decode()
        blobs: list[str] = []
        for line in out.splitlines():
            parts = line.split()
            # ":100644 100644 <old> <new> M\tpath": the old side is the version before each change.
            if line.startswith(":") and len(parts) >= 4 and set(parts[2]) != {"0"}:
                blobs.append(parts[2])
        return list(dict.fromkeys(blobs))

    def is_ancestor(self, older: str, newer: str) -> bool:
        """Whether ``older`` is reachable from ``newer``."""
        try:
            self.git("merge-base", "--is-ancestor", older, newer)
        except GitError:
            return False
        return True

    # Status branches -------------------------------------------------------------------------

    def status_heads(self) -> dict[str, str]:
        """node name -> commit of its fetched ``gitops/status/<node>`` branch."""
        out = self.git("for-each-ref", "--format=%(objectname) %(refname)", STATUS_PREFIX).decode()
        heads: dict[str, str] = {}
        for line in out.splitlines():
            sha, ref = line.split(" ", 1)
            heads[ref[len(STATUS_PREFIX) :]] = sha
        return heads

    def read_status_files(self, heads: dict[str, str]) -> dict[str, bytes]:
        """node name -> its ``status.yaml`` bytes, read in one batch."""
        raw = self.read_blobs(f"{sha}:status.yaml" for sha in heads.values())
        return {n: raw[f"{sha}:status.yaml"] for n, sha in heads.items() if f"{sha}:status.yaml" in raw}

    def push_status(self, node: str, content: bytes, message: str, max_history: int) -> str:
        """Commit ``status.yaml`` onto this node's status branch and push it; return the commit.

        The node is the branch's only writer, so a forced push never loses anyone else's
        work; history is cut to a fresh root once it grows past ``max_history``.
        """
        ref = STATUS_PREFIX + node
        parent = self.git("rev-parse", "--verify", "--quiet", ref, check=False).decode().strip()
        if parent:
            depth = int(self.git("rev-list", "--count", f"--max-count={max_history + 1}", parent).decode())
            if depth >= max_history:
                parent = ""
        blob = self.git("hash-object", "-w", "--stdin", stdin=content).decode().strip()
        tree = self.git("mktree", stdin=f"100644 blob {blob}\tstatus.yaml\n".encode()).decode().strip()
        args = ["commit-tree", tree, "-m", message]
        if parent:
            args += ["-p", parent]
        who, mail = f"gitops {node}", f"{node}@gitops.invalid"
        ident = {
            "GIT_AUTHOR_NAME": who,
            "GIT_AUTHOR_EMAIL": mail,
            "GIT_COMMITTER_NAME": who,
            "GIT_COMMITTER_EMAIL": mail,
        }
        commit = self.git(*args, env=ident).decode().strip()
        self.git("push", "--quiet", "--force", "origin", f"{commit}:{STATUS_BRANCH_PREFIX}{node}")
        self.git("update-ref", ref, commit)
        return commit
