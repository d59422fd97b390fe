"""A real SMTP server for the notification tests: aiosmtpd on 127.0.0.1 with STARTTLS
required (the certificate given) and AUTH required (one login and password). Each message
is saved as N.json in MAILDIR: envelope, authenticated login, subject, and the decoded
plain-text and HTML parts. Prints `ready` once it accepts connections; runs until killed.

usage: smtp_server.py PORT CERT KEY MAILDIR LOGIN PASSWORD
"""
import email
import email.policy
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, maildir, login, password = sys.argv[1:7]


class Handler:
    def __init__(self):
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        plain = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        self.n += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": (session.auth_data.login.decode()
                      if isinstance(session.auth_data, LoginPassword) else None),
            "authenticated": bool(session.authenticated),
            "tls": session.ssl is not None,
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]),
            "text": plain.get_content() if plain else None,
            "html": html.get_content() if html else None,
        }
        tmp = os.path.join(maildir, f".{self.n}.json")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(maildir, f"{self.n}.json"))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == login
          and auth_data.password.decode() == password)
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=int(port),
    tls_context=context,
    require_starttls=True,
    authenticator=authenticator,
    auth_required=True,
)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
