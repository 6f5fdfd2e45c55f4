"""Path-choice threshold shared by the CPU convolution (``_cpu_conv.py``) and the CUDA one (``cuda/conv.py``).

A grouped convolution takes a direct kernel when a group has fewer input or output channels than
``DIRECT_MAX_GROUP_CHANNELS``: a GEMM (BLAS on the CPU, a shared-memory tile on the GPU) with so few
rows or so short an inner dimension runs far below speed, or is mostly padding.
"""

DIRECT_MAX_GROUP_CHANNELS = 16
