"""swisscheese.interp: what happens inside the model when it refuses.

- `hooks`: residual-stream hooks and activation capture (point 0 = embeddings, i = output
  of decoder layer i-1), always removed on exit.
- `direction`: the refusal direction (difference of means, layer and position selection).
- `ablation`: directional ablation at inference, as a context manager.
- `orthogonalize`: weight orthogonalization, saved as a new HF directory.
- `analysis`, `study`, `plots`: separation of safe/unsafe/jailbreak activations, the safety
  weight delta, cosines of directions across checkpoints, and their report.

Submodules import torch inside their functions; importing this package stays light.
"""
