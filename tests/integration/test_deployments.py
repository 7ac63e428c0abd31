"""prefect.yaml and the bootstrap against a real Prefect server and a real process worker."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prefect.events import emit_event

from retrain.serving import model_server
from tests.integration.helpers import count
from tests.support.services import model_events, prefect_worker, stop_model_server, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PROJECT = Path(__file__).parents[2]


async def _next_nightly_runs(name: str) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(name)
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type={"any_": ["SCHEDULED"]})),
        )
    return deployment, [r for r in runs if r.deployment_id == deployment.id]


async def _subflow_runs(parent_id) -> dict:
    """The nightly run's subflow runs by flow name (each stage's)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async with get_client() as client:
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
            )
        )
        flows = {f.id: f.name for f in await client.read_flows()}
    return {flows[r.flow_id]: r for r in children}


async def _deployment(name: str):
    from prefect import get_client

    async with get_client() as client:
        return await client.read_deployment_by_name(name)


async def _automation(name: str):
    from prefect import get_client

    async with get_client() as client:
        (found,) = await client.read_automations_by_name(name)
        return found


async def _promotion_limit():
    from prefect import get_client

    async with get_client() as client:
        return await client.read_global_concurrency_limit_by_name("retrain-promotion")


async def _summary(flow_run_id) -> str:
    """The nightly-summary artifact a flow run wrote."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    (summary,) = [a for a in found if a.key == "nightly-summary"]
    return summary.data


async def _manual_runs_since(since: datetime) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    async with get_client() as client:
        manual = await client.read_deployment_by_name("retrain/retrain-manual")
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[manual.id]))
        )
    return [r for r in runs if r.created >= since]


async def _delete_flow_runs(runs: list) -> None:
    from prefect import get_client

    async with get_client() as client:
        for run in runs:
            await client.delete_flow_run(run.id)


def nightly_gauges(home: Path) -> dict[str, float]:
    """The samples of `$RETRAIN_HOME/metrics/nightly.prom`, keyed `name{decision}`."""
    from prometheus_client.parser import text_string_to_metric_families

    text = (home / "metrics" / "nightly.prom").read_text()
    return {
        s.name + (f"{{{s.labels['decision']}}}" if "decision" in s.labels else ""): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def bootstrap(env: dict) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deployments.bootstrap"], cwd=PROJECT, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "prefect worker start" not in result.stdout + result.stderr  # Prefect's hint, x4
    assert result.stdout.count("retrain worker") == 1, result.stdout[-2000:]


@pytest.mark.heavy
@pytest.mark.timeout(1800)  # four runs by a worker, each allowed 300 s (they take ~60)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bootstrap_worker_manual_run_alerts_and_schedules(
    prefect_api: str,
    env: dict,
    receiver,
    tmp_path: Path,
) -> None:
    from prefect.deployments import run_deployment

    url, received = receiver
    settings = {
        **env, "RETRAIN_ALERT_URL": url, "RETRAIN_TIMEZONE": "Europe/Paris", "RETRAIN_TRIALS": "3",
        "RETRAIN_DRIFT_RETRAIN": "true",
        "RETRAIN_DEGRADATION_RETRAIN": "true", "RETRAIN_BAKE_CHECK_SECONDS": "2",
        "PREFECT_API_AUTH_STRING": os.environ["PREFECT_API_AUTH_STRING"],
    }  # fmt: skip
    home = Path(env["RETRAIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "retrain.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    # The bootstrap, the worker and its flow runs see only the server and the home: every
    # other setting (the alert URL, the serving port, the stores, the server's auth string)
    # comes from the env file. (Prefect's own `prefect worker start`, unlike `retrain
    # worker`, reads no settings file: it is given the auth string.)
    run_env = {
        **{k: v for k, v in os.environ.items() if k not in settings},
        "PREFECT_API_URL": prefect_api,
        "RETRAIN_HOME": str(home),
    }
    bootstrap(run_env)
    bootstrap(run_env)  # idempotent
    manual = asyncio.run(_deployment("retrain/retrain-manual"))
    assert manual.parameters["trials"] == 3 and manual.parameters["budget"] == 300.0
    form = manual.parameter_openapi_schema["properties"]
    assert all("default" in field and "anyOf" not in field for field in form.values()), form
    required = manual.parameter_openapi_schema["required"]
    assert set(required) == set(form), "a stored field would read (Optional)"
    assert form["trials"]["minimum"] == 1 and form["objective"]["enum"] == ["auroc", "accuracy"]
    assert form["rollout"]["enum"] == ["direct", "canary", "shadow"]
    scoring = asyncio.run(_deployment("batch-score/batch-score")).parameter_openapi_schema
    assert scoring["required"] == ["source"] and set(scoring["properties"]) == {"source", "output"}
    limit = asyncio.run(_promotion_limit())
    assert limit.limit == 1 and limit.active  # one promotion at a time on this server
    drift_retrain = asyncio.run(_automation("retrain-on-drift"))
    assert drift_retrain.trigger.expect == {"retrain.data.drifted"}
    assert str(drift_retrain.actions[0].deployment_id) == str(manual.id)
    degraded = asyncio.run(_automation("retrain-on-degradation"))
    assert degraded.trigger.expect == {"retrain.model.degraded"}
    assert str(degraded.actions[0].deployment_id) == str(manual.id)
    port = int(env["RETRAIN_SERVE_PORT"])
    auth = {"PREFECT_API_AUTH_STRING": settings["PREFECT_API_AUTH_STRING"]}
    with prefect_worker("retrain-pool", run_env | auth, tmp_path):
        with socket.socket() as squatter:  # a real fault: the serving port is taken
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            failed = run_deployment("retrain/retrain-manual", timeout=300)  # the form's defaults
        assert failed.state.is_failed(), failed.state
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            r.get("source") == "prefect-automation" for r in received
        ):
            time.sleep(1)
        hook = [r for r in received if r["source"] == "retrain" and r["kind"] == "failure"]
        automation = [r for r in received if r["source"] == "prefect-automation"]
        assert hook and hook[0]["stage"] == "deploy" and "held by a process" in hook[0]["reason"]
        assert "rolled back: no version answers /ping" in hook[0]["reason"]
        assert not [r for r in received if r["kind"] == "notice"]  # promoted, never served
        assert automation and "Failed" in automation[0]["text"]
        assert set(automation[0]) == set(hook[0]), "one payload shape for hook and automation"
        assert automation[0]["flow_run_id"] == hook[0]["flow_run_id"] == str(failed.id)
        failed_summary = asyncio.run(_summary(failed.id))  # written although a stage failed
        assert "| deploy | " in failed_summary and "**Decision: rolled back**" in failed_summary
        assert nightly_gauges(home)["retrain_nightly_decision{rolled_back}"] == 1.0

        done = run_deployment("retrain/retrain-manual", parameters={"trials": 2}, timeout=300)
        assert done.state.is_completed(), done.state
        (notice,) = [r for r in received if r["kind"] == "notice"]  # after its verified deploy
        assert notice["stage"] == "promote" and notice["challenger_version"] == "2"
        assert notice["flow_run_id"] == str(done.id)
        subflows = asyncio.run(_subflow_runs(done.id))
        assert subflows["tune"].parameters["trials"] == 2  # the value typed wins
        dataset = env["RETRAIN_DATASET"]
        assert done.name.startswith(f"retrain-manual-{dataset}-"), done.name
        assert set(subflows) == {"ingest", "clean", "tune", "promote", "deploy", "performance"}
        for stage, run in subflows.items():  # named for the stage, not the parent deployment
            assert run.name.startswith(f"{stage}-{dataset}-"), run.name
            assert f"stage-{stage}" in run.tags, (stage, run.tags)
        gauges = nightly_gauges(home)  # the textfile node_exporter reads, after a real run
        assert gauges["retrain_nightly_decision{promoted}"] == 1.0
        assert (
            gauges["retrain_nightly_succeeded"] == 1.0
            and gauges["retrain_nightly_rows_loaded"] == 0
        )
        model = f"{dataset}_model"
        events = wait_for(
            lambda: (found := model_events(model)).keys() >= {"promoted", "rolled_back"} and found,
            60, "the promoted and rolled_back events on the server",
        )  # fmt: skip
        assert events["promoted"][0].payload["challenger"] == "2"
        assert "held by a process" in events["rolled_back"][0].payload["reason"]
        served = model_server.read_state(Path(env["RETRAIN_HOME"]))
        assert served is not None and served.public_url == f"http://127.0.0.1:{port}"
        assert model_server.ping_url(served.public_url) and served.proxy  # HAProxy on the main port

        deployment, scheduled = asyncio.run(_next_nightly_runs("retrain/retrain-nightly"))
        (schedule,) = deployment.schedules
        assert schedule.schedule.cron == "0 2 * * *"
        assert schedule.schedule.timezone == "Europe/Paris"
        assert scheduled, "no scheduled nightly run"
        assert all(r.name.startswith(f"retrain-nightly-{dataset}-") for r in scheduled), [
            r.name for r in scheduled
        ]  # named for their start since the bootstrap, not `paper-vulture`
        first = min(r.expected_start_time for r in scheduled).astimezone(ZoneInfo("Europe/Paris"))
        assert (first.hour, first.minute) == (2, 0) and first > datetime.now(first.tzinfo)

        again = run_deployment("redeploy/redeploy", timeout=300)
        assert again.state.is_completed(), again.state
        assert model_server.read_state(home) == served  # the champion already answers: no restart
        stop_model_server(home)  # as after a reboot: nothing serves
        assert not model_server.ping_url(served.public_url)
        back = run_deployment("redeploy/redeploy", timeout=300)
        assert back.state.is_completed(), back.state
        revived = model_server.read_state(home)
        assert revived.version == served.version and revived.pid != served.pid
        assert model_server.ping_url(revived.public_url)
        check_bake_runs_on_its_own(env, home, served.version)
        rows = tmp_path / "to_score.csv"
        rows.write_text(Path(env["RETRAIN_SOURCE"]).read_text())
        scored = run_deployment(
            "batch-score/batch-score", parameters={"source": str(rows)}, timeout=300
        )
        assert scored.state.is_completed(), scored.state
        assert count(f"{dataset}_scores") == 150

    since = datetime.now(UTC)  # the worker is gone: a run the automation starts stays queued
    emit_event(
        "retrain.data.drifted",
        resource={"prefect.resource.id": f"retrain.dataset.{dataset}",
                  "retrain.origin": "drift-check"},
        payload={"batch_id": "b1", "drift_share": 0.5},
    )  # fmt: skip
    started = wait_for(lambda: asyncio.run(_manual_runs_since(since)), 90,
                       "retrain-on-drift starting a retrain-manual run")  # fmt: skip
    asyncio.run(_delete_flow_runs(started))

    stop_model_server(Path(env["RETRAIN_HOME"]))


def check_bake_runs_on_its_own(env: dict, home: Path, champion: str) -> None:
    """A canary started here hands its bake to the `rollout-bake` deployment: the call
    returns at once and the worker's run decides; with no traffic it keeps the champion."""
    from flows.rollout import start_rollout
    from retrain.serving import rollout

    said = start_rollout("1", "canary", 20, 0.2)
    run_name = f"rollout-{env['RETRAIN_DATASET']}-1"
    assert said.startswith(f"the bake runs as flow run {run_name}"), said
    last = wait_for(lambda: rollout.read_rollout(home, rollout.LAST), 180, "the bake's verdict")
    assert last.version == "1" and last.outcome == "kept" and "too few" in last.reason
    assert model_server.read_state(home).version == champion
    assert model_server.read_state(home, model_server.CANDIDATE) is None
