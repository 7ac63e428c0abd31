"""The approval gate (RETRAIN_APPROVAL=required): a person approves each promotion in the
Prefect UI, after a canary's bake or, with a direct rollout, instead of it.

The `approval` flow run (`approval-<dataset>-<version>`) pauses with a form: approve or
reject, a name (Prefect OSS has no users) and a comment, described by the comparison (holdout
AUROCs, the bootstrap interval, the canary's guards). It waits in its own process, so the
nightly run that asked ends at once on a server; without one the caller waits. No answer
within RETRAIN_APPROVAL_HOURS keeps the champion: this flow owns that timeout, writes `kept`,
stops a canary and raises no failure alert. The run is its own flow, so that whatever a
resume replays is this small flow alone.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from flows.hooks import FAILURE_HOOKS, emit_model_event, notify
from flows.locking import promotion_section
from flows.rollout import Handed, start_elsewhere
from retrain.config.settings import Settings, load_settings
from retrain.errors import RetrainError
from retrain.serving.bake import Answer, BakeEnd
from tasks.rollout import describe_for_approval, settle_approval

APPROVAL_DEPLOYMENT = "approval/approval"
POLL_SECONDS = 10


class ApprovalForm(RunInput):
    """The resume form of a paused approval run."""

    decision: Literal["approve", "reject"] = Field(description="promote the version, or not")
    name: str = Field(min_length=1, max_length=100, description="who decides")
    comment: str = Field("", max_length=1000, description="why, for the promotions audit")


def approval_run_name() -> str:
    try:
        dataset = load_settings().dataset
    except RetrainError:
        dataset = "unknown"
    version = flow_run.parameters.get("version", "unknown")
    return f"approval-{dataset}-{version}"


@flow(name="approval", flow_run_name=approval_run_name, **FAILURE_HOOKS)
def approval(version: str, attempt_id: int | None = None) -> BakeEnd:
    """Wait for a person to approve or reject promoting `version`; settle its promotion.

    Args:
        version: the registered version awaiting approval.
        attempt_id: its `promotions` row (a canary's rollout knows its own).
    """
    settings = load_settings()
    text = describe_for_approval(settings, version, attempt_id)
    create_markdown_artifact(text, key="approval", description="what the approval decides")
    hours = settings.approval_hours
    form = ApprovalForm.with_initial_data(description=text, decision="approve")
    logger = get_run_logger()
    logger.info(f"waiting up to {hours:g} h for a person: Resume this run in the Prefect UI")
    answer = wait_for_answer(form, hours)
    with promotion_section(settings):
        end = settle_approval(settings, version, attempt_id, answer)
    logger.info(end.describe())
    announce_approval(settings, version, end, answer)
    return end


def wait_for_answer(form: type[ApprovalForm], hours: float) -> Answer | None:
    """The person's answer, None when the wait timed out (the run then settles as kept)."""
    from prefect.exceptions import FlowPauseTimeout

    timeout = max(int(hours * 3600), 1)
    try:
        given = pause_flow_run(wait_for_input=form, timeout=timeout, key="approval",
                               poll_interval=min(POLL_SECONDS, max(timeout // 4, 1)))  # fmt: skip
    except FlowPauseTimeout:
        running_again()
        return None
    return Answer(given.decision == "approve", given.name, given.comment)


def running_again() -> None:
    """Put this run back to Running after its pause timed out: the server refuses a resume
    then, and a run that completes from Paused is failed ("never resumed"), which would send a
    failure alert for what is a normal outcome (nobody answered: the champion stays)."""
    from prefect import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Running(), force=True)


def announce_approval(
    settings: Settings, version: str, end: BakeEnd, answer: Answer | None
) -> None:
    """The event `retrain.model.approved` or `.rejected` (or `.kept` after no answer), and the
    notice of a new champion once it is served."""
    what = "kept" if answer is None else "approved" if answer.approve else "rejected"
    emit_model_event(settings, what, {"version": version, "reason": end.reason,
                                      "by": answer.name if answer else None})  # fmt: skip
    if end.deployed is not None:
        notify(settings, "approval", end.deployed.describe_swap(), end.deployed.version,
               end.deployed.previous_version)  # fmt: skip


def ask_approval(settings: Settings, version: str, attempt_id: int | None) -> Handed:
    """Start the approval as its own flow run of `approval` when the Prefect server has that
    deployment (the caller ends now); else wait for it here."""
    parameters = {"version": version, "attempt_id": attempt_id}
    name = start_elsewhere(APPROVAL_DEPLOYMENT, parameters)
    if name is None:
        end = approval(version, attempt_id)
        return Handed(end.describe(), end=end)
    return Handed(f"approval of version {version} awaits a person in flow run {name}", name)
