"""The clustering engine: audio in, trained models, metrics and device exports out.

Subpackages, each above the ones before it (``docs/architecture.md`` draws the rules, and
``tests/test_layering.py`` holds them):

- `uvac.audio`: decoding, log-mel, encoders, windows, folders of recordings;
- `uvac.models`: the clustering networks, built by name;
- `uvac.novelty`: the novelty score a trained model carries, its calibration and fitting;
- `uvac.training`: configuration, presets, the training loop and the saved artifact;
- `uvac.evaluation`: inference with a trained model, metrics, baselines, tables;
- `uvac.selection`: the K sweep, its rule, cluster identities across versions;
- `uvac.edge`: distillation, the device model, ONNX export, streaming;
- `uvac.cli`: the ``uvac`` command.

The shared leaves at this level import nothing of the engine but each other: `uvac.errors`,
`uvac.hashing`, `uvac.device` and `uvac.metrics`.
"""
