"""The machine APIs' one door: every bearer-token view goes through `bearer_token`.

A token-authenticated view is never a session view, so the decorator also
exempts it from CSRF and from the login requirement; a view that people may
also open in their browser says `allow_staff_session=True`. Each view names
the one scope a token needs for it (see `ApiToken.SCOPES`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib.auth.decorators import login_not_required
from django.views.decorators.csrf import csrf_exempt

from opsconsole.login import needs_second_factor
from opsconsole.models import ApiToken
from opsconsole.webhooks import json_error


def bearer_token(scope: str, *, allow_staff_session: bool = False) -> Callable:
    """Let the request through with a live `Authorization: Bearer …` token that has `scope`
    (set as `request.api_token`), or with a staff session where allowed. Otherwise 401
    (no usable token) or 403 (a token without the scope), with a JSON body."""
    if scope not in ApiToken.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            request.api_token = None
            if (
                allow_staff_session
                and request.user.is_authenticated
                and request.user.is_staff
                and (request.user.is_verified() or not needs_second_factor(request.user))
            ):
                return view(request, *args, **kwargs)
            request.api_token = ApiToken.authenticate(request.headers.get("Authorization"))
            if request.api_token is None:
                return json_error(
                    401,
                    "log in, or send a bearer API token"
                    if allow_staff_session
                    else "missing, wrong, expired or revoked bearer token",
                )
            if not request.api_token.allows(scope):
                return json_error(
                    403,
                    f"this token may not {ApiToken.SCOPES[scope]}: it needs the {scope} scope",
                    scopes=request.api_token.scopes,
                )
            return view(request, *args, **kwargs)

        return csrf_exempt(login_not_required(wrapped))

    return decorate
