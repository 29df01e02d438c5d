"""Every transformer forward of rank 0, run by all the transformer ranks together.

Rank 0 owns the stream; the other transformer ranks hold only the transformer. Before each
forward, rank 0 announces it on the control group (names, shapes and dtypes; a pickled header
over gloo) and broadcasts the input tensors on the device group; every rank then runs the same
forward, and diffusers' context-parallel hooks split and gather the sequence inside it. With
CFG over two branches (`cfg=2`), one announcement carries both text embeddings: branch 0 (rank
0's) runs the conditional pass, branch 1 the unconditional one, whose first rank sends its
prediction to rank 0.

`GroupForward` takes the place of rank 0's `transformer.forward`, so whoever calls the
transformer there (the engine's denoiser, diffusers' own pipeline) runs the group's forward.
A forward that raises leaves the other ranks inside a collective: the group cannot go on, so
rank 0 exits and the engine's supervisor restarts the engine.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from helios_serve.core.settings import GuidanceMode
from helios_serve.engine import compact_dit
from helios_serve.engine.parallel.context import check_splittable, is_uneven, set_uneven
from helios_serve.engine.parallel.group import RANK_DIED_EXIT, RankGroups

logger = logging.getLogger(__name__)

COND, UNCOND = "cond", "uncond"


@dataclass(frozen=True)
class Forward:
    """One forward: its tensors (broadcast next, in this order) and its other arguments."""

    tensors: tuple[tuple[str, tuple[int, ...], torch.dtype], ...]
    values: dict[str, Any]
    pair: bool = False
    """CFG over two branches: the tensors hold `cond_embeds` and `uncond_embeds`."""
    uneven: bool = False
    """The sequence does not split evenly: diffusers' "anything" sharding for this forward."""
    engaged: bool = False
    """Rank 0 runs the engine's own forward (`compact_dit`): so do the others."""


@dataclass(frozen=True)
class Shutdown:
    """Rank 0 is stopping: leave the loop."""


def announce(groups: RankGroups, message: Forward | Shutdown) -> None:
    dist.broadcast_object_list([message], src=0, group=groups.control)


def receive(groups: RankGroups) -> Forward | Shutdown:
    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0, group=groups.control)
    message: Forward | Shutdown = box[0]
    return message


def send_forward(
    groups: RankGroups, kwargs: Mapping[str, Any], *, pair: bool, uneven: bool, engaged: bool
) -> None:
    tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    values = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}
    specs = tuple((k, tuple(t.shape), t.dtype) for k, t in tensors.items())
    announce(groups, Forward(specs, values, pair, uneven, engaged))
    for tensor in tensors.values():
        dist.broadcast(tensor.contiguous(), src=0, group=groups.transformer)


def receive_tensors(
    groups: RankGroups, message: Forward, device: torch.device
) -> dict[str, torch.Tensor]:
    tensors = {}
    for name, shape, dtype in message.tensors:
        tensor = torch.empty(shape, dtype=dtype, device=device)
        dist.broadcast(tensor, src=0, group=groups.transformer)
        tensors[name] = tensor
    return tensors


class GroupForward:
    """Rank 0's `transformer.forward`: announces each call to the group, then runs it."""

    def __init__(self, transformer: Any, groups: RankGroups) -> None:
        self._transformer = transformer
        self._forward = transformer.forward
        self._groups = groups
        self._patch = tuple(transformer.config.patch_size)
        self._announced = False
        transformer.forward = self

    def _send(self, kwargs: Mapping[str, Any], *, pair: bool) -> None:
        parts = self._groups.layout.context_parallel
        uneven = parts > 1 and is_uneven(kwargs, self._patch, parts)
        if parts > 1:
            set_uneven(self._transformer, uneven)
        paths = compact_dit.paths_of(self._transformer)
        engaged = paths is not None and paths.engaged
        send_forward(self._groups, kwargs, pair=pair, uneven=uneven, engaged=engaged)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError("a parallel transformer takes keyword arguments only")
        if self._announced:  # a pair's own conditional pass
            return self._forward(**kwargs)
        if self._groups.layout.context_parallel > 1:
            check_splittable(kwargs, self._patch, self._groups.layout)
        with _fatal():
            self._send(kwargs, pair=False)
            return self._forward(**kwargs)

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        self._announced = True
        try:
            yield
        finally:
            self._announced = False

    def pair(
        self, inputs: Mapping[str, Any], cond_embeds: torch.Tensor, uncond_embeds: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond, uncond) predictions, the two passes on the two CFG branches at once."""
        embeds = {"cond_embeds": cond_embeds, "uncond_embeds": uncond_embeds}
        if self._groups.layout.context_parallel > 1:
            check_splittable(inputs, self._patch, self._groups.layout)
        with _fatal():
            self._send({**inputs, **embeds}, pair=True)
            with self._quiet(), self._transformer.cache_context(COND):
                cond: torch.Tensor = self._transformer(encoder_hidden_states=cond_embeds, **inputs)[
                    0
                ]
            uncond = torch.empty_like(cond)
            source = self._groups.layout.context_parallel  # the first rank of branch 1
            dist.recv(uncond, src=source, group=self._groups.transformer)
        return cond, uncond


@contextlib.contextmanager
def _fatal() -> Iterator[None]:
    """A failure inside a group forward leaves the other ranks waiting in a collective."""
    try:
        yield
    except BaseException:
        logger.exception("a parallel forward failed: the ranks are out of step; exiting")
        os._exit(RANK_DIED_EXIT)


class ParallelPasses:
    """CFG's two passes on two branches of ranks (the guidance mode "parallel")."""

    mode: GuidanceMode = "parallel"
    separate_calls = False

    def __init__(self, forward: GroupForward) -> None:
        self._forward = forward

    def run(
        self,
        transformer: Any,  # noqa: ARG002 (GuidancePasses' shape: GroupForward holds it)
        inputs: Mapping[str, Any],
        cond_embeds: torch.Tensor,
        uncond_embeds: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._forward.pair(inputs, cond_embeds, uncond_embeds)


def serve_forwards(transformer: Any, groups: RankGroups) -> None:
    """A transformer rank's loop: run rank 0's forwards until it stops."""
    layout = groups.layout
    device = torch.device(layout.device_of(groups.rank))
    branch = layout.cfg_branch(groups.rank)
    while True:
        message = receive(groups)
        if isinstance(message, Shutdown):
            return
        kwargs: dict[str, Any] = {**receive_tensors(groups, message, device), **message.values}
        if layout.context_parallel > 1:
            set_uneven(transformer, message.uneven)
        path = compact_dit.engaged(transformer) if message.engaged else contextlib.nullcontext()
        with torch.no_grad(), path:
            _run_forward(transformer, groups, message, kwargs, branch)


def _run_forward(
    transformer: Any, groups: RankGroups, message: Forward, kwargs: dict[str, Any], branch: int
) -> None:
    if not message.pair:
        if branch == 0:  # branch 1 has no part in a forward without guidance
            transformer(**kwargs)
        return
    embeds = (kwargs.pop("cond_embeds"), kwargs.pop("uncond_embeds"))
    with transformer.cache_context((COND, UNCOND)[branch]):
        out = transformer(encoder_hidden_states=embeds[branch], **kwargs)[0]
    if groups.rank == groups.layout.context_parallel:  # the first rank of the uncond branch
        dist.send(out.contiguous(), dst=0, group=groups.transformer)
