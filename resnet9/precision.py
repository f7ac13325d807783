"""Numeric precision of the forward pass: bf16 or fp16 autocast, or fp32 (``recipe.precision``).

``auto`` picks what the hardware does natively:

- CUDA compute capability 8.0 and up (A100, H100, H200, RTX 30xx/40xx): bf16 autocast. bf16
  has fp32's exponent range, so no loss scaling is needed.
- Older CUDA GPUs (V100 is 7.0, the Colab T4 is 7.5): fp16 autocast with
  ``torch.amp.GradScaler``, which scales the loss so that small fp16 gradients do not flush to
  zero, and skips a step whose gradients overflowed (Micikevicius et al. 2018, "Mixed
  Precision Training").
- A CPU with native bf16 (AVX512-BF16 or AMX, :func:`cpu_native_bf16`): bf16 autocast, which
  oneDNN runs on those instructions. Elsewhere fp32: without them bf16 is emulated, many times
  slower than fp32 (measured: docs/results.md, "Precision on the CPU").
- Apple MPS: fp32.

An explicit ``bf16``, ``fp16`` or ``fp32`` is used as given, on any device that torch's
autocast supports. Every stage that runs the network (lr_find, train, evaluate, analyze) makes
the same choice through :func:`resolve`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from resnet9.params import PRECISIONS
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
BF16_CAPABILITY = (8, 0)  # Ampere: the first CUDA GPUs with native bf16 tensor cores


def cpu_native_bf16() -> bool:
    """Whether this CPU runs bf16 natively: AVX512-BF16 or AMX tiles, as torch's CPU probes
    report them. Those probes are private (``torch.cpu._is_avx512_bf16_supported``,
    ``torch.cpu._is_amx_tile_supported``), so a torch without them, or one that fails, counts
    as False: the safe answer, fp32. (``torch.ops.mkldnn._is_mkldnn_bf16_supported`` is not
    used: it also says yes for AVX512 cores without BF16, where oneDNN emulates it.)"""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        try:
            if getattr(torch.cpu, probe)():
                return True
        except Exception:  # missing or failing private API: not native
            continue
    return False


def cpu_capability() -> dict:
    """What this CPU offers torch, for the provenance: ``simd`` (torch's kernel level, e.g.
    ``AVX2``, ``AVX512``) and ``native_bf16`` (:func:`cpu_native_bf16`)."""
    return {"simd": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_native_bf16()}


def choose(setting: str, device_type: str, capability: tuple[int, int] | None = None,
           cpu_bf16: bool = False) -> str:
    """The precision (``bf16``, ``fp16`` or ``fp32``) for ``setting`` on a device.

    A pure function of its arguments, so that the rule can be tested without the hardware.

    Args:
        setting: one of :data:`resnet9.params.PRECISIONS`.
        device_type: ``cuda``, ``cpu`` or ``mps``.
        capability: the CUDA compute capability ``(major, minor)``; used for ``auto`` on CUDA.
        cpu_bf16: whether the CPU runs bf16 natively (:func:`cpu_native_bf16`); used for
            ``auto`` on the CPU.

    Raises:
        ValueError: an unknown setting, or ``auto`` on CUDA without a capability.
    """
    if setting not in PRECISIONS:
        raise ValueError(f"precision: {setting!r}; expected one of {', '.join(PRECISIONS)}")
    if setting != "auto":
        return setting
    if device_type == "cpu":
        return "bf16" if cpu_bf16 else "fp32"
    if device_type != "cuda":
        return "fp32"
    if capability is None:
        raise ValueError("precision: 'auto' on CUDA needs the device's compute capability")
    return "bf16" if tuple(capability) >= BF16_CAPABILITY else "fp16"


@dataclass
class Precision:
    """How the network runs on ``device_type``: ``name`` is ``bf16``, ``fp16`` or ``fp32``.

    ``scaler`` is the run's ``torch.amp.GradScaler``: enabled for fp16 only, elsewhere its
    ``scale``, ``step`` and ``update`` pass through, so one training step serves every precision.
    ``init_scale`` is its starting loss scale (torch's default, 2**16).
    """

    name: str
    device_type: str
    init_scale: float = 2.0**16
    scaler: torch.amp.GradScaler = field(init=False, repr=False)

    def __post_init__(self):
        if self.name not in DTYPES:
            raise ValueError(f"precision: {self.name!r}; expected one of {', '.join(DTYPES)}")
        self.scaler = torch.amp.GradScaler(self.device_type, init_scale=self.init_scale,
                                           enabled=self.name == "fp16")

    @property
    def dtype(self) -> torch.dtype:
        """The autocast dtype (float32 when autocast is off)."""
        return DTYPES[self.name]

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` to :attr:`dtype`; a no-op context for fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def resolve(setting: str, device: torch.device) -> Precision:
    """:func:`choose` for ``device``, reading its compute capability on CUDA and asking
    :func:`cpu_native_bf16` on the CPU."""
    capability = (torch.cuda.get_device_capability(device) if device.type == "cuda" else None)
    cpu_bf16 = device.type == "cpu" and setting == "auto" and cpu_native_bf16()
    return Precision(choose(setting, device.type, capability, cpu_bf16), device.type)


def explain(setting: str, chosen: Precision) -> str:
    """One line saying which precision runs and, for ``auto``, why: e.g. ``fp32 (auto: this
    CPU has no native bf16, AVX512-BF16 or AMX)``."""
    if setting != "auto":
        return f"{chosen.name} (recipe.precision)"
    if chosen.device_type == "cpu":
        why = ("this CPU runs bf16 natively" if chosen.name == "bf16" else
               "this CPU has no native bf16, AVX512-BF16 or AMX")
    elif chosen.device_type == "cuda":
        why = "by the GPU's compute capability"
    else:
        why = f"on {chosen.device_type}"
    return f"{chosen.name} (auto: {why})"
