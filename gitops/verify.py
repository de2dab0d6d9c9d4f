"""Commit verification: only commits signed by keys this node trusts are applied.

Trust is node-local (``verify:`` in the node config), never read from the repository. Git
checks the signatures itself (``%G?``, ``%GS``, ``%GK`` of ``git log``): SSH signatures against
an OpenSSH allowed-signers file, OpenPGP signatures against a keyring imported into a private
GNUPGHOME under the state directory (never the user's). Only ``G`` (good signature by a trusted
key) passes; every key in the configured keyring is trusted, a key outside it is not.

The last verified revision is kept as a ref in the node's own mirror (``refs/gitops/verified``):
it survives restarts, pins that revision's objects so the node can keep applying it, and nothing
fetched can move it (fetches write only ``refs/gitops/head`` and the status refs). The node's
status branch is no substitute: anyone who can push to the repository can write it.

With team namespaces (``verify.namespaces``) each commit's change is attributed to the scopes
(namespaces, and the cluster-wide Cluster document) whose documents it changes; a scope changed
by a signer without authority over it is held at its last authorised revision while the others
move on. Held scopes are kept as refs ``refs/gitops/held/...`` in the mirror (which also pins
their objects), with the reasons beside them in ``<state_dir>/verify-held.json``.

``StatusSignatures`` checks peers' status commits the same way (``status_signing:``): each must
carry a good SSH signature whose principal is the node named by its branch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gitops.config import VerifyConfig
from gitops.desired import MAX_MANIFEST_BYTES
from gitops.manifests.load import is_manifest_path
from gitops.manifests.scopes import CLUSTER_SCOPE, FileScopes, changed_scopes, file_scopes
from gitops.source import GitError, GitSource, TooLarge

log = logging.getLogger(__name__)

VERIFIED_REF = "refs/gitops/verified"
HELD_PREFIX = "refs/gitops/held/"
HELD_FILE = "verify-held.json"
GNUPG_DIR = "verify-gnupg"
_NO_BLOB = "0" * 40
# Blob scopes remembered across passes; cleared past this (they are cheap to recompute).
_MAX_CACHED_BLOBS = 20_000

# What git's %G? letters mean; only G is accepted.
_WHY = {
    "B": "bad signature",
    "U": "signed by a key not trusted here",
    "X": "good signature that has expired",
    "Y": "signed by an expired key",
    "R": "signed by a revoked key",
    "E": "signature cannot be checked (key not trusted here)",
    "N": "not signed",
}
_FORMAT = "%H%x1f%G?%x1f%GS%x1f%GK%x1e"


@dataclass(frozen=True)
class CommitCheck:
    """What git says about one commit's signature."""

    sha: str
    code: str  # git's %G? letter
    signer: str  # %GS: principal (SSH) or user id (OpenPGP); '' when none is trusted
    key: str  # %GK: key fingerprint or id, '' when unsigned

    @property
    def ok(self) -> bool:
        """True for a good signature by a trusted key."""
        return self.code == "G"

    @property
    def why(self) -> str:
        """Why the commit is refused, in words."""
        return _WHY.get(self.code, f"signature status {self.code!r}")


@dataclass(frozen=True)
class Hold:
    """A scope kept at an older revision: the commit that changed it without authority, and why."""

    revision: str
    commit: str = ""
    signer: str = ""
    why: str = "held (reason not recorded)"


@dataclass(frozen=True)
class Change:
    """One commit's change (under head: the whole range's), attributed to the scopes it changes."""

    check: CommitCheck
    before: str  # the revision the change is measured from; '' for a root commit
    scopes: frozenset[str]


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying a fetched tip."""

    tip: str
    refused: tuple[CommitCheck, ...] = ()
    problem: str = ""  # a configuration problem that refuses everything
    checked: int = 0
    # Team namespaces: scopes that run an older revision than the tip.
    held: Mapping[str, Hold] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the tip may be applied."""
        return not self.refused and not self.problem

    def message(self, keeping: str | None) -> str:
        """One status/log line naming the offending commit, its signer and why."""
        keep = f"keeping verified revision {keeping[:12]}" if keeping else "no verified revision to keep"
        if self.problem:
            return f"commit verification refused {self.tip[:12]}: {self.problem}; {keep}"
        first = self.refused[-1]  # git log lists newest first: the oldest offender
        more = f" (and {len(self.refused) - 1} more unverified commit(s))" if len(self.refused) > 1 else ""
        signer = first.signer or "none"
        key = f", key {first.key}" if first.key else ""
        return (
            f"commit verification refused {self.tip[:12]}: commit {first.sha} {first.why}"
            f" (signer {signer}{key}){more}; {keep}"
        )


class TeamRules:
    """Who may change which scope (``verify.namespaces``); pure."""

    def __init__(self, namespaces: Mapping[str, Sequence[str]]):
        self.principals = {ns: frozenset(p) for ns, p in namespaces.items()}
        self.restricted = frozenset().union(*self.principals.values())

    def refusal(self, scope: str, check: CommitCheck) -> str | None:
        """Why ``check``'s commit may not change ``scope``, or None when it may."""
        if not check.ok:
            return check.why
        names = _names(check.signer)
        if scope == CLUSTER_SCOPE:
            if names & self.restricted:
                return f"{check.signer} is restricted to namespaces; the Cluster document needs another signer"
            return None
        allowed = self.principals.get(scope)
        if allowed is None or names & allowed:
            return None
        return f"{check.signer} may not change namespace {scope} (allowed: {', '.join(sorted(allowed))})"


def walk(changes: Iterable[Change], rules: TeamRules, held: Mapping[str, Hold]) -> dict[str, Hold]:
    """The scopes held after ``changes`` (oldest first), starting from ``held``.

    A scope changed without authority stays at the revision before that change, however it
    changes after, until a commit with authority over it changes it again.
    """
    out = dict(held)
    for change in changes:
        for scope in sorted(change.scopes):
            why = rules.refusal(scope, change.check)
            if why is None:
                out.pop(scope, None)
            elif scope not in out:
                c = change.check
                out[scope] = Hold(change.before, c.sha, c.signer, why)
    return out


def _names(signer: str) -> frozenset[str]:
    # An OpenPGP user id "Alice <alice@example.com>" matches by the whole id or its email.
    email = signer.rpartition("<")[2].rstrip(">") if signer.endswith(">") else signer
    return frozenset({signer, email})


class Verifier:
    """Checks fetched tips against the node's trusted keys and remembers the last verified one."""

    def __init__(self, settings: VerifyConfig, source: GitSource, state_dir: Path):
        self.settings = settings
        self.source = source
        self.gnupg_home = state_dir / GNUPG_DIR
        self.held_file = state_dir / HELD_FILE
        self.rules = TeamRules(settings.namespaces) if settings.namespaces else None
        self._keyring_digest: str | None = None
        self._cache: tuple[tuple[object, ...], Verdict] | None = None
        self._last: str | None = None
        self._held: dict[str, Hold] | None = None
        self._blob_scopes: dict[str, FileScopes] = {}

    def last_verified(self) -> str | None:
        """The last revision that passed verification on this node, if any (read from the mirror once)."""
        if self._last is None and (self.source.mirror / "HEAD").exists():
            out = self.source.git("rev-parse", "--verify", "--quiet", VERIFIED_REF + "^{commit}", check=False)
            self._last = out.decode().strip() or None
        return self._last

    def check(self, tip: str) -> Verdict:
        """Verify ``tip`` (mode head) or every commit since the last verified one (mode all).

        An accepted tip becomes the last verified revision. The last answer is reused while the
        tip, the last verified revision and the trust files are unchanged.
        """
        last = self.last_verified()
        stamp = (tip, last, _stamp(self.settings.allowed_signers), _stamp(self.settings.gpg_keyring))
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        verdict = self._check(tip, last)
        if verdict.ok and (tip != last or verdict.held != self.held()):
            self._remember(tip, verdict.held)
        self._cache = (stamp, verdict)
        return verdict

    def held(self) -> dict[str, Hold]:
        """Scopes held at an older revision (team namespaces), read from the mirror once.

        The refs say which scopes are held and where; the file only adds why. A ref without an
        entry in the file stays held (fail closed), with the reason unknown.
        """
        if self._held is None:
            self._held = {}
            if (self.source.mirror / "HEAD").exists():
                out = self.source.git("for-each-ref", "--format=%(objectname) %(refname)", HELD_PREFIX).decode()
                refs = {_scope_of_ref(ref): sha for sha, ref in (line.split(" ", 1) for line in out.splitlines())}
                reasons = self._read_reasons()
                for scope, sha in refs.items():
                    why = reasons.get(scope)
                    self._held[scope] = why if why is not None and why.revision == sha else Hold(sha)
        return dict(self._held)

    def _read_reasons(self) -> dict[str, Hold]:
        try:
            data = json.loads(self.held_file.read_text())
            return {scope: Hold(**fields) for scope, fields in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.warning(
                "commit verification: %s unreadable (%s); held namespaces kept without reasons", self.held_file, e
            )
            return {}

    def _remember(self, tip: str, held: Mapping[str, Hold]) -> None:
        """Record ``tip`` as verified and ``held`` as the held scopes, refs in one transaction."""
        # Reasons first: a crash before the refs move leaves the old refs, whose entries are re-derived.
        tmp = self.held_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({s: h.__dict__ for s, h in sorted(held.items())}, indent=1))
        os.replace(tmp, self.held_file)
        lines = [f"update {VERIFIED_REF} {tip}"]
        lines += [f"update {_held_ref(scope)} {hold.revision}" for scope, hold in sorted(held.items())]
        lines += [f"delete {_held_ref(scope)}" for scope in sorted(self.held().keys() - held.keys())]
        self.source.git("update-ref", "--stdin", stdin=("\n".join(lines) + "\n").encode())
        self._last = tip
        self._held = dict(held)

    def _check(self, tip: str, last: str | None) -> Verdict:
        signers = self.settings.allowed_signers
        if signers is not None and not signers.is_file():
            return Verdict(tip, problem=f"allowed_signers {signers} is not a readable file")
        try:
            self._prepare_gnupg()
        except (OSError, subprocess.SubprocessError, GitError) as e:
            return Verdict(tip, problem=f"cannot import gpg_keyring: {e}")
        walked = self.settings.mode == "all" and last is not None
        if self.settings.mode == "all" and last is not None:
            # Every commit the tip brings that the last verified revision does not hold; the tip
            # itself always, even when it is an older revision (a force-push back).
            cap = self.settings.max_commits
            checks = self._log(f"--max-count={cap + 1}", "^" + last, tip)
            if len(checks) > cap:
                return Verdict(tip, problem=_too_many(cap, last))
            if tip not in {c.sha for c in checks}:
                checks = self._log("--no-walk", tip) + checks
        else:  # mode head, or mode all on first start: the tip alone
            checks = self._log("--no-walk", tip)
        if tip not in {c.sha for c in checks}:  # fail closed: the tip is always checked
            return Verdict(tip, problem="git reported no signature status for the tip")
        if self.rules is None or (last is None and not checks[0].ok):
            # Without namespaces any refused commit refuses the tip; so does an untrusted first tip.
            return Verdict(tip, refused=tuple(c for c in checks if not c.ok), checked=len(checks))
        return self._check_scopes(tip, last, checks, walked)

    def _check_scopes(self, tip: str, last: str | None, checks: list[CommitCheck], walked: bool) -> Verdict:
        """Team namespaces: hold each scope a commit changes without authority over it."""
        assert self.rules is not None
        by_sha = {c.sha: c for c in checks}
        commits = self._range(last, tip) if walked and last is not None else {}
        if tip in commits:
            # Oldest first, each commit against its own parents.
            pairs = [(by_sha[sha], parents) for sha, parents in commits.items()]
        else:
            # The tip's change as a whole: under head since the last verified revision (head trusts
            # the tip's signer for everything in between), on first start or a force-push back its own.
            pairs = [(by_sha[tip], [last] if last is not None else self._parents(tip))]
        changes = self._changes(pairs)
        held = walk(changes, self.rules, self.held())
        rootless = next((h for h in held.values() if not h.revision), None)
        if rootless is not None:
            why = f"commit {rootless.commit} has no parent to keep {rootless.why!r} from"
            return Verdict(tip, problem=why, checked=len(checks))
        return Verdict(tip, checked=len(checks), held=held)

    def _range(self, last: str, tip: str) -> dict[str, list[str]]:
        """Commits in ``last..tip``, oldest first, with their parents (bounded by max_commits)."""
        cap = self.settings.max_commits
        out = self.source.git(
            "rev-list", "--reverse", "--topo-order", "--parents", f"--max-count={cap + 1}", "^" + last, tip
        ).decode()
        rows = [line.split() for line in out.splitlines() if line]
        return {row[0]: row[1:] for row in rows}

    def _parents(self, sha: str) -> list[str]:
        return self.source.git("rev-list", "--parents", "--max-count=1", sha).decode().split()[1:]

    def _changes(self, pairs: Sequence[tuple[CommitCheck, Sequence[str]]]) -> list[Change]:
        """Each commit's changed scopes: against each base, only what differs from all (a merge's own)."""
        lines = [f"{c.sha} {base}" for c, bases in pairs for base in bases] + [c.sha for c, bases in pairs if not bases]
        groups = self._diff(lines)
        self._learn({b for files in groups.values() for pair in files for b in pair if b != _NO_BLOB})
        changes: list[Change] = []
        for check, bases in pairs:
            if not bases:
                changes.append(Change(check, "", self._scopes(groups.get((check.sha, ""), []))))
                continue
            sets = [self._scopes(groups.get((check.sha, base), [])) for base in bases]
            changes.append(Change(check, bases[0], frozenset.intersection(*sets)))
        return changes

    def _diff(self, lines: list[str]) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """(commit, base) -> (old blob, new blob) of each manifest file that differs."""
        raw = self.source.git(
            "diff-tree",
            "--stdin",
            "--always",
            "--root",
            "-r",
            "-z",
            "--no-renames",
            stdin=("\n".join(lines) + "\n").encode(),
        )
        tokens = raw.decode(errors="replace").split("\0")
        groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
        keys = iter([*line.split(), ""][:2] for line in lines)
        current: list[tuple[str, str]] = []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token.startswith(":"):
                meta, path = token[1:].split(), self._relative(tokens[i + 1])
                i += 2
                if path is not None:
                    # Symlinks and submodules are not manifests (the loader skips them): absent.
                    old = meta[2] if meta[0] not in ("120000", "160000") else _NO_BLOB
                    new = meta[3] if meta[1] not in ("120000", "160000") else _NO_BLOB
                    current.append((old, new))
                continue
            if token.strip():
                commit, base = next(keys)
                current = groups.setdefault((commit, base), [])
            i += 1
        return groups

    def _relative(self, path: str) -> str | None:
        prefix = self.source.subpath + "/" if self.source.subpath else ""
        if not path.startswith(prefix) or not is_manifest_path(path[len(prefix) :]):
            return None
        return path[len(prefix) :]

    def _learn(self, blobs: set[str]) -> None:
        """Parse the scopes of ``blobs`` not known yet, read from Git in one batch."""
        missing = [b for b in blobs if b not in self._blob_scopes]
        if len(self._blob_scopes) + len(missing) > _MAX_CACHED_BLOBS:
            self._blob_scopes.clear()
            missing = list(blobs)
        data = self.source.read_blobs(missing, MAX_MANIFEST_BYTES)
        for blob in missing:
            content = data.get(blob)
            # Too large or unreadable: it does not parse for the loader either.
            self._blob_scopes[blob] = None if content is None or isinstance(content, TooLarge) else file_scopes(content)

    def _scopes(self, files: list[tuple[str, str]]) -> frozenset[str]:
        scopes: set[str] = set()
        for old, new in files:
            before = {} if old == _NO_BLOB else self._blob_scopes[old]
            after = {} if new == _NO_BLOB else self._blob_scopes[new]
            scopes |= changed_scopes(before, after)
        return frozenset(scopes)

    def _log(self, *revs: str) -> list[CommitCheck]:
        signers = self.settings.allowed_signers
        config = (
            "gpg.program=gpg",
            "gpg.ssh.program=ssh-keygen",
            # An existing empty file: SSH signatures then match no principal.
            f"gpg.ssh.allowedSignersFile={signers if signers is not None else '/dev/null'}",
        )
        raw = self.source.git(
            "log", f"--format={_FORMAT}", *revs, "--", env={"GNUPGHOME": str(self.gnupg_home)}, config=config
        )
        return _parse_checks(raw)

    def _prepare_gnupg(self) -> None:
        """(Re)build the private GNUPGHOME from the keyring file whenever the file changes."""
        keyring = self.settings.gpg_keyring
        data = keyring.read_bytes() if keyring is not None else b""
        digest = hashlib.sha256(data).hexdigest()
        marker = self.gnupg_home / "keyring.sha256"
        if self._keyring_digest == digest and marker.is_file():
            return
        if marker.is_file() and marker.read_text() == digest:
            self._keyring_digest = digest
            return
        # Rebuilt from scratch, so a key removed from the keyring is no longer trusted.
        shutil.rmtree(self.gnupg_home, ignore_errors=True)
        self.gnupg_home.mkdir(mode=0o700, parents=True)
        # Checking signatures needs no agent; without this gpg would leave one running per home.
        (self.gnupg_home / "gpg.conf").write_text("no-autostart\n")
        if data:
            self._gpg("--import", stdin=data)
            listing = self._gpg("--with-colons", "--list-keys").decode(errors="replace")
            fprs = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
            # The keyring is the trust decision: every key in it is trusted fully ("6": ultimate).
            self._gpg("--import-ownertrust", stdin="".join(f"{f}:6:\n" for f in fprs).encode())
        marker.write_text(digest)
        self._keyring_digest = digest
        log.info("commit verification: imported %s into %s", keyring, self.gnupg_home)

    def _gpg(self, *args: str, stdin: bytes | None = None) -> bytes:
        proc = subprocess.run(
            ["gpg", "--batch", "--no-tty", "--quiet", "--homedir", str(self.gnupg_home), *args],
            input=stdin,
            capture_output=True,
            timeout=self.source.timeout,
            check=False,
        )
        if proc.returncode:
            raise GitError(f"gpg {args[0]}: {proc.stderr.decode(errors='replace').strip()[-300:]}")
        return proc.stdout


class StatusSignatures:
    """Checks that each status commit is signed by the node whose branch holds it (docs/security.md).

    Called with the new status heads (node -> commit) of a pass, it asks git once for all of them
    and answers, per node, why its commit is not trusted, or None when it is: a good SSH signature
    (``%G?`` G) whose principal in ``allowed_signers`` (``%GS``) is that node's name. Raises when the
    check itself cannot be made, so the board tries again rather than judging the commits.
    """

    def __init__(self, allowed_signers: Path, source: GitSource):
        self.allowed_signers = allowed_signers
        self.source = source

    def __call__(self, heads: Mapping[str, str]) -> dict[str, str | None]:
        if not heads:
            return {}
        if not self.allowed_signers.is_file():
            raise GitError(f"status_signing.allowed_signers {self.allowed_signers} is not a readable file")
        config = (
            "gpg.ssh.program=ssh-keygen",
            f"gpg.ssh.allowedSignersFile={self.allowed_signers}",
            # Only SSH signatures count: nothing checks an OpenPGP or X.509 one, so none is good.
            "gpg.openpgp.program=false",
            "gpg.x509.program=false",
        )
        shas = "".join(f"{sha}\n" for sha in dict.fromkeys(heads.values()))
        raw = self.source.git(
            "log", "--no-walk", "--stdin", f"--format={_FORMAT}", "--", stdin=shas.encode(), config=config
        )
        checks = {c.sha: c for c in _parse_checks(raw)}
        out: dict[str, str | None] = {}
        for node, sha in heads.items():
            check = checks.get(sha)
            if check is not None and check.ok and check.signer == node:
                out[node] = None
                continue
            if check is None:  # fail closed
                why = "git reported no signature status"
            elif not check.ok:
                why = check.why
            else:
                why = f"signed by {check.signer}"
            key = f", key {check.key}" if check is not None and check.key else ""
            out[node] = f"status commit not signed by node {node}: {why}{key}"
        return out


def _parse_checks(raw: bytes) -> list[CommitCheck]:
    out: list[CommitCheck] = []
    for rec in raw.decode(errors="replace").split("\x1e"):
        fields = rec.strip("\n").split("\x1f")  # not strip(): \x1f counts as whitespace
        if len(fields) == 4:
            out.append(CommitCheck(*fields))
        elif rec.strip("\n"):  # fail closed: a record not understood is no signature accepted
            raise GitError(f"git log: unexpected signature record {rec[:80]!r}")
    return out


def _too_many(cap: int, last: str) -> str:
    return (
        f"more than {cap} commits since verified revision {last[:12]}; raise verify.max_commits in the node"
        " config to check them all"
    )


def _held_ref(scope: str) -> str:
    return HELD_PREFIX + ("cluster" if scope == CLUSTER_SCOPE else "ns/" + scope)


def _scope_of_ref(ref: str) -> str:
    name = ref.removeprefix(HELD_PREFIX)
    return CLUSTER_SCOPE if name == "cluster" else name.removeprefix("ns/")


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)
