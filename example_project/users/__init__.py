"""Users with a derived field that a "daily" job recomputes for every row."""
