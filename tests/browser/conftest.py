"""Browser tests reuse the API fixtures (an app over the embedded runtime)."""

from tests.api.conftest import make_api  # noqa: F401 - a fixture, found by pytest through this import
