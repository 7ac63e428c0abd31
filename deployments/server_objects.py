"""The bootstrap's work on the Prefect server at PREFECT_API_URL (started by
`python -m deployments.bootstrap`, which first exports the settings file's variables).

Idempotent: creates the `process` work pool and the `retrain-promotion` global concurrency
limit when missing, runs `prefect deploy --all --no-prompt` from the project folder, and
writes the nightly deployments' parameters from the current settings, and (when
RETRAIN_ALERT_URL is set) saves the webhook notification block and applies the
automations in deployments/automations/, replacing older copies of the same name; with
RETRAIN_DRIFT_RETRAIN=true it also applies retrain-on-drift (a drifted batch runs
retrain-manual), and with RETRAIN_DEGRADATION_RETRAIN=true retrain-on-degradation (a served
model whose realized AUROC fell below its promise runs retrain-manual).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from prefect import get_client
from prefect.automations import Automation
from prefect.blocks.webhook import Webhook
from prefect.client.schemas.actions import (
    DeploymentUpdate,
    GlobalConcurrencyLimitCreate,
    WorkPoolCreate,
)
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import PREFECT_API_URL

from flows.hooks import NIGHTLY_DEPLOYMENT, name_scheduled_runs
from flows.locking import PROMOTION_LIMIT
from flows.retrain import nightly_parameters
from retrain.config.settings import WORK_POOL as POOL
from retrain.config.settings import load_settings

PROJECT = Path(__file__).resolve().parents[1]
ALERT_BLOCK = "retrain-alerts"


async def ensure_pool_and_limit() -> None:
    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
            print(f"work pool {POOL} created")
        except ObjectAlreadyExists:
            print(f"work pool {POOL} exists")
        try:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=PROMOTION_LIMIT, limit=1)
            )
            print(f"concurrency limit {PROMOTION_LIMIT} created (1 slot)")
        except ObjectAlreadyExists:
            print(f"concurrency limit {PROMOTION_LIMIT} exists")


def deploy_all(timezone: str) -> None:
    """`prefect deploy --all` with the values prefect.yaml reads from the environment."""
    env = {
        **os.environ,
        "RETRAIN_TIMEZONE": timezone,
        "RETRAIN_PROJECT_DIR": str(PROJECT),
        "PREFECT_CLI_PROMPT": "false",
    }
    prefect = str(Path(sys.executable).parent / "prefect")
    done = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all"], cwd=PROJECT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    print(without_worker_hints(done.stdout), end="")
    if done.returncode:
        sys.exit(f"bootstrap: `prefect deploy --all` failed (exit {done.returncode}), see above")


def without_worker_hints(output: str) -> str:
    """Prefect's output less its hint, once per deployment, to start a plain `prefect worker`
    (retrain's worker is `retrain worker`: it also serves the champion)."""
    hints = (
        "To execute flow runs from these deployments",
        "terminal that pulls work from the",
        "prefect worker start",
    )
    return "".join(
        line for line in output.splitlines(keepends=True)
        if not any(h in line for h in hints)
    )  # fmt: skip


NIGHTLY_DEPLOYMENTS = (NIGHTLY_DEPLOYMENT, "retrain/retrain-manual")


async def write_parameter_defaults(parameters: dict) -> None:
    """Each nightly deployment's parameters from the current settings: the Custom run form
    starts from what a run would really use, and the schedule runs with them. Run the
    bootstrap again after changing a setting these parameters carry."""
    async with get_client() as client:
        for name in NIGHTLY_DEPLOYMENTS:
            deployment = await client.read_deployment_by_name(name)
            update = DeploymentUpdate(
                parameters=parameters,
                parameter_openapi_schema=with_every_field_required(
                    deployment.parameter_openapi_schema, parameters
                ),
            )
            await client.update_deployment(deployment.id, update)
    shown = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
    print(f"parameters of {', '.join(NIGHTLY_DEPLOYMENTS)} from the settings: {shown}")


def with_every_field_required(schema: dict, parameters: dict) -> dict:
    """The run form's schema with every stored parameter listed as required: each has a
    default the deployment keeps, so the form shows the value without "(Optional)"."""
    required = [name for name in schema.get("properties", {}) if name in parameters]
    return {**schema, "required": required}


def name_upcoming_runs(dataset: str, wait: float = 30) -> int:
    """Name the nightly deployment's scheduled runs for their start (the scheduler makes
    them a few seconds after a deploy with a random name); returns how many."""
    deadline = time.monotonic() + wait
    named = name_scheduled_runs(NIGHTLY_DEPLOYMENT, dataset)
    while not named and time.monotonic() < deadline:
        time.sleep(2)
        named = name_scheduled_runs(NIGHTLY_DEPLOYMENT, dataset)
    return named


def apply_automations(alert_url: str) -> None:
    block = Webhook(
        method="POST",
        url=alert_url,
        headers={"Content-Type": "application/json"},
        allow_private_urls=True,
    )
    block_id = block.save(ALERT_BLOCK, overwrite=True)
    for path in sorted((PROJECT / "deployments/automations").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        for action in spec["actions"]:
            if action["type"] == "call-webhook":
                action["block_document_id"] = str(block_id)
        replace_automation(spec)


def replace_automation(spec: dict) -> None:
    """Create the automation, deleting an older one of the same name first (idempotent)."""
    with contextlib.suppress(ObjectNotFound, ValueError):
        Automation.read(name=spec["name"]).delete()
    Automation.model_validate(spec).create()
    print(f"automation {spec['name']} applied")


async def deployment_id(name: str) -> str:
    async with get_client() as client:
        return str((await client.read_deployment_by_name(name)).id)


def apply_retrain_on(spec_file: str) -> None:
    """An automation that runs retrain-manual when its event arrives (retrain-on-drift on
    `retrain.data.drifted`, retrain-on-degradation on `retrain.model.degraded`)."""
    spec = yaml.safe_load((PROJECT / "deployments/automations" / spec_file).read_text())
    spec["actions"][0]["deployment_id"] = asyncio.run(deployment_id("retrain/retrain-manual"))
    replace_automation(spec)


def main() -> None:
    if not PREFECT_API_URL.value():
        sys.exit(
            "bootstrap: set PREFECT_API_URL to the Prefect server (e.g. http://127.0.0.1:4200/api)"
        )
    settings = load_settings()
    asyncio.run(ensure_pool_and_limit())
    deploy_all(settings.timezone)
    asyncio.run(write_parameter_defaults(nightly_parameters(settings)))
    named = name_upcoming_runs(settings.dataset)
    print(f"{named} scheduled nightly run(s) named for their start")
    if settings.alert_url:
        apply_automations(settings.alert_url)
    else:
        print("RETRAIN_ALERT_URL is not set: no notification block or automation applied")
    if settings.drift_retrain:
        apply_retrain_on("drift/retrain-on-drift.yaml")
    if settings.degradation_retrain:
        apply_retrain_on("degradation/retrain-on-degradation.yaml")
    print("next: start the worker with `./dev retrain worker` (runs the flows, serves the model)")
