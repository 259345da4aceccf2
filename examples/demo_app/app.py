"""A small web application that signs its users in through the portal with OpenID Connect (Authlib, authorization
code with PKCE S256), and shows who they are.

    PORTAL_URL=http://127.0.0.1:8000 CLIENT_ID=… CLIENT_SECRET=… python examples/demo_app/app.py --port 5000

Register it first (the second address is where its sign-out comes back to):
python manage.py app_register --tenant SLUG --name "Demo app" \\
    --redirect-uri http://127.0.0.1:5000/callback --post-logout-redirect-uri http://127.0.0.1:5000/
"""

from __future__ import annotations

import argparse
import html
import os
import secrets
from urllib.parse import urlencode

from authlib.integrations.flask_client import OAuth
from flask import Flask, redirect, session, url_for


def create_app(*, portal_url: str, client_id: str, client_secret: str | None) -> Flask:
    app = Flask(__name__)
    app.secret_key = os.environ.get("DEMO_SECRET_KEY") or secrets.token_urlsafe(32)
    # The portal also lives on 127.0.0.1: cookies are per host, not per port, so use names of our own.
    app.config.update(SESSION_COOKIE_NAME="demo_app_session", SESSION_COOKIE_SAMESITE="Lax")
    oauth = OAuth(app)
    oauth.register(
        "portal", client_id=client_id, client_secret=client_secret or None,
        server_metadata_url=f"{portal_url.rstrip('/')}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid profile email", "code_challenge_method": "S256",
                       "token_endpoint_auth_method": "client_secret_basic" if client_secret else "none"},
    )

    @app.get("/")
    def home():
        user = session.get("user")
        if not user:
            return page("Demo application", '<p>You are not signed in.</p>'
                        '<p><a class="button" id="sign-in" href="/login">Sign in with your organisation</a></p>')
        rows = "".join(f"<tr><th>{html.escape(label)}</th><td id=\"claim-{key}\">{html.escape(str(user.get(key, '')))}"
                       "</td></tr>" for key, label in (("name", "Name"), ("upn", "UPN"), ("tid", "Tenant id"),
                                                      ("email", "Email"), ("sub", "Subject")))
        return page("Demo application", f'<p id="welcome">Hello, {html.escape(user.get("name", ""))}!</p>'
                    f'<table>{rows}</table><p><a href="/logout">Sign out</a></p>')

    @app.get("/login")
    def login():
        return oauth.portal.authorize_redirect(url_for("callback", _external=True))

    @app.get("/callback")
    def callback():
        token = oauth.portal.authorize_access_token()  # checks state, exchanges with the PKCE verifier,
        claims = token["userinfo"]                       # and validates the ID token with the portal's JWKS
        session["user"] = {k: claims.get(k) for k in ("sub", "name", "upn", "tid", "email")}
        session["id_token"] = token["id_token"]
        return redirect("/")

    @app.get("/logout")
    def logout():
        # The ID token as id_token_hint: without it the portal ends on its own signed-out page, not back here.
        id_token = session.pop("id_token", None)
        session.clear()
        metadata = oauth.portal.load_server_metadata()
        query = {"client_id": client_id, "post_logout_redirect_uri": url_for("home", _external=True)}
        if id_token:
            query["id_token_hint"] = id_token
        return redirect(f"{metadata['end_session_endpoint']}?{urlencode(query)}")

    return app


def page(title: str, body: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;background:#f6f3ee;display:grid;place-items:center;min-height:100vh;
margin:0}}main{{background:#fff;padding:2rem 2.4rem;border-radius:10px;box-shadow:0 2px 14px rgba(0,0,0,.12);
min-width:380px}}th{{text-align:left;padding-right:1rem;color:#555}}a.button{{background:#7a3e9d;color:#fff;
padding:.6rem 1.2rem;border-radius:6px;text-decoration:none}}</style></head>
<body><main><h1>{title}</h1>{body}</main></body></html>"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    app = create_app(portal_url=os.environ.get("PORTAL_URL", "http://127.0.0.1:8000"),
                     client_id=os.environ["CLIENT_ID"], client_secret=os.environ.get("CLIENT_SECRET"))
    app.run(host=args.host, port=args.port, debug=False)


if __name__ == "__main__":
    main()
