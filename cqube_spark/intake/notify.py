"""E-mail the emitter when a zip is rejected (SMTP; host/port/from/to from the job config's ``smtp`` block,
whose values usually come from ``${ENV}`` references). Failures are logged and never stop intake."""
from __future__ import annotations

import smtplib
from email.message import EmailMessage


def send_rejection(smtp: dict, to: list[str], subject: str, body: str, log=None) -> bool:
    if not smtp or not to or not smtp.get("enabled", True):
        return False
    msg = EmailMessage()
    msg["From"] = smtp.get("from", "cqube-intake@localhost")
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content(body)
    try:
        with smtplib.SMTP(smtp.get("host", "127.0.0.1"), int(smtp.get("port", 25)),
                          timeout=float(smtp.get("timeoutSeconds", 10))) as s:
            if smtp.get("starttls"):
                s.starttls()
            user = smtp.get("user")
            if user:
                import os

                s.login(user, os.environ.get(smtp.get("passwordEnv", "CQUBE_SMTP_PASSWORD"), ""))
            s.send_message(msg)
        return True
    except (OSError, smtplib.SMTPException) as e:
        if log is not None:
            log.warning("rejection e-mail not sent", error=f"{type(e).__name__}: {e}", to=to)
        return False
