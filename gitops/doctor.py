"""``gitops doctor``: checks a node's setup, one line per check with what to do (docs/cli.md)."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from gitops.cluster import FUTURE_TOLERANCE_S, ClusterView
from gitops.config import Config
from gitops.gpu import NvmlInventory
from gitops.model import ClusterSpec
from gitops.runtime.docker import DockerRuntime
from gitops.source import GitError, GitSource

Level = Literal["OK", "WARN", "FAIL"]
ENGINE_TIMEOUT_S = 10
KEY_TYPES = ("ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-sha2-")


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    level: Level
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.level:<4} {self.name}: {self.message}"


# Reads the cluster as `gitops status` does; None when Git cannot be read.
ClusterReader = Callable[[Config], tuple[ClusterSpec, ClusterView] | None]


def run_checks(cfg: Config, config_file: Path, read_cluster: ClusterReader) -> list[Check]:
    """Every check, in the order an operator would fix them."""
    checks = [_config_file(config_file), _state_dir(cfg.state_dir), _secrets_dir(cfg.secrets_dir), _engine(cfg)]
    git = _git(cfg)
    checks.append(git)
    checks.append(
        _clock(cfg, read_cluster) if git.level == "OK" else Check("WARN", "clock", "not checked: Git unreadable")
    )
    checks.append(_nvml(cfg))
    checks.append(_policy(cfg))
    checks.extend(_keys(cfg))
    return checks


def _config_file(path: Path) -> Check:
    if not path.exists():
        return Check("WARN", "config", f"{path} does not exist: settings come from GITOPS_* variables and flags only")
    return Check("OK", "config", f"{path} loads")


def _private_dir(name: str, path: Path, missing: Check) -> Check:
    if not path.exists():
        return missing
    if not path.is_dir():
        return Check("FAIL", name, f"{path} is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        return Check("FAIL", name, f"{path} is not readable by this user: run doctor as the daemon's user")
    if path.stat().st_mode & stat.S_IRWXO:
        return Check("WARN", name, f"{path} is open to other users: chmod 700 {path}")
    return Check("OK", name, str(path))


def _state_dir(path: Path) -> Check:
    if not path.exists():
        parent = next(p for p in path.parents if p.exists())
        if os.access(parent, os.W_OK):
            return Check("OK", "state dir", f"{path} will be created")
        return Check("FAIL", "state dir", f"{path} does not exist and {parent} is not writable: create it")
    found = _private_dir("state dir", path, Check("FAIL", "state dir", f"{path} vanished"))
    if found.level == "OK" and not os.access(path, os.W_OK):
        return Check("FAIL", "state dir", f"{path} is not writable: chown it to the daemon's user")
    return found


def _secrets_dir(path: Path) -> Check:
    missing = Check(
        "WARN", "secrets dir", f"{path} does not exist: workloads that reference Secrets will fail to start"
    )
    return _private_dir("secrets dir", path, missing)


def _engine(cfg: Config) -> Check:
    host = cfg.docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        # The client asks the engine for its API version as it is made: that can fail too.
        runtime = DockerRuntime(host, timeout=ENGINE_TIMEOUT_S)
        try:
            runtime.ping()
            version = runtime.client.version().get("Version", "?")
        finally:
            runtime.close()
    except Exception as e:  # RuntimeUnavailable, and whatever the docker SDK raises for a bad host
        return Check("FAIL", "engine", f"{host} unreachable ({_short(e)}): start dockerd or set docker_host")
    return Check("OK", "engine", f"Docker {version} at {host}")


def _git(cfg: Config) -> Check:
    if not cfg.repo:
        return Check("FAIL", "git", "no repository: set repo in the config (or GITOPS_REPO, --repo)")
    with tempfile.TemporaryDirectory(prefix="gitops-doctor-") as tmp:
        # The daemon's own git settings (no prompts, batch SSH, the timeout) in a throwaway mirror.
        src = GitSource(cfg.repo, cfg.branch, cfg.path, Path(tmp), cfg.git_timeout)
        try:
            src.ensure_mirror()
            out = src.git("ls-remote", "origin", f"refs/heads/{cfg.branch}").decode()
        except GitError as e:
            return Check("FAIL", "git", f"{_short(e)}: check the URL, the network and the credentials")
    if not out.strip():
        return Check("FAIL", "git", f"{src.url} has no branch {cfg.branch}: push it or set branch")
    return Check("OK", "git", f"{src.url} branch {cfg.branch} at {out.split()[0][:12]}")


def _clock(cfg: Config, read_cluster: ClusterReader) -> Check:
    read = read_cluster(cfg)
    if read is None:
        return Check("WARN", "clock", "not checked: the status branches could not be read")
    settings, view = read
    stamps = {n: hb for n, r in view.reports.items() if n != cfg.node and (hb := r.heartbeat_time()) is not None}
    if not stamps:
        return Check("OK", "clock", "not compared: no peer has published a heartbeat")
    peer, newest = max(stamps.items(), key=lambda item: item[1])
    ahead = (newest - datetime.now(UTC)).total_seconds()
    sync = "keep time synchronised (chrony, systemd-timesyncd)"
    if ahead > settings.node_timeout_seconds:
        return Check("FAIL", "clock", f"{ahead:.0f}s behind {peer}'s newest heartbeat: {sync}")
    if ahead > FUTURE_TOLERANCE_S:
        return Check("WARN", "clock", f"{ahead:.1f}s behind {peer}'s newest heartbeat: {sync}")
    if -ahead > 2 * settings.heartbeat_seconds:
        return Check(
            "WARN",
            "clock",
            f"the newest peer heartbeat ({peer}) is {-ahead:.0f}s old: peers are down or this clock runs ahead; "
            f"see `gitops status` and {sync}",
        )
    return Check("OK", "clock", f"agrees with {peer}'s heartbeat {-ahead:.1f}s ago")


def _nvml(cfg: Config) -> Check:
    if cfg.gpus is not None:
        return Check("OK", "gpus", f"{len(cfg.gpus)} declared in the config (NVML not asked)")
    inventory = NvmlInventory()
    gpus = inventory.gpus()
    if inventory.error:
        return Check(
            "WARN", "gpus", f"{inventory.error}: no GPUs offered; declare gpus: in the config if there are some"
        )
    return Check("OK", "gpus", f"{len(gpus)} from NVML" + "".join(f", {g.model}" for g in gpus[:4]))


def _policy(cfg: Config) -> Check:
    p = cfg.policy
    open_to = [ns for ns, level in p.namespaces if level == "privileged"]
    summary = f"default {p.default}, {len(p.namespaces)} namespace level(s), {len(p.host_paths)} host path(s)"
    if p.default == "privileged":
        return Check(
            "WARN", "policy", f"{summary}: every namespace may run privileged containers; set default: baseline"
        )
    if open_to:
        return Check("OK", "policy", f"{summary}; privileged: {', '.join(open_to)}")
    return Check("OK", "policy", summary)


def _keys(cfg: Config) -> Iterator[Check]:
    verify, signing, hook = cfg.verify, cfg.status_signing, cfg.webhook
    if verify.allowed_signers is not None:
        yield _signers("verify.allowed_signers", verify.allowed_signers)
    if verify.gpg_keyring is not None:
        yield _keyring(verify.gpg_keyring)
    if signing is not None:
        yield _signers("status_signing.allowed_signers", signing.allowed_signers)
        yield _signing_key(signing.key, signing.allowed_signers, cfg.node)
    if hook is not None:
        yield _secret_file(hook.secret_file)


def _read(name: str, path: Path) -> bytes | Check:
    try:
        return path.read_bytes()
    except OSError as e:
        return Check("FAIL", name, f"{path}: {e.strerror or e}: make it readable by the daemon's user")


def _signer_lines(text: str) -> Iterator[tuple[int, list[str], str | None]]:
    """(line number, principals, key blob or None when the line is malformed) of an allowed-signers file."""
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        at = next((i for i, f in enumerate(fields) if f.startswith(KEY_TYPES)), None)
        blob = fields[at + 1] if at is not None and at + 1 < len(fields) else None
        try:
            if blob is not None:
                base64.b64decode(blob, validate=True)
        except binascii.Error:
            blob = None
        yield number, fields[0].split(","), blob


def _signers(name: str, path: Path) -> Check:
    raw = _read(name, path)
    if isinstance(raw, Check):
        return raw
    entries = list(_signer_lines(raw.decode(errors="replace")))
    bad = [n for n, _, blob in entries if blob is None]
    if bad:
        return Check("FAIL", name, f"{path} line {bad[0]}: not 'principals [options] key-type base64-key'")
    if not entries:
        return Check("FAIL", name, f"{path} lists no key: add one line per signer")
    return Check("OK", name, f"{path}: {len(entries)} key(s)")


def _keyring(path: Path) -> Check:
    name = "verify.gpg_keyring"
    raw = _read(name, path)
    if isinstance(raw, Check):
        return raw
    if shutil.which("gpg") is None:
        return Check("FAIL", name, "gpg is not installed: install gnupg")
    with tempfile.TemporaryDirectory(prefix="gitops-doctor-gpg-") as home:
        proc = subprocess.run(
            ["gpg", "--batch", "--no-tty", "--homedir", home, "--with-colons", "--show-keys"],
            input=raw,
            capture_output=True,
            timeout=30,
            check=False,
        )
    keys = [line for line in proc.stdout.decode(errors="replace").splitlines() if line.startswith("pub:")]
    if proc.returncode or not keys:
        return Check("FAIL", name, f"{path} holds no OpenPGP public key: export one with gpg --export")
    return Check("OK", name, f"{path}: {len(keys)} key(s)")


def _signing_key(key: Path, signers: Path, node: str) -> Check:
    name = "status_signing.key"
    if isinstance(found := _read(name, key), Check):
        return found
    proc = subprocess.run(
        ["ssh-keygen", "-y", "-P", "", "-f", str(key)], capture_output=True, timeout=30, check=False, text=True
    )
    if proc.returncode:
        return Check(
            "FAIL", name, f"{key} is not an SSH private key without a passphrase: {proc.stderr.strip()[-200:]}"
        )
    blob = proc.stdout.split()[1]
    raw = _read(name, signers)
    if isinstance(raw, Check):
        return raw
    principals = [p for _, ps, b in _signer_lines(raw.decode(errors="replace")) if b == blob for p in ps]
    if not any(fnmatch.fnmatchcase(node, p) for p in principals):
        return Check(
            "FAIL",
            name,
            f"its public key is not in {signers} for principal {node}: peers will reject this node's records; "
            f"add '{node} namespaces=\"git\" {proc.stdout.strip()}' to that file on every node",
        )
    return Check("OK", name, f"{key} signs as {node}")


def _secret_file(path: Path) -> Check:
    name = "webhook.secret_file"
    raw = _read(name, path)
    if isinstance(raw, Check):
        return raw
    if not raw.strip():
        return Check("FAIL", name, f"{path} is empty: put the forge's webhook secret in it")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Check("WARN", name, f"{path} is readable by others: chmod 600 {path}")
    return Check("OK", name, str(path))


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:197] + "..."
