"""The training input pipeline, measured beside the step (issue 28; docs/pipeline.md): nnU-Net v2's and MONAI's
augmentation built by their own libraries (and the user's, ``--pipeline mod:fn``), their samples per second on
one CPU core, a DataLoader's scaling over workers, and from those and the committed training step times, the
cores each variant needs per GPU and the expected nnU-Net epoch time. ``python -m harness pipeline``."""
