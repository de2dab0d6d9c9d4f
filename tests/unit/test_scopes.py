"""Team namespaces, pure parts: attributing a file's change to scopes, who may change which, holds."""

from __future__ import annotations

from gitops.manifests.load import combine, parse_file
from gitops.manifests.scopes import CLUSTER_SCOPE, changed_scopes, compose, file_scopes
from gitops.model import ManifestSet
from gitops.verify import Change, CommitCheck, Hold, TeamRules, walk
from tests.builders import autoscaler, claim, deployment


def in_ns(text: str, namespace: str) -> str:
    """A builder manifest moved into ``namespace``."""
    return text.replace("metadata:\n", f"metadata:\n  namespace: {namespace}\n", 1)


CLUSTER = "apiVersion: gitops/v1\nkind: Cluster\nspec:\n  cordoned: [n1]\n"


def scopes(*docs: str) -> dict[str, str] | None:
    return file_scopes("---\n".join(docs).encode())


def changed(before: str | None, after: str | None) -> set[str]:
    def read(text: str | None) -> dict[str, str] | None:
        return file_scopes(None if text is None else text.encode())

    return set(changed_scopes(read(before), read(after)))


def test_file_scopes_by_namespace_list_items_and_cluster() -> None:
    items = "apiVersion: v1\nkind: List\nitems:\n- " + in_ns(deployment("b"), "team-b").replace("\n", "\n  ")
    found = scopes(in_ns(deployment("a"), "team-a"), deployment("d"), CLUSTER, items)
    assert found is not None and set(found) == {"team-a", "default", CLUSTER_SCOPE, "team-b"}
    # A namespace that is not a string reads as default (as the loader's keys); an invalid name runs nothing.
    assert set(scopes(in_ns(deployment("x"), "7")) or {}) == {"default"}
    assert scopes(in_ns(deployment("x"), "Not_A_Label")) == {}


def test_file_scopes_none_when_the_loader_cannot_tell_either() -> None:
    assert file_scopes(b"a: [unclosed\n") is None
    assert scopes("- just a list") is None
    assert scopes("apiVersion: apps/v1\nkind: Deployment\nmetadata: {}\n") is None  # no name
    assert file_scopes(None) == {}


def test_comments_formatting_and_document_order_change_no_scope() -> None:
    a, b = in_ns(deployment("a"), "team-a"), in_ns(deployment("b"), "team-b")
    assert changed(f"{a}---\n{b}", f"# reordered\n{b}---\n{a}") == set()


def test_added_removed_and_edited_documents() -> None:
    a, b = in_ns(deployment("a"), "team-a"), in_ns(deployment("b"), "team-b")
    assert changed(None, f"{a}---\n{b}") == {"team-a", "team-b"}  # file added
    assert changed(f"{a}---\n{b}", None) == {"team-a", "team-b"}  # file removed
    assert changed(a, f"{a}---\n{b}") == {"team-b"}  # document added to a multi-document file
    assert changed(f"{a}---\n{b}", b) == {"team-a"}  # document removed
    edited = in_ns(deployment("b", 3), "team-b")
    assert changed(f"{a}---\n{b}", f"{a}---\n{edited}") == {"team-b"}  # one document of two edited
    assert changed(CLUSTER, CLUSTER.replace("n1", "n2")) == {CLUSTER_SCOPE}


def test_workload_moved_between_namespaces_changes_both() -> None:
    assert changed(in_ns(deployment("w"), "team-a"), in_ns(deployment("w"), "team-b")) == {"team-a", "team-b"}


def test_file_that_stops_parsing_changes_every_scope_of_the_readable_side() -> None:
    both = f"{in_ns(deployment('a'), 'team-a')}---\n{in_ns(deployment('b'), 'team-b')}"
    assert changed(both, "a: [broken\n") == {"team-a", "team-b"}
    # Broken to broken changes nothing that runs (the last valid version is kept) ...
    assert changed("a: [broken\n", "b: [broken too\n") == set()
    # ... and the next readable version counts whole, so nothing slips in behind a broken one.
    assert changed("a: [broken\n", in_ns(deployment("b"), "team-b")) == {"team-b"}


def check(sha: str, signer: str, code: str = "G") -> CommitCheck:
    return CommitCheck(sha, code, signer, "SHA256:k" if code != "N" else "")


RULES = TeamRules({"team-a": ["alice@example.com"], "team-b": ["bob@example.com"]})


def test_rules_per_namespace_cluster_and_unlisted() -> None:
    alice, ops = check("c1", "alice@example.com"), check("c2", "ops@example.com")
    assert RULES.refusal("team-a", alice) is None
    why = RULES.refusal("team-b", alice)
    assert why == "alice@example.com may not change namespace team-b (allowed: bob@example.com)"
    assert RULES.refusal("default", alice) is None  # no entry: any trusted signer
    assert RULES.refusal(CLUSTER_SCOPE, ops) is None  # a signer restricted to no namespace
    assert "restricted to namespaces" in str(RULES.refusal(CLUSTER_SCOPE, alice))
    assert RULES.refusal("team-a", check("c3", "", "N")) == "not signed"
    # OpenPGP signers are user ids: the email inside matches a principal.
    assert RULES.refusal("team-a", check("c4", "Alice <alice@example.com>")) is None


def test_walk_holds_at_the_revision_before_and_a_later_authorised_commit_moves_on() -> None:
    changes = [
        Change(check("c1", "alice@example.com"), "c0", frozenset({"team-a", "team-b"})),
        Change(check("c2", "alice@example.com"), "c1", frozenset({"team-b"})),
        Change(check("c3", "alice@example.com"), "c2", frozenset({"team-a"})),
    ]
    held = walk(changes, RULES, {})
    assert held == {"team-b": Hold("c0", "c1", "alice@example.com", RULES.refusal("team-b", changes[0].check) or "")}
    later = Change(check("c4", "bob@example.com"), "c3", frozenset({"team-b"}))
    assert walk([later], RULES, held) == {}
    # An unsigned commit authorises nothing it touches, and holds nothing it does not touch.
    unsigned = Change(check("c5", "", "N"), "c4", frozenset({"team-a"}))
    assert set(walk([unsigned], RULES, {})) == {"team-a"}


def test_compose_takes_held_scopes_from_their_revision() -> None:
    def mset(replicas: int) -> ManifestSet:
        text = f"{in_ns(deployment('a', replicas), 'team-a')}---\n{in_ns(deployment('b', replicas), 'team-b')}"
        return combine({"apps.yaml": parse_file("apps.yaml", text.encode())})

    old, new = mset(1), mset(3)
    out = compose(new, {"team-b": old})
    assert {w.key: w.replicas for w in out.workloads} == {"team-a/Deployment/a": 3, "team-b/Deployment/b": 1}
    assert compose(new, {}) is new


def test_a_held_scope_keeps_its_claims_so_a_refused_commit_deletes_no_volume() -> None:
    def mset(*names: str) -> ManifestSet:
        text = "---\n".join(in_ns(claim(name), "team-b") for name in names)
        return combine({"claims.yaml": parse_file("claims.yaml", text.encode())})

    old, new = mset("data", "logs"), mset("logs")
    assert [c.name for c in compose(new, {"team-b": old}).claims] == ["data", "logs"]
    assert [c.name for c in compose(new, {}).claims] == ["logs"]


def test_a_held_scope_keeps_its_autoscalers() -> None:
    web = deployment("web", container="resources: {requests: {cpu: 100m}}")

    def mset(high: int) -> ManifestSet:
        text = f"{in_ns(web, 'team-b')}---\n{in_ns(autoscaler(max_replicas=high), 'team-b')}"
        return combine({"apps.yaml": parse_file("apps.yaml", text.encode())})

    old, new = mset(3), mset(9)
    assert [a.max_replicas for a in compose(new, {"team-b": old}).autoscalers] == [3]
    assert [a.max_replicas for a in compose(new, {"team-a": old}).autoscalers] == [9]
