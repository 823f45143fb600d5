"""The planner: ``python -m harness plan``, what fits on a GPU, predicted on the CPU by the memory room
(harness.memory), which sits below it. One job a file: ``units`` (amounts of memory, the named cards),
``scaled`` (``ScaledTrace``: a step's trace at any batch and patch), ``cache`` (the disk cache of traces, JSON),
``search`` (the largest batch and patch, one fixed configuration), ``nnunet`` (nnU-Net's heuristic beside it),
``render`` (text and JSON), ``cli`` (the options and the command)."""
