"""Task detection (``type_of_target``) and label encoding.

References: the tables below are written by hand from the rules in targets.py's docstring;
where our reading and scikit-learn's agree by design, scikit-learn's ``type_of_target`` is
asked too, so a drift in either shows.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from conftest import to_backend
from losskit import LossInputError, Task, type_of_target
from losskit.targets import decode_labels, encode_labels

RNG = np.random.default_rng(0)
DIABETES_LIKE = np.repeat(np.arange(25.0, 346.0, 3.0), 2)  # 107 distinct whole-number floats
ONE_HOT = np.eye(3, dtype=np.int64)[[0, 1, 2, 1, 0]]
MULTI = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]])
PROBS = RNG.dirichlet(np.ones(3), size=6)

# (id, target, kind, n_outputs, classes or None, encoding, a fragment of the reason)
DETECTED = [
    ("int01", np.array([0, 1, 1, 0]), "binary", 1, [0, 1], "labels", "2 distinct values"),
    ("float01", np.array([0.0, 1.0, 1.0]), "binary", 1, [0.0, 1.0], "labels", "all 0 or 1"),
    ("bool", np.array([True, False, True]), "binary", 1, [False, True], "labels", "boolean"),
    ("strings2", np.array(["spam", "ham", "spam"]), "binary", 1, ["ham", "spam"], "labels",
     "positive class 'spam'"),
    ("minus_one_one", [-1, 1, 1, -1], "binary", 1, [-1, 1], "labels", "positive class 1"),
    ("column01", np.array([[0.0], [1.0], [1.0]]), "binary", 1, [0.0, 1.0], "labels", "one column"),
    ("ints3", np.array([3, 5, 7, 3, 5]), "multiclass", 3, [3, 5, 7], "labels", "3 classes"),
    ("digits", np.tile(np.arange(10), 5), "multiclass", 10, list(range(10)), "labels", "10 classes"),
    ("strings3", ["b", "a", "c", "a"], "multiclass", 3, ["a", "b", "c"], "labels", "string labels"),
    ("whole_floats_many", DIABETES_LIKE, "regression", 1, None, "values", "107 distinct values"),
    ("fractional", np.array([0.5, 1.25, -3.0]), "regression", 1, None, "values", "not all whole"),
    ("soft_1d", np.array([0.2, 0.9, 0.5]), "regression", 1, None, "values", "task='binary' for soft"),
    ("column_values", np.array([[0.5], [1.5]]), "regression", 1, None, "values", "regression"),
    ("one_hot", ONE_HOT, "multiclass", 3, None, "one-hot", "one 1 per row"),
    ("multilabel", MULTI, "multilabel", 3, None, "indicator", "3 independent labels"),
    ("probabilities", PROBS, "multiclass", 3, None, "probabilities", "sum to 1"),
    ("values2", RNG.normal(size=(5, 2)), "regression", 2, None, "values", "2 regression outputs"),
]


@pytest.mark.parametrize("case", DETECTED, ids=[c[0] for c in DETECTED])
def test_type_of_target_table(case):
    _, target, kind, n_outputs, classes, encoding, fragment = case
    found = type_of_target(target)
    assert (found.kind, found.n_outputs, found.encoding) == (kind, n_outputs, encoding)
    assert str(found) == kind
    assert fragment in found.reason, found.reason
    if classes is None:
        assert found.classes is None
    else:
        assert found.classes.tolist() == classes


SKLEARN_NAMES = {"binary": "binary", "multiclass": "multiclass", "regression": "continuous",
                 "multilabel": "multilabel-indicator"}


@pytest.mark.parametrize("case_id", ["int01", "bool", "strings2", "minus_one_one", "ints3",
                                     "digits", "strings3", "fractional", "soft_1d", "multilabel"])
def test_agrees_with_scikit_learn_where_the_rules_coincide(case_id):
    sklearn_multiclass = pytest.importorskip("sklearn.utils.multiclass")
    target = next(c[1] for c in DETECTED if c[0] == case_id)
    assert SKLEARN_NAMES[type_of_target(target).kind] == sklearn_multiclass.type_of_target(target)


def test_where_we_differ_from_scikit_learn_on_purpose():
    sklearn_multiclass = pytest.importorskip("sklearn.utils.multiclass")
    # scikit-learn reads every whole-number float as a class: diabetes scores as 107 classes
    assert sklearn_multiclass.type_of_target(DIABETES_LIKE) == "multiclass"
    assert type_of_target(DIABETES_LIKE).kind is Task.REGRESSION
    # scikit-learn reads one-hot rows as a multi-label indicator; they are one class per row
    assert sklearn_multiclass.type_of_target(ONE_HOT) == "multilabel-indicator"
    assert type_of_target(ONE_HOT).kind == "multiclass"


# (id, target, fragments the message must contain)
REFUSED = [
    ("few_whole_floats", np.array([1.0, 2.0, 3.0, 1.0]), ["ambiguous", "task='multiclass'",
                                                            "task='regression'", "3 distinct whole"]),
    ("two_whole_floats", np.array([1.0, 2.0, 2.0]), ["ambiguous"]),
    ("constant", np.array([2, 2, 2]), ["one value for every example"]),
    ("constant_rows", np.array([[1, 0], [1, 0]]), ["the same row"]),
    ("integer_ids", np.arange(100), ["ambiguous", "100 distinct integers in 100 examples"]),
    ("int_matrix", np.array([[1, 2], [3, 4]]), ["ambiguous", "cast to float"]),
    ("nan", np.array([np.nan, 1.0, 0.0]), ["finite values", "NaN"]),
    ("inf", np.array([np.inf, 1.0, 0.0]), ["finite values"]),
    ("empty", np.array([]), ["at least one example"]),
    ("three_d", np.zeros((2, 2, 2)), ["shape [N] or [N, K]"]),
    ("scalar", np.array(1.0), ["shape [N] or [N, K]"]),
    ("string_matrix", np.array([["a", "b"], ["c", "d"]]), ["[N, K]"]),
    ("mixed_types", np.array([1, "a", None], dtype=object), ["a mix of numbers (1) and strings ('a')"]),
    ("complex", np.array([1 + 1j, 2.0]), ["real"]),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_ambiguous_or_bad_targets_are_refused_with_a_way_out(case):
    _, target, fragments = case
    with pytest.raises(LossInputError) as info:
        type_of_target(target)
    message = str(info.value)
    assert message.startswith("target:"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("target, found", [
    ([1, "a", 1], "numbers (1) and strings ('a')"),          # NumPy would read '1', 'a'
    (["b", 2.5], "strings ('b') and numbers (2.5)"),
    ([True, 2, 3], "bools (True) and numbers (2)"),          # NumPy would read 1, 2, 3
    ([True, 0, 1], "bools (True) and numbers (0)"),          # NumPy would read 1, 0, 1
    ([np.True_, np.int64(0)], "bools (True) and numbers (0)"),
    (np.array([True, 1, 0], dtype=object), "bools (True) and numbers (1)"),
    ([[0, 1], [1, "x"]], "numbers (0) and strings ('x')"),
    ((3, None, 4), "numbers (3) and NoneType (None)"),
])
def test_mixed_label_kinds_are_refused_not_coerced(target, found):
    with pytest.raises(LossInputError) as info:
        type_of_target(target)
    message = str(info.value)
    assert message.startswith("target: expected labels or values of one kind"), message
    assert f"a mix of {found}" in message, message


@pytest.mark.parametrize("target, kind", [([1, 2.5, 3], "regression"), ([np.int64(1), 2, 3], "multiclass"),
                                          (np.array(["a", "b", "a"], dtype=object), "binary"),
                                          ([False, True], "binary")])
def test_ints_and_floats_are_one_kind(target, kind):
    assert type_of_target(target).kind == kind


def test_mixed_classes_and_indices_name_their_argument():
    with pytest.raises(LossInputError, match="^classes: .*a mix of strings"):
        encode_labels(["a", "b"], classes=["a", 1])
    with pytest.raises(LossInputError, match="^classes: .*a mix of strings"):
        decode_labels(np.array([0, 1]), ["a", 1])
    with pytest.raises(LossInputError, match="^indices: .*a mix of numbers"):
        decode_labels([0, "1"], ["a", "b"])


# (id, target, task, kind, n_outputs, encoding)
TOLD = [
    ("few_floats_as_classes", np.array([1.0, 2.0, 3.0, 1.0]), "multiclass", "multiclass", 3, "labels"),
    ("few_floats_as_values", np.array([1.0, 2.0, 3.0, 1.0]), "regression", "regression", 1, "values"),
    ("ids_as_values", np.arange(100), "regression", "regression", 1, "values"),
    ("ids_as_classes", np.arange(100), "multi-class", "multiclass", 100, "labels"),
    ("soft_as_binary", np.array([0.2, 0.9, 0.5]), "binary", "binary", 1, "probabilities"),
    ("one_hot_as_multilabel", ONE_HOT, "multi-label", "multilabel", 3, "indicator"),
    ("probs_as_multiclass", PROBS, "multiclass", "multiclass", 3, "probabilities"),
    ("matrix_as_values", RNG.normal(size=(4, 2)), "regression", "regression", 2, "values"),
]


@pytest.mark.parametrize("case", TOLD, ids=[c[0] for c in TOLD])
def test_task_decides_where_the_data_allow_it(case):
    _, target, task, kind, n_outputs, encoding = case
    found = type_of_target(target, task=task)
    assert (found.kind, found.n_outputs, found.encoding) == (kind, n_outputs, encoding)
    assert "given" in found.reason


@pytest.mark.parametrize("target, task, argument, fragment", [
    (np.array([0, 1, 2]), "binary", "target", "exactly 2 distinct labels"),
    (np.array([0.5, 1.5, 2.5]), "multiclass", "target", "fractional"),
    (MULTI, "binary", "task", "3 columns"),
    (np.array([0, 1, 1]), "multilabel", "task", "one column"),
    (np.array(["a", "b"]), "regression", "task", "string labels"),
    (np.array([[0.5, 2.0], [1.0, 1.0]]), "multiclass", "target", "neither"),
    (np.array([[1, 2], [3, 4]]), "regression", "target", "cast to float"),
    (np.array([0, 1]), "ranking", "task", "one of"),
])
def test_task_that_the_data_contradict_raises(target, task, argument, fragment):
    with pytest.raises(LossInputError) as info:
        type_of_target(target, task=task)
    assert str(info.value).startswith(f"{argument}:") and fragment in str(info.value), str(info.value)


@pytest.mark.parametrize("case_id", ["int01", "ints3", "float01", "multilabel", "fractional"])
def test_every_backend_is_read_alike(backend, case_id):
    target = np.asarray(next(c[1] for c in DETECTED if c[0] == case_id))
    expected = type_of_target(target)
    found = type_of_target(to_backend(backend, target))
    assert (found.kind, found.n_outputs) == (expected.kind, expected.n_outputs)


def test_detection_does_not_write_into_the_target():
    target = np.array([3, 1, 2, 1])
    target.setflags(write=False)
    type_of_target(target)
    encode_labels(target)
    assert target.tolist() == [3, 1, 2, 1]


def test_encode_and_decode_round_trip_in_sorted_order():
    labels = np.array(["dog", "cat", "bird", "cat"])
    indices, classes = encode_labels(labels)
    assert classes.tolist() == ["bird", "cat", "dog"]
    assert indices.tolist() == [2, 1, 0, 1] and indices.dtype == np.int64
    assert decode_labels(indices, classes).tolist() == labels.tolist()


def test_encode_with_given_classes_keeps_their_order():
    indices, classes = encode_labels([7, 3, 7], classes=[7, 3])
    assert indices.tolist() == [0, 1, 0] and classes.tolist() == [7, 3]


def test_encode_keeps_the_target_shape():
    indices, _ = encode_labels(np.array([["a", "b"], ["b", "a"]]))
    assert indices.shape == (2, 2) and indices.tolist() == [[0, 1], [1, 0]]


def test_unknown_label_is_named():
    with pytest.raises(LossInputError, match=r"^target: expected labels among classes .* got label 'cow'"):
        encode_labels(["cat", "cow"], classes=["cat", "dog"])


def test_repeated_classes_are_refused():
    with pytest.raises(LossInputError, match="^classes: expected distinct labels"):
        encode_labels(["a"], classes=["a", "a"])


def test_decode_checks_the_index_range_and_dtype():
    with pytest.raises(LossInputError, match=r"^indices: expected indices in \[0, 2\)"):
        decode_labels(np.array([0, 2]), ["a", "b"])
    with pytest.raises(LossInputError, match="^indices: expected integer class indices"):
        decode_labels(np.array([0.0, 1.0]), ["a", "b"])


def test_decode_reads_indices_of_any_backend(backend):
    indices = to_backend(backend, np.array([1, 0, 1]))
    assert decode_labels(indices, np.array(["neg", "pos"])).tolist() == ["pos", "neg", "pos"]


def test_two_soft_label_values_are_soft_labels_for_task_binary():
    """The advice "pass task='binary' for soft labels" failed when the soft labels had two values."""
    for y in ([0.2, 0.7, 0.2, 0.7], [0.0, 0.5, 0.5]):
        info = lk.type_of_target(np.array(y), task="binary")
        assert info.kind is lk.Task.BINARY and info.classes is None and "soft labels" in info.reason
    assert lk.type_of_target(np.array([0.0, 1.0, 1.0]), task="binary").classes.tolist() == [0.0, 1.0]


def test_classes_must_be_a_list_of_labels():
    from losskit.targets import decode_labels, encode_labels

    for classes in ([], [[0, 1]], "ab"):
        with pytest.raises(lk.LossInputError, match="^classes: "):
            encode_labels([0, 1], classes=classes)
    with pytest.raises(lk.LossInputError, match="^classes: "):
        decode_labels([0], "ab")


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_a_uint64_label_past_int64_is_out_of_range_not_an_ignored_minus_one(library):
    """On torch too (2**64 - 100 was cast to -100 and ignored without a word: torch compares no uint64, and the
    check was skipped for it), and through losskit.torch's module and the fused linear CE."""
    z, hidden, classifier = np.zeros((2, 3)), np.ones((2, 4)), np.ones((3, 4))
    bad, good = np.array([0, 2**64 - 100], np.uint64), np.array([0, 2], np.uint64)
    calls = [lambda y: lk.softmax_cross_entropy(z, y, ignore_index=-100),
             lambda y: lk.linear_cross_entropy(hidden, classifier, y, ignore_index=-100)]
    if library == "torch":
        torch = pytest.importorskip("torch")
        lt = pytest.importorskip("losskit.torch")
        z, hidden, classifier = (torch.from_numpy(a) for a in (z, hidden, classifier))
        bad, good = (torch.from_numpy(y.astype(np.int64)).to(torch.uint64) for y in (bad, good))
        calls += [lambda y: lt.SoftmaxCrossEntropy(ignore_index=-100)(z, y),
                  lambda y: lt.linear_cross_entropy(hidden, classifier, y, ignore_index=-100)]
    for call in calls:
        with pytest.raises(lk.LossInputError, match="^target: .*label 9223372036854775807"):
            call(bad)
        assert float(call(good)) == pytest.approx(np.log(3), rel=1e-15)


def test_a_bfloat16_target_or_one_that_requires_grad_is_read_as_its_float32_values():
    """head_for / type_of_target read a torch bfloat16 target (raw TypeError: unsupported ScalarType), a JAX one
    (refused: 'dtype bfloat16' is not a real dtype to NumPy) and a torch tensor that requires grad (raw
    RuntimeError: numpy() of a tensor that requires grad) as their float32 values, as they read float32."""
    torch = pytest.importorskip("torch")
    values = [0.0, 1.0, 1.0, 0.0]
    expected = type(lk.head_for(np.array(values, np.float32)))
    targets = [torch.tensor(values, dtype=torch.bfloat16), torch.tensor(values, requires_grad=True)]
    jnp = pytest.importorskip("jax.numpy")
    targets.append(jnp.asarray(values, dtype=jnp.bfloat16))
    for target in targets:
        assert type(lk.head_for(target)) is expected
    soft = torch.tensor([0.1, 0.5, 2.3], requires_grad=True)
    assert type(lk.head_for(soft)) is type(lk.head_for(np.array([0.1, 0.5, 2.3], np.float32)))


def test_encode_labels_refuses_none():
    """None was encoded as one label of one class: (array(0), array([None]))."""
    from losskit.targets import encode_labels

    with pytest.raises(lk.LossInputError, match="^target: expected an array or a list of labels, got None"):
        encode_labels(None)


def test_probability_rows_are_detected_by_the_losses_own_row_sum_bound():
    """Detection took rows summing to 1 within allclose's ~1.1e-5, the losses within their own bound (1e-3 +
    8 sqrt(K) eps in float32, 1e-6 + ... in float64): float32 teacher probabilities saved to 4 decimals (rows
    off by 3e-4) were read as 7 regression outputs, refused even with task='multiclass', while the loss took
    them; float64 rows off by 5e-6 were detected as probabilities the loss refused (found in review)."""
    rounded = np.round(np.full((2, 7), 1 / 7), 4).astype(np.float32)  # rows sum to 1.0003
    lk.softmax_cross_entropy(np.zeros((2, 7), np.float32), rounded)  # the loss takes them
    assert lk.type_of_target(rounded).encoding == "probabilities"
    assert lk.type_of_target(rounded, task="multiclass").encoding == "probabilities"
    off = np.array([[0.5, 0.5 + 5e-6], [0.25, 0.75]])
    with pytest.raises(lk.LossInputError, match="sum to 1"):
        lk.softmax_cross_entropy(np.zeros((2, 2)), off)  # the loss refuses them in float64
    assert lk.type_of_target(off).kind is not lk.Task.MULTICLASS
    # float16 rows carry float16's rounding (off by 2.4e-4): probability rows, as the loss takes them
    half = np.full((3, 10), 0.1, np.float16)  # rows sum to 0.99976 in float16's values
    lk.softmax_cross_entropy(np.zeros((3, 10), np.float32), half)
    assert abs(float(half.astype(np.float64).sum(1)[0]) - 1) > 1e-4
    assert lk.type_of_target(half).encoding == "probabilities"


def test_a_masked_target_is_refused_by_name():
    """A NumPy masked array's masked entry was counted as a class ("3 distinct values (0, 1, 0.0)") by
    type_of_target, encode_labels and head_for, where the losses and head.encode refuse it (found in review)."""
    y = np.ma.array([0, 1, 1, 0], mask=[0, 0, 1, 0])
    for call in (lk.type_of_target, encode_labels, lk.head_for):
        with pytest.raises(lk.LossInputError, match="^target: expected an array without a mask"):
            call(y)
