"""Augmentation of training batches (random crops of the 4-padded image, horizontal flips): checked
against crops and flips done by hand from the same draws; seeded; recorded in the run."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ticketlab.data.augment import CROP_PADDING, crop_flip


def test_crop_flip_equals_hand_cropped_and_flipped_images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 6, generator=g)
    out = crop_flip(x, (3, 8, 6), torch.Generator().manual_seed(7))
    draws = torch.Generator().manual_seed(7)  # the same draws, in the documented order
    offsets = torch.randint(0, 2 * CROP_PADDING + 1, (16, 2), generator=draws)
    flips = torch.randint(0, 2, (16,), generator=draws)
    for i in range(16):
        padded = F.pad(x[i], (4, 4, 4, 4))
        r, c = int(offsets[i, 0]), int(offsets[i, 1])
        crop = padded[:, r : r + 8, c : c + 6]
        assert torch.equal(out[i], crop.flip(2) if flips[i] else crop), i
    assert 0 < int(flips.sum()) < 16 and len({tuple(o.tolist()) for o in offsets}) > 8  # the draws vary
    # images given as rows of pixels come back as rows, augmented alike
    rows = crop_flip(x.flatten(1), (3, 8, 6), torch.Generator().manual_seed(7))
    assert torch.equal(rows, out.flatten(1))


def test_a_run_with_augmentation_is_seeded_and_differs(mnist):
    from ticketlab.core.seeds import generator
    from ticketlab.nets.specs import get_net, init_weights
    from ticketlab.training.loop import train_cohort
    from ticketlab.training.schedule import MemberStart, Recipe, Schedule

    spec = get_net("fc")
    start = [MemberStart(init_weights(spec, generator(0, "init")))]

    def run(augment, seed=0):
        return train_cohort(spec, mnist, start, Schedule(20, 1.2e-3, eval_every=20, recipe=Recipe(augment=augment)), seed=seed)[0]

    plain, a, b, other = run("none"), run("crop_flip"), run("crop_flip"), run("crop_flip", seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a.final_weights, b.final_weights)) and a.history == b.history
    assert not torch.equal(a.final_weights[0], plain.final_weights[0])
    assert not torch.equal(a.final_weights[0], other.final_weights[0])
