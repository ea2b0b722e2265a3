"""Forward hooks that capture intermediate activations of an unmodified model by module path."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class FeatureTap:
    """Records the output of each named submodule (e.g. ``layer3``) on every forward pass.

    The model itself is untouched: ``features`` is filled by hooks and read after the forward.
    """

    def __init__(self, model: nn.Module, paths: Sequence[str], config_key: str = "method.stages") -> None:
        self.paths = list(paths)
        self.features: dict[str, Tensor] = {}
        self._handles = []
        self._modules: list[nn.Module] = []
        for path in self.paths:
            try:
                self._modules.append(model.get_submodule(path))
            except AttributeError:
                available = [name for name, _ in model.named_children()]
                raise ValueError(
                    f"{config_key}: {path!r} is not a submodule of {type(model).__name__}; "
                    f"top-level modules are {available} (nested paths like 'layer3.1' also work)"
                ) from None
        self.attach()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> None:
        """Register the hooks (again, after :meth:`remove`); a no-op while they are registered."""
        if not self._handles:
            self._handles = [
                module.register_forward_hook(self._hook(path)) for path, module in zip(self.paths, self._modules)
            ]

    def _hook(self, path: str):
        def record(_module: nn.Module, _inputs, output: Tensor) -> None:
            self.features[path] = output

        return record

    def pop(self) -> dict[str, Tensor]:
        """The features of the last forward pass; clears them so stale maps are never reused.

        Maps recorded under ``torch.inference_mode`` (the frozen teacher's) come back as normal
        tensors, so a loss may save them for its backward pass.
        """
        missing = [p for p in self.paths if p not in self.features]
        if missing:
            raise RuntimeError(f"no activation captured for {missing}: was the model called?")
        out, self.features = self.features, {}
        return {path: f.clone() if f.is_inference() else f for path, f in out.items()}

    def remove(self) -> None:
        """Unregister the hooks: the model runs as if never tapped."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.features.clear()
