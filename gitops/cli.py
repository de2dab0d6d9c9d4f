"""The ``gitops`` command line (docs/cli.md)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gitops import __version__, logs
from gitops.config import DEFAULT_CONFIG_FILE, Config, ConfigError, load_config

# docker, numpy (placement), APScheduler and watchdog cost most of a second to import; only
# the verbs that talk to Git, the engine or the scheduler import them, inside the verb, so
# `gitops validate` in an editor hook or CI step starts fast and needs none of them.
if TYPE_CHECKING:
    from gitops.cluster import ClusterView
    from gitops.model import ClusterSpec, ManifestSet
    from gitops.reconcile.reconciler import Reconciler

EXIT_OK, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2
# Package data (pyproject.toml), so `gitops init` works from an installed package too; the
# checkout's top-level repo-template/ is a symlink to it.
TEMPLATE_DIR = Path(__file__).resolve().parent / "repo_template"


def _add_source_flags(p: argparse.ArgumentParser, repo_required: bool = False) -> None:
    p.add_argument("--config", type=Path, help="config file (default /etc/gitops/config.yaml)")
    p.add_argument(
        "--repo",
        required=False,
        help="repository URL or local path" + (" (required)" if repo_required else ""),
    )
    p.add_argument("--branch", help="branch to track (default main)")
    p.add_argument("--path", help="sub-path holding the manifests")
    p.add_argument("--state-dir", type=Path, help="state directory (default /var/lib/gitops)")


def _add_node_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", help="this node's name (default: hostname)")
    p.add_argument("--address", help="this node's IPv4 address for peers (default: the default route's source)")
    p.add_argument("--docker-host", help="Docker Engine address (default DOCKER_HOST or the local socket)")
    p.add_argument("--secrets-dir", type=Path)
    p.add_argument("--interval", type=float, help="seconds between passes (default 30)")
    p.add_argument("--log-format", choices=["text", "json"])
    p.add_argument("--log-level")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every verb."""
    parser = argparse.ArgumentParser(prog="gitops", description="GitOps deployment daemon with no control plane")
    sub = parser.add_subparsers(dest="verb", required=True)

    run = sub.add_parser("run", help="run the daemon")
    _add_source_flags(run)
    _add_node_flags(run)
    run.add_argument("--once", action="store_true", help="one pass, exit non-zero if it failed")
    run.add_argument("--metrics-address", help="serve /metrics, /healthz and /readyz on HOST:PORT (default: off)")

    val = sub.add_parser("validate", help="validate manifests in a directory or file")
    val.add_argument("target", nargs="?", default=".", help="directory or file (default .)")
    val.add_argument("-o", "--output", choices=["text", "json"], default="text")

    pl = sub.add_parser("plan", help="what this node would do now (0 nothing, 1 changes, 2 error)")
    _add_source_flags(pl)
    _add_node_flags(pl)

    st = sub.add_parser("status", help="cluster view from the status branches")
    _add_source_flags(st)
    st.add_argument("-o", "--output", choices=["text", "json"], default="text")

    pm = sub.add_parser("placement", help="who runs what, for the current repo and live nodes")
    _add_source_flags(pm)
    pm.add_argument("--without", action="append", default=[], metavar="NODE", help="as if NODE died")
    pm.add_argument("--add-node", action="append", default=[], metavar="NAME:cpu=..,memory=..,gpus=..")
    pm.add_argument("-o", "--output", choices=["text", "json"], default="text")

    vol = sub.add_parser("volume", help="PersistentVolumeClaim volumes")
    vol_sub = vol.add_subparsers(dest="volume_verb", required=True)
    rel = vol_sub.add_parser(
        "release", help="let a claim's users leave the node holding its volume (a commit; docs/operations.md)"
    )
    rel.add_argument("claim", help="NAMESPACE/NAME (or NAME in default)")
    rel.add_argument("--from", dest="from_node", required=True, metavar="NODE", help="the node holding the volume")
    _add_source_flags(rel)
    for verb, what in (
        ("export", "write a tar of this node's volume of a claim to stdout (its users must be stopped)"),
        ("import", "create this node's volume of a claim from a tar on stdin (before releasing the old one)"),
    ):
        cp = vol_sub.add_parser(verb, help=what)
        cp.add_argument("claim", help="NAMESPACE/NAME (or NAME in default)")
        cp.add_argument("--image", default="busybox:latest", help="any image on the engine, for a helper never started")
        _add_source_flags(cp)
        _add_node_flags(cp)

    sy = sub.add_parser("sync", help="make the running daemon reconcile now")
    sy.add_argument("--config", type=Path)
    sy.add_argument("--state-dir", type=Path)

    doc = sub.add_parser(
        "doctor", help="check this node's setup: engine, Git, clock, GPUs, policy, keys (1 if any fails)"
    )
    _add_source_flags(doc)
    _add_node_flags(doc)

    ini = sub.add_parser("init", help="create a new cluster repository from the template")
    ini.add_argument("dir", type=Path)

    sub.add_parser("version", help="print the version")
    return parser


def _config(args: argparse.Namespace) -> Config:
    flags = {
        k: getattr(args, k, None)
        for k in (
            "repo",
            "branch",
            "path",
            "state_dir",
            "node",
            "address",
            "docker_host",
            "secrets_dir",
            "interval",
            "log_format",
            "log_level",
            "metrics_address",
        )
    }
    return load_config(getattr(args, "config", None), flags)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gitops`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(_dispatch(args))
    except ConfigError as e:
        print(f"gitops: configuration error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    verb = args.verb
    if verb == "version":
        print(f"gitops {__version__}")
        return EXIT_OK
    if verb == "validate":
        return cmd_validate(Path(args.target), args.output)
    if verb == "init":
        return cmd_init(args.dir)
    if verb == "sync":
        return cmd_sync(_config(args))
    if verb == "doctor":
        return cmd_doctor(args)
    cfg = _config(args)
    logs.setup(cfg.log_level if verb == "run" else "WARNING", cfg.log_format)
    if verb == "volume" and args.volume_verb == "export":  # the engine is all it reads
        return cmd_volume_copy(cfg, "export", args.claim, args.image)
    if not cfg.repo:
        print("gitops: --repo (or repo: in the config, or GITOPS_REPO) is required", file=sys.stderr)
        return EXIT_ERROR
    if verb == "run":
        return cmd_run(cfg, args.once)
    if verb == "plan":
        return cmd_plan(cfg)
    if verb == "status":
        return cmd_status(cfg, args.output)
    if verb == "placement":
        return cmd_placement(cfg, args.without, args.add_node, args.output)
    if verb == "volume" and args.volume_verb == "release":
        return cmd_volume_release(cfg, args.claim, args.from_node)
    if verb == "volume":
        return cmd_volume_copy(cfg, args.volume_verb, args.claim, args.image)
    raise AssertionError(verb)


def cmd_validate(target: Path, output: str) -> int:
    """Validate manifests on disk: 0 valid, 1 invalid, 2 usage."""
    from gitops.manifests.load import combine, is_manifest_path, parse_file

    if not target.exists():
        print(f"gitops validate: {target}: no such file or directory", file=sys.stderr)
        return EXIT_ERROR
    if target.is_file():
        files = {target.name: target}
    else:
        files = {
            str(p.relative_to(target)): p
            for p in sorted(target.rglob("*"))
            if p.is_file() and is_manifest_path(str(p.relative_to(target)))
        }
    mset = combine({rel: parse_file(rel, p.read_bytes()) for rel, p in files.items()})
    if output == "json":
        print(
            json.dumps(
                {
                    "valid": not mset.errors,
                    "workloads": [w.key for w in mset.workloads],
                    "errors": [e.model_dump(exclude_none=True) for e in mset.errors],
                    "warnings": list(mset.warnings),
                },
                indent=2,
            )
        )
    else:
        for w in mset.warnings:
            print(f"warning: {w}", file=sys.stderr)
        for e in mset.errors:
            print(f"error: {e}")
        print(f"{len(files)} file(s), {len(mset.workloads)} workload(s), {len(mset.errors)} error(s)")
    return EXIT_CHANGES if mset.errors else EXIT_OK


def cmd_init(target: Path) -> int:
    """Create a cluster repository from the packaged template with one commit on ``main``."""
    if target.exists() and any(target.iterdir()):
        print(f"gitops init: {target} exists and is not empty", file=sys.stderr)
        return EXIT_ERROR
    if not TEMPLATE_DIR.is_dir():
        print(f"gitops init: template not found at {TEMPLATE_DIR}", file=sys.stderr)
        return EXIT_ERROR
    shutil.copytree(TEMPLATE_DIR, target, dirs_exist_ok=True)
    ident = ["-c", "user.name=gitops", "-c", "user.email=gitops@localhost"]
    for cmd in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        [*ident, "commit", "-q", "-m", "Initial cluster repository"],
    ):
        subprocess.run(["git", "-C", str(target), *cmd], check=True)
    print(f"created {target}; run: gitops run --repo {target} --node $(hostname)")
    return EXIT_OK


def cmd_sync(cfg: Config) -> int:
    """Touch the trigger file the running daemon watches."""
    trigger = cfg.trigger_file
    if not trigger.parent.is_dir():
        print(f"gitops sync: no daemon state at {trigger.parent}", file=sys.stderr)
        return EXIT_ERROR
    trigger.write_text(str(time.time()))
    print("sync requested")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check this node's setup, one line per check: 0 when none fails, 1 otherwise."""
    from gitops.doctor import run_checks

    config_file = args.config or Path(os.environ.get("GITOPS_CONFIG", str(DEFAULT_CONFIG_FILE)))
    try:
        cfg = _config(args)
    except ConfigError as e:
        print(f"FAIL config: {' '.join(str(e).split())}: fix the setting named")
        return EXIT_CHANGES

    def read_cluster(c: Config) -> tuple[ClusterSpec, ClusterView] | None:
        read = _read_cluster(c, "doctor")
        return None if read is None else (read[0].cluster, read[1])

    checks = run_checks(cfg, config_file, read_cluster)
    for check in checks:
        print(check)
    return EXIT_CHANGES if any(c.level == "FAIL" for c in checks) else EXIT_OK


def _reconciler(cfg: Config) -> Reconciler:
    from gitops.gpu import DeclaredInventory, Gpu, NvmlInventory
    from gitops.reconcile.reconciler import Reconciler

    inventory = (
        DeclaredInventory(
            [Gpu(uuid=g.uuid, model=g.model, memory_mib=g.memory_mib, index=i) for i, g in enumerate(cfg.gpus)]
        )
        if cfg.gpus is not None
        else NvmlInventory()
    )
    return Reconciler(cfg, inventory)


def cmd_run(cfg: Config, once: bool) -> int:
    """Run the daemon (or one pass)."""
    from gitops.daemon import Daemon
    from gitops.reconcile.reconciler import PassFailed
    from gitops.source import GitError

    cfg.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if once and cfg.settle_seconds is None:
        # One pass asked for by an operator acts at once; a daemon first learns its peers.
        cfg = cfg.model_copy(update={"settle_seconds": 0.0})
    rec = _reconciler(cfg)
    if once:
        try:
            report = rec.run_pass()
        except (PassFailed, GitError) as e:
            print(f"gitops: pass failed: {e}", file=sys.stderr)
            return EXIT_CHANGES
        finally:
            rec.close()
        for a in report.plan.actions:
            print(a.describe())
        return EXIT_OK if report.ok else EXIT_CHANGES
    return Daemon(cfg, rec).run()


def cmd_plan(cfg: Config) -> int:
    """Print what this node would do now: 0 nothing, 1 changes, 2 error."""
    from gitops.reconcile.reconciler import PassFailed
    from gitops.source import GitError

    cfg.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    rec = _reconciler(cfg)
    try:
        report = rec.run_pass(dry_run=True)
    except (PassFailed, GitError) as e:
        print(f"gitops plan: {e}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        rec.close()
    for err in report.errors:
        print(f"error: {err.message}", file=sys.stderr)
    for a in report.plan.actions:
        print(a.describe())
    if not report.plan.actions:
        print(f"nothing to do at {report.revision[:7]}")
    return EXIT_CHANGES if report.plan.actions else EXIT_OK


def _read_cluster(cfg: Config, verb: str) -> tuple[ManifestSet, ClusterView, str] | None:
    """Fetch the tracked branch and status branches into a throwaway mirror; None (reported) on failure."""
    from gitops.cluster import StatusBoard
    from gitops.desired import DesiredLoader
    from gitops.source import GitError, GitSource
    from gitops.verify import StatusSignatures

    with tempfile.TemporaryDirectory(prefix="gitops-read-") as tmp:
        src = GitSource(cfg.repo, cfg.branch, cfg.path, Path(tmp), cfg.git_timeout)
        try:
            rev = src.fetch()
            mset = DesiredLoader(src).load(rev)
            heads = src.status_heads()
        except GitError as e:
            print(f"gitops {verb}: {e}", file=sys.stderr)
            return None
        # Bad records are contained and shown as rejected, never fatal; nothing is kept between runs.
        timeout = mset.cluster.node_timeout_seconds
        signing = cfg.status_signing
        verify = StatusSignatures(signing.allowed_signers, src) if signing else None
        view = StatusBoard().view(heads, src.read_status_files, timeout, forget_after_s=timeout, verify=verify)
    return mset, view, rev


def cmd_status(cfg: Config, output: str) -> int:
    """Print nodes and workloads as the status branches report them."""
    from gitops.statusview import render_status, status_document

    read = _read_cluster(cfg, "status")
    if read is None:
        return EXIT_ERROR
    doc = status_document(*read)
    print(json.dumps(doc, indent=2) if output == "json" else render_status(doc))
    return EXIT_OK


def cmd_placement(cfg: Config, without: list[str], add: list[str], output: str) -> int:
    """Print the assignment for the current repo and live nodes, with what-if changes."""
    from gitops.placement import NodeInfo
    from gitops.reconcile.autoscaling import scaled
    from gitops.statusview import parse_node_spec
    from gitops.volumes import holders, place_pinned

    read = _read_cluster(cfg, "placement")
    if read is None:
        return EXIT_ERROR
    mset, view, rev = read
    # Autoscaled workloads are placed at the count in force, as the daemons place them.
    mset, _ = scaled(mset, view.reports, datetime.now(UTC))
    try:
        extra: list[NodeInfo] = [parse_node_spec(s) for s in add]
    except ValueError as e:
        print(f"gitops placement: {e}", file=sys.stderr)
        return EXIT_ERROR
    nodes = [n for n in view.node_infos(frozenset(mset.cluster.cordoned)) if n.name not in set(without)] + extra
    pinned = place_pinned(
        mset.workloads, nodes, view.placements(), holders(view.reports, mset.releases), datetime.now(UTC)
    )
    a = pinned.assignment
    if output == "json":
        print(
            json.dumps(
                {
                    "revision": rev,
                    "nodes": {n: [f"{k}[{i}]" for k, i in v] for n, v in a.per_node.items()},
                    "unschedulable": [{"workload": k, "replica": i, "reason": why} for k, i, why in a.unschedulable],
                    "denied": [{"workload": k, "replica": i, "reason": why} for k, i, why in a.denied],
                    "volumeNodeLost": [{"workload": k, "replica": i, "reason": why} for k, i, why in pinned.lost],
                    "digest": a.digest(rev, [n.name for n in nodes]),
                },
                indent=2,
            )
        )
        return EXIT_OK
    for n in nodes:
        items = a.for_node(n.name)
        print(f"{n.name}: {len(items)} replica(s)")
        for k, i in items:
            print(f"  {k}[{i}]")
    for k, i, why in a.unschedulable:
        print(f"unschedulable: {k}[{i}]: {why}")
    for k, i, why in a.denied:
        print(f"denied: {k}[{i}]: {why}")
    for k, i, why in pinned.lost:
        print(f"VolumeNodeLost: {k}[{i}]: {why}")
    return EXIT_OK


def cmd_volume_release(cfg: Config, claim: str, node: str) -> int:
    """Commit a VolumeRelease: the claim's users may start on another node (on whatever volume is there)."""
    from gitops.release import ReleaseError, release

    try:
        commit = release(cfg, claim, node)
    except (ReleaseError, ValueError) as e:
        print(f"gitops volume release: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"released {claim} on {node} in commit {commit[:12]}; its users start elsewhere once {node} is fenced")
    return EXIT_OK


def cmd_volume_copy(cfg: Config, verb: str, claim: str, image: str) -> int:
    """Export this node's volume of a claim to stdout, or import one from stdin (docs/operations.md)."""
    import docker

    from gitops.release import parse_claim
    from gitops.runtime.docker import DockerRuntime
    from gitops.volumecopy import CopyError, claim_labels_in, export_volume, import_volume

    try:
        namespace, name = parse_claim(claim)
    except ValueError as e:
        print(f"gitops volume {verb}: {e}", file=sys.stderr)
        return EXIT_ERROR
    engine = DockerRuntime(cfg.docker_host, timeout=600)  # a big volume takes a while to stream
    api = engine.api
    try:
        if verb == "export":
            export_volume(api, namespace, name, cfg.node, image, sys.stdout.buffer)
            return EXIT_OK
        read = _read_cluster(cfg, f"volume {verb}")
        if read is None:
            return EXIT_ERROR
        labels = claim_labels_in(read[0], namespace, name, cfg.node)
        import_volume(api, namespace, name, cfg.node, labels, image, sys.stdin.buffer)
    except (CopyError, docker.errors.APIError) as e:
        print(f"gitops volume {verb}: {e}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        engine.close()
    print(f"imported {claim} on {cfg.node}; release the old volume: gitops volume release {claim} --from NODE")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
