"""The tests' shared fixtures live in tests/support/fixtures.py (registered here as a plugin), their
helpers in tests/support/, the stand-ins for outside systems in tests/fakes/."""

pytest_plugins = ["tests.support.fixtures"]
