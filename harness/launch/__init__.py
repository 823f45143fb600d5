"""Sweeps past one process: a sweep split into shards (``shards``), each shard a pytest run of its own
(``plan``, ``job``), run on every GPU of a node (``local``) or as a SLURM job array through submitit
(``slurm``), and the shards merged into one run folder (``merge``). ``python -m harness.launch`` starts
or resumes a sweep; ``python -m harness merge`` merges run folders by hand."""
