"""The app contract: another app on both targets, under Pulumi's mock runtime,
and the contract's bad input refused before anything is declared."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import ConfigError, parse_config
from components.local.monitoring import RULES_FILE
from components.model.app import probe_command
from components.model.images import context_digest
from tests.harness import CONTAINER_TYPE, Evaluation, declared_by, evaluate, fake_secret, stack_config, unwrap
from tests.test_stack_prod import CERT, TASK_DEF, by_name, prod_config

ROOT = Path(__file__).resolve().parents[1]
NOTES_DIR = ROOT / "tests" / "fixtures" / "notes_app"
NOTES = yaml.safe_load((NOTES_DIR / "app.yaml").read_text())
NOTES_IMAGE = "registry.example.com/team/notes:2.4.1"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


def notes_prod(**app: Any) -> dict[str, Any]:
    config = prod_config({"domainName": "notes.example.com", "certificateArn": CERT}, app={**NOTES, **app})
    # The bundled API's own setting: another app is refused it (see below).
    del config["api"]
    return config


@pytest.fixture(scope="module")
def dev() -> Evaluation:
    return evaluate(stack_config({"app": NOTES}))


@pytest.fixture(scope="module")
def prod() -> Evaluation:
    return evaluate(notes_prod(), stack="prod")


def envs(ev: Evaluation, name: str) -> dict[str, str]:
    return dict(e.split("=", 1) for e in ev.named(CONTAINER_TYPE, name).inputs["envs"])


def task_containers(ev: Evaluation) -> dict[str, dict[str, Any]]:
    [task] = [d for d in ev.of_type(TASK_DEF) if d.inputs["family"].endswith("-api")]
    return {c["name"]: c for c in json.loads(task.inputs["containerDefinitions"])}


# --- the local target


def test_the_local_container_runs_the_contracts_image_command_user_and_port(dev: Evaluation) -> None:
    api = dev.named(CONTAINER_TYPE, "api").inputs
    image = dev.named("docker:index/image:Image", "api-image").inputs
    assert image["build"]["context"] == "tests/fixtures/notes_app"
    assert image["build"]["dockerfile"] == "tests/fixtures/notes_app/Dockerfile"
    assert "target" not in image["build"] or image["build"]["target"] is None
    # Every file of the context makes the tag.
    assert image["imageName"] == f"wondernest-api:{context_digest(NOTES_DIR)[:16]}"
    assert api["image"] == image["imageName"]
    assert api["command"] == ["python", "/srv/notes.py"]
    assert api["user"] == "10001:10001"
    assert api["ports"] == [{"internal": 8000, "external": 8080, "ip": "127.0.0.1", "protocol": "tcp"}]
    assert api["healthcheck"]["tests"] == probe_command("python", 8000, "/livez")


def test_the_local_container_gets_its_names_and_its_secrets_as_files(dev: Evaluation) -> None:
    env = envs(dev, "api")
    assert env == {
        "NOTES_GREETING": "hello",
        "NOTES_LISTEN_PORT": "8000",
        "NOTES_PG_HOST": "postgres",
        "NOTES_PG_PORT": "5432",
        "NOTES_PG_DATABASE": "wondernest",
        "NOTES_PG_USER": "wondernest_app",
        "NOTES_PG_PASSWORD_FILE": "/run/secrets/db-password",
        "NOTES_PG_SSLMODE": "verify-full",
        "NOTES_PG_CA": "/run/secrets/ca.crt",
        "NOTES_CACHE_HOST": "redis",
        "NOTES_CACHE_PORT": "6379",
        "NOTES_CACHE_USER": "wondernest_app",
        "NOTES_CACHE_PASSWORD_FILE": "/run/secrets/redis-password",
        "NOTES_CACHE_TLS": "true",
        "NOTES_CACHE_CA": "/run/secrets/ca.crt",
    }
    uploads = {u["file"]: u for u in unwrap(dev.named(CONTAINER_TYPE, "api").inputs["uploads"])}
    # No JWT key: the contract does not ask for it.
    assert set(uploads) == {"/run/secrets/db-password", "/run/secrets/redis-password", "/run/secrets/ca.crt"}
    assert uploads["/run/secrets/db-password"]["content"] == fake_secret("postgres-app")
    assert uploads["/run/secrets/redis-password"]["content"] == fake_secret("redis-app")
    assert all(upload["permissions"] == "0400" for upload in uploads.values() if "password" in upload["file"])


def test_without_migrations_or_metrics_there_is_no_job_scrape_rule_or_dashboard(dev: Evaluation) -> None:
    names = {c.name for c in dev.of_type(CONTAINER_TYPE)}
    assert "migrations" not in names and "api" in names
    api = dev.named(CONTAINER_TYPE, "api")
    assert not any(dep.endswith("::migrations") for dep in api.options["dependencies"])
    assert "com.wondernest.metrics-job" not in {label["label"] for label in api.inputs["labels"]}
    files = {u["file"]: u["content"] for u in unwrap(dev.named(CONTAINER_TYPE, "prometheus").inputs["uploads"])}
    jobs = [job["job_name"] for job in yaml.safe_load(files["/etc/prometheus/prometheus.yml"])["scrape_configs"]]
    assert "api" not in jobs and "postgres" in jobs
    rules = yaml.safe_load(files[RULES_FILE])
    groups = {group["name"] for group in rules["groups"]}
    assert not {g for g in groups if g.startswith("api")} and "postgres" in groups
    grafana = {u["file"] for u in unwrap(dev.named(CONTAINER_TYPE, "grafana").inputs["uploads"])}
    assert not any(f.endswith("/api.json") for f in grafana)
    assert any(f.endswith("/postgres.json") for f in grafana)


def test_a_metrics_path_of_the_contract_is_the_one_scraped() -> None:
    ev = evaluate(stack_config({"app": {**NOTES, "metrics": {"port": 9464, "path": "/prom"}}}))
    files = {u["file"]: u["content"] for u in unwrap(ev.named(CONTAINER_TYPE, "prometheus").inputs["uploads"])}
    [job] = [
        j for j in yaml.safe_load(files["/etc/prometheus/prometheus.yml"])["scrape_configs"] if j["job_name"] == "api"
    ]
    assert job["metrics_path"] == "/prom" and job["static_configs"] == [{"targets": ["api:9464"]}]


def test_a_migrations_job_runs_as_its_role_with_only_the_database_variables() -> None:
    app = {**NOTES, "migrations": {"command": ["python", "/srv/notes.py", "--migrate"], "role": "migrator"}}
    ev = evaluate(stack_config({"app": app}))
    job = ev.named(CONTAINER_TYPE, "migrations").inputs
    assert job["command"] == ["python", "/srv/notes.py", "--migrate"]
    env = envs(ev, "migrations")
    assert env["NOTES_PG_USER"] == "wondernest_migrator"
    assert set(env) == {
        "NOTES_PG_HOST", "NOTES_PG_PORT", "NOTES_PG_DATABASE", "NOTES_PG_USER", "NOTES_PG_PASSWORD_FILE",
        "NOTES_PG_SSLMODE", "NOTES_PG_CA",
    }  # fmt: skip
    uploads = {u["file"]: u["content"] for u in unwrap(job["uploads"])}
    assert uploads["/run/secrets/db-password"] == fake_secret("postgres-migrator")
    assert any(dep.endswith("::migrations") for dep in ev.named(CONTAINER_TYPE, "api").options["dependencies"])


def test_a_prebuilt_image_is_pulled_not_built() -> None:
    app = {key: value for key, value in NOTES.items() if key != "build"}
    ev = evaluate(stack_config({"app": {**app, "image": NOTES_IMAGE}}))
    assert not [d for d in ev.of_type("docker:index/image:Image") if d.name == "api-image"]
    remote = ev.named("docker:index/remoteImage:RemoteImage", "api-image").inputs
    assert remote["name"] == NOTES_IMAGE


# --- the aws target


def test_the_task_runs_the_contract_with_secrets_by_reference_and_no_sidecar(prod: Evaluation) -> None:
    tasks = task_containers(prod)
    assert set(tasks) == {"api"}, "no migrations, no metrics: no init container and no collector"
    api = tasks["api"]
    assert api["command"] == ["python", "/srv/notes.py"]
    assert api["user"] == "10001:10001"
    assert api["portMappings"] == [{"containerPort": 8000, "hostPort": 8000, "protocol": "tcp"}]
    assert api["healthCheck"]["command"] == probe_command("python", 8000, "/livez")
    assert "dependsOn" not in api or api["dependsOn"] == []
    env = {e["name"]: e["value"] for e in api["environment"]}
    assert env["NOTES_LISTEN_PORT"] == "8000" and env["NOTES_GREETING"] == "hello"
    assert env["NOTES_PG_CA"] == "/etc/ssl/certs/rds-global-bundle.pem"
    # Redis on AWS chains to the system trust store: no CA file to hand over.
    assert "NOTES_CACHE_CA" not in env
    secrets = {s["name"]: s["valueFrom"] for s in api["secrets"]}
    assert set(secrets) == {"NOTES_PG_USER", "NOTES_PG_PASSWORD", "NOTES_CACHE_PASSWORD"}
    assert secrets["NOTES_PG_USER"].endswith(":username::")
    assert not set(secrets) & set(env)
    [task] = [d for d in prod.of_type(TASK_DEF) if d.inputs["family"].endswith("-api")]
    assert "taskRoleArn" not in task.inputs, "nothing in the task calls AWS"


def test_the_load_balancer_checks_liveness_on_the_contracts_port(prod: Evaluation) -> None:
    [group] = [d.inputs for d in prod.of_type(TARGET_GROUP)]
    # ECS replaces a task failing its target group's check: readiness (which
    # follows Postgres and Redis) would cycle every task through their outage.
    assert group["port"] == 8000 and group["healthCheck"]["path"] == "/livez"
    service = by_name(prod, "aws:ecs/service:Service")["api-service"]
    assert service["loadBalancers"][0]["containerPort"] == 8000
    ingress = by_name(prod, SG_INGRESS)["alb-to-api-ingress"]
    assert (ingress["fromPort"], ingress["toPort"]) == (8000, 8000)
    # No metrics to hide at the edge.
    assert not [d for d in prod.of_type(LISTENER_RULE) if d.name == "no-public-metrics"]


def test_the_execution_role_reads_only_the_secrets_the_contract_maps(prod: Evaluation) -> None:
    [role_policy] = [
        d.inputs for d in prod.of_type("aws:iam/rolePolicy:RolePolicy") if d.name.startswith("api-execution-role")
    ]
    document = json.loads(role_policy["policy"])
    resources = [
        r for s in document["Statement"] if "secretsmanager:GetSecretValue" in s["Action"] for r in s["Resource"]
    ]
    assert len(resources) == 2, resources
    assert not any("jwt" in r or "migrator" in r for r in resources)


def test_the_managed_rules_leave_out_the_apis_without_metrics(prod: Evaluation) -> None:
    [namespace] = [d.inputs for d in prod.of_type("aws:amp/ruleGroupNamespace:RuleGroupNamespace")]
    groups = {group["name"] for group in yaml.safe_load(namespace["data"])["groups"]}
    assert "postgres" in groups and not {g for g in groups if g.startswith("api")}


def test_on_aws_a_build_target_of_its_own_and_a_prebuilt_image_as_given() -> None:
    built = evaluate(notes_prod(build={**NOTES["build"], "target": "local", "awsTarget": "aws"}), stack="prod")
    [image] = [d.inputs for d in built.of_type("docker:index/image:Image") if d.name == "api-image"]
    assert image["build"]["target"] == "aws"
    assert image["build"]["context"] == "tests/fixtures/notes_app"
    app = {key: value for key, value in NOTES.items() if key != "build"}
    config = notes_prod()
    config["app"] = {**app, "image": NOTES_IMAGE}
    prebuilt = evaluate(config, stack="prod")
    assert task_containers(prebuilt)["api"]["image"] == NOTES_IMAGE
    assert not [d for d in prebuilt.of_type("aws:ecr/repository:Repository") if d.name == "api-repository"]


# --- one home for the contract


def test_the_aws_target_imports_nothing_of_the_local_one() -> None:
    offenders = []
    for path in sorted((ROOT / "components" / "aws").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            modules += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in modules if m.startswith("components.local")]
    assert offenders == []


# --- bad input, refused before anything is declared


def problems(config: dict[str, Any], stack: str = "dev") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(config, stack=stack)
    return caught.value.problems


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        ({"image": "example.com/notes"}, "wondernest:app.image = 'example.com/notes': image must be pinned"),
        ({"image": "notes:latest"}, "'latest' is not a pinned version"),
        ({"image": "notes:1.0", "build": {"context": "x"}}, "wondernest:app.build = {...}: set with image"),
        ({"command": "python notes.py"}, "wondernest:app.command = 'python notes.py': 'python notes.py' is a string"),
        ({"migrations": {"command": ["migrate"]}}, "wondernest:app.migrations.role: required and not set"),
        ({"migrations": {"command": ["migrate"], "role": "analytics"}}, "wondernest:app.migrations.role = 'analytics'"),
        ({"metrics": {"port": 8080}}, "wondernest:app.metrics.port = 8080: 8080 is the serving port"),
        (
            {"platformEnvironment": {"A_PASSWORD": "postgres.password", "B_PASSWORD": "postgres.password"}},
            "app.platformEnvironment.B_PASSWORD = 'postgres.password': postgres.password is already delivered as",
        ),
        (
            {"platformEnvironment": {"PGPASS": "redis.password", "PGPASS_FILE": "redis.host"}},
            "wondernest:app.platformEnvironment.PGPASS = 'redis.password': delivered locally as PGPASS_FILE",
        ),
        ({"platformEnvironment": {"db-host": "postgres.host"}}, "platformEnvironment.db-host = 'postgres.host': not a"),
        ({"platformEnvironment": {"DB": "postgres.dsn"}}, "wondernest:app.platformEnvironment.DB = 'postgres.dsn'"),
        ({"environment": {"PORT": "1"}, "platformEnvironment": {"PORT": "app.port"}}, "PORT = [secret]: also set"),
        ({"environment": {"STRIPE_API_KEY": "sk_live_abc"}}, "environment.STRIPE_API_KEY = [secret]: looks like"),
        ({"environment": {"N": 3}}, "wondernest:app.environment.N = [secret]: Input should be a valid string"),
        ({"user": 0}, "wondernest:app.user = 0"),
        ({"livenessPath": "health"}, "wondernest:app.livenessPath = 'health': 'health' is not a URL path"),
        ({"build": {"context": "../elsewhere"}}, "wondernest:app.build.context = '../elsewhere'"),
        ({"metrics": None, "platformEnvironment": {"M": "app.metricsPort"}}, "M = 'app.metricsPort': app.metricsP"),
    ],
)  # fmt: skip
def test_bad_contract_input_is_refused_with_its_key(app: dict[str, Any], expected: str) -> None:
    found = problems(stack_config({"app": app}))
    assert any(expected in p for p in found), found
    assert not any("sk_live_abc" in p for p in found)


def test_on_aws_a_readiness_path_is_required_and_ports_are_clear_of_the_sidecar() -> None:
    found = problems(notes_prod(readinessPath=None, port=13133), stack="prod")
    assert any(
        p.startswith("wondernest:app.readinessPath = None: what make verify and an operator check") for p in found
    ), found
    assert any(p.startswith("wondernest:app.port = 13133: 13133 is the metrics collector's") for p in found), found
    # Locally nothing balances: the liveness path alone will do.
    parse_config(stack_config({"app": {**NOTES, "readinessPath": None}}))


def test_the_bundled_apis_settings_are_refused_for_another_app() -> None:
    config = stack_config({"app": NOTES, "api": {"dbPoolMax": 5, "corsAllowedOrigins": ["https://a.example.com"]}})
    found = problems(config)
    assert [p.split(":", 2)[1] for p in found] == ["api.dbPoolMax = 5", "api.corsAllowedOrigins = ['https"]


def test_another_app_does_not_need_the_bundled_apis_schemas() -> None:
    parse_config(stack_config({"app": NOTES, "postgres": {"schemas": ["notes"]}}))
    found = problems(stack_config({"postgres": {"schemas": ["notes"]}}))
    assert found == ["wondernest:postgres.schemas = ['notes']: the bundled API's migrations need core and audit"]


def test_a_port_clash_with_another_published_service_is_refused() -> None:
    found = problems(stack_config({"app": NOTES, "api": {"hostPort": 5433}}))
    assert found == ["wondernest:postgres.hostPort = 5433: port already published by api.hostPort"], found


def test_bad_input_declares_nothing() -> None:
    assert declared_by(stack_config({"app": {**NOTES, "metrics": {"port": 8000}}})) == []


# --- the contract's inputs, each refused for what it would do


def own(**changes: Any) -> dict[str, Any]:
    return {**NOTES, **changes}


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        # Paths go into a probe's code, an ALB pattern and a scrape config.
        (own(livenessPath="/x'+__import__('os').system('id')+'"), "app.livenessPath = "),
        (own(livenessPath="/héalth"), "is not a URL path like /health"),
        (own(metrics={"port": 9464, "path": "/*"}), "is not a URL path like /health"),
        (own(metrics={"port": 9464, "path": "/"}), "'/' would hide the whole site"),
        (own(readinessPath="/" + "r" * 100), "at most 99 letters"),
        # Secrets: under a name that ends _FILE, a password without its user, an empty or secret setting.
        (
            own(platformEnvironment={**NOTES["platformEnvironment"], "NOTES_PG_PASSWORD_FILE": "postgres.password"}),
            "a secret's name must not end in _FILE",
        ),
        (own(platformEnvironment={"P": "postgres.password"}), "postgres.password is mapped without postgres.user"),
        (own(platformEnvironment={"R": "redis.password"}), "redis.password is mapped without redis.user"),
        (own(platformEnvironment={"K": "jwt.signingKey"}), "the signing keys are mapped only in part"),
        (own(platformEnvironment={"K": "jwt.signingKey", "N": "jwt.nextSigningKey"}), "map all three"),
        (own(environment={"NOTES_GREETING": ""}), "empty; leave the variable out"),
        (own(environment={"db_password": "hunter2"}), "environment.db_password = [secret]"),
        (own(environment={"DB_PASS": "hunter2"}), "environment.DB_PASS = [secret]: looks like a secret"),
        (own(environment={"SIGNING_KEY": "k"}), "environment.SIGNING_KEY = [secret]: looks like a secret"),
        # A migrations job that could not reach the database.
        (
            own(migrations={"command": ["m"], "role": "migrator"}, platformEnvironment={"PORT": "app.port"}),
            "migrations = {...}: the job reaches the database only through platformEnvironment, which lacks "
            "postgres.host, postgres.port, postgres.database, postgres.user, postgres.password",
        ),
        # YAML's `yes` is not uid 1, nor port 1.
        (own(user=True), "app.user = True"),
        (own(port=True), "app.port = True"),
    ],
)  # fmt: skip
def test_a_contract_input_that_would_misbehave_is_refused(app: dict[str, Any], expected: str) -> None:
    found = problems(stack_config({"app": app}))
    assert any(expected in p for p in found), found
    assert not any("hunter2" in p for p in found)


def test_another_app_states_its_command_migrations_and_environment() -> None:
    """An image alone would inherit the bundled API's command, migrations and every secret."""
    found = problems(stack_config({"app": {"image": NOTES_IMAGE}}))
    assert sorted(p.split(":")[1].split(" = ")[0] for p in found) == [
        "app.command",
        "app.migrations",
        "app.platformEnvironment",
    ]
    # The bundled API reads fixed names.
    assert problems(stack_config({"app": {"platformEnvironment": {"PORT": "app.port"}}})) == [
        "wondernest:app.platformEnvironment = {...}: the bundled API reads fixed names; "
        "set it with app.image or app.build"
    ]
    # Without metrics, the bundled API simply gets no METRICS_PORT.
    ev = evaluate(stack_config({"app": {"metrics": None}}))
    assert "METRICS_PORT" not in envs(ev, "api")


def test_the_bundled_apis_settings_come_from_the_api_section_only() -> None:
    found = problems(stack_config({"app": {"environment": {"CORS_ALLOWED_ORIGINS": "*", "DB_POOL_MAX": "500"}}}))
    assert found == [
        "wondernest:app.environment.CORS_ALLOWED_ORIGINS = [secret]: the bundled API's setting, made from the api "
        "section (api.corsAllowedOrigins) and checked there; set it there",
        "wondernest:app.environment.DB_POOL_MAX = [secret]: the bundled API's setting, made from the api section "
        "(api.dbPoolMax) and checked there; set it there",
    ]


def test_a_value_set_with_secret_under_app_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(stack_config({"app": NOTES}), ["wondernest:app"])
    assert caught.value.problems[0].startswith("wondernest:app: holds a value set with --secret")


def test_the_collectors_own_ports_are_refused_on_aws() -> None:
    found = problems(notes_prod(port=8888), stack="prod")
    assert any(p.startswith("wondernest:app.port = 8888: 8888 is the metrics collector's own metrics") for p in found)


def test_the_names_refused_as_secrets_are_the_policy_packs() -> None:
    from wondernest_policies import secret_values

    from components.model.app import SECRET_LOOKING

    assert SECRET_LOOKING.pattern == secret_values.SECRET_NAME.pattern
    assert SECRET_LOOKING.flags == secret_values.SECRET_NAME.flags
    # Names the pack passes pass here too.
    parse_config(stack_config({"app": own(environment={"TOKEN_TTL_SECONDS": "3600", "TLS_KEY_FILE": "/run/k"})}))


def test_the_python_probe_quotes_its_url() -> None:
    [_, _, _, script] = probe_command("python", 8000, "/livez")
    assert "urlopen('http://127.0.0.1:8000/livez', timeout=2)" in script
    compile(script, "probe", "exec")


def test_a_build_is_read_from_the_project_on_disk(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: wondernest\n")
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "README.md").write_text("x\n")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "linked").symlink_to(outside)

    def build_problems(build: dict[str, str]) -> list[str]:
        try:
            parse_config(stack_config({"app": own(build=build)}), root=tmp_path)
        except ConfigError as exc:
            return exc.problems
        return []

    assert build_problems({"context": "svc"}) == []
    assert build_problems({"context": "gone"}) == [
        "wondernest:app.build.context = 'gone': no such directory in the project"
    ]
    assert build_problems({"context": "README.md"}) == [
        "wondernest:app.build.context = 'README.md': no such directory in the project"
    ]
    assert build_problems({"context": "."})[0].endswith(
        "the whole project would be hashed and sent to Docker; give the app's own directory"
    )
    assert "outside the project" in build_problems({"context": "linked"})[0]
    assert build_problems({"context": "svc", "dockerfile": "Nope"}) == [
        "wondernest:app.build.dockerfile = 'Nope': no such file in svc"
    ]
    # Nothing is declared: the program parses with the project's directory first.
    assert declared_by(stack_config({"app": own(build={"context": "tests/fixtures/gone"})})) == []
