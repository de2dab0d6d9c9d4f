"""Files of configMap, secret and projected volumes, written on the node for each container.

Layout: ``<state_dir>/files/<container name>/<volume>/<path>``. The root is 0700 (it holds
copies of secrets); files get their volume's mode (0644 by default), directories 0755, and each
volume is bind-mounted read-only. A container's directory is written whole into a temporary
directory and renamed into place, so a container never sees half a volume; it is removed with
the container, and ``sweep`` removes directories whose container is gone some other way
(``docker rm`` by hand, a crash between writing and creating).
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Collection
from pathlib import Path

from gitops.model import FileVolume, VolumeFile
from gitops.runtime.base import RuntimeFailure
from gitops.secrets import SecretMissing, read_secret_files

log = logging.getLogger(__name__)

# A directory younger than this may belong to a container being created right now.
SWEEP_MIN_AGE_S = 120.0
_TMP_PREFIX = "."


class FileStore:
    """The per-container file volumes under one root directory."""

    def __init__(self, root: Path, secrets_dir: Path):
        self.root = root
        self.secrets_dir = secrets_dir

    def write(self, container: str, namespace: str, volumes: Collection[FileVolume], readable: bool = False) -> Path:
        """Write ``volumes`` for ``container`` (replacing what was there) and return its directory.

        A missing non-optional secret raises RuntimeFailure(reason=SecretMissing), naming the
        path, never a value. ``readable`` adds read for all (a pod with fsGroup: its non-root user
        must read files this daemon cannot give to the group).
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self.root / container
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f"{_TMP_PREFIX}{container}."))
        try:
            for volume in volumes:
                vdir = staging / volume.name
                _mkdirs(vdir, staging)
                for f in volume.files:
                    for path, data in self._contents(namespace, volume.name, f):
                        _write(vdir / path, data, f.mode | (0o444 if readable else 0), staging)
            if target.exists():
                old = Path(tempfile.mkdtemp(dir=self.root, prefix=f"{_TMP_PREFIX}{container}.old."))
                target.rename(old / "x")
                shutil.rmtree(old, ignore_errors=True)
            staging.rename(target)
        except OSError as e:
            raise RuntimeFailure(f"writing volume files for {container}: {e}", "RunFailed") from e
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _contents(self, namespace: str, volume: str, f: VolumeFile) -> list[tuple[str, bytes]]:
        if f.content is not None:
            return [(f.path, base64.b64decode(f.content))]
        if f.secret is None:
            return []
        try:
            found = read_secret_files(self.secrets_dir, namespace, f.secret)
        except SecretMissing as e:
            if f.secret.optional:
                return []
            raise RuntimeFailure(f"volume {volume}: {e}", "SecretMissing") from e
        if f.secret.key is None:
            return sorted(found.items())
        return [(f.path, data) for data in found.values()]

    def remove(self, container: str) -> None:
        """Remove one container's files (gone already counts as done)."""
        shutil.rmtree(self.root / container, ignore_errors=True)

    def sweep(self, live: Collection[str], now: float | None = None) -> None:
        """Remove the directories of containers not in ``live``, once they are old enough to be orphans."""
        now = time.time() if now is None else now
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return
        for entry in entries:
            # Staging directories are left behind only by a crash: they go by age alone.
            if entry.name in live and not entry.name.startswith(_TMP_PREFIX):
                continue
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime < SWEEP_MIN_AGE_S:
                    continue
            except OSError:
                continue
            log.info("removing volume files of gone container %s", entry.name)
            shutil.rmtree(entry.path, ignore_errors=True)


def _mkdirs(path: Path, top: Path) -> None:
    # Modes are set explicitly: the daemon's umask (0077 under systemd) must not hide them from containers.
    if path == top or path.is_dir():
        return
    _mkdirs(path.parent, top)
    path.mkdir()
    path.chmod(0o755)


def _write(path: Path, data: bytes, mode: int, top: Path) -> None:
    _mkdirs(path.parent, top)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)
