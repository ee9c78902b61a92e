"""archit's test suite. A package, so that test files import the shared helpers with ``from tests.helpers import ...``
(pytest puts the repository root on ``sys.path``); ``conftest.py`` holds the fixtures."""
