"""Flow hooks and UI output shared by the flows: alerts on failure, notices on promotion,
Prefect events that automations can match, and artifacts a person reads in the UI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prefect import get_client, get_run_logger
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
)
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
)
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.logging.loggers import flow_run_logger
from prefect.runtime import deployment
from prefect.runtime import flow_run as current_run
from prefect.settings import PREFECT_UI_URL

from retrain import links
from retrain.config.settings import Settings, load_settings
from retrain.errors import RetrainError
from retrain.io.alerts import Alert, send_alert
from retrain.links import flow_run_url
from retrain.serving import model_server

if TYPE_CHECKING:  # every stage imports the hooks: MLflow and the models load where used
    from retrain.monitoring.check_drift import BatchDrift
    from retrain.promotion.promote import PromotionReport
    from retrain.training.tuning import TuneReport

STAGE_ATTRIBUTE = "retrain_stage"
NIGHTLY_DEPLOYMENT = "retrain/retrain-nightly"


def run_name(stage: str) -> Callable[[], str]:
    """A flow run name that says what and when, for the Prefect UI's run lists: a
    deployment's own run leads with the deployment (`retrain-nightly-iris-2026-12-01-0200`,
    timed by its scheduled start, so the name `name_scheduled_runs` gave it at creation is
    the one it keeps), any other run with its stage (`tune-iris-2026-12-01-0201`, also a
    subflow of a deployment's run)."""

    def name() -> str:
        try:
            dataset = load_settings().dataset
        except RetrainError:  # the flow itself reports bad settings
            dataset = "unknown"
        context = FlowRunContext.get()
        if context is not None and context.flow_run.deployment_id is not None:
            return compose_run_name(deployment.name, dataset, current_run.scheduled_start_time)
        return compose_run_name(stage, dataset, datetime.now(UTC))

    return name


def compose_run_name(lead: str, dataset: str, when: datetime) -> str:
    """`<lead>-<dataset>-<UTC date>-<HHMM>`."""
    return f"{lead}-{dataset}-{when.astimezone(UTC):%Y-%m-%d-%H%M}"


def name_scheduled_runs(deployment_name: str, dataset: str) -> int:
    """Give the deployment's scheduled runs the name they will carry once they start (the
    scheduler creates them with a random one); returns how many there are."""
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment_name)
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type={"any_": ["SCHEDULED"]})),
        )
        for run in runs:
            wanted = compose_run_name(found.name, dataset, run.expected_start_time)
            if run.name != wanted:
                client.update_flow_run(run.id, name=wanted)
    return len(runs)


def keep_schedule_named(settings: Settings) -> None:
    """After a deployment's run: name the nightly runs the scheduler has added since (a
    failure is a warning; the night's outcome stands)."""
    if deployment.id is None:
        return
    try:
        name_scheduled_runs(NIGHTLY_DEPLOYMENT, settings.dataset)
    except Exception as err:
        get_run_logger().warning(f"scheduled nightly runs not renamed: {err}")


def mark_stage(err: BaseException, stage: str) -> None:
    """Remember which stage an exception came from (the first mark wins)."""
    if not hasattr(err, STAGE_ATTRIBUTE):
        setattr(err, STAGE_ATTRIBUTE, stage)


def _versions(settings: Settings) -> tuple[str | None, str | None]:
    try:
        from retrain.io import tracking

        client = tracking.make_client(settings.tracking_uri)
        aliases = tracking.read_aliases(client, settings.model_name)
        return aliases["challenger"], aliases["champion"]
    except Exception:  # the registry may be what failed; the alert still goes out
        return None, None


def alert_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Failure/crash hook of a top-level run: post an alert; a webhook that is down is
    logged, and the run keeps its own failure."""
    if flow_run.parent_task_run_id is not None:
        return
    logger = flow_run_logger(flow_run, flow)
    error = state.result(raise_on_failure=False) if state.is_failed() else None
    stage = getattr(error, STAGE_ATTRIBUTE, flow.name)
    reason = str(error) if isinstance(error, BaseException) else (state.message or state.name)
    settings = load_settings()
    challenger, champion = _versions(settings)
    alert = Alert(
        "failure", stage, reason[:2000], flow_run.name, str(flow_run.id), challenger, champion,
        flow_run_url(PREFECT_UI_URL.value(), str(flow_run.id)),
        version_links(settings, challenger=challenger, champion=champion),
    )  # fmt: skip
    problem = send_alert(settings.alert_url, alert)
    delivery = f"alert not delivered: {problem}" if problem else "alert sent"
    logger.error(f"{alert.text()} [{delivery}]")


def stop_spare_server(flow: Any, flow_run: Any, state: Any) -> None:
    """Cancellation/crash hook of deploy: stop the spare-port server the deploy started."""
    stopped = model_server.stop_recorded(load_settings().home, model_server.SPARE)
    if stopped:
        flow_run_logger(flow_run, flow).warning(
            f"stopped the spare-port server of version {stopped.version} (pid {stopped.pid})"
        )


FAILURE_HOOKS = {"on_failure": [alert_on_failure], "on_crashed": [alert_on_failure]}
DEPLOY_HOOKS = {
    "on_failure": [alert_on_failure],
    "on_crashed": [stop_spare_server, alert_on_failure],
    "on_cancellation": [stop_spare_server],
}


def announce_promotion(
    settings: Settings,
    report: PromotionReport,
    rolled_back: str | None = None,
    served: bool = True,
) -> None:
    """UI artifact, event, and (when promoted and `served`) a notice to the webhook, written
    once the outcome is final: a promotion whose deploy was rolled back is shown as such and
    sends no notice (the failure alert says it); one not yet served leaves the notice to the
    deploy that serves it."""
    create_markdown_artifact(
        promotion_table(report, rolled_back), key="promotion", description="champion vs challenger"
    )
    if rolled_back is not None:
        return
    if report.pending:  # the rollout announces its verdict
        emit_model_event(settings, "canary", {"challenger": report.challenger,
                                              "champion": report.champion})  # fmt: skip
        return
    emit_model_event(
        settings, "promoted" if report.promoted else "kept",
        {"challenger": report.challenger, "champion": report.champion,
         "reason": report.decision.reason},
    )  # fmt: skip
    if report.promoted and served:
        notify(settings, "promote", report.describe(), report.challenger, report.champion)
    elif report.promoted:
        get_run_logger().info("the promotion notice goes out when `retrain deploy` serves it")


def notify(
    settings: Settings,
    stage: str,
    reason: str,
    new: str | None,
    old: str | None,
    kind: str = "notice",
) -> None:
    """A `notice` to the webhook (a new champion served), or another kind (`degraded`); a
    webhook that is down is logged."""
    run_id = str(current_run.id) if current_run.id else None
    notice = Alert(
        kind, stage, reason, current_run.name, run_id, new, old,
        flow_run_url(PREFECT_UI_URL.value(), run_id),
        version_links(settings, challenger=new, champion=old),
    )  # fmt: skip
    problem = send_alert(settings.alert_url, notice)
    if problem:
        what = "promotion notice" if kind == "notice" else f"{kind} alert"
        get_run_logger().warning(f"{what} not delivered: {problem}")


def announce_rollback(settings: Settings, err: RetrainError) -> None:
    emit_model_event(settings, "rolled_back", {"reason": str(err)})


def emit_model_event(settings: Settings, what: str, payload: dict[str, Any]) -> None:
    """The Prefect event `retrain.model.<what>` about the registered model, for automations."""
    emit_event(
        f"retrain.model.{what}",
        resource={"prefect.resource.id": f"retrain.model.{settings.model_name}"},
        payload=payload,
    )


def shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def promotion_table(report: PromotionReport, rolled_back: str | None = None) -> str:
    decision = f"**Decision: {report.decision.name}**. {report.decision.reason}"
    if rolled_back is not None:
        decision = f"**Decision: rolled back** (promoted, then the deploy failed). {rolled_back}"
    return "\n".join(
        [
            "| model | version | holdout AUROC (`promotion_<model>_auroc`) |",
            "|---|---|---|",
            f"| challenger | {report.challenger} | {shown(report.challenger_auroc)} |",
            f"| champion | {report.champion or 'no champion yet'} | "
            f"{shown(report.champion_auroc) if report.champion else ''} |",
            "",
            decision,
        ]
    )


def mlflow_run_place(settings: Settings, experiment_id: str, run_id: str, label: str) -> str:
    """A run as a markdown link to the MLflow UI (RETRAIN_MLFLOW_UI_URL, or a tracking
    server), or in words for an embedded store nobody serves."""
    base = settings.mlflow_ui
    if base:
        return f"[{label} {run_id[:8]}]({links.run_url(base, experiment_id, run_id)})"
    uri = settings.tracking_uri
    return f"{label} `{run_id}` in `{uri}` (`mlflow ui --backend-store-uri {uri}`)"


def version_place(settings: Settings, version: str) -> str:
    """A registered version as a markdown link to its MLflow page, or in words."""
    base, name = settings.mlflow_ui, settings.model_name
    if base:
        return f"[{name} v{version}]({links.version_url(base, name, version)})"
    return f"`{name}` version {version}"


def version_links(settings: Settings, **versions: str | None) -> dict[str, str]:
    """`<role>_url` of each version's MLflow page (for an alert's `extra`), when a UI is known."""
    base = settings.mlflow_ui
    if not base:
        return {}
    return {
        f"{role}_url": links.version_url(base, settings.model_name, version)
        for role, version in versions.items() if version
    }  # fmt: skip


def log_mlflow_links(settings: Settings, *versions: str | None, run: tuple = ()) -> None:
    """One log line per version (and the parent run) with its MLflow page, each URL last on
    its line with nothing touching it, when a UI is known."""
    base, logger = settings.mlflow_ui, get_run_logger()
    if not base:
        return
    if run:
        logger.info(f"MLflow parent run {links.run_url(base, *run)}")
    name = settings.model_name
    for version in filter(None, versions):
        logger.info(f"MLflow {name} version {version} {links.version_url(base, name, version)}")


def mlflow_places(settings: Settings, report: TuneReport) -> tuple[str, str]:
    """(the study's parent run, the registered version) as links or in words."""
    run = mlflow_run_place(settings, report.experiment_id, report.parent_run_id, "parent run")
    return run, version_place(settings, report.version)


def publish_tuning(settings: Settings, report: TuneReport) -> None:
    """Links to the MLflow parent run and the model version (RETRAIN_MLFLOW_UI_URL, or a
    tracking server), or where to find them in an embedded store."""
    base, name, version = settings.mlflow_ui, settings.model_name, report.version
    if base:
        run_url = links.run_url(base, report.experiment_id, report.parent_run_id)
        create_link_artifact(run_url, "MLflow parent run of the study", key="mlflow-run")
        create_link_artifact(
            links.version_url(base, name, version), f"{name} v{version}", key="model-version"
        )
        return
    run, model = mlflow_places(settings, report)
    create_markdown_artifact(f"MLflow {run}; model {model}.", key="mlflow-run")


def publish_summary(settings: Settings, lines: list[str]) -> None:
    """The nightly run's own story, as its `nightly-summary` artifact."""
    create_markdown_artifact("\n".join(lines), key="nightly-summary", description="the night")


def publish_drift(settings: Settings, results: list[BatchDrift]) -> None:
    """The `drift` artifact: one row per batch with its verdict and its MLflow report."""
    lines = ["| batch | drift share | drifted features | report |", "|---|---|---|---|"]
    for r in results:
        if r.report is None:
            lines.append(f"| {r.batch_id} | - | {r.skipped} | - |")
            continue
        place = mlflow_run_place(settings, r.experiment_id, r.run_id, "drift report")
        drifted = ", ".join(r.report.drifted_columns) or "none"
        lines.append(f"| {r.batch_id} | {r.report.drift_share:.2f} | {drifted} | {place} |")
    lines.append(f"\nRETRAIN_DRIFT_THRESHOLD = {settings.drift_threshold}")
    create_markdown_artifact("\n".join(lines), key="drift", description="new batches vs training")


def emit_drift_event(settings: Settings, result: BatchDrift, origin: str) -> None:
    """`retrain.data.drifted` about the dataset (an automation can start a retrain on it)."""
    emit_event(
        "retrain.data.drifted",
        resource={
            "prefect.resource.id": f"retrain.dataset.{settings.dataset}",
            "retrain.origin": origin,
        },
        payload={"batch_id": result.batch_id, "drift_share": result.report.drift_share,
                 "drifted_columns": result.report.drifted_columns,
                 "threshold": settings.drift_threshold},
    )  # fmt: skip
