"""Every zoo model (``corenet.models.available_models()``) exports, passes ``onnx.checker`` and runs in
onnxruntime with corenet's ``predict`` outputs (every output: GoogLeNet's auxiliary heads too) within
1e-4 relative (float32), at a fixed random input, batch 1, at opsets 13 and 17.

Kept fast for CI (2 cores): each model is built once, at the smallest input its architecture accepts
*and* exports (CIFAR models 32x32; ResNets, DenseNets, SE-ResNet, MobileNet 32x32; GoogLeNet 64x64,
where its auxiliary heads' 4x4 adaptive pooling is still a plain window; Xception 71x71 and ZFNet 63x63,
their smallest; AlexNet and VGG 224x224, the
only size at which their 6x6 / 7x7 adaptive pooling is one window, since ONNX has no adaptive pooling),
and onnxruntime runs on 2 intra-op threads. About 40 s in all on 2 cores, most of it the four VGGs'
133-144 M parameters (500+ MB files) written and loaded at both opsets.
Batch norm gets non-trivial running statistics so that the eval-mode graph is tested for real.
"""

import numpy as np
import pytest

import corenet
from corenet import models

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'corenet[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (it is in the test extra)")

SIZES = {"googlenet": 64, "alexnet": 224, "vgg11": 224, "vgg13": 224, "vgg16": 224, "vgg19": 224,
         "lenet5": 28, "xception": 71, "zfnet": 63}          # everything else: 32x32
EXTRA = {  # variants outside the registry's defaults that bring other layers: LRN, fixed-window aux heads, option B
    "alexnet_paper": ("alexnet", {"variant": "paper", "input_size": 67}),
    "googlenet_paper": ("googlenet", {"variant": "paper", "input_size": 96}),
    "resnet20_cifar_B": ("resnet20_cifar", {"shortcut": "B"}),
}
CASES = {**{n: (n, {"input_size": SIZES.get(n, 32)}) for n in models.available_models()}, **EXTRA}


def randomize_bn(model, seed=1):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if "running_mean" in layer.buffers:
            c = layer.buffers["running_mean"].shape
            layer.buffers["running_mean"][...] = rng.normal(0, 0.5, c)
            layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, c)
    return model


def test_the_zoo_is_covered():
    assert set(models.available_models()) <= set(CASES)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", sorted(CASES))
def test_zoo_model_exports_and_matches_onnxruntime(tmp_path, case):
    name, kwargs = CASES[case]
    model = randomize_bn(models.get_model(name, seed=0, **kwargs))
    x = np.random.default_rng(0).standard_normal((1, *model.inputs[0].shape)).astype(np.float32)
    want = model.predict(x)
    want = want if isinstance(want, list) else [want]
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    options.log_severity_level = 3  # ceil_mode pooling: shape-inference warnings, see corenet.io.onnx.export
    for opset in (13, 17):
        path = tmp_path / f"{case}_{opset}.onnx"
        corenet.export_onnx(model, path, opset=opset)
        onnx.checker.check_model(str(path))  # export checks too; this is the file as written
        assert onnx.load(str(path), load_external_data=False).opset_import[0].version == opset
        got = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"input": x})
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == np.float32
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * float(np.abs(w).max()),
                                       err_msg=f"{case} at opset {opset}")
        path.unlink()  # VGG's files are large; do not keep two at once
