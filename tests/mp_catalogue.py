"""50-digit mpmath references for every catalogue loss, written from each loss's definition (its
docstring, docs/losses.md, the papers it names), not from losskit's code.

Each function takes plain Python floats (the inputs already rounded to the dtype under test) and
returns mpmath numbers: an elementwise loss ``(value, derivative in z)``; a loss over a row a value
and a list of partial derivatives, one per input entry. Where a derivative is a short closed form it
is written by hand; where writing it is error-prone (the focal losses, ASL, JSD, Poly-1) it is
mpmath's own numerical differentiation (``mpmath.diff``, run at the 50 digits).

Rewritings used, each an identity and not an approximation: ``1 - sigmoid(z) = sigmoid(-z)``,
``-log sigmoid(z) = log1p(exp(-z))``, and ``1 - p_k = sum_{j != k} p_j`` for a softmax row (50 digits
cannot hold ``1 - (1 - e^-10000)``).
"""

from __future__ import annotations

import mpmath

from mp_reference import floored_log, floored_log1m, sigmoid, softplus

mpmath.mp.dps = 50
mpf = mpmath.mpf
PROB_FLOOR = mpf("1e-12")  # PyTorch's floor of a probability in the gradient of BCE/CE from probabilities


def _sign(x):
    return mpf(0) if x == 0 else mpf(1) if x > 0 else mpf(-1)


# -- regression: one value per element, e = prediction - target --------------------------------------
def absolute_error(z, y):
    e = mpf(z) - mpf(y)
    return abs(e), _sign(e)


def squared_error(z, y):
    e = mpf(z) - mpf(y)
    return e * e, 2 * e


def huber(z, y, delta=1.0):
    e, d = mpf(z) - mpf(y), mpf(delta)
    if abs(e) < d:
        return e * e / 2, e
    return d * (abs(e) - d / 2), d * _sign(e)


def smooth_l1(z, y, beta=1.0):
    e, b = mpf(z) - mpf(y), mpf(beta)
    if abs(e) < b:
        return e * e / (2 * b), e / b
    return abs(e) - b / 2, _sign(e)


def pseudo_huber(z, y, delta=1.0):
    e, d = mpf(z) - mpf(y), mpf(delta)
    h = mpmath.sqrt(1 + (e / d) ** 2)
    return d * d * (h - 1), e / h


def log_cosh(z, y):
    e = mpf(z) - mpf(y)
    return mpmath.log(mpmath.cosh(e)), mpmath.tanh(e)


def tweedie(eta, y, power):
    """Unit deviance of power p at mu = exp(eta) (scikit-learn's mean_tweedie_deviance), and d/d eta."""
    eta, y, p = mpf(eta), mpf(y), mpf(power)
    mu = mpmath.exp(eta)
    if p == 1:
        y_log = 0 if y == 0 else y * mpmath.log(y / mu)
        value = 2 * (y_log - y + mu)
    elif p == 2:
        value = 2 * (mpmath.log(mu / y) + y / mu - 1)
    else:
        a, b = 1 - p, 2 - p
        value = 2 * (max(y, 0) ** b / (a * b) - y * mu ** a / a + mu ** b / b)
    # d/d eta = mu d/d mu: 2 mu^(1-p) (mu - y) for every p
    return value, 2 * mu ** (1 - p) * (mu - y)


def gaussian_nll(prediction, y):
    """0.5 (s + (y - m)^2 e^-s + log 2 pi) and its partials in (m, s), prediction = (m, s)."""
    m, s, y = mpf(prediction[0]), mpf(prediction[1]), mpf(y)
    sq = (y - m) ** 2 * mpmath.exp(-s)
    value = (s + sq + mpmath.log(2 * mpmath.pi)) / 2
    return value, [(m - y) * mpmath.exp(-s), (1 - sq) / 2]


def quantile(predictions, y, quantiles):
    """Pinball loss summed over the quantiles; the gradient -q where yhat < y, else 1 - q."""
    y = mpf(y)
    value, grad = mpf(0), []
    for yhat, q in zip(predictions, quantiles, strict=True):
        e, q = y - mpf(yhat), mpf(q)
        value += max(q * e, (q - 1) * e)
        grad.append(-q if e > 0 else 1 - q)
    return value, grad


# -- margins: s = -1/+1 from a 0/1 or -1/+1 label ---------------------------------------------------
def _as_sign(y):
    return mpf(1) if y > 0 else mpf(-1)


def hinge(z, y):
    s = _as_sign(y)
    gap = 1 - s * mpf(z)
    return max(gap, 0), (-s if gap > 0 else mpf(0))


def squared_hinge(z, y):
    s = _as_sign(y)
    gap = max(1 - s * mpf(z), 0)
    return gap * gap, -2 * s * gap


def exponential(z, y):
    z, y = mpf(z), mpf(y)
    return y * mpmath.exp(-z) + (1 - y) * mpmath.exp(z), (1 - y) * mpmath.exp(z) - y * mpmath.exp(-z)


# -- sigmoid losses ---------------------------------------------------------------------------------
def sigmoid_focal_value(z, y, gamma=2.0, alpha=None):
    """a_t (1 - p_t)^gamma BCE(z, y) with 1 - p_t = y sigmoid(-z) + (1 - y) sigmoid(z) (Lin et al. 2017,
    written as the docstring's expected BCE for a probability target)."""
    z, y = mpf(z), mpf(y)
    q = y * sigmoid(-z) + (1 - y) * sigmoid(z)
    bce = y * softplus(-z) + (1 - y) * softplus(z)
    a_t = 1 if alpha is None else mpf(alpha) * y + (1 - mpf(alpha)) * (1 - y)
    # 0^0 = 1 (gamma = 0 is BCE); mpmath's 0 ** 0 is 1 too
    return a_t * q ** mpf(gamma) * bce


def sigmoid_focal(z, y, gamma=2.0, alpha=None):
    """The value and, by the chain rule, a_t (gamma q^(gamma-1) q' BCE + q^gamma BCE') with
    q' = (1 - 2y) sigmoid(z) sigmoid(-z) and BCE' = sigmoid(z) - y = (1 - y) sigmoid(z) - y sigmoid(-z).
    By hand: the derivative can be e^-10000 times the value, which no finite difference resolves."""
    z, y, g = mpf(z), mpf(y), mpf(gamma)
    q = y * sigmoid(-z) + (1 - y) * sigmoid(z)
    bce = y * softplus(-z) + (1 - y) * softplus(z)
    a_t = 1 if alpha is None else mpf(alpha) * y + (1 - mpf(alpha)) * (1 - y)
    dq = (1 - 2 * y) * sigmoid(z) * sigmoid(-z)
    dbce = (1 - y) * sigmoid(z) - y * sigmoid(-z)
    focusing = 0 if g == 0 else g * q ** (g - 1) * dq * bce
    return sigmoid_focal_value(z, y, gamma, alpha), a_t * (focusing + q ** g * dbce)


def asymmetric_value(z, y, gamma_pos=1.0, gamma_neg=4.0, clip=0.05):
    """ASL (Ridnik et al. 2021), one label: -y (1 - p)^g+ log p - (1 - y) p_m^g- log(1 - p_m),
    p_m = max(p - m, 0); 1 - p_m = sigmoid(-z) + m where p > m."""
    z, y, m = mpf(z), mpf(y), mpf(clip)
    p = sigmoid(z)
    positive = sigmoid(-z) ** mpf(gamma_pos) * softplus(-z)
    if m == 0:
        p_m, log_v = p, -softplus(z)
    elif p > m:
        p_m, log_v = p - m, mpmath.log(sigmoid(-z) + m)
    else:
        p_m, log_v = mpf(0), mpf(0)
    negative = -(p_m ** mpf(gamma_neg)) * log_v
    return y * positive + (1 - y) * negative


def asymmetric(z, y, gamma_pos=1.0, gamma_neg=4.0, clip=0.05):
    """The value and its derivative by the chain rule, with p' = u = sigmoid(z) sigmoid(-z):
    d/dz [(1 - p)^g+ softplus(-z)] = -g+ (1 - p)^(g+ - 1) u softplus(-z) - (1 - p)^(g+ + 1), and for
    p > m, d/dz [-p_m^g- log v] = -g- p_m^(g- - 1) u log v + p_m^g- u / v, v = 1 - p_m (0 below m).
    By hand: the derivative can be e^-10000 times the value, which no finite difference resolves."""
    z, y, m = mpf(z), mpf(y), mpf(clip)
    gp, gn = mpf(gamma_pos), mpf(gamma_neg)
    p, one_minus_p = sigmoid(z), sigmoid(-z)
    u = p * one_minus_p
    d_pos = -(one_minus_p ** (gp + 1))
    if gp != 0:
        d_pos -= gp * one_minus_p ** (gp - 1) * u * softplus(-z)
    if m == 0 or p > m:
        p_m = p if m == 0 else p - m
        v = one_minus_p + m
        log_v = -softplus(z) if m == 0 else mpmath.log(v)
        d_neg = p_m ** gn * u / v
        if gn != 0:
            d_neg -= gn * p_m ** (gn - 1) * u * log_v
    else:
        d_neg = mpf(0)
    return asymmetric_value(z, y, gamma_pos, gamma_neg, clip), y * d_pos + (1 - y) * d_neg


def bce_probs(p, y, pos_weight=1.0):
    """-(w y log p + (1 - y) log(1 - p)), each log floored at -100; gradient (1 - y)/max(1 - p, 1e-12)
    - w y / max(p, 1e-12) (PyTorch's clamps, part of the loss's definition)."""
    p, y, w = mpf(p), mpf(y), mpf(pos_weight)
    value = -(w * y * floored_log(p) + (1 - y) * floored_log1m(p))
    return value, (1 - y) / max(1 - p, PROB_FLOOR) - w * y / max(p, PROB_FLOOR)


# -- softmax rows -----------------------------------------------------------------------------------
def softmax(row):
    """Probabilities and their complements 1 - p_k, each to full relative precision."""
    row = [mpf(v) for v in row]
    top = max(row)
    e = [mpmath.exp(v - top) for v in row]
    total = mpmath.fsum(e)
    p = [v / total for v in e]
    rest = [mpmath.fsum(e[j] for j in range(len(e)) if j != k) / total for k in range(len(e))]
    return p, rest


def log_softmax(row):
    """log p_k = -log1p(sum_{j != k} e^(z_j - z_k)): no 50-digit cancellation when p_k is near 1."""
    row = [mpf(v) for v in row]
    return [-mpmath.log1p(mpmath.fsum(mpmath.exp(v - zk) for j, v in enumerate(row) if j != k))
            for k, zk in enumerate(row)]


def _dense(target, k):
    """A label as a one-hot row; a probability row as it is."""
    if isinstance(target, int):
        return [mpf(1) if j == target else mpf(0) for j in range(k)]
    return [mpf(v) for v in target]


def _partials(f, row):
    """The partial derivatives of f at row by mpmath.diff, at 120 digits: a class-axis gradient entry
    is judged to eps * max(|exact|, eps), so it needs an absolute accuracy below 1e-32."""
    with mpmath.workdps(120):
        row = [mpf(v) for v in row]
        return [+mpmath.diff(f, row, tuple(int(j == k) for j in range(len(row)))) for k in range(len(row))]


def cross_entropy_row(row, target):
    """Softmax CE, -sum_k y_k log p_k; gradient p sum(y) - y (the exact derivative for any target)."""
    y = _dense(target, len(row))
    lp, (p, rest) = log_softmax(row), softmax(row)
    value = -mpmath.fsum(yk * lk for yk, lk in zip(y, lp, strict=True) if yk != 0)
    total = mpmath.fsum(y)
    # p_k total - y_k with y_k = 1 = total: -(1 - p_k) = -rest_k, exact when p_k is within 1e-50 of 1
    grad = [-rest[k] if y[k] == total else p[k] * total - y[k] for k in range(len(row))]
    return value, grad


def kl_divergence(row, target):
    """sum_k y_k (log y_k - log softmax(z)_k), 0 log 0 = 0; gradient p sum(y) - y."""
    y = _dense(target, len(row))
    lp = log_softmax(row)
    value = mpmath.fsum(yk * (mpmath.log(yk) - lk) for yk, lk in zip(y, lp, strict=True) if yk != 0)
    return value, cross_entropy_row(row, target)[1]


def categorical_probs(probs, target):
    """-sum_k y_k max(log p_k, -100); gradient -y_k / max(p_k, 1e-12) (no simplex projection)."""
    y = _dense(target, len(probs))
    value = -mpmath.fsum(yk * floored_log(pk) for yk, pk in zip(y, probs, strict=True) if yk != 0)
    return value, [-yk / max(mpf(pk), PROB_FLOOR) for yk, pk in zip(y, probs, strict=True)]


def distillation(student, teacher, temperature=1.0):
    """T^2 KL(softmax(t/T) || softmax(z/T)) (Hinton et al. 2015); gradient T (p - q)."""
    t = mpf(temperature)
    lq = log_softmax([mpf(v) / t for v in teacher])
    lp = log_softmax([mpf(v) / t for v in student])
    q, _ = softmax([mpf(v) / t for v in teacher])
    p, _ = softmax([mpf(v) / t for v in student])
    value = t * t * mpmath.fsum(qk * (a - b) for qk, a, b in zip(q, lq, lp, strict=True) if qk != 0)
    return value, [t * (pk - qk) for pk, qk in zip(p, q, strict=True)]


def js_value(student, teacher, beta=0.5, temperature=1.0):
    """Generalised JSD of GKD (Agarwal et al. 2024), TRL's generalized_jsd_loss: beta KL(q || m) +
    (1 - beta) KL(p || m), m = beta q + (1 - beta) p; the forward KL at beta = 0, the reverse at 1."""
    t, beta = mpf(temperature), mpf(beta)
    p, _ = softmax([mpf(v) / t for v in student])
    q, _ = softmax([mpf(v) / t for v in teacher])

    def kl(a, b):  # +inf where a puts mass on a class b rules out
        if any(ak != 0 and bk == 0 for ak, bk in zip(a, b, strict=True)):
            return mpmath.inf
        return mpmath.fsum(ak * mpmath.log(ak / bk) for ak, bk in zip(a, b, strict=True) if ak != 0)

    if beta == 0:
        return kl(q, p)
    if beta == 1:
        return kl(p, q)
    m = [beta * qk + (1 - beta) * pk for pk, qk in zip(p, q, strict=True)]
    return beta * kl(q, m) + (1 - beta) * kl(p, m)


def js_divergence(student, teacher, beta=0.5, temperature=1.0):
    value = js_value(student, teacher, beta, temperature)
    if not mpmath.isfinite(value):
        return value, []
    return value, _partials(lambda *z: js_value(z, teacher, beta, temperature), student)


def softmax_focal_value(row, target, gamma=2.0):
    """-sum_k y_k (1 - p_k)^gamma log p_k (Keras CategoricalFocalCrossentropy, alpha 1)."""
    y = _dense(target, len(row))
    lp, (_, rest) = log_softmax(row), softmax(row)
    return -mpmath.fsum(yk * rk ** mpf(gamma) * lk for yk, rk, lk in zip(y, rest, lp, strict=True) if yk != 0)


def softmax_focal(row, target, gamma=2.0):
    return (softmax_focal_value(row, target, gamma),
            _partials(lambda *z: softmax_focal_value(z, target, gamma), row))


def poly1_value(row, target, epsilon=1.0):
    """Poly-1 (Leng et al. 2022): CE + epsilon (1 - sum_k y_k p_k), 1 - P = sum_k y_k (1 - p_k) + 1 - sum y."""
    y = _dense(target, len(row))
    ce = cross_entropy_row(row, target)[0]
    _, rest = softmax(row)
    missing = mpmath.fsum(yk * rk for yk, rk in zip(y, rest, strict=True)) + (1 - mpmath.fsum(y))
    return ce + mpf(epsilon) * missing


def poly1(row, target, epsilon=1.0):
    return poly1_value(row, target, epsilon), _partials(lambda *z: poly1_value(z, target, epsilon), row)


def multiclass_hinge(row, label):
    """Crammer-Singer: max_k (z_k + 1 - [k = y]) - z_y; gradient e_{k*} - e_y, k* the first maximiser."""
    row = [mpf(v) for v in row]
    shifted = [v + (0 if k == label else 1) for k, v in enumerate(row)]
    top = max(shifted)
    first = shifted.index(top)
    return top - row[label], [mpf(int(k == first) - int(k == label)) for k in range(len(row))]

