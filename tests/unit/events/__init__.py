"""Tests of the events bus."""
