"""The ADOT collector sidecar's config: the local scrape jobs, remote-written to
Amazon Managed Service for Prometheus with SigV4.

Its `receivers.prometheus.config` is a Prometheus scrape config built by the same
renderer as the local Prometheus's, so the series carry the same `job` and
`instance` labels and the same rules and dashboards apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from components.model.monitoring import render_prometheus_config

HEALTH_PORT = 13133
TELEMETRY_PORT = 8888
"""Where the collector serves its own metrics, its default: nothing here scrapes them."""
# Every task's sidecar scrapes its own task on 127.0.0.1; without a distinct
# `instance` the tasks' series would collide in the workspace. The collector
# expands this from the task's hostname (its ENI's private DNS name on Fargate).
TASK_INSTANCE = "${env:HOSTNAME}"


def scrape_config(
    targets: Mapping[str, str], external_labels: Mapping[str, str], metrics_paths: Mapping[str, str] | None = None
) -> dict[str, Any]:
    rendered = yaml.safe_load(
        render_prometheus_config(
            targets=targets,
            external_labels=external_labels,
            alertmanager="",
            rule_files=[],
            metrics_paths=metrics_paths,
        )
    )
    jobs = rendered["scrape_configs"]
    for job in jobs:
        job["relabel_configs"] = [{"target_label": "instance", "replacement": TASK_INSTANCE}]
    # The collector has no rules and no Alertmanager: AMP evaluates and routes.
    return {"global": rendered["global"], "scrape_configs": jobs}


def render_collector_config(
    *,
    targets: Mapping[str, str],
    external_labels: Mapping[str, str],
    remote_write_url: str,
    region: str,
    metrics_paths: Mapping[str, str] | None = None,
) -> str:
    config = {
        "extensions": {
            "sigv4auth": {"region": region, "service": "aps"},
            "health_check": {"endpoint": f"127.0.0.1:{HEALTH_PORT}"},
        },
        "receivers": {"prometheus": {"config": scrape_config(targets, external_labels, metrics_paths)}},
        "processors": {"batch/metrics": {"timeout": "30s"}},
        "exporters": {
            "prometheusremotewrite": {
                "endpoint": remote_write_url,
                "auth": {"authenticator": "sigv4auth"},
                "resource_to_telemetry_conversion": {"enabled": False},
            }
        },
        "service": {
            "extensions": ["sigv4auth", "health_check"],
            "pipelines": {
                "metrics": {
                    "receivers": ["prometheus"],
                    "processors": ["batch/metrics"],
                    "exporters": ["prometheusremotewrite"],
                }
            },
        },
    }
    return yaml.safe_dump(config, sort_keys=False)
