"""incident-bridge: the incident process behind Prometheus Alertmanager."""

from __future__ import annotations

__version__ = "0.1.0"
