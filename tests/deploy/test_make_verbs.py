"""The Makefile's verbs as a newcomer types them: `make run PORT=9000`, and what each installs.

Read with `make -n -B` (print every command, as if nothing were built yet; run none).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from support.deploy_files import ROOT


def _plan(*args: str) -> list[str]:
    """The commands `make args` would run on a fresh clone, one per line (continuations joined)."""
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed: the README's verbs need it")
    env = {key: value for key, value in os.environ.items() if key not in {"PORT", "HOST"}}
    result = subprocess.run(
        [make, "-n", "-B", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.replace("\\\n", " ").splitlines()


def _serve_line(plan: list[str]) -> list[str]:
    (line,) = [line for line in plan if " serve " in line]
    return line.split()


def _option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def test_make_run_serves_loopback_8080_by_default() -> None:
    """Plain `make run` serves config/gateway.yaml on 127.0.0.1:8080 with a demo key."""
    words = _serve_line(_plan("run"))
    assert _option(words, "--port") == "8080"
    assert _option(words, "--host") == "127.0.0.1"
    assert _option(words, "--config") == "config/gateway.yaml"
    assert "--demo-key" in words


def test_make_run_honours_port_host_and_config() -> None:
    """`make run PORT=9000 HOST=0.0.0.0 CONFIG=...` reaches `gateway serve`."""
    words = _serve_line(
        _plan("run", "PORT=9000", "HOST=0.0.0.0", "CONFIG=config/gateway.variations.yaml")
    )
    assert _option(words, "--port") == "9000"
    assert _option(words, "--host") == "0.0.0.0"  # noqa: S104 - a make variable, not a bind
    assert _option(words, "--config") == "config/gateway.variations.yaml"


def _installs(plan: list[str]) -> list[str]:
    return [line for line in plan if " pip " in line and ("install" in line or "sync" in line)]


def test_make_run_installs_only_what_running_needs() -> None:
    """`make run` syncs .venv to the runtime lock, never the dev lock (test and lint tools)."""
    installs = _installs(_plan("run"))
    assert any("requirements.lock" in line for line in installs), installs
    assert not any("requirements-dev.lock" in line for line in installs), installs


@pytest.mark.parametrize("verb", ["test", "lint"])
def test_make_test_and_lint_add_the_dev_extras_to_the_same_venv(verb: str) -> None:
    """`make test` and `make lint` sync the dev lock into the one .venv `make run` uses."""
    plan = _plan(verb)
    assert any("requirements-dev.lock" in line for line in _installs(plan))
    assert [line for line in plan if " -m venv .venv" in line] == ["python3 -m venv .venv"]


@pytest.mark.parametrize("verb", ["run", "test", "lint", "bench"])
def test_every_install_comes_from_a_lock_with_hashes(verb: str) -> None:
    """Nothing is resolved at install time: each install either takes a lock with
    `--require-hashes` or is the package itself with `--no-deps` and its build backend
    constrained by the tools lock."""
    installs = _installs(_plan(verb))
    assert installs
    for line in installs:
        words = line.split()
        if "-e" in words:
            assert "--no-deps" in words, line
            assert _option(words, "--build-constraints") == "requirements-tools.lock", line
        else:
            assert "--require-hashes" in words, line
            assert any(word.endswith(".lock") for word in words), line


def test_make_run_echoes_none_of_its_commands() -> None:
    """On a fresh clone `make run` prints one line per install step and then only what the
    commands themselves print (quiet installs, the gateway's own lines): make echoes no
    command. Run with a shell that runs nothing, so all that shows is make's own output."""
    make, true = shutil.which("make"), shutil.which("true")
    assert make is not None and true is not None
    # Not as a sub-make of `make test`, which would add its "Entering directory" lines.
    dropped = {"PORT", "HOST", "MAKELEVEL", "MAKEFLAGS", "MFLAGS"}
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    result = subprocess.run(
        [make, "-B", "run", f"SHELL={true}"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert result.stdout == "", result.stdout
    installs = [line for line in _plan("run") if " pip " in line]
    assert installs and all("--quiet" in line for line in installs), installs
