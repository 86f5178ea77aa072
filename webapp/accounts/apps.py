from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Logins and API tokens: the login limit (django-axes), token expiry and revocation."""

    name = "webapp.accounts"
    label = "accounts"

    def ready(self) -> None:
        # django-axes announces a lock-out with a signal; this records it in the audit log.
        from axes.signals import user_locked_out

        from webapp.accounts.lockout import audit_lockout

        user_locked_out.connect(audit_lockout, dispatch_uid="webapp.accounts.audit_lockout")
