from tests.alerts.conftest import channels  # noqa: F401 - the same log channels and escalation
