"""The pure domain: product rules as plain Python, standard library only, `now` passed in."""
