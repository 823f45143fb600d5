"""The benchmark runner, as a pytest plugin shipped with the package (``pytest11`` entry point
``harness.pytest_plugin.plugin``): after ``pip install .`` any repository runs
``pytest --profile smoke --model mypkg.nets:build`` (or ``python -m harness bench ...``) with no file copied.

- ``options``: the command-line options, read once into one ``RunOptions``;
- ``session``: the one object a pytest session keeps (options, selected configurations, run folder,
  resume, progress, failures) and that measures one configuration and records its row;
- ``plugin``: the hooks, which only hand work to the session;
- ``bench_test``: the one benchmark test, for every family (grouped by family).
"""
