"""The server-rendered pages of the authorization server: sign-in, second factor, consent (with
the practitioner's patient picker), messages, and the demo's callback.

Plain HTML forms, no JavaScript. Accessibility (WCAG 2.2): a language, headings, every control
labelled, groups in fieldsets with legends, errors announced (``role="alert"``), visible focus,
sufficient contrast. Safety: every value is HTML-escaped; the Content-Security-Policy allows no
scripts, only the inline style by its hash, forms posting only to this server (and, for forms
whose answer redirects to the app, to the app's redirect origin), and no framing (clickjacking);
responses are never cached and send no Referer (codes and states stay out of third-party logs).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

from starlette.responses import HTMLResponse

from healthbridge.auth.consent import ScopeLine
from healthbridge.auth.patients import PatientChoice

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f6f8;color:#1b1f24;line-height:1.5}
main{max-width:36rem;margin:2rem auto;background:#fff;padding:1.5rem 2rem;border-radius:8px;
box-shadow:0 1px 3px #0003}
h1{font-size:1.4rem;margin-top:0}
label{display:block;margin:.5rem 0 .2rem;font-weight:600}
.choice label{display:inline;font-weight:400;margin-left:.4rem}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;
font-size:1rem;border:1px solid #57606a;border-radius:4px}
fieldset{border:1px solid #d0d7de;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
fieldset fieldset{margin:.3rem 0 .3rem 1.6rem}
legend{font-weight:600}
button{font-size:1rem;padding:.5rem 1.2rem;margin:.8rem .5rem 0 0;border-radius:4px;
border:1px solid #1f6feb;background:#1f6feb;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1f6feb}
:focus-visible{outline:3px solid #bf3989;outline-offset:2px}
.alert{background:#ffebe9;border:1px solid #cf222e;padding:.5rem 1rem;border-radius:4px}
.note{color:#57606a;font-size:.9rem}
code,pre{background:#f6f8fa;padding:.1rem .3rem;border-radius:3px;white-space:pre-wrap;
word-break:break-all}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()


def page(
    title: str, body: str, *, status: int = 200, form_origins: Iterable[str] = ()
) -> HTMLResponse:
    """A complete page; ``body`` must already be escaped HTML."""
    origins = " ".join(sorted({o for o in form_origins if o and " " not in o and ";" not in o}))
    csp = (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; "
        f"form-action 'self' {origins}".rstrip()
        + "; frame-ancestors 'none'; base-uri 'none'"
    )
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} - HealthBridge</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    headers = {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
    }
    return HTMLResponse(document, status_code=status, headers=headers)


def _hidden(pairs: Iterable[tuple[str, str]]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(n)}" value="{escape(v)}">' for n, v in pairs
    )


def _alert(error: str | None) -> str:
    return f'<p class="alert" role="alert">{escape(error)}</p>' if error else ""


def login_page(
    csrf: str,
    next_query: str,
    *,
    client_name: str | None = None,
    error: str | None = None,
    status: int = 200,
    form_origins: Iterable[str] = (),
) -> HTMLResponse:
    intro = (
        f"<p>Sign in to decide what <strong>{escape(client_name)}</strong> may see.</p>"
        if client_name
        else ""
    )
    body = (
        f"<h1>Sign in</h1>{intro}{_alert(error)}"
        '<form method="post" action="/auth/login">'
        + _hidden([("csrf", csrf), ("next", next_query)])
        + '<label for="username">User name</label>'
        '<input type="text" id="username" name="username" autocomplete="username" required '
        'autocapitalize="none" spellcheck="false">'
        '<label for="password">Password</label>'
        '<input type="password" id="password" name="password" '
        'autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>'
    )
    return page("Sign in", body, status=status, form_origins=form_origins)


def totp_page(
    csrf: str, next_query: str, *, error: str | None = None, status: int = 200
) -> HTMLResponse:
    body = (
        f"<h1>Enter your one-time code</h1>{_alert(error)}"
        "<p>Open your authenticator app and enter the 6-digit code it shows.</p>"
        '<form method="post" action="/auth/login/totp">'
        + _hidden([("csrf", csrf), ("next", next_query)])
        + '<label for="code">One-time code</label>'
        '<input type="text" id="code" name="code" inputmode="numeric" '
        'autocomplete="one-time-code" pattern="[0-9 ]{6,7}" required>'
        '<button type="submit">Continue</button></form>'
    )
    return page("One-time code", body, status=status)


def message_page(title: str, message: str, *, status: int = 200) -> HTMLResponse:
    return page(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>", status=status)


@dataclass(frozen=True, slots=True)
class ConsentView:
    csrf: str
    client_name: str
    user_label: str
    lines: Sequence[ScopeLine]
    oauth_params: Sequence[tuple[str, str]]
    redirect_origin: str
    own_record: bool = False
    patient_choices: Sequence[PatientChoice] | None = None  # the picker, for practitioners
    patient_search: str = ""
    patient_label: str | None = None  # the patient the launch or account is about
    error: str | None = None
    resource_scopes: frozenset[str] = field(default_factory=frozenset)


def _scope_rows(view: ConsentView) -> str:
    rows = []
    for i, line in enumerate(view.lines):
        if line.scope not in view.resource_scopes:
            continue
        sub = ""
        if line.categories:
            boxes = "".join(
                f'<div class="choice"><input type="checkbox" id="c{i}_{j}" '
                f'name="category:{escape(line.scope)}" value="{escape(value)}">'
                f'<label for="c{i}_{j}">{escape(label)}</label></div>'
                for j, (value, label) in enumerate(line.categories)
            )
            sub = (
                "<fieldset><legend>Share only some kinds (leave all unticked to share every "
                f"kind)</legend>{boxes}</fieldset>"
            )
        rows.append(
            f'<div class="choice"><input type="checkbox" id="g{i}" name="grant" '
            f'value="{escape(line.scope)}" checked><label for="g{i}">{escape(line.text)}'
            f"</label>{sub}</div>"
        )
    return "".join(rows)


def _other_rows(view: ConsentView) -> str:
    rows = []
    for line in view.lines:
        if line.scope in view.resource_scopes:
            continue
        if line.scope == "offline_access":
            rows.append(
                '<div class="choice"><input type="checkbox" id="offline" name="offline" '
                f'value="yes" checked><label for="offline">{escape(line.text)}</label></div>'
            )
        else:
            rows.append(f"<li>{escape(line.text)}</li>")
    plain = [r for r in rows if r.startswith("<li>")]
    boxes = [r for r in rows if not r.startswith("<li>")]
    return (f"<ul>{''.join(plain)}</ul>" if plain else "") + "".join(boxes)


def _picker(view: ConsentView) -> tuple[str, str]:
    """(the search form shown before the consent form, the radio group inside it)."""
    if view.patient_choices is None:
        return "", ""
    search = (
        '<form method="get" action="/auth/authorize">'
        + _hidden(view.oauth_params)
        + '<label for="patient_search">Find a patient by name</label>'
        f'<input type="text" id="patient_search" name="patient_search" '
        f'value="{escape(view.patient_search)}">'
        '<button type="submit" class="secondary">Find</button></form>'
    )
    if not view.patient_choices:
        return search, "<p>No patient matches; search again above.</p>"
    radios = "".join(
        f'<div class="choice"><input type="radio" id="p{i}" name="patient" '
        f'value="{escape(choice.id)}" required><label for="p{i}">{escape(choice.label)}'
        "</label></div>"
        for i, choice in enumerate(view.patient_choices)
    )
    return search, f"<fieldset><legend>Which patient?</legend>{radios}</fieldset>"


def consent_page(view: ConsentView, *, status: int = 200) -> HTMLResponse:
    search, radios = _picker(view)
    about = (
        f"<p>Patient: <strong>{escape(view.patient_label)}</strong></p>"
        if view.patient_label
        else ""
    )
    resources = _scope_rows(view)
    body = (
        f"<h1>Allow {escape(view.client_name)} to use health records?</h1>"
        f"<p>Signed in as <strong>{escape(view.user_label)}</strong>.</p>"
        f"{_alert(view.error)}{about}{search}"
        '<form method="post" action="/auth/authorize">'
        + _hidden([*view.oauth_params, ("csrf", view.csrf)])
        + radios
        + (
            f"<fieldset><legend>{escape(view.client_name)} asks to</legend>{resources}"
            '<p class="note">Untick anything you do not want to share.</p></fieldset>'
            if resources
            else ""
        )
        + f"<fieldset><legend>It will also</legend>{_other_rows(view)}</fieldset>"
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny" class="secondary" formnovalidate>'
        "Deny</button></form>"
        '<form method="post" action="/auth/logout">'
        + _hidden([("csrf", view.csrf)])
        + '<button type="submit" class="secondary">Sign out</button></form>'
    )
    return page("Allow access", body, status=status, form_origins=[view.redirect_origin])


def demo_callback_page(code: str, state: str, exchange: str) -> HTMLResponse:
    body = (
        "<h1>Authorization code received</h1>"
        f"<p>State: <code>{escape(state)}</code></p>"
        f"<p>Code (valid for a minute): <code>{escape(code)}</code></p>"
        "<p>Exchange it for an access token:</p>"
        f"<pre>{escape(exchange)}</pre>"
    )
    return page("Demo app", body)
