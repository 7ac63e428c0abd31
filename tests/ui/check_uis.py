"""Walk both UIs as a new user would, in headless Chromium, and check what issue 25 promised.

    ./dev python -m tests.ui.check_uis [--keep DIR]

Starts a real Prefect server, the MLflow UI (`mlflow server` on the embedded SQLite store), the
README's bootstrap and a Prefect worker, runs `retrain-manual` with 3 trials, then renders the
pages a person opens (Debian's `chromium`, `--dump-dom` after the page's scripts ran) and checks
each promise against the rendered DOM: run names, MLflow links opening the classic view, URLs
nothing touches, descriptions with links both ways, one name per metric, short summary cells,
the form without "(Optional)", the schedule's timezone, the bootstrap's words. Prints one line
per check and exits 1 when one fails; screenshots of the pages land in the kept folder.
Not part of the suite (it takes a few minutes and needs Chromium: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.services import free_port, http_ok, prefect_server, prefect_worker, running

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]
URL = re.compile(r"https?://[^\s\"'<>]+")
MLFLOW_KEYS = ("mlflow-run", "model-version")


class Walk:
    """The pages of one run and the verdicts on them."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.failures, self.shots = folder, 0, 0
        self.chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if not self.chromium:
            sys.exit("check_uis: no chromium; apt-get install chromium")

    def render(self, url: str, wait_ms: int = 15000) -> str:
        """The page's DOM after its scripts ran, and a screenshot beside it."""
        profile = tempfile.mkdtemp(dir=self.folder)
        base = [
            self.chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={wait_ms}",
        ]
        dom = subprocess.run(
            [*base, "--dump-dom", url], capture_output=True, text=True, timeout=120
        ).stdout
        self.shots += 1
        shot = self.folder / f"page-{self.shots:02d}.png"
        subprocess.run([*base, f"--screenshot={shot}", url], capture_output=True, timeout=120)
        return dom

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        self.failures += not ok
        print(
            f"{'PASS' if ok else 'FAIL'} {what}"
            + (f": {detail[:300]}" if detail and not ok else "")
        )


def text_of(dom: str) -> str:
    """The page's visible words, roughly: tags dropped, entities decoded."""
    return html.unescape(
        re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S))
    )


@contextmanager
def mlflow_ui(store: str, artifacts: Path, port: int, workdir: Path) -> Iterator[str]:
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        store,
        "--default-artifact-root",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    with running(command, env, workdir / "mlflow.log", lambda: http_ok(f"{url}/health"), 180):
        yield url


def settings_env(home: Path, mlflow_url: str, serve_port: int) -> dict[str, str]:
    return {
        "RETRAIN_HOME": str(home),
        "RETRAIN_TRIALS": "3",
        "RETRAIN_TIMEZONE": "Europe/Paris",
        "RETRAIN_MLFLOW_UI_URL": mlflow_url,
        "RETRAIN_SERVE_PORT": str(serve_port),
        "RETRAIN_SUPERVISE": "false",
    }


async def api_state() -> dict:
    """What the checks need from the API: ids of the pages to open, names to look for."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    async with get_client() as client:
        manual = await client.read_deployment_by_name("retrain/retrain-manual")
        nightly = await client.read_deployment_by_name("retrain/retrain-nightly")
        (done,) = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[manual.id])), limit=1
        )
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[done.id])
            )
        )
        scheduled = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[nightly.id]))
        )
        artifacts = await client.read_artifacts()
    return {
        "manual": manual,
        "nightly": nightly,
        "run": done,
        "children": children,
        "scheduled": scheduled,
        "artifacts": artifacts,
    }


def run_manual() -> None:
    from prefect.deployments import run_deployment

    done = run_deployment("retrain/retrain-manual", parameters={"trials": 3}, timeout=1200)
    if not done.state.is_completed():
        sys.exit(f"check_uis: the manual run ended {done.state.name}; see the worker log")


def check_prefect(walk: Walk, ui: str, state: dict, bootstrap_out: str) -> None:
    run, children = state["run"], state["children"]
    walk.check(
        "the manual run is named for its deployment",
        run.name.startswith("retrain-manual-iris-"),
        run.name,
    )
    for child in children:
        stage = child.name.split("-")[0]
        page = text_of(walk.render(f"{ui}/runs/flow-run/{child.id}"))
        walk.check(
            f"subflow {child.name} is named for its stage and shown so",
            child.name.startswith(f"{stage}-iris-")
            and child.name in page
            and "retrain-manual" not in child.name,
            child.name,
        )
    upcoming = sorted(
        (r for r in state["scheduled"] if r.state_type.value == "SCHEDULED"),
        key=lambda r: r.expected_start_time,
    )
    scheduled = [r.name for r in upcoming]
    page = text_of(walk.render(f"{ui}/deployments/deployment/{state['nightly'].id}"))
    walk.check(
        "scheduled nightly runs carry their real name from creation",
        bool(scheduled)
        and all(n.startswith("retrain-nightly-iris-") for n in scheduled)
        and scheduled[0] in page,
        str(scheduled),
    )
    about = text_of(
        walk.render(f"{ui}/deployments/deployment/{state['nightly'].id}?tab=Description")
    )
    walk.check("the nightly deployment's description names its timezone", "Europe/Paris" in about)
    form = text_of(walk.render(f"{ui}/deployments/deployment/{state['manual'].id}/run"))
    walk.check(
        "the run form has fields and no (Optional)",
        "trials" in form and "(Optional)" not in form,
        re.findall(r".{40}\(Optional\)", form)[:3].__str__(),
    )
    walk.check(
        "the bootstrap prints the README's worker command once, not Prefect's",
        "prefect worker start" not in bootstrap_out and bootstrap_out.count("retrain worker") == 1,
    )
    logs = walk.render(f"{ui}/runs/flow-run/{run.id}?tab=Logs")
    hrefs = re.findall(r'href="(https?://[^"]+)"', logs)
    touched = [h for h in hrefs if h[-1] in ";,.:)]"]
    walk.check(
        "no link in the run's logs ends in punctuation",
        bool(hrefs) and not touched,
        str(touched or "no links"),
    )


def check_artifacts(walk: Walk, ui: str, state: dict) -> None:
    by_key = {a.key: a for a in state["artifacts"] if a.key}
    summary = walk.render(f"{ui}/artifacts/artifact/{by_key['nightly-summary'].id}")
    cells = [
        " ".join(text_of(c).split()) for c in re.findall(r"<td[^>]*>(.*?)</td>", summary, re.S)
    ]
    walk.check(
        "nightly-summary cells are short",
        bool(cells) and max(map(len, cells)) <= 60,
        str(sorted(cells, key=len)[-1:]),
    )
    words = text_of(summary)
    walk.check(
        "nightly-summary names the promotion metrics as MLflow does",
        "promotion_challenger_auroc" in words and "none n/a" not in words,
    )
    walk.check(
        "nightly-summary links the MLflow run and version",
        "workflowType=machine_learning" in summary,
    )
    promotion = text_of(walk.render(f"{ui}/artifacts/artifact/{by_key['promotion'].id}"))
    walk.check(
        "the first promotion says no champion yet, not none n/a",
        "no champion yet" in promotion and "n/a" not in promotion,
        " ".join(promotion.split())[:300],
    )
    progress = [a for a in state["artifacts"] if a.type == "progress"]
    walk.check(
        "tuning-progress shows the best AUROC so far",
        any("best mean CV AUROC so far" in (a.description or "") for a in progress),
    )


def link_of(data: str) -> str:
    """The URL of a link artifact (stored as `[text](url)`)."""
    found = re.search(r"\((https?://[^)\s]+)\)", data)
    return found.group(1) if found else data


def check_mlflow(walk: Walk, state: dict) -> None:
    links = {a.key: link_of(a.data) for a in state["artifacts"] if a.key in MLFLOW_KEYS}
    run_link, version_link = links["mlflow-run"], links["model-version"]
    experiment_link = run_link.split("/runs/")[0] + "/runs?workflowType=machine_learning"
    page = text_of(walk.render(experiment_link, 20000))
    walk.check(
        "the experiment link opens the runs table, not the GenAI view",
        "iris-" in page and "Detect Issues" not in page,
        page[:200],
    )
    page = walk.render(run_link, 20000)
    walk.check(
        "the parent run's description links the Prefect run",
        "Tuned by Prefect flow run" in text_of(page) and "/runs/flow-run/" in page,
    )
    page = walk.render(version_link, 20000)
    words = text_of(page)
    walk.check(
        "the version's description gives the decision and how promotion happens",
        "Promotion: promoted" in words and "Promote model" in words and "/runs/flow-run/" in page,
        words[:300],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="folder for the screenshots and logs")
    folder = parser.parse_args().keep or Path(tempfile.mkdtemp(prefix="retrain-ui-"))
    folder.mkdir(parents=True, exist_ok=True)
    walk, home = Walk(folder), folder / "home"
    store = f"sqlite:///{home / 'mlflow.db'}"
    home.mkdir(exist_ok=True)
    with (
        prefect_server(folder) as api,
        mlflow_ui(store, home / "artifacts", free_port(), folder) as mlflow_url,
    ):
        ui = api.removesuffix("/api")
        settings = settings_env(home, mlflow_url, free_port())
        (home / "retrain.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        env = {
            **os.environ,
            "PREFECT_API_URL": api,
            "PREFECT_UI_URL": ui,
            "RETRAIN_HOME": str(home),
        }
        boot = subprocess.run(
            [sys.executable, "-m", "deployments.bootstrap"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if boot.returncode:
            sys.exit(f"check_uis: the bootstrap failed: {boot.stdout[-2000:]}{boot.stderr[-2000:]}")
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api}):  # read at import, not now
            with prefect_worker("retrain-pool", env, folder):
                run_manual()
            state = asyncio.run(api_state())
        check_prefect(walk, ui, state, boot.stdout)
        check_artifacts(walk, ui, state)
        check_mlflow(walk, state)
        from tests.support.services import stop_model_server

        stop_model_server(home)
    print(f"{walk.failures} failed; screenshots and logs in {folder}")
    sys.exit(1 if walk.failures else 0)


if __name__ == "__main__":
    main()
