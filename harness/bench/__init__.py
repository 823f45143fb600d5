"""One configuration in, one measurement out. ``spec`` (torch-free) is the configuration identity;
``profiles`` say which configurations a sweep holds; ``workload`` builds the step, ``timing``,
``memory`` and ``peak`` measure it, ``counting`` counts its work, ``environment`` records the machine,
and ``run.measure`` puts them together; ``volume`` is the whole-volume workload (MONAI's sliding windows).
Nothing is imported here, so ``harness.bench.spec`` loads without torch."""
