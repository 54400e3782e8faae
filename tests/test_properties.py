"""Properties that must hold for every finite input (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import losskit as lk

# Finite means "finite wherever the exact loss fits the dtype": logits near the dtype's max give
# losses (pos_weight * |z|, summed over up to 36 elements) that overflow in any library, so the
# range leaves three decades of headroom.
FINITE64 = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False)
FINITE32 = st.floats(min_value=-float(np.float32(1e35)), max_value=float(np.float32(1e35)), allow_nan=False, allow_infinity=False, width=32)
SETTINGS = settings(max_examples=150, deadline=None)


def _logits(dtype, elements, shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6)):
    return hnp.arrays(dtype, shape, elements=elements)


def _finite(*arrays):
    return all(np.all(np.isfinite(np.asarray(a))) for a in arrays)


@SETTINGS
@given(st.one_of(_logits(np.float64, FINITE64), _logits(np.float32, FINITE32)), st.data(),
       st.floats(0, 0.9))
def test_softmax_cross_entropy_is_finite_for_finite_logits(z, data, smoothing):
    labels = data.draw(hnp.arrays(np.int64, z.shape[:1], elements=st.integers(0, z.shape[1] - 1)))
    loss = lk.SoftmaxCrossEntropy(label_smoothing=smoothing, reduction="none")
    value, grad = loss.value_and_grad(z, labels)
    assert _finite(value, grad, loss.hessian_diag(z, labels))
    assert np.all(value >= 0)


@SETTINGS
@given(st.one_of(_logits(np.float64, FINITE64), _logits(np.float32, FINITE32)), st.data(),
       st.floats(0, 0.9), st.floats(0.0, 10.0))
def test_binary_and_multilabel_losses_are_finite_for_finite_logits(z, data, smoothing, pos_weight):
    y = data.draw(hnp.arrays(z.dtype, z.shape, elements=st.floats(0, 1, width=32)))
    for loss in (lk.BinaryCrossEntropyWithLogits(label_smoothing=smoothing, pos_weight=pos_weight),
                 lk.MultilabelCrossEntropy(label_smoothing=smoothing, pos_weight=pos_weight)):
        value, grad = loss.value_and_grad(z, y)
        assert _finite(value, grad, loss.hessian_diag(z, y))


@SETTINGS
@given(_logits(np.float64, st.floats(0, 1)), st.data())
def test_probability_losses_are_finite_on_the_closed_unit_interval(p, data):
    y = data.draw(hnp.arrays(np.float64, p.shape, elements=st.sampled_from([0.0, 1.0, 0.5])))
    value, grad = lk.BinaryCrossEntropy().value_and_grad(p, y)
    assert _finite(value, grad)
    rows = np.zeros_like(p)
    rows[:, 0] = 1.0  # one-hot probabilities: log(0) terms exercise the floor
    labels = data.draw(hnp.arrays(np.int64, p.shape[:1], elements=st.integers(0, p.shape[1] - 1)))
    value, grad = lk.CategoricalCrossEntropy().value_and_grad(rows, labels)
    assert _finite(value, grad)


@SETTINGS
@given(_logits(np.float64, st.floats(-1e3, 1e3)), st.floats(-1e4, 1e4), st.data())
def test_softmax_cross_entropy_is_invariant_to_a_constant_added_to_a_row(z, shift, data):
    labels = data.draw(hnp.arrays(np.int64, z.shape[:1], elements=st.integers(0, z.shape[1] - 1)))
    loss = lk.SoftmaxCrossEntropy(reduction="none")
    value, grad = loss.value_and_grad(z, labels)
    shifted_value, shifted_grad = loss.value_and_grad(z + shift, labels)
    # the shift itself is rounded into z: allow the rounding of |z| + |shift|
    slack = 8 * np.finfo(np.float64).eps * (np.abs(z).max() + abs(shift) + 1)
    np.testing.assert_allclose(shifted_value, value, rtol=1e-9, atol=slack)
    np.testing.assert_allclose(shifted_grad, grad, atol=slack + 1e-12)


@SETTINGS
@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=8), elements=st.floats(-15, 15)),
       st.data())
def test_bce_with_logits_equals_bce_of_sigmoid_where_both_are_finite(z, data):
    y = data.draw(hnp.arrays(np.float64, z.shape, elements=st.floats(0, 1)))
    from_logits = lk.binary_cross_entropy_with_logits(z, y, reduction="none")
    from_probs = lk.binary_cross_entropy(lk.sigmoid(z), y, reduction="none")
    # |z| <= 15 keeps 1 - sigmoid(z) >= 3e-7, so the probability form's log(1 - p) loses at
    # most ~1e-16 / 3e-7 relative accuracy there; beyond, only the logits form is exact
    np.testing.assert_allclose(from_logits, from_probs, rtol=1e-8, atol=1e-12)
