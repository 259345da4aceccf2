"""A tenant's logo, checked and re-encoded before it is stored.

The upload is decoded by its content, never trusted by its name or its declared type, with only Pillow's PNG,
JPEG and WebP decoders allowed: anything else (SVG, whose scripts would run on our origin when opened; HTML or a
polyglot named .png) is refused. The pixel dimensions are read from the header before any pixel is decoded, so a
small file that claims a huge image (a decompression bomb) is refused cheaply. What is stored and served is a new
PNG drawn from the decoded pixels (scaled down to what the page shows, two pixels per CSS pixel): no metadata,
no trailing bytes, no second format hidden in it."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from PIL import Image, UnidentifiedImageError

MAX_LOGO_BYTES = 256 * 1024
MAX_LOGO_SIDE = 1024  # pixels, either side, of the upload
# What is kept: the page shows the logo at most 60 CSS pixels high and 340 wide; twice that for sharp screens.
STORED_BOX = (680, 120)
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")


@dataclass(frozen=True)
class Logo:
    png: bytes
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest()


def logo_normalised(data: bytes) -> Logo:
    """The upload as a PNG of at most STORED_BOX, or ValidationError saying what is wrong with it."""
    if len(data) > MAX_LOGO_BYTES:
        raise ValidationError(f"The logo is {len(data) // 1024} KB; at most {MAX_LOGO_BYTES // 1024} KB is "
                              "accepted.", code="too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            width, height = image.size
            if width > MAX_LOGO_SIDE or height > MAX_LOGO_SIDE:
                raise ValidationError(f"The logo is {width} × {height} pixels; at most {MAX_LOGO_SIDE} × "
                                      f"{MAX_LOGO_SIDE} is accepted.", code="too_many_pixels")
            image.load()
    except ValidationError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValidationError("The logo must be a PNG, JPEG or WebP image (SVG is not accepted).",
                              code="not_an_image") from None
    except (OSError, SyntaxError, ValueError):  # what Pillow raises for a truncated or corrupt file
        raise ValidationError("The logo could not be read: the file is damaged or incomplete.",
                              code="damaged") from None
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    pixels = image.convert("RGBA" if has_alpha else "RGB")
    pixels.thumbnail(STORED_BOX, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    pixels.save(out, format="PNG", optimize=True)
    return Logo(png=out.getvalue(), width=pixels.width, height=pixels.height)
