#!/usr/bin/env python
"""Django's command-line utility for the example project.

Run from anywhere: ``python example_project/manage.py migrate``. Python puts
this script's folder first on ``sys.path``, where ``celery.py`` would shadow the
real ``celery`` package; the repository root takes its place, so that
``example_project`` imports as a package.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    """Run a Django management command with the example project's settings."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
