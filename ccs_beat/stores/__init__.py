"""Ledger stores that need nothing beyond Celery (the adapters for Redis and
Django keep theirs next to their schedulers, in :mod:`ccs_beat.contrib`)."""
