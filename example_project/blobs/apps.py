"""The ``blobs`` app: no models, a bucket client and the ``blobs.collect_garbage`` task."""

from __future__ import annotations

from django.apps import AppConfig


class BlobsConfig(AppConfig):
    name = "example_project.blobs"
    label = "blobs"
    verbose_name = "Blobs"
