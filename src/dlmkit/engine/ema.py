"""Exponential moving average of the weights, the usual inference weights of diffusion models."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EMA:
    """Shadow copy of ``module``'s floating-point parameters: ema <- d * ema + (1 - d) * param."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow: dict[str, Tensor] = {n: p.detach().clone() for n, p in module.named_parameters()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for name, p in module.named_parameters():
            self.shadow[name].lerp_(p.detach(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load full tensors (sharded again where the shadow is an FSDP DTensor)."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        for name, tensor in state.items():
            own = self.shadow[name]
            if isinstance(own, DTensor):
                tensor = distribute_tensor(tensor.to(own.device), own.device_mesh, own.placements)
            own.copy_(tensor)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite ``module``'s parameters with the averages."""
        for name, p in module.named_parameters():
            p.copy_(self.shadow[name])
