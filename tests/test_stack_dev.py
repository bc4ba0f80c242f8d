"""The dev stack under Pulumi's mock runtime: the resource graph and its properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pulumi.runtime.resource import inherited_child_alias
from pulumi.runtime.sync_await import _sync_await

from components.config import ConfigError
from tests.harness import (
    CONTAINER_TYPE,
    Declared,
    Evaluation,
    as_json,
    declared_by,
    evaluate,
    fake_secret,
    is_secret,
    stack_config,
    unwrap,
)

DYNAMIC = "pulumi-python:dynamic/postgres:"


@pytest.fixture(scope="module")
def dev() -> Evaluation:
    return evaluate(stack_config())


def containers(ev: Evaluation) -> list[Declared]:
    return ev.of_type(CONTAINER_TYPE)


def test_the_expected_components_and_resources_exist(dev: Evaluation) -> None:
    components = {d.typ for d in dev.declared if d.typ.startswith("wondernest:")}
    assert components == {
        "wondernest:local:Platform",
        "wondernest:local:Network",
        "wondernest:local:Secrets",
        "wondernest:local:Database",
        "wondernest:local:Cache",
        "wondernest:local:DevTools",
        "wondernest:local:Api",
        "wondernest:local:Monitoring",
        "wondernest:local:Backups",
        "wondernest:local:DevS3",
        "wondernest:local:StackCa",
    }
    assert sorted(c.inputs["name"] for c in containers(dev)) == [
        "wondernest-dev-alertmanager",
        "wondernest-dev-api",
        "wondernest-dev-backups",
        "wondernest-dev-dev-s3",
        "wondernest-dev-grafana",
        "wondernest-dev-migrations",
        "wondernest-dev-node-exporter",
        "wondernest-dev-pgadmin",
        "wondernest-dev-postgres",
        "wondernest-dev-postgres-exporter",
        "wondernest-dev-prometheus",
        "wondernest-dev-redis",
        "wondernest-dev-redis-exporter",
    ]
    assert len(dev.of_type(f"{DYNAMIC}Role")) == 5
    assert len(dev.of_type(f"{DYNAMIC}Schema")) == 9
    assert len(dev.of_type(f"{DYNAMIC}SchemaGrant")) == 36  # migrator, app, analytics and backup on each of nine
    assert len(dev.of_type(f"{DYNAMIC}DatabaseAccess")) == 1
    [extension] = dev.of_type(f"{DYNAMIC}Extension")
    assert (extension.name, extension.inputs["readers"]) == ("extension-pg_stat_statements", ["wondernest_monitoring"])
    assert any(dep.endswith("::database-access") for dep in extension.options["dependencies"])


def test_no_generated_secret_appears_in_env_command_healthcheck_or_labels(dev: Evaluation) -> None:
    assert dev.generated_secrets
    for container in containers(dev):
        visible = json.dumps(
            {key: container.inputs.get(key) for key in ("envs", "command", "entrypoints", "healthcheck", "labels")}
        )
        for secret in dev.generated_secrets:
            assert secret not in visible, f"{container.name} exposes a secret"


def test_secret_files_are_uploaded_as_secrets_with_tight_modes(dev: Evaluation) -> None:
    with_secrets = set()
    for container in containers(dev):
        uploads = container.inputs.get("uploads") or []
        for upload in unwrap(uploads):
            if any(s in upload["content"] for s in dev.generated_secrets):
                with_secrets.add(container.name)
                assert is_secret(uploads), f"{container.name}: uploads carry secrets and must be secret"
                assert upload["permissions"] == "0400", upload["file"]
                assert upload["owner"] not in (None, "0", "root"), upload["file"]
    assert with_secrets == {
        "postgres",
        "redis",
        "api",
        "migrations",
        "pgadmin",
        "postgres-exporter",
        "redis-exporter",
        "grafana",
        "backups",
    }
    # Where nothing is secret the config stays readable in a preview diff.
    assert not is_secret(dev.named(CONTAINER_TYPE, "prometheus").inputs["uploads"])


def test_every_published_port_binds_loopback(dev: Evaluation) -> None:
    published = [(c.name, p) for c in containers(dev) for p in c.inputs.get("ports") or []]
    assert {name for name, _ in published} == {"api", "postgres", "redis", "pgadmin", "prometheus", "grafana"}
    assert all(p["ip"] == "127.0.0.1" for _, p in published)


def test_the_backend_network_is_internal_and_the_data_tier_stays_off_the_frontend(dev: Evaluation) -> None:
    networks = {n.name: n.inputs for n in dev.of_type("docker:index/network:Network")}
    assert networks["backend"]["internal"] is True
    assert networks["frontend"].get("internal") in (False, None)
    for name in ("postgres", "redis"):
        attached = {n["name"] for n in dev.named(CONTAINER_TYPE, name).inputs["networksAdvanced"]}
        assert attached == {"wondernest-dev-backend", "wondernest-dev-ops"}


def test_containers_are_hardened(dev: Evaluation) -> None:
    for c in containers(dev):
        i = c.inputs
        assert i["user"] and not i["user"].startswith("0"), c.name
        assert i["securityOpts"] == ["no-new-privileges:true"]
        assert i["capabilities"]["drops"] == ["ALL"]
        assert i["privileged"] is False
        assert i["memory"] > 0
        assert not i.get("networkMode") and not i.get("pidMode")
        if c.name == "migrations":
            continue
        assert i["restart"] == "unless-stopped"
        assert i["healthcheck"]["tests"]
        assert i["wait"] is True
        assert "attach" not in i


def test_migrations_run_once_as_their_own_role_before_the_api(dev: Evaluation) -> None:
    job = dev.named(CONTAINER_TYPE, "migrations")
    api = dev.named(CONTAINER_TYPE, "api")
    i = job.inputs
    # `pulumi up` waits for the job to exit; it is never restarted, and declares
    # no healthcheck rather than inherit the image's.
    assert (i["attach"], i["mustRun"], i["restart"], i["wait"]) == (True, False, "no", False)
    assert i["healthcheck"] == {
        "tests": ["NONE"],
        "interval": "1m0s",
        "timeout": "1m0s",
        "startPeriod": "1m0s",
        "retries": 1,
    }
    assert i["command"] == ["python", "-m", "wondernest_api", "migrate"]
    # Writable: Docker refuses uploads into a read-only root (tests/e2e shows it on a real engine).
    assert i["image"] == api.inputs["image"] and i["readOnly"] is False
    env = dict(e.split("=", 1) for e in i["envs"])
    assert env["DB_USER"] == "wondernest_migrator" and env["DB_PASSWORD_FILE"] == "/run/secrets/db-password"
    assert not any(k.startswith(("REDIS_", "JWT_")) for k in env)
    assert [n["name"] for n in i["networksAdvanced"]] == ["wondernest-dev-backend"]
    uploads = {u["file"]: u["content"] for u in unwrap(i["uploads"])}
    assert uploads["/run/secrets/db-password"] == fake_secret("postgres-migrator")
    assert set(uploads) == {"/run/secrets/db-password", "/run/secrets/ca.crt"}
    # The API serves as the app role and never holds the migrator's password.
    api_env = dict(e.split("=", 1) for e in api.inputs["envs"])
    assert api_env["DB_USER"] == "wondernest_app"
    assert api.inputs["command"] == ["python", "-m", "wondernest_api", "serve"]
    assert all(u["content"] != fake_secret("postgres-migrator") for u in unwrap(api.inputs["uploads"]))
    assert any(dep.endswith("::migrations") for dep in api.options["dependencies"])
    assert any(dep.endswith("::role-migrator") for dep in job.options["dependencies"])


def test_images_are_pinned_remote_images(dev: Evaluation) -> None:
    refs = sorted(i.inputs["name"] for i in dev.of_type("docker:index/remoteImage:RemoteImage"))
    assert refs == [
        "dpage/pgadmin4:8.14",
        "grafana/grafana:11.6.0",
        "oliver006/redis_exporter:v1.45.0-alpine",
        "postgres:15.10-bookworm",
        "prom/alertmanager:v0.25.0",
        "prom/node-exporter:v1.5.0",
        "prom/prometheus:v2.42.0",
        "quay.io/prometheuscommunity/postgres-exporter:v0.11.1",
        "redis:7.4.1-bookworm",
    ]


def test_pg_hba_admits_the_healthcheck_and_the_two_networks_only(dev: Evaluation) -> None:
    uploads = unwrap(dev.named(CONTAINER_TYPE, "postgres").inputs["uploads"])
    hba = next(u["content"] for u in uploads if u["file"] == "/etc/postgresql/pg_hba.conf")
    addresses = {line.split()[3] for line in hba.splitlines() if line.startswith("host")}
    assert addresses == {"127.0.0.1/32", "172.30.1.0/24", "172.30.2.0/24"}
    probe = dev.named(CONTAINER_TYPE, "postgres").inputs["healthcheck"]["tests"]
    assert probe[probe.index("-h") + 1] == "127.0.0.1"


def test_postgres_gets_its_password_as_a_file(dev: Evaluation) -> None:
    pg = dev.named(CONTAINER_TYPE, "postgres").inputs
    assert "POSTGRES_PASSWORD_FILE=/run/secrets/postgres-superuser-password" in pg["envs"]
    assert not any(e.startswith("POSTGRES_PASSWORD=") for e in pg["envs"])
    assert pg["healthcheck"]["tests"][:2] == ["CMD", "pg_isready"]


def test_the_postgres_volume_and_its_superuser_password_are_protected(dev: Evaluation) -> None:
    protected = sorted(d.name for d in dev.declared if d.options.get("protect"))
    assert protected == ["backups", "postgres-data", "postgres-superuser", "verify-login"]
    assert dev.named("docker:index/volume:Volume", "postgres-data").inputs["name"] == ("wondernest-dev-postgres-data")


def test_destroy_leaves_the_database_objects_that_hold_data(dev: Evaluation) -> None:
    # Their data is in the protected volume: `pulumi destroy` forgets them
    # rather than failing on the provider's refusal, and the next `up` adopts them.
    retained = sorted(d.name for d in dev.declared if d.options.get("retain_on_delete"))
    assert retained == sorted(["role-migrator", *(d.name for d in dev.of_type(f"{DYNAMIC}Schema"))])


def test_every_resource_belongs_to_a_component(dev: Evaluation) -> None:
    for d in dev.declared:
        if not d.typ.startswith("wondernest:"):
            assert "wondernest:local:" in d.options["parent"], d.name


def test_database_objects_wait_for_a_healthy_postgres(dev: Evaluation) -> None:
    for d in dev.of_type(f"{DYNAMIC}Schema") + dev.of_type(f"{DYNAMIC}Role"):
        assert any(dep.endswith("::postgres") for dep in d.options["dependencies"]), d.name
        assert set(d.options["additional_secret_outputs"]) >= {"password", "connection"}


def test_dynamic_resources_carry_their_secrets_as_secrets(dev: Evaluation) -> None:
    for role in dev.of_type(f"{DYNAMIC}Role"):
        assert is_secret(role.inputs["password"])
        assert is_secret(role.inputs["connection"])
        assert is_secret(role.inputs["__provider"])
    limits = {unwrap(r.inputs["name"]): r.inputs["connection_limit"] for r in dev.of_type(f"{DYNAMIC}Role")}
    assert limits == {
        "wondernest_migrator": 3,
        "wondernest_app": 50,
        "wondernest_analytics": 10,
        "wondernest_monitoring": 6,
        "wondernest_backup": 3,
    }


def test_outputs_and_their_secrecy(dev: Evaluation) -> None:
    assert dev.outputs["apiUrl"] == "http://127.0.0.1:8080"
    assert dev.outputs["grafanaUrl"] == "http://127.0.0.1:3000"
    assert dev.outputs["prometheusUrl"] == "http://127.0.0.1:9090"
    assert dev.outputs["alertmanagerUrl"] == "http://alertmanager:9093"
    assert dev.outputs["postgresEndpoint"] == "127.0.0.1:5433"
    assert dev.outputs["redisEndpoint"] == "127.0.0.1:6379"
    assert dev.outputs["roles"] == {
        "migrator": "wondernest_migrator",
        "app": "wondernest_app",
        "analytics": "wondernest_analytics",
        "monitoring": "wondernest_monitoring",
        "backup": "wondernest_backup",
    }
    assert dev.outputs["pgadminUrl"] == "http://127.0.0.1:5050"
    assert dev.secret_outputs == {"secrets"}
    assert set(dev.outputs["secrets"]) == {
        "postgres_superuser",
        "postgres_migrator",
        "postgres_app",
        "postgres_analytics",
        "postgres_monitoring",
        "postgres_backup",
        "redis_app",
        "redis_healthcheck",
        "redis_monitoring",
        "grafana_admin",
        "pgadmin_login",
        "verify_login",
        "jwt_signing_key",
        "jwt_signing_key_previous",
        "jwt_signing_key_next",
    }


def test_two_evaluations_declare_identical_inputs() -> None:
    first, second = evaluate(stack_config()), evaluate(stack_config())

    def snapshot(ev: Evaluation) -> list[tuple[str, str, str]]:
        return [(d.typ, d.name, as_json(d.inputs)) for d in ev.declared]

    assert sorted(snapshot(first)) == sorted(snapshot(second))


def test_physical_names_follow_app_name_and_stack() -> None:
    ev = evaluate(stack_config({"appName": "yourapp"}), stack="staging")
    assert sorted(c.inputs["name"] for c in containers(ev)) == [
        "yourapp-staging-alertmanager",
        "yourapp-staging-api",
        "yourapp-staging-backups",
        "yourapp-staging-dev-s3",
        "yourapp-staging-grafana",
        "yourapp-staging-migrations",
        "yourapp-staging-node-exporter",
        "yourapp-staging-pgadmin",
        "yourapp-staging-postgres",
        "yourapp-staging-postgres-exporter",
        "yourapp-staging-prometheus",
        "yourapp-staging-redis",
        "yourapp-staging-redis-exporter",
    ]
    assert ev.outputs["roles"]["app"] == "yourapp_app"


def test_dev_tools_off_declares_no_pgadmin() -> None:
    ev = evaluate(stack_config({"devTools": {"enabled": False}}))
    assert "devtools" not in {d.name for d in ev.declared}
    assert "pgadminUrl" not in ev.outputs


def test_a_wider_bind_needs_the_explicit_switch() -> None:
    ev = evaluate(stack_config({"network": {"allowPublicBind": True, "bindAddress": "0.0.0.0"}}))
    ports = [p for c in containers(ev) for p in c.inputs.get("ports") or []]
    assert {p["ip"] for p in ports} == {"0.0.0.0"}


def test_invalid_config_declares_nothing() -> None:
    assert declared_by(stack_config()), "the spy must see a valid stack's resources"
    bad = stack_config({"postgres": {"hostPort": 0, "memory": "10MiB"}, "typo": 1})
    with pytest.raises(ConfigError) as caught:
        evaluate(bad)
    problems = "\n".join(caught.value.problems)
    for key in ("postgres.hostPort", "postgres.memory", "wondernest:typo"):
        assert key in problems
    assert not declared_by(bad)


def test_local_only_settings_are_refused_for_the_aws_target() -> None:
    config = stack_config({"target": "aws"})
    with pytest.raises(ConfigError) as caught:
        evaluate(config)
    refused = "has no effect with target 'aws'; remove it (docs/aws.md)"
    assert caught.value.problems == [
        "wondernest:devTools = {...}: local tools only; not available with target 'aws'",
        f"wondernest:postgres.hostPort = 5433: {refused}",
        f"wondernest:postgres.memory = '1GiB': {refused}",
        f"wondernest:redis.hostPort = 6379: {refused}",
        f"wondernest:redis.maxMemory = '256MiB': {refused}",
        "wondernest:alerting.page = (default): a production stack must page someone: set alerting.page.email "
        "(or alerting.page.webhookUrl, an HTTPS endpoint such as an incident tool's SNS integration), "
        "or say why this stack pages no one in alerting.pagingOffReason",
    ]
    assert not declared_by(config)


def test_the_api_runs_with_its_secrets_as_files(dev: Evaluation) -> None:
    api = dev.named(CONTAINER_TYPE, "api").inputs
    # Writable: Docker refuses uploads into a read-only root (tests/e2e shows it on a real engine).
    assert api["readOnly"] is False
    assert api["tmpfs"] == {"/tmp": "rw,noexec,nosuid,nodev,size=64m"}
    assert api["user"] == "1001:1001"
    assert api["cpus"] == "1.0"
    assert api["capabilities"] == {"drops": ["ALL"]}
    env = dict(e.split("=", 1) for e in api["envs"])
    assert env["DB_PASSWORD_FILE"] == "/run/secrets/db-password"
    assert env["REDIS_PASSWORD_FILE"] == "/run/secrets/redis-password"
    assert env["JWT_SECRET_FILE"] == "/run/secrets/jwt-secret"
    assert env["JWT_PREVIOUS_SECRET_FILE"] == "/run/secrets/jwt-previous-secret"
    assert env["JWT_NEXT_SECRET_FILE"] == "/run/secrets/jwt-next-secret"
    assert not any(k in env for k in ("DB_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET", "JWT_PREVIOUS_SECRET"))
    assert env["DB_USER"] == "wondernest_app" and env["DB_HOST"] == "postgres"
    # The files land on a volume of their own.
    assert api["volumes"] == [{"containerPath": "/run/secrets", "volumeName": "wondernest-dev-api-secrets"}]
    files = {u["file"]: u for u in unwrap(api["uploads"])}
    assert set(files) == {
        "/run/secrets/db-password",
        "/run/secrets/redis-password",
        "/run/secrets/jwt-secret",
        "/run/secrets/jwt-previous-secret",
        "/run/secrets/jwt-next-secret",
        "/run/secrets/ca.crt",
    }
    assert all(u["owner"] == "1001" and u["permissions"] == "0400" for u in files.values())
    assert {n["name"] for n in api["networksAdvanced"]} == {
        "wondernest-dev-frontend",
        "wondernest-dev-backend",
    }


def test_postgres_and_redis_speak_tls_only_and_every_client_verifies_them(dev: Evaluation) -> None:
    from components.model import postgres_conf, redis_conf
    from tests.harness import fake_pem

    ca = fake_pem("CERTIFICATE", "ca")
    assert dev.outputs["caCertificate"] == ca

    def uploads(name: str) -> dict[str, str]:
        return {u["file"]: u["content"] for u in unwrap(dev.named(CONTAINER_TYPE, name).inputs["uploads"])}

    def env(name: str) -> dict[str, str]:
        return dict(e.split("=", 1) for e in dev.named(CONTAINER_TYPE, name).inputs.get("envs") or [])

    pg = uploads("postgres")
    assert "ssl = on" in pg[postgres_conf.CONTAINER_CONFIG_FILE]
    hba = [line for line in pg[postgres_conf.CONTAINER_HBA_FILE].splitlines() if line and not line.startswith("#")]
    assert all(line.split()[0] in ("local", "hostssl") for line in hba)
    assert pg[postgres_conf.CONTAINER_TLS.cert_file] == fake_pem("CERTIFICATE", "postgres-tls")
    assert pg[postgres_conf.CONTAINER_TLS.key_file] == fake_pem("PRIVATE KEY", "postgres-tls-key")
    rd = uploads("redis")
    assert "port 0" in rd[redis_conf.CONTAINER_CONFIG_FILE].splitlines()
    assert rd[redis_conf.CONTAINER_TLS.ca_file] == ca
    health = dev.named(CONTAINER_TYPE, "redis").inputs["healthcheck"]["tests"][1]
    assert f"--tls --cacert {redis_conf.CONTAINER_TLS.ca_file}" in health
    # Each certificate names the host its clients use, and loopback for the host's own.
    for server in ("postgres", "redis"):
        request = dev.named("tls:index/certRequest:CertRequest", f"{server}-tls-request").inputs
        assert request["dnsNames"] == [server, "localhost"] and request["ipAddresses"] == ["127.0.0.1"]
        cert = dev.named("tls:index/locallySignedCert:LocallySignedCert", f"{server}-tls").inputs
        assert cert["allowedUses"] == ["digital_signature", "key_encipherment", "server_auth"]
        assert cert["validityPeriodHours"] == 8760 and cert["earlyRenewalHours"] == 720
    authority = dev.named("tls:index/selfSignedCert:SelfSignedCert", "ca").inputs
    assert authority["isCaCertificate"] is True and authority["maxPathLength"] == 0
    for key in dev.of_type("tls:index/privateKey:PrivateKey"):
        assert (key.inputs["algorithm"], key.inputs["ecdsaCurve"]) == ("ECDSA", "P256")
    # The clients: verify-full against the CA, and Redis over TLS.
    for name in ("api", "migrations", "backups"):
        assert env(name)["DB_SSLMODE"] == "verify-full", name
        assert uploads(name)[env(name)["DB_SSLROOTCERT"]] == ca, name
    assert env("api")["REDIS_TLS"] == "true" and uploads("api")[env("api")["REDIS_CA_FILE"]] == ca
    exporter = env("postgres-exporter")["DATA_SOURCE_URI"]
    assert exporter.endswith("?sslmode=verify-full&sslrootcert=/run/secrets/ca.crt")
    assert uploads("postgres-exporter")["/run/secrets/ca.crt"] == ca
    redis_exporter = dev.named(CONTAINER_TYPE, "redis-exporter").inputs["command"]
    assert "--redis.addr=rediss://redis:6379" in redis_exporter
    assert "--tls-ca-cert-file=/run/secrets/ca.crt" in redis_exporter
    servers_json = json.loads(uploads("pgadmin")["/pgadmin4/servers.json"])["Servers"]["1"]
    assert servers_json["SSLMode"] == "verify-full"
    assert uploads("pgadmin")[env("pgadmin")["PGSSLROOTCERT"]] == ca
    assert env("pgadmin")["PGPASS_FILE"] in uploads("pgadmin")
    # The provider connects from the host the same way.
    for role in dev.of_type(f"{DYNAMIC}Role"):
        connection = unwrap(role.inputs["connection"])
        assert (connection["sslmode"], connection["ca_pem"]) == ("verify-full", ca)


def test_the_api_image_is_tagged_by_its_content(dev: Evaluation) -> None:
    from components.model.images import API_INPUTS as BUILD_INPUTS
    from components.model.images import APP_DIR, context_digest

    image = dev.named("docker:index/image:Image", "api-image").inputs
    assert image["imageName"] == f"wondernest-api:{context_digest(APP_DIR, BUILD_INPUTS)[:16]}"
    assert image["skipPush"] is True
    assert image["build"]["target"] == "runtime" and image["build"]["context"] == "app"
    assert dev.named(CONTAINER_TYPE, "api").inputs["image"] == image["imageName"]


def test_the_api_starts_after_its_roles_grants_and_cache(dev: Evaluation) -> None:
    deps = dev.named(CONTAINER_TYPE, "api").options["dependencies"]
    assert any(d.endswith("::role-app") for d in deps)
    assert any(d.endswith("::grant-core-app") for d in deps)
    assert any(d.endswith("::redis") for d in deps)


def uploaded(ev: Evaluation, container: str) -> dict[str, str]:
    return {u["file"]: u["content"] for u in unwrap(ev.named(CONTAINER_TYPE, container).inputs["uploads"])}


def test_the_exporters_and_alertmanager_stay_on_the_backend_network(dev: Evaluation) -> None:
    for name in ("postgres-exporter", "redis-exporter", "alertmanager"):
        networks = {n["name"] for n in dev.named(CONTAINER_TYPE, name).inputs["networksAdvanced"]}
        assert networks == {"wondernest-dev-backend"}, name
        assert not dev.named(CONTAINER_TYPE, name).inputs.get("ports")


def test_alertmanager_gets_a_way_out_only_for_external_receivers() -> None:
    token, slack = "Zq-webhook-bearer-value-91", "https://hooks.slack.com/services/T0/B0/Xq81"
    alerting = {
        "page": {"webhookUrl": "https://hooks.example.com/page", "webhookToken": token},
        "ticket": {"slackChannel": "#platform", "slackWebhookUrl": slack},
        "runbookUrl": "https://git.example.org/platform/blob/main/docs/runbooks.md",
    }
    ev = evaluate(stack_config({"alerting": alerting}), secret_keys=["alerting"])
    am = ev.named(CONTAINER_TYPE, "alertmanager").inputs
    assert {n["name"] for n in am["networksAdvanced"]} == {"wondernest-dev-backend", "wondernest-dev-frontend"}
    files = uploaded(ev, "alertmanager")
    assert files["/etc/alertmanager/secrets/page-webhook-token"] == token
    assert files["/etc/alertmanager/secrets/ticket-slack-webhook-url"] == slack
    assert "Runbook: {{ .Annotations.runbook_url }}" in files["/etc/alertmanager/templates/wondernest.tmpl"]
    for value in (token, slack):
        assert value not in files["/etc/alertmanager/alertmanager.yml"]
        assert all(value not in json.dumps(am.get(k)) for k in ("envs", "command", "labels", "healthcheck"))
    assert is_secret(am["uploads"])
    quiet = evaluate(stack_config()).named(CONTAINER_TYPE, "alertmanager").inputs
    assert {n["name"] for n in quiet["networksAdvanced"]} == {"wondernest-dev-backend"}


def test_the_node_exporter_watches_each_data_volume_read_only(dev: Evaluation) -> None:
    exporter = dev.named(CONTAINER_TYPE, "node-exporter").inputs
    assert exporter["volumes"] == [
        {"containerPath": f"/volumes/{service}", "volumeName": f"wondernest-dev-{volume}", "readOnly": True}
        for service, volume in (
            ("backups", "backups"), ("postgres", "postgres-data"), ("prometheus", "prometheus-data"),
            ("redis", "redis-data"),
        )
    ]  # fmt: skip
    assert exporter["readOnly"] is True and exporter["user"] == "65534:65534"
    assert exporter["capabilities"] == {"drops": ["ALL"]}
    assert {n["name"] for n in exporter["networksAdvanced"]} == {"wondernest-dev-backend"}
    assert "--collector.disable-defaults" in exporter["command"] and "--collector.filesystem" in exporter["command"]
    assert "ports" not in exporter


def test_prometheus_scrapes_every_service_through_its_exporter(dev: Evaluation) -> None:
    import yaml

    config = yaml.safe_load(uploaded(dev, "prometheus")["/etc/prometheus/prometheus.yml"])
    targets = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in config["scrape_configs"]}
    assert targets == {
        "api": "api:9102",  # the metrics listener, not the public port
        "postgres": "postgres-exporter:9187",
        "redis": "redis-exporter:9121",
        "prometheus": "localhost:9090",
        "alertmanager": "alertmanager:9093",
        "grafana": "grafana:3000",
        "backups": "backups:9200",
        "node": "node-exporter:9100",
    }
    assert config["global"]["external_labels"] == {"app": "wondernest", "environment": "dev"}
    intervals = {job["job_name"]: job["scrape_interval"] for job in config["scrape_configs"]}
    assert intervals["api"] == "5s" and intervals["postgres"] == "15s"


def test_grafana_is_provisioned_and_closed(dev: Evaluation) -> None:
    grafana = dev.named(CONTAINER_TYPE, "grafana").inputs
    env = dict(e.split("=", 1) for e in grafana["envs"])
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana-admin-password"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    files = uploaded(dev, "grafana")
    assert "uid: prometheus" in files["/etc/grafana/provisioning/datasources/prometheus.yml"]
    assert {f for f in files if f.endswith(".json")} == {
        "/etc/grafana/dashboards/api.json",
        "/etc/grafana/dashboards/postgres.json",
        "/etc/grafana/dashboards/redis.json",
        "/etc/grafana/dashboards/overview.json",
    }


def test_the_exporters_use_their_least_privilege_users(dev: Evaluation) -> None:
    pg = dev.named(CONTAINER_TYPE, "postgres-exporter").inputs
    env = dict(e.split("=", 1) for e in pg["envs"])
    assert env["DATA_SOURCE_USER"] == "wondernest_monitoring"
    assert env["DATA_SOURCE_PASS_FILE"] == "/run/secrets/postgres-password"
    redis = dev.named(CONTAINER_TYPE, "redis-exporter").inputs
    assert "--redis.user=wondernest_monitoring" in redis["command"]
    acl = uploaded(dev, "redis")["/usr/local/etc/redis/users.acl"]
    from components.model import redis_conf

    [line] = [line for line in acl.splitlines() if line.startswith("user wondernest_monitoring on #")]
    assert line.endswith(" " + redis_conf.EXPORTER_USER_RULES) and "config" not in line and "slowlog|get" not in line


def test_the_backup_job_runs_as_the_backup_role(dev: Evaluation) -> None:
    backups = dev.named(CONTAINER_TYPE, "backups").inputs
    env = dict(e.split("=", 1) for e in backups["envs"])
    assert env["DB_USER"] == "wondernest_backup" and env["DB_PASSWORD_FILE"] == "/run/secrets/db-password"
    assert env["BACKUP_SCHEDULE"] == "0 3 * * *"
    # The dev stack copies to its own bucket service, on the backend network.
    assert env["S3_ENDPOINT_URL"] == "http://dev-s3:4566" and env["S3_CREATE_BUCKET"] == "true"
    assert env["S3_BUCKET"] == "wondernest-dev-backups"
    assert backups["readOnly"] is False
    assert {n["name"] for n in backups["networksAdvanced"]} == {"wondernest-dev-backend"}
    labels = {item["label"]: item["value"] for item in backups["labels"]}
    assert labels["com.wondernest.backup-verify"] == "restore"
    image = dev.named("docker:index/image:Image", "backup-image").inputs
    assert image["build"]["target"] == "backup" and image["imageName"].startswith("wondernest-backup:")


def test_an_s3_copy_gets_credentials_as_a_file_and_a_way_out() -> None:
    secret = "Yq-secret-access-key-value-77"
    ev = evaluate(
        stack_config(
            {"backups": {"s3Bucket": "wondernest-backups", "s3AccessKeyId": "AKIDEXAMPLE", "s3SecretAccessKey": secret}}
        ),
        secret_keys=["backups"],
    )
    backups = ev.named(CONTAINER_TYPE, "backups").inputs
    env = dict(e.split("=", 1) for e in backups["envs"])
    assert env["S3_BUCKET"] == "wondernest-backups" and env["S3_PREFIX"] == "wondernest/dev"
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == "/run/secrets/aws-credentials"
    assert secret not in json.dumps(backups["envs"])
    assert secret in uploaded(ev, "backups")["/run/secrets/aws-credentials"]
    assert {n["name"] for n in backups["networksAdvanced"]} == {"wondernest-dev-backend", "wondernest-dev-frontend"}


def test_the_backup_alert_follows_the_schedule() -> None:
    import yaml

    ev = evaluate(stack_config({"backups": {"schedule": "0 */6 * * *"}}))
    rules = yaml.safe_load(uploaded(ev, "prometheus")["/etc/prometheus/rules/platform.yml"])
    too_old = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "BackupTooOld")
    assert "[25560s])) > 25560\n" in too_old["expr"]  # 1.1 x 6 h + 30 min


def test_without_the_dev_bucket_nothing_is_copied() -> None:
    ev = evaluate(stack_config({"devTools": {"enabled": True, "s3": False}}))
    env = dict(e.split("=", 1) for e in ev.named(CONTAINER_TYPE, "backups").inputs["envs"])
    assert not any(k.startswith("S3_") for k in env)
    assert "dev-s3" not in {d.name for d in ev.declared}


def test_the_dev_bucket_service_is_hardened_and_internal(dev: Evaluation) -> None:
    s3 = dev.named(CONTAINER_TYPE, "dev-s3").inputs
    assert s3["readOnly"] is True and s3["user"] == "1001:1001"
    assert {n["name"] for n in s3["networksAdvanced"]} == {"wondernest-dev-backend"}
    assert not s3.get("ports")
    image = dev.named("docker:index/image:Image", "dev-s3-image").inputs
    assert image["build"]["target"] == "dev-s3"


@pytest.mark.parametrize(("cpus", "hashes"), [(1.0, "1"), (0.5, "1"), (2.0, "2"), (3.5, "3")])
def test_the_api_hashes_as_many_passwords_at_once_as_it_has_cpus(cpus: float, hashes: str) -> None:
    ev = evaluate({**stack_config(), "api": {**stack_config().get("api", {}), "cpus": cpus}})
    env = dict(e.split("=", 1) for e in ev.named(CONTAINER_TYPE, "api").inputs["envs"])
    assert env["HASH_CONCURRENCY"] == hashes


RECORDED_URNS = Path(__file__).parent / "data" / "dev_urns_before_platform_component.json"


def engine_urn(mock_urn: str) -> str:
    """The mock monitor puts the root stack's type in a URN's type chain; the
    engine leaves it out (Deployment.generateURN, pkg/resource/deploy)."""
    return mock_urn.replace("::pulumi:pulumi:Stack$", "::", 1)


def test_a_stack_made_before_the_platform_component_keeps_every_urn(dev: Evaluation) -> None:
    """The dev services were declared at the stack's root until `LocalPlatform`
    held them (the URNs of that program are recorded). Every one of those URNs
    is claimed by an alias, so `pulumi up` on such a stack replaces nothing: a
    direct child names the root stack as its former parent, and each descendant
    inherits its parent's former URN as Pulumi computes it
    (pulumi.runtime.resource.inherited_child_alias, the engine's rule)."""
    by_urn = {d.options["urn"]: d for d in dev.declared}

    def former(d: Declared) -> str | None:
        specs = [alias["spec"] for alias in d.options["aliases"] if "spec" in alias]
        if any(spec.get("noParent") for spec in specs):
            return f"urn:pulumi:dev::wondernest::{d.typ}::{d.name}"
        parent = by_urn.get(d.options["parent"])
        parent_former = former(parent) if parent is not None else None
        if parent is None or parent_former is None:
            return None
        return str(_sync_await(inherited_child_alias(d.name, parent.name, parent_former, d.typ).future()))

    platform = dev.named("wondernest:local:Platform", "platform")
    claimed = {former(d) or engine_urn(d.options["urn"]) for d in dev.declared if d is not platform}
    assert claimed == set(json.loads(RECORDED_URNS.read_text()))
    assert former(platform) is None
