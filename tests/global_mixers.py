"""The mixers that tests/test_global_partners.py runs with ``partner_scope="global"`` (shared by its DDP script)."""

from __future__ import annotations

from collections.abc import Callable

from lightning_mixup import CutMix, FMix, MixingCallback, MixUp, RandomChoice
from lightning_mixup.methods import get

SEED = 5
COUNTS = (120, 100, 80, 60, 50, 40, 30, 20, 15, 10)  # Remix's class counts (10 digits)

GLOBAL_MIXERS: dict[str, Callable[[], MixingCallback]] = {
    name: (lambda name=name: get(name).make(per_sample=True, seed=SEED, partner_scope="global"))
    for name in ("mixup", "cutmix", "fmix", "resizemix", "saliencymix", "gridmix", "smoothmix")
}
GLOBAL_MIXERS["manifold_mixup"] = lambda: get("manifold_mixup").make(per_sample=True, seed=SEED, partner_scope="global")
GLOBAL_MIXERS["remix"] = lambda: get("remix").make(class_counts=COUNTS, seed=SEED, partner_scope="global")
GLOBAL_MIXERS["cutmix_pair"] = lambda: CutMix(per_sample=True, targets="pair", seed=SEED, partner_scope="global")
GLOBAL_MIXERS["random_choice"] = lambda: RandomChoice(
    [MixUp(), CutMix(per_sample=True), FMix()], seed=SEED, partner_scope="global"
)
# the methods whose mix depends on the model (hidden states, saliency, CAMs): they run with global partners and give
# valid targets; their exact oracle needs the model of each step, so only the targets' form is checked
MODEL_MIXERS: dict[str, Callable[[], MixingCallback]] = {
    name: (lambda name=name: get(name).make(seed=SEED, partner_scope="global"))
    for name in ("patchup", "alignmix", "puzzlemix", "comixup", "snapmix")
}
