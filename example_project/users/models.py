"""``DemoUser``: a user row whose ``score`` and ``display_name`` are derived.

The derived fields are what ``users.update_all`` recomputes for every row;
they depend on the time (recency), so each run really rewrites them.
"""

from __future__ import annotations

import math
from datetime import datetime

from django.db import models


class DemoUser(models.Model):
    """A user of the demo's imaginary product."""

    username = models.CharField(max_length=64, unique=True)
    first_name = models.CharField(max_length=64)
    last_name = models.CharField(max_length=64)
    email = models.EmailField()
    joined = models.DateTimeField()
    last_seen = models.DateTimeField()
    logins = models.PositiveIntegerField(default=0)
    # derived by users.update_all
    score = models.FloatField(default=0.0)
    display_name = models.CharField(max_length=140, blank=True, default="")
    scored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        verbose_name = "demo user"

    def __str__(self) -> str:
        return self.username

    def compute_score(self, now: datetime) -> float:
        """Engagement: logins, discounted by the days since the user was last seen."""
        idle_days = max(0.0, (now - self.last_seen).total_seconds() / 86400)
        return round(math.log1p(self.logins) * 10 / (1 + idle_days / 7), 3)

    def compute_display_name(self) -> str:
        """"Ada L." with a star for the most engaged users."""
        star = " *" if self.score >= 40 else ""
        return f"{self.first_name} {self.last_name[:1]}.{star}"
