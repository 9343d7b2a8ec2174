"""The optional torch.compile path (AUSMModel.compile_modules): same outputs, same checkpoint names.

The ``eager`` backend runs dynamo's tracing (graph capture, guards, recompiles on a new object count)
without inductor's code generation, which takes minutes on the CI machine; the inductor speed is
measured by ``ausm bench stream --compile`` (docs/PERFORMANCE.md)."""
from __future__ import annotations

import numpy as np
import pytest

from ausm.errors import InputError
from ausm.train.finetune import finetune_on_prompt
from ausm.inference import propagate

from conftest import box_mask, make_model


def test_compiled_model_streams_the_same(frames):
    plain, compiled = make_model(0), make_model(0).compile_modules(backend="eager")
    assert list(plain.state_dict()) == list(compiled.state_dict())
    prompts = {0: {1: box_mask(48, 80, 10, 30, 20, 50)}, 2: {4: box_mask(48, 80, 30, 44, 5, 25)}}
    a = list(propagate(plain, frames, prompts, detect_new_objects=True))
    b = list(propagate(compiled, frames, prompts, detect_new_objects=True))
    for ra, rb in zip(a, b):
        assert ra.obj_ids == rb.obj_ids
        assert np.array_equal(ra.index_mask, rb.index_mask)
        np.testing.assert_allclose(ra.scores, rb.scores, atol=1e-5)


def test_compiled_model_cannot_be_fine_tuned(frames):
    model = make_model(0).compile_modules(backend="eager")
    with pytest.raises(InputError, match="compile"):
        finetune_on_prompt(model, frames[0], {1: box_mask(48, 80, 10, 30, 20, 50)})
