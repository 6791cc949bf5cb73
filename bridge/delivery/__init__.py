"""Pure pieces of notification delivery: the retry classifier, backoff and rate limits,
markup escaping and truncation. No I/O; the outbox worker and the targets use them."""
