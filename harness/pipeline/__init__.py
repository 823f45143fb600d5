"""The training input pipeline, measured beside the step (issue 28; docs/pipeline.md): nnU-Net v2's and MONAI's
augmentation built by their own libraries (and the user's, ``--pipeline mod:fn``), their samples per second on
one CPU core, a DataLoader's scaling over workers, and from those and the committed training step times, the
cores each variant needs per GPU and the expected nnU-Net epoch time. ``python -m harness pipeline``.

Importing this package registers its pipelines with the bench (``harness.bench.loader``), which feeds training
rows through them with ``python -m harness bench --loader``; the bench itself never imports this room."""


def register() -> None:
    from harness.bench.loader import register_pipelines
    from harness.pipeline.pipelines import for_loader

    register_pipelines(for_loader)


register()
