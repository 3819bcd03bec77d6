"""What the tests share: the service under test and its fixtures, steps over the API and the pages,
assertions, plain domain objects. Test modules import from here (and from tests.fakes), never from
one another; tests/conftest.py registers `tests.support.fixtures` as a plugin."""
