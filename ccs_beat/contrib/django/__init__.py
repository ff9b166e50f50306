"""django-celery-beat integration: a singleton toggle per periodic task.

Add ``"ccs_beat.contrib.django"`` to ``INSTALLED_APPS`` after
``"django_celery_beat"``, run ``manage.py migrate``, and start beat with
``-S ccs_beat.contrib.django.schedulers:SingletonDatabaseScheduler`` (or set
``CELERY_BEAT_SCHEDULER`` to that path).
"""
