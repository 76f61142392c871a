"""The events service: a bounded history of what happened, fanned out to subscribers."""
