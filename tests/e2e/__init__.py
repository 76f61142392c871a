"""End-to-end tests: the real docker CLI and docker-py against a real berthd."""
