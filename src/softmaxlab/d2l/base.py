"""d2l-en's two utilities for object-oriented notebooks: ``add_to_class`` and ``HyperParameters``."""

from __future__ import annotations

import inspect


def add_to_class(Class):
    """Decorator: register the function as a method (or attribute) of ``Class``, by its name.

    Sections use it to add or replace methods after the class was made; instances made before
    see the change too. The function is returned, so its name stays usable.
    """
    def wrapper(obj):
        setattr(Class, obj.__name__, obj)
        return obj
    return wrapper


class HyperParameters:
    """The base class that saves ``__init__``'s arguments as attributes."""

    def save_hyperparameters(self, ignore=[]):  # noqa: B006 (the book's signature; only read)
        """Save the caller's local variables (its arguments) as attributes, and in ``hparams``.

        Reads the frame of the function that called it, normally ``__init__``: call it directly
        from there, with no wrapper in between. Names in ``ignore``, ``self`` and names starting
        with ``_`` are left out.
        """
        frame = inspect.currentframe().f_back
        skip = {*ignore, "self"}
        self.hparams = {k: v for k, v in frame.f_locals.items()
                        if k not in skip and not k.startswith("_")}
        for k, v in self.hparams.items():
            setattr(self, k, v)
