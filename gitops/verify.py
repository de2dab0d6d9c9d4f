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

``StatusSignatures`` checks peers' status commits the same way (``status_signing:``): each must
carry a good SSH signature whose principal is the node named by its branch.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gitops.config import VerifyConfig
from gitops.source import GitError, GitSource

log = logging.getLogger(__name__)

VERIFIED_REF = "refs/gitops/verified"
GNUPG_DIR = "verify-gnupg"

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
class Verdict:
    """The outcome of verifying a fetched tip."""

    tip: str
    refused: tuple[CommitCheck, ...] = ()
    problem: str = ""  # a configuration problem that refuses everything
    checked: int = 0

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


class Verifier:
    """Checks fetched tips against the node's trusted keys and remembers the last verified one."""

    def __init__(self, settings: VerifyConfig, source: GitSource, state_dir: Path):
        self.settings = settings
        self.source = source
        self.gnupg_home = state_dir / GNUPG_DIR
        self._keyring_digest: str | None = None
        self._cache: tuple[tuple[object, ...], Verdict] | None = None
        self._last: str | None = None

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
        if verdict.ok and tip != last:
            self.source.git("update-ref", VERIFIED_REF, tip)
            self._last = tip
        self._cache = (stamp, verdict)
        return verdict

    def _check(self, tip: str, last: str | None) -> Verdict:
        signers = self.settings.allowed_signers
        if signers is not None and not signers.is_file():
            return Verdict(tip, problem=f"allowed_signers {signers} is not a readable file")
        try:
            self._prepare_gnupg()
        except (OSError, subprocess.SubprocessError, GitError) as e:
            return Verdict(tip, problem=f"cannot import gpg_keyring: {e}")
        if self.settings.mode == "all" and last is not None:
            # Every commit the tip brings that the last verified revision does not hold; the tip
            # itself always, even when it is an older revision (a force-push back).
            checks = self._log("^" + last, tip)
            if tip not in {c.sha for c in checks}:
                checks = self._log("--no-walk", tip) + checks
        else:  # mode head, or mode all on first start: the tip alone
            checks = self._log("--no-walk", tip)
        if tip not in {c.sha for c in checks}:  # fail closed: the tip is always checked
            return Verdict(tip, problem="git reported no signature status for the tip")
        return Verdict(tip, refused=tuple(c for c in checks if not c.ok), checked=len(checks))

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


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)
