"""Who stays logged in, and how: a second factor for anyone who can approve, and sessions
that end.

- `SecondFactorMiddleware`: a person who must use a second factor (anyone who can
  approve, and superusers; everyone with OPSCONSOLE_SECOND_FACTOR=everyone) and has
  not given one this session is sent to the second-factor page first: enrolment
  (a TOTP app, then ten recovery codes shown once) or, once enrolled, the code.
  Others may enrol from the same page.
- `SessionPolicyMiddleware`: a session ends SESSION_COOKIE_AGE after login whatever
  happens, and after OPSCONSOLE_APPROVER_IDLE_MINUTES without activity for those who
  can approve (OPSCONSOLE_IDLE_MINUTES for everyone else). The dashboard's own refresh
  is not activity.
- Failed passwords are throttled by django-axes (settings `AXES_*`).
"""

from __future__ import annotations

import base64
import secrets
import time
from urllib.parse import urlencode

import segno
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpResponseRedirect
from django.shortcuts import resolve_url
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from opsconsole import permissions

APPROVE_PERMISSIONS = (
    permissions.APPROVE_ROLLBACK,
    permissions.APPROVE_RESTORE,
    permissions.APPROVE_FAILOVER,
    permissions.APPROVE_SETTING_CHANGE,
)
RECOVERY_CODES = 10
# Requests that keep working before the second factor: the page itself, logging out,
# static files, and everything that never uses a session (health, webhooks, APIs).
EXEMPT_PREFIXES = ("/admin/second-factor/", "/admin/logout/", "/static/", "/health",
                   "/webhooks/", "/api/", "/status")  # fmt: skip
# Pages that follow running work fetch themselves again (follow.js, which says so in a
# header): that is not someone at the keyboard.
NOT_ACTIVITY = ("/admin/dashboard/panels/",)
FOLLOW_HEADER = "X-Opsconsole-Follow"


def can_approve(user) -> bool:
    return user.is_superuser or any(user.has_perm(p) for p in APPROVE_PERMISSIONS)


def needs_second_factor(user) -> bool:
    return settings.OPSCONSOLE_SECOND_FACTOR == "everyone" or can_approve(user)


class SecondFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if (
            user.is_authenticated
            and not user.is_verified()
            and not request.path.startswith(EXEMPT_PREFIXES)
            and needs_second_factor(user)
        ):
            target = reverse("admin:second_factor")
            return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)


class SessionPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = time.time()
            session = request.session
            started = session.setdefault("opsconsole_started", now)
            seen = session.get("opsconsole_seen", now)
            idle = (
                settings.OPSCONSOLE_APPROVER_IDLE_MINUTES
                if can_approve(request.user)
                else settings.OPSCONSOLE_IDLE_MINUTES
            )
            if now - started > settings.SESSION_COOKIE_AGE or now - seen > idle * 60:
                logout(request)
                messages.info(request, f"Signed out after {idle} minutes without activity "
                              "or at the end of the session. Log in again.")  # fmt: skip
                login = resolve_url(settings.LOGIN_URL)
                return HttpResponseRedirect(
                    f"{login}?{urlencode({'next': request.get_full_path()})}"
                )
            followed = request.path.startswith(NOT_ACTIVITY) or FOLLOW_HEADER in request.headers
            if not followed and now - seen > 30:
                session["opsconsole_seen"] = now
            session.setdefault("opsconsole_seen", now)
        return self.get_response(request)


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=16,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


def _next_url(request) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or reverse("admin:index")
    if url_has_allowed_host_and_scheme(wanted, {request.get_host()}, request.is_secure()):
        return wanted
    return reverse("admin:index")


def second_factor_view(request, admin_site):
    """Enrol a TOTP app (then see the recovery codes once), or give a code."""
    user = request.user
    enrolled = user_has_device(user, confirmed=True)
    form = CodeForm(request.POST or None)
    context = {**admin_site.each_context(request), "title": "Two-factor authentication",
               "form": form, "next": _next_url(request), "enrolled": enrolled}  # fmt: skip
    if enrolled:
        if request.method == "POST" and form.is_valid():
            device = _matching_device(user, form.cleaned_data["code"])
            if device is not None:
                otp_login(request, device)
                return HttpResponseRedirect(_next_url(request))
            form.add_error("code", "That code is not right, or was used already. Try the next one.")
        return TemplateResponse(request, "admin/opsconsole/second_factor.html", context)
    device = TOTPDevice.objects.filter(
        user=user, confirmed=False
    ).first() or TOTPDevice.objects.create(user=user, name="authenticator app", confirmed=False)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["code"].strip()):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            codes = _new_recovery_codes(user)
            otp_login(request, device)
            messages.success(request, "Two-factor authentication is on.")
            return TemplateResponse(
                request,
                "admin/opsconsole/recovery_codes.html",
                {**context, "codes": codes, "title": "Your recovery codes"},
            )
        form.add_error(
            "code", "That code is not right. Check the time on your phone and try the newest code."
        )
    key = base64.b32encode(device.bin_key).decode().rstrip("=")
    qr = segno.make(device.config_url, error="m")
    context.update(
        key=" ".join(key[i : i + 4] for i in range(0, len(key), 4)),
        qr=qr.svg_data_uri(scale=4, dark="#000", light="#fff"),
        config_url=device.config_url,
    )
    return TemplateResponse(request, "admin/opsconsole/second_factor.html", context)


def _matching_device(user, code: str):
    code = code.strip().replace(" ", "")
    for device in [
        *TOTPDevice.objects.devices_for_user(user),
        *StaticDevice.objects.devices_for_user(user),
    ]:
        if device.verify_token(code):
            return device
    return None


def _new_recovery_codes(user) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(user=user, name="recovery codes")
    device.token_set.all().delete()
    codes = [secrets.token_hex(5) for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=c) for c in codes])
    return codes
