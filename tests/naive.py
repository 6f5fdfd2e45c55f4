"""Plain-loop oracles written straight from the definitions, in float64.

Slow on purpose: every kernel of every backend is checked against these. Each section belongs
to one op family; keep forward and backward side by side.
"""

import numpy as np

# ---------------------------------------------------------------- convolution

# ---------------------------------------------------------------- pooling

# ---------------------------------------------------------------- local response normalization
