"""The conda environments of envs/ against pyproject.toml, and the rules that use them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))

# Runtime dependencies that no rule runs: Snakemake schedules the jobs from outside.
NOT_IN_JOBS = {"snakemake"}

# Packages each environment must hold, beyond what its rules import lazily.
REQUIRED = {
    "quant-eval.yaml": {"lm-eval", "gguf", "numpy", "datasets", "pyyaml", "jsonschema"},
    "report.yaml": {"pandas", "matplotlib", "seaborn", "scipy", "statsmodels", "jsonschema", "pyyaml"},
}


def project_requirements() -> dict[str, SpecifierSet]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    return {canonicalize_name(r.name): r.specifier for r in requirements}


def conda_requirement(text: str) -> tuple[str, SpecifierSet]:
    """Parse a conda match spec such as `numpy>=1.26` or `python=3.11` into a name and a PEP 440 set."""
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", text.strip())
    assert match, f"cannot read conda spec {text!r}"
    name, constraint = match.groups()
    # conda's single '=' pins a version prefix: "=3.11" is "==3.11.*" in PEP 440.
    if re.fullmatch(r"=[^=].*", constraint):
        constraint = f"=={constraint[1:]}.*"
    return canonicalize_name(name), SpecifierSet(constraint)


def environment_requirements(path: Path) -> dict[str, SpecifierSet]:
    """Every package of an environment file, from its conda list and its pip section."""
    environment = yaml.safe_load(path.read_text())
    found = {}
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            for text in entry["pip"]:
                requirement = Requirement(text)
                found[canonicalize_name(requirement.name)] = requirement.specifier
        else:
            name, specifier = conda_requirement(entry)
            found[name] = specifier
    return found


def test_env_files_exist():
    assert {path.name for path in ENVS} == set(REQUIRED)


@pytest.mark.parametrize("path", ENVS, ids=lambda path: path.name)
def test_env_versions_match_pyproject(path):
    project = project_requirements()
    environment = environment_requirements(path)
    shared = set(project) & set(environment)
    assert shared, f"{path.name} shares no package with pyproject.toml"
    for name in shared:
        assert environment[name] == project[name], (
            f"{path.name} asks for {name}{environment[name]}, pyproject.toml for {name}{project[name]}"
        )


@pytest.mark.parametrize("path", ENVS, ids=lambda path: path.name)
def test_env_holds_required_packages(path):
    environment = environment_requirements(path)
    missing = REQUIRED[path.name] - set(environment)
    assert not missing, f"{path.name} lacks {sorted(missing)}"
    assert set(REQUIRED[path.name]) <= set(project_requirements()) - NOT_IN_JOBS


def test_env_python_matches_requires_python():
    requires_python = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    for path in ENVS:
        python = environment_requirements(path)["python"]
        version = str(python).removeprefix("==").removesuffix(".*")
        assert version in requires_python, f"{path.name}: python {version} outside {requires_python}"


def test_every_rule_names_an_env():
    """Each rule that runs a command declares a conda environment that exists."""
    for rules_file in sorted((REPO / "rules").glob("*.smk")):
        blocks = re.split(r"^rule ", rules_file.read_text(), flags=re.MULTILINE)[1:]
        for block in blocks:
            rule = block.split(":", 1)[0]
            if "shell:" not in block:
                continue
            match = re.search(r'conda:\s*\n\s*"\.\./envs/([^"]+)"', block)
            assert match, f"rule {rule} in {rules_file.name} has no conda: directive"
            assert (REPO / "envs" / match.group(1)).is_file(), f"rule {rule}: envs/{match.group(1)} not found"


def test_post_deploy_scripts_exist():
    for path in ENVS:
        script = path.with_name(path.stem + ".post-deploy.sh")
        assert script.is_file(), f"{script.name} missing"
        assert "pip install --no-deps" in script.read_text()
