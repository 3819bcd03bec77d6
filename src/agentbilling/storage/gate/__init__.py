"""The gate's hot path: admitting sessions and counting units on raw driver connections."""
