"""Docker Engine API route tables, one module per resource."""
