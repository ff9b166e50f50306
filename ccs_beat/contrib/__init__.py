"""Adapters of ccs_beat for other beat schedulers (django-celery-beat, celery-redbeat)."""
