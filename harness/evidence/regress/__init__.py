"""``python -m harness.evidence.regress``: did the reference models get slower or heavier?

Deterministic facts (parameters, used parameters, MACs by operator, output shapes, the aten operators
a forward pass dispatches) are compared exactly. Timings and peak memory are compared statistically:

- ``--against REF``: REF is checked out in a temporary git worktree; the *current* harness code is
  copied into it, so both sides are measured the same way and differ only in ``reference_models``.
  One worker process per tree; for each configuration the two are timed in alternating blocks
  (AB, BA, AB, ...) on the same machine, so drift hits both. Each block gives a ratio
  min(new)/min(old) of its rounds (noise only adds time). The whole sweep is repeated with
  ``--replicates`` fresh pairs of processes, one after the other, because a process can be a few
  percent (rarely 20%) slower than its twin for its whole life (memory placement, which core it
  lands on), and no number of blocks inside one pair averages that away. The verdict: *slower*
  when the median of all block ratios exceeds 1 + ``--min-effect``, its bootstrap 95% interval lies
  above 1, and every replicate on its own shows at least half the minimum effect (a real slowdown of
  the code shows in every pair of processes; a placement artefact in one); *faster* symmetrically;
  *unchanged* otherwise (``harness.stats.ReplicateRule``).
- without ``--against``: against a committed run (``--baseline RUN``). Without ``--baseline`` the run is
  chosen by what this check needs, not by name: among the runs under ``--runs-root`` (default
  ``results/runs/``) with rows for this device, those whose machine fingerprint (device, CPU, threads,
  torch, CUDA, cuDNN) matches this machine's, the one holding the most of the planned configurations
  (ties: the newest); it says which and why. A configuration counts only as a valid measurement: fp32,
  eager, not channels-last, no ``--set`` overrides, ``schema.measured_fine`` (no error, warm) and its
  timing samples in ``details.jsonl``. Facts are checked exactly; timings only when the fingerprint
  matches (``harness.bench.machine.comparable_machines``), otherwise it says it cannot judge them: this
  tree's synchronized steps against the run's, the ratio of medians with its bootstrap interval
  (each side resampled), judged by the same rule with this one comparison as the only replicate.
  Peak memory is not compared in this mode (only ``--against`` measures both sides the same way).
- ``--deterministic-only``: facts only, against the committed snapshot ``results/regress/facts.json``
  (``--update-facts`` rewrites it). Cheap: this is what ``.ci/run`` runs.

The planned configurations are ``quick_specs``: each chosen variant at its fact shape (3D) or 64² (2D),
inference at batch 1 and a training step at batch 2 (``--modes``). Whatever planned comparison did not
happen is named with its reason: a configuration the baseline lacks (or holds only as an error or
not-warm row), timings of a baseline from another machine, a peak memory without a reading on either
side (``unknown``, never compared as equal).

Exit status: 1 when anything regressed (a changed fact, a slower timing, a heavier peak), even if other
comparisons were missing; otherwise 3 ("cannot judge") when any planned comparison did not happen,
with the reason (in particular when no timing at all was compared); 0 only when everything planned
was compared and nothing regressed. ``--deterministic-only`` plans no timing: 0 or 1 on its facts, 3 when
the snapshot lacks a variant.

The package, one job a module: ``plan`` (the planned configurations, as BenchSpec), ``tree`` (the git
worktree), ``client`` (the worker processes and the interleaved timing), ``worker`` (one side's process),
``baseline`` (a committed run as this check reads it, and which one to choose), ``checks`` (the three
modes' bookkeeping), ``results`` (the typed result: the same shape in every mode), ``render`` (the
terminal table), ``cli``. The statistics and the verdict rules live in ``harness.stats``.
"""
