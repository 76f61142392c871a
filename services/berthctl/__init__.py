"""berthctl: a small gRPC client for berth (status, images), for operators and scripts."""
