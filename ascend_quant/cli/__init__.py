"""The command-line interface: a thin layer that parses flags, calls the library and prints.

One process-wide setting, made here because it must precede NumPy's first import: OpenBLAS
uses one thread. The tool's BLAS calls are vector dot products (compare's metrics); on two
cores at a load average of 6, two BLAS threads made them 3-5x slower (0.9 vs 0.2 s for the 12
comparisons of a 128x128 build). An explicit OPENBLAS_NUM_THREADS in the environment wins.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
