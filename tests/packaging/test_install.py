"""The two distributions install as documented, checked with real pip in fresh virtual envs.

``otelkit`` is a guest in other people's services: it declares version ranges, installs beside
the newest OpenTelemetry and FastAPI without moving them, and brings no server, no HTTP client
(unless ``otelkit[push]`` is asked for) and no top-level module besides ``otelkit``.
``otelkit-collector`` is the application: its own distribution, package and console script,
installed with ``collector/constraints.txt`` when that lock exists.

The wheels come from ``$OTELKIT_WHEEL_DIR`` when it is set (``make test`` builds them there),
else they are built once per session with ``pip wheel --no-deps``. Each fresh environment is
built once per module by a fixture that records what it observed; the tests assert on those
records, so their order does not matter.
"""

from __future__ import annotations

import csv
import email.message
import email.parser
import io
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

# pytest itself depends on packaging (>=24), so it is importable wherever these tests run.
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

pytestmark = pytest.mark.timeout(600)

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_ROOT = REPO_ROOT / "collector"
CONSTRAINTS = COLLECTOR_ROOT / "constraints.txt"
WHEEL_DIR_VARIABLE = "OTELKIT_WHEEL_DIR"

VENV_TIMEOUT = 180.0
PIP_TIMEOUT = 480.0
PYTHON_TIMEOUT = 120.0

NEWEST_STACK = (
    "fastapi",
    "opentelemetry-sdk",
    "opentelemetry-api",
    "opentelemetry-instrumentation-fastapi",
    "opentelemetry-exporter-prometheus",
)
SERVERS_AND_CLIENTS = frozenset(
    canonicalize_name(name) for name in ("uvicorn", "uvloop", "httptools", "click", "httpx")
)
NOT_IN_A_BARE_INSTALL = SERVERS_AND_CLIENTS | {
    canonicalize_name("h11"),
    canonicalize_name("fastapi"),
}
OTELKIT = canonicalize_name("otelkit")
COLLECTOR = canonicalize_name("otelkit-collector")
HTTPX = canonicalize_name("httpx")

EXPECTED_METRICS_LINE = (
    'http_request_duration_seconds_count{method="GET",route="/hello",status="200"} 1.0'
)

# Run by a venv's python: every installed distribution, its version and its Requires-Dist.
DISTRIBUTIONS_SCRIPT = """\
import importlib.metadata, json
print(json.dumps([
    [d.metadata["Name"], d.version, d.requires or []] for d in importlib.metadata.distributions()
]))
"""

# Run by a venv's python from a neutral directory: exit 1 if ``import collector`` would find
# something.
FIND_COLLECTOR_SCRIPT = """\
import importlib.util, sys
spec = importlib.util.find_spec("collector")
print(spec)
sys.exit(spec is not None)
"""

# Run by the bare install's python: a plain Starlette app instrumented by otelkit, driven
# through the ASGI interface (lifespan, GET /hello, GET /metrics) with no server and no HTTP
# client; prints the /metrics body.
SERVE_SCRIPT = '''\
"""Serve GET /hello, then GET /metrics, through an otelkit-instrumented Starlette app."""

import asyncio
import sys

import otelkit
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


app = Starlette(routes=[Route("/hello", hello)])
otelkit.instrument(app, service_name="x")


async def get(path: str, state: dict) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": dict(state),
    }
    messages = []
    done = asyncio.Event()
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    await asyncio.wait_for(app(scope, receive, send), 30)
    starts = [m for m in messages if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return starts[0]["status"], body


async def main() -> int:
    state: dict = {}
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    started = await asyncio.wait_for(outbox.get(), 30)
    if started["type"] != "lifespan.startup.complete":
        print(f"lifespan startup: {started}", file=sys.stderr)
        return 1
    status, body = await get("/hello", state)
    if (status, body) != (200, b"hello"):
        print(f"GET /hello: {status} {body!r}", file=sys.stderr)
        return 1
    status, metrics = await get("/metrics", state)
    if status != 200:
        print(f"GET /metrics: {status} {metrics!r}", file=sys.stderr)
        return 1
    await inbox.put({"type": "lifespan.shutdown"})
    stopped = await asyncio.wait_for(outbox.get(), 30)
    await asyncio.wait_for(lifespan, 30)
    if stopped["type"] != "lifespan.shutdown.complete":
        print(f"lifespan shutdown: {stopped}", file=sys.stderr)
        return 1
    print(metrics.decode())
    return 0


sys.exit(asyncio.run(main()))
'''


# --- subprocesses ---------------------------------------------------------------------------


def _subprocess_env() -> dict[str, str]:
    """This process's environment without what would redirect Python, pip or OpenTelemetry."""
    dropped = {
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONUSERBASE",
        "VIRTUAL_ENV",
        "PIP_USER",
        "PIP_TARGET",
        "PIP_PREFIX",
        "PIP_REQUIRE_VIRTUALENV",
    }
    return {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(("OTEL_", "OTELKIT_"))
    }


def _tail(text: str | bytes | None, lines: int) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _output_tails(stdout: str | bytes | None, stderr: str | bytes | None) -> str:
    return f"--- stderr (tail) ---\n{_tail(stderr, 40)}\n--- stdout (tail) ---\n{_tail(stdout, 40)}"


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    """A failure message: the command, its exit code and the tails of its output."""
    command = " ".join(str(arg) for arg in proc.args)
    return f"`{command}` exited {proc.returncode}\n{_output_tails(proc.stdout, proc.stderr)}"


def run(
    argv: Sequence[str | Path], *, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion; a non-zero exit is returned, outliving ``timeout`` fails."""
    args = [str(arg) for arg in argv]
    try:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=_subprocess_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"`{' '.join(args)}` did not finish within {timeout:.0f} s\n"
            f"{_output_tails(exc.stdout, exc.stderr)}"
        )


def checked(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """``proc``, or a failure naming the command and pip's (or Python's) stderr tail."""
    if proc.returncode != 0:
        pytest.fail(describe(proc))
    return proc


# --- virtual environments -------------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    """One installed distribution: its version and its ``Requires-Dist`` lines."""

    version: str
    requires: tuple[str, ...]


Distributions = dict[NormalizedName, Installed]


@dataclass(frozen=True)
class Venv:
    """A fresh virtual environment made by ``python -m venv``.

    It is made without pip (``ensurepip`` costs ~10 s per environment); the test's own pip
    installs into it with ``pip --python`` (pip >= 22.3), so the environment holds nothing but
    what was installed into it.
    """

    root: Path

    def bin(self, name: str) -> Path:
        """The path of an executable installed into this environment."""
        return self.root / ("Scripts" if os.name == "nt" else "bin") / name

    @property
    def python(self) -> Path:
        """This environment's interpreter."""
        return self.bin("python")

    def python_run(
        self, *args: str | Path, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run this environment's python with ``args``; the result is not checked."""
        return run([self.python, *args], timeout=PYTHON_TIMEOUT, cwd=cwd)

    def pip_command(self, *args: str | Path) -> list[str | Path]:
        """A pip command acting on this environment (pip itself runs from the test's python)."""
        return [
            sys.executable,
            "-I",
            "-m",
            "pip",
            "--python",
            self.python,
            "--disable-pip-version-check",
            "--no-input",
            *args,
        ]

    def pip(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """Run pip on this environment; a non-zero exit fails with pip's stderr tail."""
        return checked(run(self.pip_command(*args), timeout=PIP_TIMEOUT, cwd=self.root))

    def pip_check(self) -> subprocess.CompletedProcess[str]:
        """``pip check``, unchecked: the tests assert on its exit code."""
        return run(self.pip_command("check"), timeout=PYTHON_TIMEOUT, cwd=self.root)

    def distributions(self) -> Distributions:
        """Every distribution installed here, by normalized name, as importlib.metadata sees it."""
        proc = checked(self.python_run("-I", "-c", DISTRIBUTIONS_SCRIPT, cwd=self.root))
        return {
            canonicalize_name(name): Installed(version, tuple(requires))
            for name, version, requires in json.loads(proc.stdout)
        }


def make_venv(root: Path) -> Venv:
    """A fresh virtual environment at ``root``, made from the interpreter running the tests."""
    checked(run([sys.executable, "-m", "venv", "--without-pip", root], timeout=VENV_TIMEOUT))
    return Venv(root)


# --- wheels ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wheels:
    """The two built wheels."""

    otelkit: Path
    collector: Path


def _one_wheel(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        pytest.fail(f"expected exactly one {pattern} in {directory}, found {found}")
    return found[0]


def _dist_info(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        names = {name.split("/")[0] for name in archive.namelist()}
    dist_infos = [name for name in names if name.endswith(".dist-info")]
    assert len(dist_infos) == 1, f"{wheel.name} has dist-info directories {dist_infos}"
    return dist_infos[0]


def wheel_text(wheel: Path, name: str) -> str:
    """The text of one file of the wheel's dist-info directory."""
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(f"{_dist_info(wheel)}/{name}").decode()


def wheel_record(wheel: Path) -> list[str]:
    """Every path the wheel's RECORD lists."""
    rows = csv.reader(io.StringIO(wheel_text(wheel, "RECORD")))
    return [row[0] for row in rows if row]


def wheel_metadata(wheel: Path) -> email.message.Message:
    """The wheel's METADATA."""
    return email.parser.Parser().parsestr(wheel_text(wheel, "METADATA"))


def wheel_requirements(wheel: Path, extra: str = "") -> list[Requirement]:
    """The wheel's ``Requires-Dist`` entries that apply here when ``extra`` is asked for."""
    return list(applicable(wheel_metadata(wheel).get_all("Requires-Dist") or [], {extra}))


def applicable(requires: Iterable[str], extras: Iterable[str]) -> Iterator[Requirement]:
    """The requirements whose marker holds on this interpreter for no extra or any of ``extras``."""
    for line in requires:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in {"", *extras}):
            yield requirement


def package_files(wheel: Path, package: str) -> tuple[set[str], list[str]]:
    """The wheel's RECORD split into ``package``'s files and anything else outside dist-info."""
    dist_info = _dist_info(wheel)
    packaged: set[str] = set()
    stray: list[str] = []
    for path in wheel_record(wheel):
        if path.startswith(f"{package}/"):
            packaged.add(path)
        elif not path.startswith(f"{dist_info}/"):
            stray.append(path)
    return packaged, stray


def source_files(package_dir: Path) -> set[str]:
    """Every file of a package's source tree, as a wheel would name it."""
    return {
        path.relative_to(package_dir.parent).as_posix()
        for path in package_dir.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wheels]:
    """The wheels from ``$OTELKIT_WHEEL_DIR``, else both built once with ``pip wheel``."""
    given = os.environ.get(WHEEL_DIR_VARIABLE)
    built: Path | None = None
    if given:
        directory = Path(given)
    else:
        directory = built = tmp_path_factory.mktemp("wheels")
        checked(
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "--no-input",
                    "-w",
                    directory,
                    REPO_ROOT,
                    COLLECTOR_ROOT,
                ],
                timeout=PIP_TIMEOUT,
            )
        )
    yield Wheels(
        otelkit=_one_wheel(directory, "otelkit-*.whl"),
        collector=_one_wheel(directory, "otelkit_collector-*.whl"),
    )
    if built is not None:
        shutil.rmtree(built, ignore_errors=True)


def added_by(
    requirements: Iterable[Requirement], before: Distributions, after: Distributions
) -> set[NormalizedName]:
    """What installing ``requirements`` over ``before`` must add: each one missing and, in turn,
    whatever of its own requirements (as ``after`` declares them) was missing too."""
    expected: set[NormalizedName] = set()
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in before or name in expected:
            continue
        expected.add(name)
        if name in after:
            pending.extend(applicable(after[name].requires, requirement.extras))
    return expected


def moved(before: Distributions, after: Distributions) -> dict[str, str]:
    """Distributions of ``before`` whose version changed or that vanished, as 'old -> new'."""
    return {
        name: f"{installed.version} -> {after[name].version if name in after else 'removed'}"
        for name, installed in before.items()
        if name not in after or after[name].version != installed.version
    }


def differences(actual: set[NormalizedName], expected: set[NormalizedName]) -> str:
    """Which names are unexpected and which are missing."""
    return (
        f"unexpected: {sorted(actual - expected)}; missing: {sorted(expected - actual)}; "
        f"expected exactly {sorted(expected)}"
    )


# --- 1. beside the newest OpenTelemetry and FastAPI -----------------------------------------


@dataclass(frozen=True)
class NewestStack:
    """A venv with the newest FastAPI and OpenTelemetry, before and after adding otelkit."""

    before: Distributions
    after: Distributions
    pip_check: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def newest_stack(tmp_path_factory: pytest.TempPathFactory, wheels: Wheels) -> Iterator[NewestStack]:
    """Install the newest stack, record it, install the otelkit wheel, record again."""
    root = tmp_path_factory.mktemp("newest-stack")
    venv = make_venv(root / "venv")
    venv.pip("install", *NEWEST_STACK)
    before = venv.distributions()
    venv.pip("install", wheels.otelkit)
    yield NewestStack(before=before, after=venv.distributions(), pip_check=venv.pip_check())
    shutil.rmtree(root, ignore_errors=True)


def test_newest_stack_keeps_every_version(newest_stack: NewestStack) -> None:
    """Installing otelkit beside the newest FastAPI and OpenTelemetry moves none of them."""
    assert set(NEWEST_STACK) <= set(newest_stack.before), "the newest stack did not install"

    changed = moved(newest_stack.before, newest_stack.after)

    assert not changed, f"installing otelkit moved: {changed}"


def test_newest_stack_passes_pip_check(newest_stack: NewestStack) -> None:
    """After otelkit joins the newest stack, ``pip check`` finds every requirement satisfied."""
    assert newest_stack.pip_check.returncode == 0, describe(newest_stack.pip_check)


def test_newest_stack_gains_only_otelkit_and_its_missing_requirements(
    newest_stack: NewestStack, wheels: Wheels
) -> None:
    """Otelkit adds itself plus whichever of its declared requirements were missing, no more."""
    declared = wheel_requirements(wheels.otelkit)
    expected = {OTELKIT} | added_by(declared, newest_stack.before, newest_stack.after)

    added = set(newest_stack.after) - set(newest_stack.before)

    assert added == expected, differences(added, expected)


def test_newest_stack_gains_no_server_client_or_collector(newest_stack: NewestStack) -> None:
    """Beside the newest stack, otelkit brings no server, HTTP client or the collector app."""
    unwanted = (SERVERS_AND_CLIENTS | {COLLECTOR}) & set(newest_stack.after)

    assert not unwanted, (
        f"installed: {sorted(unwanted)} (already there before otelkit: "
        f"{sorted(unwanted & set(newest_stack.before))})"
    )


# --- 2. a bare install ----------------------------------------------------------------------


@dataclass(frozen=True)
class BareInstall:
    """A venv holding only the otelkit wheel and what it requires, and what it was seen doing."""

    venv: Venv
    installed: Distributions
    pip_check: subprocess.CompletedProcess[str]
    import_otelkit: subprocess.CompletedProcess[str]
    serve: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def bare_install(tmp_path_factory: pytest.TempPathFactory, wheels: Wheels) -> Iterator[BareInstall]:
    """Install the otelkit wheel alone, then import it and serve a request, recording each."""
    root = tmp_path_factory.mktemp("bare")
    venv = make_venv(root / "venv")
    venv.pip("install", wheels.otelkit)
    script = root / "serve_hello.py"
    script.write_text(SERVE_SCRIPT)
    yield BareInstall(
        venv=venv,
        installed=venv.distributions(),
        pip_check=venv.pip_check(),
        import_otelkit=venv.python_run(
            "-I", "-c", "import otelkit; print(otelkit.__file__)", cwd=root
        ),
        serve=venv.python_run("-I", script, cwd=root),
    )
    shutil.rmtree(root, ignore_errors=True)


def test_bare_install_adds_no_server_or_http_client(
    bare_install: BareInstall, wheels: Wheels
) -> None:
    """Alone, otelkit installs exactly its declared requirements: no server, client or FastAPI."""
    unwanted = NOT_IN_A_BARE_INSTALL & set(bare_install.installed)
    present = set(bare_install.installed)
    expected = {OTELKIT} | added_by(wheel_requirements(wheels.otelkit), {}, bare_install.installed)

    assert not unwanted, f"a bare otelkit install brought {sorted(unwanted)}"
    assert present == expected, differences(present, expected)
    assert bare_install.pip_check.returncode == 0, describe(bare_install.pip_check)


def test_otelkit_wheel_holds_only_the_otelkit_package(wheels: Wheels) -> None:
    """The otelkit wheel's one top-level module is ``otelkit``, holding exactly its source files."""
    packaged, stray = package_files(wheels.otelkit, "otelkit")
    sources = source_files(REPO_ROOT / "otelkit")

    assert wheel_text(wheels.otelkit, "top_level.txt").split() == ["otelkit"]
    assert not stray, f"files outside otelkit/ and its dist-info: {stray}"
    assert packaged == sources, (
        f"in the wheel only: {sorted(packaged - sources)}; "
        f"in the source only: {sorted(sources - packaged)}"
    )


def test_bare_install_imports_otelkit(bare_install: BareInstall) -> None:
    """``import otelkit`` works with only otelkit's own requirements installed."""
    proc = bare_install.import_otelkit

    assert proc.returncode == 0, describe(proc)
    assert Path(proc.stdout.strip()).is_relative_to(bare_install.venv.root), (
        f"imported otelkit from {proc.stdout.strip()}, not the venv"
    )


def test_bare_install_instruments_a_plain_starlette_app(bare_install: BareInstall) -> None:
    """A plain Starlette app instrumented by otelkit serves /metrics counting a request by route."""
    proc = bare_install.serve

    assert proc.returncode == 0, describe(proc)
    assert EXPECTED_METRICS_LINE in proc.stdout.splitlines(), (
        f"/metrics lacks {EXPECTED_METRICS_LINE!r}:\n{proc.stdout}"
    )


# --- 3. the push extra ----------------------------------------------------------------------


@dataclass(frozen=True)
class PushInstall:
    """The bare install's venv before and after ``otelkit[push]``."""

    before: Distributions
    after: Distributions
    pip_check: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def push_install(bare_install: BareInstall, wheels: Wheels) -> PushInstall:
    """Install ``otelkit[push]`` over the bare install (whose observations are already taken)."""
    bare_install.venv.pip("install", f"{wheels.otelkit}[push]")
    return PushInstall(
        before=bare_install.installed,
        after=bare_install.venv.distributions(),
        pip_check=bare_install.venv.pip_check(),
    )


def test_push_extra_adds_httpx_and_nothing_else(push_install: PushInstall, wheels: Wheels) -> None:
    """``otelkit[push]`` adds httpx and its missing requirements and moves nothing installed."""
    push_requirements = wheel_requirements(wheels.otelkit, "push")
    expected = added_by(push_requirements, push_install.before, push_install.after)
    added = set(push_install.after) - set(push_install.before)
    changed = moved(push_install.before, push_install.after)

    assert HTTPX in added, "otelkit[push] did not install httpx"
    assert added == expected, differences(added, expected)
    assert not changed, f"installing otelkit[push] moved: {changed}"
    assert push_install.pip_check.returncode == 0, describe(push_install.pip_check)


# --- 4. the collector -----------------------------------------------------------------------


@dataclass(frozen=True)
class CollectorInstall:
    """A venv holding both wheels (locked when constraints.txt exists), and what it did."""

    installed: Distributions
    pip_check: subprocess.CompletedProcess[str]
    script_help: subprocess.CompletedProcess[str]
    module_help: subprocess.CompletedProcess[str]
    find_collector: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def collector_install(
    tmp_path_factory: pytest.TempPathFactory, wheels: Wheels
) -> Iterator[CollectorInstall]:
    """Install both wheels as ``make run`` would, then run its entry points from a neutral cwd."""
    root = tmp_path_factory.mktemp("collector")
    venv = make_venv(root / "venv")
    constraints: list[str | Path] = ["-c", CONSTRAINTS] if CONSTRAINTS.exists() else []
    venv.pip("install", *constraints, wheels.otelkit, wheels.collector)
    neutral = root / "elsewhere"
    neutral.mkdir()
    yield CollectorInstall(
        installed=venv.distributions(),
        pip_check=venv.pip_check(),
        script_help=run(
            [venv.bin("otelkit-collector"), "--help"], timeout=PYTHON_TIMEOUT, cwd=neutral
        ),
        module_help=venv.python_run("-m", "otelkit_collector", "--help", cwd=neutral),
        find_collector=venv.python_run("-c", FIND_COLLECTOR_SCRIPT, cwd=neutral),
    )
    shutil.rmtree(root, ignore_errors=True)


def locked_versions(constraints: Path) -> dict[NormalizedName, str]:
    """Every ``name==version`` line of a constraints file that applies on this interpreter."""
    locked: dict[NormalizedName, str] = {}
    for raw in constraints.read_text().splitlines():
        line = raw.split(" #", 1)[0].removesuffix("\\").strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        specs = list(requirement.specifier)
        assert [spec.operator for spec in specs] == ["=="], (
            f"{constraints.name}: {raw!r} is not an exact pin"
        )
        locked[canonicalize_name(requirement.name)] = specs[0].version
    return locked


def test_collector_console_script_runs(collector_install: CollectorInstall) -> None:
    """The ``otelkit-collector`` console script answers ``--help`` with its ``--port`` option."""
    proc = collector_install.script_help

    assert proc.returncode == 0, describe(proc)
    assert "--port" in proc.stdout


def test_collector_module_runs(collector_install: CollectorInstall) -> None:
    """``python -m otelkit_collector --help`` answers with its ``--port`` option."""
    proc = collector_install.module_help

    assert proc.returncode == 0, describe(proc)
    assert "--port" in proc.stdout


def test_collector_install_has_no_top_level_collector_module(
    collector_install: CollectorInstall,
) -> None:
    """Nothing installs a top-level ``collector`` module; the app lives in ``otelkit_collector``."""
    proc = collector_install.find_collector

    assert proc.returncode == 0, f"`import collector` would find {proc.stdout.strip()}"


def test_collector_install_passes_pip_check(collector_install: CollectorInstall) -> None:
    """Both distributions together satisfy every requirement ``pip check`` knows of."""
    assert COLLECTOR in collector_install.installed
    assert collector_install.pip_check.returncode == 0, describe(collector_install.pip_check)


def test_collector_install_matches_its_lock(collector_install: CollectorInstall) -> None:
    """With ``collector/constraints.txt``, every distribution it names is installed at its pin."""
    if not CONSTRAINTS.exists():
        pytest.skip(f"{CONSTRAINTS.relative_to(REPO_ROOT)} does not exist yet")
    installed = collector_install.installed

    mismatched = {
        name: f"locked {pin}, installed {installed[name].version if name in installed else None}"
        for name, pin in locked_versions(CONSTRAINTS).items()
        if name not in installed or Version(installed[name].version) != Version(pin)
    }

    assert not mismatched, mismatched


def test_collector_wheel_holds_only_its_package(wheels: Wheels) -> None:
    """The collector wheel's one top-level module is ``otelkit_collector``, with its sources."""
    packaged, stray = package_files(wheels.collector, "otelkit_collector")
    sources = source_files(COLLECTOR_ROOT / "src" / "otelkit_collector")

    assert wheel_text(wheels.collector, "top_level.txt").split() == ["otelkit_collector"]
    assert not stray, f"files outside otelkit_collector/ and its dist-info: {stray}"
    assert packaged == sources, (
        f"in the wheel only: {sorted(packaged - sources)}; "
        f"in the source only: {sorted(sources - packaged)}"
    )


@pytest.mark.parametrize("package", ["otelkit", "otelkit_collector"])
def test_wheel_ships_py_typed(wheels: Wheels, package: str) -> None:
    """Each wheel's RECORD lists its package's ``py.typed`` marker."""
    wheel = wheels.otelkit if package == "otelkit" else wheels.collector

    assert f"{package}/py.typed" in wheel_record(wheel)


# --- 5. ranges, never pins ------------------------------------------------------------------


def library_requirements() -> list[Requirement]:
    """Every requirement otelkit's pyproject.toml declares, optional groups included."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    groups = project.get("optional-dependencies", {}).values()
    lines = [*project.get("dependencies", []), *(line for group in groups for line in group)]
    return [Requirement(line) for line in lines]


def _floor(requirement: Requirement) -> Version | None:
    floors = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return max(floors, default=None)


def _ceilings(requirement: Requirement) -> list[Version]:
    return [Version(spec.version) for spec in requirement.specifier if spec.operator == "<"]


def test_library_declares_no_pins() -> None:
    """No requirement of otelkit, in any group, is pinned with ``==`` or ``===``."""
    pinned = [
        str(requirement)
        for requirement in library_requirements()
        if any(spec.operator in ("==", "===") for spec in requirement.specifier)
    ]

    assert not pinned, f"pinned: {pinned}"


def test_library_requirements_have_a_floor_and_a_ceiling() -> None:
    """Every requirement of otelkit is a range with a ``>=`` floor and a ``<`` ceiling."""
    open_ended = [
        str(requirement)
        for requirement in library_requirements()
        if _floor(requirement) is None or not _ceilings(requirement)
    ]

    assert not open_ended, f"not a closed range: {open_ended}"


def test_opentelemetry_requirements_stop_before_the_next_major() -> None:
    """Each OpenTelemetry requirement stops at its next major: ``<2``, or ``<1`` for 0.x betas."""
    wrong = []
    for requirement in library_requirements():
        if not canonicalize_name(requirement.name).startswith("opentelemetry-"):
            continue
        floor = _floor(requirement)
        next_major = Version("1") if floor is not None and floor.major == 0 else Version("2")
        if floor is None or _ceilings(requirement) != [next_major]:
            wrong.append(f"{requirement} (expected <{next_major})")

    assert not wrong, wrong


@pytest.mark.parametrize("name", ["opentelemetry-api", "opentelemetry-sdk"])
def test_opentelemetry_floor_is_the_named_release_train(name: str) -> None:
    """Otelkit accepts the OpenTelemetry API and SDK from 1.43 on: the first release train whose
    PrometheusMetricReader takes ``registry=`` and ``scope_info_enabled=`` (the README says so)."""
    requirements = [r for r in library_requirements() if canonicalize_name(r.name) == name]
    assert requirements, f"{name} is not a requirement"
    floors = [_floor(requirement) for requirement in requirements]

    assert all(floor is not None and floor <= Version("1.43") for floor in floors), (
        f"{name} must accept 1.43: {[str(requirement) for requirement in requirements]}"
    )


def test_every_declared_floor_is_the_tested_one() -> None:
    """Each floor otelkit and the collector declare is exactly the version ``make test-floor``
    installs (requirements/floor.txt), so no floor is claimed untested."""
    pins: dict[str, Version] = {}
    for line in (REPO_ROOT / "requirements" / "floor.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    collector = tomllib.loads((COLLECTOR_ROOT / "pyproject.toml").read_text())["project"]
    declared = [*library_requirements(), *map(Requirement, collector["dependencies"])]
    untested = {
        str(requirement): str(pins.get(canonicalize_name(requirement.name)))
        for requirement in declared
        if canonicalize_name(requirement.name) != "otelkit"
        and pins.get(canonicalize_name(requirement.name)) != _floor(requirement)
    }

    assert untested == {}


def test_the_suite_imports_what_it_says() -> None:
    """Under ``make test`` (wheels in OTELKIT_WHEEL_DIR) this process imports otelkit and the
    collector from the installed wheels, never from the source tree beside the tests; elsewhere
    (``make test-floor``, an editable install) from the source tree."""
    import otelkit
    import otelkit_collector

    for module in (otelkit, otelkit_collector):
        location = Path(str(module.__file__)).resolve()
        in_tree = location.is_relative_to(REPO_ROOT) and not any(
            part.startswith(".venv") for part in location.relative_to(REPO_ROOT).parts
        )
        assert in_tree is (os.environ.get(WHEEL_DIR_VARIABLE) is None), location
