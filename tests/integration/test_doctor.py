"""``gitops doctor`` end to end: a good config passes; a broken engine, repository or key fail on their line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gitops.cli import main
from tests.helpers import DOCKER_HOST, Repo, ssh_key

pytestmark = pytest.mark.usefixtures("docker_engine")


def doctor(capsys: pytest.CaptureFixture[str], config: Path, *flags: str) -> tuple[int, dict[str, str]]:
    rc = main(["doctor", "--config", str(config), *flags])
    lines = capsys.readouterr().out.splitlines()
    return rc, {line.split(":")[0][5:]: line for line in lines}


def test_doctor(repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = ssh_key(tmp_path, "node", "n1")
    (tmp_path / "signers").write_text(key.line)
    (tmp_path / "secrets").mkdir(mode=0o700)
    settings = {
        "repo": str(repo.path),
        "node": "n1",
        "state_dir": str(tmp_path / "state"),
        "secrets_dir": str(tmp_path / "secrets"),
        "docker_host": DOCKER_HOST,
        "gpus": [],
        "status_signing": {"key": str(key.private), "allowed_signers": str(tmp_path / "signers")},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    rc, lines = doctor(capsys, config)
    assert rc == 0 and all(line.startswith("OK ") for line in lines.values()), lines
    expected = {"config", "state dir", "secrets dir", "engine", "git", "clock", "gpus", "policy"}
    assert expected | {"status_signing.allowed_signers", "status_signing.key"} == set(lines)

    rc, lines = doctor(capsys, config, "--docker-host", "tcp://127.0.0.1:1")
    assert rc == 1 and lines["engine"].startswith("FAIL engine: tcp://127.0.0.1:1 unreachable"), lines
    assert lines["git"].startswith("OK ")

    rc, lines = doctor(capsys, config, "--repo", str(tmp_path / "no-such-repo"))
    assert rc == 1 and lines["git"].startswith("FAIL git: ") and "check the URL" in lines["git"], lines
    assert lines["clock"] == "WARN clock: not checked: Git unreadable"

    config.write_text(yaml.safe_dump({**settings, "status_signing": {**settings["status_signing"], "key": "/nope"}}))
    rc, lines = doctor(capsys, config)
    assert rc == 1 and lines["status_signing.key"].startswith("FAIL status_signing.key: /nope: No such file"), lines
    assert [name for name, line in lines.items() if line.startswith("FAIL")] == ["status_signing.key"]

    config.write_text("repo: [unclosed\n")
    rc, lines = doctor(capsys, config)
    assert rc == 1 and list(lines) == ["config"] and lines["config"].startswith("FAIL config: ")
