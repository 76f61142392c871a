"""The volumes service: local volumes, their mount references, create/ls/inspect/rm/prune."""
