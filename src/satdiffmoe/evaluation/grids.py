"""PNG sample grids: one row per scene, columns LR_1..LR_k, bicubic, output, uncertainty, HR."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import torch


def _show(axis, image: torch.Tensor, title: str, cmap: str | None = None) -> None:
    image = image.detach().float().cpu()
    if cmap is None:  # [-1, 1] bands: first three as RGB, one band as grey
        image = ((image[:3] + 1) / 2).clamp(0, 1)
        axis.imshow(image.permute(1, 2, 0).numpy() if image.shape[0] == 3 else image[0].numpy(),
                    cmap=None if image.shape[0] == 3 else "gray", interpolation="nearest")
    else:
        axis.imshow(image[0].numpy(), cmap=cmap, interpolation="nearest")
    axis.set_title(title, fontsize=7)
    axis.axis("off")


def save_grid(path: str | Path, lr: torch.Tensor, lr_valid: torch.Tensor, bicubic: torch.Tensor,
              output: torch.Tensor, hr: torch.Tensor, uncertainty: torch.Tensor | None = None,
              max_lr: int = 4) -> Path:
    """Write the grid for B scenes (lr B×N×C×h×w; images B×C×H×W; uncertainty B×1×H×W)."""
    # as many LR columns as the fullest scene has valid LRs: the batch pads N to its longest scene
    # (or to data.max_lr), and padded slots would be empty columns
    scenes = output.shape[0]
    columns_lr = max(1, min(max_lr, int(lr_valid[:scenes].sum(1).max())))
    columns = columns_lr + 3 + (uncertainty is not None)
    figure, axes = plt.subplots(scenes, columns, figsize=(1.6 * columns, 1.7 * scenes), squeeze=False)
    for row in range(scenes):
        valid = [i for i in range(lr.shape[1]) if lr_valid[row, i]][:columns_lr]
        panels = [(lr[row, i], f"LR {i + 1}") for i in valid] + [None] * (columns_lr - len(valid))
        panels += [(bicubic[row], "bicubic"), (output[row], "output")]
        for axis, panel in zip(axes[row], panels):
            if panel is None:
                axis.axis("off")
            else:
                _show(axis, *panel)
        if uncertainty is not None:
            _show(axes[row, -2], uncertainty[row], "uncertainty", cmap="magma")
        _show(axes[row, -1], hr[row], "HR")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
