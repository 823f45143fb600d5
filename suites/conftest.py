"""Shared pytest set-up: hypothesis profiles (select with --hypothesis-profile NAME)."""

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=15, deadline=None)
settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    stateful_step_count=50,
)
settings.load_profile("dev")

# The benchmark runner (also loaded by its pytest11 entry point once the package is installed; the entry
# point carries the module's name, so it is not registered twice).
pytest_plugins = ["harness.pytest_plugin.plugin"]
