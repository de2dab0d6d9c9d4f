"""The Git adapter: a bare mirror in the state directory, driven by the git CLI.

Git runs as short-lived subprocesses (never a long-lived GitPython ``Repo``) so a
daemon that makes thousands of passes leaks neither processes nor file handles.
What the repository holds is untrusted input: paths are matched literally, a blob's
size is known before it is read, and nothing fetched into the mirror can configure git.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gitops.status import STATUS_MAX_BYTES

log = logging.getLogger(__name__)

HEAD_REF = "refs/gitops/head"
STATUS_PREFIX = "refs/gitops/status/"
STATUS_BRANCH_PREFIX = "refs/heads/gitops/status/"

# The shortest time a git command is given, whatever timeout is configured or derived from
# the repository's Cluster settings: below it a fetch over a slow link could never finish.
GIT_TIMEOUT_FLOOR_S = 3.0
# A lock file older than this many git timeouts cannot belong to a git command still running.
STALE_LOCK_TIMEOUTS = 2
# Compaction is considered after this many fetches and pushes, or this long after the last time,
# and runs when the mirror holds this many loose objects (each takes a file and a disk block).
COMPACT_EVERY_WRITES = 256
COMPACT_EVERY_S = 600.0
COMPACT_LOOSE_OBJECTS = 1000

# Given to every command. Command-line settings outrank every config file, so neither the
# mirror's config nor anything fetched into the mirror can turn these back on.
_PINNED_CONFIG = (
    "core.hooksPath=/dev/null",  # no hook runs, whatever is written into the mirror
    "gc.auto=0",  # fetch and push never leave a detached gc running; compact() decides
    "maintenance.auto=false",
)
# Unreachable objects (cut status history, force-pushed branches) go into a cruft pack instead
# of staying loose; the grace period spares objects a concurrent command (``gitops plan`` on
# the same state directory) has written but not yet referenced.
_COMPACT_CONFIG = ("gc.cruftPacks=true", "gc.pruneExpire=1.hour.ago")
# What git says when a lock file is in its way: ref, packed-refs and shallow locks, then config.
_LOCKED = re.compile(r"\.lock': File exists|could not lock config file .*: File exists")


class GitError(Exception):
    """A git command failed; fetch/push failures are temporary and retried."""


@dataclass(frozen=True)
class TreeEntry:
    """A file at a revision: its path (relative to the manifests path) and blob id."""

    path: str
    blob: str


@dataclass(frozen=True)
class TooLarge:
    """A blob left unread because it is bigger than the reader's limit."""

    size: int
    limit: int

    def __str__(self) -> str:
        return f"file is {self.size} bytes, over the {self.limit}-byte limit; not read"


def normalise_url(url: str) -> str:
    """Turn a local path into an absolute one so the mirror finds it from any cwd."""
    if "://" in url or (":" in url and not url.startswith("/") and "@" in url.split(":")[0]):
        return url
    return str(Path(url).expanduser().resolve())


def _failure(stderr: bytes, returncode: int) -> str:
    # git ends some errors with advice (a lock file's "remove the file manually"): report the error.
    lines = stderr.decode(errors="replace").strip().splitlines()
    errors = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (errors or lines or [f"exit {returncode}"])[-1]


class GitSource:
    """One tracked branch of one repository, mirrored under ``state_dir``."""

    def __init__(
        self,
        url: str,
        branch: str,
        subpath: str,
        state_dir: Path,
        timeout: float = 60.0,
        status_key: Path | None = None,
    ):
        self.url = normalise_url(url)
        # SSH private key that signs this node's status commits (docs/security.md); None: unsigned.
        self.status_key = status_key
        self.branch = branch
        self.subpath = subpath.strip("/")
        self.mirror = state_dir / "mirror.git"
        self.timeout = timeout
        self._env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=10"),
            "LC_ALL": "C",
            # A file named 'apps/*.yaml' or ':(glob)x' is that one file, never a pattern.
            "GIT_LITERAL_PATHSPECS": "1",
            # An object id reads the object it names; refs/replace/ cannot swap in other content.
            "GIT_NO_REPLACE_OBJECTS": "1",
        }
        self._writes = 0
        self._status_tips: dict[str, tuple[str, int]] = {}
        self._compact_checked = time.monotonic()
        # A daemon killed mid-fetch or mid-push leaves its lock files behind.
        self._clear_stale_locks()

    @property
    def timeout(self) -> float:
        """Seconds one git command may run; never below GIT_TIMEOUT_FLOOR_S."""
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        # The floor goes first: max() then keeps it when ``seconds`` is NaN.
        self._timeout = max(GIT_TIMEOUT_FLOOR_S, seconds)

    def git(
        self,
        *args: str,
        stdin: bytes | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
        config: Sequence[str] = (),
    ) -> bytes:
        """Run git in the mirror and return stdout; if stale lock files stop it, remove them and retry once."""
        proc = self._run(args, stdin, env, config)
        if proc.returncode and _LOCKED.search(proc.stderr.decode(errors="replace")) and self._clear_stale_locks():
            proc = self._run(args, stdin, env, config)
        if check and proc.returncode:
            raise GitError(f"git {args[0]}: {_failure(proc.stderr, proc.returncode)}")
        return proc.stdout

    def _run(
        self, args: Sequence[str], stdin: bytes | None, env: dict[str, str] | None, config: Sequence[str]
    ) -> subprocess.CompletedProcess[bytes]:
        settings = [arg for setting in (*_PINNED_CONFIG, *config) for arg in ("-c", setting)]
        try:
            return subprocess.run(
                ["git", "--git-dir", str(self.mirror), *settings, *args],
                input=stdin,
                capture_output=True,
                env={**self._env, **(env or {})},
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise GitError(f"git {args[0]} timed out after {self.timeout:.0f}s") from e

    def _clear_stale_locks(self) -> bool:
        """Remove the mirror's lock files too old to have a live owner; True if there were any."""
        cutoff = time.time() - STALE_LOCK_TIMEOUTS * self.timeout
        removed: list[str] = []
        for parent, _, names in os.walk(self.mirror):
            for name in names:
                path = Path(parent, name)
                try:
                    if name.endswith(".lock") and path.lstat().st_mtime < cutoff:
                        path.unlink()
                        removed.append(str(path.relative_to(self.mirror)))
                except FileNotFoundError:  # its owner finished after all
                    continue
        if removed:
            log.warning("removed stale git lock files from the mirror: %s", ", ".join(sorted(removed)))
        return bool(removed)

    def ensure_mirror(self) -> None:
        """Create the bare mirror and point it at the configured URL."""
        if not (self.mirror / "HEAD").exists():
            self.mirror.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.mirror.mkdir(mode=0o700, exist_ok=True)
            self.git("init", "-q", "--bare", "--template=")  # no template: not even sample hooks
        # The URL may carry credentials (https://user:token@...): the mirror, and its config where
        # git keeps remote.origin.url, are private to the daemon's user, also in a mirror made
        # before this was so, and whatever the umask.
        self.mirror.chmod(0o700)
        self.git("config", "remote.origin.url", self.url)
        (self.mirror / "config").chmod(0o600)

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
            "--no-recurse-submodules",  # the repository's .gitmodules names no URL we contact
            "origin",
            f"+refs/heads/{self.branch}:{HEAD_REF}",
            f"+{STATUS_BRANCH_PREFIX}*:{STATUS_PREFIX}*",
        )
        self._writes += 1
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

    def read_blobs(self, specs: Iterable[str], max_bytes: int) -> dict[str, bytes | TooLarge]:
        """Blobs (by id or ``rev:path``) up to ``max_bytes`` each; bigger ones are sized, never read.

        Specs that name nothing, or something other than a blob, are left out.
        """
        wanted = list(dict.fromkeys(specs))
        if not wanted:
            return {}
        check = self.git("cat-file", "--batch-check", stdin=("\n".join(wanted) + "\n").encode())
        out: dict[str, bytes | TooLarge] = {}
        small: dict[str, str] = {}
        for spec, line in zip(wanted, check.decode(errors="replace").splitlines(), strict=True):
            header = line.split()
            if len(header) != 3 or header[1] != "blob":  # "<spec> missing", or a tree or commit
                continue
            size = int(header[2])
            if size > max_bytes:
                out[spec] = TooLarge(size, max_bytes)
            else:
                small[spec] = header[0]
        if small:
            ids = list(dict.fromkeys(small.values()))
            raw = self.git("cat-file", "--batch", stdin=("\n".join(ids) + "\n").encode())
            contents: dict[str, bytes] = {}
            pos = 0
            for oid in ids:
                nl = raw.index(b"\n", pos)
                fields, pos = raw[pos:nl].split(), nl + 1
                if len(fields) == 3:  # else "<oid> missing": pruned since the size check, by someone else
                    size = int(fields[2])
                    contents[oid] = raw[pos : pos + size]
                    pos += size + 1
            out.update({spec: contents[oid] for spec, oid in small.items() if oid in contents})
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

    # Status branches -------------------------------------------------------------------------

    def status_heads(self) -> dict[str, str]:
        """node name -> commit of its fetched ``gitops/status/<node>`` branch."""
        out = self.git("for-each-ref", "--format=%(objectname) %(refname)", STATUS_PREFIX).decode()
        heads: dict[str, str] = {}
        for line in out.splitlines():
            sha, ref = line.split(" ", 1)
            heads[ref[len(STATUS_PREFIX) :]] = sha
        return heads

    def read_status_files(self, heads: dict[str, str]) -> dict[str, bytes | str]:
        """node name -> its ``status.yaml`` bytes, read in one batch; an oversized one -> why it was not read."""
        specs = {node: f"{sha}:status.yaml" for node, sha in heads.items()}
        raw = self.read_blobs(specs.values(), STATUS_MAX_BYTES)
        out: dict[str, bytes | str] = {}
        for node, spec in specs.items():
            got = raw.get(spec)
            if got is not None:
                out[node] = f"status.yaml {got}" if isinstance(got, TooLarge) else got
        return out

    def push_status(self, node: str, content: bytes, message: str, max_history: int) -> str:
        """Commit ``status.yaml`` onto this node's status branch and push it; return the commit.

        The node is the branch's only writer, so a forced push never loses anyone else's
        work; history is cut to a fresh root once it grows past ``max_history``. With a
        ``status_key`` the commit is signed with it (SSH), for peers to verify.
        """
        if len(content) > STATUS_MAX_BYTES:
            log.warning(
                "status.yaml is %d bytes, over the %d peers read: they will ignore it", len(content), STATUS_MAX_BYTES
            )
        ref = STATUS_PREFIX + node
        # Our last pushed commit and its history length, kept: two git processes less per heartbeat.
        parent, depth = self._status_tips.get(node) or self._status_tip(ref, max_history)
        if depth >= max_history:
            parent, depth = "", 0
        blob = self.git("hash-object", "-w", "--stdin", stdin=content).decode().strip()
        tree = self.git("mktree", stdin=f"100644 blob {blob}\tstatus.yaml\n".encode()).decode().strip()
        args = ["commit-tree", tree, "-m", message]
        if parent:
            args += ["-p", parent]
        sign: tuple[str, ...] = ()
        if self.status_key is not None:
            args.insert(1, "-S")
            sign = ("gpg.format=ssh", "gpg.ssh.program=ssh-keygen", f"user.signingkey={self.status_key}")
        who, mail = f"gitops {node}", f"{node}@gitops.invalid"
        ident = {
            "GIT_AUTHOR_NAME": who,
            "GIT_AUTHOR_EMAIL": mail,
            "GIT_COMMITTER_NAME": who,
            "GIT_COMMITTER_EMAIL": mail,
        }
        commit = self.git(*args, env=ident, config=sign).decode().strip()
        self.git(
            "push", "--quiet", "--force", "--no-recurse-submodules", "origin", f"{commit}:{STATUS_BRANCH_PREFIX}{node}"
        )
        self.git("update-ref", ref, commit)
        self._status_tips[node] = (commit, depth + 1)
        self._writes += 1
        # After the push: the heartbeat is out before compaction spends any time.
        if self._writes >= COMPACT_EVERY_WRITES or time.monotonic() - self._compact_checked >= COMPACT_EVERY_S:
            self.compact()
        return commit

    def _status_tip(self, ref: str, max_history: int) -> tuple[str, int]:
        """A status branch's commit in the mirror and how many commits its history holds (up to the bound + 1)."""
        tip = self.git("rev-parse", "--verify", "--quiet", ref, check=False).decode().strip()
        if not tip:
            return "", 0
        return tip, int(self.git("rev-list", "--count", f"--max-count={max_history + 1}", tip).decode())

    def compact(self) -> bool:
        """Garbage-collect the mirror if it holds COMPACT_LOOSE_OBJECTS loose objects; True if it did."""
        self._writes, self._compact_checked = 0, time.monotonic()
        try:
            if self.loose_objects() < COMPACT_LOOSE_OBJECTS:
                return False
            self.git("gc", "--quiet", config=_COMPACT_CONFIG)
        except GitError as e:
            log.warning("git mirror not compacted, will try again later: %s", e)
            return False
        return True

    def loose_objects(self) -> int:
        """How many loose objects the mirror holds."""
        stats = self.git("count-objects", "-v").decode().splitlines()
        return next(int(line.split()[1]) for line in stats if line.startswith("count:"))
