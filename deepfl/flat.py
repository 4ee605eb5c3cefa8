"""One flat vector per model state: the unit in which updates travel from clients to the server.

The vector concatenates, in ``state_dict`` order, every floating-point entry of the model state:
the parameters AND the floating BatchNorm buffers (running mean / variance), as the released code
aggregates them ("BatchNorm buffers included", ALGORITHMS.md). Integer buffers
(``num_batches_tracked``) are bookkeeping, not aggregated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class StateLayout:
    """Names, shapes and offsets of the floating state entries of one model architecture."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    offsets: tuple[int, ...]
    size: int

    @classmethod
    def of(cls, model: nn.Module) -> StateLayout:
        names, shapes, offsets, total = [], [], [], 0
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                names.append(name)
                shapes.append(tensor.shape)
                offsets.append(total)
                total += tensor.numel()
        return cls(tuple(names), tuple(shapes), tuple(offsets), total)

    def slice_of(self, prefix: str) -> slice:
        """Coordinates of all entries whose name starts with ``prefix`` (must be contiguous)."""
        hits = [i for i, name in enumerate(self.names) if name.startswith(prefix)]
        if not hits or hits != list(range(hits[0], hits[-1] + 1)):
            raise ValueError(
                f"no contiguous state entries start with {prefix!r}; names: {', '.join(self.names)}"
            )
        last = hits[-1]
        return slice(self.offsets[hits[0]], self.offsets[last] + self.shapes[last].numel())


class FlatState:
    """Read and write a model's floating state as one vector, without copying the model."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layout = StateLayout.of(model)
        state = model.state_dict(keep_vars=True)
        self._tensors = [state[name] for name in self.layout.names]

    def get(self) -> torch.Tensor:
        """Return a fresh (d,) vector holding the model's current floating state."""
        with torch.no_grad():
            return torch.cat([t.detach().reshape(-1) for t in self._tensors])

    def set(self, vector: torch.Tensor) -> None:
        """Copy ``vector`` (d,) into the model's floating state entries in place."""
        if vector.shape != (self.layout.size,):
            raise ValueError(
                f"state vector must have shape ({self.layout.size},), got {tuple(vector.shape)}"
            )
        with torch.no_grad():
            for tensor, offset, shape in zip(
                self._tensors, self.layout.offsets, self.layout.shapes, strict=True
            ):
                tensor.copy_(vector[offset : offset + shape.numel()].view(shape))

    def output_layer_slice(self) -> slice:
        """Coordinates of the model's ``output_layer`` (weight and bias) inside the vector."""
        output = self.model.output_layer  # type: ignore[attr-defined]
        for name, module in self.model.named_modules():
            if module is output:
                return self.layout.slice_of(name + ".")
        raise ValueError("model.output_layer is not a submodule of the model")
