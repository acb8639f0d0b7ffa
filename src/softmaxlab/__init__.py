"""softmaxlab: softmax regression on image classification data, from scratch and concise."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # The estimator needs scikit-learn (an optional extra): import it only when asked for.
    if name == "SoftmaxRegression":
        from .estimator import SoftmaxRegression

        return SoftmaxRegression
    raise AttributeError(f"module 'softmaxlab' has no attribute {name!r}")
