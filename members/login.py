"""Throttling of password logins (the admin and the dashboards share the admin's login): django-axes' backend,
which refuses a locked-out user name and address even with the right password (settings: ``AXES_*``)."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' backend, minus its refusal of calls without a request.

    Every login over HTTP passes the request and is throttled. ``authenticate()`` without one (Django's test
    client ``login()``, a script in ``manage.py shell``) is not a request anyone outside can make; axes would raise
    for it, so it is left to the next backend."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
