"""The import contracts of pyproject.toml (`make lint`) catch a module that imports upward or a cycle between the
modules of one package: checked on a copy of the code with one deliberate violation added."""

from __future__ import annotations

from tests.support import lint_imports


def test_the_layers_contract_fails_on_a_message_store_module_that_imports_the_router(code_copy):
    assert "offline_queue is not allowed to import delivery" not in lint_imports(code_copy)
    (code_copy / "offline_queue" / "upward.py").write_text("from delivery import router  # the queue calls up\n")

    report = lint_imports(code_copy)

    assert "offline_queue is not allowed to import delivery" in report
    assert "offline_queue.upward -> delivery.router" in report


def test_the_acyclic_siblings_contract_fails_on_two_modules_of_a_package_that_import_each_other(code_copy):
    assert "No cycles are allowed in offline_queue" not in lint_imports(code_copy)
    (code_copy / "offline_queue" / "first.py").write_text("from offline_queue import second  # noqa\n")
    (code_copy / "offline_queue" / "second.py").write_text("from offline_queue import first  # noqa\n")

    assert "No cycles are allowed in offline_queue" in lint_imports(code_copy)
