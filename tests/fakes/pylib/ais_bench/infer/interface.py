"""Stand-in for ais_bench's Python API, `ais_bench.infer.interface.InferSession` (tests only).

Loaded into the test process by `fakes.cann.use_aisbench_python_api`. The same rules as the
`python -m ais_bench` stand-in: no visible NPU, an om without the IMOD header, or one built for
another soc fails to load (RuntimeError, as aclruntime raises); the i-th inference of a session
returns the byte pattern the command line writes for its i-th sample, so comparing in-process and
comparing through files see the same numbers.
"""

import math

import fakecann
import numpy as np


class _Desc:
    """A tensor description as aclruntime gives it (name, datatype enum, shape with -1)."""

    def __init__(self, spec):
        self.name = spec["name"]
        self.datatype = "dtype." + spec["dtype"]
        self.shape = [d if isinstance(d, int) and d > 0 else -1 for d in spec["shape"]]


class InferSession:
    def __init__(self, device_id, model_path):
        soc = fakecann.npu_soc()
        if soc is None:
            raise RuntimeError("acl init failed: no device (check npu-smi info)")
        info = fakecann.read_om(model_path)
        if info is None:
            raise RuntimeError(f"load model from file failed, model file is {model_path}")
        if info["soc"] != soc:
            raise RuntimeError(
                f"EE1001: ModelCheckCompatibility failed, supported socVersion={soc}, but the "
                f"model socVersion={info['soc']}"
            )
        self.device_id = device_id
        self._inputs = info["inputs"]
        self._outputs = info["outputs"]
        self.index = 0

    def get_inputs(self):
        return [_Desc(s) for s in self._inputs]

    def get_outputs(self):
        return [_Desc(s) for s in self._outputs]

    def infer(self, feeds, mode="static"):
        if len(feeds) != len(self._inputs):
            raise RuntimeError(f"input count {len(feeds)} does not match {len(self._inputs)}")
        values = []
        for k, spec in enumerate(self._outputs):
            dims = [max(int(d), 1) if isinstance(d, int) else 1 for d in spec["shape"]]
            if mode == "dymbatch" and spec["shape"] and not isinstance(spec["shape"][0], int):
                dims[0] = int(np.shape(feeds[0])[0])
            count = math.prod(dims)
            size = fakecann.ITEMSIZE.get(spec["dtype"], 4)
            data = bytes((self.index + k + j) % 251 for j in range(count)) * size
            dtype = "float32" if spec["dtype"] == "float" else spec["dtype"]
            values.append(np.frombuffer(data, dtype=dtype).reshape(dims))
        self.index += 1
        return values

    def free_resource(self):
        pass
