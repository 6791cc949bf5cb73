"""Pure pieces of notification delivery: the retry classifier,
markup escaping and truncation. No I/O; the outbox worker and the targets use them."""
