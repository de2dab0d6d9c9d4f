"""A Bank-of-Anthos-shaped frontend from a real git repository on the real engine (issue 10's done-means).

One node in-process; every effect is checked from inside the containers it runs.
"""

from __future__ import annotations

import contextlib
import time
import urllib.request
from pathlib import Path
from typing import Any

import docker
import pytest

from gitops.health import Prober
from gitops.reconcile.reconciler import Reconciler
from tests.builders import TEST_IMAGE, deployment
from tests.helpers import DOCKER_HOST, Periodic, Repo, make_reconciler, managed, wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")

PUBLIC_KEY = "ssh-rsa AAAAB3NzaC1yc2E-test-only frontend@boa\n"

# boa__config.yaml's ConfigMaps (one key of service-api-config is the one changed), plus the
# frontend's own script, mounted as an item under a renamed path with its own mode.
CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: environment-config
data:
  LOCAL_ROUTING_NUM: "883745000"
  PUB_KEY_PATH: "/tmp/.ssh/publickey"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: service-api-config
data:
  TRANSACTIONS_API_ADDR: "%s"
  BALANCES_API_ADDR: "balancereader:8080"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: demo-data-config
data:
  USE_DEMO_DATA: "True"
  DEMO_LOGIN_USERNAME: "testuser"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: frontend-scripts
data:
  ready.sh: |
    #!/bin/sh
    wget -qO- http://127.0.0.1:8080/index.html
  unused.sh: "exit 1"
"""

# boa__frontend.yaml's shape: its Service (skipped), labels, annotations, envFrom, the optional OAuth
# ConfigMap that does not exist, security contexts, the /tmp emptyDir with the secret key mounted inside.
# Added: an init container that renders the page, an istio-like native sidecar, a preStop delay,
# downward API env. The app serves only after 1.5 s, so readiness comes late.
FRONTEND = f"""\
apiVersion: v1
kind: Service
metadata:
  labels: {{application: bank-of-anthos, tier: web}}
  name: frontend
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
  selector: {{app: frontend, application: bank-of-anthos}}
  type: LoadBalancer
---
apiVersion: apps/v1
kind: Deployment
metadata:
  labels: {{application: bank-of-anthos, tier: web}}
  name: frontend
spec:
  selector:
    matchLabels: {{app: frontend, application: bank-of-anthos}}
  template:
    metadata:
      annotations:
        proxy.istio.io/config: '{{ "holdApplicationUntilProxyStarts": true }}'
      labels: {{app: frontend, application: bank-of-anthos, tier: web}}
    spec:
      initContainers:
      - name: render
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'echo "written-by-init as $(id -u)" > /www/index.html']
        volumeMounts: [{{name: www, mountPath: /www}}]
      - name: proxy
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        restartPolicy: Always
        command: [sh, -c, "trap 'exit 0' TERM; echo proxy-up > /side/index.html; httpd -p 15000 -h /side; \
while true; do sleep 0.2; done"]
        volumeMounts: [{{name: side, mountPath: /side}}]
      containers:
      - name: front
        image: {TEST_IMAGE}
        imagePullPolicy: IfNotPresent
        command: [sh, -c, "trap 'exit 0' TERM; sleep 1.5; httpd -p 8080 -h /www; while true; do sleep 0.2; done"]
        env:
        - {{name: VERSION, value: v0.6.10}}
        - {{name: PORT, value: "8080"}}
        - name: DEFAULT_USERNAME
          valueFrom: {{configMapKeyRef: {{key: DEMO_LOGIN_USERNAME, name: demo-data-config}}}}
        - name: REGISTERED_OAUTH_CLIENT_ID
          valueFrom: {{configMapKeyRef: {{key: DEMO_OAUTH_CLIENT_ID, name: oauth-config, optional: true}}}}
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: NODE_NAME, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
        - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
        envFrom:
        - configMapRef: {{name: environment-config}}
        - configMapRef: {{name: service-api-config}}
          prefix: API_
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /index.html, port: http}}
          periodSeconds: 1
        lifecycle:
          preStop: {{sleep: {{seconds: 2}}}}
        resources:
          limits: {{cpu: 250m, memory: 128Mi}}
          requests: {{cpu: 100m, memory: 64Mi}}
        securityContext:
          allowPrivilegeEscalation: false
          capabilities: {{drop: [all]}}
          privileged: false
          readOnlyRootFilesystem: true
        volumeMounts:
        - {{mountPath: /tmp, name: tmp}}
        - {{mountPath: /tmp/.ssh, name: publickey, readOnly: true}}
        - {{mountPath: /www, name: www}}
        - {{mountPath: /etc/frontend, name: scripts}}
      securityContext:
        fsGroup: 1000
        runAsGroup: 1000
        runAsNonRoot: true
        runAsUser: 1000
      serviceAccountName: bank-of-anthos
      terminationGracePeriodSeconds: 5
      volumes:
      - {{name: tmp, emptyDir: {{}}}}
      - {{name: www, emptyDir: {{}}}}
      - {{name: side, emptyDir: {{}}}}
      - name: publickey
        secret:
          secretName: jwt-key
          items: [{{key: jwtRS256.key.pub, path: publickey}}]
      - name: scripts
        configMap:
          name: frontend-scripts
          items: [{{key: ready.sh, path: bin/ready, mode: 0440}}]
"""


FRONT = ("frontend", "front")


def uses(key: str) -> str:
    return f"env: [{{name: ADDR, valueFrom: {{configMapKeyRef: {{name: service-api-config, key: {key}}}}}}}]"


def inspect(cid: str) -> dict[str, Any]:
    with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
        info: dict[str, Any] = client.api.inspect_container(cid)
        return info


def exec_out(cid: str, script: str) -> str:
    """What ``script`` prints inside the container (as the container's user)."""
    with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
        out: bytes = client.containers.get(cid).exec_run(["sh", "-c", script]).output
        return out.decode()


def containers(node: str) -> dict[tuple[str, str], str]:
    """Running container ids by (workload, container name)."""
    return {
        (r["Labels"]["gitops.name"], r["Labels"]["gitops.container"]): r["Id"] for r in managed(node, state="running")
    }


def pod_ip(app: str) -> str:
    """The address of the pod network the app container joined (its sidecar's)."""
    mode = inspect(app)["HostConfig"]["NetworkMode"]
    assert mode.startswith("container:"), mode
    (network,) = inspect(mode.removeprefix("container:"))["NetworkSettings"]["Networks"].values()
    ip: str = network["IPAddress"]
    return ip


def serves(app: str) -> bool:
    """Whether the app container answers its page over the pod network from the host."""
    try:
        with urllib.request.urlopen(f"http://{pod_ip(app)}:8080/index.html", timeout=0.5) as resp:
            return bool(resp.status == 200)
    except (OSError, KeyError, docker.errors.NotFound):
        return False


class FrontendSampler(Periodic):
    """Which frontend app containers run and which of them serve, every 0.1 s."""

    period = 0.1

    def __init__(self, node: str):
        super().__init__()
        self.node = node
        self.samples: list[tuple[float, dict[str, bool]]] = []

    def sample(self) -> None:
        rows = managed(self.node, state="running")
        apps = [r["Id"] for r in rows if (r["Labels"]["gitops.name"], r["Labels"]["gitops.container"]) == FRONT]
        self.samples.append((time.monotonic(), {cid: serves(cid) for cid in apps}))


def settle(rec: Reconciler, repo: Repo, timeout: float = 30.0) -> None:
    """Run passes (probes need time between them) until nothing is left to do and every workload is ready."""

    def done() -> bool:
        report = rec.run_pass()
        ready = all(r["state"] == "ready" for r in repo.status(rec.node)["workloads"])
        # A container behind a Service drains before it is removed: that is still work left to do.
        quiet = not (report.plan.actions or report.plan.waiting or report.plan.draining)
        return ready and quiet and rec.executor.idle()

    wait_for(done, timeout=timeout, interval=0.3, what="the node to converge")


def test_a_bank_of_anthos_frontend_runs_unchanged_and_rolls_on_its_config(
    repo: Repo, node_name: str, tmp_path: Path
) -> None:
    secret = tmp_path / "secrets" / "default" / "jwt-key" / "jwtRS256.key.pub"
    secret.parent.mkdir(parents=True)
    secret.write_text(PUBLIC_KEY)
    repo.write("boa/config.yaml", CONFIG % "ledgerwriter:8080")
    repo.write("boa/frontend.yaml", FRONTEND)
    repo.write(
        "boa/ledgerwriter.yaml", deployment("ledgerwriter", engine=True, container=uses("TRANSACTIONS_API_ADDR"))
    )
    repo.write("boa/balancereader.yaml", deployment("balancereader", engine=True, container=uses("BALANCES_API_ADDR")))
    repo.commit("bank of anthos")
    rec = make_reconciler(str(repo.path), node_name, tmp_path / "state", interval=1)
    # Probes run as in the daemon, so readiness gates the rollout.
    rec.prober = prober = Prober(rec.runtime, lambda: None)
    prober.start()
    try:
        settle(rec, repo)
        assert {r["name"]: r["state"] for r in repo.status(node_name)["workloads"]} == {
            "frontend": "ready",
            "ledgerwriter": "ready",
            "balancereader": "ready",
        }
        before = containers(node_name)
        # The init container is gone once done; the sidecar runs beside the app.
        assert {c for (w, c) in before if w == "frontend"} == {"front", "proxy"}
        app = before[FRONT]

        # Security context, as Docker has it and as the process inside sees it.
        host = inspect(app)["HostConfig"]
        assert (host["CapDrop"], host["SecurityOpt"], host["ReadonlyRootfs"]) == (["ALL"], ["no-new-privileges"], True)
        status = dict(line.split(":\t", 1) for line in exec_out(app, "cat /proc/1/status").splitlines())
        assert (status["CapEff"], status["CapBnd"], status["NoNewPrivs"]) == ("0" * 16, "0" * 16, "1")
        assert exec_out(app, "id").split() == ["uid=1000", "gid=1000", "groups=1000"]
        assert exec_out(app, "touch /x 2>/dev/null || echo read-only; touch /tmp/x && echo tmp-writable").split() == [
            "read-only",
            "tmp-writable",
        ]

        # Env: both envFrom ConfigMaps (one prefixed), a key ref, a missing optional one, the downward API.
        env = dict(line.split("=", 1) for line in exec_out(app, "env").splitlines() if "=" in line)
        ip = pod_ip(app)
        assert {k: env.get(k) for k in ("VERSION", "DEFAULT_USERNAME", "REGISTERED_OAUTH_CLIENT_ID")} == {
            "VERSION": "v0.6.10",
            "DEFAULT_USERNAME": "testuser",
            "REGISTERED_OAUTH_CLIENT_ID": None,
        }
        assert {k: v for k, v in env.items() if k.startswith(("LOCAL_", "PUB_", "API_"))} == {
            "LOCAL_ROUTING_NUM": "883745000",
            "PUB_KEY_PATH": "/tmp/.ssh/publickey",
            "API_TRANSACTIONS_API_ADDR": "ledgerwriter:8080",
            "API_BALANCES_API_ADDR": "balancereader:8080",
        }
        assert (env["POD_NAME"], env["NODE_NAME"], env["POD_IP"]) == ("frontend-0", node_name, ip)
        assert f"inet {ip}/" in exec_out(app, "ip -4 addr show eth0")

        # Volumes: the secret key inside the /tmp emptyDir, the configMap item renamed with its mode
        # (made readable by all under fsGroup), the emptyDir given to the fsGroup.
        assert exec_out(app, "cat $PUB_KEY_PATH") == PUBLIC_KEY
        files = "/tmp/.ssh/publickey /etc/frontend/bin/ready /www /www/index.html"
        assert exec_out(app, f"stat -c '%a %n' {files}; find /etc/frontend").splitlines() == [
            "644 /tmp/.ssh/publickey",
            "444 /etc/frontend/bin/ready",
            "2775 /www",
            "644 /www/index.html",
            "/etc/frontend",
            "/etc/frontend/bin",
            "/etc/frontend/bin/ready",
        ]
        assert exec_out(app, "stat -c '%u:%g' /www /www/index.html").split() == ["0:1000", "1000:1000"]
        # The init container's page, served by the app: from inside (by the mounted script) and over the pod network.
        assert exec_out(app, "sh /etc/frontend/bin/ready") == "written-by-init as 1000\n"
        with urllib.request.urlopen(f"http://{ip}:8080/index.html", timeout=2) as resp:
            assert resp.read() == b"written-by-init as 1000\n"
        # The sidecar runs beside the app, in the same network namespace.
        assert exec_out(app, "wget -qO- http://127.0.0.1:15000/index.html") == "proxy-up\n"

        # One key of one ConfigMap changes: its two users roll, readiness-gated; the other workload stays.
        with FrontendSampler(node_name) as rollout:
            repo.put("boa/config.yaml", CONFIG % "ledgerwriter-v2:8080")
            settle(rec, repo)
        after = containers(node_name)
        assert after["balancereader", "main"] == before["balancereader", "main"]
        assert after["ledgerwriter", "main"] != before["ledgerwriter", "main"]
        new = after[FRONT]
        assert new != app and exec_out(new, "echo $API_TRANSACTIONS_API_ADDR") == "ledgerwriter-v2:8080\n"
        assert exec_out(after["ledgerwriter", "main"], "echo $ADDR") == "ledgerwriter-v2:8080\n"
        # Some frontend served at every sample; the new one ran unready while the old kept serving.
        assert all(any(seen.values()) for _, seen in rollout.samples), rollout.samples
        assert any(seen.get(app) and seen.get(new) is False for _, seen in rollout.samples), rollout.samples
        assert rollout.samples[-1][1] == {new: True}

        # Removal waits for the preStop sleep (2 s) and stays inside the grace period (5 s).
        with FrontendSampler(node_name) as removal:
            began = time.monotonic()
            repo.remove("boa/frontend.yaml")
            settle(rec, repo)
        gone = next(t for t, seen in removal.samples if not seen) - began
        assert 2.0 <= gone < 5.0, gone
        assert not {c for (w, c) in containers(node_name) if w == "frontend"}
    finally:
        prober.stop()
        rec.close()
