"""One test per kind of bad input: the error is a LossInputError (a ValueError) naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
import own_losses  # noqa: F401 - registers exp_margin_loss, a user's own loss (docs/own-loss.md)
from losskit import LossInputError

Z = np.zeros((4, 3))
LABELS = np.array([0, 1, 2, 1])


def raises(argument: str, *fragments: str):
    """Expect a LossInputError whose message starts with the argument's name and has the fragments."""

    class _Check:
        def __enter__(self):
            self._ctx = pytest.raises(LossInputError)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self._ctx.__exit__(*exc)
            message = str(self.info.value)
            assert message.startswith(f"{argument}:"), message
            for fragment in fragments:
                assert fragment in message, (fragment, message)
            assert isinstance(self.info.value, ValueError)
            return suppressed

    return _Check()


def test_target_of_shape_n_is_never_broadcast_against_logits_n_by_1():
    with raises("target", "shape (4, 1)", "got shape (4,)", "never broadcasts"):
        lk.binary_cross_entropy_with_logits(np.zeros((4, 1)), np.zeros(4))
    with raises("target", "shape (4,)", "got shape (4, 1)"):
        lk.mean_squared_error(np.zeros(4), np.zeros((4, 1)))


def test_categorical_target_shape_message_names_both_forms():
    with raises("target", "integer class indices of shape (4,)", "probabilities of shape (4, 3)",
                "got shape (4, 1)"):
        lk.softmax_cross_entropy(Z, LABELS[:, None])
    with raises("target", "probabilities of shape (4, 3)", "got shape (4, 2)"):
        lk.softmax_cross_entropy(Z, np.full((4, 2), 0.5))


def test_labels_out_of_range():
    with raises("target", "class indices in [0, 3)", "label 3"):
        lk.softmax_cross_entropy(Z, np.array([0, 1, 3, 1]))
    with raises("target", "label -1"):
        lk.categorical_cross_entropy(np.full((4, 3), 1 / 3), np.array([0, -1, 2, 1]))
    with raises("target", "or ignore_index=-100", "label -5"):
        lk.softmax_cross_entropy(Z, np.array([0, -100, -5, 1]), ignore_index=-100)


def test_probabilities_outside_the_unit_interval_point_to_the_logits_form():
    with raises("probs", "values in [0, 1]", "binary_cross_entropy_with_logits"):
        lk.binary_cross_entropy(np.array([0.5, 1.5]), np.array([1.0, 0.0]))
    with raises("probs", "values in [0, 1]", "softmax_cross_entropy"):
        lk.categorical_cross_entropy(np.array([[-0.5, 1.5]]), np.array([1]))


def test_probability_rows_must_sum_to_one():
    with raises("probs", "sum to 1", "softmax_cross_entropy"):
        lk.categorical_cross_entropy(np.array([[0.2, 0.2, 0.2]]), np.array([1]))
    with raises("target", "sum to 1"):
        lk.softmax_cross_entropy(np.zeros((1, 3)), np.array([[0.5, 0.5, 0.5]]))


def test_targets_outside_the_unit_interval():
    with raises("target", "values in [0, 1]", "[0, 2]"):
        lk.binary_cross_entropy_with_logits(np.zeros(3), np.array([0.0, 1.0, 2.0]))


@pytest.mark.parametrize("name", ["binary_cross_entropy_with_logits", "multilabel_cross_entropy",
                                  "mean_squared_error", "softmax_cross_entropy"])
def test_nan_in_targets(name):
    target = np.array([[np.nan, 0.0, 1.0]]) if name != "softmax_cross_entropy" else np.array([[np.nan, 0, 1.0]])
    with raises("target", "NaN"):
        lk.REGISTRY[name][1](np.zeros((1, 3)), target)


def test_non_float_logits():
    with raises("logits", "real floating-point", "int64"):
        lk.softmax_cross_entropy(np.zeros((2, 3), dtype=np.int64), np.array([0, 1]))
    with raises("predictions", "real floating-point"):
        lk.mean_squared_error(np.array([1, 2]), np.array([1, 2]))


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, "0.1", True])
def test_label_smoothing_outside_zero_one(value):
    with raises("label_smoothing", "[0, 1)"):
        lk.SoftmaxCrossEntropy(label_smoothing=value)
    with raises("label_smoothing", "[0, 1)"):
        lk.binary_cross_entropy_with_logits(np.zeros(2), np.zeros(2), label_smoothing=value)


@pytest.mark.parametrize("name", [n for n, (cls, _) in lk.REGISTRY.items()
                                  if cls.task == lk.Task.MULTICLASS and getattr(cls, "reduces_last_axis", False)])
def test_every_class_axis_loss_refuses_an_axis_of_no_classes(name):
    """Distillation and the JS divergence returned 0 for K = 0 where the others raise (docs/losses.md,
    "Empty axes"; found in review)."""
    cls = lk.REGISTRY[name][0]
    empty = np.zeros((2, 0))
    target = empty if getattr(cls, "target", None) in ("logits", "probabilities") else np.array([0, 0])
    with pytest.raises(lk.LossInputError, match=r"expected at least one class along the class axis"):
        cls(reduction="mean")(empty, target)


@pytest.mark.parametrize("argument", ["logits", "target", "weight"])
def test_a_masked_array_is_refused_by_name(argument):
    """A NumPy masked array was read with its mask by one path and without it by another (mean 1.0 on
    the kernel, 0.75 on the reference; found in review)."""
    arrays = {"logits": np.array([0.5, -1.0, 2.0]), "target": np.array([1.0, 0.0, 1.0]), "weight": np.ones(3)}
    arrays[argument] = np.ma.masked_array(arrays[argument], mask=[False, True, False])
    with pytest.raises(lk.LossInputError, match=rf"^{argument}: expected an array without a mask"):
        lk.binary_cross_entropy_with_logits(arrays["logits"], arrays["target"], weight=arrays["weight"])


def test_unknown_reduction_and_impl():
    with raises("reduction", '"none", "sum", "mean"', "'average'"):
        lk.softmax_cross_entropy(Z, LABELS, reduction="average")
    with raises("impl", "'numba'"):
        lk.MeanSquaredError(impl="numba")


def test_negative_or_nan_weights():
    with raises("weight", "non-negative", "-1"):
        lk.softmax_cross_entropy(Z, LABELS, weight=np.array([1.0, -1.0, 1.0, 1.0]))
    with raises("weight", "NaN"):
        lk.mean_squared_error(np.zeros(2), np.zeros(2), weight=np.array([np.nan, 1.0]))
    with raises("weight", "shape (4,)", "got shape (4, 1)"):
        lk.softmax_cross_entropy(Z, LABELS, weight=np.ones((4, 1)))
    with raises("class_weight", "non-negative"):
        lk.SoftmaxCrossEntropy(class_weight=[1.0, -2.0, 1.0])
    with raises("class_weight", "shape (3,)", "got shape (2,)"):
        lk.softmax_cross_entropy(Z, LABELS, class_weight=np.array([1.0, 2.0]))
    with raises("pos_weight", "non-negative"):
        lk.binary_cross_entropy_with_logits(np.zeros(2), np.zeros(2), pos_weight=-1.0)
    with raises("pos_weight", "shape (3,)", "got shape (2,)"):
        lk.multilabel_cross_entropy(np.zeros((2, 3)), np.zeros((2, 3)), pos_weight=np.ones(2))


def test_bad_normalizer_axis_and_ignore_index():
    with raises("normalizer", "positive"):
        lk.softmax_cross_entropy(Z, LABELS, normalizer=0)
    # a 0-d array of inf was taken (the mean became 0) where Python's inf was refused
    for bad, given in ((np.array(np.inf), "inf"), (np.array(np.nan), "nan"), (np.array(-2.0), "-2.0"),
                       (float("inf"), "inf")):
        with raises("normalizer", "a positive finite number", given):
            lk.softmax_cross_entropy(Z, LABELS, normalizer=bad)
    with raises("axis", "[-2, 2)", "5"):
        lk.softmax_cross_entropy(Z, LABELS, axis=5)
    with raises("ignore_index", "None or an int", "1.5"):
        lk.SoftmaxCrossEntropy(ignore_index=1.5)
    with raises("ignore_index", "None with probability targets"):
        lk.softmax_cross_entropy(Z, np.full((4, 3), 1 / 3), ignore_index=-100)


def test_weights_past_the_working_dtype_are_named_with_their_value():
    """A float64 weight of 1e300 with float32 logits was cast to inf first: refused as "got inf", after NumPy's
    "overflow encountered in cast" warning. pos_weight and class_weight alike; torch's and bfloat16's too (whose
    loss is computed in float32); float64 logits take it; and a huge value inside float32 is a weight."""
    import warnings

    z32, y = np.zeros(3, np.float32), np.ones(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning on the way
        with raises("weight", "values that fit float32, the dtype the loss is computed in", "at most 3.4e+38",
                    "got 1e+300"):
            lk.binary_cross_entropy_with_logits(z32, y, weight=np.array([1.0, 1e300, np.inf]))
        with raises("weight", "values that fit float32, the dtype", "got 1e+300"):  # float16: computed in float32
            lk.binary_cross_entropy_with_logits(np.zeros(3, np.float16), y, weight=np.array([1.0, 1e300, 1.0]))
        with raises("pos_weight", "values that fit float32", "got 1e+300"):
            lk.binary_cross_entropy_with_logits(z32, y, pos_weight=1e300)
        with raises("class_weight", "values that fit float32", "got 1e+40"):
            lk.softmax_cross_entropy(Z.astype(np.float32), LABELS, class_weight=[1.0, 1e40, 1.0])
        with raises("weight", "a minimum of -inf"):  # inf in the weight's own dtype: the check as before
            lk.binary_cross_entropy_with_logits(z32, y, weight=np.array([1.0, -np.inf, 1.0]))
        assert float(lk.binary_cross_entropy_with_logits(z32, y, weight=np.array([1.0, 1e30, 1.0]), reduction="sum")) == \
            pytest.approx((2 + 1e30) * np.log(2), rel=1e-6)
        assert float(lk.binary_cross_entropy_with_logits(np.zeros(3), y, weight=np.array([1.0, 1e300, 1.0]), reduction="sum")) \
            == pytest.approx((2 + 1e300) * np.log(2), rel=1e-12)
    torch = pytest.importorskip("torch")
    with raises("weight", "values that fit torch.float32", "got 1e+39"):
        lk.binary_cross_entropy_with_logits(torch.zeros(3, dtype=torch.bfloat16), torch.ones(3),
                                weight=torch.tensor([1.0, 1e39, 1.0], dtype=torch.float64))
    with raises("pos_weight", "values that fit torch.float32", "got 1e+39"):
        lk.binary_cross_entropy_with_logits(torch.zeros(3), torch.ones(3), pos_weight=torch.tensor(1e39, dtype=torch.float64))


def test_a_normalizer_whose_reciprocal_overflows_or_of_another_kind_is_refused():
    """1e-50 in float32 rounded to 0, and an empty batch's rule then made it 1: the "sum", silently. A 0-d
    array of text, complex numbers or another library reached NumPy's or torch's own errors."""
    z32 = Z.astype(np.float32)
    with raises("normalizer", "reciprocal fits float32", "2.94e-39", "1e-50"):
        lk.softmax_cross_entropy(z32, LABELS, normalizer=1e-50)
    with raises("normalizer", "reciprocal fits float64", "1e-320"):
        lk.softmax_cross_entropy(Z, LABELS, normalizer=1e-320)
    with raises("normalizer", "reciprocal fits float32"):
        lk.linear_cross_entropy(z32, np.ones((3, 3), np.float32), LABELS, normalizer=np.array(1e-50))
    assert float(lk.softmax_cross_entropy(z32, LABELS, normalizer=1e-37)) == pytest.approx(4 * np.log(3) / 1e-37,
                                                                                          rel=1e-6)
    # past the dtype's largest: cast to inf, the mean was a silent 0 (found in review); past float64: OverflowError
    for big in (1e39, np.array(1e39)):
        with raises("normalizer", "fits float32", "at most 3.4e+38"):
            lk.softmax_cross_entropy(z32, LABELS, normalizer=big)
    with raises("normalizer", "a positive finite number", "1000000000"):
        lk.softmax_cross_entropy(Z, LABELS, normalizer=10**400)
    assert float(lk.softmax_cross_entropy(Z, LABELS, normalizer=1e39)) == pytest.approx(4 * np.log(3) / 1e39, rel=1e-12)
    with raises("normalizer", "real numbers", "<U1"):
        lk.softmax_cross_entropy(Z, LABELS, normalizer=np.array("a"))
    with raises("normalizer", "real numbers", "complex128"):
        lk.softmax_cross_entropy(Z, LABELS, normalizer=np.array(1 + 1j))
    # a 0-d array of another library is its value (torch's reached an AttributeError with NumPy input)
    torch = pytest.importorskip("torch")
    expected = float(lk.softmax_cross_entropy(Z, LABELS, normalizer=2.0))
    assert float(lk.softmax_cross_entropy(Z, LABELS, normalizer=torch.tensor(2.0))) == expected
    assert float(lk.softmax_cross_entropy(torch.zeros(4, 3, dtype=torch.float64), torch.tensor(LABELS),
                                          normalizer=np.array(2.0))) == expected
    with raises("normalizer", "a positive finite number", "0.0"):
        lk.softmax_cross_entropy(Z, LABELS, normalizer=torch.tensor(0.0))


def test_arrays_of_two_libraries_in_one_call():
    torch = pytest.importorskip("torch")
    with raises("arrays", "one library", "torch", "numpy"):
        lk.softmax_cross_entropy(torch.zeros(4, 3), LABELS)
    with raises("class_weight", "same library"):
        lk.softmax_cross_entropy(Z, LABELS, class_weight=torch.ones(3))


def test_unsupported_target_dtype_and_objects():
    with raises("target", "integer class indices or float class probabilities"):
        lk.softmax_cross_entropy(Z, np.array(["a", "b", "c", "d"]))
    with raises("target", "an array or a (nested) list"):
        lk.mean_squared_error(np.zeros(2), {"a": 1})


@pytest.mark.parametrize(("name", "bad"), [(name, bad) for name in ("binary_cross_entropy_with_logits",
                                                                   "multilabel_cross_entropy")
                                           for bad in (-0.5, 1.5, np.nan, np.inf)]
                         + [("mean_squared_error", np.nan)])
@pytest.mark.parametrize("where", [0, 17, -1])
def test_a_bad_target_raises_on_the_compiled_path(name, bad, where):
    """The compiled BCE and squared-error kernels check the target in the pass that computes the loss (the
    plan no longer reads it first): a bad value anywhere flags its row, and the reference raises the
    precise error, even where the example's weight is 0."""
    target = np.zeros((4, 9))
    target.reshape(-1)[where] = bad
    per_element = name == "binary_cross_entropy_with_logits"  # else an example is a row of 9
    weight = np.ones((4, 9) if per_element else 4)
    weight.reshape(-1)[where if per_element else np.unravel_index(where % 36, (4, 9))[0]] = 0.0
    loss = lk.REGISTRY[name][0](impl="fused")
    for call in (loss, loss.value_and_grad):
        for w in (None, weight):
            with raises("target", "NaN" if np.isnan(bad) else "values in [0, 1]"):
                call(np.zeros((4, 9), np.float32), target.astype(np.float32), weight=w)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "kl_divergence", "poly_cross_entropy",
                                  "softmax_focal_loss"])
@pytest.mark.parametrize("bad", ["negative", "above one", "nan", "sum"])
@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
def test_a_bad_probability_target_raises_on_every_path(name, bad, library):
    """Probability targets are checked where they are read (the plan no longer reads them first): in the
    kernels' own passes (the KL kernel's for softmax CE and KL, Poly-1's, softmax focal's), in the formulas,
    and in losskit.jax's sweep; for a row of weight 0 too. 6 x 300: the serial twins (the parallel kernels
    run the same loop body under prange)."""
    rng = np.random.default_rng(2)
    target = rng.dirichlet(np.ones(300), size=6)
    row = target[4]
    if bad == "sum":
        row *= 1.01
    else:
        row[7] = {"negative": -0.05, "above one": 1.05, "nan": np.nan}[bad]
    weight = np.ones(6)
    weight[4] = 0.0
    z = rng.normal(size=(6, 300))
    expected = ("target", "NaN") if bad == "nan" else ("target", "values in [0, 1]") if bad != "sum" else \
        ("target", "sum to 1")
    if library == "jax":
        lj = pytest.importorskip("losskit.jax")
        import jax.numpy as jnp

        with raises(*expected):
            lj.loss_fn(lk.REGISTRY[name][0]())(jnp.asarray(z), jnp.asarray(target), weight=jnp.asarray(weight))
        return
    if library == "torch":
        torch = pytest.importorskip("torch")
        z, target, weight = (torch.from_numpy(a) for a in (z, target, weight))
    for impl in ("auto", "fused"):
        loss = lk.REGISTRY[name][0](impl=impl)
        for call in (loss, loss.value_and_grad):
            with raises(*expected):
                call(z, target, weight=weight)


@pytest.mark.parametrize("integration", ["losskit.torch:module", "losskit.jax:loss_fn", "losskit.xgboost:objective",
                                         "losskit.lightgbm:objective"])
def test_a_loss_class_where_a_loss_object_goes_is_named(integration):
    """``module(lk.HuberLoss)`` (the class, not ``lk.HuberLoss()``): an AttributeError from deep inside
    torch's layer, a TypeError at the JAX function's first call, a bare TypeError for the GBDT objectives."""
    module_name, _, function = integration.partition(":")
    make = getattr(pytest.importorskip(module_name), function)
    with raises("loss", "a loss object (an instance: HuberLoss(...))", "the class HuberLoss"):
        make(lk.HuberLoss)
    with raises("loss", "a losskit Loss object", "3"):
        make(3)
    assert make(lk.HuberLoss()) is not None  # an object still makes one


def _fused_calls():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    import losskit.jax as lj
    import losskit.torch as lt

    rng = np.random.default_rng(0)
    h, c, y = rng.normal(size=(4, 3, 2)), rng.normal(size=(5, 2)), rng.integers(0, 5, size=(4, 3))
    grpo = {"old_logps": np.zeros((4, 3)), "advantages": np.ones(4)}
    return {
        "entropy": lambda: lk.linear_logprobs(h, c, y, entropy="yes"),
        "accuracy": lambda: lk.linear_logprobs(h, c, y, accuracy=1),
        "aux": lambda: lk.linear_preference_loss(h, c, y, loss="simpo", aux="yes"),
        "aux ": lambda: lk.linear_preference_loss_value_and_grad(h, c, y, loss="simpo", aux="yes"),
        "aux  ": lambda: lk.linear_grpo_loss_value_and_grad(h, c, y, aux="yes", **grpo),
        "entropy ": lambda: lt.linear_logprobs(*map(torch.tensor, (h, c, y)), entropy="yes"),
        "entropy  ": lambda: lj.linear_logprobs(h, c, y, entropy="yes"),
        "foo": lambda: lt.linear_grpo_loss(*map(torch.tensor, (h, c, y)), foo=1,
                                           **{k: torch.tensor(v) for k, v in grpo.items()}),
        "foo ": lambda: lj.linear_grpo_loss(h, c, y, foo=1, **grpo),
        "out": lambda: lk.HuberLoss().value_and_grad(jnp.zeros(3), jnp.zeros(3), out=jnp.zeros(3)),
    }


@pytest.mark.parametrize("argument", ["entropy", "entropy ", "entropy  ", "accuracy", "aux", "aux ", "aux  ", "foo",
                                      "foo ", "out"])
def test_flags_options_and_immutable_out_name_the_argument(argument):
    """A flag that is not a bool (entropy="yes" was read as True), an option the torch or JAX GRPO forms do
    not have (the dataclass's TypeError), an ``out`` JAX cannot write (its own TypeError after the work)."""
    with raises(argument.strip()):
        _fused_calls()[argument]()


def test_an_unknown_option_is_named_by_every_loss_and_function():
    """19 of the catalogue's classes (those whose __init__ writes its keywords out) raised Python's
    TypeError for an unknown keyword, as did ``replace`` and the linear CE's options."""
    from losskit.losses import REGISTRY

    for cls, function in REGISTRY.values():
        if not cls.__module__.startswith("losskit."):
            continue  # a class a test defined
        with raises("colour", f"an option of {cls.__name__}", "reduction", "unknown option"):
            cls(colour=1)
        with raises("colour", "unknown option"):
            function(Z, LABELS, colour=1)
    with raises("colour", "an option of HuberLoss", "delta"):
        lk.HuberLoss().replace(colour=1)
    with raises("impl", "an option of linear_cross_entropy", "chunk_size"):
        lk.linear_cross_entropy(Z, np.ones((3, 3)), LABELS, impl="xp")


def test_arguments_that_reached_raw_errors_are_named():
    """Each of these raised an AttributeError, IndexError, TypeError, UFuncTypeError or ValueError from
    inside NumPy, torch or the code, naming no argument (found by a review of the API)."""
    with raises("logits", "an array", "None"):
        lk.MulticlassHead(3).predict(None)
    with raises("target", "an array", "None"):
        lk.BinaryHead().loss(np.zeros(3), None)
    with raises("logits", "an array", "None"):
        lk.calibrate(None, LABELS)
    with raises("max_passes", "an int >= 1", "2.5"):
        lk.calibrate(Z + np.eye(4, 3), LABELS, max_passes=2.5)
    with raises("max_passes", "an int >= 1", "-1"):
        lk.calibrate(Z + np.eye(4, 3), LABELS, max_passes=-1)
    with raises("bias", "a real-valued array", "complex128"):
        lk.linear_cross_entropy(np.ones((4, 3)), np.ones((3, 3)), LABELS, bias=np.zeros(3, complex))
    with raises("weight", "a real-valued array", "<U1"):
        lk.linear_cross_entropy(np.ones((4, 3)), np.ones((3, 3)), LABELS, weight=np.array(["1", "3", "1", "1"]))
    with raises("out", "no out= for logits given as list", "pass logits as an array"):
        lk.SoftmaxCrossEntropy().value_and_grad([[0.0, 1.0]], [0], out=np.empty((1, 2)))
    assert lk.QuantileLoss(quantiles=np.array(0.25)).quantiles == (0.25,)  # a 0-d array is one number
    torch = pytest.importorskip("torch")
    with raises("out", "does not require grad", "requires_grad=True"):
        lk.SoftmaxCrossEntropy().value_and_grad(torch.zeros(4, 3), torch.tensor(LABELS),
                                                out=torch.zeros(4, 3, requires_grad=True))
    # a broadcast view's rows share memory: NumPy's gradient was each row written over the last (wrong by
    # 0.24 in review), torch's its own RuntimeError
    z = Z + np.eye(4, 3)
    with raises("out", "memory of their own", "a stride of 0"):
        lk.SoftmaxCrossEntropy().value_and_grad(z, LABELS, out=np.lib.stride_tricks.as_strided(np.zeros(3), (4, 3),
                                                                                                (0, 8)))
    with raises("out", "memory of their own", "a stride of 0"):
        lk.SoftmaxCrossEntropy().value_and_grad(torch.tensor(z), torch.tensor(LABELS),
                                                out=torch.zeros(1, 3, dtype=torch.float64).expand(4, 3))
    lt = pytest.importorskip("losskit.torch")
    with raises("input", "a torch.Tensor", "ndarray"):
        lt.SoftmaxCrossEntropy()(Z, LABELS)
    with raises("logits", "a torch.Tensor", "ndarray"):
        lt.MulticlassHead(3)(Z, LABELS)


def test_a_temperature_whose_square_or_reciprocal_overflows_is_refused():
    """Distillation at T = 1e200 (float64) or 1e-100 (float32) gave NaN: inf times a KL of 0."""
    teacher = np.array([[0.0, 1.0]])
    with raises("temperature", "square and reciprocal fit float64", "1e+200"):
        lk.distillation_loss(np.zeros((1, 2)), teacher, temperature=1e200)
    with raises("temperature", "square and reciprocal fit float32", "1e-100"):
        lk.distillation_loss(np.zeros((1, 2), np.float32), teacher.astype(np.float32), temperature=1e-100)
    # the JSD has no T^2 factor: only its reciprocal must fit (1e200 in float64 is taken)
    with raises("temperature", "reciprocal fits float64"):
        lk.js_divergence(np.zeros((1, 2)), teacher, temperature=1e-320)
    assert float(lk.js_divergence(np.zeros((1, 2)), teacher, temperature=1e200)) == pytest.approx(0.0, abs=1e-300)
    with raises("temperature", "reciprocal fits float32"):
        h = np.ones((2, 3), np.float32)
        lk.linear_jsd_loss(h, np.ones((2, 3), np.float32), h, np.ones((2, 3), np.float32), temperature=1e-100)
    # 1e-100 in float64 is a temperature that fits: T^2 KL of two sure rows, log 2 scaled by T^2
    assert float(lk.distillation_loss(np.zeros((1, 2)), teacher, temperature=1e-100)) == pytest.approx(
        np.log(2) * 1e-200, rel=1e-12)


def test_labels_a_head_cannot_read_are_named():
    """Each reached NumPy's or JAX's own ValueError, OverflowError or TypeError."""
    with raises("target", "labels among classes (['ham', 'spam'])", "dtype int64, which cannot hold them"):
        lk.head_for(np.array(["spam", "ham"])).encode(np.array([0, 1]))
    with raises("target", "0/1 label rows", "<U1"):
        lk.MultilabelHead(2).encode(np.array([["a", "b"]]))
    with raises("target", "real labels or values", "datetime64[D]"):
        lk.head_for(np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]"))
    with raises("classes", "distinct labels", "['a', 'a', 'b']"):
        lk.MulticlassHead(classes=["a", "a", "b"])
    jnp = pytest.importorskip("jax.numpy")
    with raises("target", "labels among classes ([-1, 1])", "dtype uint8"):
        lk.head_for(np.array([-1, 1, 1])).encode(jnp.array([0, 1], dtype=jnp.uint8))
    assert lk.head_for(np.array([-1, 1, 1])).encode(jnp.array([-1, 1])).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("library", ["torch", "jax"])
@pytest.mark.parametrize("name", ["softmax_cross_entropy", "kl_divergence"])
def test_a_bfloat16_probability_target_is_taken_with_its_own_rounding(library, name):
    """A softmax rounded to bfloat16 has rows off by up to K eps / 2 of bfloat16 (0.002 here): the
    eager check, made after the target was widened to float32, refused it, while a jitted call took it
    (found in review). The value equals the float32 target's (the same bfloat16 numbers, widened)."""
    lib = pytest.importorskip(library)
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 3)).astype(np.float32)
    q = np.exp(0.05 * rng.normal(size=(6, 3)))  # near 1/3 each: bfloat16's rounding there is 0.0007
    q /= q.sum(axis=1, keepdims=True)
    if library == "torch":
        target = lib.tensor(q, dtype=lib.bfloat16)
        widened = target.float().numpy()
        logits = lib.tensor(z)
    else:
        import jax.numpy as jnp

        target = jnp.asarray(q, dtype=jnp.bfloat16)
        widened = np.asarray(target.astype(jnp.float32))
        logits = jnp.asarray(z)
    assert np.abs(widened.sum(axis=1) - 1).max() > 1e-3  # past float32's tolerance: the case found
    log_p = z - z.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    t = widened.astype(np.float64)
    per_row = -(t * log_p).sum(axis=1) if name == "softmax_cross_entropy" else (t * (np.log(t) - log_p)).sum(axis=1)
    np.testing.assert_allclose(float(getattr(lk, name)(logits, target)), per_row.mean(), rtol=1e-5)


#: (loss, options, a target value outside its domain, the same example's value inside it): the elementwise
#: losses of every target kind that is not "any real", and BCE's family
_OUTSIDE_THE_DOMAIN = [
    ("binary_cross_entropy_with_logits", {}, 1.5, 1.0), ("binary_cross_entropy_with_logits", {}, -0.5, 0.0),
    ("multilabel_cross_entropy", {}, 1.5, 1.0), ("sigmoid_focal_loss", {}, -0.5, 0.0),
    ("exponential_loss", {}, 2.0, 1.0), ("hinge_loss", {}, 0.5, 1.0), ("squared_hinge_loss", {}, 3.0, 1.0),
    ("poisson_deviance", {}, -1.0, 1.0), ("gamma_deviance", {}, 0.0, 1.0), ("gamma_deviance", {}, -2.0, 1.0),
    ("tweedie_deviance", {"power": 3.0}, 0.0, 2.0), ("tweedie_deviance", {"power": 1.5}, -1.0, 0.0),
    ("asymmetric_loss", {}, 1.5, 1.0), ("exp_margin_loss", {}, 1.5, 1.0),
]


@pytest.mark.parametrize(("name", "options", "bad", "good"), _OUTSIDE_THE_DOMAIN,
                         ids=[f"{c[0]}{c[1] or ''}-{c[2]}" for c in _OUTSIDE_THE_DOMAIN])
@pytest.mark.parametrize("library", ["jax", "losskit.jax", "dask"])
def test_a_target_outside_the_domain_that_no_check_can_read_gives_nan(name, options, bad, good, library):
    """Eagerly the target is refused by name; traced by ``jax.jit`` or lazy in Dask no check can read it, and
    that element's loss and gradient are NaN (as a label out of range gives), where they were the value of other
    math (a Tweedie deviance of power 3 at y = 0: -2; BCE at y = 1.5: a finite number; the hinge read 0.5 as +1);
    every other element is unchanged."""
    cls = lk.REGISTRY[name][0]
    rows = cls(**options).reduces_last_axis
    z = np.array([[0.3, -1.2, 2.0]]) if rows else np.array([0.3, -1.2, 2.0])
    target = np.full(z.shape, good)
    target[..., 1] = bad
    with pytest.raises(LossInputError, match="^target: "):
        cls(reduction="none", **options)(z, target)
    inside = np.full(z.shape, good)
    expected_value, expected_grad = cls(reduction="none", **options).value_and_grad(z, inside)
    if library == "dask":
        da = pytest.importorskip("dask.array")
        value, grad = (a.compute() for a in cls(reduction="none", **options).value_and_grad(
            da.from_array(z, chunks=2 if z.ndim == 1 else (1, 2)), da.from_array(target, chunks=2 if z.ndim == 1
                                                                                   else (1, 2))))
    else:
        jax = pytest.importorskip("jax")
        if library == "jax":
            value, grad = jax.jit(lambda z, y: cls(reduction="none", **options).value_and_grad(z, y))(z, target)
        else:
            lj = pytest.importorskip("losskit.jax")
            f = lj.loss_fn(cls(reduction="none", **options))
            value = jax.jit(lambda z, y: f(z, y))(z, target)
            grad = jax.jit(jax.grad(lambda z, y: f(z, y).sum()))(z, target)
    value, grad = np.asarray(value), np.asarray(grad)
    if rows:  # one example: the row's loss is NaN
        assert np.isnan(value).all()
    else:
        assert np.isnan(value[1]) and np.isnan(grad[1])
        np.testing.assert_allclose(np.delete(value, 1), np.delete(expected_value, 1), rtol=1e-12)
        np.testing.assert_allclose(np.delete(grad, 1), np.delete(expected_grad, 1), rtol=1e-12)
    assert np.isnan(grad[..., 1]).all()


#: (loss, bad soft target row) for the losses of probability targets: a row outside [0, 1], or whose sum is off
_BAD_PROBABILITY_ROWS = [("softmax_cross_entropy", [0.5, 0.5, 0.5]), ("kl_divergence", [1.5, -0.5, 0.0]),
                         ("softmax_focal_loss", [0.2, 0.2, 0.2]), ("poly_cross_entropy", [0.5, 0.5, 0.5])]


@pytest.mark.parametrize(("name", "bad"), _BAD_PROBABILITY_ROWS, ids=[c[0] for c in _BAD_PROBABILITY_ROWS])
@pytest.mark.parametrize("library", ["jax", "losskit.jax", "dask"])
def test_a_bad_soft_target_or_weight_that_no_check_can_read_gives_nan(name, bad, library):
    """As a target value outside the domain (above): a soft-target row off [0, 1] or not summing to 1, and a
    negative weight, refused by name eagerly, gave a finite loss under jax.jit or in a Dask graph (twice the
    probabilities: 3.72 where the mean is NaN). Now that row's loss and gradient are NaN; the other rows keep
    their values."""
    cls = lk.REGISTRY[name][0]
    z = np.array([[0.3, -1.2, 2.0], [1.0, 0.0, -1.0], [0.5, 0.5, -2.0]])
    target = np.array([[0.2, 0.3, 0.5], bad, [1.0, 0.0, 0.0]])
    labels, weight = np.array([2, 0, 1]), np.array([1.0, -2.0, 0.5])
    with pytest.raises(LossInputError, match="^target: "):
        cls(reduction="none")(z, target)
    with pytest.raises(LossInputError, match="^weight: "):
        cls()(z, labels, weight=weight)
    expected_value, expected_grad = cls(reduction="none").value_and_grad(z[[0, 2]], target[[0, 2]])

    def run(loss, z, target, weight=None):
        if library == "dask":
            da = pytest.importorskip("dask.array")
            return [a.compute() for a in loss.value_and_grad(
                da.from_array(z, chunks=(1, 3)), da.from_array(target, chunks=1 if target.ndim == 1 else (1, 3)),
                weight=None if weight is None else da.from_array(weight, chunks=1))]
        jax = pytest.importorskip("jax")
        if library == "jax":
            return jax.jit(lambda z, y, w: loss.value_and_grad(z, y, weight=w))(z, target, weight)
        lj = pytest.importorskip("losskit.jax")
        f = lj.loss_fn(loss)
        return (jax.jit(lambda z, y, w: f(z, y, w))(z, target, weight),
                jax.jit(jax.grad(lambda z, y, w: f(z, y, w).sum()))(z, target, weight))

    value, grad = (np.asarray(a) for a in run(cls(reduction="none"), z, target))
    assert np.isnan(value[1]) and np.isnan(grad[1]).all()
    np.testing.assert_allclose(value[[0, 2]], expected_value, rtol=1e-12)
    np.testing.assert_allclose(grad[[0, 2]], expected_grad, rtol=1e-12)
    value, grad = (np.asarray(a) for a in run(cls(), z, labels, weight))
    assert np.isnan(value) and np.isnan(grad).all()  # a weight enters the mean's denominator
