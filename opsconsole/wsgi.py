"""WSGI entry point for gunicorn (`gunicorn opsconsole.wsgi`)."""

import os
import sys

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsconsole.settings")

try:
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    # One line, not a traceback, then a non-zero exit: gunicorn reports the worker failed to boot.
    sys.stderr.write(f"opsconsole: configuration error: {exc}\n")
    sys.exit(3)
