"""The four heads, ``head(task)`` and ``head_for(target)``.

References: the core functions (a head must return exactly their numbers), closed forms written
here (sigmoid(z) - y, argmax, thresholds), torch autograd and torch's own losses, and float64
central finite differences through the (N, 1) reshaping path.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from conftest import library_of, to_backend, to_numpy
from losskit import LossInputError

RNG = np.random.default_rng(3)
N, K = 6, 4


def _fd(f, x, step=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (float(f(up)) - float(f(down))) / (2 * step)
    return grad


# -- heads return the core's numbers --------------------------------------------------------
CORE = [
    ("binary", lambda r: lk.BinaryHead(pos_weight=2.0, label_smoothing=0.1, reduction=r),
     lambda r: lk.BinaryCrossEntropyWithLogits(pos_weight=2.0, label_smoothing=0.1, reduction=r),
     RNG.normal(size=N), RNG.integers(0, 2, N).astype(float)),
    ("multiclass", lambda r: lk.MulticlassHead(K, class_weight=[1, 2, 1, 0.5], label_smoothing=0.1, reduction=r),
     lambda r: lk.SoftmaxCrossEntropy(class_weight=[1, 2, 1, 0.5], label_smoothing=0.1, reduction=r),
     RNG.normal(size=(N, K)), RNG.integers(0, K, N)),
    ("multiclass_ignore", lambda r: lk.MulticlassHead(K, ignore_index=-100, reduction=r),
     lambda r: lk.SoftmaxCrossEntropy(ignore_index=-100, reduction=r),
     RNG.normal(size=(N, K)), np.array([0, -100, 3, 2, -100, 1])),
    ("multilabel", lambda r: lk.MultilabelHead(K, pos_weight=[1, 2, 3, 4], reduction=r),
     lambda r: lk.MultilabelCrossEntropy(pos_weight=[1, 2, 3, 4], reduction=r),
     RNG.normal(size=(N, K)), RNG.integers(0, 2, (N, K)).astype(float)),
    ("regression", lambda r: lk.RegressionHead(3, reduction=r), lambda r: lk.MeanSquaredError(reduction=r),
     RNG.normal(size=(N, 3)), RNG.normal(size=(N, 3))),
]


@pytest.mark.parametrize("case", CORE, ids=[c[0] for c in CORE])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_head_returns_the_core_loss_gradient_and_hessian(case, reduction):
    _, make_head, make_loss, logits, target = case
    head, loss = make_head(reduction), make_loss(reduction)
    weight = RNG.uniform(0.5, 2.0, N)
    np.testing.assert_array_equal(head.loss(logits, target, weight=weight),
                                  loss(logits, target, weight=weight))
    value, grad = head.value_and_grad(logits, target, weight=weight)
    core_value, core_grad = loss.value_and_grad(logits, target, weight=weight)
    np.testing.assert_array_equal(value, core_value)
    np.testing.assert_array_equal(grad, core_grad)
    np.testing.assert_array_equal(head.grad(logits, target), loss.grad(logits, target))
    np.testing.assert_array_equal(head.hessian_diag(logits, target, normalizer=3.0),
                                  loss.hessian_diag(logits, target, normalizer=3.0))


# -- binary ---------------------------------------------------------------------------------
def test_binary_gradient_is_sigmoid_minus_target_over_n():
    z = RNG.normal(size=N)
    y = RNG.integers(0, 2, N)
    _, grad = lk.BinaryHead().value_and_grad(z, y)
    np.testing.assert_allclose(grad, (1 / (1 + np.exp(-z)) - y) / N, rtol=1e-14)


@pytest.mark.parametrize("logits_shape, target_shape", [((N,), (N,)), ((N, 1), (N,)),
                                                        ((N,), (N, 1)), ((N, 1), (N, 1))])
def test_binary_accepts_n_and_n_by_1_alike(logits_shape, target_shape):
    z = RNG.normal(size=N)
    y = RNG.integers(0, 2, N).astype(float)
    head = lk.BinaryHead()
    reference_value, reference_grad = head.value_and_grad(z, y)
    value, grad = head.value_and_grad(z.reshape(logits_shape), y.reshape(target_shape))
    assert grad.shape == logits_shape  # the gradient has the logits' shape
    np.testing.assert_allclose(value, reference_value, rtol=1e-15)
    np.testing.assert_allclose(grad.reshape(-1), reference_grad, rtol=1e-15)
    hess = head.hessian_diag(z.reshape(logits_shape), y.reshape(target_shape))
    assert hess.shape == logits_shape
    assert head.predict(z.reshape(logits_shape)).shape == (N,)
    assert head.predict_proba(z.reshape(logits_shape)).shape == (N,)
    none = lk.BinaryHead(reduction="none").loss(z.reshape(logits_shape), y.reshape(target_shape))
    assert none.shape == (N,)


def test_binary_n_by_1_gradient_matches_finite_differences_and_torch():
    torch = pytest.importorskip("torch")
    z = RNG.normal(size=(N, 1))
    y = RNG.integers(0, 2, N).astype(float)
    weight = RNG.uniform(0.5, 2.0, N)
    head = lk.BinaryHead(pos_weight=1.5)
    _, grad = head.value_and_grad(z, y, weight=weight)
    np.testing.assert_allclose(grad, _fd(lambda x: head.loss(x, y, weight=weight), z), atol=1e-9)
    zt = torch.tensor(z, requires_grad=True)
    # torch's "mean" divides by N, ours by sum(weight): scale to compare the same quantity
    reference = torch.nn.functional.binary_cross_entropy_with_logits(
        zt[:, 0], torch.tensor(y), weight=torch.tensor(weight), pos_weight=torch.tensor(1.5),
        reduction="sum") / weight.sum()
    reference.backward()
    np.testing.assert_allclose(head.loss(z, y, weight=weight), reference.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12)


def test_binary_predict_threshold_and_edges():
    z = np.array([-np.inf, -2.0, -1e-20, 0.0, 1e-20, 1.0, 2.0, np.inf])
    assert lk.BinaryHead().predict(z).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # p > 0.8  <=>  z > log 4 = 1.386...
    assert lk.BinaryHead(threshold=0.8).predict(z).tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
    np.testing.assert_allclose(lk.BinaryHead().predict_proba(np.array([0.0, np.log(3.0)])), [0.5, 0.75])


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, "0.5", None, [0.5]])
def test_binary_threshold_must_be_a_probability(threshold):
    with pytest.raises(LossInputError, match="^threshold:"):
        lk.BinaryHead(threshold=threshold)


def test_binary_pos_weight_is_one_number():
    with pytest.raises(LossInputError, match="^pos_weight: expected a number"):
        lk.BinaryHead(pos_weight=[1.0, 2.0])


def test_binary_encode_and_decode_other_labels():
    head = lk.BinaryHead(classes=["ham", "spam"])
    assert head.encode(np.array(["spam", "ham"])).tolist() == [1.0, 0.0]
    assert head.decode(head.predict(np.array([3.0, -3.0]))).tolist() == ["spam", "ham"]
    signed = lk.BinaryHead(classes=[-1, 1])
    assert signed.encode(np.array([1, -1, 1])).tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(LossInputError, match="^target: expected labels among classes"):
        signed.encode(np.array([1, 0]))
    with pytest.raises(LossInputError, match="^classes: expected the two class labels"):
        lk.BinaryHead(classes=["a", "b", "c"])


# -- multi-class -----------------------------------------------------------------------------
def test_multiclass_predict_is_argmax_first_of_ties_and_proba_is_softmax():
    z = np.array([[0.1, 2.0, -1.0, 2.0], [3.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    head = lk.MulticlassHead(K)
    assert head.predict(z).tolist() == [1, 0, 0]
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(head.predict_proba(z), expected, rtol=1e-14)
    np.testing.assert_allclose(head.activation(z).sum(axis=1), 1.0, rtol=1e-15)


def test_multiclass_checks_the_units():
    head = lk.MulticlassHead(K)
    with pytest.raises(LossInputError, match=r"^logits: expected 4 output unit\(s\).*got shape \(2, 3\)"):
        head.loss(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(LossInputError, match="^logits: expected 4 output unit"):
        head.predict(np.zeros((2, 5)))


def test_multiclass_class_axis_option():
    z = RNG.normal(size=(2, K, 3))  # [batch, classes, positions]
    y = RNG.integers(0, K, (2, 3))
    head = lk.MulticlassHead(K, axis=1)
    np.testing.assert_array_equal(head.predict(z), np.argmax(z, axis=1))
    np.testing.assert_allclose(head.loss(z, y), lk.softmax_cross_entropy(np.moveaxis(z, 1, -1), y), rtol=1e-15)
    assert head.grad(z, y).shape == z.shape


def test_multiclass_matches_torch_cross_entropy_with_smoothing():
    torch = pytest.importorskip("torch")
    z = RNG.normal(size=(N, K))
    y = RNG.integers(0, K, N)
    zt = torch.tensor(z, requires_grad=True)
    reference = torch.nn.functional.cross_entropy(zt, torch.tensor(y), label_smoothing=0.2)
    reference.backward()
    value, grad = lk.MulticlassHead(K, label_smoothing=0.2).value_and_grad(z, y)
    np.testing.assert_allclose(value, reference.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12, atol=1e-17)


def test_multiclass_encode_labels_one_hot_and_probabilities():
    head = lk.MulticlassHead(classes=["b", "a", "c"])
    assert head.units == 3 and head.n_classes == 3
    assert head.encode(["c", "b", "a"]).tolist() == [2, 0, 1]
    assert head.decode(np.array([1, 2])).tolist() == ["a", "c"]
    plain = lk.MulticlassHead(3)
    assert plain.encode([0, 2]).tolist() == [0, 2]
    assert plain.encode(np.eye(3, dtype=np.int64)[[2, 0]]).tolist() == [2, 0]
    probs = np.array([[0.2, 0.3, 0.5]])
    assert plain.encode(probs) is probs
    indices = np.array([[0, 1, 2], [2, 2, 0]])  # a [B, T] batch of indices with T == K: not one-hot
    assert plain.encode(indices) is indices
    with pytest.raises(LossInputError, match="^target: expected class indices, or labels with classes"):
        plain.encode(["a", "b"])


def test_multiclass_needs_its_number_of_classes():
    with pytest.raises(LossInputError, match="^n_classes: expected an int >= 2"):
        lk.MulticlassHead()
    with pytest.raises(LossInputError, match="^n_classes: expected an int >= 2"):
        lk.MulticlassHead(1)
    with pytest.raises(LossInputError, match="^n_classes: expected 2"):
        lk.MulticlassHead(3, classes=["a", "b"])


# -- multi-label -----------------------------------------------------------------------------
def test_multilabel_per_label_threshold():
    z = np.array([[0.1, 1.0, -1.0], [-0.1, 3.0, -2.0]])
    head = lk.MultilabelHead(3, threshold=[0.5, 0.9, 0.2])
    # sigmoid(z) = [[.525, .731, .269], [.475, .953, .119]]
    assert head.predict(z).tolist() == [[1, 0, 1], [0, 1, 0]]
    np.testing.assert_allclose(head.predict_proba(z), 1 / (1 + np.exp(-z)), rtol=1e-14)
    with pytest.raises(LossInputError, match=r"^threshold: expected a probability or 3 of them"):
        lk.MultilabelHead(3, threshold=[0.5, 0.5])


def test_multilabel_loss_is_the_sum_over_labels_of_torch_bce_averaged_over_rows():
    torch = pytest.importorskip("torch")
    z = RNG.normal(size=(N, K))
    y = RNG.integers(0, 2, (N, K)).astype(float)
    zt = torch.tensor(z, requires_grad=True)
    per_label = torch.nn.functional.binary_cross_entropy_with_logits(zt, torch.tensor(y), reduction="none")
    reference = per_label.sum(dim=1).mean()
    reference.backward()
    value, grad = lk.MultilabelHead(K).value_and_grad(z, y)
    np.testing.assert_allclose(value, reference.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12)


def test_multilabel_encode_casts_labels_to_float():
    encoded = lk.MultilabelHead(2).encode(np.array([[True, False]]))
    assert encoded.dtype.kind == "f" and encoded.tolist() == [[1.0, 0.0]]


# -- regression -----------------------------------------------------------------------------
@pytest.mark.parametrize("pred_shape, target_shape", [((N,), (N,)), ((N, 1), (N,)), ((N,), (N, 1))])
def test_regression_single_output_shapes(pred_shape, target_shape):
    pred = RNG.normal(size=N)
    target = RNG.normal(size=N)
    value, grad = lk.RegressionHead().value_and_grad(pred.reshape(pred_shape), target.reshape(target_shape))
    np.testing.assert_allclose(value, np.mean((pred - target) ** 2), rtol=1e-14)
    np.testing.assert_allclose(grad.reshape(-1), 2 * (pred - target) / N, rtol=1e-14)
    assert grad.shape == pred_shape


def test_regression_mean_over_values_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    pred = RNG.normal(size=(N, 3))
    target = RNG.normal(size=(N, 3))
    head = lk.RegressionHead(3)
    np.testing.assert_allclose(head.loss(pred, target), metrics.mean_squared_error(target, pred), rtol=1e-14)
    assert head.predict(pred) is pred or np.array_equal(head.predict(pred), pred)
    assert not hasattr(head, "predict_proba")
    with pytest.raises(LossInputError, match="^predictions: expected 3 output unit"):
        head.loss(np.zeros((2, 2)), np.zeros((2, 2)))


# -- head(task) ------------------------------------------------------------------------------
@pytest.mark.parametrize("task, options, cls, units, activation", [
    ("binary", {}, lk.BinaryHead, 1, "sigmoid"),
    ("multiclass", {"n_classes": 10}, lk.MulticlassHead, 10, "softmax"),
    ("multi-class", {"n_classes": 3}, lk.MulticlassHead, 3, "softmax"),
    ("multilabel", {"n_labels": 5}, lk.MultilabelHead, 5, "sigmoid per unit"),
    ("multi-label", {"n_labels": 2}, lk.MultilabelHead, 2, "sigmoid per unit"),
    ("regression", {}, lk.RegressionHead, 1, "identity"),
    ("continuous", {"n_outputs": 4}, lk.RegressionHead, 4, "identity"),
])
def test_head_by_name(task, options, cls, units, activation):
    head = lk.head(task, **options)
    assert type(head) is cls and head.units == units and head.activation_name == activation
    assert head.reason.startswith("task=")


def test_head_forwards_loss_options():
    head = lk.head("multiclass", n_classes=3, label_smoothing=0.1, reduction="sum", class_weight=[1, 2, 3])
    assert head.loss_object.label_smoothing == 0.1 and head.loss_object.reduction == "sum"
    assert head.loss_object.class_weight == [1, 2, 3]


def test_head_refuses_unknown_task_and_option():
    with pytest.raises(LossInputError, match="^task: expected one of 'binary'.* got 'ranking'"):
        lk.head("ranking")
    with pytest.raises(LossInputError, match="^n_clases: expected an option of MulticlassHead"):
        lk.head("multiclass", n_clases=3)
    with pytest.raises(LossInputError, match="^label_smoothing:"):
        lk.head("binary", label_smoothing=1.5)


def test_activation_keeps_half_precision_dtype():
    z = np.array([0.0, 1.0], dtype=np.float16)
    out = lk.BinaryHead().activation(z)
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(float), [0.5, 0.7310586], rtol=1e-3)


# -- head_for(target) ------------------------------------------------------------------------
HEAD_FOR = [
    (np.array([0, 1, 1, 0]), lk.BinaryHead, 1, None),
    (np.array([0.0, 1.0, 1.0]), lk.BinaryHead, 1, None),
    (np.array(["no", "yes", "yes"]), lk.BinaryHead, 1, ["no", "yes"]),
    (np.array([-1, 1, -1]), lk.BinaryHead, 1, [-1, 1]),
    (np.tile(np.arange(10), 3), lk.MulticlassHead, 10, None),
    (np.array([3, 5, 7, 5]), lk.MulticlassHead, 3, [3, 5, 7]),
    (np.eye(3)[[0, 2, 1]], lk.MulticlassHead, 3, None),
    (np.array([[1, 0, 1], [0, 1, 1]]), lk.MultilabelHead, 3, None),
    (np.repeat(np.arange(25.0, 346.0, 3.0), 2), lk.RegressionHead, 1, None),
    (RNG.normal(size=(5, 2)), lk.RegressionHead, 2, None),
]


@pytest.mark.parametrize("target, cls, units, classes", HEAD_FOR)
def test_head_for_picks_the_head_and_explains(target, cls, units, classes):
    head = lk.head_for(target)
    assert type(head) is cls and head.units == units
    assert head.reason == lk.type_of_target(target).reason
    assert (head.classes is None) if classes is None else (head.classes.tolist() == classes)


def test_head_for_refuses_ambiguous_and_task_decides():
    target = np.array([1.0, 2.0, 3.0, 2.0])
    with pytest.raises(LossInputError, match="ambiguous"):
        lk.head_for(target)
    as_classes = lk.head_for(target, task="multiclass")
    assert type(as_classes) is lk.MulticlassHead and as_classes.classes.tolist() == [1.0, 2.0, 3.0]
    assert as_classes.encode(target).tolist() == [0, 1, 2, 1]
    assert type(lk.head_for(target, task="regression")) is lk.RegressionHead


def test_head_for_forwards_options_and_trains_end_to_end_on_string_labels():
    target = np.array(["cat", "dog", "bird", "dog", "cat", "bird"])
    head = lk.head_for(target, label_smoothing=0.1)
    assert head.loss_object.label_smoothing == 0.1
    indices = head.encode(target)
    z = np.zeros((len(target), 3))
    for _ in range(200):  # plain gradient descent on free logits: the head's gradient must lead to the labels
        _, grad = head.value_and_grad(z, indices)
        z -= 10.0 * grad
    assert head.decode(head.predict(z)).tolist() == target.tolist()


# (target, the head head_for picks, task for lk.head)
ONE_OF_EACH = [(np.array([0, 1, 1]), "BinaryHead", "binary"),
               (np.array([0, 1, 2, 1]), "MulticlassHead", "multiclass"),
               (np.array([[1, 0], [0, 0], [1, 1]]), "MultilabelHead", "multilabel"),
               (RNG.normal(size=5), "RegressionHead", "regression")]


@pytest.mark.parametrize("target, cls, task", ONE_OF_EACH)
def test_head_for_refuses_an_unknown_option_as_head_does(target, cls, task):
    with pytest.raises(LossInputError) as by_name:
        lk.head(task, bogus=3)
    with pytest.raises(LossInputError) as by_target:
        lk.head_for(target, bogus=3)
    for info in (by_name, by_target):
        message = str(info.value)
        assert message.startswith(f"bogus: expected an option of {cls} (") and "got an unknown option" in message
    assert f"head_for chose {cls}" in str(by_target.value)  # and why, since the user did not pick it


@pytest.mark.parametrize("target, option, value", [
    (np.array(["a", "b", "a"]), "classes", ["a", "b"]),
    (np.array([0, 1, 2, 1]), "n_classes", 3),
    (np.array([[1, 0], [0, 0], [1, 1]]), "n_labels", 2),
    (RNG.normal(size=(5, 2)), "n_outputs", 2),
    (np.array([0, 1, 1]), "class_weight", [1.0, 2.0]),  # an option of another head
])
def test_head_for_names_an_option_it_cannot_take(target, option, value):
    with pytest.raises(LossInputError, match=f"^{option}: expected an option of "):
        lk.head_for(target, **{option: value})


SINGLE_UNIT = [(lk.BinaryHead, "logits", "MulticlassHead(2)"),
               (lk.RegressionHead, "predictions", "RegressionHead(n_outputs=K)")]
CALLS = ["loss", "value_and_grad", "grad", "hessian_diag", "predict", "predict_proba"]


@pytest.mark.parametrize("cls, name, hint, call", [(*unit, call) for unit in SINGLE_UNIT for call in CALLS
                                                    if hasattr(unit[0], call)])  # only the calls a head has
@pytest.mark.parametrize("shape", [(N, 2), (N, 3, 2)])
def test_single_unit_heads_refuse_a_last_axis_other_than_one(cls, name, hint, shape, call):
    head = cls()
    logits = RNG.normal(size=shape)
    target = RNG.integers(0, 2, shape).astype(float)  # the same shape: the core alone would accept it
    args = (logits,) if call.startswith("predict") else (logits, target)
    with pytest.raises(LossInputError) as info:
        getattr(head, call)(*args)
    message = str(info.value)
    assert message.startswith(f"{name}: expected shape [N] or [N, 1]"), message
    assert f"got shape {shape}" in message and hint in message, message


_UNIT_MISMATCH = [(lambda: lk.MulticlassHead(3), "logits"), (lambda: lk.MultilabelHead(3), "logits"),
                  (lambda: lk.RegressionHead(3), "predictions"), (lambda: lk.BinaryHead(), "logits")]


@pytest.mark.parametrize("make, name, call", [(make, name, call) for make, name in _UNIT_MISMATCH for call in CALLS
                                              if hasattr(make(), call)])  # only the calls a head has
def test_every_head_names_its_input_on_a_unit_mismatch(make, name, call):
    head = make()
    logits, target = np.zeros((N, 2)), np.zeros((N, 2))
    args = (logits,) if call.startswith("predict") else (logits, target)
    with pytest.raises(LossInputError, match=rf"^{name}: expected .*got shape \({N}, 2\)"):
        getattr(head, call)(*args)


def test_regression_head_and_its_core_loss_use_one_name():
    head = lk.RegressionHead()
    for predictions, target in ((np.zeros(3), np.zeros(4)), (np.zeros((3, 2)), np.zeros((3, 2))),
                                (np.zeros(3, dtype=int), np.zeros(3))):
        with pytest.raises(LossInputError) as info:
            head.loss(predictions, target)
        assert "predictions" in str(info.value) and "logits" not in str(info.value), str(info.value)


def test_single_unit_logits_on_every_backend_are_checked(backend):
    with pytest.raises(LossInputError, match=r"^logits: expected shape \[N\] or \[N, 1\]"):
        lk.BinaryHead().loss(to_backend(backend, np.zeros((N, 2))), to_backend(backend, np.zeros((N, 2))))


def test_head_for_refuses_mixed_label_kinds_instead_of_coercing():
    with pytest.raises(LossInputError, match=r"^target: .*a mix of numbers \(1\) and strings \('a'\)"):
        lk.head_for([1, "a", 1])
    with pytest.raises(LossInputError, match=r"^classes: .*a mix of numbers \(0\) and strings"):
        lk.BinaryHead(classes=[0, "a"])


# -- backends --------------------------------------------------------------------------------
@pytest.mark.parametrize("task, options, logits_shape, target", [
    ("binary", {}, (N, 1), RNG.integers(0, 2, N).astype(float)),
    ("multiclass", {"n_classes": K}, (N, K), RNG.integers(0, K, N)),
    ("multilabel", {"n_labels": K}, (N, K), RNG.integers(0, 2, (N, K)).astype(float)),
    ("regression", {}, (N, 1), RNG.normal(size=N)),
])
def test_heads_on_every_backend(backend, task, options, logits_shape, target):
    head = lk.head(task, **options)
    logits = RNG.normal(size=logits_shape)
    value, grad = head.value_and_grad(to_backend(backend, logits), to_backend(backend, target))
    assert library_of(grad) == backend and tuple(grad.shape) == logits_shape
    reference_value, reference_grad = head.value_and_grad(logits, target)
    np.testing.assert_allclose(to_numpy(value), reference_value, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(grad), reference_grad, rtol=1e-12, atol=1e-15)
    prediction = head.predict(to_backend(backend, logits))
    assert library_of(prediction) == backend
    np.testing.assert_array_equal(to_numpy(prediction), head.predict(logits))


# -- docs/heads.md ---------------------------------------------------------------------------
def test_docs_heads_examples_run_and_say_what_they_claim():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "heads.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    first: dict = {}
    exec(compile(blocks[0], "docs/heads.md block 0", "exec"), first)
    z, y = first["logits"], first["target"]
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    smoothed = 0.9 * np.eye(3)[y] + 0.1 / 3
    np.testing.assert_allclose(first["grad"], (p - smoothed) / 2, rtol=1e-13)
    assert first["pred"].tolist() == [0, 1]
    second: dict = {}
    exec(compile(blocks[1], "docs/heads.md block 1", "exec"), second)
    assert second["target"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert second["labels"].tolist() == ["spam", "ham", "spam", "ham"]
    assert second["head"].reason in text


def test_an_integer_target_of_k_columns_under_jit_is_refused_not_read_as_one_hot():
    """Under jit encode could not read whether [N, K] integer rows are one-hot: it took them as one-hot, so a
    multi-hot row (or a batch of class indices with T = K) trained as its argmax; eager, the same rows are
    returned as they are and the loss refuses them."""
    jax = pytest.importorskip("jax")
    head = lk.MulticlassHead(3)
    multi_hot = np.array([[1, 0, 1], [0, 1, 1]])
    np.testing.assert_array_equal(head.encode(multi_hot), multi_hot)
    with pytest.raises(LossInputError, match="^target: .*under a trace"):
        jax.jit(head.encode)(jax.numpy.asarray(multi_hot))
    np.testing.assert_array_equal(head.encode(jax.numpy.asarray([[0, 0, 1], [1, 0, 0]])), [2, 0])  # eager one-hot


@pytest.mark.parametrize("column", [[["cat"], ["dog"], ["bird"], ["dog"]], [[0], [1], [2], [1]]], ids=["str", "int"])
def test_head_for_a_label_column_encodes_a_target_its_loss_takes(column):
    """type_of_target reads [N] and [N, 1] alike; the multi-class head's loss refused the [N, 1] encoding beside
    [N, K] logits. It now reads that column as [N]; [N, 1, K] logits keep [N, 1] labels (a batch axis of one)."""
    y = np.array(column)
    head = lk.head_for(y)
    target = head.encode(y)
    logits = np.random.default_rng(0).normal(size=(4, 3))
    expected = float(head.loss(logits, target.reshape(-1)))
    assert float(head.loss(logits, target)) == expected
    _, grad = head.value_and_grad(logits, target)
    np.testing.assert_array_equal(grad, head.value_and_grad(logits, target.reshape(-1))[1])
    assert float(head.loss(logits[:, None, :], target)) == expected


def test_head_options_given_as_arrays_are_named():
    """An array option reached ``value == default`` (NumPy's "truth value of an array is ambiguous")."""
    torch = pytest.importorskip("torch")
    for value in (np.array([0.1, 0.2]), torch.tensor([0.1, 0.2])):
        with pytest.raises(LossInputError, match="^label_smoothing: "):
            lk.MulticlassHead(3, label_smoothing=value)
    with pytest.raises(LossInputError, match="^axis: "):
        lk.MulticlassHead(3, axis=np.array([1, 2]))
    with pytest.raises(LossInputError, match="^threshold: .*shape \\(1, 3\\)"):
        lk.MultilabelHead(3, threshold=[[0.5, 0.9, 0.2]])


def test_binary_head_takes_a_numpy_scalar_pos_weight_and_refuses_a_bool():
    z, y = np.array([0.3, -1.0]), np.array([1.0, 0.0])
    expected = float(lk.BinaryCrossEntropyWithLogits(pos_weight=2.0)(z, y))
    for value in (np.float32(2), np.int64(2), np.array(2.0)):
        assert float(lk.BinaryHead(pos_weight=value).loss(z, y)) == pytest.approx(expected, rel=1e-7)
    with pytest.raises(LossInputError, match="^pos_weight: "):
        lk.BinaryHead(pos_weight=True)


def test_boolean_labels_decode_to_booleans_and_are_not_a_regression_target():
    y = np.array([True, False, True])
    head = lk.head_for(y)
    assert head.decode(head.predict(np.array([1.0, -1.0, 2.0]))).tolist() == [True, False, True]
    with pytest.raises(LossInputError, match="^task: .*boolean"):
        lk.head_for(y, task="regression")


def test_head_for_says_which_head_it_chose_when_the_loss_is_another_tasks():
    with pytest.raises(LossInputError, match="head_for chose the multiclass head .*pass task="):
        lk.head_for(np.array([0, 1, 2, 5, 3]), loss="poisson")
    assert lk.head_for(np.array([0, 1, 2, 5, 3]), loss="poisson", task="regression").loss_object.name == \
        "poisson_deviance"


def test_quantile_and_gaussian_heads_refuse_options_beside_a_loss_object():
    """As RegressionHead does: an option beside a Loss object is refused by name, not dropped (a
    QuantileHead given quantiles [0.1, 0.9] and QuantileLoss(0.5) had 1 unit and the quantile 0.5; a
    GaussianHead kept "mean" when given reduction="sum"). The defaults beside it are no option."""
    with pytest.raises(LossInputError, match="^quantiles: expected no loss option beside a Loss object"):
        lk.QuantileHead(quantiles=[0.1, 0.9], loss=lk.QuantileLoss(quantiles=0.5))
    with pytest.raises(LossInputError, match="^reduction: expected no loss option beside a Loss object"):
        lk.GaussianHead(loss=lk.GaussianNLL(), reduction="sum")
    assert lk.QuantileHead(loss=lk.QuantileLoss(quantiles=[0.2, 0.7])).quantiles == (0.2, 0.7)
    with pytest.raises(LossInputError, match="^quantiles: expected no loss option"):  # an array compared
        lk.QuantileHead(np.array([0.1, 0.9]), loss=lk.QuantileLoss(quantiles=(0.1, 0.9)))
    assert lk.QuantileHead(np.array([0.5]), loss=lk.QuantileLoss(quantiles=0.3)).quantiles == (0.3,)
    assert lk.GaussianHead(loss=lk.GaussianNLL(reduction="sum")).loss_object.reduction == "sum"


def test_the_threshold_logit_is_exact_to_a_few_ulps_near_one_half():
    """p > t is read as z > logit(t): log(t) - log1p(-t) cancelled near t = 1/2 (4,900 ulps at t = 0.50002), so
    a logit between the rounded and the exact cut was read on the wrong side. Against mpmath, both sides."""
    mpmath = pytest.importorskip("mpmath")
    from losskit.heads import _logit

    mpmath.mp.prec = 200
    for t in (0.5000221267318777, 0.4999778732681223, 0.5, 0.3, 0.26, 0.25, 0.1, 1e-9, 0.75, 0.9, 1 - 1e-12):
        exact = mpmath.log(mpmath.mpf(t) / (1 - mpmath.mpf(t)))
        got = _logit(t)
        assert abs(mpmath.mpf(got) - exact) <= 2 * np.spacing(abs(float(exact))), t
    cut = _logit(0.5000221267318777)
    head = lk.BinaryHead(threshold=0.5000221267318777)
    assert head.predict(np.array([np.nextafter(cut, 1.0)])).tolist() == [1]
    assert head.predict(np.array([np.nextafter(cut, 0.0)])).tolist() == [0]


@pytest.mark.parametrize("dtype", ["float16", "float32", "bfloat16"])
@pytest.mark.parametrize("threshold", [0.3, 0.7, 0.9, 0.123])
def test_predict_at_the_threshold_is_the_exact_rule_in_every_dtype(dtype, threshold):
    """predict is sigmoid(z) > t exactly (mpmath) for the dtype's values around the cut: the logit was compared
    with the cut rounded to the dtype's nearest, so where that rounded up the value between was read as 0
    (float32, t = 0.3: z = -0.84729785; float16, t = 0.9: 2.1972656; bfloat16, t = 0.7: 0.84765625)."""
    mpmath = pytest.importorskip("mpmath")
    torch = pytest.importorskip("torch")
    mpmath.mp.prec = 100
    exact = float(mpmath.log(mpmath.mpf(threshold) / (1 - mpmath.mpf(threshold))))
    as_torch = getattr(torch, dtype)
    nearest = torch.tensor(exact, dtype=as_torch)
    below, above = (torch.nextafter(nearest, torch.tensor(v, dtype=as_torch)) for v in (-np.inf, np.inf))
    z = torch.stack([below, nearest, above])
    expected = [int(1 / (1 + mpmath.exp(-mpmath.mpf(float(v)))) > threshold) for v in z.float()]
    binary = lk.BinaryHead(threshold=threshold)
    assert binary.predict(z).tolist() == expected
    if dtype != "bfloat16":
        assert binary.predict(z.numpy()).tolist() == expected
    labels = lk.MultilabelHead(2, threshold=[threshold, 0.5]).predict(torch.stack([z, z], dim=-1))
    assert labels[:, 0].tolist() == expected


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_a_nan_logit_predicts_as_documented_on_every_backend(backend):
    """docs/heads.md: binary and multi-label read a NaN logit as 0, multi-class as the NaN's class (argmax), and
    predict_proba gives NaN there: the same on NumPy, torch and JAX."""
    if backend != "numpy":
        pytest.importorskip(backend)
    from conftest import to_backend, to_numpy

    binary = to_backend(backend, np.array([np.nan, 3.0]))
    rows = to_backend(backend, np.array([[0.0, np.nan, 5.0], [1.0, 0.0, 2.0]]))
    assert to_numpy(lk.BinaryHead().predict(binary)).tolist() == [0, 1]
    assert to_numpy(lk.MultilabelHead(3).predict(rows)).tolist() == [[0, 0, 1], [1, 0, 1]]
    assert to_numpy(lk.MulticlassHead(3).predict(rows)).tolist() == [1, 2]
    assert np.isnan(to_numpy(lk.BinaryHead().predict_proba(binary))[0])
    assert np.isnan(to_numpy(lk.MulticlassHead(3).predict_proba(rows))[0]).all()


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_multiclass_labels_of_another_library_encode_to_indices_of_that_library(backend):
    """head_for -> encode -> loss with torch (or JAX) labels 3, 4, 5: encode gave NumPy indices, which the loss
    then refused beside torch logits as arrays of two libraries; now the indices are the target's library's."""
    pytest.importorskip(backend)
    from conftest import library_of, to_backend, to_numpy

    head = lk.head_for(to_backend(backend, np.array([3, 4, 5, 3])))
    indices = head.encode(to_backend(backend, np.array([5, 3, 4])))
    assert library_of(indices) == backend and to_numpy(indices).tolist() == [2, 0, 1]
    logits = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0], [0.5, 0.5, 3.0]])
    expected = lk.softmax_cross_entropy(logits, np.array([2, 0, 1]))
    np.testing.assert_allclose(to_numpy(head.loss(to_backend(backend, logits), indices)), expected, rtol=1e-6)


def test_a_threshold_set_after_construction_is_checked_and_predict_takes_it():
    """``threshold`` read back 0.9 after ``h.threshold = 0.9`` while ``predict`` kept the cut-off made at
    construction: sigmoid(1) = 0.73 was still class 1 (found in review)."""
    binary = lk.BinaryHead()
    binary.threshold = 0.9
    assert binary.threshold == 0.9 and binary.predict(np.array([1.0, 2.5])).tolist() == [0, 1]  # 0.73, 0.92
    with pytest.raises(LossInputError, match="^threshold: .*got 2.0"):
        binary.threshold = 2
    with pytest.raises(LossInputError, match="^threshold: expected one probability"):
        binary.threshold = [0.5, 0.5]
    assert binary.threshold == 0.9 and binary.predict(np.array([1.0])).tolist() == [0]  # a refused value changes nothing
    exponential = lk.BinaryHead(loss="exponential_loss")  # p = sigmoid(2 z): the cut-off is half the logit
    exponential.threshold = 0.9
    assert exponential.predict(np.array([1.0, 1.2])).tolist() == [0, 1]  # sigmoid(2) = 0.88, sigmoid(2.4) = 0.917
    multilabel = lk.MultilabelHead(2)
    multilabel.threshold = [0.9, 0.6]
    assert multilabel.predict(np.array([[1.0, 1.0]])).tolist() == [[0, 1]]
    with pytest.raises(LossInputError, match="^threshold: expected a probability or 2 of them .*got 3 values"):
        multilabel.threshold = [0.1, 0.2, 0.3]


def test_encode_under_jit_gives_an_unknown_binary_label_nan_and_refuses_labels_it_cannot_read():
    """Under jit no check reads the labels: BinaryHead.encode gave an unknown label 0 (the negative class, silently;
    semantics.md: such an example's loss is NaN) and MulticlassHead.encode of labels 3, 4, 5 raised JAX's
    TracerArrayConversionError (found in review)."""
    jax = pytest.importorskip("jax")
    binary = lk.head_for(np.array([-1, 1, 1, -1]))
    encoded = np.asarray(jax.jit(binary.encode)(jax.numpy.asarray([-1, 2, 1])))
    assert encoded[0] == 0 and np.isnan(encoded[1]) and encoded[2] == 1
    assert np.asarray(jax.jit(binary.encode)(jax.numpy.asarray([1, -1]))).tolist() == [1.0, 0.0]
    with pytest.raises(LossInputError, match="^target: expected labels among classes"):
        binary.encode(np.array([-1, 2, 1]))  # eager: read and refused
    multiclass = lk.head_for(np.array([3, 4, 5, 3]))
    with pytest.raises(LossInputError, match="^target: expected values that can be read on the host"):
        jax.jit(multiclass.encode)(jax.numpy.asarray([3, 5, 4]))
    assert np.asarray(multiclass.encode(jax.numpy.asarray([3, 5, 4]))).tolist() == [0, 2, 1]


def test_decode_names_its_argument_and_a_task_of_the_wrong_shape_reads_as_what_was_given():
    """decode's errors named ``indices`` (decode_labels' word; the method's argument is ``prediction``), and
    ``task="multilabel"`` for one column said 'expected "multilabel" ..., got one column', backwards (review)."""
    head = lk.head_for(np.array(["a", "b"]))
    with pytest.raises(LossInputError, match=r"^prediction: expected indices in \[0, 2\), got values in \[0, 5\]$"):
        head.decode(np.array([0, 5]))
    with pytest.raises(LossInputError, match='^task: expected a task of one column .*got "multilabel" for a target '
                                             "of one column of labels; multi-label targets are rows"):
        lk.head_for(np.array([0, 1, 1]), task="multilabel")
    with pytest.raises(LossInputError, match='^task: expected a task of 2 columns .*got "binary" for a target of 2 '
                                             "columns; a binary target is one column"):
        lk.head_for(np.array([[0, 1], [1, 0]]), task="binary")


@pytest.mark.parametrize("loss, options", [("quantile", {"quantiles": [0.2, 0.8]}), ("gaussian_nll", {})])
def test_quantile_and_gaussian_heads_take_head_fors_own_value_column(loss, options):
    """``head_for(y[N, 1], loss=...)`` built a head whose loss refused that same ``[N, 1]`` column (the other heads
    take it; found in review). Reference: the core loss on the flat target."""
    y = RNG.normal(size=(N, 1))
    predictions = RNG.normal(size=(N, 2))
    head = lk.head_for(y, loss=loss, **options)
    expected = lk.REGISTRY[head.loss_object.name][0](**options)(predictions, y[:, 0])
    assert float(head.loss(predictions, y)) == float(expected)
    np.testing.assert_array_equal(head.grad(predictions, y), head.loss_object.grad(predictions, y[:, 0]))
    with pytest.raises(LossInputError, match=r"^target: expected shape \(6,\)"):
        head.loss(predictions, np.zeros((N, 2)))  # two columns are no column of values
