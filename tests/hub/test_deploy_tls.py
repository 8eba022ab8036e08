"""``HUB_BEHIND_TLS=true``: ``manage.py check --deploy`` is clean in that mode, and a real
hub redirects plain HTTP, sends HSTS and marks its cookies Secure."""

from __future__ import annotations

import secrets
import subprocess
import sys

import httpx
import pytest

from tests.support import ROOT, hub_env, manage, running_hub


def check_deploy(tmp_path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HUB_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_behind_tls_with_a_real_secret_key(tmp_path):
    result = check_deploy(tmp_path, HUB_BEHIND_TLS="true", HUB_SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_names_what_is_missing_without_it(tmp_path):
    result = check_deploy(tmp_path, HUB_SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr


def test_junk_in_hub_behind_tls_is_refused(tmp_path):
    result = check_deploy(tmp_path, HUB_BEHIND_TLS="sometimes")
    assert result.returncode != 0 and 'Environment variable "HUB_BEHIND_TLS" invalid' in result.stderr


PASSWORD = "right-horse-battery"
TLS = {"HUB_BEHIND_TLS": "true"}


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tls")
    env = hub_env(data_dir, **TLS, DJANGO_SUPERUSER_PASSWORD=PASSWORD)
    manage(data_dir, "migrate", "--noinput", env=env)
    manage(data_dir, "createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.org", env=env)
    with running_hub(data_dir=data_dir, extra_env=TLS) as hub:
        yield hub


def test_behind_tls_plain_http_is_redirected_to_https(tls_hub):
    response = httpx.get(f"{tls_hub.http_url}/admin/login/", follow_redirects=False)
    assert response.status_code == 301
    assert response.headers["Location"].startswith("https://") and response.headers["Location"].endswith(
        "/admin/login/"
    )


def test_behind_tls_monitoring_paths_answer_plain_http(tls_hub):
    assert httpx.get(f"{tls_hub.http_url}/healthz").status_code == 200


def test_behind_tls_a_proxied_https_request_gets_hsts_and_secure_cookies(tls_hub):
    response = httpx.get(f"{tls_hub.http_url}/admin/login/", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    csrf = next(c for c in response.headers.get_list("Set-Cookie") if c.startswith("csrftoken="))
    assert "Secure" in csrf


def test_behind_tls_the_admin_login_works_through_the_proxy_and_its_session_cookie_is_secure(tls_hub):
    proxied = {"X-Forwarded-Proto": "https"}
    origin = f"https://127.0.0.1:{tls_hub.port}"
    page = httpx.get(f"{tls_hub.http_url}/admin/login/", headers=proxied)
    csrf = page.cookies["csrftoken"]
    response = httpx.post(
        f"{tls_hub.http_url}/admin/login/?next=/admin/",
        data={"username": "ops", "password": PASSWORD, "csrfmiddlewaretoken": csrf},
        headers={**proxied, "Cookie": f"csrftoken={csrf}", "Origin": origin, "Referer": f"{origin}/admin/login/"},
    )
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    session = next(c for c in response.headers.get_list("Set-Cookie") if c.startswith("sessionid="))
    assert "Secure" in session and "HttpOnly" in session
