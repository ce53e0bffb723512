"""Shared test setup."""

from __future__ import annotations

import os

from hypothesis import settings

# Hypothesis budget: small by default (the unit suite stays fast); HYPOTHESIS_PROFILE=fuzz digs deeper.
settings.register_profile("default", max_examples=30)
settings.register_profile("fuzz", max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
