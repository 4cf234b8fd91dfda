"""swisscheese.whitebox: attacks that need the model's weights or gradients.

- `gcg`: Greedy Coordinate Gradient adversarial suffixes (Zou et al. 2023).
- `embedding`: continuous embedding-space attacks.

Submodules import torch inside their functions; importing this package stays light.
"""
