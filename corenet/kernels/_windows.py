"""Moved: ``tap_range`` lives in ``corenet/geometry.py`` (re-exported here until every importer is updated)."""

from ..geometry import tap_range  # noqa: F401
