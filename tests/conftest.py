"""Shared pytest set-up.

Hypothesis runs derandomised, so a run of the suite is reproducible: the same examples are drawn on
every machine, and a failure seen in CI is seen locally too. Set ``HYPOTHESIS_PROFILE=explore`` to
draw fresh random examples (and more of them) when hunting for new bugs.
"""
import os

from hypothesis import settings

settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
