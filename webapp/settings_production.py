"""Production: DEBUG off, the secret from the environment, secure cookies and HSTS."""

from webapp.env import envbool, envint, envstr
from webapp.settings import *  # noqa: F403

DEBUG = False
SECRET_KEY = envstr("SECRET_KEY")
if len(SECRET_KEY) < 50:
    raise RuntimeError("Set SECRET_KEY (or SECRET_KEY_FILE) to a random string of 50 or more characters.")

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
