"""Reproducible training (issue 26; docs/repro.md): a room of its own beside ``bench/``, reusing its spec
(``BenchSpec``), its resolved configuration and its workload (the training step the bench times).

- ``documented``  the operators the installed torch documents as raising under deterministic mode on CUDA,
                  parsed from ``torch.use_deterministic_algorithms.__doc__``, mapped to aten operators
- ``trace``       the aten operators a step dispatches (forward and backward), and the CUDA prediction (the
                  network's and the loss's apart; the per-element loss)
- ``deviation``   bitwise equality and the largest deviation of tensors (absolute, relative to the scale);
                  values no rounding explains (non-finite, absurd)
- ``steps``       k seeded training steps in this process; deterministic mode; the step's loss and where an
                  error came from (loss or network); the per-element loss
- ``worker``      ``python -m harness.repro.worker``: those steps in a fresh process
- ``runtorun``    two fresh processes, compared step by step
- ``deterministic`` run or raise under deterministic mode, its cost (interleaved), two runs bitwise equal
- ``settings``    what changes a result: each execution setting against the fp32 eager reference
- ``plan``        which variants at which input, refused before anything runs
- ``run``         the checks in order, the findings rule, repro.json (plain data)
- ``render``      the table and repro.md (rendering only, no torch)
- ``cli``         ``python -m harness repro``
"""
