"""`OnnxModel`: MLServer's MLModel interface over one onnxruntime session, as a user would write it.

Loaded by MLServer from `implementation: mlserver_onnx.runtime.OnnxModel` with `bench/` on
PYTHONPATH; it imports mlserver, so only MLServer's virtualenv can import it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

# MLServer is installed only in its own virtualenv (bench/.cache/mlserver-venv), not in ours.
from mlserver import MLModel  # type: ignore[import-not-found]
from mlserver.codecs import NumpyCodec  # type: ignore[import-not-found]
from mlserver.types import (  # type: ignore[import-not-found]
    InferenceRequest,
    InferenceResponse,
    ResponseOutput,
)
from mlserver.utils import get_model_uri  # type: ignore[import-not-found]

OUTPUTS = ["label", "probabilities"]


class OnnxModel(MLModel):  # type: ignore[misc]  # MLModel is Any without mlserver
    """One tensor per graph input in; `label` and `probabilities` out, like our V2 route."""

    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        uri = await get_model_uri(self._settings, wellknown_filenames=["model.onnx"])
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._types = {node.name: node.type for node in self._session.get_inputs()}
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {tensor.name: self._array(tensor) for tensor in payload.inputs}
        label, probabilities = self._session.run(OUTPUTS, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                ResponseOutput(
                    name="label",
                    datatype="INT64",
                    shape=list(label.shape),
                    data=label.tolist(),
                ),
                NumpyCodec.encode_output("probabilities", probabilities),
            ],
        )

    def _array(self, tensor: Any) -> npt.NDArray[Any]:
        data = tensor.data.root if hasattr(tensor.data, "root") else tensor.data
        if self._types[tensor.name] == "tensor(string)":
            values = [v.decode() if isinstance(v, bytes) else v for v in data]
            return np.array(values, dtype=object).reshape(-1, 1)
        return np.asarray(data, dtype=np.float32).reshape(-1, 1)
