"""berthd: the daemon that hosts berth's services (all of them embedded, or one in split mode)."""
