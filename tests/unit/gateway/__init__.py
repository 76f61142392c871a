"""Unit tests of the gateway HTTP transport."""
