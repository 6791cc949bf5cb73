"""Contract fakes of the remote APIs the targets talk to: real aiohttp servers on loopback
ports that enforce the vendors' documented contracts (auth, required fields, limits, error bodies,
429 with Retry-After) and record what they received."""
