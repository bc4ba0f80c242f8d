"""The HTTP services: the API, Prometheus, Alertmanager, Grafana, and the backups'
freshness as Prometheus has it."""

from __future__ import annotations

from typing import Any

import requests

from components.commands.verify.access import Access
from components.commands.verify.results import CheckFailed, Skipped


def _get(access: Access, url: str, *, signed: bool = False, **kwargs: Any) -> requests.Response:
    auth = access.http_auth if signed else None
    return requests.get(url, timeout=access.timeout, auth=auth, **kwargs)


def _json(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise CheckFailed(f"{what} answered HTTP {response.status_code} without JSON") from None


def _base(access: Access, key: str) -> str:
    url = access.outputs.get(key)
    if not url:
        raise CheckFailed(f"the stack has no {key} output")
    return str(url).rstrip("/")


def api_ready(access: Access) -> str:
    """The contract's readiness path (its liveness path if it has none) answers
    200; the bundled API's body also names each dependency's state."""
    app = access.app
    path = app.readiness_path or app.liveness_path
    response = _get(access, f"{_base(access, 'apiUrl')}{path}")
    if not app.bundled:
        if response.status_code != 200:
            raise CheckFailed(f"{path}: HTTP {response.status_code}: {response.text[:200]}")
        return f"{path}: HTTP 200"
    body = _json(response, path)
    services = body.get("services") or {}
    parts = ", ".join(f"{name} {s.get('status')} in {s.get('responseTime')} ms" for name, s in services.items())
    if response.status_code != 200 or body.get("status") != "UP":
        raise CheckFailed(f"HTTP {response.status_code}, {body.get('status')}: {parts or body}")
    return f"UP: {parts}"


def verify_account(access: Access) -> str:
    """The one account every `verify --auth` run signs in with."""
    return f"verify@{access.spec.name}.example.com"


def api_auth_round_trip(access: Access) -> str:
    """Log in, read, log out, refused after: with the stack's verify account,
    registered by the first run only, so repeated runs spend no registration."""
    if not access.app.bundled:
        raise Skipped(
            "does not apply: the bundled API's accounts, and this stack runs another app (app.image or app.build)"
        )
    if not access.auth_round_trip:
        raise Skipped("opt in with --auth (it signs in with the stack's verify account, registered on first use)")
    base = _base(access, "apiUrl")
    email = verify_account(access)
    credentials = {"email": email, "password": access.credentials("verify-login")[1]}

    def step(name: str, expected: tuple[int, ...], method: str, path: str, **kwargs: Any) -> requests.Response:
        response = requests.request(method, f"{base}{path}", timeout=access.timeout, **kwargs)
        if response.status_code not in expected:
            wanted = " or ".join(map(str, expected))
            raise CheckFailed(f"{name}: HTTP {response.status_code} (expected {wanted}): {response.text[:200]}")
        return response

    registered = ""
    first = step("login", (200, 401), "POST", "/auth/login", json=credentials)
    if first.status_code == 401:
        created = step("register", (201, 409), "POST", "/auth/register", json=credentials)
        if created.status_code == 409:
            raise CheckFailed(f"{email} exists but refuses the stack's verify-login password")
        registered = "registered (first run), "
        first = step("login", (200,), "POST", "/auth/login", json=credentials)
    tokens = _json(first, "login")
    bearer = {"Authorization": f"Bearer {tokens['accessToken']}"}
    me = _json(step("me", (200,), "GET", "/api/users/me", headers=bearer), "/api/users/me")
    if me.get("email") != email:
        raise CheckFailed(f"/api/users/me answered for {me.get('email')!r}, not {email!r}")
    # Read through the read pool: the newest login may lag behind on a replica, so only the shape is checked.
    trail = _json(step("activity", (200,), "GET", "/api/users/me/activity", headers=bearer), "/api/users/me/activity")
    if not isinstance(trail, dict) or not isinstance(trail.get("items"), list):
        raise CheckFailed(f"/api/users/me/activity answered without a list of items: {str(trail)[:200]}")
    step("logout", (204,), "POST", "/auth/logout", json={"refreshToken": tokens["refreshToken"]})
    step("me after logout", (401,), "GET", "/api/users/me", headers=bearer)
    return f"{email}: {registered}logged in, read itself and its activity, logged out, refused after logout"


def prometheus_query(access: Access, expr: str) -> list[dict[str, Any]]:
    response = _get(access, f"{_base(access, 'prometheusUrl')}/api/v1/query", signed=True, params={"query": expr})
    body = _json(response, "Prometheus")
    if response.status_code != 200 or body.get("status") != "success":
        raise CheckFailed(f"Prometheus answered HTTP {response.status_code}: {body.get('error', body)}")
    return list(body["data"]["result"])


def targets_up(access: Access) -> str:
    series = prometheus_query(access, "up")
    if not series:
        raise CheckFailed("Prometheus has no targets")
    down = sorted(f"{s['metric'].get('job')} ({s['metric'].get('instance')})" for s in series if s["value"][1] != "1")
    if down:
        raise CheckFailed(f"{len(down)} of {len(series)} targets down: {', '.join(down)}")
    jobs = sorted({str(s["metric"].get("job")) for s in series})
    return f"{len(series)} targets up: {', '.join(jobs)}"


def rules_healthy(access: Access) -> str:
    response = _get(access, f"{_base(access, 'prometheusUrl')}/api/v1/rules", signed=True)
    body = _json(response, "Prometheus")
    if response.status_code != 200:
        raise CheckFailed(f"Prometheus answered HTTP {response.status_code}: {body.get('error', body)}")
    rules = [rule for group in body["data"]["groups"] for rule in group["rules"]]
    if not rules:
        raise CheckFailed("Prometheus has no rules loaded")
    unhealthy = [
        f"{rule['name']}: {rule.get('lastError') or 'not evaluated yet'}" for rule in rules if rule["health"] != "ok"
    ]
    if unhealthy:
        raise CheckFailed(f"{len(unhealthy)} of {len(rules)} rules unhealthy: {'; '.join(unhealthy)}")
    return f"{len(rules)} rules evaluate"


# Always firing, by design: the proof that alerts flow.
HEARTBEAT = "Watchdog"
PAGE = "critical"


def no_page_firing(access: Access) -> str:
    """A firing page fails the check, named; lesser alerts are listed."""
    firing: dict[str, set[str]] = {}
    for series in prometheus_query(access, 'ALERTS{alertstate="firing"}'):
        labels = series["metric"]
        if labels.get("alertname") != HEARTBEAT:
            firing.setdefault(str(labels.get("severity", "none")), set()).add(str(labels.get("alertname")))
    pages = sorted(firing.pop(PAGE, set()))
    others = ", ".join(f"{name} ({severity})" for severity, names in sorted(firing.items()) for name in sorted(names))
    if pages:
        raise CheckFailed(f"paging: {', '.join(pages)}" + (f"; also firing: {others}" if others else ""))
    return f"no page firing; {'also firing: ' + others if others else 'nothing else firing'}"


def watchdog_delivered(access: Access) -> str:
    if access.target == "docker":
        return _watchdog_through_prometheus(access)
    # The workspace's Alertmanager API, signed like its queries.
    response = _get(
        access,
        _base(access, "alertmanagerUrl"),
        signed=True,
        params={"filter": 'alertname="Watchdog"', "active": "true"},
    )
    body = _json(response, "Alertmanager")
    if response.status_code != 200:
        raise CheckFailed(f"Alertmanager answered HTTP {response.status_code}: {body}")
    if not body:
        raise CheckFailed("no active Watchdog at Alertmanager: Prometheus's alerts are not reaching it")
    return f"Watchdog active at Alertmanager since {body[0].get('startsAt')}"


def _watchdog_through_prometheus(access: Access) -> str:
    """The local Alertmanager is on the internal network only, with no port to
    ask; Prometheus scrapes it, so its own count of active alerts is the proof
    that what Prometheus fires arrives."""
    if not prometheus_query(access, 'ALERTS{alertname="Watchdog", alertstate="firing"}'):
        raise CheckFailed("Prometheus is not firing the Watchdog: are the rules loaded?")
    active = prometheus_query(access, 'sum(alertmanager_alerts{state="active"})')
    count = int(float(active[0]["value"][1])) if active else 0
    if count < 1:
        raise CheckFailed("Alertmanager holds no active alert while Prometheus fires the Watchdog: delivery is broken")
    return f"Prometheus fires the Watchdog; Alertmanager holds {count} active alert(s)"


def grafana_healthy(access: Access) -> str:
    response = _get(access, f"{_base(access, 'grafanaUrl')}/api/health")
    body = _json(response, "Grafana")
    if response.status_code != 200 or body.get("database") != "ok":
        raise CheckFailed(f"HTTP {response.status_code}, database {body.get('database')!r}")
    return f"Grafana {body.get('version', '?')}, database ok"


def backup_fresh(access: Access) -> str:
    limit = access.backup_max_age_seconds
    series = prometheus_query(access, "backup_last_verified_timestamp_seconds")
    if not series:
        raise CheckFailed("no backup job reports a verified backup (is the backups service scraped?)")
    # Prometheus's evaluation time, not this machine's clock, is what the alert compares with.
    stamps = [(float(s["value"][0]), float(s["value"][1])) for s in series]
    if not any(stamp for _, stamp in stamps):
        raise CheckFailed("no backup has been verified by a restore yet")
    newest = min(at - stamp for at, stamp in stamps if stamp)
    if newest > limit:
        raise CheckFailed(
            f"the newest restore-verified backup is {newest / 3600:.1f} h old (limit {limit / 3600:.1f} h)"
        )
    return f"newest restore-verified backup {newest / 60:.0f} min old (limit {limit / 3600:.1f} h)"
