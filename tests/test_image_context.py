from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components.model.images import API_INPUTS as BUILD_INPUTS
from components.model.images import APP_DIR, BACKUP_INPUTS, DEV_S3_INPUTS, context_digest


@pytest.fixture
def context(tmp_path: Path) -> Path:
    copy = tmp_path / "app"
    copy.mkdir()
    for name in BUILD_INPUTS:
        source = APP_DIR / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy / name)
    return copy


def test_the_digest_is_stable_and_independent_of_location(context: Path) -> None:
    assert context_digest(context, BUILD_INPUTS) == context_digest(APP_DIR, BUILD_INPUTS)


def test_caches_and_tests_do_not_count(context: Path) -> None:
    before = context_digest(context, BUILD_INPUTS)
    (context / "wondernest_api" / "__pycache__").mkdir(exist_ok=True)
    (context / "wondernest_api" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (context / "tests").mkdir()
    (context / "tests" / "test_x.py").write_text("pass\n")
    assert context_digest(context, BUILD_INPUTS) == before


@pytest.mark.parametrize("changed", ["Dockerfile", "requirements.txt", "wondernest_api/app.py"])
def test_any_input_change_changes_the_digest(context: Path, changed: str) -> None:
    before = context_digest(context, BUILD_INPUTS)
    with open(context / changed, "a", encoding="utf-8") as fh:
        fh.write("\n# changed\n")
    assert context_digest(context, BUILD_INPUTS) != before


def test_a_renamed_file_changes_the_digest(context: Path) -> None:
    before = context_digest(context, BUILD_INPUTS)
    (context / "wondernest_api" / "errors.py").rename(context / "wondernest_api" / "failures.py")
    assert context_digest(context, BUILD_INPUTS) != before


def test_a_missing_input_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="build input"):
        context_digest(tmp_path, ["Dockerfile"])


def test_no_inputs_named_is_the_whole_context(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_text("2")
    whole = context_digest(tmp_path)
    assert whole == context_digest(tmp_path, ("a", "sub"))
    (tmp_path / "sub" / "b").write_text("3")
    assert context_digest(tmp_path) != whole


def test_the_builder_is_sent_everything_the_dockerfile_copies() -> None:
    """app/.dockerignore excludes everything and lets through named entries:
    a package the Dockerfile copies but the ignore file forgets fails the build
    on a real engine only, so each COPY source and each image input is checked here."""
    app = Path(__file__).resolve().parent.parent / "app"
    allowed = {
        line[1:].rstrip("/") for line in (app / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    copied = {
        words[-2]
        for line in (app / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for words in [line.split()]
    }
    inputs = {name for name in (*BUILD_INPUTS, *BACKUP_INPUTS, *DEV_S3_INPUTS) if name != "Dockerfile"}
    assert copied - allowed == set()
    assert inputs - allowed == set()
    assert "wondernest_emulator" in copied
