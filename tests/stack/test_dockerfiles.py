"""The collector and example images, checked without a Docker engine: the command each runs,
its user, its environment and the files it copies."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest

from otelkit_collector.__main__ import main as collector_main
from otelkit_collector.__main__ import parse_args
from otelkit_collector.settings import CollectorSettings
from tests.e2e.servers import LOOPBACK, REPO_ROOT, ManagedProcess, clean_env, free_port
from tests.stack.stack_files import (
    COLLECTOR_DOCKERFILE,
    EXAMPLE_DOCKERFILE,
    compose,
    dockerfile_env,
    dockerfile_instructions,
    exec_form,
    interpolate,
    mounts,
    published_ports,
)

SERVICES: dict[str, dict[str, Any]] = compose()["services"]
IMPORT_TIMEOUT_SECONDS = 60


# --- The collector image -------------------------------------------------------------------


def test_collector_image_runs_the_console_script() -> None:
    """The image's command is the ``otelkit-collector`` script pyproject.toml declares, and the
    installed collector distribution has that console script, pointing at its ``main``."""
    instructions = dockerfile_instructions(COLLECTOR_DOCKERFILE)
    argv = exec_form(instructions, "CMD")
    assert argv == ["otelkit-collector"]
    assert not [keyword for keyword, _ in instructions if keyword == "ENTRYPOINT"]
    project = tomllib.loads((REPO_ROOT / "collector" / "pyproject.toml").read_text())["project"]
    assert project["scripts"][argv[0]] == "otelkit_collector.__main__:main"
    [entry_point] = [
        entry_point
        for entry_point in metadata.distribution(project["name"]).entry_points
        if entry_point.group == "console_scripts" and entry_point.name == argv[0]
    ]
    assert entry_point.value == project["scripts"][argv[0]]
    assert entry_point.load() is collector_main
    assert (Path(sys.executable).parent / argv[0]).is_file()


def test_collector_image_command_serves_its_healthcheck(tmp_path: Path) -> None:
    """The image's command, run as installed with the image's environment (only the address
    and the state file moved to this machine's loopback and a temporary directory), starts one
    collector that answers the HEALTHCHECK's URL path with 200."""
    instructions = dockerfile_instructions(COLLECTOR_DOCKERFILE)
    argv = exec_form(instructions, "CMD")
    environ = dockerfile_env(instructions)
    [healthcheck] = [args for keyword, args in instructions if keyword == "HEALTHCHECK"]
    probed = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", healthcheck)
    assert probed is not None, healthcheck
    assert probed[1] == environ["OTELKIT_COLLECTOR_PORT"]
    parse_args(argv[1:])  # the command line is one the collector's parser accepts
    port = free_port()
    environ |= {
        "OTELKIT_COLLECTOR_HOST": LOOPBACK,
        "OTELKIT_COLLECTOR_PORT": str(port),
        "OTELKIT_STATE_FILE": str(tmp_path / "state" / "state.json"),
    }
    script = str(Path(sys.executable).parent / argv[0])
    server = ManagedProcess(
        [script, *argv[1:]], port=port, log_path=tmp_path / "collector.log", env=clean_env(environ)
    )
    try:
        assert server.wait_ready(probed[2]), server.output()
        assert httpx.get(f"{server.url}{probed[2]}", timeout=5).json() == {"status": "ok"}
    finally:
        exit_code = server.stop()  # SIGTERM, as `docker stop` sends
    assert exit_code in (0, -signal.SIGTERM), server.output()
    assert "Application shutdown complete" in server.output()
    assert (tmp_path / "state" / "state.json.lock").exists()


def test_collector_image_installs_the_locked_versions() -> None:
    """The image installs the library and the collector with the collector's lock as
    constraints, and that lock pins every package exactly."""
    runs = [
        args for keyword, args in dockerfile_instructions(COLLECTOR_DOCKERFILE) if keyword == "RUN"
    ]
    installs = [run for run in runs if "pip install" in run]
    assert installs == [installs[0]]
    assert "-c collector/constraints.txt" in installs[0]
    assert re.search(r"\. \./collector\b", installs[0])
    lock = (REPO_ROOT / "collector" / "constraints.txt").read_text().splitlines()
    pins = [line for line in lock if line.strip() and not line.startswith("#")]
    assert pins
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+-]+", pin) for pin in pins), pins
    names = {pin.split("==")[0].lower().replace("_", "-") for pin in pins}
    assert {"fastapi", "uvicorn", "opentelemetry-sdk", "prometheus-client"} <= names
    assert not names & {"otelkit", "otelkit-collector"}


@pytest.mark.parametrize(
    "dockerfile",
    [COLLECTOR_DOCKERFILE, EXAMPLE_DOCKERFILE],
    ids=lambda path: str(path.relative_to(REPO_ROOT)),
)
def test_image_runs_as_a_non_root_user(dockerfile: Path) -> None:
    """The last USER of each image is an unprivileged user."""
    users = [args for keyword, args in dockerfile_instructions(dockerfile) if keyword == "USER"]
    assert users, "no USER instruction: the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_collector_container_settings_bind_all_interfaces() -> None:
    """The image's ENV plus compose's environment (variables unset) build valid settings
    listening on 0.0.0.0 at the port compose publishes."""
    environ = dockerfile_env(dockerfile_instructions(COLLECTOR_DOCKERFILE))
    assert environ["OTELKIT_COLLECTOR_HOST"] == "0.0.0.0"
    collector = SERVICES["collector"]
    environ |= {name: interpolate(str(value)) for name, value in collector["environment"].items()}
    settings = CollectorSettings.from_env(environ=environ)
    assert settings.host == "0.0.0.0"
    assert settings.port in published_ports(collector).values()
    assert settings.token is None
    state_dir = {mount.target for mount in mounts(collector) if not mount.is_bind}
    assert settings.state_file is not None
    assert str(settings.state_file.parent) in state_dir


@pytest.mark.parametrize(
    "dockerfile",
    [COLLECTOR_DOCKERFILE, EXAMPLE_DOCKERFILE],
    ids=lambda path: str(path.relative_to(REPO_ROOT)),
)
def test_image_copies_files_that_exist(dockerfile: Path) -> None:
    """Every COPY source exists in the build context (the repository root) and every
    ``pip install .[extra]`` names a declared extra."""
    instructions = dockerfile_instructions(dockerfile)
    for keyword, arguments in instructions:
        if keyword == "COPY":
            *sources, _ = arguments.split()
            for source in sources:
                assert (REPO_ROOT / source).exists(), source
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for keyword, arguments in instructions:
        if keyword == "RUN":
            for requested in re.findall(r"\.\[([\w,]+)\]", arguments):
                assert set(requested.split(",")) <= set(extras), requested


# --- The example image ---------------------------------------------------------------------


def test_example_image_serves_the_courses_app_on_its_published_port() -> None:
    """The example's command is uvicorn serving ``examples.courses.app:app`` on 0.0.0.0 at the
    container port compose publishes."""
    argv = exec_form(dockerfile_instructions(EXAMPLE_DOCKERFILE), "CMD")
    assert argv[0] == "uvicorn"
    assert argv[1] == "examples.courses.app:app"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    port = int(argv[argv.index("--port") + 1])
    assert port in published_ports(SERVICES["courses"]).values()


def test_example_app_imports() -> None:
    """``examples.courses.app:app`` imports to an ASGI app (in a fresh interpreter, since
    importing it instruments the app)."""
    code = (
        "import importlib; from fastapi import FastAPI; "
        "module = importlib.import_module('examples.courses.app'); "
        "assert isinstance(module.app, FastAPI)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stderr
