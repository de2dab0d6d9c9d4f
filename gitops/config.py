"""Node-local configuration: file, then ``GITOPS_*`` environment, then flags."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from gitops.admission import Policy
from gitops.manifests.names import dns_label
from gitops.scheduling import MAX_TAINTS, Taint
from gitops.serve import parse_address

DEFAULT_CONFIG_FILE = Path("/etc/gitops/config.yaml")
IPv4Str = Annotated[str, AfterValidator(lambda v: str(ipaddress.IPv4Address(v)))]


def _bind_address(text: str) -> str:
    parse_address(text)
    return text


# host:port to listen on; an empty host is the loopback address.
BindAddress = Annotated[str, AfterValidator(_bind_address)]


class DeclaredGpu(BaseModel):
    """A GPU declared in config instead of discovered through NVML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uuid: str
    model: str = "declared"
    memory_mib: int = 0


class VerifyConfig(BaseModel):
    """Commit verification (docs/security.md): which commits must carry a trusted signature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # off: nothing is checked; head: the fetched tip; all: every commit since the last verified one.
    mode: Literal["off", "head", "all"] = "off"
    # OpenSSH allowed-signers file (git's gpg.ssh.allowedSignersFile).
    allowed_signers: Path | None = None
    # OpenPGP public keys (a keyring file); every key in it is trusted.
    gpg_keyring: Path | None = None
    # Team namespaces: namespace -> the principals (SSH) or user ids (OpenPGP) that may change it.
    namespaces: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # Mode all walks at most this many commits a pass; a longer range is refused until raised.
    max_commits: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _needs_keys(self) -> VerifyConfig:
        if self.mode != "off" and self.allowed_signers is None and self.gpg_keyring is None:
            raise ValueError(f"verify.mode {self.mode} needs allowed_signers or gpg_keyring")
        if self.namespaces and self.mode == "off":
            raise ValueError("verify.namespaces needs verify.mode head or all")
        for namespace in self.namespaces:
            dns_label(namespace)
        return self


class StatusSigningConfig(BaseModel):
    """Signed status commits (docs/security.md, "Status signing"): this node's key and its peers' keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # This node's SSH private key; every status commit it pushes is signed with it.
    key: Path
    # OpenSSH allowed-signers file of every node's key, the principal being the node's name.
    allowed_signers: Path


class WebhookConfig(BaseModel):
    """The push webhook receiver (docs/operations.md, "Webhooks")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: BindAddress
    path: str = Field(default="/hooks/push", pattern=r"^/[A-Za-z0-9._~/-]*$")
    # The secret shared with the forge: HMAC key (GitHub, Gitea, Forgejo) or token (GitLab).
    secret_file: Path


class StorageClass(BaseModel):
    """How this node creates the volumes of claims of one storageClassName: a Docker volume driver and its options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: str = "local"
    options: dict[str, str] = Field(default_factory=dict)


# Starts wait on the engine (network namespace, runc), so more at once go faster up to the engine's
# own limit: on a 2-core machine 300 Deployments converged in 1.23x the time of bare starts with 4
# at once, 1.08x with 8 (docs/benchmarks.md, "Convergence").
START_WORKERS = 8


class Config(BaseModel):
    """Everything a node needs that must not come from the repository."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo: str = ""
    branch: str = "main"
    path: str = ""
    node: str = Field(default_factory=lambda: socket.gethostname().split(".")[0].lower())
    state_dir: Path = Path("/var/lib/gitops")
    secrets_dir: Path = Path("/etc/gitops/secrets")
    interval: float = 30.0
    jitter: float | None = None
    docker_host: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    # Kubernetes-style taints (docs/operations.md): keep work without a matching toleration off this node.
    taints: tuple[Taint, ...] = Field(default=(), max_length=MAX_TAINTS)
    cpu_millis: int | None = None
    memory_mib: int | None = None
    reserve_cpu_millis: int = 0
    reserve_memory_mib: int = 0
    gpus: tuple[DeclaredGpu, ...] | None = None
    # This node's address: what containers read as status.hostIP, and where peers send Service traffic
    # (None: the source address of the default route). ``host_ip`` is its older name.
    address: IPv4Str | None = Field(default=None, validation_alias=AliasChoices("address", "host_ip"))
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    status_history: int = 50
    git_timeout: float = 60.0
    # Multiplies every restart backoff; tests shrink it so crash loops show in seconds.
    backoff_scale: float = 1.0
    # Publish container output (log tails, exec-probe output) in status; off: it may carry secrets.
    status_logs: bool = False
    # Seconds a fresh node watches, from its first publish, before claiming new work (None: two heartbeats, >= 5 s).
    settle_seconds: float | None = None
    # Replicas created and started at once (see START_WORKERS).
    start_workers: int = Field(default=START_WORKERS, ge=1, le=64)
    # Seconds of usage samples an autoscaled replica's cpu and memory are averaged over (docs/autoscaling.md).
    autoscale_window_s: float = Field(default=30.0, gt=0)
    # Seconds a replica behind a Service stays out of every node's endpoints before SIGTERM (None: see drain_s).
    service_drain_seconds: float | None = Field(default=None, ge=0)
    # Commit verification; off unless configured.
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    # Status signing; None: status commits are unsigned and peers' records are not checked.
    status_signing: StatusSigningConfig | None = None
    # What this node admits (docs/security.md, "Admission"); published in its status for placement.
    policy: Policy = Field(default_factory=Policy)
    # Prometheus metrics, /healthz and /readyz (docs/operations.md, "Metrics"); None: not served.
    metrics_address: BindAddress | None = None
    # Push webhooks that trigger a pass at once; None: not served.
    webhook: WebhookConfig | None = None
    # storageClassName -> how claims of that class get their volumes here; other classes: the local driver.
    storage_classes: dict[str, StorageClass] = Field(default_factory=dict)

    @property
    def effective_jitter(self) -> float:
        """Jitter of the interval timer: 10 % of the interval unless set."""
        return self.jitter if self.jitter is not None else self.interval * 0.1

    @property
    def drain_s(self) -> float:
        """The Service drain: unless set, one interval with its jitter (peers re-read status each pass) + 2 s."""
        if self.service_drain_seconds is not None:
            return self.service_drain_seconds
        return self.interval + self.effective_jitter + 2.0

    @property
    def trigger_file(self) -> Path:
        """File whose change makes the running daemon reconcile now (``gitops sync``)."""
        return self.state_dir / "sync.trigger"


class ConfigError(Exception):
    """The node-local configuration is unusable."""


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Config.model_fields:
        raw = environ.get("GITOPS_" + name.upper())
        if raw is None:
            continue
        # Structured values (labels, taints, gpus, verify, status_signing, policy, webhook, storage_classes)
        # are given as YAML/JSON.
        structured = {"labels", "taints", "gpus", "verify", "status_signing", "policy", "webhook", "storage_classes"}
        out[name] = yaml.safe_load(raw) if name in structured else raw
    return out


def load_config(
    file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge the config file, ``GITOPS_*`` variables and flags, in rising priority."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = file or Path(environ.get("GITOPS_CONFIG", str(DEFAULT_CONFIG_FILE)))
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings")
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
        if "host_ip" in values:  # the older name of ``address``: a flag or variable still overrides it
            values.setdefault("address", values.pop("host_ip"))
    elif file is not None:
        raise ConfigError(f"{path}: no such file")
    values.update(_env_overrides(environ))
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    try:
        return Config(**values)
    except ValidationError as e:
        raise ConfigError(str(e)) from e
