"""Gateway: the Docker Engine REST API over HTTP/1.1, translated to the berth services."""
