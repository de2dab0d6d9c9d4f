"""ConfigMaps from the repository: documents, references, resolution into spec hashes, the Secret refusal."""

from __future__ import annotations

import base64

from gitops.manifests.load import combine, parse_file
from gitops.model import EnvFrom, EnvVar, ManifestSet, SecretRef, VolumeFile, Workload
from tests.builders import config_map, deployment

APP = config_map("app", {"MODE": "prod", "LEVEL": "debug", "app.conf": "listen 80\n"})


def load(files: dict[str, str]) -> ManifestSet:
    return combine({name: parse_file(name, text.encode()) for name, text in files.items()})


def only(mset: ManifestSet) -> Workload:
    assert mset.errors == (), mset.errors
    (w,) = mset.workloads
    return w


def files_of(w: Workload) -> dict[str, tuple[bytes, int]]:
    (volume,) = w.pod.files
    return {f.path: (base64.b64decode(f.content or ""), f.mode) for f in volume.files}


def test_a_config_map_document_is_read_with_data_binary_data_and_immutable() -> None:
    text = config_map("app", {"a": "1"}, binary={"logo.png": base64.b64encode(b"\x89PNG\x00").decode()})
    result = parse_file("cm.yaml", (text + "immutable: true\n").encode())
    assert result.errors == () and result.warnings == ()
    (cm,) = result.config_maps
    assert (cm.key, cm.line, cm.data, cm.immutable) == ("default/ConfigMap/app", 1, {"a": "1"}, True)
    assert base64.b64decode(cm.binary_data["logo.png"]) == b"\x89PNG\x00"
    stamped = text.replace("  name: app\n", "  name: app\n  uid: 1234\n")
    assert parse_file("cm.yaml", stamped.encode()).warnings == (
        "cm.yaml:5: metadata.uid: ignored: set by a Kubernetes API server",
    )


def test_binary_data_must_be_base64_and_keys_unique() -> None:
    bad = parse_file("cm.yaml", config_map("app", {"k": "v"}, binary={"b": "not base64"}).encode())
    assert [e.field for e in bad.errors] == ["binaryData.b"]
    assert bad.invalid_keys == ("default/ConfigMap/app",)
    both = parse_file("cm.yaml", config_map("app", {"k": "v"}, binary={"k": "AA=="}).encode())
    assert "in both data and binaryData" in str(both.errors[0])


def test_a_secret_document_is_refused_with_where_to_put_it_instead() -> None:
    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: hunter2}\n"
    (error,) = parse_file("secret.yaml", text.encode()).errors
    assert error.line == 1
    assert "secrets live on the nodes, never in Git" in error.message
    assert "<secrets_dir>/<namespace>/<name>/<key>" in str(error.hint)


def test_config_map_key_ref_resolves_to_the_value() -> None:
    container = """\
        env:
        - {name: MODE, valueFrom: {configMapKeyRef: {name: app, key: MODE}}}
        - {name: GONE, valueFrom: {configMapKeyRef: {name: app, key: nope, optional: true}}}
        - {name: NONE, valueFrom: {configMapKeyRef: {name: other, key: x, optional: true}}}
        """
    w = only(load({"cm.yaml": APP, "web.yaml": deployment(container=container)}))
    # As the kubelet does, an optional key that is missing leaves the variable unset.
    assert w.pod.containers[0].env == (EnvVar(name="MODE", value="prod"),)


def test_a_missing_config_map_or_key_names_the_file_line_and_field() -> None:
    container = "env: [{name: MODE, valueFrom: {configMapKeyRef: {name: app, key: nope}}}]"
    mset = load({"cm.yaml": APP, "web.yaml": deployment(container=container)})
    (error,) = mset.errors
    assert (error.file, error.line, error.field) == (
        "web.yaml",
        13,
        "spec.template.spec.containers[0].env[0].valueFrom",
    )
    assert "has no key 'nope'" in error.message and "cm.yaml:1" in error.message
    # The workload is invalid, so its running containers are kept (not removed) and it is not run anew.
    assert mset.workloads == () and mset.invalid_keys == ("default/Deployment/web",)
    missing = load({"web.yaml": deployment(container=container)})
    assert "ConfigMap 'app' is not in namespace 'default'" in missing.errors[0].message
    assert "optional: true" in str(missing.errors[0].hint)


def test_config_maps_are_namespaced() -> None:
    container = "env: [{name: MODE, valueFrom: {configMapKeyRef: {name: app, key: MODE}}}]"
    other = config_map("app", {"MODE": "x"}, namespace="team-b")
    mset = load({"cm.yaml": other, "web.yaml": deployment(container=container)})
    assert mset.workloads == () and "not in namespace 'default'" in mset.errors[0].message


def test_env_from_keeps_order_prefix_and_optional() -> None:
    container = """\
        envFrom:
        - {configMapRef: {name: app}, prefix: APP_}
        - {secretRef: {name: db}}
        - {configMapRef: {name: absent, optional: true}}
        """
    w = only(load({"cm.yaml": APP, "web.yaml": deployment(container=container)}))
    assert w.pod.containers[0].env_from == (
        EnvFrom(prefix="APP_", values=(("LEVEL", "debug"), ("MODE", "prod"), ("app.conf", "listen 80\n"))),
        EnvFrom(secret=SecretRef(name="db")),
    )
    bad = load({"web.yaml": deployment(container="envFrom: [{configMapRef: {name: app}, secretRef: {name: db}}]")})
    assert "exactly one of configMapRef and secretRef" in bad.errors[0].message


def test_config_map_volume_items_modes_and_sub_path() -> None:
    pod = """\
        volumes:
        - name: conf
          configMap:
            name: app
            defaultMode: 0440
            items: [{key: app.conf, path: nginx/app.conf}, {key: MODE, path: mode, mode: 0600}]
        """
    container = "volumeMounts: [{name: conf, mountPath: /etc/app}, {name: conf, mountPath: /mode, subPath: mode}]"
    w = only(load({"cm.yaml": APP, "web.yaml": deployment(pod=pod, container=container)}))
    assert files_of(w) == {"nginx/app.conf": (b"listen 80\n", 0o440), "mode": (b"prod", 0o600)}
    mounts = w.pod.containers[0].mounts
    assert [(m.type, m.source, m.read_only, m.sub_path) for m in mounts] == [
        ("files", "conf", True, None),
        ("files", "conf", True, "mode"),
    ]


def test_a_whole_config_map_volume_has_every_key_binary_data_included() -> None:
    cm = config_map("app", {"a.txt": "A"}, binary={"b.bin": base64.b64encode(b"\x00\xff").decode()})
    pod = "volumes: [{name: conf, configMap: {name: app}}]"
    w = only(
        load({"cm.yaml": cm, "web.yaml": deployment(pod=pod, container="volumeMounts: [{name: conf, mountPath: /c}]")})
    )
    assert files_of(w) == {"a.txt": (b"A", 0o644), "b.bin": (b"\x00\xff", 0o644)}


def test_volume_items_with_missing_keys_fail_unless_optional() -> None:
    mount = "volumeMounts: [{name: conf, mountPath: /c}]"
    pod = "volumes: [{name: conf, configMap: {name: app, items: [{key: nope, path: x}]}}]"
    mset = load({"cm.yaml": APP, "web.yaml": deployment(pod=pod, container=mount)})
    assert mset.errors[0].field == "spec.template.spec.volumes[0].configMap.items[0]"
    optional = "volumes: [{name: conf, configMap: {name: other, optional: true}}]"
    w = only(load({"web.yaml": deployment(pod=optional, container=mount)}))
    assert w.pod.files[0].files == ()


def test_secret_and_projected_volumes_reference_the_node_store() -> None:
    pod = """\
        volumes:
        - {name: tls, secret: {secretName: tls, defaultMode: 0400}}
        - name: both
          projected:
            sources:
            - {configMap: {name: app, items: [{key: MODE, path: mode}]}}
            - {secret: {name: db, items: [{key: password, path: pw, mode: 0600}], optional: true}}
        """
    container = "volumeMounts: [{name: tls, mountPath: /tls}, {name: both, mountPath: /both}]"
    w = only(load({"cm.yaml": APP, "web.yaml": deployment(pod=pod, container=container)}))
    tls, both = w.pod.files
    assert tls.files == (VolumeFile(mode=0o400, secret=SecretRef(name="tls")),)
    assert both.files == (
        VolumeFile(path="mode", content=base64.b64encode(b"prod").decode()),
        VolumeFile(path="pw", mode=0o600, secret=SecretRef(name="db", key="password", optional=True)),
    )


def test_refused_volume_sources_say_what_to_do() -> None:
    pod = "volumes: [{name: t, projected: {sources: [{downwardAPI: {items: []}}]}}]"
    (error,) = load({"web.yaml": deployment(pod=pod)}).errors
    assert error.field == "spec.template.spec.volumes[0].projected.sources[0].downwardAPI"
    assert "ConfigMap" in error.message


def test_a_key_change_changes_the_spec_hash_of_exactly_its_users() -> None:
    users = {
        "key.yaml": deployment(
            "key", container="env: [{name: M, valueFrom: {configMapKeyRef: {name: app, key: MODE}}}]"
        ),
        "all.yaml": deployment("all", container="envFrom: [{configMapRef: {name: app}}]"),
        "vol.yaml": deployment(
            "vol",
            pod="volumes: [{name: c, configMap: {name: app, items: [{key: MODE, path: m}]}}]",
            container="volumeMounts: [{name: c, mountPath: /c}]",
        ),
        "other-key.yaml": deployment(
            "other-key", container="env: [{name: L, valueFrom: {configMapKeyRef: {name: app, key: LEVEL}}}]"
        ),
        "none.yaml": deployment("none"),
    }
    before = {w.name: w.spec_hash for w in load({"cm.yaml": APP, **users}).workloads}
    changed = config_map("app", {"MODE": "staging", "LEVEL": "debug", "app.conf": "listen 80\n"})
    after = {w.name: w.spec_hash for w in load({"cm.yaml": changed, **users}).workloads}
    assert sorted(name for name in before if before[name] != after[name]) == ["all", "key", "vol"]


def test_a_workload_without_config_maps_keeps_its_hash() -> None:
    assert (
        only(load({"web.yaml": deployment()})).spec_hash
        == only(load({"web.yaml": deployment(), "cm.yaml": APP})).spec_hash
    )


def test_a_config_map_defined_twice_is_an_error_and_its_users_wait() -> None:
    container = "env: [{name: M, valueFrom: {configMapKeyRef: {name: app, key: MODE}}}]"
    mset = load({"a.yaml": APP, "b.yaml": APP, "web.yaml": deployment(container=container)})
    assert sum("defined more than once" in e.message for e in mset.errors) == 2
    assert "did not validate" in mset.errors[-1].message
    assert set(mset.invalid_keys) == {"default/ConfigMap/app", "default/Deployment/web"}


def test_expanding_a_config_map_variable_in_args_is_an_error() -> None:
    container = """\
        env: [{name: M, valueFrom: {configMapKeyRef: {name: app, key: MODE}}}]
        args: ["--mode=$(M)"]
        """
    (error,) = load({"cm.yaml": APP, "web.yaml": deployment(container=container)}).errors
    assert error.field == "spec.template.spec.containers[0].args[0]" and "ConfigMap" in error.message


def test_two_items_writing_one_path_are_an_error() -> None:
    pod = """\
        volumes:
        - name: both
          projected:
            sources:
            - {configMap: {name: app, items: [{key: MODE, path: x}]}}
            - {secret: {name: db, items: [{key: password, path: x}]}}
        """
    (error,) = load({"cm.yaml": APP, "web.yaml": deployment(pod=pod)}).errors
    assert error.field == "spec.template.spec.volumes[0]" and "writes 'x' twice" in error.message
