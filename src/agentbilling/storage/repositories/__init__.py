"""Repositories: the rows of one aggregate each, read and written in a transaction."""
