"""Replica states and reasons as status records carry them (docs/status.md), and their groups.

Records from peers are read as plain strings (a newer daemon may know more states);
these enums compare equal to those strings, so every reader uses the same groups.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """What one replica is doing."""

    STARTING = "starting"
    RUNNING = "running"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    EXITED = "exited"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    UNSCHEDULABLE = "unschedulable"


class Reason(StrEnum):
    """Why a replica is in its state, or why this node leaves it alone."""

    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    WAITING = "Waiting"
    ROLLING_UPDATE = "RollingUpdate"
    ROLLOUT_FAILED = "RolloutFailed"
    CRASH_LOOP = "CrashLoopBackOff"
    HANDOFF = "Handoff"
    NOT_PRUNED = "NotPruned"
    TERMINATING = "Terminating"
    UNSCHEDULABLE = "Unschedulable"
    COMPLETED = "Completed"
    BACKOFF_LIMIT = "BackoffLimitExceeded"
    DEADLINE = "DeadlineExceeded"
    SUSPENDED = "Suspended"
    # A podFailurePolicy rule ended the Job (FailJob), or just this index (FailIndex).
    POD_FAILURE_POLICY = "PodFailurePolicy"
    FAIL_INDEX = "FailIndex"
    # The index was still unfinished when its Job failed as a whole.
    JOB_FAILED = "JobFailed"
    # The node's admission policy (gitops/admission.py) denies it: never created.
    POLICY_DENIED = "PolicyDenied"
    INIT_CRASH_LOOP = "Init:CrashLoopBackOff"
    INIT_ERROR = "Init:Error"
    FAILED_POST_START = "FailedPostStartHook"
    # Its PersistentVolumeClaim's volume is on a node that is down: not started elsewhere on an empty one.
    VOLUME_NODE_LOST = "VolumeNodeLost"


# A container exists and may serve: counts as present for exclusivity and capacity.
RUNNING_STATES = frozenset({State.RUNNING, State.READY, State.STARTING, State.UNHEALTHY})
# Up, whether or not it passes readiness.
UP_STATES = frozenset({State.RUNNING, State.READY, State.UNHEALTHY})
# Done what it should: serving, or a Job index that finished well.
READY_STATES = frozenset({State.READY, State.SUCCEEDED})
# Job results: final for the spec they ran.
FINISHED_STATES = frozenset({State.SUCCEEDED, State.FAILED})
# An init container failed: the replica is recreated after its backoff, and a Job counts the try.
INIT_FAILURES = frozenset({Reason.INIT_CRASH_LOOP, Reason.INIT_ERROR})
# A copy its node only keeps until a successor is ready (or because the revision is broken): not a claim.
RELEASING_REASONS = frozenset({Reason.HANDOFF, Reason.NOT_PRUNED, Reason.TERMINATING})
