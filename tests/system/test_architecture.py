"""The import contracts of pyproject.toml (`make lint`) catch a module that imports upward or a cycle between the
modules of one package: checked on a copy of the code with one deliberate violation added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGES = ("hub", "feishu", "delivery", "offline_queue", "members", "foundation")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The hub's packages, the client library (a root package of the contracts too) and pyproject.toml, copied to
    a scratch directory."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "client" / "src" / "linghub", tmp_path / "linghub", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(where: Path) -> str:
    """What lint-imports reports on the code in ``where``."""
    env = {**os.environ, "PYTHONPATH": str(where)}
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=where, env=env, capture_output=True, text=True, timeout=120
    )
    return done.stdout + done.stderr


def test_the_layers_contract_fails_on_a_message_store_module_that_imports_the_router(copy):
    assert "offline_queue is not allowed to import delivery" not in lint_imports(copy)
    (copy / "offline_queue" / "upward.py").write_text("from delivery import router  # the queue calls up\n")

    report = lint_imports(copy)

    assert "offline_queue is not allowed to import delivery" in report
    assert "offline_queue.upward -> delivery.router" in report


def test_the_acyclic_siblings_contract_fails_on_two_modules_of_a_package_that_import_each_other(copy):
    assert "No cycles are allowed in offline_queue" not in lint_imports(copy)
    (copy / "offline_queue" / "first.py").write_text("from offline_queue import second  # noqa\n")
    (copy / "offline_queue" / "second.py").write_text("from offline_queue import first  # noqa\n")

    assert "No cycles are allowed in offline_queue" in lint_imports(copy)
