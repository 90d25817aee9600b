"""Signing in to the dashboard: a proxy key typed once, kept in an HttpOnly SameSite=Strict cookie.

With no proxy keys configured the dashboard is open (relaylog listens on loopback unless told
otherwise). With keys, every page but /login needs the cookie (or `Authorization: Bearer KEY`);
feedback-only keys are refused: they are meant for browsers of end users, not for reading the log.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from proxy.auth import KEY_COOKIE
from proxy.dashboard.render import render
from proxy.state import POLICY, SETTINGS

COOKIE_MAX_AGE_S = 30 * 86400
MAX_KEY_CHARS = 4096


def _local_path(target: str | None) -> str:
    """`target` when it is a path on this server, else the requests list (no open redirect)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/requests"


def login_url(request: web.Request) -> str:
    return f"/login?next={quote(request.path_qs, safe='')}"


async def login_form(request: web.Request) -> web.StreamResponse:
    """The key prompt (or straight on when no key is needed)."""
    target = _local_path(request.query.get("next"))
    if not request.app[POLICY].proxy.enabled:
        raise web.HTTPSeeOther(target)
    return render(request, "login.html", {"next": target, "problem": None})


async def login(request: web.Request) -> web.StreamResponse:
    """Check the typed key in constant time; set the cookie and go on, or ask again."""
    form = await request.post()
    key, target = form.get("key"), _local_path(str(form.get("next") or ""))
    policy = request.app[POLICY]
    if not policy.proxy.enabled:
        raise web.HTTPSeeOther(target)
    problem = None
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_CHARS:
        problem, status = "Type a proxy key.", 400
    elif policy.proxy.matches(key.strip()):
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            KEY_COOKIE,
            key.strip(),
            max_age=COOKIE_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.app[SETTINGS].dashboard.cookie_secure or request.secure,
        )
        raise response
    elif policy.feedback.matches(key.strip()):
        problem, status = "That is a feedback-only key: it cannot open the dashboard.", 403
    else:
        problem, status = "That key is not one of relaylog's proxy keys.", 401
    return render(request, "login.html", {"next": target, "problem": problem}, status=status)


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(KEY_COOKIE, path="/")
    raise response
