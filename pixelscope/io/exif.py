"""The EXIF fields worth profiling, read defensively from a Pillow image."""

from __future__ import annotations

import warnings
from typing import Any

from PIL import Image

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _SOFTWARE, _ORIENTATION = 0x010F, 0x0110, 0x0131, 0x0112
_DATETIME_ORIGINAL, _EXPOSURE, _FNUMBER, _ISO, _FOCAL = 0x9003, 0x829A, 0x829D, 0x8827, 0x920A


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    s = str(v).replace("\x00", "").strip()
    return s or None


def _number(v: Any) -> float | None:
    if isinstance(v, (tuple, list)):
        v = v[0] if v else None
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def read_exif(im: Image.Image) -> tuple[dict[str, Any], list[str]]:
    """Return (exif_* fields, problems). Absent tags are simply missing.

    Pillow is lenient with malformed EXIF: it warns and skips, or returns nothing. Those
    warnings, exceptions, and an EXIF block that yields no tag at all are the problems.
    """
    problems: list[str] = []
    out: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = _fields(im)
        except Exception as e:  # noqa: BLE001 - malformed EXIF comes in many shapes
            problems.append(f"{type(e).__name__}: {e}")
    problems += [str(w.message).strip() for w in caught if issubclass(w.category, UserWarning)]
    raw = im.info.get("exif")
    if not out and not problems and isinstance(raw, bytes) and len(raw) > 16:
        problems.append(f"EXIF block of {len(raw)} bytes has no readable tag")
    return out, problems


def _fields(im: Image.Image) -> dict[str, Any]:
    exif = im.getexif()
    out: dict[str, Any] = {}
    if not exif:
        return out
    sub = exif.get_ifd(_EXIF_IFD)
    orientation = exif.get(_ORIENTATION)
    try:
        orientation = int(orientation) if orientation is not None else None
    except (TypeError, ValueError):
        orientation = None
    out["exif_make"] = _text(exif.get(_MAKE))
    out["exif_model"] = _text(exif.get(_MODEL))
    out["exif_software"] = _text(exif.get(_SOFTWARE))
    out["exif_orientation"] = orientation if orientation in range(1, 9) else None
    out["exif_datetime_original"] = _text(sub.get(_DATETIME_ORIGINAL))
    out["exif_exposure_time"] = _number(sub.get(_EXPOSURE))
    out["exif_f_number"] = _number(sub.get(_FNUMBER))
    out["exif_iso"] = _number(sub.get(_ISO))
    out["exif_focal_length"] = _number(sub.get(_FOCAL))
    out["exif_gps"] = bool(exif.get_ifd(_GPS_IFD))
    return {k: v for k, v in out.items() if v is not None}
