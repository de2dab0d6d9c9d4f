"""Spec hashes survive daemon upgrades that add fields: a new default must not roll every workload."""

from __future__ import annotations

from gitops import model


class PodSpecWithNewField(model.PodSpec):
    """What a later version's PodSpec looks like: one more field, at its default here."""

    share_process_namespace: bool = False


def test_a_field_added_at_its_default_keeps_the_hash() -> None:
    pod = model.PodSpec(containers=(model.ContainerSpec(name="main", image="img:1"),))
    later = PodSpecWithNewField(containers=pod.containers)
    assert model.spec_hash(later) == model.spec_hash(pod)
    assert model.spec_hash(later.model_copy(update={"share_process_namespace": True})) != model.spec_hash(pod)
