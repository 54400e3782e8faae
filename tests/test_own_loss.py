"""A user's own loss, written as docs/own-loss.md says (tests/own_losses.py), gets everything the
catalogue's losses get: the call forms, the compiled kernel, heads, torch, JAX and GBDT objectives.
References are the closed forms of exp(-s z), s = 2y - 1, worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from own_losses import ExpMarginLoss, ScaledCauchyLoss


@pytest.fixture(autouse=True)
def _registered():
    """The README defines an ExpMarginLoss of its own (same name): these tests use tests/own_losses.py's."""
    for cls in (ExpMarginLoss, ScaledCauchyLoss):
        lk.losses.registry.REGISTRY.pop(cls.name, None)
        lk.losses.registry.register(cls)


RNG = np.random.default_rng(7)
Z = RNG.normal(size=40)
Y = (RNG.uniform(size=40) > 0.5).astype(np.float64)
S = 2 * Y - 1
W = RNG.uniform(0.5, 2.0, size=40)


def test_value_gradient_hessian_are_the_closed_forms():
    loss = ExpMarginLoss()
    np.testing.assert_allclose(float(loss(Z, Y)), np.mean(np.exp(-S * Z)), rtol=1e-14)
    value, grad = loss.value_and_grad(Z, Y, weight=W)
    np.testing.assert_allclose(float(value), np.sum(W * np.exp(-S * Z)) / W.sum(), rtol=1e-14)
    np.testing.assert_allclose(grad, -S * np.exp(-S * Z) * W / W.sum(), rtol=1e-14)
    np.testing.assert_allclose(loss.hessian_diag(Z, Y), np.exp(-S * Z) / Z.size, rtol=1e-14)
    none = ExpMarginLoss(reduction="none")(Z, Y, weight=W)
    np.testing.assert_allclose(float(ExpMarginLoss(reduction="sum")(Z, Y, weight=W)), none.sum(), rtol=1e-14)
    np.testing.assert_allclose(float(loss(Z, Y, normalizer=8.0)), np.sum(np.exp(-S * Z)) / 8.0, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_kernel_is_compiled_from_the_formula(dtype):
    z, y = Z.astype(dtype), Y.astype(dtype)
    assert ExpMarginLoss.kernel_name() == "formula"
    value, grad = ExpMarginLoss(impl="fused").value_and_grad(z, y)
    assert grad.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(float(value), np.mean(np.exp(-S * Z)), rtol=tol)
    np.testing.assert_allclose(grad, -S * np.exp(-S * Z) / Z.size, rtol=tol, atol=1e-9 if dtype == np.float32 else 0)


def test_an_overflowing_element_is_answered_by_the_reference():
    z = np.array([1000.0, 0.0])  # exp(1000) overflows: the kernel flags the row, the reference gives inf
    value = ExpMarginLoss(impl="auto")(z, np.array([0.0, 1.0]))
    assert np.isinf(float(value))


def test_heads_take_it_by_name_and_as_an_object():
    for head in (lk.BinaryHead(loss="exp_margin_loss"), lk.BinaryHead(loss=ExpMarginLoss())):
        assert type(head.loss_object) is ExpMarginLoss
        np.testing.assert_allclose(float(head.loss(Z[:, None], Y)), np.mean(np.exp(-S * Z)), rtol=1e-14)
    assert "exp_margin_loss" in lk.heads.TASK_LOSSES["binary"]
    with pytest.raises(lk.LossInputError, match="loss"):
        lk.MulticlassHead(3, loss="exp_margin_loss")


def test_registry_and_function_form():
    cls, fn = lk.REGISTRY["exp_margin_loss"]
    assert cls is ExpMarginLoss
    np.testing.assert_allclose(float(fn(Z, Y, weight=W)), np.sum(W * np.exp(-S * Z)) / W.sum(), rtol=1e-14)
    assert "exp_margin_loss" not in lk.losses.catalogue()
    # docs/own-loss.md's ``lk.exp_margin_loss(z, y, weight=w)``: the package's attribute, found after import
    assert lk.exp_margin_loss is fn
    with pytest.raises(AttributeError, match="no_such_loss"):
        lk.no_such_loss  # noqa: B018


def test_a_loss_with_declared_options_pickles_with_its_torch_module_and_gbdt_objective():
    """A declared option's record was made in ``types`` (make_dataclass), where pickle looked for it: a
    Huber loss, a user's loss with an option, its torch module and a fitted model holding its objective
    could not be saved."""
    import pickle

    for loss in (ScaledCauchyLoss(scale=2.5), lk.HuberLoss(delta=0.3), lk.SmoothL1Loss(beta=0.2)):
        again = pickle.loads(pickle.dumps(loss))
        assert type(again) is type(loss) and again.options.as_dict() == loss.options.as_dict()
        np.testing.assert_array_equal(np.asarray(again(Z, Y)), np.asarray(loss(Z, Y)))
    torch = pytest.importorskip("torch")
    import io

    import losskit.torch as lt

    buffer = io.BytesIO()
    torch.save(lt.module(ScaledCauchyLoss(scale=2.5)), buffer)
    buffer.seek(0)
    module = torch.load(buffer, weights_only=False)
    e = Z - Y
    np.testing.assert_allclose(float(module(torch.tensor(Z), torch.tensor(Y))),
                               np.mean(3.125 * np.log1p((e / 2.5) ** 2)), rtol=1e-13)
    for library in ("xgboost", "lightgbm"):
        gbdt = pytest.importorskip(f"losskit.{library}")
        objective, metric = pickle.loads(pickle.dumps((gbdt.objective(ScaledCauchyLoss(scale=2.5)),
                                                       gbdt.metric(ScaledCauchyLoss(scale=2.5)))))
        grad, _ = objective(Y, Z) if library == "xgboost" else objective(Y, Z, None)
        np.testing.assert_allclose(grad, e / (1 + (e / 2.5) ** 2), rtol=1e-13)
        assert objective.__name__ == metric.__name__ == "scaled_cauchy_loss"


def test_a_catalogue_name_is_refused_and_a_class_defined_again_replaces_itself():
    """A class named ``mean_squared_error`` replaced the catalogue's in the registry: heads and eval by name
    then ran its formula while ``lk.mean_squared_error`` did not. Now the definition is refused; the same
    class defined again (a notebook cell run twice) still replaces its earlier self."""
    with pytest.raises(TypeError, match="^MyMSE.name: 'mean_squared_error' is the name of losskit's MeanSquaredError"):
        class MyMSE(lk.ElementwiseLoss):
            name = "mean_squared_error"
            target = "value"

            def value(self, xp, z, y):
                return (z - y) ** 4

            def derivative(self, xp, z, y):
                return 4 * (z - y) ** 3
    assert lk.REGISTRY["mean_squared_error"][0] is lk.MeanSquaredError
    # a short name of a catalogue loss of the same task: the head kept resolving "mae" to AbsoluteError
    with pytest.raises(TypeError, match="^MyMAE.aliases: 'mae' names losskit's AbsoluteError"):
        class MyMAE(lk.ElementwiseLoss):
            name = "my_test_mae"
            aliases = ("mae",)
            target = "value"

            def value(self, xp, z, y):
                return xp.abs(z - y)
    assert "my_test_mae" not in lk.REGISTRY and lk.RegressionHead(loss="mae").loss_object.name == "absolute_error"
    with pytest.raises(TypeError, match="^Huberish.name: 'huber' is a short name of losskit's HuberLoss"):
        class Huberish(lk.ElementwiseLoss):
            name = "huber"
            target = "value"

            def value(self, xp, z, y):
                return xp.abs(z - y)
    # a named subclass inherits its parent's aliases: they stay the parent's, and the subclass registers
    try:
        class MyHuber(lk.HuberLoss):
            name = "my_test_huber"
        assert lk.REGISTRY["my_test_huber"][0] is MyHuber
        assert lk.RegressionHead(loss="huber").loss_object.name == "huber_loss"
        # and a head takes it by its name or as an object (both were refused: the heads' table held the classes
        # under their aliases only, and "huber" is the parent's; found in review)
        assert type(lk.RegressionHead(loss="my_test_huber").loss_object) is MyHuber
        assert type(lk.RegressionHead(loss=MyHuber(delta=2.0)).loss_object) is MyHuber
    finally:
        lk.REGISTRY.pop("my_test_huber", None)
    made = []
    try:
        for power in (2, 4):
            class Redefined(lk.ElementwiseLoss):
                name = "redefined_test_loss"
                target = "value"
                exponent = lk.option(float(power))

                def value(self, xp, z, y):
                    return (z - y) ** self.exponent

                def derivative(self, xp, z, y):
                    return self.exponent * (z - y) ** (self.exponent - 1)
            made.append(Redefined)
        assert lk.REGISTRY["redefined_test_loss"][0] is made[1]
    finally:
        lk.REGISTRY.pop("redefined_test_loss", None)  # the other tests' loops over the registry never see it


def test_a_value_only_formula_is_compiled_for_its_value_and_its_gradient_is_not_written():
    """``lk.option``'s docstring example declares ``value`` alone. Its second small call raised numba's
    TypingError (the one small-call variant writes a gradient, and there is no derivative to compile);
    now every call gives the closed form, compiled too, and a gradient is the reference's clear error."""
    from losskit.losses import _compiled

    class ValueOnly(lk.ElementwiseLoss):
        scale = lk.option(2.0, low=0.0, low_open=True)

        def value(self, xp, z, y):
            return self.scale * (z - y) ** 2

    z, y = np.linspace(-1.0, 1.0, 10), np.full(10, 0.25)
    expected = float(np.mean(3.0 * (z - y) ** 2))
    for _ in range(3):  # the reference answers while the kernel compiles; then the kernel
        assert float(ValueOnly(scale=3.0)(z, y)) == pytest.approx(expected, rel=1e-14)
        _compiled.wait_for_compiles()
    assert float(ValueOnly(scale=3.0, impl="fused")(z, y)) == pytest.approx(expected, rel=1e-14)
    for impl in ("auto", "fused", "xp"):
        with pytest.raises(NotImplementedError, match="ValueOnly writes no derivative"):
            ValueOnly(impl=impl).value_and_grad(z, y)


def test_a_function_outside_the_formula_namespace_is_refused_where_the_class_is_written():
    """``xp.erf`` ran on NumPy arrays and, on the first compiled call, raised numba's multi-screen
    TypingError; now the class statement raises, naming the class, the method and what ``xp`` offers.
    The same holds in a comprehension and in a helper marked ``formula_function``."""
    from losskit.losses.formula import FUNCTIONS

    with pytest.raises(TypeError, match=r"ErfLoss\.derivative uses xp\.erf, which a formula cannot") as caught:
        class ErfLoss(lk.ElementwiseLoss):
            target = "value"

            def value(self, xp, z, y):
                return (z - y) * (z - y)

            def derivative(self, xp, z, y):
                return 2 * xp.erf(z - y)
    assert all(name in str(caught.value) for name in FUNCTIONS)
    assert "losskit.losses.formula.FUNCTIONS" in str(caught.value)
    with pytest.raises(TypeError, match=r"Product\.value uses xp\.erf"):
        class Product(lk.ElementwiseLoss):  # two locals in a row: one instruction on Python 3.13
            target = "value"

            def value(self, xp, z, y):
                return z * xp.erf(y)
    with pytest.raises(TypeError, match=r"Squares\.value uses xp\.square"):
        class Squares(lk.ElementwiseLoss):
            target = "value"

            def value(self, xp, z, y):
                return sum([xp.square(v) for v in (z, y)])
    with pytest.raises(TypeError, match=r"cube uses xp\.power"):
        @lk.formula_function
        def cube(xp, u):
            return xp.power(u, 3)
    assert "cube" not in [f.__name__ for f in lk.losses.formula.FORMULA_FUNCTIONS]

    class Allowed(lk.ElementwiseLoss):  # eps, constant and a name of FUNCTIONS pass
        target = "value"

        def value(self, xp, z, y):
            return xp.constant(xp.eps) + xp.log1p(xp.abs(z - y))

    z = np.array([0.5, -2.0])
    assert float(Allowed()(z, np.zeros(2))) == pytest.approx(np.finfo(float).eps + np.mean(np.log1p(np.abs(z))),
                                                             rel=1e-15)


def test_declared_option_is_checked_and_reaches_the_kernel():
    with pytest.raises(lk.LossInputError, match="scale"):
        ScaledCauchyLoss(scale=-1.0)
    with pytest.raises(lk.LossInputError, match="delta"):
        ScaledCauchyLoss(delta=1.0)
    e = Z - Y
    for c in (0.5, 2.0):
        expected = np.mean(0.5 * c * c * np.log1p((e / c) ** 2))
        for impl in ("xp", "fused"):
            np.testing.assert_allclose(float(ScaledCauchyLoss(scale=c, impl=impl)(Z, Y)), expected, rtol=1e-13)


def test_target_kind_is_checked():
    with pytest.raises(lk.LossInputError, match="target"):
        ExpMarginLoss()(Z, Y + 2)


def test_torch_module_with_analytic_backward_and_compile():
    torch = pytest.importorskip("torch")
    import losskit.torch as lt

    module = lt.module(ExpMarginLoss())
    assert isinstance(module, torch.nn.Module)
    z = torch.tensor(Z, requires_grad=True)
    value = module(z, torch.tensor(Y))
    value.backward()
    np.testing.assert_allclose(z.grad.numpy(), -S * np.exp(-S * Z) / Z.size, rtol=1e-13)
    compiled = torch.compile(lambda a, b: module(a, b), fullgraph=True)
    z2 = torch.tensor(Z, requires_grad=True)
    compiled(z2, torch.tensor(Y)).backward()
    np.testing.assert_allclose(z2.grad.numpy(), -S * np.exp(-S * Z) / Z.size, rtol=1e-13)


def test_jax_loss_fn_under_jit_grad():
    jax = pytest.importorskip("jax")
    import losskit.jax as lj

    f = lj.loss_fn(ExpMarginLoss())
    grad = jax.jit(jax.grad(lambda z: f(z, jax.numpy.asarray(Y))))(jax.numpy.asarray(Z))
    np.testing.assert_allclose(np.asarray(grad), -S * np.exp(-S * Z) / Z.size, rtol=1e-13)


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_gbdt_objective_gives_the_per_row_derivatives(library):
    module = pytest.importorskip(f"losskit.{library}")
    objective = module.objective(ExpMarginLoss())
    grad, hess = objective(Y, Z) if library == "xgboost" else objective(Y, Z, None)
    np.testing.assert_allclose(grad, -S * np.exp(-S * Z), rtol=1e-13)
    np.testing.assert_allclose(hess, np.exp(-S * Z), rtol=1e-13)
    assert module.params(ExpMarginLoss())["objective"].__name__ == "exp_margin_loss"


def test_a_subclass_never_runs_a_kernel_written_for_other_math():
    class TwiceCE(lk.SoftmaxCrossEntropy):
        def _terms(self, plan, order):
            terms = super()._terms(plan, order)
            return type(terms)(2 * terms.loss, None if terms.grad is None else 2 * terms.grad)

    assert lk.SoftmaxCrossEntropy.kernel_name() == "softmax_ce"
    # Poly-1 declares its own kernel (fused/rows.py); a user's subclass of it or of softmax CE has none
    assert TwiceCE.kernel_name() is None and lk.PolyCrossEntropy.kernel_name() == "poly_cross_entropy"
    assert type("TwicePoly", (lk.PolyCrossEntropy,), {}).kernel_name() is None
    z, y = RNG.normal(size=(5, 3)), np.array([0, 1, 2, 1, 0])
    np.testing.assert_allclose(float(TwiceCE()(z, y)), 2 * float(lk.SoftmaxCrossEntropy(impl="xp")(z, y)), rtol=1e-14)


@pytest.mark.parametrize("loss, option", [(lk.HuberLoss(), "delta"), (ScaledCauchyLoss(), "scale"),
                                          (lk.SoftmaxCrossEntropy(), "label_smoothing")])
def test_an_option_set_after_construction_is_refused_naming_replace(loss, option):
    """Every path reads the options checked at construction: a value set afterwards changed the array-API
    path's formula alone (HuberLoss().delta = 5 gave 4.5 at e = 3 there and 2.5 from the kernel)."""
    before = float(loss.replace(reduction="sum")(np.array([[3.0, 0.0]]), np.array([1]) if option == "label_smoothing"
                                                  else np.zeros((1, 2))))
    with pytest.raises(AttributeError, match=rf"{type(loss).__name__}\.{option} is fixed at construction.*"
                                             rf"loss\.replace\({option}=\.\.\.\)"):
        setattr(loss, option, 0.5)
    with pytest.raises(AttributeError, match="options is fixed"):
        loss.options = loss.replace(reduction="none").options
    assert float(loss.replace(reduction="sum")(np.array([[3.0, 0.0]]), np.array([1]) if option == "label_smoothing"
                                               else np.zeros((1, 2)))) == before
    loss.note = "mine"  # an attribute of one's own is one's own
    assert loss.note == "mine"


def test_a_subclass_init_that_assigns_an_option_its_own_value_still_works():
    """A subclass's __init__ that assigns what it passed on (as code written before options were fixed does)
    changes nothing, and is taken; another value is refused."""
    class Huber2(lk.HuberLoss):
        def __init__(self, delta=1.0, extra=3, **options):
            super().__init__(delta=delta, **options)
            self.extra = extra
            self.delta = delta
            self.options = self.options

    loss = Huber2(2)
    assert loss.delta == 2.0 and loss.extra == 3
    with pytest.raises(AttributeError, match="Huber2.delta is fixed"):
        loss.delta = 3.0


def _formula_of(value_source: str, namespace: dict | None = None):
    """A loss class whose value is ``value_source`` (a return expression), made where it is refused or not."""
    code = (f"class Probe(lk.ElementwiseLoss):\n    target = 'value'\n    k = 2.0\n    c = lk.option(1.0)\n"
            f"    def helper(self, e):\n        return e\n"
            f"    def value(self, xp, z, y):\n        return {value_source}\n")
    scope = {"lk": lk, "math": __import__("math"), "np": np, **(namespace or {})}
    exec(code, scope)
    return scope["Probe"]


@pytest.mark.parametrize(("source", "named"), [
    ("self.k * (z - y) ** 2", "reads self.k, which is not an option"),
    ("self.helper(z - y) ** 2", "reads self.helper, which is not an option"),
    ("math.erf(z - y)", "uses math.erf, which a formula cannot"),
    ("np.square(z - y)", "uses np.square, which a formula cannot"),
    ("int(z - y)", "uses int, which a formula cannot"),
    ("max(z - y, 0.0)", "uses max, which a formula cannot"),
    ("plain(z - y)", "uses plain, which a formula cannot"),
    ("super().value(xp, z, y)", r"uses super\(\), which a formula cannot .*a helper marked @lk.formula_function"),
])
def test_a_formula_that_one_path_cannot_run_is_refused_when_the_class_is_made(source, named):
    """A class constant or a method read on self, a module's function, a builtin such as max, or a helper not
    marked @lk.formula_function: the compiled kernel's self holds the options alone, math.erf and max run in
    the kernel but not on arrays. Each gave a raw numba TypingError from a second small call (or the first
    large one), or failed on arrays by the call's size; now a TypeError naming it when the class is made."""
    with pytest.raises(TypeError, match=f"^Probe.value {named}"):
        _formula_of(source, {"plain": lambda e: e})


def test_what_a_formula_may_use_is_accepted():
    """Options, a marked helper, abs and float, numbers (a module's too: math.pi) and xp's functions: accepted,
    and computed."""
    @lk.formula_function
    def halved(xp, e):
        return e * 0.5

    cls = _formula_of("halved(xp, self.c * abs(z - y)) + float(2) * TWO + xp.exp(z - z) - 1 + 0 * math.pi",
                      {"halved": halved, "TWO": 2.0})
    np.testing.assert_allclose(cls(reduction="none")(np.array([3.0, -1.0]), np.zeros(2)), [5.5, 4.5], rtol=1e-15)


def test_a_subclass_writing_its_own_formula_does_not_keep_its_parents_gbdt_curvature():
    """Huber's "irls" rests on its formula's shape (a concave function of e^2): a subclass that writes another
    formula starts from the default, as it does for of_error."""
    class Quartic(lk.HuberLoss):
        def value(self, xp, z, y):
            return (z - y) ** 4 / 4

        def derivative(self, xp, z, y):
            return (z - y) ** 3

    class SameFormula(lk.HuberLoss):
        pass

    assert lk.HuberLoss.gbdt_curvature == "irls" and SameFormula.gbdt_curvature == "irls"
    assert Quartic.gbdt_curvature == "weight"
    # so does shares_terms, a fact of the Gaussian NLL's _terms (losskit.jax's two passes)
    class OwnTerms(lk.GaussianNLL):
        def _terms(self, plan, order):
            return lk.GaussianNLL._terms(self, plan, order)

    class SameTerms(lk.GaussianNLL):
        pass

    assert lk.GaussianNLL.shares_terms and SameTerms.shares_terms and not OwnTerms.shares_terms


def test_another_class_taking_a_users_registered_name_is_refused():
    """Two modules' classes of one name: the second replaced the first in the registry without a word, and a
    torch module made from the first (which finds its loss by name) then computed the second's formula. Now the
    second is refused naming the first; the same class defined again still replaces itself."""
    scope = {"lk": lk}
    first = ("class Twin(lk.ElementwiseLoss):\n    name = 'twin_test_loss'\n    target = 'value'\n"
             "    def value(self, xp, z, y):\n        return (z - y) * (z - y)\n")
    try:
        exec(compile(first, "first", "exec"), scope)
        original = scope["Twin"]
        with pytest.raises(TypeError, match=r"^Other.name: 'twin_test_loss' is the name of builtins\.Twin; "):
            exec(compile(first.replace("class Twin", "class Other").replace("(z - y) * (z - y)", "xp.abs(z - y)"),
                         "second", "exec"), scope)
        assert lk.REGISTRY["twin_test_loss"][0] is original
        exec(compile(first.replace("(z - y) * (z - y)", "xp.abs(z - y)"), "again", "exec"), scope)  # a cell re-run
        assert lk.REGISTRY["twin_test_loss"][0] is scope["Twin"] is not original
    finally:
        lk.REGISTRY.pop("twin_test_loss", None)


def test_a_declared_options_value_is_in_repr_and_its_doc_in_help():
    """docs/own-loss.md: `ScaledCauchyLoss(scale=0.5)` shows its value in `repr`, and `help` shows the
    option in the signature with its `doc=` text, default and bounds (the text was stored and never read)."""
    import pydoc

    assert "scale=0.5" in repr(ScaledCauchyLoss(scale=0.5))
    text = pydoc.render_doc(ScaledCauchyLoss, renderer=pydoc.plaintext)
    assert "scale=1.0" in text and "scale: the error scale c (default 1.0; a finite number > 0)" in text


def test_an_indefinite_hessian_gets_bounded_gbdt_steps_unless_the_class_says_otherwise():
    """docs/own-loss.md: a loss whose Hessian can be negative (`hessian = lk.Hessian.INDEFINITE`) hands a GBDT
    library the bounded curvature (at least |g| / 4: a row's step at most four margin units), as the catalogue's
    non-convex losses do; floored alone, a leaf of such rows stepped by 10^4 (docs/gbdt.md)."""
    class WelschLoss(lk.ElementwiseLoss):
        hessian = lk.Hessian.INDEFINITE

        def value(self, xp, z, y):
            return 1 - xp.exp(-0.5 * (z - y) * (z - y))

    class FlooredWelsch(WelschLoss):
        gbdt_curvature = "weight"

    assert WelschLoss().gbdt_curvature == "bounded" and FlooredWelsch().gbdt_curvature == "weight"
    assert lk.HuberLoss().gbdt_curvature == "irls" and lk.MeanSquaredError().gbdt_curvature == "weight"


def test_the_compiled_maximum_and_minimum_keep_a_nan_as_the_arrays_do():
    """The kernel's maximum was ``x if x >= y else y``: a NaN x gave y, a finite loss where the array path's (and
    np.maximum's) was NaN, and no flag sent the call to the reference (found in review). The two paths agree."""
    class FloorLog(lk.ElementwiseLoss):  # log(z) - y floored at -5, capped at 5: NaN for z < 0
        def value(self, xp, z, y):
            return xp.minimum(xp.maximum(xp.log(z) - y, -5.0), 5.0)

        def derivative(self, xp, z, y):
            return xp.where((xp.log(z) - y > -5.0) & (xp.log(z) - y < 5.0), 1.0 / z, 0.0)

    z, y = np.array([-1.0, 0.25, 4.0]), np.zeros(3)
    fused = FloorLog(impl="fused", reduction="none")(z, y)
    reference = FloorLog(impl="xp", reduction="none")(z, y)
    assert np.isnan(reference[0]) and np.isnan(fused[0])
    np.testing.assert_array_equal(fused[1:], reference[1:])
    assert np.isnan(FloorLog(impl="fused")(z, y))  # the mean: NaN, as np.mean of the reference's


def test_python_numbers_in_any_formula_function_run_on_torch_arrays():
    """``xp.log(2 * self.b)`` (a Python number) ran on NumPy, JAX and the kernel, and raised torch's raw TypeError
    ("log(): argument 'input' must be Tensor, not float") on every torch path (found in review)."""
    torch = pytest.importorskip("torch")

    class LaplaceNLL(lk.ElementwiseLoss):
        b = lk.option(1.0, low=0.0, low_open=True)

        def value(self, xp, z, y):
            return xp.abs(z - y) / self.b + xp.log(2 * self.b) + xp.sigmoid(0.0) - xp.log1p_unit(1.0) * 0

        def derivative(self, xp, z, y):
            return xp.sign(z - y) / self.b

        def second_derivative(self, xp, z, y):
            return xp.zeros_like(z)

    loss = LaplaceNLL(b=2.0, impl="xp")
    z, y = np.array([1.0, -2.0, 3.0]), np.zeros(3)
    expected = np.mean(np.abs(z) / 2 + np.log(4.0) + 0.5)  # worked by hand
    assert float(loss(z, y)) == pytest.approx(expected, rel=1e-15)
    assert float(loss(torch.tensor(z), torch.tensor(y))) == pytest.approx(expected, rel=1e-15)
    np.testing.assert_array_equal(loss.hessian_diag(torch.tensor(z), torch.tensor(y)).numpy(), np.zeros(3))


def test_a_subclass_that_keeps_its_parents_formula_keeps_its_link():
    """A subclass of the exponential loss (sigmoid(2z), half the log-odds) was given the logit link: its best
    constant came out twice the minimiser and its head's probabilities were sigmoid(z) (found in review). One
    that writes its own formula takes the binary default, the logit."""
    class Renamed(lk.ExponentialLoss):
        pass

    class Own(lk.ExponentialLoss):
        def value(self, xp, z, y):
            return xp.softplus(-(2 * y - 1) * z)

        def derivative(self, xp, z, y):
            return -(2 * y - 1) * xp.sigmoid((1 - 2 * y) * z)

    assert Renamed.link is lk.HALF_LOGIT is lk.ExponentialLoss.link and Own.link is lk.LOGIT
    y = np.array([1.0, 1.0, 1.0, 0.0])
    assert Renamed().best_constant(y) == pytest.approx(0.5 * np.log(3.0), rel=1e-12)  # half the log-odds
    head = lk.BinaryHead(loss=lk.ExponentialLoss())
    assert float(head.predict_proba(np.array([0.5 * np.log(3.0)]))[0]) == pytest.approx(0.75, rel=1e-12)


def test_a_sum_over_outputs_of_a_value_target_is_a_regression():
    """``over_last_axis = "sum"`` made every loss a multi-label one: a sum of squared errors over outputs was
    refused by RegressionHead and taken by MultilabelHead, which read sigmoids of regression outputs (found in
    review)."""
    class SumSquares(lk.ElementwiseLoss):
        name = "sum_squares_test_loss"
        over_last_axis = "sum"

        def value(self, xp, z, y):
            return (z - y) * (z - y)

        def derivative(self, xp, z, y):
            return 2 * (z - y)

    try:
        assert SumSquares.task is lk.Task.REGRESSION
        head = lk.RegressionHead(3, loss="sum_squares_test_loss")
        assert float(head.loss(np.array([[1.0, 2.0, 3.0]]), np.zeros((1, 3)))) == 14.0
        with pytest.raises(lk.LossInputError, match="^loss: expected"):
            lk.MultilabelHead(3, loss="sum_squares_test_loss")
    finally:
        lk.REGISTRY.pop("sum_squares_test_loss", None)


#: the body of a user's logistic loss on 0/1 targets, for the class statements these tests run as a cell would
_LOGISTIC_BODY = ("    target = 'binary'\n    def value(self, xp, z, y):\n        return xp.softplus(-(2 * y - 1) * z)\n"
                  "    def derivative(self, xp, z, y):\n        return -(2 * y - 1) * xp.sigmoid((1 - 2 * y) * z)\n")


def test_a_users_alias_may_not_take_another_users_loss_name_in_a_head():
    """One user loss's alias silently took another's registered name in a head (the table of short names is read
    first), and two users' aliases resolved to whichever registered first (found in review): refused, as a
    clash with the catalogue's names is."""
    scope = {"lk": lk}
    body = _LOGISTIC_BODY
    try:
        exec(compile("class D(lk.ElementwiseLoss):\n    name = 'alias_test_d'\n    aliases = ('my_logistic',)\n"
                     + body, "d", "exec"), scope)
        with pytest.raises(TypeError, match=r"^C\.name: 'my_logistic' is a short name of builtins\.D in a binary head"):
            exec(compile("class C(lk.ElementwiseLoss):\n    name = 'my_logistic'\n" + body, "c", "exec"), scope)
        with pytest.raises(TypeError, match=r"^E\.aliases: 'my_logistic' names builtins\.D in a binary head"):
            exec(compile("class E(lk.ElementwiseLoss):\n    name = 'alias_test_e'\n    aliases = ('my_logistic',)\n"
                         + body, "e", "exec"), scope)
        assert type(lk.BinaryHead(loss="my_logistic").loss_object) is scope["D"]
    finally:
        for name in ("alias_test_d", "my_logistic", "alias_test_e"):
            lk.REGISTRY.pop(name, None)


@pytest.mark.parametrize("option", ["weight", "normalizer", "out", "hessian", "link", "plan"])
def test_an_option_named_as_the_call_or_the_class_is_refused_naming_it(option):
    """``weight = lk.option(2.0)`` raised inspect's raw "duplicate parameter name", and ``hessian`` or ``link``
    as an option ran in the kernel while the array path read the class's declaration (found in review)."""
    with pytest.raises(TypeError, match=rf"^Opt\.{option}: an option may not be named '{option}'"):
        type("Opt", (lk.ElementwiseLoss,), {option: lk.option(2.0), "value": lambda self, xp, z, y: z - y})


def test_a_formula_the_kernel_cannot_compile_is_a_type_error_naming_the_class_and_the_reason():
    """A method called on an element passed the class statement's check and met numba's TypingError, several
    screens of nested failures (found in review): one TypeError naming the class, the reason and the line."""
    class ClipMethodLoss(lk.ElementwiseLoss):
        def value(self, xp, z, y):
            return (z - y).clip(-1.0, 1.0)

        def derivative(self, xp, z, y):
            return xp.where(xp.abs(z - y) < 1.0, 1.0, 0.0)

    with pytest.raises(TypeError, match=r"^ClipMethodLoss: its formula does not compile into the kernel: Unknown "
                                        r"attribute 'clip' of type float64 \(File \".*test_own_loss\.py\", line \d+\)"):
        ClipMethodLoss(impl="fused")(np.array([0.5, 2.0]), np.zeros(2))


def test_a_loss_of_a_class_defined_again_is_told_to_be_made_anew():
    """A cell run twice replaces the class in the registry; a loss object made from the first class was then
    refused by the heads and losskit.torch as a class that "declares none of its own" name, which it does
    (found in review). The message says the class was defined again and to make the loss anew."""
    scope = {"lk": lk}
    cell = "class Redefined(lk.ElementwiseLoss):\n    name = 'redefined_cell_test_loss'\n" + _LOGISTIC_BODY
    try:
        exec(compile(cell, "cell", "exec"), scope)
        old = scope["Redefined"]()
        exec(compile(cell, "cell", "exec"), scope)  # the cell run again
        with pytest.raises(lk.LossInputError, match=r"got Redefined of a class since defined again .*make the loss "
                                                   r"anew from the new class$"):
            lk.BinaryHead(loss=old)
        lk.BinaryHead(loss=scope["Redefined"]())  # (the new class's loss is taken)
        torch_layer = pytest.importorskip("losskit.torch")
        with pytest.raises(lk.LossInputError, match=r"got Redefined of a class since defined again"):
            torch_layer.module(old)
    finally:
        lk.REGISTRY.pop("redefined_cell_test_loss", None)
