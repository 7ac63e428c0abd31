"""Where a person opens what retrain made: MLflow UI pages, in MLflow's classic
machine-learning view, and Prefect flow runs. Pure string building.

MLflow 3.17's UI opens an experiment in its GenAI view (Traces) unless the page's URL says
`workflowType=machine_learning` (read after the `#` path, where its hash router looks) or the
browser once chose "Model training" in the sidebar; the experiment tag `mlflow.experimentKind`
is no longer read. Every MLflow link retrain writes carries the parameter.
"""

from __future__ import annotations

from urllib.parse import quote

ML_VIEW = "workflowType=machine_learning"


def mlflow_ui(tracking_uri: str, ui_url: str | None = None) -> str | None:
    """The MLflow UI's base URL: RETRAIN_MLFLOW_UI_URL, else a tracking server's own URL;
    None for an embedded store nobody serves."""
    if ui_url:
        return ui_url.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return None


def experiment_url(base: str, experiment_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs?{ML_VIEW}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW}"


def version_url(base: str, model_name: str, version: str) -> str:
    return f"{base}/#/models/{quote(model_name, safe='')}/versions/{version}?{ML_VIEW}"


def flow_run_url(ui_url: str | None, flow_run_id: str | None) -> str | None:
    """The Prefect UI page of a flow run, when PREFECT_UI_URL is known."""
    if not ui_url or not flow_run_id:
        return None
    return f"{ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}"


def markdown_link(label: str, url: str | None) -> str:
    """`[label](url)`, or the label alone without a URL."""
    return f"[{label}]({url})" if url else label
