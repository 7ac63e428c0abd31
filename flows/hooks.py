"""Flow hooks and UI output shared by the flows: alerts on failure, notices on promotion,
Prefect events that automations can match, and artifacts a person reads in the UI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
)
from prefect.events import emit_event
from prefect.logging.loggers import flow_run_logger
from prefect.runtime import deployment
from prefect.runtime import flow_run as current_run
from prefect.settings import PREFECT_UI_URL

from retrain import server
from retrain.alerts import Alert, run_link, send_alert
from retrain.errors import RetrainError
from retrain.settings import Settings, load_settings

if TYPE_CHECKING:  # every stage imports the hooks: MLflow and the models load where used
    from retrain.monitor import BatchDrift
    from retrain.promote import PromotionReport
    from retrain.tune import TuneReport

STAGE_ATTRIBUTE = "retrain_stage"


def run_name(stage: str) -> Callable[[], str]:
    """A flow run name that says what and when (`retrain-iris-2026-12-01-0200`), for the
    Prefect UI's run lists; a deployment's runs lead with its name (`retrain-nightly-...`)."""

    def name() -> str:
        try:
            dataset = load_settings().dataset
        except RetrainError:  # the flow itself reports bad settings
            dataset = "unknown"
        lead = deployment.name or stage
        return f"{lead}-{dataset}-{datetime.now(UTC):%Y-%m-%d-%H%M}"

    return name


def mark_stage(err: BaseException, stage: str) -> None:
    """Remember which stage an exception came from (the first mark wins)."""
    if not hasattr(err, STAGE_ATTRIBUTE):
        setattr(err, STAGE_ATTRIBUTE, stage)


def _versions(settings: Settings) -> tuple[str | None, str | None]:
    try:
        from retrain import tracking

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
        run_link(PREFECT_UI_URL.value(), str(flow_run.id)),
    )  # fmt: skip
    problem = send_alert(settings.alert_url, alert)
    logger.error(alert.text() + (f" [{problem}]" if problem else " [alert sent]"))


def stop_spare_server(flow: Any, flow_run: Any, state: Any) -> None:
    """Cancellation/crash hook of deploy: stop the spare-port server the deploy started."""
    stopped = server.stop_recorded(load_settings().home, server.SPARE)
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
    settings: Settings, report: PromotionReport, rolled_back: str | None = None
) -> None:
    """UI artifact, event, and (when promoted and served) a notice to the webhook, written
    once the outcome is final: a promotion whose deploy was rolled back is shown as such and
    sends no notice (the failure alert says it)."""
    create_markdown_artifact(
        promotion_table(report, rolled_back), key="promotion", description="champion vs challenger"
    )
    if rolled_back is not None:
        return
    emit_model_event(
        settings, "promoted" if report.promoted else "kept",
        {"challenger": report.challenger, "champion": report.champion,
         "reason": report.decision.reason},
    )  # fmt: skip
    if report.promoted:
        run_id = str(current_run.id) if current_run.id else None
        notice = Alert(
            "notice", "promote", report.describe(), current_run.name, run_id,
            report.challenger, report.champion, run_link(PREFECT_UI_URL.value(), run_id),
        )  # fmt: skip
        problem = send_alert(settings.alert_url, notice)
        if problem:
            get_run_logger().warning(f"promotion notice not sent: {problem}")


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
            "| model | version | holdout AUROC |",
            "|---|---|---|",
            f"| challenger | {report.challenger} | {shown(report.challenger_auroc)} |",
            f"| champion | {report.champion or 'none'} | {shown(report.champion_auroc)} |",
            "",
            decision,
        ]
    )


def mlflow_run_place(settings: Settings, experiment_id: str, run_id: str, label: str) -> str:
    """A run as a markdown link on a tracking server, or in words (`mlflow ui` shows it) for
    an embedded store."""
    uri = settings.tracking_uri.rstrip("/")
    if uri.startswith(("http://", "https://")):
        return f"[{label}]({uri}/#/experiments/{experiment_id}/runs/{run_id})"
    return f"{label} `{run_id}` in `{uri}` (`mlflow ui --backend-store-uri {uri}`)"


def mlflow_places(settings: Settings, report: TuneReport) -> tuple[str, str]:
    """(the study's parent run, the registered version) as links or in words."""
    uri = settings.tracking_uri.rstrip("/")
    name, version = settings.model_name, report.version
    run = mlflow_run_place(settings, report.experiment_id, report.parent_run_id, "parent run")
    if uri.startswith(("http://", "https://")):
        return run, f"[{name} v{version}]({uri}/#/models/{name}/versions/{version})"
    return run, f"`{name}` version {version}"


def publish_tuning(settings: Settings, report: TuneReport) -> None:
    """Links to the MLflow parent run and the model version (on a tracking server), or
    where to find them in an embedded store."""
    uri = settings.tracking_uri.rstrip("/")
    name, version = settings.model_name, report.version
    if uri.startswith(("http://", "https://")):
        run_url = f"{uri}/#/experiments/{report.experiment_id}/runs/{report.parent_run_id}"
        create_link_artifact(run_url, "MLflow parent run of the study", key="mlflow-run")
        create_link_artifact(
            f"{uri}/#/models/{name}/versions/{version}", f"{name} v{version}", key="model-version"
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
