"""The registry service: pull, push and login over the OCI Distribution API."""
