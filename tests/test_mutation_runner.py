"""The mutation runner's choice of mutants: a module named by its own name
reaches the mutants of that module, nested packages included."""

from __future__ import annotations

import pytest

from tests.mutation.run import AREAS, main


def test_a_module_is_named_by_its_own_name_whatever_its_package() -> None:
    areas = {area.name: area for area in AREAS}
    assert areas["postgres"].modules()["roles"] == "components.postgres.roles"
    assert areas["alerts"].modules() == {"alerts": "components.model.alerts"}
    assert areas["backups"].modules()["imports"] == "wondernest_backup.imports"
    for area in AREAS:
        assert len(area.modules()) == len(area.files), area.name


def test_a_module_the_area_does_not_have_is_refused_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["postgres", "--module", "extension"])
    assert exit_.value.code == 2
    assert "area postgres has no module extension; its modules: base, roles," in capsys.readouterr().err
