"""The light install: `pip install .` in a fresh venv brings what a worker needs and none of the
server's packages; worker code imports the public surface; a server command says which extra to install."""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a pip install, about 10 s with a warm pip cache
ROOT = Path(__file__).resolve().parents[1]
SERVER_ONLY = ("fastapi", "uvicorn", "fakeredis", "rich", "bcrypt", "prometheus_client", "starlette", "websockets")

CHECK = """
import importlib.util, sys
present = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None]
print("present:", ",".join(present))
from aggregator import AsyncEmitter, Emitter, Settings, partition_of
from aggregator.integrations.base import ProcessEmitter
import aggregator.consumer  # the aggregator needs no server package either
emitter = Emitter(Settings(redis_url="redis://127.0.0.1:1/0"), worker_id="light")
emitter.enqueued("j1", "email")
print("emitter ok", partition_of("email", 4), emitter.pending())
"""


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with ``pip install .`` of a copy of the project (the checkout is left as it was)."""
    base = tmp_path_factory.mktemp("light")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("aggregator", "api"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    run = subprocess.run([str(env_dir / "bin" / "pip"), "install", "-q", str(src)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    return env_dir


def test_pip_install_brings_no_server_package(light_venv: Path) -> None:
    run = subprocess.run([str(light_venv / "bin" / "python"), "-c", CHECK, *SERVER_ONLY], capture_output=True,
                         text=True, timeout=60, cwd=light_venv)
    assert run.returncode == 0, run.stderr
    assert "present: \n" in run.stdout, run.stdout  # none of the server's packages is importable
    assert "emitter ok 0 1"  # crc32(b"email") % 4 == 0 in run.stdout


@pytest.mark.parametrize("command", [["serve", "--demo"], ["api"], ["top", "--once"], ["hammerwork-bridge"]])
def test_a_server_command_names_the_extra_to_install(light_venv: Path, command: list[str]) -> None:
    run = subprocess.run([str(light_venv / "bin" / "jobpulse"), *command], capture_output=True, text=True,
                         timeout=60, cwd=light_venv)
    assert run.returncode == 2
    assert "pip install 'jobpulse[server]'" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_worker_side_commands_work_without_the_extra(light_venv: Path) -> None:
    run = subprocess.run([str(light_venv / "bin" / "jobpulse"), "acl"], capture_output=True, text=True, timeout=60,
                         cwd=light_venv)
    assert run.returncode == 0 and "ACL SETUSER jobpulse-emitter" in run.stdout, run.stderr

