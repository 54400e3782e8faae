"""Write the demo's bundled data sets (src/losskit/demo/datasets/*.npz) from scikit-learn's loaders.

    python tools/demo_data.py     # needs scikit-learn; run once, the files are committed

The arrays are scikit-learn's own (``load_breast_cancer``, ``load_digits``, ``load_diabetes(scaled=False)``),
stored in the narrowest dtype that holds them exactly: tests/test_demo.py checks them against the loaders.
"""

from pathlib import Path

import numpy as np
from sklearn import datasets

OUT = Path(__file__).resolve().parent.parent / "src" / "losskit" / "demo" / "datasets"


def main() -> None:
    x, y = datasets.load_breast_cancer(return_X_y=True)
    np.savez_compressed(OUT / "breast_cancer.npz", x=x, y=y.astype(np.uint8))
    x, y = datasets.load_digits(return_X_y=True)
    assert np.array_equal(x, x.astype(np.uint8))  # pixel counts 0-16
    np.savez_compressed(OUT / "digits.npz", x=x.astype(np.uint8), y=y.astype(np.uint8))
    x, y = datasets.load_diabetes(return_X_y=True, scaled=False)
    np.savez_compressed(OUT / "diabetes.npz", x=x, y=y)


if __name__ == "__main__":
    main()
