"""Weights files from outside, checked from their headers before a tensor is allocated.

    from robust_core.weights_files import check_torch_zip, safetensors_header
    check_torch_zip(path, max_bytes=600 * 2**20)     # then torch.load(path, weights_only=True)
    header = safetensors_header(payload, max_bytes=200 * 2**20)
    header.tensors["fc.weight"].shape, header.metadata   # what the file declares, all of it checked

A loader believes the sizes a file declares: a deflate-compressed zip member inflates 1000:1, a zip entry or a pickle
can declare gigabytes that the file does not hold, and torch's old (pre-1.6) format allocates every storage at the
size its pickle names before reading a byte of it. So everything here is decided from the headers alone, against the
file's real size and a cap: a torch checkpoint must be a zip of stored (uncompressed) members whose declared sizes fit
in the file; a safetensors file's JSON header must declare tensors whose bytes tile its data exactly. Every problem
raises :class:`WeightsFileError`, whose message says what is wrong.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

# A torch checkpoint holds one zip member per storage, plus a handful (data.pkl, version, byteorder, ...); the largest
# torchvision classifiers have about a thousand tensors.
MAX_ZIP_MEMBERS = 10_000
# A safetensors header is a few hundred bytes per tensor (a thousand tensors: about 100 kB), plus the lab's metadata.
MAX_SAFETENSORS_HEADER_BYTES = 16 * 1024 * 1024
# Bytes per element of each safetensors dtype that torch can load.
SAFETENSORS_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                           "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class WeightsFileError(ValueError):
    """A weights file that is refused before loading; the message says why."""


class TruncatedWeightsFile(WeightsFileError):
    """A safetensors file shorter than its header says: cut off (a killed copy, a partial download)."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    @property
    def data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())


def _size_text(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MB" if n_bytes >= 0.1 * 2**20 else f"{n_bytes:,} bytes"


def _check_total(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise WeightsFileError(f"the file is {_size_text(size)}; the limit is {_size_text(max_bytes)}")


def check_torch_zip(path: str | os.PathLike, *, max_bytes: int, max_members: int = MAX_ZIP_MEMBERS) -> None:
    """Refuse (:class:`WeightsFileError`) a ``.pth`` file that ``torch.load`` could not read within its own size: not
    in torch's zip format (the old format declares its sizes inside a pickle), more than ``max_members`` members, a
    compressed member, or members declaring more bytes than the file holds; also any file over ``max_bytes``. Only
    the zip's central directory is read."""
    path = Path(path)
    size = path.stat().st_size
    _check_total(size, max_bytes)
    if not zipfile.is_zipfile(path):
        raise WeightsFileError("it is not in PyTorch's zip format (torch.save's since PyTorch 1.6). The older format "
                               "declares its tensor sizes inside a pickle, so they cannot be checked before loading: "
                               "re-save it with a current PyTorch: torch.save(torch.load(old, weights_only=True), new)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise WeightsFileError(f"its zip directory is damaged ({exc})") from exc
    if len(members) > max_members:
        raise WeightsFileError(f"it holds {len(members):,} files; a checkpoint has at most {max_members:,}")
    declared = 0
    for member in members:
        # torch.save stores members uncompressed; a compressed one would be inflated in full before its size is seen.
        if member.compress_type != zipfile.ZIP_STORED:
            raise WeightsFileError(f"its member {member.filename!r} is compressed, which torch.save never does: "
                                   "save the state dict again with torch.save")
        if member.file_size != member.compress_size:
            raise WeightsFileError(f"its member {member.filename!r} declares {member.file_size:,} bytes but stores "
                                   f"{member.compress_size:,}: the file is damaged")
        declared += member.file_size
    if declared > size:
        raise WeightsFileError(f"its members declare {_size_text(declared)}, more than the file's {_size_text(size)}: "
                               "the file is damaged")


def safetensors_header(source: bytes | str | os.PathLike, *, max_bytes: int) -> SafetensorsHeader:
    """The header of a safetensors file (its bytes, or a path: only the header is read), checked against the file's
    size: every tensor has a known dtype and a shape, its byte range matches its shape, and the ranges tile the data
    that follows the header exactly. :class:`WeightsFileError` for anything else, or a file over ``max_bytes``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        size, read = len(source), lambda start, n: bytes(source[start:start + n])
    else:
        path = Path(source)
        size = path.stat().st_size

        def read(start: int, n: int) -> bytes:
            with path.open("rb") as f:
                f.seek(start)
                return f.read(n)
    _check_total(size, max_bytes)
    if size < 8:
        raise WeightsFileError(f"it is {size} bytes long, too short for a safetensors file")
    header_bytes = int.from_bytes(read(0, 8), "little")
    if header_bytes > min(size - 8, MAX_SAFETENSORS_HEADER_BYTES):
        error = TruncatedWeightsFile if header_bytes <= MAX_SAFETENSORS_HEADER_BYTES else WeightsFileError
        raise error(f"its header claims {header_bytes:,} bytes, more than the file or the "
                    f"{_size_text(MAX_SAFETENSORS_HEADER_BYTES)} a header may have: it is not a safetensors "
                    "file, or it is damaged")
    try:
        header = json.loads(read(8, header_bytes).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsFileError(f"its header is not valid JSON ({exc}): it is not a safetensors file, or it is "
                               "damaged") from exc
    if not isinstance(header, dict):
        raise WeightsFileError("its header is not a JSON object: it is not a safetensors file")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise WeightsFileError("its __metadata__ is not a mapping of names to strings")
    tensors, ranges = {}, []
    for name, entry in header.items():
        tensors[name] = info = _tensor_info(name, entry)
        begin, end = entry["data_offsets"]
        if end - begin != info.nbytes:
            raise WeightsFileError(f"tensor {name!r} is {info.dtype} {list(info.shape)} ({info.nbytes:,} bytes) but "
                                   f"its data range holds {end - begin:,} bytes")
        ranges.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(ranges):
        if begin != position:  # a gap or an overlap: safetensors itself refuses both
            raise WeightsFileError(f"tensor {name!r}'s data does not follow the previous one's: the file is damaged")
        position = end
    data_size = size - 8 - header_bytes
    if position != data_size:
        error = TruncatedWeightsFile if position > data_size else WeightsFileError
        raise error(f"its tensors declare {position:,} bytes of data but the file holds {data_size:,}: "
                    "the file is truncated or damaged")
    return SafetensorsHeader(tensors, metadata)


def _tensor_info(name: str, entry) -> TensorInfo:
    if not isinstance(entry, dict):
        raise WeightsFileError(f"the header's entry {name!r} is not a tensor description")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPE_BYTES:
        raise WeightsFileError(f"tensor {name!r} has the dtype {dtype!r}, which is not one torch can load here")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise WeightsFileError(f"tensor {name!r} has no valid shape ({shape!r})")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise WeightsFileError(f"tensor {name!r} has no valid data range ({offsets!r})")
    return TensorInfo(dtype, tuple(shape), math.prod(shape) * SAFETENSORS_DTYPE_BYTES[dtype])


__all__ = ["MAX_SAFETENSORS_HEADER_BYTES", "MAX_ZIP_MEMBERS", "SafetensorsHeader", "TensorInfo", "WeightsFileError",
           "check_torch_zip", "safetensors_header"]


# The largest weights file read: VGG16's is 528 MB, and nothing larger is a classifier one can attack on a CPU.
MAX_WEIGHTS_FILE_BYTES = 600 * 1024 * 1024


def read_weights_file(path: str | os.PathLike, *, max_bytes: int = MAX_WEIGHTS_FILE_BYTES,
                      wrappers: tuple[str, ...] = ("state_dict",)) -> dict:
    """A state dict from ``.safetensors`` or from ``.pth``/``.pt``/``.bin`` loaded with ``weights_only=True`` (a
    pickle that would run code is refused). The file's headers are checked first (its size, a zip of uncompressed
    members, declared sizes that fit in the file), so a small crafted file cannot make the loader allocate gigabytes.
    A checkpoint that nests its state dict under one of ``wrappers`` is unwrapped, and DataParallel's ``module.``
    prefixes are removed. ValueError with the reason for anything else."""
    import torch

    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            safetensors_header(path, max_bytes=max_bytes)
            state = load_file(str(path))
        elif suffix in (".pth", ".pt", ".bin"):
            check_torch_zip(path, max_bytes=max_bytes)
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ValueError(f"{path.name}: expected a .safetensors or .pth file")
    except WeightsFileError as exc:
        raise ValueError(f"{path.name} is not a readable weights file (refused before loading: {exc})") from exc
    except ValueError:
        raise
    except Exception as exc:  # a damaged or hostile file: one clear message
        raise ValueError(f"{path.name} is not a readable weights file ({type(exc).__name__}: {exc})") from exc
    wrapper = next((k for k in wrappers if isinstance(state, dict) and isinstance(state.get(k), dict)), None)
    if wrapper is not None:
        state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path.name} does not hold a state dict (names -> tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}
