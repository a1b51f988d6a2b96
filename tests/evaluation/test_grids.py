"""The eval grid: one column per valid LR of the fullest scene, never empty padded columns."""

import torch
from PIL import Image

from satdiffmoe.evaluation.grids import save_grid


def test_padded_lr_slots_get_no_column(tmp_path):
    lr = torch.zeros(2, 4, 3, 4, 4)
    lr_valid = torch.tensor([[True, True, True, False], [True, True, False, False]])  # N = 3 at most
    images = torch.zeros(2, 3, 16, 16)
    three = save_grid(tmp_path / "three.png", lr, lr_valid, images, images, images)
    four = save_grid(tmp_path / "four.png", lr, torch.ones(2, 4, dtype=torch.bool), images, images, images)
    # 3 LR + bicubic + output + HR = 6 columns of 1.6 inch at 100 dpi, against 7 when 4 LRs are valid
    assert Image.open(three).size[0] == 6 * 160 and Image.open(four).size[0] == 7 * 160
