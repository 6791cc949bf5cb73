"""Black-box tests against real processes: the bridge, Alertmanager, amtool."""
