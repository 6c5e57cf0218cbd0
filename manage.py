#!/usr/bin/env python3
"""opsconsole's command-line utility."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsconsole.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # Bad configuration is the operator's to fix: say what, in one line.
        sys.stderr.write(f"opsconsole: configuration error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
