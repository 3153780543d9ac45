"""A picture of the bank as an SVG: each pack side by side, the bus above.

Pure presentation: plain data in, SVG text out, no Home Assistant. The image
entity (``image.py``) builds a :class:`BankPicture` from each poll and draws
it only when the picture differs from the last one; so every value here is
rounded to what the drawing shows, and two polls that would look alike
compare equal. Every new picture is a row in the recorder.

The drawing is made for a phone first: a viewBox that scales to any width,
text no smaller than a twentieth of a pack's height, and the state of each
pack said in words as well as in colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from xml.sax.saxutils import escape

# How the values are rounded: the smallest change that shows.
SOC_STEP = 1.0  # %
VOLTAGE_STEP = 0.1  # V
CURRENT_STEP = 1.0  # A
TEMPERATURE_STEP = 1.0  # degC
POWER_STEP = 50.0  # W
# A pack current at or above this draws the longest arrow; below
# ``IDLE_CURRENT`` none at all (a BMS's own offset).
FULL_ARROW_CURRENT = 50.0  # A
IDLE_CURRENT = 1.5  # A


class PackState(StrEnum):
    """What the picture says about a pack beyond its numbers."""

    OK = "ok"
    TROUBLE = "trouble"  # a BMS alarm, or an open finding of warning or worse
    SILENT = "silent"  # did not answer the last poll
    ISOLATED = "isolated"  # both paths open, as its BMS reports: off the bus


@dataclass(frozen=True, kw_only=True)
class PackPicture:
    """One pack as drawn: rounded values, None where unknown."""

    address: int
    label: str
    state: PackState = PackState.OK
    soc: float | None = None  # %
    voltage: float | None = None  # V
    current: float | None = None  # A, positive while charging
    temperature: float | None = None  # degC, the hottest the pack reports


@dataclass(frozen=True, kw_only=True)
class Words:
    """The words the picture writes, in the user's language (English by default)."""

    pack: str = "Pack"
    charging: str = "charging"
    discharging: str = "discharging"
    resting: str = "resting"
    trouble: str = "CHECK"
    silent: str = "SILENT"
    isolated: str = "ISOLATED"

    def state(self, state: PackState) -> str | None:
        """Return what is written on a pack in this state; nothing when it is fine."""
        return {
            PackState.TROUBLE: self.trouble,
            PackState.SILENT: self.silent,
            PackState.ISOLATED: self.isolated,
        }.get(state)


@dataclass(frozen=True, kw_only=True)
class BankPicture:
    """The bank as drawn: the bus, each pack, and the words for them."""

    voltage: float | None  # V
    power: float | None  # W, positive while charging
    packs: tuple[PackPicture, ...]
    words: Words = Words()


def rounded(value: float | None, step: float) -> float | None:
    """Round a value to the step the picture shows it in (None stays None)."""
    if value is None:
        return None
    result = round(value / step) * step
    # Avoid -0.0 and float dust such as 48.300000000000004.
    return round(result, 6) + 0.0


def pack_picture(
    *,
    address: int,
    label: str,
    state: PackState,
    soc: float | None = None,
    voltage: float | None = None,
    current: float | None = None,
    temperature: float | None = None,
) -> PackPicture:
    """Return a pack as the picture shows it, its values rounded.

    A silent pack shows no numbers: they would be old. An isolated pack
    still answers, and its voltage is what a rejoin waits on.
    """
    if state is PackState.SILENT:
        return PackPicture(address=address, label=label, state=state)
    return PackPicture(
        address=address,
        label=label,
        state=state,
        soc=rounded(soc, SOC_STEP),
        voltage=rounded(voltage, VOLTAGE_STEP),
        current=rounded(current, CURRENT_STEP),
        temperature=rounded(temperature, TEMPERATURE_STEP),
    )


def bank_picture(
    *,
    voltage: float | None,
    power: float | None,
    packs: tuple[PackPicture, ...],
    words: Words = Words(),
) -> BankPicture:
    """Return the bank as the picture shows it, its values rounded."""
    return BankPicture(
        voltage=rounded(voltage, VOLTAGE_STEP),
        power=rounded(power, POWER_STEP),
        packs=packs,
        words=words,
    )


# Layout, in viewBox units.
_PACK_WIDTH = 110
_GAP = 30
_MARGIN = 30
_HEADER = 110
_ARROW_ROOM = 100
_BODY_HEIGHT = 260
_FOOTER = 120
_MIN_PACKS_WIDE = 3

_COLOURS = {
    PackState.OK: "#2e7d32",
    PackState.TROUBLE: "#e65100",
    PackState.SILENT: "#757575",
    PackState.ISOLATED: "#1565c0",
}


def _number(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _power_text(power: float | None) -> str:
    if power is None:
        return "— W"
    if abs(power) >= 1000:
        return f"{power / 1000:+.2f} kW"
    return f"{power:+.0f} W"


def _flow_words(power: float | None, words: Words) -> str:
    if power is None or abs(power) < POWER_STEP:
        return words.resting
    return words.charging if power > 0 else words.discharging


def _text(
    x: float, y: float, content: str, *, size: int, ident: str | None = None, **attrs: str
) -> str:
    extra = "".join(f' {key.replace("_", "-")}="{value}"' for key, value in attrs.items())
    id_attr = f' id="{ident}"' if ident else ""
    return (
        f'<text{id_attr} x="{x:g}" y="{y:g}" font-size="{size}" text-anchor="middle"{extra}>'
        f"{escape(content)}</text>"
    )


def _arrow(pack: PackPicture, centre: float, top: float) -> list[str]:
    """Draw the pack's current: down into the pack while charging, up out of it otherwise.

    The arrow's length and width grow with the current, up to
    ``FULL_ARROW_CURRENT``; the number goes beside it.
    """
    current = pack.current
    if current is None or abs(current) < IDLE_CURRENT:
        return []
    share = min(abs(current) / FULL_ARROW_CURRENT, 1.0)
    length = 18 + 40 * share
    width = 4 + 10 * share
    bottom = top - 6
    start = bottom - length
    colour = "#2e7d32" if current > 0 else "#c62828"
    half = 10 + width / 2
    if current > 0:  # into the pack: the head at the pack's top
        shaft, base, tip = (start, bottom - 12), bottom - 14, bottom
    else:  # out of the pack: the head away from it
        shaft, base, tip = (bottom, start + 12), start + 14, start
    head = f"{centre - half:g},{base:g} {centre + half:g},{base:g} {centre:g},{tip:g}"
    return [
        f'<g id="pack{pack.address}-arrow" data-direction="{"in" if current > 0 else "out"}" '
        f'data-length="{length:.1f}">'
        f'<line x1="{centre:g}" y1="{shaft[0]:g}" x2="{centre:g}" y2="{shaft[1]:g}" '
        f'stroke="{colour}" stroke-width="{width:.1f}"/>'
        f'<polygon points="{head}" fill="{colour}"/></g>',
        _text(
            centre + 34,
            bottom - length / 2 + 6,
            f"{current:+.0f} A",
            size=16,
            ident=f"pack{pack.address}-current",
            fill=colour,
        ),
    ]


def _pack(pack: PackPicture, left: float, words: Words) -> list[str]:
    centre = left + _PACK_WIDTH / 2
    top = _HEADER + _ARROW_ROOM
    colour = _COLOURS[pack.state]
    parts = [
        _text(centre, _HEADER + 24, pack.label, size=20, ident=f"pack{pack.address}-label"),
        *_arrow(pack, centre, top),
        f'<rect x="{left:g}" y="{top}" width="{_PACK_WIDTH}" height="{_BODY_HEIGHT}" rx="10" '
        f'fill="#f5f5f5" stroke="{colour}" stroke-width="6"/>',
    ]
    if pack.soc is not None:
        level = max(0.0, min(pack.soc, 100.0)) / 100
        height = (_BODY_HEIGHT - 12) * level
        parts.append(
            f'<rect id="pack{pack.address}-fill" x="{left + 6:g}" '
            f'y="{top + _BODY_HEIGHT - 6 - height:.1f}" width="{_PACK_WIDTH - 12}" '
            f'height="{height:.1f}" rx="5" fill="{colour}" fill-opacity="0.35"/>'
        )
    middle = top + _BODY_HEIGHT / 2
    if (state := words.state(pack.state)) is not None:
        parts.append(
            _text(
                centre,
                middle - 30,
                state,
                size=20,
                ident=f"pack{pack.address}-state",
                font_weight="bold",
                fill=colour,
            )
        )
    if pack.soc is not None:
        parts.append(
            _text(
                centre,
                middle + 14,
                f"{pack.soc:.0f} %",
                size=32,
                ident=f"pack{pack.address}-soc",
                font_weight="bold",
            )
        )
    below = top + _BODY_HEIGHT
    if pack.voltage is not None:
        parts.append(
            _text(
                centre,
                below + 34,
                f"{_number(pack.voltage, 1)} V",
                size=22,
                ident=f"pack{pack.address}-voltage",
            )
        )
    if pack.temperature is not None:
        parts.append(
            _text(
                centre,
                below + 64,
                f"{pack.temperature:.0f} °C",
                size=22,
                ident=f"pack{pack.address}-temperature",
            )
        )
    return parts


def render_svg(picture: BankPicture) -> str:
    """Return the SVG of a bank: the bus voltage and power on top, the packs below."""
    count = max(len(picture.packs), _MIN_PACKS_WIDE)
    width = 2 * _MARGIN + count * _PACK_WIDTH + (count - 1) * _GAP
    height = _HEADER + _ARROW_ROOM + _BODY_HEIGHT + _FOOTER
    offset = (count - len(picture.packs)) * (_PACK_WIDTH + _GAP) / 2
    voltage = "— V" if picture.voltage is None else f"{_number(picture.voltage, 1)} V"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'font-family="sans-serif" fill="#212121">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        _text(width / 2, 48, voltage, size=36, ident="bank-voltage", font_weight="bold"),
        _text(
            width / 2,
            86,
            f"{_power_text(picture.power)} · {_flow_words(picture.power, picture.words)}",
            size=26,
            ident="bank-power",
        ),
    ]
    for index, pack in enumerate(picture.packs):
        parts.extend(_pack(pack, _MARGIN + offset + index * (_PACK_WIDTH + _GAP), picture.words))
    parts.append("</svg>")
    return "\n".join(parts)
