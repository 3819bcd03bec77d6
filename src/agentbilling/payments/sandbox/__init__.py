"""The sandbox payment provider and its secure billing portal's pages."""
