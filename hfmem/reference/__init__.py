"""reference: published formulas mirrored for comparison, and published measurements; estimates never call them.

* ``zero``: the ZeRO paper's closed forms (arXiv 1910.02054, Figure 1 / Tables 1–2);
* ``deepspeed``: DeepSpeed's ``estimate_zero2/3_model_states_mem_needs`` estimators, operation for operation;
* ``eleuther``: the EleutherAI cookbook's communication-buffer memory;
* ``rlhf``: the back-of-envelope PPO accounting (``seed_static_bytes``);
* ``measurements``: published and measured memory numbers (each with its source), which the tests and
  ``benchmarks/validate.py`` / ``benchmarks/accuracy.py`` compare estimates with.

Nothing under ``hfmem.scenarios``, ``hfmem.plan`` or ``hfmem.api`` imports from here (except the
``rlhf.seed_static_bytes`` re-export kept for old callers): the estimates are hfmem's own accounting, and
these are what they are checked against.
"""

from .deepspeed import (DS_ADDITIONAL_BUFFER_FACTOR, DeepSpeedEstimate, deepspeed_estimate_zero2,
                        deepspeed_estimate_zero3, deepspeed_zero2_table, deepspeed_zero3_table)
from .eleuther import eleuther_communication_bytes
from .rlhf import seed_static_bytes
from .zero import zero_paper_max_params, zero_paper_states

__all__ = ["DS_ADDITIONAL_BUFFER_FACTOR", "DeepSpeedEstimate", "deepspeed_estimate_zero2", "deepspeed_estimate_zero3",
           "deepspeed_zero2_table", "deepspeed_zero3_table", "eleuther_communication_bytes", "seed_static_bytes",
           "zero_paper_max_params", "zero_paper_states"]
