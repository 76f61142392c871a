"""The networks service: bridge networks, IPAM, endpoints, network namespaces and published ports."""
