"""Procfile, railway*.json and the CI workflow name commands that exist and paths that resolve."""

import json
import re
import shlex
from pathlib import Path

import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def assert_runs_something_real(command: str) -> None:
    for part in re.split(r"&&|;", command):
        argv = shlex.split(part)
        if argv[:2] == ["python", "manage.py"]:
            assert (ROOT / "manage.py").exists()
            assert argv[2] in get_commands(), f"no management command {argv[2]!r}"
        elif argv[0] == "gunicorn":
            module = argv[1].split(":")[0]
            assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
        else:
            raise AssertionError(f"unexpected command {part!r}")


def test_procfile_has_web_alert_path_worker_and_release():
    entries = procfile()
    assert set(entries) == {"web", "alerts", "worker", "release"}
    assert entries["alerts"] == "python manage.py alertpath"
    assert entries["web"].startswith("gunicorn opsconsole.wsgi")
    assert "$PORT" in entries["web"]
    assert entries["worker"] == "python manage.py qcluster"
    for command in entries.values():
        assert_runs_something_real(command)


def test_railway_describes_web_alert_path_and_worker_services():
    web = json.loads((ROOT / "railway.json").read_text())
    worker = json.loads((ROOT / "railway.worker.json").read_text())
    alerts = json.loads((ROOT / "railway.alertpath.json").read_text())
    assert alerts["deploy"]["startCommand"] == "python manage.py alertpath"
    assert_runs_something_real(alerts["deploy"]["startCommand"])
    assert web["deploy"]["healthcheckPath"] == "/health"
    assert web["deploy"]["restartPolicyType"] == "ON_FAILURE"
    assert web["deploy"]["startCommand"].startswith("gunicorn opsconsole.wsgi")
    assert worker["deploy"]["startCommand"] == "python manage.py qcluster"
    assert worker["deploy"]["restartPolicyType"] == "ON_FAILURE"
    for config in (web, worker):
        assert_runs_something_real(config["deploy"]["startCommand"])
        for command in config["deploy"].get("preDeployCommand", []):
            assert_runs_something_real(command)
        if config.get("build", {}).get("buildCommand"):
            assert_runs_something_real(config["build"]["buildCommand"])
    from django.urls import resolve

    assert resolve(web["deploy"]["healthcheckPath"]).url_name == "health"


def test_ci_workflow_runs_make_test_ruff_and_pip_audit():
    workflow = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    text = "\n".join(runs)
    assert "make test" in text
    assert "ruff check" in text and "ruff format --check" in text
    assert "pip-audit" in text
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:", makefile, re.M)
    for path in re.findall(r"-r (\S+)", text):
        assert (ROOT / path).exists(), path


def test_ci_script_calls_the_readme_test_command():
    script = (ROOT / ".ci/run").read_text()
    assert "make test" in script
    assert "make test" in (ROOT / "README.md").read_text()
