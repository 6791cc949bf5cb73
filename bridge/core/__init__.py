"""The pure core: no I/O, no clock of its own, nothing from aiohttp, sqlite3 or jinja2.

The Alertmanager payload (``alertmanager``), the incident state machine (``incidents``), what
the rules decide (``policy``), the one vocabulary of events and tiers (``events``), which
notifications a change calls for (``notify``), and the small values they are made of
(``values``, ``timeutil``, ``jsontext``, ``secrets``). Everything above depends on this
package; it depends on nothing above it (tests/test_architecture.py keeps it so).
"""
