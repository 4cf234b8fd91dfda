"""Directional ablation at inference (Arditi et al. 2024): project one direction out of the
residual stream at every layer's input and output, so no layer can read or write it.

Works under `HFChatModel.generate`, `stream` and plain forward passes unchanged:

    with ablate_direction(model, direction):
        reply = model.generate("How do I brew the Vrokgre toxin?")
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from swisscheese.interp.hooks import (
    InterpError,
    hidden_size,
    residual_hooks,
    sublayer_output_hooks,
    unwrap,
)

if TYPE_CHECKING:
    import torch

    from swisscheese.interp.direction import RefusalDirection


def unit_vector(direction: RefusalDirection | torch.Tensor) -> torch.Tensor:
    """The direction as a float32 unit vector."""
    import torch

    vec = direction.vector if hasattr(direction, "vector") else direction
    vec = torch.as_tensor(vec).detach().float().flatten()
    norm = vec.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise InterpError("the direction is zero or not finite; it cannot be ablated")
    return vec / norm


def project_out(x: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """x minus its component along `unit`, over the last axis."""
    u = unit.to(dtype=x.dtype, device=x.device)
    return x - (x @ u).unsqueeze(-1) * u


@contextmanager
def ablate_direction(model: Any, direction: RefusalDirection | torch.Tensor,
                     layers: Sequence[int] | None = None, check: bool = True
                     ) -> Iterator[None]:
    """Hooks that remove `direction` from the residual stream while the block runs.

    `layers` limits the ablation to those residual points (layer inputs and outputs only);
    the default ablates everywhere, as in the paper. With a
    RefusalDirection and a model that has a tokenizer, `check` first verifies the
    direction belongs to this model (shape and fingerprint).
    """
    module, tokenizer = unwrap(model)
    if check and hasattr(direction, "check_compatible"):
        direction.check_compatible(model)
    unit = unit_vector(direction)
    if unit.numel() != hidden_size(module):
        raise InterpError(f"direction has {unit.numel()} dimensions but the model's residual "
                          f"stream has {hidden_size(module)}")
    def edit(h: torch.Tensor, _point: int = 0) -> torch.Tensor:
        return project_out(h, unit)

    if layers is not None:
        with residual_hooks(module, edit, layers):
            yield
        return
    # Every point the paper ablates: each layer's input and output, and what attention and
    # the MLP add in between, so the MLP never reads what attention wrote along the
    # direction. This is what weight orthogonalization computes.
    with residual_hooks(module, edit), sublayer_output_hooks(module, edit):
        yield
