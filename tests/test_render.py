"""`make render`: every file a stack renders, deterministic and secret-free."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.harness import CONTAINER_TYPE, evaluate, fake_secret, stack_config, unwrap
from tests.render import PLACEHOLDER, main, rendered
from tests.test_stack_prod import prod_config

ROOT = Path(__file__).resolve().parents[1]


def project(tmp_path: Path, stack: str, config: dict[str, object]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    document = {"config": {f"wondernest:{key}": value for key, value in config.items()}}
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


def test_the_dev_stack_renders_each_containers_files_the_same_every_time() -> None:
    first, second = rendered("dev"), rendered("dev")
    assert first == second
    ev = evaluate(stack_config())
    [prometheus] = [c for c in ev.of_type(CONTAINER_TYPE) if c.name == "prometheus"]
    uploads = {u["file"]: u["content"] for u in unwrap(prometheus.inputs["uploads"])}
    assert first["wondernest-dev-prometheus/etc/prometheus/prometheus.yml"] == uploads["/etc/prometheus/prometheus.yml"]
    assert "listen_addresses = '*'" in first["wondernest-dev-postgres/etc/postgresql/postgresql.conf"]
    assert '"DB_USER=wondernest_app"' in first["wondernest-dev-api/CONTAINER.json"]


def test_no_generated_secret_is_written() -> None:
    files = rendered("dev")
    secrets = evaluate(stack_config()).generated_secrets
    assert secrets and not [path for path, text in files.items() if any(s in text for s in secrets)]
    assert files["wondernest-dev-api/run/secrets/db-password"] == PLACEHOLDER
    assert fake_secret("postgres-app") not in "".join(files.values())


def test_a_config_change_changes_only_the_files_it_reaches(tmp_path: Path) -> None:
    before = rendered("dev", project(tmp_path / "a", "dev", stack_config()))
    changed = stack_config({"postgres": {**stack_config()["postgres"], "slowQueryMs": 250}})
    after = rendered("dev", project(tmp_path / "b", "dev", changed))
    assert {path for path in before if before[path] != after.get(path)} == {
        "wondernest-dev-postgres/etc/postgresql/postgresql.conf"
    }


def test_an_aws_stack_renders_its_tasks_rules_parameters_and_policies(tmp_path: Path) -> None:
    files = rendered("prod", project(tmp_path, "prod", prod_config()))
    assert "groups:" in files["prometheus/rules.yml"]
    assert "scrape_configs" in files["tasks/wondernest-prod-api.collector.yml"]
    assert '"(tasks/wondernest-prod-api.collector.yml)"' in files["tasks/wondernest-prod-api.json"]
    assert "idle_in_transaction_session_timeout = 3600000" in files["rds/wondernest-prod-postgres15.conf"]
    assert '"Statement"' in files["policies/key.json"] and '"Statement"' in files["iam/restore-task-role.json"]


def test_the_command_writes_the_folder_and_names_a_bad_stack(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["dev", "--out", str(out)]) == 0
    assert (out / "wondernest-dev-redis/usr/local/etc/redis/redis.conf").is_file()
    try:
        main(["nosuch"])
    except SystemExit as exc:
        assert str(exc.code).startswith("error: no Pulumi.nosuch.yaml")
    else:
        raise AssertionError("a stack without a file was rendered")
