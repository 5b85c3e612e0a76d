"""The locked dependency sets: what a fresh clone, CI and the image install.

A new release of any package must change nothing until `make upgrade` takes it on purpose,
so every install is pinned and hashed, the runtime set agrees with the dev set, and both
still satisfy the ranges pyproject.toml declares for people who install the package.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import NamedTuple

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.deploy_files import DOCKERFILE, ROOT

RUN_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
TOOLS_LOCK = ROOT / "requirements-tools.lock"
LOCKS = (RUN_LOCK, DEV_LOCK, TOOLS_LOCK)

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;\\]+)\s*(?:;(?P<marker>[^\\]*))?")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


class Pin(NamedTuple):
    version: str
    marker: str
    hashes: frozenset[str]


def _pins(lock: Path) -> dict[str, Pin]:
    """The lock's requirements by canonical name; fails on any line that is not a pin."""
    pins: dict[str, Pin] = {}
    for entry in re.split(r"\n(?=\S)", lock.read_text(encoding="utf-8")):
        if not entry.strip() or entry.startswith("#"):
            continue
        match = _PIN.match(entry)
        assert match, f"{lock.name}: not a pinned requirement: {entry.splitlines()[0]}"
        pins[canonicalize_name(match["name"])] = Pin(
            match["version"], (match["marker"] or "").strip(), frozenset(_HASH.findall(entry))
        )
    return pins


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _declared(extra: str | None) -> list[Requirement]:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    listed = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return [Requirement(text) for text in listed]


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.name)
def test_every_locked_package_is_pinned_and_hashed(lock: Path) -> None:
    """Each lock pins every package to one version with at least one sha256 hash, so an
    install can take nothing else (`--require-hashes` refuses a file that is not listed)."""
    pins = _pins(lock)
    assert pins
    assert all(pin.hashes for pin in pins.values()), [n for n, p in pins.items() if not p.hashes]


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.name)
def test_locks_name_no_index_or_host(lock: Path) -> None:
    """A lock says what to install, not where from: the installer's own index settings
    apply (a company mirror works unchanged)."""
    text = lock.read_text(encoding="utf-8")
    assert not re.search(r"--(?:extra-)?index-url|--find-links|https?://", text)


def test_the_runtime_lock_is_the_dev_lock_less_the_tools() -> None:
    """`make run` and the image run exactly the versions (and files) the tests ran."""
    run, dev = _pins(RUN_LOCK), _pins(DEV_LOCK)
    assert set(run) <= set(dev)
    assert {name: pin for name, pin in run.items() if pin != dev[name]} == {}


@pytest.mark.parametrize(("lock", "extra"), [(RUN_LOCK, None), (DEV_LOCK, None), (DEV_LOCK, "dev")])
def test_locks_satisfy_the_declared_ranges(lock: Path, extra: str | None) -> None:
    """Every dependency pyproject.toml declares is in the lock at a version its range admits:
    editing a range without `make lock` fails here, not on someone's laptop."""
    pins = _pins(lock)
    for requirement in _declared(extra):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement} is not in {lock.name}"
        assert requirement.specifier.contains(pin.version, prereleases=True), (requirement, pin)


def test_the_tools_lock_holds_the_installer_and_the_build_backend() -> None:
    """uv installs from the locks, and the locked setuptools satisfies build-system.requires."""
    pins = _pins(TOOLS_LOCK)
    assert "uv" in pins
    build = _pyproject()["build-system"]
    assert isinstance(build, dict)
    for text in build["requires"]:
        requirement = Requirement(text)
        version = pins[canonicalize_name(requirement.name)].version
        assert requirement.specifier.contains(version)


def test_locked_markers_parse() -> None:
    """The lock is universal (every platform, Python 3.11 on): its markers are valid PEP 508."""
    for lock in LOCKS:
        for pin in _pins(lock).values():
            if pin.marker:
                Marker(pin.marker)


def test_the_image_installs_the_runtime_lock_with_hashes() -> None:
    """The Dockerfile takes the runtime set from requirements.lock, hashes checked, and builds
    the package with the locked setuptools rather than an isolated, unpinned one."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    runs = [line for line in text.splitlines() if line.startswith("RUN ")]
    assert any("--require-hashes" in run and "-r requirements.lock" in run for run in runs)
    assert any("--no-build-isolation" in run and "pip wheel" in run for run in runs)


def test_ci_installs_nothing_of_its_own() -> None:
    """CI goes through the Makefile's verbs, which install from the locks; no pip of its own."""
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install" not in text
    assert re.search(r"^make test$", text, re.MULTILINE)
