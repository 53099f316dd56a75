"""The memory each participant-level node declares (``mem_gb``), from measurements.

``benchmarks/node_memory.py`` runs every node of the participant workflow alone in a fresh
process on a ~1 mm whole head (SyN, a 12-SNP model with the default channels, gradient
saliency) and reads its peak resident memory from the kernel, the interpreter and its
imports (0.23 GB) included; ``benchmarks/results/node_memory.json`` (1 mm model grid) and
``node_memory_2mm.json`` hold the numbers. A node declares its peak times
:data:`MARGIN`, rounded up to a quarter GB, so that Nipype's scheduler (``--mem-gb``)
runs only as many nodes at once as the memory holds.

The anatomical nodes' memory follows the size of the input image (measured on a
176 x 238 x 169 ~1 mm head; a 0.7 mm head needs about three times the voxels), the
scoring and saliency nodes' the model grid: ``a + b / resolution^3`` GB, fitted to the
1 mm and 2 mm measurements.
"""

from __future__ import annotations

import math

#: Declared memory = measured peak x MARGIN (rounded up to 0.25 GB).
MARGIN = 1.25
#: Peak resident memory (GB) measured at 1 mm (benchmarks/results/node_memory.json).
MEASURED_GB = {
    "load_t1w": 0.233, "head_mask": 0.330, "n4": 0.741, "register_head": 0.489,
    "register_brain": 0.527, "register_syn": 0.527, "invert_affine": 0.257,
    "mask_coarse": 0.751, "refine_coarse": 0.241, "mask_final": 0.776,
    "refine_final": 0.245, "input_brain_mask": 0.245, "deepbet_mask": 1.171,
    "atropos": 0.880, "tissue_dseg": 0.494, "warp_atlas": 0.800, "idps": 0.645,
    "model_grid": 0.722, "plausibility": 0.319, "composite_t1w2tpl": 0.321,
    "composite_tpl2t1w": 0.321, "saliency_native": 0.815,
    # measured alone (/usr/bin/time, a 2 mm SyN field of 99 x 117 x 95), not by the benchmark
    "model_logjacobian": 0.441,
}
#: Nodes whose memory follows the model grid: (a, b) of ``a + b / resolution^3`` GB,
#: from the 1 mm and 2 mm measurements (score 1.533 / 0.456 GB, saliency 2.509 / 0.723).
GRID_SCALED_GB = {"score": (0.302, 1.231), "saliency": (0.468, 2.041)}


def node_mem_gb(name: str, resolution: float = 1.0) -> float:
    """The ``mem_gb`` a participant-level node declares.

    Parameters
    ----------
    name : str
        The node's name in :func:`bgs_app.workflows.init_anat_preproc_wf` or
        :func:`bgs_app.workflows.scores.init_bgs_scores_wf`.
    resolution : float
        Model-grid spacing (mm): scales the scoring and saliency nodes.

    Returns
    -------
    float
        GB, a multiple of 0.25.
    """
    if name in GRID_SCALED_GB:
        a, b = GRID_SCALED_GB[name]
        peak = a + b / float(resolution) ** 3
    else:
        peak = MEASURED_GB[name]
    return math.ceil(peak * MARGIN * 4) / 4
