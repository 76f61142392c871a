"""Docker Engine REST API helpers: versions, filters, references and JSON models."""
