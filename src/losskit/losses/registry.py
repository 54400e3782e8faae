"""Every loss by its name, built from the classes themselves.

A loss class that declares a ``name`` is registered when the class is created, with its function
form (:func:`functional`), so a user's own loss is found by name (``lk.BinaryHead(loss="my_loss")``,
``losskit.torch.module``) exactly as the catalogue's are. Nothing else keeps a list of losses.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

__all__ = ["REGISTRY", "register", "functional", "lookup", "name_of", "catalogue", "named_keywords"]

#: every registered loss, by its function's name: (Loss class, function)
REGISTRY: dict[str, tuple[type, Callable]] = {}


def is_losskits(thing) -> bool:
    """Whether ``thing`` (a class or a function) is losskit's own, not a user's."""
    return (getattr(thing, "__module__", None) or "").split(".")[0] == "losskit"  # None: made by exec


def register(cls: type) -> None:
    """Register ``cls`` under ``cls.name`` with a generated function form. A class defined again
    under a name it already has (a notebook cell run twice: the same module and qualified name)
    replaces the old one; another class taking a registered name is refused: heads, ``eval --loss``,
    the GBDT objectives and the torch modules find a loss by its name, and would silently compute the
    other's formula (a catalogue loss's name: which ``lk.<name>`` does not; a user's loss of another
    module: which a module made before it was imported did not)."""
    old = REGISTRY.get(cls.name, (None,))[0]
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        whose = f"losskit's {old.__name__}" if is_losskits(old) else f"{old.__module__}.{old.__qualname__}"
        raise TypeError(f"{cls.__name__}.name: {cls.name!r} is the name of {whose}; give the class a name of its own")
    if not is_losskits(cls):  # a head looks a short name up among its task's losses, the catalogue's first
        own = set(cls.__dict__.get("aliases", ()))  # a subclass's inherited aliases are its parent's to keep
        for other, _ in REGISTRY.values():
            # another user's loss too: one's alias took the other's name in a head (found in review)
            if other.task != cls.task or (other.__module__, other.__qualname__) == (cls.__module__, cls.__qualname__):
                continue
            whose = f"losskit's {other.__name__}" if is_losskits(other) else f"{other.__module__}.{other.__qualname__}"
            clash = sorted(own & (set(other.__dict__.get("aliases", ())) | {other.name}))
            if clash:
                raise TypeError(f"{cls.__name__}.aliases: {clash[0]!r} names {whose} in a {cls.task} head; give the "
                                f"class aliases of its own")
            if cls.name in other.__dict__.get("aliases", ()):
                raise TypeError(f"{cls.__name__}.name: {cls.name!r} is a short name of {whose} in a {cls.task} head; "
                                f"give the class a name of its own")
    REGISTRY[cls.name] = (cls, functional(cls, cls.name, _function_doc(cls)))


def functional(cls, name: str, doc: str) -> Callable:
    """``name(input, target, *, weight=None, normalizer=None, <cls's options>)``: one call of ``cls``.

    The signature shown is the class's own options, so ``help()`` lists them. When ``cls`` is
    registered under ``name`` the function becomes its registered function form."""

    def fn(input, target, *, weight=None, normalizer=None, **options):
        return cls(**options)(input, target, weight=weight, normalizer=normalizer)

    options = [p for p in inspect.signature(cls.__init__).parameters.values()
               if p.name != "self" and p.kind is not p.VAR_KEYWORD]
    fn.__signature__ = inspect.Signature(
        [inspect.Parameter(cls.input_name, inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("target", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("weight", inspect.Parameter.KEYWORD_ONLY, default=None),
         inspect.Parameter("normalizer", inspect.Parameter.KEYWORD_ONLY, default=None), *options])
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    fn.__module__ = cls.__module__
    if REGISTRY.get(name, (None,))[0] is cls:
        REGISTRY[name] = (cls, fn)
    return fn


def function_of(cls) -> Callable:
    """Decorator: a hand-written function form of ``cls`` becomes its registered one. An unknown keyword
    is named, with the ones it takes (Python's own TypeError named the function, not the option)."""

    def use(fn):
        checked = named_keywords(fn)
        REGISTRY[cls.name] = (cls, checked)
        return checked
    return use


def named_keywords(fn):
    """``fn``, whose unknown keyword raises :class:`~losskit.LossInputError` naming it and the keywords it
    takes (Python's own TypeError named the function, not the option)."""
    takes = [p.name for p in inspect.signature(fn).parameters.values()
             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TypeError:
            from .._checks import known_options

            known_options(kwargs, takes, fn.__name__)  # raises for an unknown keyword
            raise  # another TypeError: as it was

    return checked


def _function_doc(cls) -> str:
    summary = (cls.__doc__ or cls.__name__).strip().splitlines()[0]
    return (f"{summary}\n\n    One call of :class:`{cls.__name__}` (same options, shapes and edges); "
            f"``weight`` per example, ``normalizer`` replaces the denominator of ``\"mean\"``.\n")


def lookup(name: str) -> type:
    """The registered class called ``name`` (KeyError when there is none)."""
    return REGISTRY[name][0]


def name_of(loss_or_class) -> str | None:
    """The registered name of a loss or loss class, or None for a class without one."""
    cls = loss_or_class if isinstance(loss_or_class, type) else type(loss_or_class)
    name = cls.__dict__.get("name")
    return name if name and REGISTRY.get(name, (None,))[0] is cls else None


def unregistered(cls: type) -> str:
    """Why :func:`name_of` finds no name for ``cls``, as the ``got`` of an error: it declares none, or its class
    was defined again since (a notebook cell run twice), whose new class the registry now holds (the message
    said it declared none, found in review)."""
    name = cls.__dict__.get("name")
    now = REGISTRY.get(name, (None,))[0] if name else None
    if now is not None and (now.__module__, now.__qualname__) == (cls.__module__, cls.__qualname__):
        return (f"{cls.__name__} of a class since defined again (a cell run twice?): make the loss anew from the "
                f"new class")
    return f"{cls.__name__}, which declares none of its own"


def catalogue() -> dict[str, tuple[type, Callable]]:
    """The losses losskit ships (the registry without the user's own)."""
    return {n: v for n, v in REGISTRY.items() if v[0].__module__.startswith("losskit.")}
