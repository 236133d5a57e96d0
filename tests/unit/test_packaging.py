"""pyproject.toml is the one source of the pins: the requirements files the Procfile platforms install, and the
constraints file, must agree with it; the Python version files too."""
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins(lines) -> dict[str, str]:
    reqs = [Requirement(line) for line in lines]
    assert all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in reqs), "pin with =="
    return {canonicalize_name(r.name): str(r) for r in reqs}


def _requirements_file(name: str) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines()]
    return _pins(line for line in lines if line and not line.startswith("-r"))


def test_requirements_files_are_the_pins_of_pyproject():
    assert _requirements_file("requirements.txt") == _pins(PROJECT["dependencies"])
    assert _requirements_file("requirements-dev.txt") == _pins(PROJECT["optional-dependencies"]["dev"])


def test_constraints_pin_every_direct_dependency_at_the_same_version():
    constraints = {canonicalize_name(Requirement(line).name): Requirement(line).specifier
                   for line in (ROOT / "constraints.txt").read_text().splitlines() if line and line[0] != "#"}
    for text in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]:
        req = Requirement(text)
        assert constraints.get(canonicalize_name(req.name)) == req.specifier, req.name


def test_python_version_file_satisfies_requires_python():
    version = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", version)
    assert SpecifierSet(PROJECT["requires-python"]).contains(f"{version}.0")
    assert SpecifierSet(PROJECT["requires-python"]).contains(".".join(map(str, sys.version_info[:3])))


def test_the_license_is_mit():
    assert PROJECT["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
