"""RD4AD (Deng & Li, CVPR 2022): reverse distillation from a frozen encoder.

ReContrast with its ingredients switched off, as hq-deng/RD4AD ``main.py`` trains it: a frozen
encoder (BatchNorm in eval mode), one view, a decoder WITHOUT output heads (its three layers' raw
outputs are the reconstructions), no hard mining, the global cosine loss (``loss_fucntion``: each
sample's C*H*W map is one vector); one Adam optimiser (lr 0.005, betas (0.5, 0.999), no weight
decay) for the bottleneck and decoder; 200 epochs of batch 16 with the last incomplete batch kept
(``DataLoader(..., shuffle=True)``); no gradient clipping. The anomaly map sums 1 - cos over the 3
(encoder, decoder) pairs, smoothed with σ = 4; the image score is its max (``test.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from medrecontrast.models.base import ADER_UNI_MEDICAL, BMAD_TABLE2, register_detector
from medrecontrast.models.recontrast import (
    DEMO_SCHEDULE,
    LITE_SCHEDULE,
    TINY_SCHEDULE,
    ReContrast,
    ReContrastConfig,
)

RD4AD_EPOCHS = 200
RD4AD_BATCH_SIZE = 16


@dataclass(kw_only=True)
class RD4ADConfig(ReContrastConfig):
    iters: int | None = None
    epochs: int | None = RD4AD_EPOCHS
    batch_size: int = RD4AD_BATCH_SIZE
    optimizer: str = "adam"
    lr_decoder: float = 0.005
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    encoder_bn_train: bool = False
    two_views: bool = False
    train_encoder: bool = False
    hard_mining_factor: float = 1.0


# BMAD's Table 2 (DorisBao/BMAD imgs/table.png, commit 146a04c; the image of the CVPR-W paper's table), mean of
# BMAD's runs in percent, keyed by this suite's tasks for its benchmarks (PRO: anomalib's dataset-level AUPRO)
PAPER_RESULTS = {
    "bmad:brain": {"image_auroc": 89.38, "pixel_auroc": 96.54, "aupro": 85.86},
    "bmad:liver": {"image_auroc": 60.02, "pixel_auroc": 95.86, "aupro": 90.13},
    "bmad:retina": {"image_auroc": 87.53, "pixel_auroc": 96.17, "aupro": 85.78},
    "bmad:oct": {"image_auroc": 97.24},
    "bmad:chest": {"image_auroc": 67.53},
    "bmad:histopathology": {"image_auroc": 66.59},
    # ADer's "RD" (its re-implementation) on Uni-Medical, the class mean (mAU-ROC_I, mAP_I, mAU-ROC_P, mAP_P,
    # mAU-PRO_R); 300 epochs: 76.4, 75.8, 96.4, 38.9, 86.5
    "uni-medical": {"image_auroc": 76.1, "image_ap": 75.7, "pixel_auroc": 96.5, "pixel_ap": 38.8, "aupro": 86.8},
}


@register_detector("rd4ad")
class RD4AD(ReContrast):
    Config = RD4ADConfig
    card = ReContrast.card.but(
        display_name="RD4AD",
        order=1,
        # demo, lite, tiny: the same short schedules as ReContrast instead of RD4AD's 200 epochs
        profile_options={
            name: {**schedule, "epochs": None}
            for name, schedule in (("demo", DEMO_SCHEDULE), ("lite", LITE_SCHEDULE), ("tiny", TINY_SCHEDULE))
        },
        reference=False,
        citation=(
            "Deng & Li, Anomaly detection via reverse distillation from one-class embedding, CVPR 2022; "
            "code github.com/hq-deng/RD4AD"
        ),
        paper_results=PAPER_RESULTS,
        paper_sources={**dict.fromkeys(PAPER_RESULTS, BMAD_TABLE2), "uni-medical": ADER_UNI_MEDICAL},
        random_weights_caveat="",
    )

    @classmethod
    def task_options(cls, task) -> dict:
        """None: RD4AD's main.py trains every task with the same settings (RD4ADConfig's defaults)."""
        return {}
