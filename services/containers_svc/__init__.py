"""The containers service: container records, lifecycle under conmon + crun, logs and attach."""
