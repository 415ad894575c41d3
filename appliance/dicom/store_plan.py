"""Which presentation contexts a Storage SCU proposes, and which one each instance uses.

Per SOP class we propose every transfer syntax its instances are stored in, each in a context
of its own (so the peer accepts or refuses each one separately and never picks an uncompressed
syntax where it could take the stored one), plus one context with Explicit and Implicit VR
Little Endian, the syntaxes every Storage SCP accepts, for instances we must convert. An
association carries at most 128 contexts; when the instances need more, they are split into
several associations, each SOP class whole in one of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from pynetdicom.presentation import PresentationContext

from appliance.dicom.syntaxes import EXPLICIT_VR_LE, IMPLICIT_VR_LE

MAX_CONTEXTS = 128
"""Presentation contexts one A-ASSOCIATE-RQ may carry (context IDs are odd numbers < 256)."""

FALLBACK_SYNTAXES = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)
"""What a stored instance is converted to when the peer accepts none of its own syntaxes."""


class Sendable(Protocol):
    """What planning needs to know of an instance."""

    @property
    def sop_class_uid(self) -> str:
        """The SOP Class UID."""
        ...

    @property
    def transfer_syntax_uid(self) -> str:
        """The transfer syntax the instance is stored in."""
        ...


T = TypeVar("T", bound=Sendable)


@dataclass(slots=True)
class Batch(Generic[T]):
    """Instances sent over one association and the contexts proposed for them."""

    contexts: list[tuple[str, list[str]]] = field(default_factory=list)
    """(SOP Class UID, [transfer syntaxes]) in proposal order."""

    items: list[T] = field(default_factory=list)
    """The instances, in the order they were given."""


def class_contexts(sop_class_uid: str, stored: Iterable[str]) -> list[tuple[str, list[str]]]:
    """The contexts proposed for one SOP class whose instances are stored in `stored`."""
    own = list(dict.fromkeys(stored))
    contexts = [(sop_class_uid, [uid]) for uid in own]
    fallback = [uid for uid in FALLBACK_SYNTAXES if uid not in own]
    if fallback:
        contexts.append((sop_class_uid, fallback))
    return contexts


def plan_batches(items: Sequence[T]) -> list[Batch[T]]:
    """Split `items` into associations of at most MAX_CONTEXTS contexts (one, normally)."""
    syntaxes: dict[str, dict[str, None]] = {}
    for item in items:
        syntaxes.setdefault(item.sop_class_uid, {})[item.transfer_syntax_uid] = None
    batches: list[Batch[T]] = []
    batch_of: dict[str, Batch[T]] = {}
    current: Batch[T] = Batch()
    for sop_class, stored in syntaxes.items():
        contexts = class_contexts(sop_class, stored)
        if len(contexts) > MAX_CONTEXTS:  # absurd, but never propose an invalid request
            contexts = [*contexts[: MAX_CONTEXTS - 1], contexts[-1]]
        if len(current.contexts) + len(contexts) > MAX_CONTEXTS:
            batches.append(current)
            current = Batch()
        current.contexts += contexts
        batch_of[sop_class] = current
    if current.contexts:
        batches.append(current)
    for item in items:
        batch_of[item.sop_class_uid].items.append(item)
    return batches


@dataclass(frozen=True, slots=True)
class Choice:
    """How one instance goes over an association."""

    context_id: int
    transfer_syntax_uid: str
    as_stored: bool
    """True: the stored data set bytes go unchanged; False: it must be converted first."""


def accepted_syntaxes(contexts: Iterable[PresentationContext]) -> dict[str, dict[str, int]]:
    """SOP Class UID -> {accepted transfer syntax: context ID} for the SCU role."""
    table: dict[str, dict[str, int]] = {}
    for cx in contexts:
        if cx.context_id is None or not cx.transfer_syntax or cx.as_scu is False:
            continue
        table.setdefault(str(cx.abstract_syntax), {}).setdefault(
            str(cx.transfer_syntax[0]), int(cx.context_id)
        )
    return table


def choose(accepted: dict[str, dict[str, int]], item: Sendable) -> Choice | None:
    """The context for `item`: its stored syntax if accepted, else a fallback; None if the
    peer accepted neither for its SOP class."""
    syntaxes = accepted.get(item.sop_class_uid, {})
    context_id = syntaxes.get(item.transfer_syntax_uid)
    if context_id is not None:
        return Choice(context_id, item.transfer_syntax_uid, as_stored=True)
    for uid in FALLBACK_SYNTAXES:
        context_id = syntaxes.get(uid)
        if context_id is not None:
            return Choice(context_id, uid, as_stored=False)
    return None
